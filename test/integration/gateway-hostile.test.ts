// Hostile requests at the gateway, with the right token: every wrong shape of body, encoding or
// parameter on every route that takes one is a 4xx JSON error naming what is wrong, and changes
// nothing (every table's row count is the same afterwards). A 1 MB string in any field is
// answered at once and leaves the event loop free. Users' parameters have their own suite
// (users-hostile.test.ts), crawl targets theirs (crawl-targets.test.ts).
import { monitorEventLoopDelay } from "node:perf_hooks";
import zlib from "node:zlib";
import { QueryTypes } from "sequelize";
import type { Sluice } from "../../runtime";
import { startEmbedded } from "../support/env";

const TOKEN = "hostile-suite-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };
const MB = 1024 * 1024;

// Every route that reads a body.
const BODY_ROUTES: [string, string][] = [
  ["POST", "/api/crawls"],
  ["POST", "/api/inserts"],
  ["POST", "/api/inserts/sync"],
  ["POST", "/api/users"],
  ["PUT", "/api/users/1"],
  ["PATCH", "/api/users/1"],
  ["PATCH", "/api/throttle"],
  ["POST", "/api/id-tasks"],
  ["POST", "/celery_ids_tasks"],
  ["PATCH", "/api/id-tasks/1"],
];

type Case = [title: string, headers: Record<string, string>, body: string | Buffer, status: number, code: string, field: string];
const nested = (depth: number) => `{"a":${"[".repeat(depth)}${"]".repeat(depth)}}`;
const SHAPES: Case[] = [
  ["a text/plain body", { "content-type": "text/plain" }, '{"rows":5}', 415, "UNSUPPORTED_MEDIA_TYPE", "content-type"],
  ["a form body", { "content-type": "application/x-www-form-urlencoded" }, "rows=5&url=x", 415, "UNSUPPORTED_MEDIA_TYPE", "content-type"],
  [
    "a multipart body",
    { "content-type": "multipart/form-data; boundary=x" },
    "--x\r\n\r\nrows\r\n--x--",
    415,
    "UNSUPPORTED_MEDIA_TYPE",
    "content-type",
  ],
  ["no content type", {}, '{"rows":5}', 415, "UNSUPPORTED_MEDIA_TYPE", "content-type"],
  [
    "JSON in another charset",
    { "content-type": "application/json; charset=latin1" },
    '{"rows":5}',
    415,
    "UNSUPPORTED_MEDIA_TYPE",
    "content-type",
  ],
  ["a JSON array", { "content-type": "application/json" }, "[]", 422, "VALIDATION_ERROR", "body"],
  ["a JSON array of objects", { "content-type": "application/json" }, '[{"rows":5}]', 422, "VALIDATION_ERROR", "body"],
  ["a JSON string", { "content-type": "application/json" }, '"rows"', 400, "MALFORMED_JSON", "body"],
  ["malformed JSON", { "content-type": "application/json" }, '{"rows": 5', 400, "MALFORMED_JSON", "body"],
  ["JSON 33 levels deep", { "content-type": "application/json" }, nested(32), 400, "JSON_TOO_DEEP", "body"],
  ["JSON 100,000 levels deep", { "content-type": "application/json" }, nested(100_000), 400, "JSON_TOO_DEEP", "body"],
  [
    "an unknown Content-Encoding",
    { "content-type": "application/json", "content-encoding": "x-garbage" },
    '{"rows":5}',
    400,
    "BAD_CONTENT_ENCODING",
    "content-encoding",
  ],
  [
    "gzip that is not gzip",
    { "content-type": "application/json", "content-encoding": "gzip" },
    '{"rows":5}',
    400,
    "BAD_REQUEST_BODY",
    "body",
  ],
  [
    "a gzip bomb past the cap",
    { "content-type": "application/json", "content-encoding": "gzip" },
    zlib.gzipSync(`{"a":"${"0".repeat(30 * MB)}"}`),
    413,
    "PAYLOAD_TOO_LARGE",
    "body",
  ],
  ["a NUL in a string", { "content-type": "application/json" }, '{"x":"a\\u0000b"}', 422, "VALIDATION_ERROR", "x"],
  ["a NUL in a key", { "content-type": "application/json" }, '{"x\\u0000":1}', 422, "VALIDATION_ERROR", "x\u0000"],
];

