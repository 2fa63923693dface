// Runs one bulk-insert job: claim it, insert its rows in batches inside one transaction, and
// commit only together with the guarded "succeeded" mark. A stop (or a lost claim) rolls the
// whole transaction back, and so does Postgres when the node dies: the table gets all of a
// job's rows or none. Used by the job runner (channel) and by the blocking /api/inserts/sync.
import type { Sequelize } from "sequelize";
import type { JobSettings } from "../lib/platform/config";
import { JobStoppedError } from "../lib/platform/errors";
import { batchSizes, randomRowBatch } from "../lib/loading/random-rows";
import type { ActiveJob } from "../lib/contracts";
import { beat, claimJob, finishClaim, presentJob, type Claim, type JobRow, type JobView } from "../models/jobs";
import { insertRowBatch } from "../models/rows";
import { addToCount } from "../models/counts";
import { inSlowLane } from "../lib/platform/db";

export interface InsertJobDeps {
  db: Sequelize;
  nodeId: string;
  settings: JobSettings;
  /** Every status or progress change goes out through this (the `jobs.updated` event). */
  announce(job: JobRow | ProgressUpdate): void;
  /** Called on every heartbeat (JetStream: keep the message from being redelivered). */
  keepAlive?(): void;
  /** Whether a stopping node may hand the job back to the queue (not a blocking job: its caller waits). */
  canHandBack?: boolean;
}

/** A progress event between status changes (not stored on every batch: on every heartbeat). */
export interface ProgressUpdate {
  id: number;
  status: "running";
  progress: { done: number; total: number };
  throughput: number;
  nodeId: string;
  attempts: number;
}

// The longest pause before a failed attempt's job is handed back for another.
const RETRY_BACKOFF_MAX_MS = 30_000;
// Progress events are spaced at least this far apart, however small the batches.
const PROGRESS_EVENT_MS = 250;

/**
 * Runs job `id` on this node, registered in `active` while it runs so that a stop request can
 * abort it and reads can see its live progress. Every change goes out through `broadcast`.
 */
export async function runRegistered(
  deps: Omit<InsertJobDeps, "announce">,
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
  const finished = runInsertJob({ ...deps, announce }, id, controller.signal);
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

/** A stale heartbeat: three missed beats. */
export const staleAfterMs = (s: JobSettings) => 3 * s.heartbeatMs;

/**
 * Claims job `id` and runs it to its end. Answers the finished job, or null when there was
 * nothing to run (finished, cancelled, running elsewhere). Throws on a failure that deserves
 * another attempt (after recording it), so the channel redelivers the job.
 */
export async function runInsertJob(deps: InsertJobDeps, id: number, signal: AbortSignal): Promise<JobRow | null> {
  const { db, settings } = deps;
  const { job, exhausted } = await claimJob(db, id, deps.nodeId, staleAfterMs(settings), settings.maxAttempts);
  if (exhausted) deps.announce(exhausted);
  if (!job) return null;
  deps.announce(job);
  const claim: Claim = { id, nodeId: deps.nodeId, attempt: job.attempts };
  const total = Number(job.params.rows);
  const started = Date.now();
  let done = 0;
  let lost = false;
  const throughput = () => Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));

  // Typed by assertion: set inside the timer's closure, which narrowing does not see.
  let beating = null as Promise<void> | null;
  const heartbeat = setInterval(() => {
    deps.keepAlive?.();
    // One beat at a time: with every connection busy, beats wait rather than pile up.
    beating ??= beat(db, claim, done, throughput())
      .then((alive) => {
        lost ||= !alive;
      })
      .catch(() => {})
      .finally(() => (beating = null));
  }, settings.heartbeatMs);

  let lastEvent = 0;
  const checkpoint = () => {
    if (signal.aborted) throw new JobStoppedError(id, signal.reason === "handed back" ? "handed back" : "stopped");
    if (lost) throw new JobStoppedError(id, "claim lost");
  };
  try {
    // The transaction holds its connection throughout: the slow lane leaves one for quick reads.
    // Only the transaction: the heartbeat and progress writes (timers started outside it) are
    // quick, and must never wait behind the job's own slow permit.
    const finished = await inSlowLane(() =>
      db.transaction(async (t) => {
        for (const size of batchSizes(total, settings.insertBatchRows)) {
          checkpoint();
          await insertRowBatch(db, randomRowBatch(size), t);
          done += size;
          if (Date.now() - lastEvent >= PROGRESS_EVENT_MS || done === total) {
            lastEvent = Date.now();
            deps.announce({
              id,
              status: "running",
              progress: { done, total },
              throughput: throughput(),
              nodeId: deps.nodeId,
              attempts: claim.attempt,
            });
          }
        }
        checkpoint();
        const seconds = (Date.now() - started) / 1000;
        // The rows' count moves with their commit, and only then (models/counts.ts).
        await addToCount(db, "rows", done, t);
        const row = await finishClaim(
          db,
          claim,
          { status: "succeeded", done, throughput: throughput(), result: { rows: done, seconds } },
          t,
        );
        if (!row) throw new JobStoppedError(id, "claim lost");
        return row;
      }),
    );
    deps.announce(finished);
    return finished;
  } catch (err) {
    // Rolled back. A stop ends the job cancelled (the stop request may have marked it already).
    if (err instanceof JobStoppedError && err.reason === "stopped") {
      const row = await finishClaim(db, claim, { status: "cancelled", done: 0, error: "stopped by request" }).catch(() => null);
      if (row) deps.announce(row);
      return row;
    }
    if (err instanceof JobStoppedError && err.reason === "claim lost") return null;
    if (err instanceof JobStoppedError && !deps.canHandBack) {
      const row = await finishClaim(db, claim, { status: "failed", done: 0, error: "the node stopped during the job" }).catch(() => null);
      if (row) deps.announce(row);
      return row;
    }
    if (err instanceof JobStoppedError) {
      // This node is stopping: the job goes back to the queue, and the attempt does not count.
      const row = await finishClaim(db, claim, { status: "pending", done: 0, error: "handed back by a stopping node", refund: true }).catch(
        () => null,
      );
      if (row) deps.announce(row);
      throw err;
    }
    const message = (err as Error).message;
    const last = claim.attempt >= settings.maxAttempts;
    // If this write fails too (the database is down), the reaper finds the job: its heartbeat
    // stops, and its node no longer runs it.
    const row = await finishClaim(db, claim, { status: last ? "failed" : "pending", done: 0, error: message }).catch(() => null);
    if (row) deps.announce(row);
    if (last) return row;
    // Back off before the message is handed back: an immediate redelivery would find the same fault.
    await new Promise((r) => setTimeout(r, Math.min(RETRY_BACKOFF_MAX_MS, settings.heartbeatMs * 2 ** claim.attempt)));
    throw err;
  } finally {
    clearInterval(heartbeat);
    await beating;
  }
}
