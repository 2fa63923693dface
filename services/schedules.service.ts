// Recurring schedules (Celery beat, BullMQ job schedulers): a cron pattern that makes a crawl, an
// insert or a URL import job at each tick. The API's actions, and the tick loop that fires them.
//
// One factory in two roles (runtime.ts): every node of the api or the scheduler role serves the
// actions (they are plain reads and writes of the schedules table), and only where the scheduler
// role runs does started() start the loop (config.roles), so a gateway never fires ticks.
//
// Exactly once across the cluster: every scheduler node polls each second. A poll claims due
// schedules with FOR UPDATE SKIP LOCKED and, in that same transaction, creates each tick's job,
// records the tick in schedule_runs (whose primary key allows one run per tick) and moves the
// schedule's next_run_at on. A node killed mid-tick leaves nothing: Postgres rolls its
// transaction back, and the next poll of another node fires the tick. A bulk job is sent to its
// channel after the commit (queueBulkJob); if the node dies in between, the jobs service's reaper
// sends pending jobs that nobody touched again (touchStalePending).
import { Errors, type Context, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { intIdParam, pageOf, paginationParams } from "../lib/api/params";
import { checkedTarget, CrawlTargetPolicy } from "../lib/crawl/ssrf";
import { ValidationError, NotFoundError } from "../lib/platform/errors";
import { EVENT_CRAWL_CREATED } from "../lib/platform/names";
import {
  canonicalTimeZone,
  compileCron,
  DEFAULT_MISFIRE,
  DEFAULT_TIMEZONE,
  MAX_CRON_LENGTH,
  MAX_TIMEZONE_LENGTH,
  MISFIRE_POLICIES,
  nextTick,
  parseCron,
  planTick,
  type MisfirePolicy,
} from "../lib/scheduling/cron";
import type { HttpMeta, Runtime } from "../lib/contracts";
import { createCrawl } from "../models/crawls";
import { createJob, type JobRow } from "../models/jobs";
import {
  advanceSchedule,
  claimDueSchedules,
  deleteSchedule,
  getSchedule,
  insertRun,
  insertSchedule,
  listSchedules,
  recentRuns,
  SCHEDULE_KINDS,
  updateSchedule,
  type ScheduleKind,
  type ScheduleRow,
  type ScheduleRunRow,
} from "../models/schedules";
import { announce, announceJob } from "./announce";
import { queueBulkJob, type JobQueuer } from "./bulk-job";
import { CREATE_CRAWL_PARAMS, crawlRequest, type CreateCrawlParams } from "./crawls.service";
import { CREATE_URL_IMPORT_PARAMS, urlImportParams } from "./imports.service";
import { CREATE_INSERT_PARAMS, DEFAULT_INSERT_ROWS } from "./inserts.service";

// How often each scheduler node looks for due ticks (just after each whole second).
const TICK_POLL_MS = 1_000;
const TICK_POLL_OFFSET_MS = 25;
// Schedules one transaction claims; a poll runs transactions until one fires nothing, at most
// this many (ticks still due are the next poll's).
const TICK_BATCH = 10;
const TICK_ROUNDS_MAX = 100;
// The runs GET /api/schedules/:id shows.
const RECENT_RUNS = 10;

type Params = Record<string, unknown>;
/** moleculer-web sends a 201's Location header from $location. */
interface CreatedMeta extends HttpMeta {
  $location?: string;
}

/** A fastest-validator problem, as a compiled schema answers it. */
interface CheckItem {
  type?: string;
  field?: string;
  message?: string;
  actual?: unknown;
}
type Check = (value: unknown) => true | CheckItem[];

/** A tick's job, and what follows the commit (queueing it, telling the cluster). */
interface Fired {
  job: JobRow;
  afterCommit: () => Promise<void>;
}

/** What each kind of job needs: its create action's schema, its checks, and how a tick creates it. */
interface KindRules {
  schema: object;
  /** The params as the kind's create action would take them: defaults filled in, target checked. */
  accept(params: Params): Promise<Params>;
  /** Creates the tick's job in `t` (its target checked again), and answers what follows the commit. */
  fire(params: Params, tag: Params, t: Transaction): Promise<Fired>;
}

interface SchedulesMethods {
  poll(): Promise<void>;
  fireDue(): Promise<number>;
  fireOne(s: ScheduleRow & { now: Date }, t: Transaction): Promise<(() => Promise<void>) | null>;
  armPoll(): void;
}

export interface ScheduleView {
  id: number;
  cron: string;
  timezone: string;
  misfire: MisfirePolicy;
  job: { kind: ScheduleKind; params: Params };
  paused: boolean;
  /** null while paused. */
  nextRunAt: Date | null;
  lastRunAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export function presentSchedule(s: ScheduleRow): ScheduleView {
  return {
    id: s.id,
    cron: s.cron,
    timezone: s.timezone,
    misfire: s.misfire,
    job: { kind: s.job_kind, params: s.job_params },
    paused: s.paused,
    nextRunAt: s.next_run_at,
    lastRunAt: s.last_run_at,
    createdAt: s.created_at,
    updatedAt: s.updated_at,
  };
}

const presentRun = (r: ScheduleRunRow) => ({
  fireAt: r.fire_at,
  jobId: r.job_id,
  nodeId: r.node_id,
  error: r.error,
  createdAt: r.created_at,
});

/**
 * The first problem a compiled schema found in the value at `path` of the request, as a
 * ValidationError naming the full path (`job.params.url`); a $$strict refusal names the first
 * forbidden key.
 */
function nestedProblem(path: string, items: CheckItem[]): ValidationError {
  const first = items[0] ?? {};
  if (first.field === undefined && first.type === "objectStrict" && typeof first.actual === "string") {
    const key = first.actual.split(", ")[0] ?? "";
    return new ValidationError(`${path}.${key}`, `The '${path}.${key}' field is not allowed here.`);
  }
  const field = first.field === undefined ? path : `${path}.${first.field}`;
  return new ValidationError(field, (first.message ?? "invalid value").replace(`'${first.field}'`, `'${field}'`), { type: first.type });
}

/** Runs `fn`, naming a field it refuses by its path in the request (`url` becomes `job.params.url`). */
async function under<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const data = (err as { data?: { field?: unknown } }).data;
    if (err instanceof Errors.MoleculerClientError && err.code === 422 && typeof data?.field === "string") {
      err.data = { ...data, field: `${path}.${data.field}` };
    }
    throw err;
  }
}

