// Crawls and their frontier, in SQL. The frontier lives in Postgres so that any number of
// crawler nodes can share one crawl: they lease URLs with SKIP LOCKED, and another node takes a
// URL over once its lease expires (its holder died). "Is it done?" is a question the table
// answers exactly: no URL is queued, being fetched, or fetched and awaiting the ingestor.
import type { Sequelize, Transaction } from "sequelize";
import { createJob, type JobRow, type JobView } from "./jobs";
import { select } from "./query";

export const CRAWL_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
export type CrawlStatus = (typeof CRAWL_STATUSES)[number];
export type UrlState = "queued" | "fetching" | "fetched" | "stored" | "failed" | "skipped";

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
}

export interface CrawlCounts {
  discovered: number;
  queued: number;
  fetching: number;
  fetched: number;
  stored: number;
  failed: number;
  skipped: number;
}

export interface LeasedUrl {
  crawlId: number;
  url: string;
  depth: number;
  rootUrl: string;
  maxDepth: number;
}

export interface FetchRecord {
  state: "fetched" | "failed" | "skipped";
  reason: string | null;
  httpStatus: number | null;
  /** Same-origin links to admit to the frontier, at `linkDepth`. */
  links: string[];
  linkDepth: number;
}

/** Creates a crawl, its root URL and its job row (kind "crawl"), answering the crawl and the job. */
export async function createCrawl(
  db: Sequelize,
  url: string,
  maxPages: number,
  maxDepth: number,
): Promise<{ crawl: CrawlRow; job: JobRow }> {
  return db.transaction(async (t) => {
    const [crawl] = await select<CrawlRow>(
      db,
      `INSERT INTO crawls (url, max_pages, max_depth, discovered) VALUES ($1, $2, $3, 1) RETURNING *`,
      [url, maxPages, maxDepth],
      t,
    );
    await db.query(`INSERT INTO crawl_urls (crawl_id, url, depth) VALUES ($1, $2, 0)`, { bind: [crawl!.id, url], transaction: t });
    // Its job row (kind 'crawl'); the crawl_job_follow trigger keeps it in step from here on.
    const job = await createJob(db, "crawl", { crawlId: crawl!.id, url, maxPages, maxDepth }, maxPages, t);
    await db.query(`UPDATE crawls SET job_id = $2 WHERE id = $1`, { bind: [crawl!.id, job.id], transaction: t });
    return { crawl: { ...crawl!, job_id: job.id }, job };
  });
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
    ids.map((id) => [id, { discovered: 0, queued: 0, fetching: 0, fetched: 0, stored: 0, failed: 0, skipped: 0 }]),
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

/** Leases up to `limit` queued URLs of active crawls, shallowest first, and marks their crawls running. */
export async function leaseUrls(
  db: Sequelize,
  limit: number,
  nodeId: string,
  leaseMs: number,
  onStarted?: (crawlIds: number[]) => void,
): Promise<LeasedUrl[]> {
  return db.transaction(async (t) => {
    const rows = await select<{ crawl_id: number; url: string; depth: number; root_url: string; max_depth: number }>(
      db,
      `WITH picked AS (
         SELECT u.crawl_id, u.url FROM crawl_urls u
           JOIN crawls c ON c.id = u.crawl_id AND c.status IN ('pending', 'running')
          WHERE u.state = 'queued'
          ORDER BY u.depth, u.crawl_id
          LIMIT $1
          FOR UPDATE OF u SKIP LOCKED)
       UPDATE crawl_urls u
          SET state = 'fetching', leased_by = $2, lease_until = now() + make_interval(secs => $3), updated_at = now(),
              attempts = u.attempts + 1
         FROM picked, crawls c
        WHERE u.crawl_id = picked.crawl_id AND u.url = picked.url AND c.id = u.crawl_id
       RETURNING u.crawl_id, u.url, u.depth, c.url AS root_url, c.max_depth`,
      [limit, nodeId, leaseMs / 1000],
      t,
    );
    const crawlIds = [...new Set(rows.map((r) => r.crawl_id))];
    if (crawlIds.length > 0) {
      const started = await select<{ id: number }>(
        db,
        `UPDATE crawls SET status = 'running', started_at = now() WHERE id = ANY($1::int[]) AND status = 'pending' RETURNING id`,
        [crawlIds],
        t,
      );
      if (started.length > 0) t.afterCommit(() => onStarted?.(started.map((r) => r.id)));
    }
    return rows.map((r) => ({ crawlId: r.crawl_id, url: r.url, depth: r.depth, rootUrl: r.root_url, maxDepth: r.max_depth }));
  });
}

/**
 * Records what fetching a leased URL produced, and admits its new links, in one transaction:
 * the frontier never looks empty while a page's links are still unrecorded. Returns false when
 * this node no longer held the lease (another node took the URL over); the caller then drops
 * its result.
 *
 * The crawl row is locked only when there are new links to admit, and only for as long as it
 * takes to admit them under max_pages; FOR NO KEY UPDATE does not block the foreign-key checks
 * of concurrent inserts into pages and crawl_urls. (A plain FOR UPDATE here serialised every
 * fetch and every ingest batch of a crawl behind one row, measured with bench:crawl's trace.)
 */
export async function recordFetch(db: Sequelize, lease: LeasedUrl, nodeId: string, rec: FetchRecord, leaseMs: number): Promise<boolean> {
  const settle = (t?: Transaction) =>
    select<{ url: string }>(
      db,
      `UPDATE crawl_urls
          SET state = $4, reason = $5, http_status = $6, updated_at = now(),
              lease_until = CASE WHEN $4 = 'fetched' THEN now() + make_interval(secs => $7) END,
              leased_by = CASE WHEN $4 = 'fetched' THEN leased_by END
        WHERE crawl_id = $1 AND url = $2 AND state = 'fetching' AND leased_by = $3
        RETURNING url`,
      [lease.crawlId, lease.url, nodeId, rec.state, rec.reason, rec.httpStatus, leaseMs / 1000],
      t,
    );
  if (rec.links.length === 0 || rec.linkDepth > lease.maxDepth) return (await settle()).length > 0;

  return db.transaction(async (t) => {
    if ((await settle(t)).length === 0) return false;
    // Known links still queued at a greater depth move up to this one: with many crawlers, a URL
    // can be found first by a longer path, and its depth decides whether its links are followed.
    const fresh = await select<{ link: string }>(
      db,
      `WITH shallower AS (
         UPDATE crawl_urls SET depth = $3
          WHERE crawl_id = $1 AND url = ANY($2::text[]) AND state = 'queued' AND depth > $3)
       SELECT link FROM unnest($2::text[]) WITH ORDINALITY AS l(link, n)
        WHERE NOT EXISTS (SELECT 1 FROM crawl_urls WHERE crawl_id = $1 AND url = l.link)
        ORDER BY n`,
      [lease.crawlId, rec.links, rec.linkDepth],
      t,
    );
    if (fresh.length === 0) return true;
    const [crawl] = await select<{ room: number }>(
      db,
      `SELECT max_pages - discovered AS room FROM crawls
        WHERE id = $1 AND status IN ('pending', 'running') FOR NO KEY UPDATE`,
      [lease.crawlId],
      t,
    );
    if (!crawl || crawl.room <= 0) return true;
    const admitted = await select<{ url: string }>(
      db,
      `INSERT INTO crawl_urls (crawl_id, url, depth)
       SELECT $1, link, $2 FROM unnest($3::text[]) AS link LIMIT $4
       ON CONFLICT DO NOTHING RETURNING url`,
      [lease.crawlId, rec.linkDepth, fresh.map((f) => f.link), crawl.room],
      t,
    );
    if (admitted.length > 0) {
      await db.query(`UPDATE crawls SET discovered = discovered + $2 WHERE id = $1`, {
        bind: [lease.crawlId, admitted.length],
        transaction: t,
      });
    }
    return true;
  });
}

/** Gives a URL this node leased back to the queue, not counting the lease as an attempt (a graceful stop). */
export async function releaseLease(db: Sequelize, lease: LeasedUrl, nodeId: string): Promise<void> {
  await db.query(
    `UPDATE crawl_urls SET state = 'queued', leased_by = NULL, lease_until = NULL, attempts = attempts - 1, updated_at = now()
      WHERE crawl_id = $1 AND url = $2 AND state = 'fetching' AND leased_by = $3`,
    { bind: [lease.crawlId, lease.url, nodeId] },
  );
}

/** The ingestor's side: these URLs' pages are committed. Called inside the ingestor's transaction. */
export async function markStored(db: Sequelize, keys: { crawlId: number; url: string }[], t: Transaction): Promise<void> {
  await db.query(MARK_STORED_SQL, { bind: [keys.map((k) => k.crawlId), keys.map((k) => k.url)], transaction: t });
}
// Exported, with FINISH_IF_DONE_SQL, so that the benchmark's bare-pg baseline runs the ingestor's own SQL.
export const MARK_STORED_SQL = `UPDATE crawl_urls u SET state = 'stored', lease_until = NULL, leased_by = NULL, updated_at = now()
       FROM unnest($1::int[], $2::text[]) AS k(crawl_id, url)
      WHERE u.crawl_id = k.crawl_id AND u.url = k.url AND u.state IN ('queued', 'fetching', 'fetched')`;

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

/** Crawl jobs' progress comes from their frontier: settled URLs of those admitted. */
export async function withCrawlProgress(db: Sequelize, jobs: JobView[]): Promise<JobView[]> {
  const crawlIdOf = (j: JobView) => Number(j.params.crawlId);
  const crawlJobs = jobs.filter((j) => j.kind === "crawl");
  if (crawlJobs.length === 0) return jobs;
  const counts = await crawlCounts(db, crawlJobs.map(crawlIdOf));
  return jobs.map((j) => {
    const c = j.kind === "crawl" ? counts.get(crawlIdOf(j)) : undefined;
    return c ? { ...j, progress: { done: c.stored + c.failed + c.skipped, total: c.discovered } } : j;
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

/**
 * Hands URLs whose lease ran out (their node died, or their page message was lost) back to the
 * queue, or fails them once they have had `maxAttempts` leases.
 */
export async function releaseExpiredLeases(db: Sequelize, maxAttempts: number): Promise<number> {
  const rows = await select<{ url: string }>(
    db,
    `UPDATE crawl_urls
        SET state = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END,
            reason = CASE WHEN attempts >= $1 THEN 'gave up after ' || attempts || ' attempts' END,
            leased_by = NULL, lease_until = NULL, updated_at = now()
      WHERE state IN ('fetching', 'fetched') AND lease_until < now() RETURNING url`,
    [maxAttempts],
  );
  return rows.length;
}
