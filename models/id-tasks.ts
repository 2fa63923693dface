// Id-tasks in SQL: planning ids onto the shared calendar and reading the plan (dispatching a
// minute and settling each id: id-dispatch.ts). An id-task is a job of kind 'id-task' (progress: ids settled of ids planned).
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
async function planInto(
  db: Sequelize,
  t: Transaction,
  taskId: number,
  ids: Iterable<number>,
  rpm: number,
  minuteMs: number,
  now: number,
): Promise<TaskPlan> {
  await db.query(`SELECT pg_advisory_xact_lock(hashtext('sluice:calendar'))`, { transaction: t });
  const first = minuteOf(now, minuteMs) + 1;
  const hourStart = Math.floor(first / MINUTES_PER_HOUR) * MINUTES_PER_HOUR;
  const fill = new Array<number>(2 * MINUTES_PER_HOUR).fill(0);
  for (const r of await select<{ minute: number; planned: number }>(
    db,
    `SELECT minute, planned FROM calendar WHERE minute >= $1 AND minute < $2`,
    [hourStart, hourStart + 2 * MINUTES_PER_HOUR],
    t,
  )) {
    fill[r.minute - hourStart] = r.planned;
  }
  const iterator = ids[Symbol.iterator]();
  const source = { [Symbol.iterator]: () => iterator };
  function* slots(): Generator<MinutePick> {
    for (const s of planMinutes(source, rpm, fill.slice(0, MINUTES_PER_HOUR), { from: first - hourStart, disperse: false }))
      yield { id: s.id, minute: hourStart + s.minute };
    for (const s of planMinutes(source, rpm, fill.slice(MINUTES_PER_HOUR)))
      yield { id: s.id, minute: hourStart + MINUTES_PER_HOUR + s.minute };
  }
  const perMinute = new Map<number, number>();
  let batchIds: number[] = [];
  let batchMinutes: number[] = [];
  const flush = async () => {
    if (batchIds.length === 0) return;
    await db.query(`INSERT INTO id_task_slots (task_id, external_id, minute) SELECT $1, * FROM unnest($2::bigint[], $3::bigint[])`, {
      bind: [taskId, batchIds, batchMinutes],
      transaction: t,
    });
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
  await addToCalendar(
    db,
    t,
    minutes,
    minutes.map((m) => perMinute.get(m)!),
  );
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

export async function createIdTask(
  db: Sequelize,
  ids: number[],
  rpm: number,
  minuteMs: number,
  now = Date.now(),
): Promise<{ job: JobRow; plan: TaskPlan }> {
  return db.transaction(async (t) => {
    const job = await createJob(db, "id-task", { rpm, ids: ids.length }, ids.length, t);
    // The task row first (slots reference it), with its minutes filled in once planned.
    await db.query(`INSERT INTO id_tasks (job_id, rpm, first_minute, last_minute) VALUES ($1, $2, 0, 0)`, {
      bind: [job.id, rpm],
      transaction: t,
    });
    const plan = await planInto(db, t, job.id, ids, rpm, minuteMs, now);
    await db.query(`UPDATE id_tasks SET first_minute = $2, last_minute = $3 WHERE job_id = $1`, {
      bind: [job.id, plan.firstMinute, plan.lastMinute],
      transaction: t,
    });
    return { job, plan };
  });
}

/**
 * Plans again, at a new RPM, the ids of a task that are not dispatched yet (from the next
 * minute on). Null when nothing is left to plan.
 */
export async function replanIdTask(
  db: Sequelize,
  taskId: number,
  rpm: number,
  minuteMs: number,
  now = Date.now(),
): Promise<TaskPlan | null> {
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

export function listSlots(
  db: Sequelize,
  taskId: number,
  minute: number | null,
  limit: number,
  offset: number,
): Promise<{ external_id: number; minute: number; state: SlotState; attempts: number; error: string | null }[]> {
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
  const rows = await select<{ state: SlotState; n: number }>(
    db,
    `SELECT state, count(*)::int AS n FROM id_task_slots WHERE minute >= $1 AND minute < $2 GROUP BY state`,
    [from, to],
  );
  const counts: Record<SlotState, number> = { planned: 0, dispatched: 0, running: 0, done: 0, failed: 0 };
  for (const r of rows) counts[r.state] = r.n;
  return counts;
}

/** The task's plan per minute: how many of its ids each minute holds, by state (the console's heatmap). */
export async function minuteFill(db: Sequelize, taskId: number): Promise<{ minute: number; counts: Record<SlotState, number> }[]> {
  const rows = await select<{ minute: string; state: SlotState; n: number }>(
    db,
    `SELECT minute, state, count(*)::int AS n FROM id_task_slots WHERE task_id = $1 GROUP BY minute, state ORDER BY minute`,
    [taskId],
  );
  const byMinute = new Map<number, Record<SlotState, number>>();
  for (const r of rows) {
    const minute = Number(r.minute);
    const counts = byMinute.get(minute) ?? (Object.fromEntries(SLOT_STATES.map((st) => [st, 0])) as Record<SlotState, number>);
    counts[r.state] = r.n;
    byMinute.set(minute, counts);
  }
  return [...byMinute].map(([minute, counts]) => ({ minute, counts }));
}
