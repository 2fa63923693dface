// The jobs table: the result backend of all long work. A job is claimed by one node at a time
// (status running, node_id, attempts + 1, a fresh heartbeat); a claim can be taken over only when
// its heartbeat has gone stale, so two live nodes never run the same job. The insert job's own
// transaction ends by marking the job succeeded, guarded by its claim: a job that was stopped or
// taken over meanwhile cannot commit its rows.
import type { Sequelize, Transaction } from "sequelize";
import { cappedCount, select, selectOne, type ListTotal } from "./query";
import { queuePaused } from "./queues";
import { UPLOADING } from "./imports";

export const JOB_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const JOB_KINDS = ["insert", "crawl", "id-task", "import"] as const;
export type JobKind = (typeof JOB_KINDS)[number];
/** The bulk loads the job runner claims (the jobs channel, the insert queue). */
export const BULK_KINDS = ["insert", "import"] as const;
const BULK = `kind IN ('insert', 'import')`;
export const FINISHED_JOB_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

export interface JobRow {
  id: number;
  kind: JobKind;
  status: JobStatus;
  params: Record<string, unknown>;
  progress_done: number;
  progress_total: number | null;
  /** More about the progress than done/total (an import's phase, bytes and staged rows). */
  progress_detail: Record<string, unknown> | null;
  throughput: number | null;
  node_id: string | null;
  attempts: number;
  error: string | null;
  result: Record<string, unknown> | null;
  heartbeat_at: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

/** A claim: which node runs which attempt. Every write of a running job is guarded by it. */
export interface Claim {
  id: number;
  nodeId: string;
  attempt: number;
}

export interface JobView {
  id: number;
  kind: JobKind;
  status: JobStatus;
  progress: { done: number; total: number | null; [detail: string]: unknown };
  /** Units per second (rows/s for an insert) over the current attempt. */
  throughput: number | null;
  nodeId: string | null;
  attempts: number;
  error: string | null;
  params: Record<string, unknown>;
  result: Record<string, unknown> | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
}

export function presentJob(j: JobRow): JobView {
  return {
    id: j.id,
    kind: j.kind,
    status: j.status,
    progress: { ...j.progress_detail, done: j.progress_done, total: j.progress_total },
    throughput: j.throughput,
    nodeId: j.node_id,
    attempts: j.attempts,
    error: j.error,
    params: j.params,
    result: j.result,
    createdAt: j.created_at,
    startedAt: j.started_at,
    finishedAt: j.finished_at,
    updatedAt: j.updated_at,
  };
}

const one = (db: Sequelize, sql: string, bind: unknown[], transaction?: Transaction) => selectOne<JobRow>(db, sql, bind, transaction);

// The WHERE clause of every write a claim makes.
const CLAIMED = `id = $1 AND node_id = $2 AND attempts = $3 AND status = 'running'`;
const claimBind = (c: Claim) => [c.id, c.nodeId, c.attempt];

export async function createJob(
  db: Sequelize,
  kind: JobKind,
  params: Record<string, unknown>,
  total: number | null,
  transaction?: Transaction,
): Promise<JobRow> {
  return (await one(
    db,
    `INSERT INTO jobs (kind, params, progress_total) VALUES ($1, $2, $3) RETURNING *`,
    [kind, JSON.stringify(params), total],
    transaction,
  ))!;
}

export function getJob(db: Sequelize, id: number): Promise<JobRow | null> {
  return one(db, `SELECT * FROM jobs WHERE id = $1`, [id]);
}

export const JOB_SORTS = ["-id", "id", "-createdAt", "createdAt"] as const;
export type JobSort = (typeof JOB_SORTS)[number];
const ORDER_BY: Record<JobSort, string> = {
  "-id": "id DESC",
  id: "id",
  "-createdAt": "created_at DESC, id DESC",
  createdAt: "created_at, id",
};

/** The words a job is found by (`q`): its id, a crawl's URL, its error. migrations/0006 indexes exactly this. */
const JOB_SEARCH = `to_tsvector('simple', regexp_replace(id::text || ' ' || coalesce(params->>'url', '') || ' ' || coalesce(error, ''), '[^[:alnum:]]+', ' ', 'g'))`;

export interface JobFilter {
  status?: JobStatus;
  kind?: JobKind;
  /** Words, each matched as a prefix of a word of the id, URL or error (all must match). */
  q?: string;
  createdAfter?: Date;
  sort?: JobSort;
  limit: number;
  offset: number;
}

/** `q` as a tsquery: each word a quoted prefix, all required. Null when it has no words. */
export function jobSearchQuery(q: string | undefined): string | null {
  // Split as the index splits (everything but letters and digits separates words): no quote
  // or operator of tsquery's syntax survives.
  const words = (q ?? "")
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean)
    .slice(0, 8);
  return words.length === 0 ? null : words.map((w) => `'${w}':*`).join(" & ");
}

