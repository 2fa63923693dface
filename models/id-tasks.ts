// Id-tasks in SQL: planning ids onto the shared calendar, dispatching a minute once, and
// settling each id. An id-task is a job of kind 'id-task' (progress: ids settled of ids planned).
import type { Sequelize, Transaction } from "sequelize";
import { MINUTES_PER_HOUR, planMinutes, type MinutePick } from "../lib/scheduling/minute-planner";
import { createJob, type JobRow } from "./jobs";
import { select } from "./query";

export const SLOT_STATES = ["planned", "dispatched", "running", "done", "failed"] as const;
export type SlotState = (typeof SLOT_STATES)[number];

// Slots are written this many at a time while the planner generates them.
const SLOT_WRITE_BATCH = 10_000;

/** The scheduler minute that holds the time `ms`. */
export const minuteOf = (ms: number, minuteMs: number): number => Math.floor(ms / minuteMs);

export interface TaskPlan {
  /** Scheduler minute numbers, and the time each starts. */
  firstMinute: number;
  lastMinute: number;
  firstMinuteAt: Date;
  lastMinuteAt: Date;
  /** The most ids of this task in any one minute. */
  perMinute: number;
  minutes: number;
}

/**
 * Plans `ids` from the next minute on: the rest of the current hour in sequence (phase 1 only:
 * its minutes that are over are skipped), then the next hour, sequentially and then dispersed.
 * The calendar is shared: a transaction-level advisory lock makes submissions through different
 * nodes continue the same fill.
 */
async function planInto(db: Sequelize, t: Transaction, taskId: number, ids: Iterable<number>, rpm: number, minuteMs: number, now: number): Promise<TaskPlan> {
  await db.query(`SELECT pg_advisory_xact_lock(hashtext('sluice:calendar'))`, { transaction: t });
  const first = minuteOf(now, minuteMs) + 1;
  const hourStart = Math.floor(first / MINUTES_PER_HOUR) * MINUTES_PER_HOUR;
  const fill = new Array<number>(2 * MINUTES_PER_HOUR).fill(0);
  for (const r of await select<{ minute: number; planned: number }>(db, `SELECT minute, planned FROM calendar WHERE minute >= $1 AND minute < $2`, [hourStart, hourStart + 2 * MINUTES_PER_HOUR], t)) {
    fill[r.minute - hourStart] = r.planned;
  }
  const iterator = ids[Symbol.iterator]();
  const source = { [Symbol.iterator]: () => iterator };
  function* slots(): Generator<MinutePick> {
    for (const s of planMinutes(source, rpm, fill.slice(0, MINUTES_PER_HOUR), { from: first - hourStart, disperse: false })) yield { id: s.id, minute: hourStart + s.minute };
    for (const s of planMinutes(source, rpm, fill.slice(MINUTES_PER_HOUR))) yield { id: s.id, minute: hourStart + MINUTES_PER_HOUR + s.minute };
  }
  const perMinute = new Map<number, number>();
  let batchIds: number[] = [];
  let batchMinutes: number[] = [];
  const flush = async () => {
    if (batchIds.length === 0) return;
    await db.query(`INSERT INTO id_task_slots (task_id, external_id, minute) SELECT $1, * FROM unnest($2::bigint[], $3::bigint[])`, { bind: [taskId, batchIds, batchMinutes], transaction: t });
    batchIds = [];
    batchMinutes = [];
  };
  for (const s of slots()) {
    batchIds.push(s.id);
    batchMinutes.push(s.minute);
    perMinute.set(s.minute, (perMinute.get(s.minute) ?? 0) + 1);
    if (batchIds.length >= SLOT_WRITE_BATCH) await flush();
  }
  await flush();
  const minutes = [...perMinute.keys()];
  await addToCalendar(db, t, minutes, minutes.map((m) => perMinute.get(m)!));
  const firstMinute = Math.min(...minutes);
  const lastMinute = Math.max(...minutes);
  return {
    firstMinute,
    lastMinute,
    firstMinuteAt: new Date(firstMinute * minuteMs),
    lastMinuteAt: new Date(lastMinute * minuteMs),
    perMinute: Math.max(...perMinute.values()),
    minutes: minutes.length,
  };
}

