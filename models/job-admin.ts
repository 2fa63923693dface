// What an operator does to finished jobs, in SQL: retry one or many (same params, history kept)
// and delete them with what belongs only to them (events, a crawl's frontier, an id-task's
// slots), never pages, rows or users.
import type { Sequelize, Transaction } from "sequelize";
import { FINISHED_JOB_STATUSES, type JobKind, type JobRow, type JobStatus } from "./jobs";
import { select, selectOne } from "./query";

/** Statuses a job can be retried from. */
export const RETRYABLE_STATUSES: readonly JobStatus[] = ["failed", "cancelled"];

export type RetryOutcome = { job: JobRow } | { conflict: JobRow; reason?: string } | null;

/**
 * Puts a failed or cancelled job back to pending with the same params. An insert job starts
 * from attempt 0; a crawl re-queues its failed URLs (and those its cancel skipped); an id-task's
 * failed ids are planned again (the caller re-plans them from now); a URL import fetches its
 * file again, while an upload cannot be retried (its staged copy is gone). Null for an unknown job.
 */
export async function retryJob(db: Sequelize, id: number): Promise<RetryOutcome> {
  return db.transaction(async (t) => {
    const job = await selectOne<JobRow>(db, `SELECT * FROM jobs WHERE id = $1 FOR UPDATE`, [id], t);
    if (!job) return null;
    if (!RETRYABLE_STATUSES.includes(job.status)) return { conflict: job };
    // An uploaded file is staged only until its job ends; a URL import fetches its file again.
    if (job.kind === "import" && job.params.source === "upload") {
      return { conflict: job, reason: `import ${id} was an upload, whose staged file went when the job ended: upload the file again` };
    }
    if (job.kind === "crawl") return { job: await retryCrawl(db, job, t) };
    if (job.kind === "id-task") {
      await select(
        db,
        `UPDATE id_task_slots SET state = 'planned', attempts = 0, error = NULL WHERE task_id = $1 AND state = 'failed' RETURNING task_id`,
        [id],
        t,
      );
    }
    const row = await selectOne<JobRow>(
      db,
      `UPDATE jobs SET status = 'pending', attempts = 0, progress_done = 0, progress_detail = NULL, throughput = NULL, error = NULL, result = NULL,
              node_id = NULL, heartbeat_at = NULL, started_at = NULL, finished_at = NULL, updated_at = now()
        WHERE id = $1 RETURNING *`,
      [id],
      t,
    );
    return { job: row! };
  });
}

// A crawl's job follows its crawl row (the crawl_job_follow trigger): the crawl is what restarts.
async function retryCrawl(db: Sequelize, job: JobRow, t: Transaction): Promise<JobRow> {
  const crawlId = Number(job.params.crawlId);
  await select(
    db,
    `UPDATE crawl_urls SET state = 'queued', attempts = 0, reason = NULL, http_status = NULL, leased_by = NULL, lease_until = NULL,
            updated_at = now()
      WHERE crawl_id = $1 AND (state = 'failed' OR (state = 'skipped' AND reason = 'crawl cancelled')) RETURNING url`,
    [crawlId],
    t,
  );
  await select(
    db,
    `UPDATE crawls SET status = 'pending', error = NULL, finished_at = NULL, paused = false WHERE id = $1 RETURNING id`,
    [crawlId],
    t,
  );
  return (await selectOne<JobRow>(db, `SELECT * FROM jobs WHERE id = $1`, [job.id], t))!;
}

/** The ids of finished jobs matching the filter, oldest first (what a bulk retry or delete works on). */
export async function finishedJobIds(
  db: Sequelize,
  f: { status?: JobStatus; kind?: JobKind; finishedBefore?: Date },
  statuses: readonly JobStatus[] = FINISHED_JOB_STATUSES,
): Promise<number[]> {
  const rows = await select<{ id: number }>(
    db,
    `SELECT id FROM jobs
      WHERE status = ANY($1::text[]) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)
        AND ($4::timestamptz IS NULL OR finished_at < $4)
      ORDER BY id`,
    [statuses, f.status ?? null, f.kind ?? null, f.finishedBefore ?? null],
  );
  return rows.map((r) => r.id);
}

/**
 * Deletes finished jobs and what belongs only to them. Their events and id-task rows go by
 * cascade; a crawl's row and frontier go here (its pages stay, with no crawl). Answers how many.
 */
export async function deleteJobs(db: Sequelize, ids: number[]): Promise<number> {
  if (ids.length === 0) return 0;
  return db.transaction(async (t) => {
    // Locked first: a job retried meanwhile is no longer finished, and keeps its crawl.
    const locked = await select<{ id: number }>(
      db,
      `SELECT id FROM jobs WHERE id = ANY($1::int[]) AND status = ANY($2::text[]) FOR UPDATE`,
      [ids, FINISHED_JOB_STATUSES],
      t,
    );
    const doomed = locked.map((r) => r.id);
    await select(db, `DELETE FROM crawls WHERE job_id = ANY($1::int[]) RETURNING id`, [doomed], t);
    const gone = await select<{ id: number }>(db, `DELETE FROM jobs WHERE id = ANY($1::int[]) RETURNING id`, [doomed], t);
    return gone.length;
  });
}
