// The rows table of the bulk-insert job: clearing it, and a sortable, searchable list.
import type { Sequelize } from "sequelize";
import { countOf } from "./counts";
import { escapeLike } from "../lib/api/params";
import { cappedCount, select, type ListTotal } from "./query";

// How long a clear waits for running insert jobs before it gives up (409), rather than queueing
// every reader of the table behind its lock.
const CLEAR_LOCK_TIMEOUT = "3s";

/** Empties the table; answers how many rows it held. Null when running insert jobs hold it. */
export async function clearRows(db: Sequelize): Promise<number | null> {
  return db.transaction(async (t) => {
    await db.query(`SET LOCAL lock_timeout = '${CLEAR_LOCK_TIMEOUT}'`, { transaction: t });
    try {
      await db.query(`LOCK TABLE rows IN ACCESS EXCLUSIVE MODE`, { transaction: t });
    } catch (err) {
      if ((err as { parent?: { code?: string } }).parent?.code === "55P03") return null;
      throw err;
    }
    // Under the lock no insert job is writing: the count is exact.
    const n = await countOf(db, "rows", t);
    await db.query(`TRUNCATE rows`, { transaction: t });
    return n;
  });
}

export const ROW_SORTS = ["id", "-id", "name", "-name", "value", "-value"] as const;
export type RowSort = (typeof ROW_SORTS)[number];

/**
 * A page of rows in a sort order of the allow-list, filtered by `q` in the name. Unfiltered, the
 * total is the kept count (a count(*) of millions of rows would hold a connection); a search is
 * counted up to the cap.
 */
export async function listRows(
  db: Sequelize,
  f: { q?: string; sort?: RowSort; limit: number; offset: number },
): Promise<{ rows: { id: number; name: string; value: number; createdAt: Date }[] } & ListTotal> {
  const sort = f.sort ?? "id";
  const order = `${sort.replace(/^-/, "")} ${sort.startsWith("-") ? "DESC" : "ASC"}, id`;
  const like = f.q ? `%${escapeLike(f.q)}%` : null;
  const [rows, total] = await Promise.all([
    select<{ id: string; name: string; value: number; created_at: Date }>(
      db,
      `SELECT id, name, value, created_at FROM rows WHERE ($1::text IS NULL OR name ILIKE $1) ORDER BY ${order} LIMIT $2 OFFSET $3`,
      [like, f.limit, f.offset],
    ),
    like === null ? countOf(db, "rows").then((n) => ({ total: n })) : cappedCount(db, "FROM rows WHERE name ILIKE $1", [like]),
  ]);
  return { rows: rows.map((r) => ({ id: Number(r.id), name: r.name, value: r.value, createdAt: r.created_at })), ...total };
}
