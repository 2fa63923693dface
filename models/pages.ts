// The pages table: the Sequelize model behind the pages API, and the ingestor's batch upsert.
import { DataTypes, QueryTypes, type ModelStatic, type Model, type Sequelize, type Transaction } from "sequelize";
import { escapeLike } from "../lib/api/params";
import { countOf } from "./counts";
import type { FetchHistoryRecord } from "./page-fetches";
import { cappedCount, select, selectOne, type ListTotal } from "./query";

/** One fetched page as the crawler sends it on the pages channel and the ingestor stores it. */
export interface PageRecord {
  crawlId: number;
  url: string;
  depth: number;
  status: number;
  contentType: string;
  title: string | null;
  body: string;
  bytes: number;
  links: number;
  fetchedAt: string;
  /** What the server said about this copy: a recrawl sends them back (If-None-Match, If-Modified-Since). */
  etag: string | null;
  lastModified: string | null;
  /** sha256 (hex) of the body: a recrawl whose body has this hash leaves the row as it is. */
  contentHash: string;
  /**
   * Every link the page holds, absolute: a recrawl that finds it unchanged follows these. null
   * when they would not fit in the message; that page's recrawl then fetches it in full.
   */
  outlinks: string[] | null;
  /** For the fetch's history row: bytes over the wire, and how long the fetch took. */
  wireBytes: number;
  durationMs: number;
}

/** The pages table (created by migrations, never by sync()), with camelCase attribute names for the API. */
export function definePage(db: Sequelize): ModelStatic<Model> {
  return (
    db.models.Page ??
    db.define(
      "Page",
      {
        id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
        url: { type: DataTypes.TEXT, allowNull: false, unique: true },
        crawlId: { type: DataTypes.INTEGER, field: "crawl_id" },
        status: { type: DataTypes.INTEGER, allowNull: false },
        title: DataTypes.TEXT,
        contentType: { type: DataTypes.TEXT, field: "content_type" },
        body: DataTypes.TEXT,
        bytes: { type: DataTypes.INTEGER, allowNull: false },
        links: { type: DataTypes.INTEGER, allowNull: false },
        depth: { type: DataTypes.INTEGER, allowNull: false },
        fetchedAt: { type: DataTypes.DATE, field: "fetched_at" },
        storedAt: { type: DataTypes.DATE, field: "stored_at" },
        etag: DataTypes.TEXT,
        lastModified: { type: DataTypes.TEXT, field: "last_modified" },
        contentHash: { type: DataTypes.TEXT, field: "content_hash" },
        outlinks: DataTypes.ARRAY(DataTypes.TEXT),
      },
      { tableName: "pages", timestamps: false },
    )
  );
}

const PAGE_COLUMNS = [
  "url",
  "crawl_id",
  "status",
  "title",
  "content_type",
  "body",
  "bytes",
  "links",
  "depth",
  "fetched_at",
  "etag",
  "last_modified",
  "content_hash",
  "outlinks",
] as const;
const UPDATES = PAGE_COLUMNS.filter((c) => c !== "url").map((c) => `${c} = EXCLUDED.${c}`);

/**
 * A batch as one statement may upsert it: one row per URL (redelivery can put a page in a batch
 * twice, and one statement may not upsert a row twice), sorted so that two batches sharing URLs
 * lock rows in the same order.
 */
export const distinctPagesByUrl = (batch: PageRecord[]): PageRecord[] =>
  [...new Map(batch.map((p) => [p.url, p])).values()].sort((a, b) => (a.url < b.url ? -1 : 1));

/**
 * The one multi-row upsert of a batch (from distinctPagesByUrl). It is idempotent, and an older
 * fetch never overwrites a newer one. Exported as a statement so the benchmark's bare-pg baseline
 * runs exactly this SQL.
 */
