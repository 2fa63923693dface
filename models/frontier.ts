// The frontier (crawl_urls), in SQL. It lives in Postgres so that any number of crawler nodes
// can share one crawl: they lease URLs with SKIP LOCKED, and another node takes a URL over once
// its lease expires (its holder died). The ingestor marks a URL stored in the transaction that
// stores its page.
import type { Sequelize, Transaction } from "sequelize";
import { insertHistoryStatement, type FetchHistoryRecord } from "./page-fetches";
import { retryOnConflict, select, selectOne } from "./query";
import { queuePaused } from "./queues";

export interface LeasedUrl {
  crawlId: number;
  url: string;
  depth: number;
  rootUrl: string;
  maxDepth: number;
  /** Whether the crawl seeds its frontier from the site's sitemaps too. */
  sitemaps: boolean;
  /** What is stored of this URL from an earlier crawl: the recrawl asks for it conditionally. */
  stored: StoredCopy | null;
}

export interface StoredCopy {
  etag: string | null;
  lastModified: string | null;
  contentHash: string | null;
  /** The stored page's links: an unchanged page's are followed without fetching or parsing it again. */
  links: string[] | null;
}

export interface FetchRecord {
  /** unchanged: the stored page is current (a 304, or the same body); its row is kept as it is, but for its validators. */
  state: "fetched" | "failed" | "skipped" | "unchanged";
  reason: string | null;
  httpStatus: number | null;
  /** Same-origin links to admit to the frontier, at `linkDepth`. */
  links: string[];
  linkDepth: number;
  /** The fetch's history row, written with the outcome (a fetched page's is the ingestor's to write). */
  history?: FetchHistoryRecord;
  /**
   * unchanged only: the validators the server now gives the stored page. A server may change
   * them while the body stays the same (a redeploy), and the next recrawl must ask with these,
   * not the stored ones, to be answered 304: they are written to the page's row where they differ.
   */
  revalidated?: { etag: string | null; lastModified: string | null };
}

/**
 * Leases up to `limit` queued URLs of active crawls, shallowest first, and marks their crawls
 * running: one statement, so one round trip per lease however many URLs it takes.
 */
export async function leaseUrls(
  db: Sequelize,
  limit: number,
  nodeId: string,
  leaseMs: number,
  onStarted?: (crawlIds: number[]) => void,
): Promise<LeasedUrl[]> {
  const rows = await select<{
    crawl_id: number;
    url: string;
    depth: number;
    root_url: string;
    max_depth: number;
    sitemaps: boolean;
    etag: string | null;
    last_modified: string | null;
    content_hash: string | null;
    outlinks: string[] | null;
    stored: boolean;
    started: boolean;
  }>(
    db,
    `WITH picked AS (
         SELECT u.crawl_id, u.url FROM crawl_urls u
           JOIN crawls c ON c.id = u.crawl_id AND c.status IN ('pending', 'running') AND NOT c.paused
          WHERE u.state = 'queued' AND NOT ${queuePaused("crawl")}
          ORDER BY u.depth, u.crawl_id
          LIMIT $1
          FOR UPDATE OF u SKIP LOCKED),
       leased AS (
         UPDATE crawl_urls u
            SET state = 'fetching', leased_by = $2, lease_until = now() + make_interval(secs => $3), updated_at = now(),
                attempts = u.attempts + 1
           FROM picked
          WHERE u.crawl_id = picked.crawl_id AND u.url = picked.url
         RETURNING u.crawl_id, u.url, u.depth),
       started AS (
         UPDATE crawls SET status = 'running', started_at = now()
          WHERE id IN (SELECT crawl_id FROM leased) AND status = 'pending' RETURNING id)
       SELECT l.crawl_id, l.url, l.depth, c.url AS root_url, c.max_depth, c.sitemaps,
              p.etag, p.last_modified, p.content_hash, p.id IS NOT NULL AS stored,
              p.outlinks,
              l.crawl_id IN (SELECT id FROM started) AS started
         FROM leased l JOIN crawls c ON c.id = l.crawl_id LEFT JOIN pages p ON p.url = l.url`,
    [limit, nodeId, leaseMs / 1000],
  );
  const started = [...new Set(rows.filter((r) => r.started).map((r) => r.crawl_id))];
  if (started.length > 0) onStarted?.(started);
  return rows.map((r) => ({
    crawlId: r.crawl_id,
    url: r.url,
    depth: r.depth,
    rootUrl: r.root_url,
    maxDepth: r.max_depth,
    sitemaps: r.sitemaps,
    stored: r.stored ? { etag: r.etag, lastModified: r.last_modified, contentHash: r.content_hash, links: r.outlinks } : null,
  }));
}