// The string fields of each body route, each sent 1 MB long in an otherwise valid body.
const STRING_FIELDS: [string, string, Record<string, unknown>, string[]][] = [
  ["POST", "/api/crawls", {}, ["url"]],
  ["POST", "/api/inserts", {}, ["rows"]],
  ["POST", "/api/users", { externalId: 1, name: "n", email: "a@b.co" }, ["externalId", "name", "email"]],
  ["PATCH", "/api/users/1", {}, ["name", "email"]],
  ["PATCH", "/api/throttle", { resource: "db", rate: "1/s" }, ["resource", "rate"]],
  ["POST", "/api/id-tasks", { ids: [1] }, ["ids", "rpm"]],
  ["PATCH", "/api/id-tasks/1", {}, ["paused", "rpm"]],
];

describe("hostile requests at the gateway (embedded, API_TOKEN)", () => {
  let sluice: Sluice;
  let base = "";
  let cases = 0;

  const counts = async () =>
    (
      await sluice.db.query<Record<string, number>>(
        "SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM rows) AS rows, (SELECT count(*) FROM crawls) AS crawls, " +
          "(SELECT count(*) FROM pages) AS pages, (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM id_tasks) AS id_tasks",
        { type: QueryTypes.SELECT },
      )
    )[0];
  const expectRefused = async (
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | Buffer | undefined,
    status: number,
    code: string,
    field: string,
  ) => {
    const before = await counts();
    const started = Date.now();
    // As bytes: fetch would add a text/plain Content-Type to a string.
    const res = await fetch(base + path, {
      method,
      headers: { ...auth, ...headers },
      body: typeof body === "string" ? Buffer.from(body) : body,
    });
    const json = (await res.json()) as { error: { code: string; message: string; details?: { field?: string } } };
    expect({ method, path, status: res.status, code: json.error.code, field: json.error.details?.field }).toEqual({
      method,
      path,
      status,
      code,
      field,
    });
    expect(json.error.message.length).toBeGreaterThan(0);
    expect(JSON.stringify(json).length).toBeLessThan(4096);
    expect(await counts()).toEqual(before);
    cases++;
    return Date.now() - started;
  };

  beforeAll(async () => {
    // Room for a 1 MB string in a body, so that it reaches validation.
    sluice = await startEmbedded({ API_TOKEN: TOKEN, API_BODY_LIMIT_BYTES: String(4 * MB) });
    base = sluice.apiUrl!;
  });
  afterAll(async () => {
    console.log(`gateway hostile suite: ${cases} hostile requests refused, nothing changed`);
    await sluice?.stop();
  });

  for (const [method, path] of BODY_ROUTES) {
    it.each(SHAPES)(`${method} ${path} with %s`, async (_title, headers, body, status, code, field) => {
      await expectRefused(method, path, headers, body, status, code, field);
    });
  }

  it.each([
    ["/api/jobs?status=%00", "status"],
    ["/api/crawls?status=running%00", "status"],
    ["/api/pages?crawl=1%00", "crawl"],
    ["/api/jobs/%00", "id"],
    ["/api/users?search=a%00", "search"],
    ["/status/1%00", "id"],
  ])("GET %s (a NUL in a parameter) → 422 naming it", async (path, field) => {
    await expectRefused("GET", path, {}, undefined, 422, "VALIDATION_ERROR", field);
  });

  it.each([
    ["foo"],
    ["fetch:"],
    ["fetch:Example.ORG"],
    ["fetch:example.org/../x"],
    ["fetch:user@example.org"],
    ["fetch:example.org:99999"],
    ["upstream:exa mple.org"],
    ["db:connections"],
  ])("PATCH /api/throttle for resource %j → 422 naming resource", async (resource) => {
    const body = JSON.stringify({ resource, maxConcurrent: 2 });
    await expectRefused("PATCH", "/api/throttle", { "content-type": "application/json" }, body, 422, "VALIDATION_ERROR", "resource");
  });

  it("answers a 1 MB string in any field within a second, with the event loop free", async () => {
    const huge = "a@".repeat(MB / 2);
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    for (const [method, path, valid, fields] of STRING_FIELDS) {
      for (const field of fields) {
        const before = await counts();
        const started = Date.now();
        const res = await fetch(base + path, {
          method,
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ ...valid, [field]: huge }),
        });
        const ms = Date.now() - started;
        const json = (await res.json()) as { error?: { details?: { field?: string } } };
        expect({ method, path, field, status: res.status >= 400 && res.status < 500, named: json.error?.details?.field }).toEqual({
          method,
          path,
          field,
          status: true,
          named: field,
        });
        expect({ field, fast: ms < 1_000 }).toEqual({ field, fast: true });
        expect(await counts()).toEqual(before);
        cases++;
      }
    }
    lag.disable();
    // The longest the event loop was blocked while all of that ran, in ms.
    expect(lag.max / 1e6).toBeLessThan(500);
  }, 60_000);
});
