// Row counts that stay cheap at any table size (table_counts): each writing statement adds a
// delta row in its own transaction, so a count is a sum over few rows, exact, and never waits
// for a writer. pages and users are counted by statement triggers, rows by its
// writers (the insert job, with its commit); a TRUNCATE trigger sets any of them back to 0.
import type { Sequelize, Transaction } from "sequelize";
import { select, selectOne } from "./query";

export type CountedTable = "rows" | "pages" | "users";

export async function countOf(db: Sequelize, table: CountedTable, transaction?: Transaction): Promise<number> {
  const row = await selectOne<{ n: string | null }>(
    db,
    `SELECT sum(delta) AS n FROM table_counts WHERE table_name = $1`,
    [table],
    transaction,
  );
  return Number(row?.n ?? 0);
}

/** Whether a table's count is kept by its writers (rows), not by triggers: a bulk load into it adds its rows itself. */
export const countedByWriters = (table: string): boolean => table === "rows" || table === "public.rows";

/** Adds `delta` to a table's count, inside the transaction that wrote the rows. */
export async function addToCount(db: Sequelize, table: CountedTable, delta: number, transaction: Transaction): Promise<void> {
  await select(db, `INSERT INTO table_counts (table_name, delta) VALUES ($1, $2) RETURNING id`, [table, delta], transaction);
}

/** Folds each table's deltas into one row (maintenance), so that a count stays a sum over few rows. */
export async function foldCounts(db: Sequelize): Promise<number> {
  const folded = await select<{ table_name: string }>(
    db,
    `WITH gone AS (DELETE FROM table_counts RETURNING table_name, delta)
     INSERT INTO table_counts (table_name, delta) SELECT table_name, sum(delta) FROM gone GROUP BY table_name RETURNING table_name`,
    [],
  );
  return folded.length;
}
