// A job's history (job_events, written by the job_history trigger on every status change or new
// attempt, whatever statement made it), oldest first.
import type { Sequelize } from "sequelize";
import { select, selectOne } from "./query";

export interface JobEventRow {
  id: number;
  job_id: number;
  at: Date;
  type: string;
  status: string;
  attempt: number;
  node_id: string | null;
  error: string | null;
}

export interface JobEventView {
  id: number;
  at: Date;
  /** created, attempt, running, retry, handed back, error, stopped, succeeded or failed. */
  type: string;
  status: string;
  attempt: number;
  nodeId: string | null;
  error: string | null;
}

export const presentJobEvent = (e: JobEventRow): JobEventView => ({
  id: Number(e.id),
  at: e.at,
  type: e.type,
  status: e.status,
  attempt: e.attempt,
  nodeId: e.node_id,
  error: e.error,
});

export async function listJobEvents(
  db: Sequelize,
  jobId: number,
  limit: number,
  offset: number,
): Promise<{ rows: JobEventRow[]; total: number }> {
  const [rows, count] = await Promise.all([
    select<JobEventRow>(db, `SELECT * FROM job_events WHERE job_id = $1 ORDER BY id LIMIT $2 OFFSET $3`, [jobId, limit, offset]),
    selectOne<{ n: number }>(db, `SELECT count(*)::int AS n FROM job_events WHERE job_id = $1`, [jobId]),
  ]);
  return { rows, total: count!.n };
}