export function upsertPagesStatement(pages: PageRecord[]): { sql: string; bind: unknown[] } {
  const bind: unknown[] = [];
  const rows = pages.map((p) => {
    const values = [
      p.url,
      p.crawlId,
      p.status,
      p.title,
      p.contentType,
      p.body,
      p.bytes,
      p.links,
      p.depth,
      p.fetchedAt,
      p.etag,
      p.lastModified,
      p.contentHash,
      p.outlinks,
    ];
    return `(${values.map((v) => `$${bind.push(v)}`).join(", ")})`;
  });
  const sql = `INSERT INTO pages (${PAGE_COLUMNS.join(", ")}) VALUES ${rows.join(", ")}
             ON CONFLICT (url) DO UPDATE SET ${UPDATES.join(", ")}, stored_at = now()
             WHERE pages.fetched_at <= EXCLUDED.fetched_at`;
  return { sql, bind };
}

export async function upsertPages(db: Sequelize, pages: PageRecord[], transaction: Transaction): Promise<void> {
  const { sql, bind } = upsertPagesStatement(pages);
  await db.query(sql, { bind, transaction, type: QueryTypes.INSERT });
}

/** A stored page's fetch, for its history row (page_fetches). */
export const historyOf = (p: PageRecord): FetchHistoryRecord => ({
  url: p.url,
  crawlId: p.crawlId,
  outcome: "fetched",
  status: p.status,
  bytes: p.wireBytes,
  durationMs: p.durationMs,
  etag: p.etag,
  lastModified: p.lastModified,
  contentHash: p.contentHash,
  fetchedAt: p.fetchedAt,
});

/** A page's URL by id, or null. */
export async function pageUrl(db: Sequelize, id: number): Promise<string | null> {
  const row = await selectOne<{ url: string }>(db, `SELECT url FROM pages WHERE id = $1`, [id]);
  return row?.url ?? null;
}

export const PAGE_SORTS = [
  "id",
  "-id",
  "url",
  "-url",
  "title",
  "-title",
  "status",
  "-status",
  "depth",
  "-depth",
  "bytes",
  "-bytes",
  "fetchedAt",
  "-fetchedAt",
] as const;
export type PageSort = (typeof PAGE_SORTS)[number];
const PAGE_SORT_COLUMNS: Record<string, string> = {
  id: "id",
  url: "url",
  title: "title",
  status: "status",
  depth: "depth",
  bytes: "bytes",
  fetchedAt: "fetched_at",
};

export interface PageListRow {
  id: number;
  url: string;
  crawlId: number | null;
  status: number;
  title: string | null;
  contentType: string | null;
  bytes: number;
  links: number;
  depth: number;
  fetchedAt: Date;
  storedAt: Date;
}

/**
 * A page of the pages table without bodies, filtered by crawl and by `q` (in the URL or the
 * title), in a sort order of the allow-list. Unfiltered, the total is the kept count (exact at
 * any size); filtered, it is counted up to the cap.
 */
export async function listPages(
  db: Sequelize,
  f: { crawlId?: number; q?: string; sort?: PageSort; limit: number; offset: number },
): Promise<{ rows: PageListRow[] } & ListTotal> {
  const sort = f.sort ?? "id";
  const column = PAGE_SORT_COLUMNS[sort.replace(/^-/, "")]!;
  const order = `${column} ${sort.startsWith("-") ? "DESC" : "ASC"}, id`;
  const like = f.q ? `%${escapeLike(f.q)}%` : null;
  const where = `($1::int IS NULL OR crawl_id = $1) AND ($2::text IS NULL OR url ILIKE $2 OR title ILIKE $2)`;
  const bind = [f.crawlId ?? null, like];
  const filtered = f.crawlId !== undefined || like !== null;
  const [rows, total] = await Promise.all([
    select<PageListRow>(
      db,
      `SELECT id, url, crawl_id AS "crawlId", status, title, content_type AS "contentType", bytes, links, depth,
              fetched_at AS "fetchedAt", stored_at AS "storedAt"
         FROM pages WHERE ${where} ORDER BY ${order} LIMIT $3 OFFSET $4`,
      [...bind, f.limit, f.offset],
    ),
    filtered ? cappedCount(db, `FROM pages WHERE ${where}`, bind) : countOf(db, "pages").then((n) => ({ total: n })),
  ]);
  return { rows: rows.map((r) => ({ ...r, id: Number(r.id) })), ...total };
}
