// Maintenance that runs once across the cluster per period: every node tries, and the one whose
// insert of the period's row wins runs it.
import type { Sequelize } from "sequelize";
import { select } from "./query";

/** True for exactly one caller per (task, period). */
export async function claimMaintenance(db: Sequelize, task: string, period: number, nodeId: string): Promise<boolean> {
  const rows = await select(
    db,
    `INSERT INTO maintenance_runs (task, period, node_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING task`,
    [task, period, nodeId],
  );
  if (rows.length === 0) return false;
  // The winner prunes the task's old periods: the table only needs to settle the current one.
  await select(db, `DELETE FROM maintenance_runs WHERE task = $1 AND period < $2 - 10 RETURNING task`, [task, period]);
  return true;
}
