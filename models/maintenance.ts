// Maintenance that runs once across the cluster per period: every node tries, and the one whose
// insert of the period's row wins runs it.
import type { Sequelize } from "sequelize";
import { quoteIdent } from "../lib/loading/import-format";
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

// autovacuum's default thresholds (autovacuum_*_threshold + autovacuum_*_scale_factor × rows).
const ANALYZE_BASE = 50;
const ANALYZE_SCALE = 0.1;
const VACUUM_BASE = 50;
const VACUUM_SCALE = 0.2;
const INSERT_VACUUM_BASE = 1000;
const INSERT_VACUUM_SCALE = 0.2;

/**
 * autovacuum's routine work, for the embedded PGlite, which runs no background workers: each
 * table past autovacuum's default thresholds for dead rows or inserts is vacuumed and analyzed,
 * each past its threshold for changes since the last ANALYZE is analyzed. (Not its
 * anti-wraparound freezing: an embedded database does not live through 2^31 transactions.)
 * Without statistics the planner takes a large frontier for an empty one and sorts all of it at
 * every lease (measured on PGlite: 255 ms a lease at 100,000 queued URLs, 0.6 ms once analyzed),
 * and without VACUUM the frontier's updated rows are never reclaimed. A table that fails (an
 * import's staging, dropped meanwhile) is left for the next period. Answers what it did, as
 * `VACUUM t` or `ANALYZE t`.
 */
export async function autovacuumStandIn(db: Sequelize): Promise<string[]> {
  const tables = await select<{ name: string; dead: number; inserted: number; changed: number; rows: number }>(
    db,
    `SELECT s.relname AS name, s.n_dead_tup::float8 AS dead, s.n_ins_since_vacuum::float8 AS inserted,
            s.n_mod_since_analyze::float8 AS changed, greatest(c.reltuples, 0)::float8 AS rows
       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
      WHERE s.schemaname = current_schema()
      ORDER BY s.relname`,
    [],
  );
  const done: string[] = [];
  for (const t of tables) {
    const vacuum = t.dead > VACUUM_BASE + VACUUM_SCALE * t.rows || t.inserted > INSERT_VACUUM_BASE + INSERT_VACUUM_SCALE * t.rows;
    const analyze = t.changed > ANALYZE_BASE + ANALYZE_SCALE * t.rows;
    if (!vacuum && !analyze) continue;
    try {
      await db.query(vacuum ? `VACUUM (ANALYZE) ${quoteIdent(t.name)}` : `ANALYZE ${quoteIdent(t.name)}`);
      done.push(`${vacuum ? "VACUUM" : "ANALYZE"} ${t.name}`);
    } catch {
      // Gone since it was listed, or busy: the next period sees it again.
    }
  }
  return done;
}