function addToCalendar(db: Sequelize, t: Transaction, minutes: number[], counts: number[]): Promise<unknown> {
  return db.query(
    `INSERT INTO calendar (minute, planned) SELECT * FROM unnest($1::bigint[], $2::int[])
     ON CONFLICT (minute) DO UPDATE SET planned = calendar.planned + EXCLUDED.planned`,
    { bind: [minutes, counts], transaction: t },
  );
}

export async function createIdTask(db: Sequelize, ids: number[], rpm: number, minuteMs: number, now = Date.now()): Promise<{ job: JobRow; plan: TaskPlan }> {
  return db.transaction(async (t) => {
    const job = await createJob(db, "id-task", { rpm, ids: ids.length }, ids.length, t);
    // The task row first (slots reference it), with its minutes filled in once planned.
    await db.query(`INSERT INTO id_tasks (job_id, rpm, first_minute, last_minute) VALUES ($1, $2, 0, 0)`, { bind: [job.id, rpm], transaction: t });
    const plan = await planInto(db, t, job.id, ids, rpm, minuteMs, now);
    await db.query(`UPDATE id_tasks SET first_minute = $2, last_minute = $3 WHERE job_id = $1`, { bind: [job.id, plan.firstMinute, plan.lastMinute], transaction: t });
    return { job, plan };
  });
}

/**
 * Plans again, at a new RPM, the ids of a task that are not dispatched yet (from the next
 * minute on). Null when nothing is left to plan.
 */
export async function replanIdTask(db: Sequelize, taskId: number, rpm: number, minuteMs: number, now = Date.now()): Promise<TaskPlan | null> {
  return db.transaction(async (t) => {
    await db.query(`SELECT pg_advisory_xact_lock(hashtext('sluice:calendar'))`, { transaction: t });
    const removed = await select<{ external_id: number; minute: number }>(
      db,
      `DELETE FROM id_task_slots WHERE task_id = $1 AND state = 'planned' RETURNING external_id, minute`,
      [taskId],
      t,
    );
    await db.query(`UPDATE id_tasks SET rpm = $2 WHERE job_id = $1`, { bind: [taskId, rpm], transaction: t });
    if (removed.length === 0) return null;
    const freed = new Map<number, number>();
    for (const r of removed) freed.set(r.minute, (freed.get(r.minute) ?? 0) - 1);
    await addToCalendar(db, t, [...freed.keys()], [...freed.values()]);
    const ids = removed.sort((a, b) => a.minute - b.minute || a.external_id - b.external_id).map((r) => r.external_id);
    const plan = await planInto(db, t, taskId, ids, rpm, minuteMs, now);
    await db.query(`UPDATE id_tasks SET last_minute = $2 WHERE job_id = $1`, { bind: [taskId, plan.lastMinute], transaction: t });
    return plan;
  });
}

export async function setPaused(db: Sequelize, taskId: number, paused: boolean): Promise<void> {
  await db.query(`UPDATE id_tasks SET paused = $2 WHERE job_id = $1`, { bind: [taskId, paused] });
}

export function listSlots(db: Sequelize, taskId: number, minute: number | null, limit: number, offset: number): Promise<{ external_id: number; minute: number; state: SlotState; attempts: number; error: string | null }[]> {
  return select(
    db,
    `SELECT external_id, minute, state, attempts, error FROM id_task_slots WHERE task_id = $1 AND ($2::bigint IS NULL OR minute = $2)
      ORDER BY minute, external_id LIMIT $3 OFFSET $4`,
    [taskId, minute, limit, offset],
  );
}

export interface IdTaskRow {
  job_id: number;
  rpm: number;
  paused: boolean;
  first_minute: number;
  last_minute: number;
}

export async function getIdTasks(db: Sequelize, ids: number[]): Promise<Map<number, IdTaskRow>> {
  const rows = await select<IdTaskRow>(db, `SELECT * FROM id_tasks WHERE job_id = ANY($1::int[])`, [ids]);
  return new Map(rows.map((r) => [r.job_id, r]));
}

export async function slotCounts(db: Sequelize, taskIds: number[]): Promise<Map<number, Record<SlotState, number>>> {
  const rows = await select<{ task_id: number; state: SlotState; n: number }>(
    db,
    `SELECT task_id, state, count(*)::int AS n FROM id_task_slots WHERE task_id = ANY($1::int[]) GROUP BY task_id, state`,
    [taskIds],
  );
  const counts = new Map(taskIds.map((id) => [id, { planned: 0, dispatched: 0, running: 0, done: 0, failed: 0 }]));
  for (const r of rows) counts.get(r.task_id)![r.state] = r.n;
  return counts;
}

