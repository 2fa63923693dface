// Hostile requests at the gateway, with the right token: every wrong shape of body, encoding or
// parameter on every route that takes one is a 4xx JSON error naming what is wrong, and changes
// nothing (every table's row count is the same afterwards). A 1 MB string in any field is
// answered at once and leaves the event loop free. The routes come from the gateway's own route
// table and the string fields from its OpenAPI document, so a new route or field is covered
// without editing this file. Users' parameters have their own suite (users-hostile.test.ts),
// crawl targets theirs (crawl-targets.test.ts).
import { monitorEventLoopDelay } from "node:perf_hooks";
import zlib from "node:zlib";
import { QueryTypes } from "sequelize";
import { aliasOperations } from "../../lib/api/openapi";
import { quoteIdent } from "../../lib/loading/import-format";
import type { Sluice } from "../../runtime";
import { BODY_METHODS } from "../../services/api-guard";
import { routeSpecs } from "../../services/api-routes";
import { startEmbedded } from "../support/env";

const TOKEN = "hostile-suite-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };
const MB = 1024 * 1024;
// Room for a 1 MB string in a body, so that it reaches validation.
const BODY_LIMIT_BYTES = 4 * MB;

/** A path of the route table with every parameter 1 (`/api/users/{id}` → `/api/users/1`). */
const concrete = (openApiPath: string) => openApiPath.replace(/\{\w+\}/g, "1");

// Every aliased route whose body the guard reads, from the routes the gateway mounts.
const BODY_ROUTES: [string, string][] = [
  ...new Set(
    aliasOperations(routeSpecs(BODY_LIMIT_BYTES))
      .filter((op) => BODY_METHODS.has(op.method))
      .map((op) => `${op.method} ${concrete(op.path)}`),
  ),
].map((route) => route.split(" ") as [string, string]);

type Case = [title: string, headers: Record<string, string>, body: string | Buffer, status: number, code: string, field: string];
const json = { "content-type": "application/json" };
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
  ["a JSON array", json, "[]", 422, "VALIDATION_ERROR", "body"],
  ["a JSON array of objects", json, '[{"rows":5}]', 422, "VALIDATION_ERROR", "body"],
  // Valid JSON, but no object: refused like an array, not as malformed.
  ["a JSON string", json, '"rows"', 422, "VALIDATION_ERROR", "body"],
  ["a JSON number", json, "5", 422, "VALIDATION_ERROR", "body"],
  ["JSON null", json, "null", 422, "VALIDATION_ERROR", "body"],
  ["JSON true", json, " true ", 422, "VALIDATION_ERROR", "body"],
  ["malformed JSON", json, '{"rows": 5', 400, "MALFORMED_JSON", "body"],
  ["JSON 33 levels deep", json, nested(32), 400, "JSON_TOO_DEEP", "body"],
  ["JSON 100,000 levels deep", json, nested(100_000), 400, "JSON_TOO_DEEP", "body"],
  [
    "an unknown Content-Encoding",
    { ...json, "content-encoding": "x-garbage" },
    '{"rows":5}',
    400,
    "BAD_CONTENT_ENCODING",
    "content-encoding",
  ],
  ["gzip that is not gzip", { ...json, "content-encoding": "gzip" }, '{"rows":5}', 400, "BAD_REQUEST_BODY", "body"],
  [
    "a gzip bomb past the cap",
    { ...json, "content-encoding": "gzip" },
    zlib.gzipSync(`{"a":"${"0".repeat(30 * MB)}"}`),
    413,
    "PAYLOAD_TOO_LARGE",
    "body",
  ],
  ["a NUL in a string", json, '{"x":"a\\u0000b"}', 422, "VALIDATION_ERROR", "x"],
  ["a NUL in a key", json, '{"x\\u0000":1}', 422, "VALIDATION_ERROR", "x\u0000"],
];