export default function schedulesService({ db, config, ownPorts }: Runtime): ServiceSchema<ServiceSettingSchema, SchedulesMethods> {
  let policy: CrawlTargetPolicy;
  let checks: Record<ScheduleKind, Check> & { job: Check };
  let timer: NodeJS.Timeout | null = null;
  let polling: Promise<void> | null = null;
  let stopping = true;

  const bulkJobFollowUp = (via: JobQueuer, job: JobRow) => async () => {
    announceJob(via, job);
    await queueBulkJob(db, via, job);
  };
  const kindRules = (via: JobQueuer): Record<ScheduleKind, KindRules> => ({
    crawl: {
      schema: CREATE_CRAWL_PARAMS,
      accept: async (params) => ({ ...(await crawlRequest(params as unknown as CreateCrawlParams, policy)) }),
      async fire(params, tag, t) {
        const p = await crawlRequest(params as unknown as CreateCrawlParams, policy);
        const { crawl, job } = await createCrawl(db, p.url, p.maxPages, p.maxDepth, p.sitemaps, { transaction: t, jobParams: tag });
        // Queued by its frontier row: the crawlers are only woken.
        const afterCommit = async () => {
          announce(via, EVENT_CRAWL_CREATED, { id: crawl.id });
          announceJob(via, job);
        };
        return { job, afterCommit };
      },
    },
    insert: {
      schema: CREATE_INSERT_PARAMS,
      accept: async (params) => ({ rows: params.rows ?? DEFAULT_INSERT_ROWS }),
      async fire(params, tag, t) {
        const rows = Number(params.rows);
        const job = await createJob(db, "insert", { ...tag, rows }, rows, t);
        return { job, afterCommit: bulkJobFollowUp(via, job) };
      },
    },
    import: {
      schema: CREATE_URL_IMPORT_PARAMS,
      accept: async (params) => ({ ...(await urlImportParams(db, config, policy, params as Params & { url: string })) }),
      async fire(params, tag, t) {
        // The table and columns were checked at creation; the import job checks them again when it runs.
        const url = await checkedTarget(String(params.url), policy);
        const job = await createJob(db, "import", { ...tag, ...params, url }, null, t);
        return { job, afterCommit: bulkJobFollowUp(via, job) };
      },
    },
  });
  let kinds: Record<ScheduleKind, KindRules>;

  return {
    name: "schedules",

    created() {
      policy = CrawlTargetPolicy.fromConfig(config, ownPorts);
      kinds = kindRules(this.broker);
      const compile = (schema: object) => this.broker.validator!.compile(schema as Params) as unknown as Check;
      checks = {
        job: compile({ kind: { type: "enum", values: [...SCHEDULE_KINDS] }, params: { type: "object", optional: true }, $$strict: true }),
        crawl: compile(kinds.crawl.schema),
        insert: compile(kinds.insert.schema),
        import: compile(kinds.import.schema),
      };
    },

    actions: {
      /** POST /api/schedules { cron, timezone?, misfire?, job: { kind, params } }: job.params as the kind's own create action takes them. */
      create: {
        retryPolicy: { enabled: false },
        params: {
          cron: { type: "string", min: 1, max: MAX_CRON_LENGTH },
          timezone: { type: "string", min: 1, max: MAX_TIMEZONE_LENGTH, optional: true },
          misfire: { type: "enum", values: [...MISFIRE_POLICIES], optional: true },
          job: { type: "object" },
          $$strict: true,
        },
        async handler(ctx: Context<{ cron: string; timezone?: string; misfire?: MisfirePolicy; job: Params }, CreatedMeta>) {
          const timezone = canonicalTimeZone(ctx.params.timezone ?? DEFAULT_TIMEZONE);
          const now = new Date();
          const pattern = compileCron({ cron: ctx.params.cron, timezone }, now);
          const job = ctx.params.job;
          const jobProblems = checks.job(job);
          if (jobProblems !== true) throw nestedProblem("job", jobProblems);
          const kind = job.kind as ScheduleKind;
          const raw = (job.params ?? {}) as Params;
          const paramProblems = checks[kind](raw);
          if (paramProblems !== true) throw nestedProblem("job.params", paramProblems);
          const params = await under("job.params", () => kinds[kind].accept(raw));
          const schedule = await insertSchedule(db, {
            cron: ctx.params.cron,
            timezone,
            misfire: ctx.params.misfire ?? DEFAULT_MISFIRE,
            kind,
            params,
            nextRunAt: nextTick(pattern, now),
          });
          ctx.meta.$statusCode = 201;
          ctx.meta.$location = `/api/schedules/${schedule.id}`;
          return presentSchedule(schedule);
        },
      },

      list: {
        params: { ...paginationParams },
        async handler(ctx: Context<{ limit?: number; offset?: number }>) {
          const page = pageOf(ctx.params);
          const { rows, ...total } = await listSchedules(db, page.limit, page.offset);
          return { items: rows.map(presentSchedule), ...total, ...page };
        },
      },

      /** One schedule, with its latest runs (their job ids). */
      get: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const schedule = await getSchedule(db, ctx.params.id);
          if (!schedule) throw new NotFoundError("schedule", ctx.params.id);
          return { ...presentSchedule(schedule), runs: (await recentRuns(db, schedule.id, RECENT_RUNS)).map(presentRun) };
        },
      },

      /**
       * PATCH /api/schedules/:id { paused?, cron?, timezone?, misfire? }. A new cron or time zone
       * starts again from the next tick after now, and so does a resumed schedule: the ticks it
       * missed while paused are not fired.
       */
      update: {
        retryPolicy: { enabled: false },
        params: {
          id: intIdParam,
          paused: { type: "boolean", optional: true },
          cron: { type: "string", min: 1, max: MAX_CRON_LENGTH, optional: true },
          timezone: { type: "string", min: 1, max: MAX_TIMEZONE_LENGTH, optional: true },
          misfire: { type: "enum", values: [...MISFIRE_POLICIES], optional: true },
          $$strict: true,
        },
        async handler(ctx: Context<{ id: number; paused?: boolean; cron?: string; timezone?: string; misfire?: MisfirePolicy }>) {
          const p = ctx.params;
          if (p.paused === undefined && p.cron === undefined && p.timezone === undefined && p.misfire === undefined) {
            throw new ValidationError("body", "expected at least one of paused, cron, timezone and misfire");
          }
          const now = new Date();
          const updated = await updateSchedule(db, p.id, (row) => {
            const timezone = p.timezone === undefined ? row.timezone : canonicalTimeZone(p.timezone);
            const cron = p.cron ?? row.cron;
            const pattern = compileCron({ cron, timezone }, now);
            const paused = p.paused ?? row.paused;
            const restart = p.cron !== undefined || p.timezone !== undefined || (row.paused && !paused);
            const nextRunAt = paused ? null : restart ? nextTick(pattern, now) : row.next_run_at;
            return { cron, timezone, misfire: p.misfire ?? row.misfire, paused, nextRunAt };
          });
          if (!updated) throw new NotFoundError("schedule", p.id);
          return presentSchedule(updated);
        },
      },

      /** Deletes the schedule and its runs; the jobs it started are kept. */
      remove: {
        retryPolicy: { enabled: false },
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const deleted = await deleteSchedule(db, ctx.params.id);
          if (!deleted) throw new NotFoundError("schedule", ctx.params.id);
          return presentSchedule(deleted);
        },
      },
    },

    methods: {
      /** The next poll, just after the next whole second. */
      armPoll() {
        if (stopping) return;
        const delay = TICK_POLL_MS - (Date.now() % TICK_POLL_MS) + TICK_POLL_OFFSET_MS;
        timer = setTimeout(() => {
          polling = this.poll()
            .catch((err: unknown) => this.logger.warn("Schedules tick failed", err))
            .finally(() => {
              polling = null;
              this.armPoll();
            });
        }, delay);
      },

      /** Fires every due tick: on-time ticks one by one, even several of one schedule (a late poll catching up). */
      async poll() {
        for (let round = 0; round < TICK_ROUNDS_MAX && !stopping; round++) {
          if ((await this.fireDue()) === 0) return;
        }
      },

      /** One transaction: claims due schedules, fires each one's tick; then what follows each commit. Answers how many moved on. */
      async fireDue() {
        const followUps: (() => Promise<void>)[] = [];
        let advanced = 0;
        await db.transaction(async (t) => {
          for (const schedule of await claimDueSchedules(db, TICK_BATCH, t)) {
            try {
              // A savepoint each: a schedule whose tick fails (and is tried again at the next poll) holds up no other.
              const followUp = await db.transaction({ transaction: t }, (sp) => this.fireOne(schedule, sp));
              if (followUp) followUps.push(followUp);
              advanced++;
            } catch (err) {
              this.logger.warn(
                `Schedule ${schedule.id}: its tick at ${schedule.next_run_at?.toISOString()} failed; the next poll tries again`,
                err,
              );
            }
          }
        });
        for (const followUp of followUps) {
          await followUp().catch((err: unknown) => this.logger.warn("A scheduled job could not be queued", err));
        }
        return advanced;
      },

      /** Plans the schedule's due tick, creates its job (if any), records the run, moves the schedule on. */
      async fireOne(s: ScheduleRow & { now: Date }, t: Transaction) {
        const plan = planTick(s.next_run_at!, s.now, s.misfire, parseCron(s));
        if (plan.misfired) {
          const what = plan.fireAt ? "one job for the missed ticks" : "skipped";
          this.logger.info(`Schedule ${s.id}: missed its ticks from ${s.next_run_at!.toISOString()} (${what})`);
        }
        let followUp: (() => Promise<void>) | null = null;
        if (plan.fireAt) {
          const tag = { scheduleId: s.id, scheduledFor: plan.fireAt.toISOString() };
          let fired: Fired | null = null;
          let error: string | undefined;
          try {
            fired = await kinds[s.job_kind].fire(s.job_params, tag, t);
          } catch (err) {
            // Refused (its target is no longer allowed, say): this tick has no job, and says why.
            if (!(err instanceof Errors.MoleculerClientError)) throw err;
            error = err.message;
            this.logger.warn(`Schedule ${s.id}: no job for its tick at ${plan.fireAt.toISOString()}: ${error}`);
          }
          await insertRun(
            db,
            { scheduleId: s.id, fireAt: plan.fireAt, jobId: fired?.job.id ?? null, nodeId: this.broker.nodeID, error },
            t,
          );
          followUp = fired?.afterCommit ?? null;
        }
        await advanceSchedule(db, s.id, plan.nextRunAt, plan.fireAt !== null, t);
        return followUp;
      },
    },

    started() {
      if (!config.roles.includes("scheduler")) return;
      stopping = false;
      this.armPoll();
    },

    async stopped() {
      stopping = true;
      if (timer) clearTimeout(timer);
      await polling;
    },
  };
}