export async function listJobs(db: Sequelize, f: JobFilter): Promise<{ rows: JobRow[] } & ListTotal> {
  const search = jobSearchQuery(f.q);
  const byId = f.q && /^\d{1,9}$/.test(f.q.trim()) ? Number(f.q.trim()) : null;
  const where = `($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)
    AND ($3::text IS NULL OR ${JOB_SEARCH} @@ to_tsquery('simple', $3) OR id = $4::int)
    AND ($5::timestamptz IS NULL OR created_at > $5)`;
  const bind = [f.status ?? null, f.kind ?? null, search, byId, f.createdAfter ?? null];
  const [rows, total] = await Promise.all([
    select<JobRow>(db, `SELECT * FROM jobs WHERE ${where} ORDER BY ${ORDER_BY[f.sort ?? "-id"]} LIMIT $6 OFFSET $7`, [
      ...bind,
      f.limit,
      f.offset,
    ]),
    cappedCount(db, `FROM jobs WHERE ${where}`, bind),
  ]);
  return { rows, ...total };
}

/**
 * Takes a job for this node: a pending one, or a running one whose heartbeat is older than
 * `staleMs` (its node died). Null when the job is finished, runs elsewhere, or has used up its
 * attempts (then it is marked failed, which `exhausted` reports).
 */
export async function claimJob(
  db: Sequelize,
  id: number,
  nodeId: string,
  staleMs: number,
  maxAttempts: number,
): Promise<{ job: JobRow | null; exhausted: JobRow | null }> {
  // A paused insert queue claims nothing: the job stays pending, and is sent again on resume.
  // An import still uploading is not ready to run.
  const claimable = `id = $1 AND ${BULK} AND NOT ${UPLOADING} AND NOT ${queuePaused("insert")}
    AND (status = 'pending' OR (status = 'running' AND heartbeat_at < now() - $2 * interval '1 millisecond'))`;
  const job = await one(
    db,
    `UPDATE jobs SET status = 'running', node_id = $3, attempts = attempts + 1, progress_done = 0, throughput = NULL,
            started_at = coalesce(started_at, now()), heartbeat_at = now(), updated_at = now()
     WHERE ${claimable} AND attempts < $4 RETURNING *`,
    [id, staleMs, nodeId, maxAttempts],
  );
  if (job) return { job, exhausted: null };
  const exhausted = await one(
    db,
    `UPDATE jobs SET status = 'failed', finished_at = now(), updated_at = now(),
            error = concat('gave up after ', attempts, ' attempts', ': ' || error)
     WHERE ${claimable} AND attempts >= $3 RETURNING *`,
    [id, staleMs, maxAttempts],
  );
  return { job: null, exhausted };
}

/** Records progress and proves the claim is alive. False when the claim is lost (stopped or taken over). */
export async function beat(
  db: Sequelize,
  c: Claim,
  done: number,
  throughput: number | null,
  detail?: Record<string, unknown>,
): Promise<boolean> {
  const row = await one(
    db,
    `UPDATE jobs SET heartbeat_at = now(), progress_done = $4, throughput = $5, progress_detail = coalesce($6, progress_detail), updated_at = now()
      WHERE ${CLAIMED} RETURNING id`,
    [...claimBind(c), done, throughput, detail ? JSON.stringify(detail) : null],
  );
  return row !== null;
}

