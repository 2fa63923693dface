// Recurring schedules in SQL (migrations/0009): the API's reads and writes, and the statements
// of a tick, which the schedules service runs in one transaction: claim the due schedules, record
// each fired tick's run, move each schedule on.
import type { Sequelize, Transaction } from "sequelize";
import type { MisfirePolicy } from "../lib/scheduling/cron";
import { cappedCount, select, selectOne, type ListTotal } from "./query";

export const SCHEDULE_KINDS = ["crawl", "insert", "import"] as const;
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

export interface ScheduleRow {
  id: number;
  cron: string;
  timezone: string;
  misfire: MisfirePolicy;
  job_kind: ScheduleKind;
  job_params: Record<string, unknown>;
  paused: boolean;
  next_run_at: Date | null;
  last_run_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface ScheduleRunRow {
  schedule_id: number;
  fire_at: Date;
  job_id: number | null;
  node_id: string;
  error: string | null;
  created_at: Date;
}

export interface NewSchedule {
  cron: string;
  timezone: string;
  misfire: MisfirePolicy;
  kind: ScheduleKind;
  params: Record<string, unknown>;
  nextRunAt: Date | null;
}

/** What a PATCH changes; `nextRunAt` is always written (null while paused). */
export interface ScheduleChange {
  cron: string;
  timezone: string;
  misfire: MisfirePolicy;
  paused: boolean;
  nextRunAt: Date | null;
}

export async function insertSchedule(db: Sequelize, s: NewSchedule): Promise<ScheduleRow> {
  return (await selectOne<ScheduleRow>(
    db,
    `INSERT INTO schedules (cron, timezone, misfire, job_kind, job_params, next_run_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
    [s.cron, s.timezone, s.misfire, s.kind, JSON.stringify(s.params), s.nextRunAt],
  ))!;
}

export function getSchedule(db: Sequelize, id: number): Promise<ScheduleRow | null> {
  return selectOne<ScheduleRow>(db, `SELECT * FROM schedules WHERE id = $1`, [id]);
}

export async function listSchedules(db: Sequelize, limit: number, offset: number): Promise<{ rows: ScheduleRow[] } & ListTotal> {
  const [rows, total] = await Promise.all([
    select<ScheduleRow>(db, `SELECT * FROM schedules ORDER BY id DESC LIMIT $1 OFFSET $2`, [limit, offset]),
    cappedCount(db, `FROM schedules`, []),
  ]);
  return { rows, ...total };
}

/** A schedule's latest runs, newest first. */
export function recentRuns(db: Sequelize, id: number, limit: number): Promise<ScheduleRunRow[]> {
  return select<ScheduleRunRow>(db, `SELECT * FROM schedule_runs WHERE schedule_id = $1 ORDER BY fire_at DESC LIMIT $2`, [id, limit]);
}

/**
 * Changes a schedule under its row lock: `change` sees the row as it is (a tick cannot move it
 * meanwhile) and answers what to write. Null for an unknown schedule.
 */
export function updateSchedule(db: Sequelize, id: number, change: (row: ScheduleRow) => ScheduleChange): Promise<ScheduleRow | null> {
  return db.transaction(async (t) => {
    const row = await selectOne<ScheduleRow>(db, `SELECT * FROM schedules WHERE id = $1 FOR UPDATE`, [id], t);
    if (!row) return null;
    const c = change(row);
    return selectOne<ScheduleRow>(
      db,
      `UPDATE schedules SET cron = $2, timezone = $3, misfire = $4, paused = $5, next_run_at = $6, updated_at = now()
        WHERE id = $1 RETURNING *`,
      [id, c.cron, c.timezone, c.misfire, c.paused, c.nextRunAt],
      t,
    );
  });
}

/** Deletes a schedule and its runs (their jobs stay). Null for an unknown schedule. */
export function deleteSchedule(db: Sequelize, id: number): Promise<ScheduleRow | null> {
  return selectOne<ScheduleRow>(db, `DELETE FROM schedules WHERE id = $1 RETURNING *`, [id]);
}

/**
 * Locks up to `limit` due schedules for `t`, earliest tick first, skipping those another node's
 * tick holds. `now` is the database's clock (the transaction's start), which every node shares.
 */
export function claimDueSchedules(db: Sequelize, limit: number, t: Transaction): Promise<(ScheduleRow & { now: Date })[]> {
  return select<ScheduleRow & { now: Date }>(
    db,
    `SELECT s.*, now() AS now FROM schedules s
      WHERE NOT paused AND next_run_at <= now()
      ORDER BY next_run_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit],
    t,
  );
}

/** Records a fired tick: its job, or why it has none. */
export async function insertRun(
  db: Sequelize,
  run: { scheduleId: number; fireAt: Date; jobId: number | null; nodeId: string; error?: string },
  t: Transaction,
): Promise<void> {
  await db.query(`INSERT INTO schedule_runs (schedule_id, fire_at, job_id, node_id, error) VALUES ($1, $2, $3, $4, $5)`, {
    bind: [run.scheduleId, run.fireAt, run.jobId, run.nodeId, run.error ?? null],
    transaction: t,
  });
}

/** Moves a claimed schedule to its next tick; `ran` when this tick made a run. */
export async function advanceSchedule(db: Sequelize, id: number, nextRunAt: Date | null, ran: boolean, t: Transaction): Promise<void> {
  await db.query(
    `UPDATE schedules SET next_run_at = $2, last_run_at = CASE WHEN $3 THEN now() ELSE last_run_at END, updated_at = now() WHERE id = $1`,
    { bind: [id, nextRunAt, ran], transaction: t },
  );
}