/** One leased URL's outcome, for recordFetches. */
export interface SettledFetch {
  lease: LeasedUrl;
  rec: FetchRecord;
}

/** A link found on a page of a crawl, at the depth it would have there. */
export interface FoundLink {
  crawlId: number;
  url: string;
  depth: number;
}

/**
 * The links of a batch, one per crawl and URL at its smallest depth, shallowest first (when
 * max_pages leaves little room, the links nearest the root take it), in the order found.
 */
function foundLinks(items: SettledFetch[]): FoundLink[] {
  const best = new Map<string, FoundLink>();
  for (const { lease, rec } of items) {
    if (rec.linkDepth > lease.maxDepth) continue;
    for (const url of rec.links) {
      const key = `${lease.crawlId} ${url}`;
      const known = best.get(key);
      if (!known || rec.linkDepth < known.depth) best.set(key, { crawlId: lease.crawlId, url, depth: rec.linkDepth });
    }
  }
  return [...best.values()].sort((x, y) => x.crawlId - y.crawlId || x.depth - y.depth);
}

/**
 * Two pieces of one statement over found links bound as three arrays (crawl ids, URLs, depths)
 * from parameter `first`: `shallower` moves links still queued deeper up to their depth (with
 * many crawlers, a URL can be found first by a longer path, and its depth decides whether its
 * links are followed), and `fresh` selects the links the frontier does not hold yet.
 */
function linkStatements(first: number): { shallower: string; fresh: string; bind: (found: FoundLink[]) => unknown[] } {
  const links = `unnest($${first}::int[], $${first + 1}::text[], $${first + 2}::int[])`;
  return {
    shallower: `UPDATE crawl_urls u SET depth = l.depth FROM ${links} AS l(crawl_id, url, depth)
                 WHERE u.crawl_id = l.crawl_id AND u.url = l.url AND u.state = 'queued' AND u.depth > l.depth`,
    fresh: `SELECT l.crawl_id, l.url, l.depth FROM ${links} WITH ORDINALITY AS l(crawl_id, url, depth, n)
             WHERE NOT EXISTS (SELECT 1 FROM crawl_urls c WHERE c.crawl_id = l.crawl_id AND c.url = l.url)`,
    bind: (found) => [found.map((f) => f.crawlId), found.map((f) => f.url), found.map((f) => f.depth)],
  };
}

/**
 * Records what fetching leased URLs produced, their history rows, and the new links they found,
 * in one transaction for the whole batch: the frontier never looks empty while a page's links
 * are still unrecorded. One statement settles the URLs, writes the history and finds which
 * links are new; only a crawl with new links is locked and written to (a recrawl, whose links
 * are all known, costs one statement a batch). Answers, per item, whether this node still held
 * the lease; where it did not (another node took the URL over) the caller drops that result.
 */
