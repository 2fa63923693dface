// Runs one bulk job (a random-row insert or an import): claim it, load its rows inside one
// transaction, and commit only together with the guarded "succeeded" mark. A stop (or a lost
// claim) rolls the whole transaction back, and so does Postgres when the node dies: the table
// gets all of a job's rows or none. Used by the job runner (channel) and by the blocking
// /api/inserts/sync. What each kind loads is its JobWork (insertWork here, importWork).
import type { Logger, MetricRegistry } from "moleculer";
import type { Sequelize, Transaction } from "sequelize";
import type { JobSettings } from "../lib/platform/config";
import { jobErrorText, JobStoppedError, NotQueuedError, PermanentJobError } from "../lib/platform/errors";
import { CHANNEL_JOBS } from "../lib/platform/names";
import { announceEnded, type Broadcaster } from "./announce";
import { batchSizes, randomRowsCopyText } from "../lib/loading/random-rows";
import type { ActiveJob } from "../lib/contracts";
import { beat, claimJob, finishClaim, finishPendingJob, presentJob, type Claim, type JobRow, type JobView } from "../models/jobs";
import { addToCount } from "../models/counts";
import { dropStaging } from "../models/imports";
import { inSlowLane } from "../lib/platform/db";
import type { CopyIn } from "../lib/platform/bulk-copy";
import { importWork, type ImportDeps } from "./import-job";
import { jobEnded, type JobOutcome } from "./metrics";
import { boundLogger, LogFields } from "../moleculer.config";

export interface BulkJobDeps {
  db: Sequelize;
  nodeId: string;
  settings: JobSettings;
  copyIn: CopyIn;
  /** What URL imports need; only the job runner has it (a blocking insert runs inserts alone). */
  imports?: ImportDeps;
  /** Every status or progress change goes out through this (the `jobs.updated` event). */
  announce(job: JobRow | ProgressUpdate): void;
  /** Called on every heartbeat (JetStream: keep the message from being redelivered). */
  keepAlive?(): void;
  /** Whether a stopping node may hand the job back to the queue (not a blocking job: its caller waits). */
  canHandBack?: boolean;
  /** Where each attempt's outcome is counted (services/metrics.ts). */
  metrics?: MetricRegistry;
  /** The runner's logger; a job logs only through jobLogger(logger, job). Without one, the job logs nothing. */
  logger?: Logger;
}

/** A progress event between status changes (not stored on every batch: on every heartbeat). */
export interface ProgressUpdate {
  id: number;
  status: "running";
  progress: { done: number; total: number | null; [detail: string]: unknown };
  throughput: number;
  nodeId: string;
  attempts: number;
}

// The longest pause before a failed attempt's job is handed back for another.
const RETRY_BACKOFF_MAX_MS = 30_000;
// Progress events are spaced at least this far apart, however small the batches.
const PROGRESS_EVENT_MS = 250;

const SILENT: Logger = { fatal() {}, error() {}, warn() {}, info() {}, debug() {}, trace() {} };

/** A job's logger: its every line carries `jobId` and `jobKind` (in text, a `[job 12 insert]` prefix). */
export function jobLogger(logger: Logger | undefined, job: Pick<JobRow, "id" | "kind">): Logger {
  if (!logger) return SILENT;
  return boundLogger(logger, new LogFields({ jobId: job.id, jobKind: job.kind }, `[job ${job.id} ${job.kind}]`));
}

/**
 * Runs job `id` on this node, registered in `active` while it runs so that a stop request can
 * abort it and reads can see its live progress. Every change goes out through `broadcast`.
 */
export async function runRegistered(
  deps: Omit<BulkJobDeps, "announce">,
  id: number,
  active: Map<number, ActiveJob>,
  broadcast: (view: JobView | ProgressUpdate) => void,
): Promise<JobRow | null> {
  // A second delivery of a job this node is already running: the running copy owns it.
  if (active.has(id)) return null;
  const controller = new AbortController();
  let live: JobView | null = null;
  const announce = (update: JobRow | ProgressUpdate) => {
    const view = "created_at" in update ? presentJob(update) : update;
    if ("created_at" in update) live = presentJob(update);
    else if (live) live = { ...live, progress: update.progress, throughput: update.throughput };
    broadcast(view);
  };
  const finished = runBulkJob({ ...deps, announce }, id, controller.signal);
  const entry: ActiveJob = {
    abort: (reason = "stopped") => controller.abort(reason),
    view: () => live,
    finished: finished.catch(() => null),
  };
  active.set(id, entry);
  try {
    return await finished;
  } finally {
    if (active.get(id) === entry) active.delete(id);
  }
}

