// What an operator does with jobs beyond reading and stopping them (Flower's and Bull Board's
// job pages): a job's history, retries, deleting finished jobs, and the JOB_RETENTION sweep,
// which runs once across the cluster per period.
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ConflictError, NotFoundError } from "../lib/platform/errors";
import { CHANNEL_JOBS, EVENT_CRAWL_CREATED } from "../lib/platform/names";
import { intIdParam, isoTimeParam, pageOf, paginationParams, parseTime } from "../lib/api/params";
import { foldCounts } from "../models/counts";
import { sweepImports } from "../models/imports";
import { deleteJobs, finishedJobIds, RETRYABLE_STATUSES, retryJob } from "../models/job-admin";
import { listJobEvents, presentJobEvent } from "../models/job-events";
import { getIdTasks, replanIdTask } from "../models/id-tasks";
import { FINISHED_JOB_STATUSES, getJob, JOB_KINDS, presentJob, type JobKind, type JobRow, type JobStatus } from "../models/jobs";
import { autovacuumStandIn, claimMaintenance } from "../models/maintenance";
import { maintainFetchPartitions } from "../models/page-fetches";
import { inSlowLane } from "../lib/platform/db";
import { runEvery, type Periodic } from "../lib/platform/periodic";
import type { Runtime } from "../lib/contracts";
import { announce, announceEnded, announceJob } from "./announce";

// How often each api node offers to run the maintenance; one of them runs it per period.
export const MAINTENANCE_PERIOD_MS = 60_000;
// How often the embedded database gets autovacuum's work done (it runs no autovacuum of its own).
export const EMBEDDED_AUTOVACUUM_MS = 15_000;
// An upload job younger than this may not have opened its transaction yet: never taken for interrupted.
const UPLOAD_GRACE_MS = 60_000;
// Jobs deleted per transaction by a bulk delete or the sweep: short transactions, short locks.
const DELETE_BATCH = 1_000;
// The most jobs one bulk retry takes (the rest wait for the next call).
export const MAX_BULK_RETRY = 10_000;

const finishedStatus = { type: "enum", values: [...FINISHED_JOB_STATUSES], optional: true } as const;
const kindParam = { type: "enum", values: [...JOB_KINDS], optional: true } as const;

interface AdminVars {
  maintenance: Periodic | null;
  vacuum: Periodic | null;
}
interface AdminMethods {
  requeue(job: JobRow): Promise<void>;
  retryOne(id: number): Promise<JobRow>;
  retryAll(ids: number[]): Promise<number>;
  removeAll(ids: number[]): Promise<number>;
  maintain(): Promise<void>;
}

