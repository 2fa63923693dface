// The fetch history (page_fetches), partitioned by month, and the maintenance that keeps its
// partitions: made ahead of time, dropped past the retention. pg_partman is the model (premade
// partitions, a default partition for strays, retention by dropping whole partitions) without
// the extension, so it runs on any Postgres and on PGlite. Months are UTC months.
import type { Sequelize, Transaction } from "sequelize";
import { cappedCount, select, type ListTotal } from "./query";

/** The months made ahead of the current one, so a crawl never waits for a partition. */
export const FETCH_PARTITIONS_AHEAD = 3;

/** One request a crawl made for a URL. */
export interface FetchHistoryRecord {
  url: string;
  crawlId: number;
  outcome: "fetched" | "unchanged" | "failed" | "skipped";
  status: number | null;
  /** Bytes over the wire. */
  bytes: number;
  durationMs: number;
  etag: string | null;
  lastModified: string | null;
  contentHash: string | null;
  fetchedAt: string;
}

const HISTORY_COLUMNS = [
  "url",
  "crawl_id",
  "outcome",
  "status",
  "bytes",
  "duration_ms",
  "etag",
  "last_modified",
  "content_hash",
  "fetched_at",
];
const HISTORY_TYPES = ["text", "int", "text", "int", "int", "int", "text", "text", "text", "timestamptz"];

/**
 * Inserts history rows in one statement, one array per column from parameter `firstParam`, the
 * rows named `h` for a `filter` (`WHERE …`, or a join) to keep some. A row already there (a
 * redelivered page message: same URL, same fetch time) is left as it is.
 */
export function insertHistoryStatement(rows: FetchHistoryRecord[], firstParam = 1, filter = ""): { sql: string; bind: unknown[] } {
  const bind = [
    rows.map((r) => r.url),
    rows.map((r) => r.crawlId),
    rows.map((r) => r.outcome),
    rows.map((r) => r.status),
    rows.map((r) => r.bytes),
    rows.map((r) => r.durationMs),
    rows.map((r) => r.etag),
    rows.map((r) => r.lastModified),
    rows.map((r) => r.contentHash),
    rows.map((r) => r.fetchedAt),
  ];
  const arrays = HISTORY_TYPES.map((type, i) => `$${firstParam + i}::${type}[]`).join(", ");
  const columns = HISTORY_COLUMNS.join(", ");
  const sql = `INSERT INTO page_fetches (${columns}) SELECT h.* FROM unnest(${arrays}) AS h(${columns}) ${filter} ON CONFLICT DO NOTHING`;
  return { sql, bind };
}

export async function recordHistory(db: Sequelize, rows: FetchHistoryRecord[], transaction?: Transaction): Promise<void> {
  if (rows.length === 0) return;
  const { sql, bind } = insertHistoryStatement(rows);
  await db.query(sql, { bind, transaction });
}

/** A fetch as listFetches reads it back: without its URL (the one asked for), its crawl gone if deleted since. */
export interface FetchHistoryRow extends Omit<FetchHistoryRecord, "url" | "crawlId" | "fetchedAt"> {
  fetchedAt: Date;
  crawlId: number | null;
}

/** A URL's fetches, latest first; `since`/`until` bound the time range (and so the partitions read). */
export async function listFetches(
  db: Sequelize,
  url: string,
  f: { since?: Date; until?: Date; limit: number; offset: number },
): Promise<{ rows: FetchHistoryRow[] } & ListTotal> {
  const where = `FROM page_fetches WHERE url = $1 AND ($2::timestamptz IS NULL OR fetched_at >= $2) AND ($3::timestamptz IS NULL OR fetched_at < $3)`;
  const bind = [url, f.since ?? null, f.until ?? null];
  const [rows, total] = await Promise.all([
    select<FetchHistoryRow>(
      db,
      `SELECT fetched_at AS "fetchedAt", crawl_id AS "crawlId", outcome, status, bytes, duration_ms AS "durationMs",
              etag, last_modified AS "lastModified", content_hash AS "contentHash"
         ${where} ORDER BY fetched_at DESC LIMIT $4 OFFSET $5`,
      [...bind, f.limit, f.offset],
    ),
    cappedCount(db, where, bind),
  ]);
  return { rows, ...total };
}

