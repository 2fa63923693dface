// Crawls in SQL. "Is it done?" is a question the frontier (models/frontier.ts) answers
// exactly: no URL is queued, being fetched, or fetched and awaiting the ingestor.
import type { Sequelize, Transaction } from "sequelize";
import { createJob, type JobRow, type JobView } from "./jobs";
import { select } from "./query";

export const CRAWL_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
export type CrawlStatus = (typeof CRAWL_STATUSES)[number];
export type UrlState = "queued" | "fetching" | "fetched" | "stored" | "unchanged" | "failed" | "skipped";

export interface CrawlRow {
  id: number;
  url: string;
  status: CrawlStatus;
  max_pages: number;
  max_depth: number;
  discovered: number;
  error: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  job_id: number | null;
  /** Crawlers lease none of its URLs while it is paused. */
  paused: boolean;
  sitemaps: boolean;
}

export interface CrawlCounts {
  discovered: number;
  queued: number;
  fetching: number;
  fetched: number;
  stored: number;
  /** Found current by a recrawl (a 304, or the stored body): settled without the ingestor. */
  unchanged: number;
  failed: number;
  skipped: number;
}

/**
 * Creates a crawl, its root URL and its job row (kind "crawl"), answering the crawl and the job:
 * in a transaction of its own, or in `options.transaction` (a schedule's tick). `jobParams` go
 * into the job's params too (a schedule's id).
 */
export async function createCrawl(
  db: Sequelize,
  url: string,
  maxPages: number,
  maxDepth: number,
  sitemaps = false,
  options: { transaction?: Transaction; jobParams?: Record<string, unknown> } = {},
): Promise<{ crawl: CrawlRow; job: JobRow }> {
  const create = async (t: Transaction) => {
    const [crawl] = await select<CrawlRow>(
      db,
      `INSERT INTO crawls (url, max_pages, max_depth, discovered, sitemaps) VALUES ($1, $2, $3, 1, $4) RETURNING *`,
      [url, maxPages, maxDepth, sitemaps],
      t,
    );
    await db.query(`INSERT INTO crawl_urls (crawl_id, url, depth) VALUES ($1, $2, 0)`, { bind: [crawl!.id, url], transaction: t });
    // Its job row (kind 'crawl'); the crawl_job_follow trigger keeps it in step from here on.
    const job = await createJob(
      db,
      "crawl",
      { ...options.jobParams, crawlId: crawl!.id, url, maxPages, maxDepth, ...(sitemaps ? { sitemaps } : {}) },
      maxPages,
      t,
    );
    await db.query(`UPDATE crawls SET job_id = $2 WHERE id = $1`, { bind: [crawl!.id, job.id], transaction: t });
    return { crawl: { ...crawl!, job_id: job.id }, job };
  };
  return options.transaction ? create(options.transaction) : db.transaction(create);
}

export async function getCrawl(db: Sequelize, id: number): Promise<CrawlRow | null> {
  const [row] = await select<CrawlRow>(db, `SELECT * FROM crawls WHERE id = $1`, [id]);
  return row ?? null;
}

export async function listCrawls(
  db: Sequelize,
  limit: number,
  offset: number,
  status?: CrawlStatus,
): Promise<{ rows: CrawlRow[]; total: number }> {
  const where = status ? `WHERE status = $3` : "";
  const bind = status ? [limit, offset, status] : [limit, offset];
  const rows = await select<CrawlRow>(db, `SELECT * FROM crawls ${where} ORDER BY id DESC LIMIT $1 OFFSET $2`, bind);
  const [count] = await select<{ n: number }>(
    db,
    `SELECT count(*) AS n FROM crawls ${status ? "WHERE status = $1" : ""}`,
    status ? [status] : [],
  );
  return { rows, total: count?.n ?? 0 };
}

/** Each crawl's URLs by state, for many crawls in one query. */
export async function crawlCounts(db: Sequelize, ids: number[]): Promise<Map<number, CrawlCounts>> {
  const counts = new Map<number, CrawlCounts>(
    ids.map((id) => [id, { discovered: 0, queued: 0, fetching: 0, fetched: 0, stored: 0, unchanged: 0, failed: 0, skipped: 0 }]),
  );
  if (ids.length === 0) return counts;
  const rows = await select<{ crawl_id: number; state: UrlState; n: number }>(
    db,
    `SELECT crawl_id, state, count(*) AS n FROM crawl_urls WHERE crawl_id = ANY($1::int[]) GROUP BY crawl_id, state`,
    [ids],
  );
  for (const { crawl_id, state, n } of rows) {
    const c = counts.get(crawl_id)!;
    c[state] = n;
    c.discovered += n;
  }
  return counts;
}

