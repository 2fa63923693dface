// The embedded default (one process, PGlite, in-memory channel) crawling real sites served on loopback.
import { SAMPLE_SITE_EXPECTED, renderHtml, serveGeneratedSite, serveSampleSite, type SiteServer } from "../../fixtures/site-server";
import { startTrackedServer } from "../../fixtures/site/tracked-server";
import { MAX_URL_LENGTH } from "../../services/crawler.service";
import type { Sluice } from "../../runtime";
import { crawlToEnd } from "../support/crawls";
import { http, startEmbedded, waitFor } from "../support/env";

describe("embedded crawl of the bundled sample site", () => {
  let sluice: Sluice;
  let site: SiteServer;

  beforeAll(async () => {
    site = await serveSampleSite();
    sluice = await startEmbedded();
  });
  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
  });

  it("stores exactly the site's HTML pages and counts every other URL", async () => {
    const crawl = await crawlToEnd(sluice, { url: `${site.url}/` });
    const e = SAMPLE_SITE_EXPECTED;
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual({
      discovered: e.discovered,
      fetched: e.stored,
      stored: e.stored,
      unchanged: 0,
      failed: e.failed,
      skipped: e.skipped,
    });
    expect(crawl.startedAt).not.toBeNull();
    expect(crawl.finishedAt).not.toBeNull();

    const count = await http(sluice.apiUrl!, "GET", `/api/pages/count?crawl=${crawl.id}`);
    expect(count.body).toEqual({ count: e.stored });

    // robots.txt is obeyed: nothing under /private/ was even requested.
    expect(site.requests.filter((r) => r.path.startsWith("/private/"))).toEqual([]);
    // The external link is never followed (it would not reach this server anyway): no such page stored.
    const all = await http(sluice.apiUrl!, "GET", `/api/pages?crawl=${crawl.id}&limit=500`);
    expect(all.body.total).toBe(e.stored);
    const urls = (all.body.items as { url: string }[]).map((p) => p.url.replace(site.url, ""));
    expect(urls.sort()).toEqual([...e.storedPaths].sort());
    expect(urls.some((u) => u.includes("#"))).toBe(false);

    // Prometheus shows the same figures.
    const metrics = await (await fetch(sluice.metricsUrl!)).text();
    const counter = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, "m").exec(metrics)?.[1]);
    expect(counter("sluice_pages_fetched")).toBe(e.stored);
    expect(counter("sluice_pages_stored")).toBe(e.stored);
    expect(counter("sluice_pages_failed")).toBe(e.failed);
    expect(counter("sluice_pages_skipped")).toBe(e.skipped);
  });

  it("stores the right title, status and body on chosen pages", async () => {
    const list = await http(sluice.apiUrl!, "GET", "/api/pages?limit=500");
    const byPath = new Map((list.body.items as { id: number; url: string }[]).map((p) => [p.url.replace(site.url, ""), p.id]));
    for (const sample of SAMPLE_SITE_EXPECTED.samples) {
      const id = byPath.get(sample.path);
      expect(id).toBeDefined();
      const page = await http(sluice.apiUrl!, "GET", `/api/pages/${id}`);
      expect(page.status).toBe(200);
      expect(page.body).toMatchObject({ title: sample.title, status: 200, depth: expect.any(Number) });
      expect(page.body.body).toContain("<title>");
      expect(page.body.contentType).toMatch(/^text\/html/);
    }
  });

  it("a second crawl of the same site finds every page unchanged and duplicates nothing", async () => {
    const before = await sluice.db.query("SELECT count(*)::int AS n, count(DISTINCT url)::int AS d FROM pages", { plain: true });
    const again = await crawlToEnd(sluice, { url: `${site.url}/` });
    expect(again.status).toBe("succeeded");
    // The sample site sends no validators: its pages are found current by their bodies' hashes.
    expect(again.pages).toMatchObject({ stored: 0, unchanged: SAMPLE_SITE_EXPECTED.stored, discovered: SAMPLE_SITE_EXPECTED.discovered });
    const after = await sluice.db.query("SELECT count(*)::int AS n, count(DISTINCT url)::int AS d FROM pages", { plain: true });
    expect(after).toEqual(before);
    expect(after).toEqual({ n: SAMPLE_SITE_EXPECTED.stored, d: SAMPLE_SITE_EXPECTED.stored });
    // Their rows were left as they were: they still belong to the crawl that stored them.
    expect((await http(sluice.apiUrl!, "GET", `/api/pages/count?crawl=${again.id}`)).body.count).toBe(0);
  });

  it("maxPages caps the URLs admitted, and maxDepth the links followed", async () => {
    const capped = await crawlToEnd(sluice, { url: `${site.url}/`, maxPages: 5 });
    expect(capped.status).toBe("succeeded");
    expect(capped.pages.discovered).toBe(5);
    expect(capped.pages.stored + capped.pages.unchanged + capped.pages.failed + capped.pages.skipped).toBe(5);

    const shallow = await crawlToEnd(sluice, { url: `${site.url}/`, maxDepth: 0 });
    expect(shallow.pages).toEqual({ discovered: 1, fetched: 0, stored: 0, unchanged: 1, failed: 0, skipped: 0 });
  });
});