// File uploads (POST /api/imports with the file as the body): options that COPY would choke on
// or a NUL in any parameter, and encodings that do not decode. Each is refused before a job exists.
const csv = { "content-type": "text/csv" };
const ndjson = { "content-type": "application/x-ndjson" };
const CSV_FILE = "name;value\nada;1\n";
const UPLOADS: [query: string, headers: Record<string, string>, body: string | Buffer, status: number, code: string, field: string][] = [
  // Each file is written with its delimiter, so that only the delimiter stands between it and COPY.
  ...["%C3%A9", "%00", "%E2%80%A8", "%F0%9F%98%80", "%0A", "%0D", "%22", "%5C", "%7F", "%01", ";;", ""].flatMap(
    (d): [string, Record<string, string>, string, number, string, string][] => [
      [`table=rows&delimiter=${d}`, csv, CSV_FILE.replace(/;/g, decodeURIComponent(d)), 422, "VALIDATION_ERROR", "delimiter"],
      [`table=rows&delimiter=${d}`, ndjson, '{"name":"ada"}\n', 422, "VALIDATION_ERROR", "delimiter"],
    ],
  ),
  ["table=rows%00", csv, CSV_FILE, 422, "VALIDATION_ERROR", "table"],
  ["table=rows&columns=name%00", csv, CSV_FILE, 422, "VALIDATION_ERROR", "columns"],
  ["table=rows&header=%00", csv, CSV_FILE, 422, "VALIDATION_ERROR", "header"],
  ["table=rows&format=csv%00", csv, CSV_FILE, 422, "VALIDATION_ERROR", "format"],
  ["table=rows&x%00=1", csv, CSV_FILE, 422, "VALIDATION_ERROR", "x\u0000"],
  ["table=rows", { ...csv, "content-encoding": "x-garbage" }, CSV_FILE, 400, "BAD_CONTENT_ENCODING", "content-encoding"],
  ["table=rows", { ...ndjson, "content-encoding": "compress" }, '{"name":"ada"}\n', 400, "BAD_CONTENT_ENCODING", "content-encoding"],
  ["table=rows", { ...csv, "content-encoding": "gzip" }, CSV_FILE, 400, "BAD_CONTENT_ENCODING", "content-encoding"],
  ["table=rows", { "content-type": "application/xml" }, "<x/>", 415, "UNSUPPORTED_MEDIA_TYPE", "content-type"],
];

// Tables whose rows change with no request at all, left out of the count: table_counts (the
// maintenance sweep folds its delta rows into one per table), maintenance_runs and
// dispatched_minutes (a row per period or minute, taken by whichever node's timer comes first).
// Partitions are counted through their parent: maintenance adds a month's partition on its own.
const CHANGING_ON_THEIR_OWN = ["table_counts", "maintenance_runs", "dispatched_minutes"];

// Values for fields whose rules the document cannot spell out (checked by the handler), so that
// a body is valid but for the field under test.
const VALID: Record<string, unknown> = {
  url: "http://127.0.0.1:9/",
  email: "a@b.co",
  cron: "* * * * *",
  resource: "db",
  rate: "1/s",
  table: "rows",
};

type Schema = Record<string, any>;
/** A field of a request body: its path in the body, its schema, and a body holding `value` there and valid elsewhere. */
interface BodyField {
  field: string;
  schema: Schema;
  body(value: string): unknown;
}

