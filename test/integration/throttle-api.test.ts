// GET /api/throttle shows every limit; PATCH /api/throttle changes one at runtime.
import { serveSampleSite, type SiteServer } from "../../fixtures/site-server";
import type { Sluice } from "../../runtime";
import { http, startEmbedded, waitFor } from "../support/env";

describe("throttle API (embedded)", () => {
  let sluice: Sluice;
  let site: SiteServer;
  let host = "";

  beforeAll(async () => {
    site = await serveSampleSite();
    host = new URL(site.url).host;
    sluice = await startEmbedded({ CRAWL_HOST_CONCURRENCY: "3", CRAWL_HOST_RATE: "100/s" });
    const created = await http(sluice.apiUrl!, "POST", "/api/crawls", { url: `${site.url}/` });
    await waitFor(async () =>
      (await http(sluice.apiUrl!, "GET", `/api/crawls/${created.body.id}`)).body.status === "succeeded" ? true : undefined,
    );
  });
  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
  });

  it("reports the db bulkhead and the per-host limiter with what they did", async () => {
    const { status, body } = await http(sluice.apiUrl!, "GET", "/api/throttle");
    expect(status).toBe(200);
    expect(body.nodes).toHaveLength(1);
    const node = body.nodes[0];
    expect(node.redis).toBe("not configured");
    expect(node.db).toMatchObject({ resource: "db", budget: 10, limit: 1, running: expect.any(Number), rejected: 0 });
    expect(node.db.acquired).toBeGreaterThan(40);
    const fetch = node.limiters.find((l: { resource: string }) => l.resource === `fetch:${host}`);
    expect(fetch).toMatchObject({
      maxConcurrent: 3,
      rate: { count: 100, perMs: 1000 },
      minTimeMs: 11,
      clustered: false,
      fallback: false,
      running: 0,
      queued: 0,
    });
    // One limiter job per fetch: robots.txt and the 38 URLs requested (of 40, one is
    // robots-disallowed); the redirect's second hop rides on its job.
    expect(fetch.done).toBe(site.requests.length - 1);
    expect(fetch.peakRunning).toBeLessThanOrEqual(3);
    expect(body.resources).toEqual([
      { resource: "db (bulkheads)", limit: 1, rate: null, running: expect.any(Number), queued: 0, rejected: 0, fallbackNodes: 0, nodes: 1 },
      { resource: `fetch:${host}`, limit: 3, rate: "100/s", running: 0, queued: 0, rejected: 0, fallbackNodes: 0, nodes: 1, reclaimed: 0 },
    ]);
  });

  it("changes a limit at runtime, and refuses bad changes with 422 naming the field", async () => {
    const ok = await http(sluice.apiUrl!, "PATCH", "/api/throttle", { resource: `fetch:${host}`, maxConcurrent: 2, rate: "5/s" });
    expect(ok.status).toBe(200);
    const after = await waitFor(async () => {
      const { body } = await http(sluice.apiUrl!, "GET", "/api/throttle");
      const l = body.nodes[0].limiters.find((x: { resource: string }) => x.resource === `fetch:${host}`);
      return l.maxConcurrent === 2 ? l : undefined;
    });
    // 5/s, spaced 10% wider so that it holds at the site.
    expect(after).toMatchObject({ rate: { count: 5, perMs: 1000 }, minTimeMs: 220 });

    for (const [body, field] of [
      [{ resource: "nope", maxConcurrent: 2 }, "resource"],
      [{ resource: `fetch:${host}`, maxConcurrent: 0 }, "maxConcurrent"],
      [{ resource: `fetch:${host}`, rate: "fast" }, "rate"],
      [{ resource: `fetch:${host}` }, "maxConcurrent"],
      [{ resource: "db", rate: "5/s" }, "rate"],
    ] as const) {
      const res = await http(sluice.apiUrl!, "PATCH", "/api/throttle", body);
      expect(res.status).toBe(422);
      expect(res.body.error.details.field).toBe(field);
    }
    const { body } = await http(sluice.apiUrl!, "GET", "/api/throttle");
    expect(body.nodes[0].limiters.find((x: { resource: string }) => x.resource === `fetch:${host}`)).toMatchObject({
      maxConcurrent: 2,
      minTimeMs: 220,
    });
  });
});

describe("DB_RATE", () => {
  let sluice: Sluice;
  beforeAll(async () => {
    sluice = await startEmbedded({ DB_RATE: "20/s", SERVICES: "api" });
  });
  afterAll(() => sluice?.stop());

  it("spaces database operations to the configured rate", async () => {
    const started = Date.now();
    await Promise.all(Array.from({ length: 30 }, () => sluice.db.query("SELECT 1")));
    const seconds = (Date.now() - started) / 1000;
    // 30 operations at 20/s: the last one starts 29 intervals (1.45 s, plus the 10% margin) after the first.
    expect(seconds).toBeGreaterThanOrEqual(1.45);
    expect(seconds).toBeLessThan(4);
    const db = sluice.limits.stats().find((l) => l.resource === "db");
    expect(db).toMatchObject({ minTimeMs: 55, maxConcurrent: 10 });
    expect(db!.done).toBeGreaterThanOrEqual(30);
  });
});