/**
 * Cancels a pending or running crawl; null when it is already finished (the caller answers 409).
 * Its queued URLs are skipped, so the counts still add up.
 */
export async function cancelCrawl(db: Sequelize, id: number): Promise<CrawlRow | null> {
  return db.transaction(async (t) => {
    const [row] = await select<CrawlRow>(
      db,
      `UPDATE crawls SET status = 'cancelled', finished_at = now()
        WHERE id = $1 AND status IN ('pending', 'running') RETURNING *`,
      [id],
      t,
    );
    if (row) {
      await db.query(
        `UPDATE crawl_urls SET state = 'skipped', reason = 'crawl cancelled', updated_at = now() WHERE crawl_id = $1 AND state = 'queued'`,
        {
          bind: [id],
          transaction: t,
        },
      );
    }
    return row ?? null;
  });
}

/**
 * Ends a running crawl whose frontier is drained: failed when its root URL failed, else
 * succeeded. Two nodes that settle the last two URLs at once can each still see the other's
 * URL as open, so the crawler's periodic sweep calls this too.
 */
export async function finishIfDone(db: Sequelize, crawlId: number): Promise<CrawlStatus | null> {
  const [row] = await select<{ status: CrawlStatus }>(db, FINISH_IF_DONE_SQL, [crawlId]);
  return row?.status ?? null;
}
/** $1: the crawl. */
export const FINISH_IF_DONE_SQL = `UPDATE crawls c
        SET status = CASE WHEN root.state = 'failed' THEN 'failed' ELSE 'succeeded' END,
            error = CASE WHEN root.state = 'failed' THEN 'root URL failed: ' || coalesce(root.reason, 'unknown') END,
            finished_at = now()
       FROM crawl_urls root
      WHERE c.id = $1 AND c.status = 'running' AND root.crawl_id = c.id AND root.url = c.url
        AND NOT EXISTS (SELECT 1 FROM crawl_urls u
                         WHERE u.crawl_id = c.id AND u.state IN ('queued', 'fetching', 'fetched'))
      RETURNING c.status`;

/** URLs whose fate is known: stored, found unchanged, failed or skipped. */
export const settledUrls = (c: CrawlCounts): number => c.stored + c.unchanged + c.failed + c.skipped;

/** Crawl jobs' progress comes from their frontier: settled URLs of those admitted. */
export async function withCrawlProgress(db: Sequelize, jobs: JobView[]): Promise<JobView[]> {
  const crawlIdOf = (j: JobView) => Number(j.params.crawlId);
  const crawlJobs = jobs.filter((j) => j.kind === "crawl");
  if (crawlJobs.length === 0) return jobs;
  const counts = await crawlCounts(db, crawlJobs.map(crawlIdOf));
  return jobs.map((j) => {
    const c = j.kind === "crawl" ? counts.get(crawlIdOf(j)) : undefined;
    return c ? { ...j, progress: { done: settledUrls(c), total: c.discovered } } : j;
  });
}

/** The job rows of these crawls. */
export function crawlJobs(db: Sequelize, crawlIds: number[]): Promise<JobRow[]> {
  return select<JobRow>(db, `SELECT j.* FROM jobs j JOIN crawls c ON c.job_id = j.id WHERE c.id = ANY($1::int[])`, [crawlIds]);
}

export async function runningCrawlIds(db: Sequelize): Promise<number[]> {
  const rows = await select<{ id: number }>(db, `SELECT id FROM crawls WHERE status = 'running'`, []);
  return rows.map((r) => r.id);
}

/** Pauses or resumes a crawl that has not finished; null when there is no such crawl running or pending. */
export async function setCrawlPaused(db: Sequelize, id: number, paused: boolean): Promise<CrawlRow | null> {
  const [row] = await select<CrawlRow>(db, `UPDATE crawls SET paused = $2 WHERE id = $1 AND status IN ('pending', 'running') RETURNING *`, [
    id,
    paused,
  ]);
  return row ?? null;
}