/** Who can put a job on the jobs channel and tell the cluster (a broker, or an action's context). */
export type JobQueuer = Broadcaster & { sendToChannel(channel: string, payload: unknown): Promise<unknown> };

/**
 * Puts a new bulk job on the jobs channel. When that fails, the job is marked failed (and an
 * import's staging dropped) and the caller gets a 503 saying nothing was loaded.
 */
export async function queueBulkJob(db: Sequelize, via: JobQueuer, job: JobRow): Promise<void> {
  try {
    await via.sendToChannel(CHANNEL_JOBS, { id: job.id });
  } catch (err) {
    announceEnded(via, await finishPendingJob(db, job.id, `could not be queued: ${(err as Error).message}`));
    if (job.kind === "import") await dropStaging(db, job.id).catch(() => {});
    throw new NotQueuedError(`job ${job.id} could not be queued (it is marked failed); nothing was loaded`, { id: job.id });
  }
}

/** A stale heartbeat: three missed beats. */
export const staleAfterMs = (s: JobSettings) => 3 * s.heartbeatMs;

/** What a job's work may do while it runs inside the job's transaction. */
export interface WorkIO {
  /** Throws JobStoppedError when the job was stopped or its claim lost: call it between batches. */
  checkpoint(): void;
  /** Reports progress (`done` in the job's unit, with any detail), sent out at most every 250 ms. */
  progress(done: number, detail?: Record<string, unknown>): void;
  signal: AbortSignal;
  /** The job's logger (jobLogger): what the work logs carries the job's id and kind. */
  log: Logger;
}

/** The rows one kind of bulk job loads, inside `t`. Answers its done count and result. */
export type JobWork = (
  deps: BulkJobDeps,
  job: JobRow,
  t: Transaction,
  io: WorkIO,
) => Promise<{ done: number; result: Record<string, unknown> }>;

/** The seed's job: `params.rows` random rows into `rows`, streamed through COPY. */
const insertWork: JobWork = async (deps, job, t, io) => {
  const total = Number(job.params.rows);
  let done = 0;
  async function* chunks() {
    for (const size of batchSizes(total, deps.settings.insertBatchRows)) {
      // Generating rows never waits on I/O: without this turn of the event loop, a fast
      // socket would let the job starve every request and timer of the process.
      await new Promise((resolve) => setImmediate(resolve));
      io.checkpoint();
      yield { data: randomRowsCopyText(size), records: size, lines: size };
      done += size;
      io.progress(done);
    }
  }
  const copied = await deps.copyIn(t, "COPY rows (name, value) FROM STDIN", chunks());
  io.checkpoint();
  // The rows' count moves with their commit, and only then (models/counts.ts).
  await addToCount(deps.db, "rows", copied, t);
  return { done: copied, result: { rows: copied } };
};

const WORK: Record<string, JobWork> = { insert: insertWork, import: importWork };

/**
 * Claims job `id` and runs it to its end. Answers the finished job, or null when there was
 * nothing to run (finished, cancelled, running elsewhere). Throws on a failure that deserves
 * another attempt (after recording it), so the channel redelivers the job.
 */