export default function jobAdminService({ db, config }: Runtime): ServiceSchema<ServiceSettingSchema, AdminMethods, AdminVars> {
  return {
    name: "jobAdmin",

    actions: {
      events: {
        params: { id: intIdParam, ...paginationParams },
        async handler(ctx: Context<{ id: number; limit?: number; offset?: number }>) {
          const { limit, offset } = pageOf(ctx.params);
          const { rows, total } = await listJobEvents(db, ctx.params.id, limit, offset);
          if (total === 0 && !(await getJob(db, ctx.params.id))) throw new NotFoundError("job", ctx.params.id);
          return { items: rows.map(presentJobEvent), total, limit, offset };
        },
      },

      retry: {
        retryPolicy: { enabled: false },
        params: { id: intIdParam, $$strict: true },
        async handler(ctx: Context<{ id: number }, { $statusCode?: number }>) {
          const job = await this.retryOne(ctx.params.id);
          ctx.meta.$statusCode = 202;
          return presentJob(job);
        },
      },

      retryMany: {
        retryPolicy: { enabled: false },
        params: { status: { type: "enum", values: [...RETRYABLE_STATUSES] }, kind: kindParam, $$strict: true },
        async handler(ctx: Context<{ status: JobStatus; kind?: JobKind }>) {
          const ids = (await finishedJobIds(db, ctx.params, RETRYABLE_STATUSES)).slice(0, MAX_BULK_RETRY);
          return inSlowLane(async () => ({ retried: await this.retryAll(ids) }));
        },
      },

      /** DELETE /api/jobs/:id: one finished job, with what belongs only to it. */
      removeOne: {
        retryPolicy: { enabled: false },
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const job = await getJob(db, ctx.params.id);
          if (!job) throw new NotFoundError("job", ctx.params.id);
          if (!FINISHED_JOB_STATUSES.includes(job.status) || (await this.removeAll([job.id])) === 0) {
            throw new ConflictError(`job ${job.id} is ${job.status}: stop it before deleting it`, { id: job.id, status: job.status });
          }
          return { deleted: 1 };
        },
      },

      remove: {
        retryPolicy: { enabled: false },
        params: { status: finishedStatus, kind: kindParam, finishedBefore: isoTimeParam },
        async handler(ctx: Context<{ status?: JobStatus; kind?: JobKind; finishedBefore?: string }>) {
          const finishedBefore = parseTime("finishedBefore", ctx.params.finishedBefore);
          const ids = await finishedJobIds(db, { ...ctx.params, finishedBefore });
          return { deleted: await this.removeAll(ids) };
        },
      },
    },

    methods: {
      async retryOne(id: number) {
        const outcome = await retryJob(db, id);
        if (!outcome) throw new NotFoundError("job", id);
        if ("conflict" in outcome) {
          const { status } = outcome.conflict;
          throw new ConflictError(outcome.reason ?? `job ${id} is ${status}: only a failed or cancelled job can be retried`, {
            id,
            status,
          });
        }
        await this.requeue(outcome.job);
        announceJob(this.broker, outcome.job);
        return outcome.job;
      },

      /** Sends a retried job to whoever runs its kind. */
      async requeue(job: JobRow) {
        if (job.kind === "insert" || job.kind === "import") await this.broker.sendToChannel(CHANNEL_JOBS, { id: job.id });
        else if (job.kind === "crawl") announce(this.broker, EVENT_CRAWL_CREATED, { id: Number(job.params.crawlId) });
        else {
          // Its failed ids were planned again; they are spread from now, at the task's RPM.
          const task = (await getIdTasks(db, [job.id])).get(job.id);
          if (task) await replanIdTask(db, job.id, task.rpm, config.scheduler.minuteMs);
        }
      },

      async retryAll(ids: number[]) {
        let retried = 0;
        for (const id of ids) {
          try {
            await this.retryOne(id);
            retried++;
          } catch (err) {
            // Retried or deleted meanwhile by someone else: not counted, and the rest go on.
            if (!(err instanceof ConflictError || err instanceof NotFoundError)) throw err;
          }
        }
        return retried;
      },

      async removeAll(ids: number[]) {
        return inSlowLane(async () => {
          let deleted = 0;
          for (let i = 0; i < ids.length; i += DELETE_BATCH) deleted += await deleteJobs(db, ids.slice(i, i + DELETE_BATCH));
          return deleted;
        });
      },

      /**
       * Once per period across the cluster: the JOB_RETENTION sweep, the imports' sweep, folding
       * the row counts, and the fetch history's month partitions (made ahead, dropped past FETCH_RETENTION_MONTHS).
       */
      async maintain() {
        const period = Math.floor(Date.now() / MAINTENANCE_PERIOD_MS);
        if (!(await claimMaintenance(db, "jobs", period, this.broker.nodeID))) return;
        await foldCounts(db);
        const partitions = await maintainFetchPartitions(db, new Date(), config.crawl.fetchRetentionMonths);
        if (partitions.created.length + partitions.dropped.length > 0) {
          this.logger.info(
            `Fetch history: made partition(s) [${partitions.created.join(", ")}], dropped [${partitions.dropped.join(", ")}] (FETCH_RETENTION_MONTHS)`,
          );
        }
        // Uploads whose node died mid-way end failed; staging no job needs goes (after retention, too).
        const imports = await sweepImports(db, UPLOAD_GRACE_MS);
        for (const id of imports.failed) announceEnded(this.broker, await getJob(db, id));
        if (imports.failed.length + imports.dropped > 0) {
          this.logger.info(`Imports: ${imports.failed.length} interrupted upload(s) failed, ${imports.dropped} staging table(s) dropped`);
        }
        const retentionMs = config.jobs.retentionMs;
        if (retentionMs === null) return;
        const deleted = await this.removeAll(await finishedJobIds(db, { finishedBefore: new Date(Date.now() - retentionMs) }));
        if (deleted > 0) this.logger.info(`Retention: deleted ${deleted} finished job(s) older than JOB_RETENTION`);
      },
    },

    started() {
      this.maintenance = runEvery(
        MAINTENANCE_PERIOD_MS,
        () => inSlowLane(() => this.maintain()),
        (err) => this.logger.warn("Job maintenance failed; the next period retries", err),
        { now: true },
      );
      if (config.databaseUrl === null) {
        this.vacuum = runEvery(
          EMBEDDED_AUTOVACUUM_MS,
          async () => {
            const done = await inSlowLane(() => autovacuumStandIn(db));
            if (done.length > 0) this.logger.debug(`Embedded database: ${done.join(", ")}`);
          },
          (err) => this.logger.warn("VACUUM/ANALYZE of the embedded database failed; the next period retries", err),
        );
      }
    },

    async stopped() {
      await this.maintenance?.stop();
      await this.vacuum?.stop();
    },
  };
}
