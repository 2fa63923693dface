// Bulk-insert jobs (seed: the Flask/Celery `/insert/<num>` app). `create` answers at once and
// queues the job on the durable jobs channel; `sync` is the seed's blocking variant, kept for
// contrast: it runs the same job inside the request.
import type { Context, ServiceSchema } from "moleculer";
import { ValidationError } from "../lib/platform/errors";
import { EVENT_JOBS_UPDATED } from "../lib/platform/names";
import { queueBulkJob, runRegistered } from "./bulk-job";
import { createJob, getJob, presentJob } from "../models/jobs";
import type { HttpMeta, Runtime } from "../lib/contracts";
import { announce, announceJob } from "./announce";

export const DEFAULT_INSERT_ROWS = 100_000;
export const MAX_INSERT_ROWS = 10_000_000;
export const MAX_SYNC_INSERT_ROWS = 100_000;

const rowsParam = (max: number) => ({ type: "number", integer: true, min: 1, max, optional: true }) as const;
/** POST /api/inserts's body; an insert schedule's job params are checked against it too (schedules.service.ts). */
export const CREATE_INSERT_PARAMS = { rows: rowsParam(MAX_INSERT_ROWS), $$strict: true } as const;

/** Set by the gateway: a POST that arrived without a body (as opposed to an empty JSON object). */
export interface BodyMeta extends HttpMeta {
  bodyMissing?: boolean;
}

function requireBody(ctx: Context<unknown, BodyMeta>): void {
  if (ctx.meta.bodyMissing) throw new ValidationError("body", 'expected a JSON object such as {"rows": 100000}');
}

export default function insertsService({ db, config, activeJobs, copyIn }: Runtime): ServiceSchema {
  return {
    name: "inserts",

    actions: {
      create: {
        // Not idempotent: the broker's retry (after a timeout, say) would create a second job.
        retryPolicy: { enabled: false },
        params: CREATE_INSERT_PARAMS,
        async handler(ctx: Context<{ rows?: number }, BodyMeta>) {
          requireBody(ctx);
          const rows = ctx.params.rows ?? DEFAULT_INSERT_ROWS;
          const job = await createJob(db, "insert", { rows }, rows);
          announceJob(ctx, job);
          await queueBulkJob(db, this.broker, job);
          ctx.meta.$statusCode = 202;
          ctx.meta.$responseHeaders = { Location: `/api/jobs/${job.id}` };
          return { id: job.id, status: job.status };
        },
      },

      /** Blocking: answers when the rows are in (or rolled back). At most 100,000 rows. */
      sync: {
        retryPolicy: { enabled: false },
        // Blocking by design: the caller waits for the rows, however long the queue for the database.
        timeout: 0,
        params: { rows: rowsParam(MAX_SYNC_INSERT_ROWS), $$strict: true },
        async handler(ctx: Context<{ rows?: number }, BodyMeta>) {
          requireBody(ctx);
          const rows = ctx.params.rows ?? DEFAULT_INSERT_ROWS;
          const job = await createJob(db, "insert", { rows, sync: true }, rows);
          const broadcast = (view: object) => announce(ctx, EVENT_JOBS_UPDATED, view);
          broadcast(presentJob(job));
          // One attempt: the caller is waiting, and hears of a failure at once.
          const deps = {
            db,
            nodeId: this.broker.nodeID,
            settings: { ...config.jobs, maxAttempts: 1 },
            copyIn,
            metrics: this.broker.metrics,
          };
          const finished = await runRegistered(deps, job.id, activeJobs, broadcast);
          // Null when a stop came before the claim: the record says what happened.
          return presentJob(finished ?? (await getJob(db, job.id)) ?? job);
        },
      },
    },
  };
}