/** The first instant (UTC) of the month `offset` months after the month of `at`. */
export const monthStart = (at: Date, offset = 0): Date => new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + offset, 1));

/** page_fetches_pYYYYMM: the partition of the month starting at `start`. */
export const partitionName = (start: Date): string =>
  `page_fetches_p${start.getUTCFullYear()}${String(start.getUTCMonth() + 1).padStart(2, "0")}`;

const PARTITION_NAME = /^page_fetches_p(\d{4})(\d{2})$/;

/** The month partitions that exist, by their month's start, oldest first. */
export async function fetchPartitions(db: Sequelize): Promise<{ name: string; start: Date }[]> {
  const rows = await select<{ name: string }>(
    db,
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'page_fetches'::regclass`,
    [],
  );
  return rows
    .map((r) => ({ name: r.name, m: PARTITION_NAME.exec(r.name) }))
    .filter((r): r is { name: string; m: RegExpExecArray } => r.m !== null)
    .map((r) => ({ name: r.name, start: new Date(Date.UTC(Number(r.m[1]), Number(r.m[2]) - 1, 1)) }))
    .sort((a, b) => a.start.getTime() - b.start.getTime());
}

/**
 * Makes the partitions of the current month and the FETCH_PARTITIONS_AHEAD after it, and drops
 * those whose whole month is older than `retentionMonths` before `now`; rows of the default
 * partition past the retention go too. Returns what it did. Run once across the cluster
 * (claimMaintenance); a second run changes nothing.
 */
export async function maintainFetchPartitions(
  db: Sequelize,
  now: Date,
  retentionMonths: number,
): Promise<{ created: string[]; dropped: string[] }> {
  const existing = new Set((await fetchPartitions(db)).map((p) => p.name));
  const created: string[] = [];
  for (let offset = 0; offset <= FETCH_PARTITIONS_AHEAD; offset++) {
    const start = monthStart(now, offset);
    if (existing.has(partitionName(start))) continue;
    await createPartition(db, start);
    created.push(partitionName(start));
  }
  // A month is dropped once its end is more than the retention ago: nothing in it is younger.
  const cutoff = new Date(now);
  cutoff.setUTCMonth(cutoff.getUTCMonth() - retentionMonths);
  const dropped: string[] = [];
  for (const p of await fetchPartitions(db)) {
    if (monthStart(p.start, 1) > cutoff) continue;
    await db.query(`DROP TABLE ${p.name}`);
    dropped.push(p.name);
  }
  await db.query(`DELETE FROM page_fetches_default WHERE fetched_at < $1`, { bind: [cutoff] });
  return { created, dropped };
}

/**
 * Makes one month's partition. Rows of that month already in the default partition (written
 * while it was missing) move into it: the partition is built as a table, filled from the
 * default, and attached, with writers held off by the lock for that short while, so that no
 * row is ever in both places or in neither.
 */
async function createPartition(db: Sequelize, start: Date): Promise<void> {
  const name = partitionName(start);
  const bounds = [start.toISOString(), monthStart(start, 1).toISOString()];
  await db.transaction(async (t) => {
    // Writers wait (readers do not) until the rows have moved and the partition is attached.
    await db.query(`LOCK TABLE page_fetches IN EXCLUSIVE MODE`, { transaction: t });
    // Another node may have made it meanwhile (claimMaintenance makes that rare, not impossible).
    const [exists] = await select(db, `SELECT 1 FROM pg_class WHERE relname = $1 AND relkind = 'r'`, [name], t);
    if (exists) return;
    await db.query(`CREATE TABLE ${name} (LIKE page_fetches INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, { transaction: t });
    await db.query(
      `WITH moved AS (DELETE FROM page_fetches_default WHERE fetched_at >= $1 AND fetched_at < $2 RETURNING *)
       INSERT INTO ${name} SELECT * FROM moved`,
      { bind: bounds, transaction: t },
    );
    await db.query(`ALTER TABLE page_fetches ATTACH PARTITION ${name} FOR VALUES FROM ('${bounds[0]}') TO ('${bounds[1]}')`, {
      transaction: t,
    });
  });
}
