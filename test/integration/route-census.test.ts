// The route census: every alias the running gateway serves, tried without a token, with a wrong
// one and with the read-only one, by every method (OPTIONS, HEAD and method-override headers
// too) and in other spellings of its path. None may run its action unless the caller may; the
// broker's own request counters (moleculer.request.total, per action) are the witness.
import nodeHttp from "node:http";
import zlib from "node:zlib";
import { QueryTypes } from "sequelize";
import type { Sluice } from "../../runtime";
import { ACTION_ACCESS } from "../../services/api-routes";
import { http, startEmbedded } from "../support/env";

const WRITE = "census-write-token-0123456789";
const READ = "census-read-token-0123456789";
const ORIGIN = "https://console.example.org";

interface Alias {
  method: string;
  fullPath: string;
  action: string;
}

describe("route census (API_TOKEN, API_READ_TOKEN, API_CORS_ORIGINS)", () => {
  let sluice: Sluice;
  let base = "";
  let aliases: Alias[] = [];

  /** How often each action other than the gateway's own has run. */
  const calls = (): Record<string, number> => {
    const metric = sluice.broker.metrics.getMetric("moleculer.request.total") as unknown as {
      snapshot(): { labels: { action: string }; value: number }[];
    } | null;
    const out: Record<string, number> = {};
    for (const item of metric?.snapshot() ?? []) {
      if (item.labels.action !== "api.rest") out[item.labels.action] = (out[item.labels.action] ?? 0) + item.value;
    }
    return out;
  };
  /** A concrete path for an alias: every parameter 1, an optional one present. */
  const concrete = (fullPath: string) => fullPath.replace(/\{\/:(\w+)\}/g, "/1").replace(/:(\w+)/g, "1");

  beforeAll(async () => {
    sluice = await startEmbedded({ API_TOKEN: WRITE, API_READ_TOKEN: READ, API_CORS_ORIGINS: ORIGIN });
    base = sluice.apiUrl!;
    aliases = (sluice.broker.getLocalService("api") as unknown as { aliases: Alias[] }).aliases.map((a) => ({
      method: a.method,
      fullPath: a.fullPath,
      action: a.action,
    }));
  });
  afterAll(() => sluice?.stop());

  it("finds every alias, and every one has an access class", () => {
    expect(aliases.length).toBeGreaterThanOrEqual(40);
    for (const a of aliases)
      expect([a.action, ACTION_ACCESS[a.action]]).toEqual([a.action, expect.stringMatching(/^(public|read|write)$/)]);
    expect(
      aliases
        .filter((a) => ACTION_ACCESS[a.action] === "public")
        .map((a) => a.fullPath)
        .sort(),
    ).toEqual(["/api/health", "/api/ready"]);
  });

  it("refuses every non-public route to callers who may not use it, by any method or spelling, without running it", async () => {
    let tried = 0;
    for (const a of aliases.filter((x) => ACTION_ACCESS[x.action] !== "public")) {
      const path = concrete(a.fullPath);
      // A spelling the router does not resolve ("//api/...") is a 404 for GET and needs a token otherwise.
      const spellings: [string, number[]][] = [
        [path, [401]],
        [`${path}/`, [401]],
        [`${path}?x=1`, [401]],
        [path.replace(/^\//, "//"), [401, 404]],
      ];
      const attempts: [string, string, Record<string, string>, number[]][] = [];
      for (const [p, refused] of spellings) {
        attempts.push([a.method, p, {}, refused]);
        attempts.push([a.method, p, { authorization: "Bearer wrong-token-0123456789abcdef" }, refused]);
        attempts.push([a.method, p, { authorization: `Basic ${WRITE}` }, refused]);
        if (ACTION_ACCESS[a.action] === "write")
          attempts.push([a.method, p, { authorization: `Bearer ${READ}` }, [403, ...refused.slice(1)]]);
      }
      // OPTIONS never runs an action: a preflight from a listed origin gets 204, anything else 405.
      attempts.push(["OPTIONS", path, { "access-control-request-method": a.method }, [405]]);
      attempts.push(["OPTIONS", path, { "access-control-request-method": a.method, origin: "https://evil.example" }, [405]]);
      attempts.push(["OPTIONS", path, { "access-control-request-method": a.method, origin: ORIGIN }, [204]]);
      attempts.push(["OPTIONS", path, { origin: ORIGIN }, [405]]);
      // HEAD resolves to no action; a method override is not honoured, and still needs a token.
      attempts.push(["HEAD", path, {}, [401, 404]]);
      for (const header of ["x-http-method-override", "x-http-method", "x-method-override"]) {
        attempts.push(["POST", path, { [header]: a.method }, [401]]);
        attempts.push(["GET", path, { [header]: a.method === "GET" ? "DELETE" : a.method }, a.method === "GET" ? [401] : [401, 404]]);
      }
      for (const [method, p, headers, statuses] of attempts) {
        const before = calls();
        const body = ["POST", "PUT", "PATCH"].includes(method) ? "{}" : undefined;
        const res = await fetch(base + p, {
          method,
          headers: { ...headers, ...(body ? { "content-type": "application/json" } : {}) },
          body,
        });
        if (method !== "HEAD" && res.status !== 204) {
          const json = (await res.json()) as { error?: { code?: string } };
          expect(json.error?.code).toEqual(expect.any(String));
        }
        expect({ method, p, headers, status: res.status }).toEqual({
          method,
          p,
          headers,
          status: statuses.includes(res.status) ? res.status : statuses[0],
        });
        expect({ method, p, headers, calls: calls() }).toEqual({ method, p, headers, calls: before });
        tried++;
      }
    }
    console.log(`route census: ${tried} refused requests over ${aliases.length} aliases, no action ran`);
    expect(tried).toBeGreaterThan(500);
  }, 120_000);

  it("refuses a body from a caller without a token before reading it", async () => {
    const before = calls();
    const malformed = await fetch(`${base}/api/id-tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: Buffer.from("{not json"),
    });
    expect(malformed.status).toBe(401);
    // 15 MB that would take a while to parse: refused at once, unread.
    const started = Date.now();
    const big = await fetch(`${base}/api/id-tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: Buffer.from(`{"ids":[${"1,".repeat(7_500_000)}1]}`),
    });
    expect(big.status).toBe(401);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(calls()).toEqual(before);
  });

  /**
   * Starts a POST with `head` as the first bytes of its body and never sends the rest: the answer
   * can only come from a server that did not wait for the body.
   */
  const unfinishedPost = (path: string, headers: Record<string, string>, head: Buffer) =>
    new Promise<{ status: number; code: string }>((resolve, reject) => {
      const req = nodeHttp.request(base + path, { method: "POST", headers });
      const timer = setTimeout(() => reject(new Error(`no answer to POST ${path} before its body ended`)), 5_000);
      req.on("response", (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => {
          clearTimeout(timer);
          req.destroy();
          resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { error: { code: string } }).error.code });
        });
      });
      req.on("error", (err) => (req.destroyed ? undefined : reject(err)));
      req.write(head);
    });

  it("refuses a file upload without a token (401) or with the read token (403) while its body is still coming, making nothing", async () => {
    const csv = Buffer.from("name,value\n" + "ada,1\n".repeat(200_000));
    const ndjsonGzip = zlib.gzipSync('{"name":"ada","value":1}\n'.repeat(200_000));
    // Large: a declared 10 GiB of which 1.2 MB is sent. Gzipped: chunked, the first half of the file.
    const large = { "content-type": "text/csv", "content-length": String(10 * 1024 ** 3) };
    const gzipped = { "content-type": "application/x-ndjson", "content-encoding": "gzip", "transfer-encoding": "chunked" };
    const half = ndjsonGzip.subarray(0, ndjsonGzip.length >> 1);
    const attempts: [string, Record<string, string>, Buffer, number, string][] = [
      ["anonymous CSV, large", large, csv, 401, "NO_TOKEN"],
      ["anonymous NDJSON, gzipped", gzipped, half, 401, "NO_TOKEN"],
      ["a wrong token, CSV", { ...large, authorization: "Bearer wrong-token-0123456789abcdef" }, csv, 401, "INVALID_TOKEN"],
      ["the read token, CSV, large", { ...large, authorization: `Bearer ${READ}` }, csv, 403, "FORBIDDEN"],
      ["the read token, NDJSON, gzipped", { ...gzipped, authorization: `Bearer ${READ}` }, half, 403, "FORBIDDEN"],
    ];
    const made = async () =>
      (
        await sluice.db.query<{ jobs: number; rows: number; staging: number }>(
          `SELECT (SELECT count(*)::int FROM jobs) AS jobs, (SELECT count(*)::int FROM rows) AS rows,
             (SELECT count(*)::int FROM pg_class WHERE relname LIKE 'import_staging_%') AS staging`,
          { type: QueryTypes.SELECT },
        )
      )[0];
    for (const [what, headers, head, status, code] of attempts) {
      const before = { made: await made(), calls: calls() };
      const answer = await unfinishedPost("/api/imports?table=rows", headers, head);
      expect({ what, ...answer }).toEqual({ what, status, code });
      expect({ what, made: await made(), calls: calls() }).toEqual({ what, ...before });
    }
  });

  it("answers a CORS preflight from a listed origin with its headers, and tags its responses", async () => {
    const pre = await fetch(`${base}/api/crawls`, {
      method: "OPTIONS",
      headers: { origin: ORIGIN, "access-control-request-method": "POST" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(pre.headers.get("access-control-allow-methods")).toBe("POST");
    expect(pre.headers.get("access-control-allow-headers")).toMatch(/Authorization/);
    const res = await fetch(`${base}/api/crawls`, { headers: { origin: ORIGIN, authorization: `Bearer ${READ}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    const other = await fetch(`${base}/api/crawls`, { headers: { origin: "https://evil.example", authorization: `Bearer ${READ}` } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("lets the read token read and the write token write; health and a bare readiness need none", async () => {
    const before = calls();
    expect((await http(base, "GET", "/api/jobs", undefined, { authorization: `Bearer ${READ}` })).status).toBe(200);
    expect(calls()["jobs.list"]).toBe((before["jobs.list"] ?? 0) + 1);
    const created = await http(base, "POST", "/api/inserts", { rows: 10 }, { authorization: `Bearer ${WRITE}` });
    expect(created.status).toBe(202);
    expect((await http(base, "GET", "/api/health")).status).toBe(200);
    const anonymous = await http(base, "GET", "/api/ready");
    expect(anonymous.body).toEqual({ ready: true });
    const reader = await http(base, "GET", "/api/ready", undefined, { authorization: `Bearer ${READ}` });
    expect(reader.body).toEqual({ ready: true, checks: { database: "ok" } });
    // The dashboard itself loads (it asks for the token); its data does not.
    expect((await fetch(`${base}/`)).status).toBe(200);
  });
});
