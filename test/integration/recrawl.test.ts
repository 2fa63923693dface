// Recrawls and the fetch history (issue 13): a second crawl of stored URLs asks conditionally,
// counts what it finds current as `unchanged` and leaves those rows as they are, follows the links
// of a 304's stored copy, and every fetch leaves a history row. Also the robots.txt Crawl-delay,
// measured at the site. On the embedded default (PGlite) and on PostgreSQL.
import type http from "node:http";
import { QueryTypes } from "sequelize";
import { startTrackedServer, type SiteServer } from "../../fixtures/site/tracked-server";
import { renderHtml } from "../../fixtures/site-server";
import type { Sluice } from "../../runtime";
import { crawlToEnd } from "../support/crawls";
import { createTestDatabase, http as api, startEmbedded, startOnStore, waitFor } from "../support/env";

interface Site {
  server: SiteServer;
  /** The conditional headers of each request, by path. */
  asked: { path: string; ifNoneMatch?: string; ifModifiedSince?: string }[];
  /** Bumped between crawls: /changing's body changes with it. */
  version: number;
}

const LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT";
const link = (paths: string[]) => paths.map((p) => `<a href="${p}">${p}</a>`).join(" ");

/**
 * /         links to /etag, /lm, /plain, /changing (no validators: the same body every time)
 * /etag     ETag "v1", answers 304 to it; its only link, /deep, is found on a recrawl only
 *           through the stored copy of /etag
 * /lm       Last-Modified, answers 304 to If-Modified-Since
 * /plain    no validators, the same body: unchanged by its hash
 * /changing no validators, a new body each version
 */
async function serveRecrawlSite(robots = ""): Promise<Site> {
  const site: Site = { server: undefined as unknown as SiteServer, asked: [], version: 1 };
  const send = (res: http.ServerResponse, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...headers });
    res.end(body);
  };
  const tracked = await startTrackedServer((req, res) => {
    const path = req.url ?? "/";
    site.asked.push({
      path,
      ifNoneMatch: req.headers["if-none-match"],
      ifModifiedSince: req.headers["if-modified-since"],
    });
    if (path === "/robots.txt") return robots ? send(res, robots, { "content-type": "text/plain" }) : res.writeHead(404).end();
    if (path === "/") return send(res, renderHtml("Home", link(["/etag", "/lm", "/plain", "/changing"])));
    if (path === "/etag" || path === "/deep") {
      if (req.headers["if-none-match"] === '"v1"') return res.writeHead(304, { etag: '"v1"' }).end();
      return send(res, renderHtml(path, path === "/etag" ? link(["/deep"]) : ""), { etag: '"v1"' });
    }
    if (path === "/lm") {
      if (req.headers["if-modified-since"] === LAST_MODIFIED) return res.writeHead(304).end();
      return send(res, renderHtml("Last-Modified"), { "last-modified": LAST_MODIFIED });
    }
    if (path === "/plain") return send(res, renderHtml("Plain"));
    if (path === "/changing") return send(res, renderHtml("Changing", `version ${site.version}`));
    res.writeHead(404).end();
  });
  site.server = tracked.site;
  return site;
}

interface StoredPage {
  id: number;
  url: string;
  crawlId: number;
  storedAt: string;
}

const modes: [string, boolean][] = [
  ["the embedded default (PGlite)", true],
  ["PostgreSQL", false],
];

