// The API's error contract, end to end against an embedded Sluice (PGlite in a temp dir):
// every failure is answered with { error: { code, message, details? } } and the right status,
// never leaks Sequelize or a stack trace, and leaves the database as it was.
import type { Sluice } from "../../runtime";
import { SAMPLE_SITE_EXPECTED, serveGeneratedSite, serveSampleSite, type SiteServer } from "../../fixtures/site-server";
import { http, startEmbedded, waitFor, type HttpResult } from "../support/env";

const TOKEN = "test-token-0123456789abcdef";

interface DbSnapshot {
  crawls: number;
  pages: number;
}

async function snapshot(base: string): Promise<DbSnapshot> {
  // The token is ignored where none is configured, and lets the reads through where one is.
  const crawls = await http(base, "GET", "/api/crawls", undefined, { authorization: `Bearer ${TOKEN}` });
  const pages = await http(base, "GET", "/api/pages/count", undefined, { authorization: `Bearer ${TOKEN}` });
  expect(crawls.status).toBe(200);
  expect(pages.status).toBe(200);
  return { crawls: crawls.body.total, pages: pages.body.count };
}

/** The one error shape, with nothing internal in it. */
function expectErrorBody(res: HttpResult, status: number, code: string): { code: string; message: string; details?: any } {
  const raw = JSON.stringify(res.body);
  expect({ status: res.status, body: res.body }).toMatchObject({ status, body: { error: { code } } });
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(raw).not.toMatch(/sequelize/i);
  expect(raw).not.toMatch(/\bat .+:\d+:\d+/); // a stack frame
  expect(raw).not.toMatch(/"stack"/);
  return res.body.error;
}

/** Sends a request that must fail, and checks the answer and that the database did not change. */
async function expectRejected(
  base: string,
  req: { method: string; path: string; body?: unknown; headers?: Record<string, string> },
  status: number,
  code: string,
): Promise<{ code: string; message: string; details?: any }> {
  const before = await snapshot(base);
  const res = await http(base, req.method, req.path, req.body, req.headers);
  const error = expectErrorBody(res, status, code);
  expect(await snapshot(base)).toEqual(before);
  return error;
}

async function waitForStatus(base: string, id: number, status: string, timeoutMs = 30_000): Promise<HttpResult> {
  return waitFor(
    async () => {
      const res = await http(base, "GET", `/api/crawls/${id}`);
      if (res.status !== 200) throw new Error(`GET /api/crawls/${id} → ${res.status}`);
      if (["failed", "cancelled"].includes(res.body.status) && res.body.status !== status) {
        throw new Error(`crawl ${id} ended ${res.body.status}: ${res.body.error}`);
      }
      return res.body.status === status ? res : undefined;
    },
    timeoutMs,
    `crawl ${id} to be ${status}`,
  );
}

