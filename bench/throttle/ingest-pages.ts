// Part 2a's rows and its bare-pg baseline: the pages a crawl of the generated site sends, the
// state every round starts from, and the ingestor's own statements issued with plain pg.
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import type pg from "pg";
import { generatedEntryBody, generatedPageBody, generatedPageDepths, generatedPageLinks, renderHtml } from "../../fixtures/site-server";
import { FINISH_IF_DONE_SQL } from "../../models/crawls";
import { MARK_STORED_SQL } from "../../models/frontier";
import { insertHistoryStatement } from "../../models/page-fetches";
import { distinctPagesByUrl, historyOf, upsertPagesStatement, type PageRecord } from "../../models/pages";
import { INGEST_BATCH_SIZE } from "../../services/ingestor.service";

/** The page messages a crawl of a `pages`-page generated site at `origin` sends: entry page, then /p/0 … */
export function syntheticPages(origin: string, pages: number): Omit<PageRecord, "crawlId">[] {
  const depths = generatedPageDepths(pages);
  const fetchedAt = new Date().toISOString();
  const page = (path: string, depth: number, title: string, body: string, links: number): Omit<PageRecord, "crawlId"> => {
    const html = renderHtml(title, body);
    return {
      url: `${origin}${path}`,
      depth,
      status: 200,
      contentType: "text/html; charset=utf-8",
      title,
      body: html,
      bytes: Buffer.byteLength(html),
      links,
      fetchedAt,
      etag: null,
      lastModified: null,
      contentHash: createHash("sha256").update(html).digest("hex"),
      outlinks: [],
      wireBytes: Buffer.byteLength(html),
      durationMs: 0,
    };
  };
  const out = [page("/", 0, "Generated site", generatedEntryBody(pages, false), 1)];
  for (let i = 0; i < pages; i++)
    out.push(page(`/p/${i}`, depths[i]!, `Page ${i}`, generatedPageBody(i, pages), generatedPageLinks(i, pages).length));
  return out;
}

/** Batches as the ingestor forms them: consecutive messages, 100 a batch, deduplicated and sorted by URL. */
function batchesOf(pages: PageRecord[]): PageRecord[][] {
  const out: PageRecord[][] = [];
  for (let i = 0; i < pages.length; i += INGEST_BATCH_SIZE) out.push(distinctPagesByUrl(pages.slice(i, i + INGEST_BATCH_SIZE)));
  return out;
}

/**
 * Every round starts from the same state: empty pages, one running crawl whose URLs are all
 * fetched and awaiting the ingestor (what the crawler leaves behind), fresh planner statistics.
 */
export async function prepareRound(admin: pg.Client, rows: Omit<PageRecord, "crawlId">[]): Promise<PageRecord[]> {
  await admin.query("TRUNCATE pages, page_fetches, crawl_urls, crawls CASCADE");
  const {
    rows: [crawl],
  } = await admin.query<{ id: number }>(
    `INSERT INTO crawls (url, status, max_pages, max_depth, discovered, started_at) VALUES ($1, 'running', $2, 100, $2, now()) RETURNING id`,
    [rows[0]!.url, rows.length],
  );
  await admin.query(
    `INSERT INTO crawl_urls (crawl_id, url, depth, state, leased_by, lease_until, attempts)
     SELECT $1, u, d, 'fetched', 'bench', now() + interval '1 hour', 1 FROM unnest($2::text[], $3::int[]) AS t(u, d)`,
    [crawl!.id, rows.map((r) => r.url), rows.map((r) => r.depth)],
  );
  await admin.query("ANALYZE pages, crawl_urls, crawls");
  return rows.map((r) => ({ ...r, crawlId: crawl!.id }));
}

export type BareKind = "insert" | "ingestor-sql";

/** `connections` clients, each taking the next batch until none is left; seconds from first batch to last commit. */
export async function bareLoop(clients: pg.Client[], pages: PageRecord[], kind: BareKind): Promise<number> {
  const batches = batchesOf(pages);
  const crawlId = pages[0]!.crawlId;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        // The ingestor's own statements (models/pages.ts, models/crawls.ts), issued with bare pg.
        const { sql: text, bind: values } = upsertPagesStatement(batch);
        if (kind === "insert") {
          await c.query(text, values);
          continue;
        }
        await c.query("START TRANSACTION");
        try {
          await c.query(text, values);
          const history = insertHistoryStatement(batch.map(historyOf));
          await c.query(history.sql, history.bind);
          await c.query(MARK_STORED_SQL, [batch.map((p) => p.crawlId), batch.map((p) => p.url)]);
          await c.query("COMMIT");
        } catch (err) {
          await c.query("ROLLBACK").catch(() => {});
          throw err;
        }
        await c.query(FINISH_IF_DONE_SQL, [crawlId]);
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}