export async function recordFetches(db: Sequelize, nodeId: string, items: SettledFetch[], leaseMs: number): Promise<boolean[]> {
  if (items.length === 0) return [];
  const found = foundLinks(items);
  // Only the history of URLs this node still held (the settled CTE below).
  const history = insertHistoryStatement(
    items.flatMap((i) => (i.rec.history ? [i.rec.history] : [])),
    8,
    "JOIN settled s ON s.crawl_id = h.crawl_id AND s.url = h.url",
  );
  const links = linkStatements(8 + history.bind.length);
  const linkBind = links.bind(found);
  const revalidated = items.filter((i) => i.rec.revalidated);
  const v = 8 + history.bind.length + linkBind.length;
  // Two batches of one site may update the same rows (pages, crawl_urls) in different orders; a
  // batch ended by the deadlock runs again rather than failing its URLs.
  return retryOnConflict(() =>
    db.transaction(async (t) => {
      const rows = await select<{ kind: "held" | "fresh"; crawl_id: number; url: string; depth: number | null }>(
        db,
        `WITH settled AS (
         UPDATE crawl_urls u
            SET state = k.state, reason = k.reason, http_status = k.http_status, updated_at = now(),
                lease_until = CASE WHEN k.state = 'fetched' THEN now() + make_interval(secs => $2) END,
                leased_by = CASE WHEN k.state = 'fetched' THEN u.leased_by END
           FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::int[]) AS k(crawl_id, url, state, reason, http_status)
          WHERE u.crawl_id = k.crawl_id AND u.url = k.url AND u.state = 'fetching' AND u.leased_by = $1
         RETURNING u.crawl_id, u.url),
       history AS (${history.sql}),
       revalidated AS (
         UPDATE pages p SET etag = r.etag, last_modified = r.last_modified
           FROM unnest($${v}::int[], $${v + 1}::text[], $${v + 2}::text[], $${v + 3}::text[]) AS r(crawl_id, url, etag, last_modified)
           JOIN settled s ON s.crawl_id = r.crawl_id AND s.url = r.url
          WHERE p.url = r.url AND (p.etag IS DISTINCT FROM r.etag OR p.last_modified IS DISTINCT FROM r.last_modified)),
       shallower AS (${links.shallower})
       SELECT 'held' AS kind, crawl_id, url, NULL::int AS depth FROM settled
       UNION ALL SELECT 'fresh', * FROM (${links.fresh}) fresh`,
        [
          nodeId,
          leaseMs / 1000,
          items.map((i) => i.lease.crawlId),
          items.map((i) => i.lease.url),
          items.map((i) => i.rec.state),
          items.map((i) => i.rec.reason),
          items.map((i) => i.rec.httpStatus),
          ...history.bind,
          ...linkBind,
          revalidated.map((i) => i.lease.crawlId),
          revalidated.map((i) => i.lease.url),
          revalidated.map((i) => i.rec.revalidated!.etag),
          revalidated.map((i) => i.rec.revalidated!.lastModified),
        ],
        t,
      );
      const key = (crawlId: number, url: string) => `${crawlId} ${url}`;
      const heldKeys = new Set(rows.filter((r) => r.kind === "held").map((r) => key(r.crawl_id, r.url)));
      const held = (i: SettledFetch) => heldKeys.has(key(i.lease.crawlId, i.lease.url));
      // New links of the URLs still held, found in the order foundLinks put them.
      const fresh = new Set(rows.filter((r) => r.kind === "fresh").map((r) => key(r.crawl_id, r.url)));
      const fromHeld = new Set(foundLinks(items.filter(held)).map((f) => key(f.crawlId, f.url)));
      const admit = found.filter((f) => fresh.has(key(f.crawlId, f.url)) && fromHeld.has(key(f.crawlId, f.url)));
      for (const crawlId of new Set(admit.map((f) => f.crawlId))) {
        await insertFreshLinks(
          db,
          crawlId,
          admit.filter((f) => f.crawlId === crawlId),
          t,
        );
      }
      return items.map(held);
    }),
  );
}

/** recordFetches for one URL. */
export async function recordFetch(db: Sequelize, lease: LeasedUrl, nodeId: string, rec: FetchRecord, leaseMs: number): Promise<boolean> {
  const [held] = await recordFetches(db, nodeId, [{ lease, rec }], leaseMs);
  return held!;
}

