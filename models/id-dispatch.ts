// The scheduler's side of id-tasks, in SQL: each minute is dispatched once across the cluster
// (claimMinute), its due ids go out on the ids channel (dispatchDue), and each id is started and
// settled exactly once (startSlot, settleSlot), the task's job ending with its last id.
import type { Sequelize } from "sequelize";
import type { JobRow } from "./jobs";
import { select } from "./query";
import { queuePaused } from "./queues";

/** Claims minute `minute` for this node; false when another node has it. */
export async function claimMinute(db: Sequelize, minute: number, nodeId: string): Promise<boolean> {
  const rows = await select(
    db,
    `INSERT INTO dispatched_minutes (minute, node_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING minute`,
    [minute, nodeId],
  );
  return rows.length > 0;
}

/**
 * Takes the planned ids due by `minute` (overdue ones too: their dispatcher died, or their task
 * was paused) of tasks not paused, and marks them dispatched, so no later minute sends them again
 * (the durable channel holds them until a node has processed them).
 */
export function dispatchDue(
  db: Sequelize,
  minute: number,
  limit: number,
  nodeId: string,
): Promise<{ task_id: number; external_id: number }[]> {
  return select(
    db,
    `WITH due AS (
       SELECT s.task_id, s.external_id FROM id_task_slots s
         JOIN id_tasks t ON t.job_id = s.task_id AND NOT t.paused
         JOIN jobs j ON j.id = t.job_id AND j.status IN ('pending', 'running')
        WHERE s.state = 'planned' AND s.minute <= $1 AND NOT ${queuePaused("ids")}
        ORDER BY s.minute, s.task_id, s.external_id LIMIT $2
        FOR UPDATE OF s SKIP LOCKED)
     UPDATE id_task_slots s SET state = 'dispatched', dispatched_by = $3, updated_at = now() FROM due
      WHERE s.task_id = due.task_id AND s.external_id = due.external_id
     RETURNING s.task_id, s.external_id, s.minute`,
    [minute, limit, nodeId],
  ).then((rows) =>
    (rows as { task_id: number; external_id: number; minute: number }[]).sort(
      (a, b) => a.minute - b.minute || a.task_id - b.task_id || a.external_id - b.external_id,
    ),
  );
}

/**
 * Takes an id for processing (at least once: a redelivered id whose node died is taken again).
 * `taken` is false when the id is settled already; `job` is set when its task just started.
 */
export async function startSlot(db: Sequelize, taskId: number, externalId: number): Promise<{ taken: boolean; job: JobRow | null }> {
  const rows = await select(
    db,
    `UPDATE id_task_slots SET state = 'running', attempts = attempts + 1, updated_at = now()
      WHERE task_id = $1 AND external_id = $2 AND state IN ('dispatched', 'running') RETURNING task_id`,
    [taskId, externalId],
  );
  if (rows.length === 0) return { taken: false, job: null };
  const [job] = await select<JobRow>(
    db,
    `UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING *`,
    [taskId],
  );
  return { taken: true, job: job ?? null };
}

/**
 * Settles an id: done or failed. Counts it into its job's progress once (a second settle of the
 * same id changes nothing), and ends the job when every id is settled. Answers the job when it changed.
 */
export async function settleSlot(
  db: Sequelize,
  taskId: number,
  externalId: number,
  outcome: { ok: true } | { ok: false; error: string },
): Promise<JobRow | null> {
  return db.transaction(async (t) => {
    const settled = await select(
      db,
      `UPDATE id_task_slots SET state = $3, error = $4, updated_at = now() WHERE task_id = $1 AND external_id = $2 AND state = 'running' RETURNING task_id`,
      [taskId, externalId, outcome.ok ? "done" : "failed", outcome.ok ? null : outcome.error],
      t,
    );
    if (settled.length === 0) return null;
    const [job] = await select<JobRow>(
      db,
      `UPDATE jobs SET progress_done = progress_done + 1, updated_at = now() WHERE id = $1 RETURNING *`,
      [taskId],
      t,
    );
    if (!job || job.progress_done < (job.progress_total ?? 0) || job.status !== "running") return job ?? null;
    // Every id is settled: the task succeeded when none failed.
    const [ended] = await select<JobRow>(
      db,
      `UPDATE jobs j SET finished_at = now(), updated_at = now(),
              status = CASE WHEN f.n = 0 THEN 'succeeded' ELSE 'failed' END,
              error = CASE WHEN f.n = 0 THEN NULL ELSE f.n || ' of ' || j.progress_total || ' ids failed' END,
              result = jsonb_build_object('done', j.progress_total - f.n, 'failed', f.n)
         FROM (SELECT count(*)::int AS n FROM id_task_slots WHERE task_id = $1 AND state = 'failed') f
        WHERE j.id = $1 RETURNING j.*`,
      [taskId],
      t,
    );
    return ended ?? null;
  });
}