describe("embedded crawl of a faulty site", () => {
  let sluice: Sluice;
  let site: Awaited<ReturnType<typeof serveGeneratedSite>>;

  beforeAll(async () => {
    site = await serveGeneratedSite({ pages: 30, faults: true });
    sluice = await startEmbedded({ CRAWL_FETCH_TIMEOUT_MS: "1500" });
  });
  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
  });

  it("finishes, counting a hang, a 10 MB body, a redirect loop and a 500 as failed", async () => {
    const crawl = await crawlToEnd(sluice, { url: site.entryUrl });
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual({
      discovered: site.expectedPages + 4,
      fetched: site.expectedPages,
      stored: site.expectedPages,
      unchanged: 0,
      failed: 4,
      skipped: 0,
    });
    const [rows] = await sluice.db.query(
      `SELECT url, reason FROM crawl_urls WHERE crawl_id = ${crawl.id} AND state = 'failed' ORDER BY url`,
    );
    const reasons = Object.fromEntries((rows as { url: string; reason: string }[]).map((r) => [new URL(r.url).pathname, r.reason]));
    expect(reasons["/fault/hang"]).toMatch(/timed out/);
    expect(reasons["/fault/huge"]).toMatch(/exceeds/);
    expect(reasons["/fault/loop-a"]).toMatch(/redirects/);
    expect(reasons["/fault/500"]).toBe("HTTP 500");
  });
});

describe("a crawl is a job of kind crawl", () => {
  let sluice: Sluice;
  let site: Awaited<ReturnType<typeof serveGeneratedSite>>;
  const events: { id: number; status: string }[] = [];

  beforeAll(async () => {
    site = await serveGeneratedSite({ pages: 60, delayMs: 20 });
    sluice = await startEmbedded();
    sluice.broker.createService({
      name: "watcher",
      events: {
        "jobs.updated"(ctx: { params: { id: number; status: string } }) {
          events.push({ id: ctx.params.id, status: ctx.params.status });
        },
      },
    });
    await sluice.broker.waitForServices("watcher");
  });
  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
  });

  it("skips a redirect to a URL longer than the crawler admits, and stores the rest", async () => {
    // Links that long are never admitted; a redirect's target must not be either (Postgres's
    // index on the frontier refuses a row of more than about 2,700 bytes, and with it the batch).
    // Random, so that Postgres cannot compress it into the index.
    const long = `/long?${Array.from({ length: 4 * MAX_URL_LENGTH }, () => "abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(Math.random() * 36)]).join("")}`;
    const { site: odd } = await startTrackedServer((req, res) => {
      if (req.url === "/")
        return res.writeHead(200, { "content-type": "text/html" }).end(renderHtml("Home", '<a href="/go">go</a> <a href="/ok">ok</a>'));
      if (req.url === "/go") return res.writeHead(302, { location: long }).end();
      if (req.url === "/ok") return res.writeHead(200, { "content-type": "text/html" }).end(renderHtml("OK"));
      res.writeHead(404).end();
    });
    try {
      const crawl = await crawlToEnd(sluice, { url: `${odd.url}/` });
      expect(crawl).toMatchObject({ status: "succeeded", pages: { discovered: 3, stored: 2, skipped: 1, failed: 0 } });
      const { body } = await http(sluice.apiUrl!, "GET", `/api/crawls/${crawl.id}/failures`);
      const go = body.items.find((f: { url: string }) => f.url === `${odd.url}/go`);
      expect(go.state).toBe("skipped");
      expect(go.reason.length).toBeLessThanOrEqual(600);
    } finally {
      await odd.close();
    }
  });

  it("its job follows the crawl: status, progress and events", async () => {
    const crawl = await crawlToEnd(sluice, { url: site.entryUrl, maxDepth: 100 });
    expect(crawl.status).toBe("succeeded");
    expect(crawl.jobId).toEqual(expect.any(Number));
    const job = (await http(sluice.apiUrl!, "GET", `/api/jobs/${crawl.jobId}`)).body;
    expect(job).toMatchObject({
      kind: "crawl",
      status: "succeeded",
      params: { crawlId: crawl.id, url: site.entryUrl, maxPages: 1000, maxDepth: 100 },
      progress: { done: crawl.pages.discovered, total: crawl.pages.discovered },
    });
    expect(job.finishedAt).not.toBeNull();
    const listed = (await http(sluice.apiUrl!, "GET", "/api/jobs?kind=crawl")).body.items.map((j: { id: number }) => j.id);
    expect(listed).toContain(crawl.jobId);
    await waitFor(
      () => (events.some((e) => e.id === crawl.jobId && e.status === "succeeded") ? true : undefined),
      5_000,
      "the succeeded event",
    );
    const statuses = events
      .filter((e) => e.id === crawl.jobId)
      .map((e) => e.status)
      .filter((s, i, all) => s !== all[i - 1]);
    expect(statuses).toEqual(["pending", "running", "succeeded"]);
  });

  it("stopping its job cancels the crawl; stopping again answers 409", async () => {
    const created = await http(sluice.apiUrl!, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: 100 });
    const crawlId = created.body.id as number;
    const jobId = (await http(sluice.apiUrl!, "GET", `/api/crawls/${crawlId}`)).body.jobId as number;
    const stopped = await http(sluice.apiUrl!, "POST", `/api/jobs/${jobId}/stop`);
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({ id: jobId, kind: "crawl", status: "cancelled" });
    expect((await http(sluice.apiUrl!, "GET", `/api/crawls/${crawlId}`)).body.status).toBe("cancelled");
    expect((await http(sluice.apiUrl!, "POST", `/api/jobs/${jobId}/stop`)).status).toBe(409);
  });
});
