// The rows table of the bulk-insert job: a sequelize model for moleculer-db's reads, and the
// batch insert the job runs inside its transaction.
import { DataTypes, QueryTypes, type Model, type ModelStatic, type Sequelize, type Transaction } from "sequelize";
import type { RowBatch } from "../lib/loading/random-rows";
import { selectOne } from "./query";

export function defineRow(db: Sequelize): ModelStatic<Model> {
  return (
    db.models.Row ??
    db.define(
      "Row",
      {
        id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
        name: { type: DataTypes.TEXT, allowNull: false },
        value: { type: DataTypes.INTEGER, allowNull: false },
        createdAt: { type: DataTypes.DATE, field: "created_at" },
      },
      { tableName: "rows", timestamps: false },
    )
  );
}

export async function insertRowBatch(db: Sequelize, batch: RowBatch, transaction: Transaction): Promise<void> {
  await db.query(`INSERT INTO rows (name, value) SELECT * FROM unnest($1::text[], $2::integer[])`, {
    bind: [batch.names, batch.values],
    transaction,
    type: QueryTypes.INSERT,
  });
}

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
    const row = await selectOne<{ n: number }>(db, `SELECT count(*)::int AS n FROM rows`, [], t);
    await db.query(`TRUNCATE rows`, { transaction: t });
    return row!.n;
  });
}