describe("API errors (default configuration)", () => {
  let sluice: Sluice;
  let base: string;
  let site: SiteServer;

  beforeAll(async () => {
    [sluice, site] = await Promise.all([startEmbedded(), serveSampleSite()]);
    base = sluice.apiUrl!;
  });

  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
  });

  describe("health and readiness", () => {
    it("GET /api/health → 200", async () => {
      const res = await http(base, "GET", "/api/health");
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: "ok" });
    });

    it("GET /api/ready → 200 with the database ok", async () => {
      const res = await http(base, "GET", "/api/ready");
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ ready: true, checks: { database: "ok" } });
    });
  });

  describe("POST /api/crawls validation → 422 naming the field", () => {
    const cases: [string, unknown, string, string][] = [
      // [title, body, code, field]
      ["an invalid URL", { url: "not a url" }, "VALIDATION_ERROR", "url"],
      ["an ftp:// URL", { url: "ftp://example.com/file" }, "VALIDATION_ERROR", "url"],
      ["a javascript: URL", { url: "javascript:alert(1)" }, "VALIDATION_ERROR", "url"],
      ["an empty URL", { url: "" }, "VALIDATION_ERROR", "url"],
      ["a URL that is not a string", { url: 42 }, "VALIDATION_ERROR", "url"],
      ["a private IP (10/8)", { url: "http://10.0.0.1/" }, "TARGET_NOT_ALLOWED", "url"],
      ["the metadata address (169.254.169.254)", { url: "http://169.254.169.254/latest/meta-data/" }, "TARGET_NOT_ALLOWED", "url"],
      ["a loopback IP not in the allow list", { url: "http://127.0.0.2/" }, "TARGET_NOT_ALLOWED", "url"],
      ["an IPv6 loopback", { url: "http://[::1]/" }, "TARGET_NOT_ALLOWED", "url"],
      ["maxPages 0", { url: "http://127.0.0.1/", maxPages: 0 }, "VALIDATION_ERROR", "maxPages"],
      ["maxPages -1", { url: "http://127.0.0.1/", maxPages: -1 }, "VALIDATION_ERROR", "maxPages"],
      ["maxPages 10^9", { url: "http://127.0.0.1/", maxPages: 1e9 }, "VALIDATION_ERROR", "maxPages"],
      ['maxPages "abc"', { url: "http://127.0.0.1/", maxPages: "abc" }, "VALIDATION_ERROR", "maxPages"],
      ["maxPages 1.5", { url: "http://127.0.0.1/", maxPages: 1.5 }, "VALIDATION_ERROR", "maxPages"],
      ["maxDepth -1", { url: "http://127.0.0.1/", maxDepth: -1 }, "VALIDATION_ERROR", "maxDepth"],
      ["maxDepth 101", { url: "http://127.0.0.1/", maxDepth: 101 }, "VALIDATION_ERROR", "maxDepth"],
      ["a missing url", { maxPages: 5 }, "VALIDATION_ERROR", "url"],
      ["an empty object", {}, "VALIDATION_ERROR", "url"],
      ["a missing body", undefined, "VALIDATION_ERROR", "url"],
    ];

    it.each(cases)("%s", async (_title, body, code, field) => {
      const error = await expectRejected(base, { method: "POST", path: "/api/crawls", body }, 422, code);
      expect(error.details).toMatchObject({ field });
      // "url" is named as "URL" in the scheme message; the SSRF message names the host and the setting.
      expect(error.message.toLowerCase()).toContain(code === "TARGET_NOT_ALLOWED" ? "crawl_allow_hosts" : field.toLowerCase());
    });
  });

  describe("request bodies", () => {
    it("malformed JSON → 400", async () => {
      await expectRejected(base, { method: "POST", path: "/api/crawls", body: '{"url":' }, 400, "MALFORMED_JSON");
    });

    it("a JSON scalar (not an object) → 422 naming body", async () => {
      const error = await expectRejected(
        base,
        { method: "POST", path: "/api/crawls", body: '"http://127.0.0.1/"' },
        422,
        "VALIDATION_ERROR",
      );
      expect(error.details).toMatchObject({ field: "body" });
    });

    it("a body over the default 1 MiB cap → 413", async () => {
      const body = JSON.stringify({ url: "http://127.0.0.1/", pad: "x".repeat(1024 * 1024 + 1) });
      await expectRejected(base, { method: "POST", path: "/api/crawls", body }, 413, "PAYLOAD_TOO_LARGE");
    });
  });

  describe("unknown resources → 404, bad ids → 422", () => {
    const notFound: [string, string, string][] = [
      ["GET", "/api/crawls/999999", "crawl 999999 not found"],
      ["DELETE", "/api/crawls/999999", "crawl 999999 not found"],
      ["GET", "/api/crawls/2147483647", "crawl 2147483647 not found"], // the largest Postgres integer
      ["GET", "/api/pages/999999", "page 999999 not found"],
      ["GET", "/api/pages/3000000000", "page 3000000000 not found"], // pages.id is a bigint
    ];
    it.each(notFound)("%s %s → 404", async (method, path, message) => {
      const error = await expectRejected(base, { method, path }, 404, "NOT_FOUND");
      expect(error.message).toBe(message);
    });

    it("an unknown route (GET /api/nope) → 404", async () => {
      await expectRejected(base, { method: "GET", path: "/api/nope" }, 404, "NOT_FOUND");
    });

    it("an unmapped method on a known path (PUT /api/crawls/1) → 404", async () => {
      await expectRejected(base, { method: "PUT", path: "/api/crawls/1", body: {} }, 404, "NOT_FOUND");
    });

    const badIds: [string, string][] = [
      ["GET", "/api/crawls/abc"],
      ["DELETE", "/api/crawls/abc"],
      ["GET", "/api/crawls/0"],
      ["GET", "/api/crawls/-1"],
      ["GET", "/api/crawls/1.5"],
      ["GET", "/api/pages/abc"],
      // crawls.id is a Postgres integer: a larger id must not reach the database (it was a 500).
      ["GET", "/api/crawls/2147483648"],
      ["DELETE", "/api/crawls/3000000000"],
    ];
    it.each(badIds)("%s %s → 422 naming id", async (method, path) => {
      const error = await expectRejected(base, { method, path }, 422, "VALIDATION_ERROR");
      expect(error.details).toMatchObject({ field: "id" });
      expect(error.message).toContain("'id'");
    });
  });

  describe("pagination", () => {
    const bad: [string, string][] = [
      ["/api/pages?limit=501", "limit"],
      ["/api/pages?limit=0", "limit"],
      ["/api/pages?limit=abc", "limit"],
      ["/api/pages?offset=-1", "offset"],
      ["/api/pages?crawl=abc", "crawl"],
      ["/api/crawls?limit=501", "limit"],
      ["/api/crawls?status=bogus", "status"],
      ["/api/pages/count?crawl=0", "crawl"],
      // Beyond Postgres's bigint OFFSET (it was a 500).
      ["/api/pages?offset=1e20", "offset"],
      ["/api/crawls?offset=1e20", "offset"],
    ];
    it.each(bad)("GET %s → 422 naming %s", async (path, field) => {
      const error = await expectRejected(base, { method: "GET", path }, 422, "VALIDATION_ERROR");
      expect(error.details).toMatchObject({ field });
      expect(error.message).toContain(`'${field}'`);
    });

    it("GET /api/pages?limit=500 is the maximum and is accepted", async () => {
      const res = await http(base, "GET", "/api/pages?limit=500");
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ limit: 500, offset: 0 });
    });

    it("GET /api/pages defaults to limit 50, offset 0", async () => {
      const res = await http(base, "GET", "/api/pages");
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ items: expect.any(Array), total: expect.any(Number), limit: 50, offset: 0 });
    });

    it("GET /api/crawls is paginated", async () => {
      const res = await http(base, "GET", "/api/crawls?limit=2&offset=0");
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ items: expect.any(Array), total: expect.any(Number), limit: 2, offset: 0 });
    });

    it("GET /api/pages/count → { count }", async () => {
      const res = await http(base, "GET", "/api/pages/count");
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ count: expect.any(Number) });
    });
  });

  // These create crawls, so they run after the tests above that assert "nothing changed".
  describe("crawl lifecycle", () => {
    let sampleCrawlId: number;

    it("POST /api/crawls → 202 { id, status: pending } with a Location header", async () => {
      const before = await snapshot(base);
      const res = await http(base, "POST", "/api/crawls", { url: site.url + "/", maxPages: 100, maxDepth: 10 });
      expect(res.status).toBe(202);
      expect(res.body).toEqual({ id: expect.any(Number), status: "pending" });
      expect(res.headers.get("location")).toBe(`/api/crawls/${res.body.id}`);
      sampleCrawlId = res.body.id;
      expect((await snapshot(base)).crawls).toBe(before.crawls + 1);
    });

    it("a finished crawl: pages/count?crawl matches its stored count; DELETE → 409 (twice)", async () => {
      const done = await waitForStatus(base, sampleCrawlId, "succeeded", 45_000);
      expect(done.body.pages).toMatchObject({ stored: SAMPLE_SITE_EXPECTED.stored });

      const count = await http(base, "GET", `/api/pages/count?crawl=${sampleCrawlId}`);
      expect(count.status).toBe(200);
      expect(count.body).toEqual({ count: done.body.pages.stored });

      const pages = await http(base, "GET", `/api/pages?crawl=${sampleCrawlId}`);
      expect(pages.status).toBe(200);
      expect(pages.body).toMatchObject({ total: done.body.pages.stored, limit: 50, offset: 0 });
      expect(pages.body.items).toHaveLength(Math.min(50, done.body.pages.stored));

      for (let i = 0; i < 2; i++) {
        const error = await expectRejected(base, { method: "DELETE", path: `/api/crawls/${sampleCrawlId}` }, 409, "CONFLICT");
        expect(error.details).toEqual({ id: sampleCrawlId, status: "succeeded" });
      }
      expect((await http(base, "GET", `/api/crawls/${sampleCrawlId}`)).body.status).toBe("succeeded");
    });

    it("an existing page id → 200 with its body", async () => {
      const list = await http(base, "GET", `/api/pages?crawl=${sampleCrawlId}&limit=1`);
      const id = list.body.items[0].id;
      const res = await http(base, "GET", `/api/pages/${id}`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id, crawlId: sampleCrawlId, body: expect.any(String) });
    });

    it("DELETE of an unfinished crawl → 200 cancelled; DELETE again → 409", async () => {
      // A site whose every answer takes 30 s keeps the crawl unfinished while we cancel it.
      const slow = await serveGeneratedSite({ pages: 1, delayMs: 30_000 });
      try {
        const created = await http(base, "POST", "/api/crawls", { url: slow.entryUrl });
        expect(created.status).toBe(202);
        const id = created.body.id as number;

        const cancelled = await http(base, "DELETE", `/api/crawls/${id}`);
        expect(cancelled.status).toBe(200);
        expect(cancelled.body).toMatchObject({ id, status: "cancelled", finishedAt: expect.any(String) });

        const error = await expectRejected(base, { method: "DELETE", path: `/api/crawls/${id}` }, 409, "CONFLICT");
        expect(error.details).toEqual({ id, status: "cancelled" });
        expect(error.message).toBe(`crawl ${id} is already cancelled`);
        expect((await http(base, "GET", `/api/crawls/${id}`)).body.status).toBe("cancelled");
      } finally {
        await slow.close();
      }
    });
  });
});

