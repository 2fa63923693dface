// The frontier (crawl_urls), in SQL. It lives in Postgres so that any number of crawler nodes
// can share one crawl: they lease URLs with SKIP LOCKED, and another node takes a URL over once
// its lease expires (its holder died). The ingestor marks a URL stored in the transaction that
// stores its page.
import type { Sequelize, Transaction } from "sequelize";
import { select, selectOne } from "./query";
import { queuePaused } from "./queues";

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
           JOIN crawls c ON c.id = u.crawl_id AND c.status IN ('pending', 'running') AND NOT c.paused
          WHERE u.state = 'queued' AND NOT ${queuePaused("crawl")}
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

export interface FailedUrl {
  url: string;
  state: "failed" | "skipped";
  reason: string | null;
  httpStatus: number | null;
  depth: number;
  updatedAt: Date;
}

/** A crawl's URLs that failed or were skipped, with their reasons, latest first. */
export async function listFailures(
  db: Sequelize,
  crawlId: number,
  limit: number,
  offset: number,
): Promise<{ rows: FailedUrl[]; total: number }> {
  const [rows, count] = await Promise.all([
    select<{
      url: string;
      state: "failed" | "skipped";
      reason: string | null;
      http_status: number | null;
      depth: number;
      updated_at: Date;
    }>(
      db,
      `SELECT url, state, reason, http_status, depth, updated_at FROM crawl_urls
        WHERE crawl_id = $1 AND state IN ('failed', 'skipped') ORDER BY updated_at DESC, url LIMIT $2 OFFSET $3`,
      [crawlId, limit, offset],
    ),
    selectOne<{ n: number }>(db, `SELECT count(*)::int AS n FROM crawl_urls WHERE crawl_id = $1 AND state IN ('failed', 'skipped')`, [
      crawlId,
    ]),
  ]);
  const items = rows.map((r) => ({
    url: r.url,
    state: r.state,
    reason: r.reason,
    httpStatus: r.http_status,
    depth: r.depth,
    updatedAt: r.updated_at,
  }));
  return { rows: items, total: count!.n };
}
