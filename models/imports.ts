// Imports in SQL: the target table's columns from the catalog, the staging table an upload is
// parsed into (import_staging_<job id>, unlogged), its move into the target in block ranges, and
// the sweep that fails uploads whose node died and drops staging no job needs any more.
import type { ClientBase } from "pg";
import type { Sequelize, Transaction } from "sequelize";
import { quoteIdent, quoteTable, type CatalogColumn, type ImportSpec } from "../lib/loading/import-format";
import { select, selectOne } from "./query";

/** What an import's job row carries beside done/total (jobs.progress_detail). */
export interface ImportProgress {
  phase: "uploading" | "staged" | "loading";
  /** Bytes of the file received (after gzip is undone). */
  bytes: number;
  /** Rows parsed into staging so far (uploading), or staged in all. */
  rowsStaged: number;
}

export const stagingTable = (jobId: number): string => `import_staging_${jobId}`;

/** The table's columns in order, or null when there is no such table. */
export async function catalogColumns(db: Sequelize, table: string, transaction?: Transaction): Promise<CatalogColumn[] | null> {
  const rows = await select<{ name: string; type: string; generated: boolean; exists: boolean }>(
    db,
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, (a.attidentity = 'a' OR a.attgenerated <> '') AS generated
       FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [quoteTable(table)],
    transaction,
  );
  return rows.length === 0 ? null : rows.map((r) => ({ name: r.name, type: r.type, generated: r.generated }));
}

/**
 * Creates the staging table of an upload, inside the upload's transaction: the import's
 * columns with the target's types and NOT NULLs, so COPY checks every value (with its line)
 * before the 202, and the move into the target re-parses nothing.
 */
export async function createStaging(db: Sequelize, jobId: number, spec: ImportSpec, t: Transaction): Promise<void> {
  const staging = stagingTable(jobId);
  // Held until the upload's transaction ends: while it is held, the upload is alive (sweepImports).
  await select(db, `SELECT pg_advisory_xact_lock(${UPLOAD_LOCK}, $1)`, [jobId], t);
  const cols = spec.columns.map(quoteIdent).join(", ");
  await db.query(`CREATE UNLOGGED TABLE ${staging} AS SELECT ${cols} FROM ${quoteTable(spec.table)} WITH NO DATA`, { transaction: t });
  const notNull = await select<{ name: string }>(
    db,
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnotnull AND attname = ANY($2::text[])`,
    [quoteTable(spec.table), spec.columns],
    t,
  );
  for (const { name } of notNull)
    await db.query(`ALTER TABLE ${staging} ALTER COLUMN ${quoteIdent(name)} SET NOT NULL`, { transaction: t });
}

/** The staging table's size in blocks, or null when it is gone. */
export async function stagingBlocks(db: Sequelize, jobId: number, t: Transaction): Promise<number | null> {
  const row = await selectOne<{ blocks: number | null }>(
    db,
    `SELECT pg_relation_size(to_regclass($1)) / current_setting('block_size')::int AS blocks`,
    [stagingTable(jobId)],
    t,
  );
  return row?.blocks ?? null;
}

/**
 * Moves the staged rows of blocks [from, to) into the target (a TID range scan reads just
 * those blocks). Answers the rows moved. A whole import is many of these in one transaction.
 */
export async function moveStagedBlocks(client: ClientBase, jobId: number, spec: ImportSpec, from: number, to: number): Promise<number> {
  const cols = spec.columns.map(quoteIdent).join(", ");
  const result = await client.query(
    `INSERT INTO ${quoteTable(spec.table)} (${cols}) SELECT ${cols} FROM ${stagingTable(jobId)}
      WHERE ctid >= '(${from},0)'::tid AND ctid < '(${to},0)'::tid`,
  );
  return result.rowCount ?? 0;
}

export async function dropStaging(db: Sequelize, jobId: number, t?: Transaction): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${stagingTable(jobId)}`, { transaction: t });
}

/** Records an upload's progress. False when the job was stopped meanwhile. */
export async function recordUpload(db: Sequelize, jobId: number, progress: ImportProgress, total: number | null = null): Promise<boolean> {
  const row = await selectOne(
    db,
    `UPDATE jobs SET progress_detail = $2, progress_total = coalesce($3, progress_total), heartbeat_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'pending' RETURNING id`,
    [jobId, JSON.stringify(progress), total],
  );
  return row !== null;
}

// The first key of the advisory lock an upload holds (the second is its job id).
const UPLOAD_LOCK = 7270;

/** SQL true for an import job whose upload has not finished (no runner may claim it). */
export const UPLOADING = `(kind = 'import' AND coalesce(progress_detail->>'phase' = 'uploading', false))`;

/**
 * Fails uploads whose transaction is gone (its node died mid-upload, and Postgres rolled the
 * staging table back): nobody holds their lock. `graceMs` covers the moment between a job's
 * creation and its upload's first statement. Drops staging tables whose job has ended or is
 * gone. Answers the failed jobs' ids and the tables dropped.
 */
export async function sweepImports(db: Sequelize, graceMs: number): Promise<{ failed: number[]; dropped: number }> {
  // The try-lock is taken (and let go) by this statement alone; a live upload holds it, and is skipped.
  const failed = await select<{ id: number }>(
    db,
    `UPDATE jobs SET status = 'failed', error = 'upload interrupted', finished_at = now(), updated_at = now()
      WHERE status = 'pending' AND ${UPLOADING} AND created_at < now() - $1 * interval '1 millisecond'
        AND pg_try_advisory_xact_lock(${UPLOAD_LOCK}, id) RETURNING id`,
    [graceMs],
  );
  const orphans = await select<{ relname: string }>(
    db,
    `SELECT c.relname FROM pg_class c
      WHERE c.relkind = 'r' AND c.relname ~ '^import_staging_[0-9]+$' AND c.relnamespace = current_schema()::regnamespace
        AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = substring(c.relname FROM 16)::int AND j.status IN ('pending', 'running'))`,
    [],
  );
  for (const { relname } of orphans) await db.query(`DROP TABLE IF EXISTS ${quoteIdent(relname)}`);
  return { failed: failed.map((r) => r.id), dropped: orphans.length };
}
