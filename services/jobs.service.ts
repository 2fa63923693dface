// The result backend: every long operation is a job row. Reads, stop, and the reaper that
// sends a job whose node died back to pending (or to failed, when its attempts are spent).
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ConflictError, NotFoundError } from "../lib/platform/errors";
import { CHANNEL_JOBS } from "../lib/platform/names";
import { intIdParam, isoTimeParam, pageOf, paginationParams, parseTime } from "../lib/api/params";
import { jobLogger, staleAfterMs } from "./bulk-job";
import { withCrawlProgress } from "../models/crawls";
import {
  cancelJob,
  FINISHED_JOB_STATUSES,
  getJob,
  JOB_KINDS,
  JOB_SORTS,
  JOB_STATUSES,
  listJobs,
  pendingJobIds,
  BULK_KINDS,
  presentJob,
  reapJobs,
  touchStalePending,
  type JobKind,
  type JobSort,
  type JobRow,
  type JobStatus,
} from "../models/jobs";
import { nodesRunning } from "../moleculer.config";
import type { Runtime } from "../lib/contracts";
import { announceEnded } from "./announce";
import { dropStaging } from "../models/imports";

// The longest search text a job list takes.
const MAX_QUERY_LENGTH = 200;

interface JobsMethods {
  reap(): Promise<void>;
}
interface JobsVars {
  reaper: NodeJS.Timeout | null;
  reaping: boolean;
  /** The reap under way, which stopping waits for: the pool closes after the services stop. */
  reapRun: Promise<void> | null;
}

export default function jobsService({ db, config, activeJobs }: Runtime): ServiceSchema<ServiceSettingSchema, JobsMethods, JobsVars> {
  const staleMs = staleAfterMs(config.jobs);
  // A pending job untouched this long is sent again (its message may be gone).
  const resendAfterMs = Math.max(60_000, 10 * config.jobs.heartbeatMs);
  // Looking for such jobs a few times per resend period is enough; stale running jobs are looked
  // for at every heartbeat, since a dead runner's job should move on within seconds.
  const resendCheckMs = resendAfterMs / 6;
  let lastResendCheck = 0;
  return {
    name: "jobs",

    actions: {
      get: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          // A job running in this process is read from its runner: embedded PGlite is one
          // session, which the job's transaction holds until it ends.
          const live = activeJobs.get(ctx.params.id)?.view();
          if (live) return live;
          const job = await getJob(db, ctx.params.id);
          if (!job) throw new NotFoundError("job", ctx.params.id);
          return (await withCrawlProgress(db, [presentJob(job)]))[0];
        },
      },

      list: {
        params: {
          ...paginationParams,
          status: { type: "enum", values: [...JOB_STATUSES], optional: true },
          kind: { type: "enum", values: [...JOB_KINDS], optional: true },
          q: { type: "string", max: MAX_QUERY_LENGTH, optional: true },
          createdAfter: isoTimeParam,
          sort: { type: "enum", values: [...JOB_SORTS], optional: true },
        },
        async handler(
          ctx: Context<{
            limit?: number;
            offset?: number;
            status?: JobStatus;
            kind?: JobKind;
            q?: string;
            createdAfter?: string;
            sort?: JobSort;
          }>,
        ) {
          const { limit, offset } = pageOf(ctx.params);
          const createdAfter = parseTime("createdAfter", ctx.params.createdAfter);
          const { rows, ...total } = await listJobs(db, { ...ctx.params, createdAfter, limit, offset });
          const items = await withCrawlProgress(db, rows.map(presentJob));
          return { items, ...total, limit, offset };
        },
      },

      /**
       * A pending job never starts. A running one is aborted on whichever node runs it, and the
       * answer comes after its transaction has rolled back.
       */
      stop: {
        retryPolicy: { enabled: false },
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const aborted = await Promise.all(
            nodesRunning(this.broker, "jobControl").map((nodeID) =>
              ctx.call<JobRow | null, { id: number }>("jobControl.abort", { id: ctx.params.id }, { nodeID }).catch(() => null),
            ),
          );
          // The runner's commit is guarded by status 'running': once this is written it cannot commit.
          // A runner that aborted has announced the cancellation itself.
          const byRunner = aborted.find((j) => j?.status === "cancelled");
          if (byRunner) return presentJob(byRunner);
          const cancelled = await cancelJob(db, ctx.params.id);
          if (cancelled) {
            // A staged upload that will never load goes now (an upload still running rolls back by itself).
            if (cancelled.kind === "import") await dropStaging(db, cancelled.id).catch(() => {});
            announceEnded(ctx, cancelled);
            return presentJob(cancelled);
          }
          const job = await getJob(db, ctx.params.id);
          if (!job) throw new NotFoundError("job", ctx.params.id);
          if (job.kind === "crawl" && !FINISHED_JOB_STATUSES.includes(job.status)) {
            await ctx.call("crawls.cancel", { id: Number(job.params.crawlId) });
            return (await withCrawlProgress(db, [presentJob((await getJob(db, job.id))!)]))[0];
          }
          throw new ConflictError(`job ${job.id} has already ${job.status === "cancelled" ? "been cancelled" : job.status}`, {
            id: job.id,
            status: job.status,
          });
        },
      },
    },

    methods: {
      /**
       * Jobs whose runner is gone go back to the queue: no heartbeat, and their node has left the
       * cluster or says it does not run them. Pending jobs left untouched for long are sent again.
       */
      async reap() {
        if (this.reaping) return;
        this.reaping = true;
        try {
          const stillRunning = async (nodeId: string, id: number) => {
            if (!this.broker.registry.nodes.get(nodeId)?.available) return false;
            // An unreachable node counts as running it: its heartbeat is the judge once it has left.
            return this.broker
              .call<boolean, { id: number }>("jobControl.running", { id }, { nodeID: nodeId, timeout: 2_000, retries: 0 })
              .catch(() => true);
          };
          for (const job of await reapJobs(db, staleMs, config.jobs.maxAttempts, stillRunning)) {
            jobLogger(this.logger, job).warn(job.error ?? "reaped");
            announceEnded(this.broker, job);
            if (job.status === "pending") await this.broker.sendToChannel(CHANNEL_JOBS, { id: job.id }).catch(() => {});
          }
          if (Date.now() - lastResendCheck >= resendCheckMs) {
            lastResendCheck = Date.now();
            for (const id of await touchStalePending(db, resendAfterMs))
              await this.broker.sendToChannel(CHANNEL_JOBS, { id }).catch(() => {});
          }
        } finally {
          this.reaping = false;
        }
      },
    },

    started() {
      // Embedded mode's queue lives in memory: whatever was pending when the process stopped is
      // queued again. In the background: a busy database must not fail the boot (and if this
      // fails, the reaper sends pending jobs again once they have waited a while).
      if (!config.transporter) {
        void (async () => {
          for (const id of await pendingJobIds(db, BULK_KINDS)) await this.broker.sendToChannel(CHANNEL_JOBS, { id });
        })().catch((err: unknown) => this.logger.warn("Re-queueing pending jobs failed", err));
      }
      this.reaper = setInterval(() => {
        if (!this.reaping) this.reapRun = this.reap().catch((err: unknown) => this.logger.warn("Job reaper failed", err));
      }, config.jobs.heartbeatMs);
      this.reaper.unref();
    },

    async stopped() {
      if (this.reaper) clearInterval(this.reaper);
      await this.reapRun;
    },
  };
}