/**
 * Ids marked dispatched, at least `olderThanMs` ago, by a node that has left the cluster: it may
 * have died before sending them, so they are planned again. The age keeps a node that is alive
 * but not yet (or no longer, for a moment) in this node's registry from losing its ids to a
 * second dispatch.
 */
export async function replanOrphans(db: Sequelize, liveNodes: string[], olderThanMs: number): Promise<number> {
  const rows = await select(
    db,
    `UPDATE id_task_slots SET state = 'planned', dispatched_by = NULL, updated_at = now()
      WHERE state = 'dispatched' AND NOT (dispatched_by = ANY($1::text[])) AND updated_at < now() - $2 * interval '1 millisecond'
      RETURNING task_id`,
    [liveNodes, olderThanMs],
  );
  return rows.length;
}

/** Embedded mode's channel lived in memory: ids it held (dispatched or running) are planned again. */
export async function replanUndelivered(db: Sequelize): Promise<void> {
  await db.query(`UPDATE id_task_slots SET state = 'planned', updated_at = now() WHERE state IN ('dispatched', 'running')`);
}

/** What became of the ids planned in minutes [from, to): counts by state. */
export async function minutesSummary(db: Sequelize, from: number, to: number): Promise<Record<SlotState, number>> {
  const rows = await select<{ state: SlotState; n: number }>(db, `SELECT state, count(*)::int AS n FROM id_task_slots WHERE minute >= $1 AND minute < $2 GROUP BY state`, [from, to]);
  const counts: Record<SlotState, number> = { planned: 0, dispatched: 0, running: 0, done: 0, failed: 0 };
  for (const r of rows) counts[r.state] = r.n;
  return counts;
}

/** Claims minute `minute` for this node; false when another node has it. */
export async function claimMinute(db: Sequelize, minute: number, nodeId: string): Promise<boolean> {
  const rows = await select(db, `INSERT INTO dispatched_minutes (minute, node_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING minute`, [minute, nodeId]);
  return rows.length > 0;
}

/**
 * Takes the planned ids due by `minute` (overdue ones too: their dispatcher died, or their task
 * was paused) of tasks not paused, and marks them dispatched, so no later minute sends them again
 * (the durable channel holds them until a node has processed them).
 */
export function dispatchDue(db: Sequelize, minute: number, limit: number, nodeId: string): Promise<{ task_id: number; external_id: number }[]> {
  return select(
    db,
    `WITH due AS (
       SELECT s.task_id, s.external_id FROM id_task_slots s
         JOIN id_tasks t ON t.job_id = s.task_id AND NOT t.paused
         JOIN jobs j ON j.id = t.job_id AND j.status IN ('pending', 'running')
        WHERE s.state = 'planned' AND s.minute <= $1
        ORDER BY s.minute, s.task_id, s.external_id LIMIT $2
        FOR UPDATE OF s SKIP LOCKED)
     UPDATE id_task_slots s SET state = 'dispatched', dispatched_by = $3, updated_at = now() FROM due
      WHERE s.task_id = due.task_id AND s.external_id = due.external_id
     RETURNING s.task_id, s.external_id, s.minute`,
    [minute, limit, nodeId],
  ).then((rows) => (rows as { task_id: number; external_id: number; minute: number }[]).sort((a, b) => a.minute - b.minute || a.task_id - b.task_id || a.external_id - b.external_id));
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
export async function settleSlot(db: Sequelize, taskId: number, externalId: number, outcome: { ok: true } | { ok: false; error: string }): Promise<JobRow | null> {
  return db.transaction(async (t) => {
    const settled = await select(
      db,
      `UPDATE id_task_slots SET state = $3, error = $4, updated_at = now() WHERE task_id = $1 AND external_id = $2 AND state = 'running' RETURNING task_id`,
      [taskId, externalId, outcome.ok ? "done" : "failed", outcome.ok ? null : outcome.error],
      t,
    );
    if (settled.length === 0) return null;
    const [job] = await select<JobRow>(db, `UPDATE jobs SET progress_done = progress_done + 1, updated_at = now() WHERE id = $1 RETURNING *`, [taskId], t);
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