export async function runBulkJob(deps: BulkJobDeps, id: number, signal: AbortSignal): Promise<JobRow | null> {
  const { db, settings } = deps;
  const { job, exhausted } = await claimJob(db, id, deps.nodeId, staleAfterMs(settings), settings.maxAttempts);
  if (exhausted) {
    jobLogger(deps.logger, exhausted).warn(`failed: ${exhausted.error}`);
    deps.announce(exhausted);
    if (deps.metrics) jobEnded(deps.metrics, exhausted.kind, "failed", null);
  }
  if (!job) return null;
  const log = jobLogger(deps.logger, job);
  log.info(`started: attempt ${job.attempts} of ${settings.maxAttempts}`);
  deps.announce(job);
  const claim: Claim = { id, nodeId: deps.nodeId, attempt: job.attempts };
  const work = WORK[job.kind]!;
  const started = Date.now();
  let done = 0;
  let detail: Record<string, unknown> | undefined;
  let lost = false;
  const throughput = () => Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));

  // Typed by assertion: set inside the timer's closure, which narrowing does not see.
  let beating = null as Promise<void> | null;
  const heartbeat = setInterval(() => {
    deps.keepAlive?.();
    // One beat at a time: with every connection busy, beats wait rather than pile up.
    beating ??= beat(db, claim, done, throughput(), detail)
      .then((alive) => {
        lost ||= !alive;
      })
      .catch(() => {})
      .finally(() => (beating = null));
  }, settings.heartbeatMs);

  // The attempt's end, counted once (`row` is null unless this node's write made it), its record
  // goes out, and a finished import's staging goes (or the sweep drops it).
  const attemptEnded = (outcome: JobOutcome) => deps.metrics && jobEnded(deps.metrics, job.kind, outcome, (Date.now() - started) / 1000);
  const ended = async (row: JobRow | null, outcome: JobOutcome) => {
    if (!row) return;
    attemptEnded(outcome);
    deps.announce(row);
    if (row.kind === "import" && row.status !== "pending") await dropStaging(db, id).catch(() => {});
  };

  let lastEvent = 0;
  const io: WorkIO = {
    checkpoint() {
      if (signal.aborted) throw new JobStoppedError(id, signal.reason === "handed back" ? "handed back" : "stopped");
      if (lost) throw new JobStoppedError(id, "claim lost");
    },
    progress(n, more) {
      done = n;
      if (more) detail = { ...detail, ...more };
      if (Date.now() - lastEvent < PROGRESS_EVENT_MS && n !== job.progress_total) return;
      lastEvent = Date.now();
      deps.announce({
        id,
        status: "running",
        progress: { ...detail, done, total: job.progress_total },
        throughput: throughput(),
        nodeId: deps.nodeId,
        attempts: claim.attempt,
      });
    },
    signal,
    log,
  };
  try {
    // The transaction holds its connection throughout: the slow lane leaves one for quick reads.
    // Only the transaction: the heartbeat and progress writes (timers started outside it) are
    // quick, and must never wait behind the job's own slow permit.
    const finished = await inSlowLane(() =>
      db.transaction(async (t) => {
        const outcome = await work(deps, job, t, io);
        io.checkpoint();
        done = outcome.done;
        const seconds = (Date.now() - started) / 1000;
        const row = await finishClaim(
          db,
          claim,
          { status: "succeeded", done, throughput: throughput(), result: { ...outcome.result, seconds } },
          t,
        );
        if (!row) throw new JobStoppedError(id, "claim lost");
        return row;
      }),
    );
    log.info(`succeeded: ${done} rows in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    attemptEnded("succeeded");
    deps.announce(finished);
    return finished;
  } catch (err) {
    // Rolled back. A stop ends the job cancelled (the stop request may have marked it already).
    if (err instanceof JobStoppedError && err.reason === "stopped") {
      log.info("cancelled: stopped by request, rolled back");
      const row = await finishClaim(db, claim, { status: "cancelled", done: 0, error: "stopped by request" }).catch(() => null);
      await ended(row, "cancelled");
      return row;
    }
    if (err instanceof JobStoppedError && err.reason === "claim lost") {
      log.warn("claim lost (stopped, or taken over after missed heartbeats): rolled back");
      return null;
    }
    if (err instanceof JobStoppedError && !deps.canHandBack) {
      log.warn("failed: the node stopped during the job, rolled back");
      const row = await finishClaim(db, claim, { status: "failed", done: 0, error: "the node stopped during the job" }).catch(() => null);
      await ended(row, "failed");
      return row;
    }
    if (err instanceof JobStoppedError) {
      // This node is stopping: the job goes back to the queue, and the attempt does not count.
      log.info("handed back to the queue: this node is stopping, rolled back");
      const row = await finishClaim(db, claim, { status: "pending", done: 0, error: "handed back by a stopping node", refund: true }).catch(
        () => null,
      );
      await ended(row, "handed_back");
      throw err;
    }
    const message = jobErrorText(err);
    // Bad data (say) fails the same way every time: no other attempt.
    const last = claim.attempt >= settings.maxAttempts || err instanceof PermanentJobError;
    // If this write fails too (the database is down), the reaper finds the job: its heartbeat
    // stops, and its node no longer runs it.
    const row = await finishClaim(db, claim, { status: last ? "failed" : "pending", done: 0, error: message }).catch(() => null);
    await ended(row, last ? "failed" : "retried");
    if (last) {
      log.error(`failed on attempt ${claim.attempt} of ${settings.maxAttempts}, rolled back:`, err);
      return row;
    }
    // Back off before the message is handed back: an immediate redelivery would find the same fault.
    const backoffMs = Math.min(RETRY_BACKOFF_MAX_MS, settings.heartbeatMs * 2 ** claim.attempt);
    log.warn(`attempt ${claim.attempt} of ${settings.maxAttempts} failed, rolled back; retrying in ${backoffMs / 1000} s:`, err);
    await new Promise((r) => setTimeout(r, backoffMs));
    throw err;
  } finally {
    clearInterval(heartbeat);
    await beating;
  }
}
