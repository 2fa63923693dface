// On every node that runs jobs: aborts a job running here, and answers once it has rolled back.
// The stop action calls it on each such node (a request, not an event, so that the stop's
// answer can say the job is cancelled and its rows are gone).
import type { Context, ServiceSchema } from "moleculer";
import { intIdParam } from "../lib/api/params";
import type { JobRow } from "../models/jobs";
import type { Runtime } from "../lib/contracts";

export default function jobControlService({ activeJobs }: Runtime): ServiceSchema {
  return {
    name: "jobControl",
    actions: {
      /** Whether this node runs the job now (the reaper asks before it takes a stale job back). */
      running: {
        visibility: "public",
        params: { id: intIdParam },
        handler(ctx: Context<{ id: number }>): boolean {
          return activeJobs.has(ctx.params.id);
        },
      },

      abort: {
        visibility: "public",
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>): Promise<JobRow | null> {
          const run = activeJobs.get(ctx.params.id);
          if (!run) return null;
          run.abort();
          return run.finished;
        },
      },
    },
  };
}