/**
 * Admits links to their crawls' frontiers (seeds from a sitemap, say), up to max_pages; known
 * ones still queued deeper move up. Answers how many were new.
 */
export async function admitUrls(db: Sequelize, found: FoundLink[], t: Transaction): Promise<number> {
  const links = linkStatements(1);
  const fresh = await select<FoundLink & { crawl_id: number }>(
    db,
    `WITH shallower AS (${links.shallower}) ${links.fresh} ORDER BY n`,
    links.bind(found),
    t,
  );
  let admitted = 0;
  for (const crawlId of new Set(fresh.map((f) => f.crawl_id))) {
    const mine = fresh.filter((f) => f.crawl_id === crawlId).map((f) => ({ crawlId, url: f.url, depth: f.depth }));
    admitted += await insertFreshLinks(db, crawlId, mine, t);
  }
  return admitted;
}

/**
 * Inserts a crawl's new links, in their order, up to its max_pages, and raises its count by
 * those. The crawl row is locked first, FOR NO KEY UPDATE (which does not block the foreign-key
 * checks of concurrent inserts into pages and crawl_urls; a plain FOR UPDATE serialised every
 * fetch and every ingest batch of a crawl behind one row, measured with bench:crawl's trace).
 * The insert is a statement of its own after the lock, so its snapshot holds every admission
 * made before it: links admitted meanwhile are not counted twice, and max_pages holds exactly.
 * Links still queued deeper were moved up before the lock; every admitting transaction does
 * that first, so none waits for row locks while it holds the crawl's.
 */
async function insertFreshLinks(db: Sequelize, crawlId: number, links: FoundLink[], t: Transaction): Promise<number> {
  const [crawl] = await select<{ room: number }>(
    db,
    `SELECT max_pages - discovered AS room FROM crawls WHERE id = $1 AND status IN ('pending', 'running') FOR NO KEY UPDATE`,
    [crawlId],
    t,
  );
  if (!crawl || crawl.room <= 0) return 0;
  const [row] = await select<{ admitted: number }>(
    db,
    `WITH inserted AS (
       INSERT INTO crawl_urls (crawl_id, url, depth)
       SELECT $1, l.url, l.depth FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS l(url, depth, n)
        WHERE NOT EXISTS (SELECT 1 FROM crawl_urls WHERE crawl_id = $1 AND url = l.url)
        ORDER BY n
        LIMIT $4
       ON CONFLICT DO NOTHING RETURNING url),
     counted AS (
       UPDATE crawls SET discovered = discovered + (SELECT count(*) FROM inserted)
        WHERE id = $1 AND EXISTS (SELECT 1 FROM inserted))
     SELECT count(*)::int AS admitted FROM inserted`,
    [crawlId, links.map((l) => l.url), links.map((l) => l.depth), crawl.room],
    t,
  );
  return row!.admitted;
}

/**
 * Pushes back the deadline of URLs this node is still fetching: a fetch may wait long for its
 * host's turn (a slow rate, a Crawl-delay), and a live node's lease must not run out under it.
 * A node that dies stops renewing, and its URLs come back when their leases end.
 */
export async function renewLeases(db: Sequelize, nodeId: string, leases: LeasedUrl[], leaseMs: number): Promise<number> {
  if (leases.length === 0) return 0;
  const rows = await select<{ url: string }>(
    db,
    `UPDATE crawl_urls u SET lease_until = now() + make_interval(secs => $4)
       FROM unnest($2::int[], $3::text[]) AS k(crawl_id, url)
      WHERE u.crawl_id = k.crawl_id AND u.url = k.url AND u.state = 'fetching' AND u.leased_by = $1
      RETURNING u.url`,
    [nodeId, leases.map((l) => l.crawlId), leases.map((l) => l.url), leaseMs / 1000],
  );
  return rows.length;
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