describe.each(modes)("recrawls on %s", (_mode, embedded) => {
  let sluice: Sluice;
  let site: Site;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    site = await serveRecrawlSite();
    ({ sluice, stop } = await startOnStore(embedded, { CRAWL_HOST_CONCURRENCY: "8" }));
  });
  afterAll(async () => {
    await stop?.();
    await site?.server.close();
  });

  const pages = async (): Promise<Map<string, StoredPage>> => {
    const { body } = await api(sluice.apiUrl!, "GET", "/api/pages?limit=100");
    return new Map((body.items as StoredPage[]).map((p) => [new URL(p.url).pathname, p]));
  };

  it("asks conditionally, counts what is current as unchanged, and rewrites only what changed", async () => {
    const first = await crawlToEnd(sluice, { url: `${site.server.url}/` });
    expect(first.status).toBe("succeeded");
    expect(first.pages).toEqual({ discovered: 6, fetched: 6, stored: 6, unchanged: 0, failed: 0, skipped: 0 });
    // A first crawl has nothing to be conditional about.
    expect(site.asked.filter((a) => a.ifNoneMatch || a.ifModifiedSince)).toEqual([]);
    const before = await pages();
    expect([...before.keys()].sort()).toEqual(["/", "/changing", "/deep", "/etag", "/lm", "/plain"]);

    site.asked = [];
    site.version = 2;
    const second = await crawlToEnd(sluice, { url: `${site.server.url}/` });
    expect(second.status).toBe("succeeded");
    // /deep is reached only through /etag's stored copy (a 304 has no body), so it is counted too.
    expect(second.pages).toEqual({ discovered: 6, fetched: 1, stored: 1, unchanged: 5, failed: 0, skipped: 0 });
    const asked = new Map(site.asked.filter((a) => a.path !== "/robots.txt").map((a) => [a.path, a]));
    expect(asked.get("/etag")).toMatchObject({ ifNoneMatch: '"v1"' });
    expect(asked.get("/deep")).toMatchObject({ ifNoneMatch: '"v1"' });
    expect(asked.get("/lm")).toMatchObject({ ifModifiedSince: LAST_MODIFIED });
    // No validators were given for these: asked in full, and compared by hash.
    expect(asked.get("/plain")).toMatchObject({ ifNoneMatch: undefined, ifModifiedSince: undefined });

    const after = await pages();
    for (const path of ["/", "/deep", "/etag", "/lm", "/plain"]) {
      // Kept as it was: the same row, from the first crawl, not stored again.
      expect(after.get(path)).toEqual(before.get(path));
    }
    expect(after.get("/changing")!.crawlId).toBe(second.id);
    expect(after.get("/changing")!.storedAt).not.toBe(before.get("/changing")!.storedAt);

    // Each crawl's job counts the unchanged URLs as done.
    const job = await api(sluice.apiUrl!, "GET", `/api/jobs/${second.jobId}`);
    expect(job.body.progress).toMatchObject({ done: 6, total: 6 });
  });

  it("keeps a page's fetch history, latest first, bounded by time", async () => {
    const etag = (await pages()).get("/etag")!;
    const history = await api(sluice.apiUrl!, "GET", `/api/pages/${etag.id}/fetches`);
    expect(history.status).toBe(200);
    expect(history.body.total).toBe(2);
    const [latest, earliest] = history.body.items;
    expect(latest).toMatchObject({ outcome: "unchanged", status: 304, bytes: 0, etag: '"v1"' });
    expect(earliest).toMatchObject({ outcome: "fetched", status: 200, etag: '"v1"', lastModified: null });
    expect(earliest.bytes).toBeGreaterThan(0);
    expect(earliest.contentHash).toMatch(/^[0-9a-f]{64}$/);
    expect(new Date(latest.fetchedAt).getTime()).toBeGreaterThan(new Date(earliest.fetchedAt).getTime());

    const plain = (await pages()).get("/plain")!;
    const plainHistory = await api(sluice.apiUrl!, "GET", `/api/pages/${plain.id}/fetches`);
    // Unchanged by its hash: a full 200, the same hash both times.
    expect(plainHistory.body.items.map((f: { outcome: string; status: number }) => [f.outcome, f.status])).toEqual([
      ["unchanged", 200],
      ["fetched", 200],
    ]);
    expect(plainHistory.body.items[0].contentHash).toBe(plainHistory.body.items[1].contentHash);

    const until = encodeURIComponent(earliest.fetchedAt);
    const bounded = await api(sluice.apiUrl!, "GET", `/api/pages/${etag.id}/fetches?until=${until}`);
    expect(bounded.body.total).toBe(0);
    const since = await api(sluice.apiUrl!, "GET", `/api/pages/${etag.id}/fetches?since=${until}&limit=1`);
    expect(since.body).toMatchObject({ total: 2, limit: 1 });
    expect(since.body.items).toHaveLength(1);

    expect((await api(sluice.apiUrl!, "GET", `/api/pages/999999/fetches`)).status).toBe(404);
    const bad = await api(sluice.apiUrl!, "GET", `/api/pages/${etag.id}/fetches?since=yesterday`);
    expect(bad.status).toBe(422);
    expect(JSON.stringify(bad.body)).toContain("since");
  });

  it("keeps the validators a server changed while the body stayed the same, so the next recrawl gets its 304", async () => {
    // One page whose ETag changes with each version (a redeploy, say) while its body does not.
    let version = 1;
    const asked: (string | undefined)[] = [];
    const { site: retagged } = await startTrackedServer((req, res) => {
      if (req.url !== "/") return res.writeHead(404).end();
      asked.push(req.headers["if-none-match"]);
      const tag = `"r${version}"`;
      if (req.headers["if-none-match"] === tag) return res.writeHead(304, { etag: tag }).end();
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", etag: tag }).end(renderHtml("Retagged"));
    });
    try {
      const page = async () => {
        const { body } = await api(sluice.apiUrl!, "GET", "/api/pages?limit=100");
        const { id } = (body.items as { id: number; url: string }[]).find((p) => p.url === `${retagged.url}/`)!;
        return (await api(sluice.apiUrl!, "GET", `/api/pages/${id}`)).body;
      };
      const storedTag = async () => (await page()).etag;
      expect((await crawlToEnd(sluice, { url: `${retagged.url}/` })).pages).toMatchObject({ stored: 1, unchanged: 0 });
      expect(await storedTag()).toBe('"r1"');
      version = 2;
      // Asked with "r1", answered in full with "r2" and the same body: unchanged, and "r2" kept.
      expect((await crawlToEnd(sluice, { url: `${retagged.url}/` })).pages).toMatchObject({ stored: 0, unchanged: 1 });
      expect(await storedTag()).toBe('"r2"');
      // So the third crawl asks with "r2", and is answered 304.
      expect((await crawlToEnd(sluice, { url: `${retagged.url}/` })).pages).toMatchObject({ stored: 0, unchanged: 1 });
      expect(asked).toEqual([undefined, '"r1"', '"r2"']);
      const history = (await api(sluice.apiUrl!, "GET", `/api/pages/${(await page()).id}/fetches`)).body.items;
      expect(history.map((f: { outcome: string; status: number; etag: string }) => [f.outcome, f.status, f.etag])).toEqual([
        ["unchanged", 304, '"r2"'],
        ["unchanged", 200, '"r2"'],
        ["fetched", 200, '"r1"'],
      ]);
    } finally {
      await retagged.close();
    }
  });

  it("spaces a site's requests by at least its robots.txt Crawl-delay", async () => {
    const polite = await serveRecrawlSite("User-agent: *\nCrawl-delay: 0.4\n");
    try {
      // CRAWL_HOST_CONCURRENCY is 8 here: without the floor, the pages would be fetched at once.
      const crawl = await crawlToEnd(sluice, { url: `${polite.server.url}/` });
      expect(crawl.pages.stored).toBe(6);
      const starts = polite.server.requests.filter((r) => r.path !== "/robots.txt").map((r) => r.start);
      expect(starts).toHaveLength(6);
      // Measured where it counts, at the site: the floor is 400 ms.
      for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(400);
    } finally {
      await polite.server.close();
    }
  });
  it("sends a page whose links would overflow its message without them, and fails one that cannot fit at all", async () => {
    // 3,000 relative links of 150 characters: the body (about 500 KB) fits in a page message, but
    // not with its 3,000 absolute links beside it. 500 KB of quotes double when escaped as JSON.
    const long = "a".repeat(150);
    const linky = renderHtml("Linky", Array.from({ length: 3000 }, (_, i) => `<a href="${long}${i}">x</a>`).join(""));
    const quoted = renderHtml("Quoted", '"'.repeat(500_000));
    const tracked = await startTrackedServer((req, res) => {
      const body =
        req.url === "/"
          ? renderHtml("Root", link(["/linky", "/quoted"]))
          : req.url === "/linky"
            ? linky
            : req.url === "/quoted"
              ? quoted
              : null;
      if (body === null) return res.writeHead(404).end();
      res.writeHead(200, { "content-type": "text/html" }).end(body);
    });
    try {
      const crawl = await crawlToEnd(sluice, { url: `${tracked.site.url}/`, maxDepth: 1, maxPages: 10 });
      expect(crawl.pages).toMatchObject({ stored: 2, failed: 1 });
      const failures = await api(sluice.apiUrl!, "GET", `/api/crawls/${crawl.id}/failures`);
      expect(failures.body.items).toEqual([
        expect.objectContaining({ url: `${tracked.site.url}/quoted`, reason: "page too large to send to the ingestor" }),
      ]);
      const { body } = await api(sluice.apiUrl!, "GET", `/api/pages?crawl=${crawl.id}&q=linky`);
      const page = await api(sluice.apiUrl!, "GET", `/api/pages/${body.items[0].id}`);
      expect(page.body).toMatchObject({ title: "Linky", outlinks: null, links: 3000 });
    } finally {
      await tracked.site.close();
    }
  });
  // Its own node on a database of its own: declared on PostgreSQL only (not skipped on PGlite).
  const onPostgres = embedded ? () => {} : it;
  onPostgres("a node stopping with fetches waiting behind a Crawl-delay stops at once and hands their URLs back", async () => {
    const slow = await serveRecrawlSite("User-agent: *\nCrawl-delay: 20\n");
    const db = await createTestDatabase();
    const node = await startEmbedded({ DATABASE_URL: db.url, CRAWL_HOST_CONCURRENCY: "8" });
    try {
      const created = await api(node.apiUrl!, "POST", "/api/crawls", { url: `${slow.server.url}/` });
      // The root is fetched; its four links then wait 20 s each for their turn.
      await waitFor(
        async () => ((await api(node.apiUrl!, "GET", `/api/crawls/${created.body.id}`)).body.pages.discovered === 5 ? true : undefined),
        20_000,
        "the root's links admitted",
      );
      const states = async () =>
        Object.fromEntries(
          (
            await node.db.query<{ state: string; n: number }>(
              `SELECT state, count(*)::int AS n FROM crawl_urls WHERE crawl_id = $1 GROUP BY state`,
              { bind: [created.body.id], type: QueryTypes.SELECT },
            )
          ).map((r) => [r.state, r.n]),
        );
      await waitFor(async () => ((await states()).fetching === 4 ? true : undefined), 20_000, "the four links leased and waiting");
      const stopping = Date.now();
      await node.stop();
      expect(Date.now() - stopping).toBeLessThan(5_000);
      // Handed back to the queue, not left leased until CRAWL_LEASE_MS runs out.
      const after = await startEmbedded({ DATABASE_URL: db.url, SERVICES: "api" });
      try {
        expect(
          await after.db.query(`SELECT state, count(*)::int AS n FROM crawl_urls GROUP BY state ORDER BY state`, {
            type: QueryTypes.SELECT,
          }),
        ).toEqual([
          { state: "queued", n: 4 },
          { state: "stored", n: 1 },
        ]);
      } finally {
        await after.stop();
      }
      // Only the root was requested: the waiting fetches never went out.
      expect(slow.server.requests.filter((r) => r.path !== "/robots.txt").map((r) => r.path)).toEqual(["/"]);
    } finally {
      await node.stop().catch(() => {});
      await slow.server.close();
      await db.drop();
    }
  });
});