describe("hostile requests at the gateway (embedded, API_TOKEN)", () => {
  let sluice: Sluice;
  let base = "";
  let doc: Schema;
  let cases = 0;

  /** Every table's row count, by name: a table that appears (a staging table left behind) shows too. */
  const counts = async () => {
    const tables = await sluice.db.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname`,
      { type: QueryTypes.SELECT },
    );
    const names = tables.map((t) => t.name).filter((n) => !CHANGING_ON_THEIR_OWN.includes(n));
    const sql = names.map((n) => `(SELECT count(*)::int FROM ${quoteIdent(n)}) AS ${quoteIdent(n)}`).join(", ");
    return (await sluice.db.query<Record<string, number>>(`SELECT ${sql}`, { type: QueryTypes.SELECT }))[0]!;
  };
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
    expect({ method, path, counts: await counts() }).toEqual({ method, path, counts: before });
    cases++;
  };

  const resolve = (s: Schema): Schema => (typeof s.$ref === "string" ? resolve(doc.components.schemas[s.$ref.split("/").pop()!]) : s);
  // A constant is a string field too: a request may send any string in its place.
  const isString = (s: Schema) =>
    s.type === "string" || (Array.isArray(s.type) && s.type.includes("string")) || typeof s.const === "string";

  /** A valid value for a schema: the smallest the document allows, or the known value for its field. */
  function sample(schema: Schema, name: string): unknown {
    const s = resolve(schema);
    if (name in VALID) return VALID[name];
    if ("const" in s) return s.const;
    if (s.default !== undefined) return s.default;
    if (Array.isArray(s.enum)) return s.enum[0];
    const branch = s.anyOf ?? s.oneOf;
    if (Array.isArray(branch)) return sample(branch[0], name);
    switch (Array.isArray(s.type) ? s.type[0] : s.type) {
      case "string":
        return "a".repeat(s.minLength ?? 1);
      case "integer":
      case "number":
        return s.minimum ?? (s.exclusiveMinimum === undefined ? 1 : s.exclusiveMinimum + 1);
      case "boolean":
        return true;
      case "array":
        return s.minItems ? [sample(s.items ?? {}, name)] : [];
      default:
        return s.properties ? requiredOf(s) : {};
    }
  }
  const requiredOf = (s: Schema, except?: string) =>
    Object.fromEntries(((s.required ?? []) as string[]).filter((k) => k !== except).map((k) => [k, sample(s.properties[k], k)]));

  /**
   * Every field under `schema` at `at`, whatever its type (a string where a number or an object
   * belongs is hostile input too): nested objects, array items and each anyOf branch's fields.
   */
  function fieldsUnder(schema: Schema, at: string): BodyField[] {
    const s = resolve(schema);
    const here: BodyField[] = at ? [{ field: at, schema: s, body: (value) => value }] : [];
    const branches = s.anyOf ?? s.oneOf;
    if (Array.isArray(branches)) return [...here, ...branches.flatMap((b: Schema) => fieldsUnder(b, at)).filter((f) => f.field !== at)];
    if (s.type === "array" && s.items) {
      return [...here, ...fieldsUnder(s.items, `${at}[0]`).map((f) => ({ ...f, body: (value: string) => [f.body(value)] }))];
    }
    const inside = Object.entries((s.properties ?? {}) as Record<string, Schema>).flatMap(([key, prop]) =>
      fieldsUnder(prop, at ? `${at}.${key}` : key).map((f) => ({
        ...f,
        body: (value: string) => ({ ...requiredOf(s, key), [key]: f.body(value) }),
      })),
    );
    return [...here, ...inside];
  }

  /** The fields of every JSON request body in the document, each once (anyOf branches may repeat one). */
  const bodyFields = () => {
    const all = Object.entries(doc.paths as Record<string, Record<string, Schema>>).flatMap(([path, ops]) =>
      Object.entries(ops).flatMap(([method, op]) => {
        const schema = op.requestBody?.content?.["application/json"]?.schema as Schema | undefined;
        return schema ? fieldsUnder(schema, "").map((f) => ({ method: method.toUpperCase(), path: concrete(path), ...f })) : [];
      }),
    );
    return [...new Map(all.map((f) => [`${f.method} ${f.path} ${f.field} ${JSON.stringify(f.body(""))}`, f])).values()];
  };

  beforeAll(async () => {
    sluice = await startEmbedded({ API_TOKEN: TOKEN, API_BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES) });
    base = sluice.apiUrl!;
    doc = (await (await fetch(`${base}/api/openapi.json`, { headers: auth })).json()) as Schema;
  });
  afterAll(async () => {
    console.log(`gateway hostile suite: ${cases} hostile requests refused, nothing changed`);
    await sluice?.stop();
  });

  it("covers every route of the running gateway that reads a body", () => {
    const aliases = (sluice.broker.getLocalService("api") as unknown as { aliases: { method: string; fullPath: string }[] }).aliases;
    const live = aliases
      .filter((a) => BODY_METHODS.has(a.method))
      .map((a) => `${a.method} ${a.fullPath.replace(/:\w+/g, "1")}`)
      .sort();
    expect([...new Set(live)]).toEqual(BODY_ROUTES.map(([method, path]) => `${method} ${path}`).sort());
    expect(BODY_ROUTES.length).toBeGreaterThanOrEqual(25);
  });

  for (const [method, path] of BODY_ROUTES) {
    it.each(SHAPES)(`${method} ${path} with %s`, async (_title, headers, body, status, code, field) => {
      await expectRefused(method, path, headers, body, status, code, field);
    });
  }

  it.each(UPLOADS)("POST /api/imports?%s as %j", async (query, headers, body, status, code, field) => {
    await expectRefused("POST", `/api/imports?${query}`, headers, body, status, code, field);
  });

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
    await expectRefused("PATCH", "/api/throttle", json, body, 422, "VALIDATION_ERROR", "resource");
  });

  it("bounds every string field of every request body in the document", () => {
    const fields = bodyFields().filter((f) => isString(f.schema));
    expect(fields.length).toBeGreaterThanOrEqual(30);
    const unbounded = fields.filter((f) => f.schema.maxLength === undefined && f.schema.enum === undefined && !("const" in f.schema));
    expect(unbounded.map((f) => `${f.method} ${f.path} ${f.field}`)).toEqual([]);
  });

  it("answers a 1 MB string in every field of every body with a 422 naming it within a second, with the event loop free", async () => {
    const huge = "a@".repeat(MB / 2);
    const fields = bodyFields();
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    for (const f of fields) {
      const { method, path, field } = f;
      const before = await counts();
      const started = Date.now();
      const res = await fetch(base + path, { method, headers: { ...auth, ...json }, body: JSON.stringify(f.body(huge)) });
      const ms = Date.now() - started;
      const answer = (await res.json()) as { error?: { code?: string; details?: { field?: string } } };
      expect({ method, path, field, status: res.status, named: answer.error?.details?.field }).toEqual({
        method,
        path,
        field,
        status: 422,
        named: field,
      });
      expect({ method, path, field, fast: ms < 1_000 }).toEqual({ method, path, field, fast: true });
      expect({ method, path, field, counts: await counts() }).toEqual({ method, path, field, counts: before });
      cases++;
    }
    lag.disable();
    console.log(
      `gateway hostile suite: a 1 MB string in ${fields.length} body fields, ${fields.filter((f) => isString(f.schema)).length} of them strings`,
    );
    // The longest the event loop was blocked while all of that ran, in ms.
    expect(lag.max / 1e6).toBeLessThan(500);
  }, 120_000);
});