/** Ends a claim. Inside the job's own transaction, a null result means the work must be rolled back. */
export function finishClaim(
  db: Sequelize,
  c: Claim,
  end: {
    status: "succeeded" | "failed" | "cancelled" | "pending";
    done?: number;
    throughput?: number | null;
    error?: string | null;
    result?: object | null;
    /** A job handed back by a stopping node: that attempt does not count. */
    refund?: boolean;
  },
  transaction?: Transaction,
): Promise<JobRow | null> {
  // clock_timestamp(): inside the job's transaction now() is the time the transaction began.
  const finished = end.status === "pending" ? "NULL" : "clock_timestamp()";
  return one(
    db,
    `UPDATE jobs SET status = $4, progress_done = coalesce($5, progress_done), throughput = coalesce($6, throughput), error = $7,
            result = $8, finished_at = ${finished}, updated_at = clock_timestamp(), node_id = CASE WHEN $4 = 'pending' THEN NULL ELSE node_id END,
            attempts = attempts - CASE WHEN $9 THEN 1 ELSE 0 END
     WHERE ${CLAIMED} RETURNING *`,
    [
      ...claimBind(c),
      end.status,
      end.done ?? null,
      end.throughput ?? null,
      end.error ?? null,
      end.result ? JSON.stringify(end.result) : null,
      end.refund ?? false,
    ],
    transaction,
  );
}

/**
 * Cancels a job that has not finished. Null when it does not exist, has already finished, or is
 * a crawl (a crawl is cancelled through its own record, which its job row follows).
 */
export function cancelJob(db: Sequelize, id: number): Promise<JobRow | null> {
  return one(
    db,
    `UPDATE jobs SET status = 'cancelled', error = 'stopped by request', finished_at = now(), updated_at = now()
     WHERE id = $1 AND status IN ('pending', 'running') AND kind <> 'crawl' RETURNING *`,
    [id],
  );
}

/**
 * Bulk jobs (inserts, imports) left running by a runner that is gone: no heartbeat for `staleMs`, and
 * `stillRunning` (which asks the job's node, when that node is alive) says no. Each goes back to
 * pending (to be delivered again), or ends failed when it has used up its attempts.
 */
export async function reapJobs(
  db: Sequelize,
  staleMs: number,
  maxAttempts: number,
  stillRunning: (nodeId: string, id: number) => Promise<boolean>,
): Promise<JobRow[]> {
  const stale = `status = 'running' AND ${BULK} AND heartbeat_at < now() - $1 * interval '1 millisecond'`;
  const candidates = await select<{ id: number; node_id: string; attempts: number }>(
    db,
    `SELECT id, node_id, attempts FROM jobs WHERE ${stale}`,
    [staleMs],
  );
  const reaped: JobRow[] = [];
  for (const c of candidates) {
    if (await stillRunning(c.node_id, c.id)) continue;
    // A blocking (sync) job is not retried: its caller has already seen the request fail.
    const last = `(attempts >= $3 OR params @> '{"sync": true}')`;
    const row = await one(
      db,
      `UPDATE jobs SET
         status = CASE WHEN ${last} THEN 'failed' ELSE 'pending' END,
         finished_at = CASE WHEN ${last} THEN now() END,
         error = concat('node ', node_id, ' stopped running attempt ', attempts, CASE WHEN ${last} THEN '; no attempts left' END),
         node_id = NULL, updated_at = now()
       WHERE ${stale} AND id = $2 AND node_id = $4 AND attempts = $5 RETURNING *`,
      [staleMs, c.id, maxAttempts, c.node_id, c.attempts],
    );
    if (row) reaped.push(row);
  }
  return reaped;
}

/**
 * Pending bulk jobs untouched for `olderThanMs`: their message may be gone (dropped after its
 * deliveries failed, or lost with an embedded process). They are marked touched and answered, to
 * be sent again; a duplicate message is harmless, as a job is claimed once.
 */
export async function touchStalePending(db: Sequelize, olderThanMs: number): Promise<number[]> {
  const touched = await select<{ id: number }>(
    db,
    `UPDATE jobs SET updated_at = now() WHERE ${BULK} AND NOT ${UPLOADING} AND status = 'pending' AND updated_at < now() - $1 * interval '1 millisecond' RETURNING id`,
    [olderThanMs],
  );
  return touched.map((r) => r.id);
}

/** Jobs of a kind waiting to run: an embedded node re-queues them at start (its queue lived in memory). */
export async function pendingJobIds(db: Sequelize, kinds: readonly JobKind[]): Promise<number[]> {
  const sql = `SELECT id FROM jobs WHERE kind = ANY($1::text[]) AND status = 'pending' AND NOT ${UPLOADING} ORDER BY id`;
  return (await select<{ id: number }>(db, sql, [kinds])).map((r) => r.id);
}

/** Fails a job that never started (it could not be queued). */
export function finishPendingJob(db: Sequelize, id: number, error: string): Promise<JobRow | null> {
  return one(
    db,
    `UPDATE jobs SET status = 'failed', error = $2, finished_at = now(), updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING *`,
    [id, error],
  );
}