describe("API errors (API_TOKEN and a 2 KiB body cap)", () => {
  let sluice: Sluice;
  let base: string;
  // Answers after 30 s, so crawls of it stay unfinished (and cancellable) during the tests.
  let slow: SiteServer & { entryUrl: string };
  const bearer = { authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    [sluice, slow] = await Promise.all([
      startEmbedded({ API_TOKEN: TOKEN, API_BODY_LIMIT_BYTES: "2048" }),
      serveGeneratedSite({ pages: 1, delayMs: 30_000 }),
    ]);
    base = sluice.apiUrl!;
  });

  afterAll(async () => {
    await sluice?.stop();
    await slow?.close();
  });

  const unauthorized: [string, string, string, Record<string, string>, string][] = [
    // [title, method, path, headers, code]
    ["POST without a token", "POST", "/api/crawls", {}, "NO_TOKEN"],
    ["POST with a wrong token", "POST", "/api/crawls", { authorization: "Bearer wrong-token-0123456789abcdef" }, "INVALID_TOKEN"],
    ["POST with a token of another length", "POST", "/api/crawls", { authorization: "Bearer x" }, "INVALID_TOKEN"],
    ["POST with a non-Bearer scheme", "POST", "/api/crawls", { authorization: `Basic ${TOKEN}` }, "NO_TOKEN"],
    ["DELETE without a token", "DELETE", "/api/crawls/1", {}, "NO_TOKEN"],
    ["DELETE with a wrong token", "DELETE", "/api/crawls/1", { authorization: "Bearer wrong-token-0123456789abcdef" }, "INVALID_TOKEN"],
  ];
  it.each(unauthorized)("%s → 401", async (_title, method, path, headers, code) => {
    const body = method === "POST" ? { url: "http://127.0.0.1/" } : undefined;
    await expectRejected(base, { method, path, body, headers }, 401, code);
  });

  it.each(["/api/health", "/api/ready"])("GET %s works without a token", async (path) => {
    const res = await http(base, "GET", path);
    expect(res.status).toBe(200);
  });

  it.each(["/api/crawls", "/api/pages", "/api/pages/count"])("GET %s needs a token too", async (path) => {
    expect((await http(base, "GET", path)).status).toBe(401);
    expect((await http(base, "GET", path, undefined, bearer)).status).toBe(200);
  });

  it("the right token → 202, and then DELETE with it → 200 cancelled", async () => {
    const created = await http(base, "POST", "/api/crawls", { url: slow.entryUrl }, bearer);
    expect(created.status).toBe(202);
    expect(created.body).toEqual({ id: expect.any(Number), status: "pending" });
    const res = await http(base, "DELETE", `/api/crawls/${created.body.id}`, undefined, bearer);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: created.body.id, status: "cancelled" });
  });

  it("a body over API_BODY_LIMIT_BYTES → 413, even with the right token", async () => {
    const body = JSON.stringify({ url: "http://127.0.0.1/", pad: "x".repeat(3000) });
    await expectRejected(base, { method: "POST", path: "/api/crawls", body, headers: bearer }, 413, "PAYLOAD_TOO_LARGE");
  });

  it("a body just under the cap is accepted", async () => {
    const body = JSON.stringify({ url: slow.entryUrl + "?" + "q".repeat(1500) });
    expect(Buffer.byteLength(body)).toBeLessThan(2048);
    const res = await http(base, "POST", "/api/crawls", body, bearer);
    expect(res.status).toBe(202);
    expect((await http(base, "DELETE", `/api/crawls/${res.body.id}`, undefined, bearer)).status).toBe(200);
  });
});
