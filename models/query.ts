// The one query helper of the data layer: a parameterised SELECT (or a writing statement with
// RETURNING) answering plain rows. Every statement family in models/ takes the Sequelize
// instance, and an optional transaction, as its first arguments.
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { sqlStateOf } from "../lib/api/http-error";

export const select = <T extends object>(db: Sequelize, sql: string, bind: unknown[], transaction?: Transaction): Promise<T[]> =>
  db.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction });

/** The first row, or null. */
export const selectOne = async <T extends object>(
  db: Sequelize,
  sql: string,
  bind: unknown[],
  transaction?: Transaction,
): Promise<T | null> => (await select<T>(db, sql, bind, transaction))[0] ?? null;

// Postgres ends one transaction of a deadlock (40P01) or of a serialization conflict (40001) and
// asks for it to be run again: this many runs in all settle it.
const CONFLICT_RUNS = 3;

/** Runs `transaction` (a whole one: it must be safe to run again) again when Postgres ended it for a conflict. */
export async function retryOnConflict<T>(transaction: () => Promise<T>): Promise<T> {
  for (let run = 1; ; run++) {
    try {
      return await transaction();
    } catch (err) {
      const sqlState = sqlStateOf(err);
      if (run >= CONFLICT_RUNS || (sqlState !== "40P01" && sqlState !== "40001")) throw err;
    }
  }
}

// A filtered list's total is counted up to this many rows (a count that reads at most this much);
// past it the list says its total is a lower bound.
export const LIST_COUNT_CAP = 10_000;

/** A list's total, and whether it is only a lower bound (the count stopped at LIST_COUNT_CAP). */
export interface ListTotal {
  total: number;
  totalIsLowerBound?: true;
}

/** Counts the rows of `fromWhere` (`FROM … WHERE …`, binding `bind`) up to LIST_COUNT_CAP. */
export async function cappedCount(db: Sequelize, fromWhere: string, bind: unknown[]): Promise<ListTotal> {
  const row = await selectOne<{ n: number }>(
    db,
    `SELECT count(*)::int AS n FROM (SELECT 1 ${fromWhere} LIMIT $${bind.length + 1}) capped`,
    [...bind, LIST_COUNT_CAP + 1],
  );
  return row!.n > LIST_COUNT_CAP ? { total: LIST_COUNT_CAP, totalIsLowerBound: true } : { total: row!.n };
}
