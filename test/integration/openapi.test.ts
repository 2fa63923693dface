// GET /api/openapi.json against the running gateway: the document is valid OpenAPI 3.1, it lists
// every alias the gateway serves, and every documented operation is called — with real rows
// behind its ids — and answers what the document says: a documented status, and a body that
// validates against the documented schema. Errors too: for each operation a call without a token,
// with the read token on a write, with an unknown id and with a value of the wrong type, each
// answering a status the operation documents, with a body that validates as the error schema.
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { execFileSync } from "node:child_process";
import nodeHttp from "node:http";
import type { AddressInfo } from "node:net";
import { openApiPaths } from "../../lib/api/openapi";
import type { Sluice } from "../../runtime";
import { serveGeneratedSite, type GeneratedSiteServer } from "../../fixtures/site-server";
import { isFinished } from "../../fixtures/api-client";
import { startEmbedded, waitFor } from "../support/env";

const WRITE = "openapi-write-token-0123456789";
const READ = "openapi-read-token-0123456789";
const METHODS = ["get", "put", "post", "delete", "patch"];
const UNKNOWN_ID = 999_999;
const CSV = "name,value\nada,1\ngrace,2\n";

type Json = Record<string, any>;

// @seriousme/openapi-schema-validator is an ES module, which jest's CommonJS runtime cannot load:
// it runs in a node of its own, reading the document on stdin.
const VALIDATE_OPENAPI = `import { Validator } from "@seriousme/openapi-schema-validator";
let input = "";
process.stdin.on("data", (c) => (input += c)).on("end", async () => {
  process.stdout.write(JSON.stringify(await new Validator().validate(JSON.parse(input))));
});`;

function validateOpenApi(doc: object): { valid: boolean; errors?: unknown } {
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", VALIDATE_OPENAPI], { input: JSON.stringify(doc) });
  return JSON.parse(out.toString()) as { valid: boolean; errors?: unknown };
}
interface Answer {
  status: number;
  type: string;
  body: unknown;
  headers: Headers;
}
/** One call of the plan: an operation ("GET /api/crawls/{id}"), its path values and its input. */
interface Call {
  op: string;
  values?: () => Record<string, string | number>;
  query?: Record<string, string>;
  body?: () => unknown;
  /** A body that is not JSON (a file upload), with its Content-Type. */
  raw?: { type: string; data: string };
  after?: (body: any) => Promise<void> | void;
}

describe("the OpenAPI document, against the running gateway", () => {
  let sluice: Sluice;
  let site: GeneratedSiteServer;
  let files: nodeHttp.Server;
  let base = "";
  let filesUrl = "";
  let doc: Json;
  let ajv: Ajv2020;
  const ids: Record<string, number> = {};
  const validators = new Map<string, ValidateFunction>();

  async function request(method: string, url: string, token: string | null, body?: unknown, raw?: Call["raw"]): Promise<Answer> {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    let data: string | undefined;
    if (raw) [headers["content-type"], data] = [raw.type, raw.data];
    else if (body !== undefined) [headers["content-type"], data] = ["application/json", JSON.stringify(body)];
    const controller = new AbortController();
    const res = await fetch(url, { method, headers, body: data, signal: controller.signal });
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    if (type === "text/event-stream") {
      // A stream never ends: its first event is enough.
      const reader = res.body!.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      controller.abort();
      return { status: res.status, type, body: first, headers: res.headers };
    }
    const text = await res.text();
    return { status: res.status, type, body: type === "application/json" ? JSON.parse(text) : text, headers: res.headers };
  }

  const operation = (op: string): Json => {
    const [method, path] = op.split(" ") as [string, string];
    const found = doc.paths[path]?.[method.toLowerCase()];
    if (!found) throw new Error(`${op} is not in the document`);
    return found;
  };
  const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

  /** The documented answer of `op` for `status` (a $ref followed), and where it is in the document. */
  function documented(op: string, status: number): { response: Json; at: string } {
    const [method, path] = op.split(" ") as [string, string];
    const response = operation(op).responses[String(status)];
    if (!response) throw new Error(`${op} does not document ${status}`);
    if (response.$ref) {
      const name = String(response.$ref).split("/").pop()!;
      return { response: doc.components.responses[name], at: `/components/responses/${pointer(name)}` };
    }
    return { response, at: `/paths/${pointer(path, method.toLowerCase(), "responses", String(status))}` };
  }

  /** Checks an answer against the document: a documented status, its media type, and the body against its schema. */
  function expectDocumented(op: string, answer: Answer): void {
    const statuses = Object.keys(operation(op).responses).map(Number);
    expect({ op, status: answer.status, documented: statuses.includes(answer.status) }).toEqual({
      op,
      status: answer.status,
      documented: true,
    });
    const { response, at } = documented(op, answer.status);
    const types = Object.keys(response.content ?? {});
    expect({ op, type: answer.type, documented: types.includes(answer.type) }).toEqual({ op, type: answer.type, documented: true });
    const key = `${at}/content/${pointer(answer.type)}/schema`;
    let validate = validators.get(key);
    if (!validate) {
      validate = ajv.compile({ $ref: `openapi.json#${key}` });
      validators.set(key, validate);
    }
    const valid = validate(answer.body);
    expect({ op, status: answer.status, errors: valid ? null : validate.errors }).toEqual({ op, status: answer.status, errors: null });
  }

  const concrete = (op: string, values: Record<string, string | number>) => {
    const path = op.split(" ")[1]!.replace(/\{(\w+)\}/g, (_, k: string) => encodeURIComponent(String(values[k])));
    return op.endsWith(" /metrics") ? sluice.metricsUrl!.replace(/\/metrics$/, path) : base + path;
  };
  const withQuery = (url: string, query: Record<string, string> = {}) => {
    const qs = new URLSearchParams(query).toString();
    return qs ? `${url}?${qs}` : url;
  };
  const finished = (path: string) =>
    waitFor(
      async () => {
        const res = await request("GET", base + path, WRITE);
        return isFinished((res.body as Json).status) ? res.body : undefined;
      },
      30_000,
      `${path} to finish`,
    );

  // Every documented operation, in an order where each finds the rows it needs: reads first, the
  // records they read made just before them; then changes; deletions last. Insert and crawl
  // queues are paused before the jobs and crawls that must stay pending (to be stopped, retried
  // and cancelled).
  const id = (name: string) => () => ({ id: ids[name]! });
  const PLAN: Call[] = [
    { op: "GET /api/health" },
    { op: "GET /api/ready" },
    { op: "GET /api/whoami" },
    { op: "GET /api/nodes" },
    { op: "GET /api/openapi.json" },
    { op: "GET /api/docs" },
    { op: "GET /api/events" },
    { op: "GET /api/backlog" },
    { op: "GET /api/throttle" },
    { op: "GET /api/queues" },
    { op: "GET /metrics" },

    {
      op: "POST /api/crawls",
      body: () => ({ url: `${site.url}/`, maxPages: 12, maxDepth: 2 }),
      after: async (b) => void (ids.crawl = b.id),
    },
    { op: "GET /api/crawls/{id}", values: id("crawl"), after: () => finished(`/api/crawls/${ids.crawl}`).then(() => undefined) },
    { op: "GET /api/crawls" },
    { op: "GET /api/crawls/{id}/failures", values: id("crawl"), after: (b) => expect(b.items.length).toBeGreaterThan(0) },
    { op: "GET /api/pages", after: (b) => void (ids.page = b.items[0].id) },
    { op: "GET /api/pages/count" },
    { op: "GET /api/pages/{id}", values: id("page") },
    { op: "GET /api/pages/{id}/fetches", values: id("page") },

    { op: "POST /api/inserts", body: () => ({ rows: 20 }), after: async (b) => void (await finished(`/api/jobs/${(ids.job = b.id)}`)) },
    { op: "POST /api/inserts/sync", body: () => ({ rows: 10 }) },
    { op: "GET /dpd_insert", query: { rows: "5" } },
    { op: "GET /dpd_insert/{rows}", values: () => ({ rows: 5 }) },
    { op: "GET /api/jobs" },
    { op: "GET /api/jobs/{id}", values: id("job") },
    { op: "GET /status/{id}", values: id("job") },
    { op: "GET /api/jobs/{id}/events", values: id("job") },
    { op: "GET /api/rows" },
    { op: "GET /get_data" },
    { op: "GET /api/rows/count" },
    { op: "GET /get_data/count" },

    {
      op: "POST /api/imports",
      query: { table: "rows" },
      raw: { type: "text/csv", data: CSV },
      after: async (b) => void (await finished(`/api/imports/${(ids.import = b.id)}`)),
    },
    // A URL the files server has not: the job fails at once. (Embedded, a URL import that gets its
    // file never finishes: services/import-job.ts reads the catalog through the pool while its own
    // transaction holds PGlite's one connection.)
    { op: "POST /api/imports", body: () => ({ url: `${filesUrl}/missing.csv`, table: "rows" }) },
    { op: "GET /api/imports" },
    { op: "GET /api/imports/{id}", values: id("import") },

    { op: "POST /api/id-tasks", body: () => ({ ids: [1, 2, 3], rpm: 60 }), after: (b) => void (ids.idTask = b.id) },
    { op: "POST /celery_ids_tasks", body: () => ({ ids: [4, 5] }) },
    ...["/api/id-tasks", "/celery_ids_tasks"].flatMap((root): Call[] => [
      { op: `GET ${root}` },
      { op: `GET ${root}/{id}`, values: id("idTask") },
      { op: `GET ${root}/{id}/slots`, values: id("idTask") },
      { op: `GET ${root}/{id}/minutes`, values: id("idTask") },
      { op: `PUT ${root}/{id}`, values: id("idTask"), body: () => ({ rpm: 30 }) },
      { op: `PATCH ${root}/{id}`, values: id("idTask"), body: () => ({ paused: true }) },
    ]),

    {
      op: "POST /api/users",
      body: () => ({ externalId: 4242, name: "Ada", email: "ada@example.org" }),
      after: (b) => void (ids.user = b.id),
    },
    { op: "POST /users", body: () => ({ externalId: 4243, name: "Grace" }) },
    ...["/api/users", "/users"].flatMap((root): Call[] => [
      { op: `GET ${root}` },
      { op: `GET ${root}/{id}`, values: id("user") },
      { op: `PUT ${root}/{id}`, values: id("user"), body: () => ({ name: "Ada L." }) },
      { op: `PATCH ${root}/{id}`, values: id("user"), body: () => ({ email: "ada@example.com" }) },
    ]),

    {
      op: "POST /api/schedules",
      body: () => ({ cron: "0 0 1 1 *", job: { kind: "insert", params: { rows: 10 } } }),
      after: (b) => void (ids.schedule = b.id),
    },
    { op: "GET /api/schedules" },
    { op: "GET /api/schedules/{id}", values: id("schedule") },
    { op: "PATCH /api/schedules/{id}", values: id("schedule"), body: () => ({ paused: true }) },
    { op: "PATCH /api/throttle", body: () => ({ resource: "fetch:127.0.0.1", maxConcurrent: 4 }) },
    // Now with the crawl's fetch limiter.
    { op: "GET /api/throttle" },

    // From here on, new insert jobs and crawls stay pending.
    { op: "PATCH /api/queues/{name}", values: () => ({ name: "insert" }), body: () => ({ paused: true }) },
    { op: "PATCH /api/queues/{name}", values: () => ({ name: "crawl" }), body: () => ({ paused: true }) },
    { op: "POST /api/inserts", body: () => ({ rows: 10 }), after: (b) => void (ids.pending = b.id) },
    { op: "GET /insert/{rows}", values: () => ({ rows: 10 }), after: (b) => void (ids.pending2 = b.id) },
    { op: "GET /insert" },
    { op: "POST /api/jobs/{id}/stop", values: id("pending") },
    { op: "GET /stop/{id}", values: id("pending2") },
    { op: "POST /api/jobs/{id}/retry", values: id("pending") },
    { op: "POST /api/jobs/retry", body: () => ({ status: "cancelled", kind: "insert" }) },
    { op: "POST /api/crawls", body: () => ({ url: `${site.url}/` }), after: (b) => void (ids.pendingCrawl = b.id) },
    { op: "PATCH /api/crawls/{id}", values: id("pendingCrawl"), body: () => ({ paused: true }) },
    { op: "DELETE /api/crawls/{id}", values: id("pendingCrawl") },

    { op: "DELETE /api/jobs/{id}", values: id("job") },
    { op: "DELETE /api/jobs", query: { kind: "import", status: "succeeded" } },
    { op: "DELETE /api/schedules/{id}", values: id("schedule") },
    { op: "DELETE /api/rows" },
    { op: "GET /delete_all" },
  ];

  beforeAll(async () => {
    site = await serveGeneratedSite({ pages: 3, faults: true });
    files = nodeHttp.createServer((_req, res) => {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("no such file");
    });
    await new Promise<void>((resolve) => files.listen(0, "127.0.0.1", resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    sluice = await startEmbedded({
      API_TOKEN: WRITE,
      API_READ_TOKEN: READ,
      CRAWL_ALLOW_HOSTS: "127.0.0.1",
      CRAWL_FETCH_TIMEOUT_MS: "1000",
    });
    base = sluice.apiUrl!;
    const res = await request("GET", `${base}/api/openapi.json`, READ);
    expect(res.status).toBe(200);
    doc = res.body as Json;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(doc, "openapi.json", undefined, false);
  }, 60_000);
  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
    await new Promise((resolve) => files?.close(resolve));
  });

  const documentedOps = () =>
    Object.entries(doc.paths as Json).flatMap(([path, item]) => METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`));

  it("is a valid OpenAPI 3.1 document", () => {
    const result = validateOpenApi(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
  });

  it("documents every alias the gateway serves, and the plan below calls every documented operation", () => {
    const aliases = (sluice.broker.getLocalService("api") as unknown as { aliases: { method: string; fullPath: string; action: string }[] })
      .aliases;
    const served = aliases.flatMap((a) => openApiPaths(a.fullPath).map((p) => `${a.method} ${p}`));
    expect(served.filter((op) => !documentedOps().includes(op))).toEqual([]);
    for (const a of aliases)
      for (const p of openApiPaths(a.fullPath))
        expect([a.action, operation(`${a.method} ${p}`)["x-sluice-action"]]).toEqual([a.action, a.action]);
    const planned = new Set(PLAN.map((c) => c.op));
    expect(documentedOps().filter((op) => !planned.has(op))).toEqual([]);
    expect([...planned].filter((op) => !documentedOps().includes(op))).toEqual([]);
  });

  it("answers every documented operation as documented, and its errors too", async () => {
    let calls = 0;
    let refusals = 0;
    const withoutErrors: string[] = [];
    for (const call of PLAN) {
      const [method] = call.op.split(" ") as [string, string];
      const op = operation(call.op);
      const values = call.values?.() ?? {};
      const url = withQuery(concrete(call.op, values), call.query);
      const body = call.body?.();
      const answer = await request(method, url, op.security.length > 0 ? WRITE : null, body, call.raw);
      expect({ op: call.op, status: answer.status, ok: answer.status < 300 }).toEqual({ op: call.op, status: answer.status, ok: true });
      expectDocumented(call.op, answer);
      calls++;
      await call.after?.(answer.body);

      // The refusals: each must be a status the operation documents, with the error schema's body.
      const bad: [string, string, string | null, unknown][] = [];
      if (op.security.length > 0) bad.push(["no token", url, null, body]);
      if (op["x-sluice-access"] === "write") bad.push(["the read token", url, READ, body]);
      const pathParams = (op.parameters ?? []).filter((p: Json) => p.in === "path");
      const idParam = pathParams.find((p: Json) => p.name === "id" || p.name === "name");
      if (idParam)
        bad.push([
          "an unknown id",
          withQuery(concrete(call.op, { ...values, [idParam.name]: idParam.name === "id" ? UNKNOWN_ID : "nope" }), call.query),
          WRITE,
          body,
        ]);
      const numeric = pathParams.find((p: Json) => p.schema.type === "integer");
      const typed = (op.parameters ?? []).find(
        (p: Json) => p.in === "query" && (p.schema.type === "integer" || p.schema.enum || p.schema.pattern),
      );
      const bodySchema = op.requestBody?.content["application/json"]?.schema;
      const field = bodySchema ? Object.keys(bodySchema.properties ?? {})[0] : undefined;
      if (numeric)
        bad.push([
          "a path value of the wrong type",
          withQuery(concrete(call.op, { ...values, [numeric.name]: "abc" }), call.query),
          WRITE,
          body,
        ]);
      else if (typed)
        bad.push([
          `a query value of the wrong type (${typed.name})`,
          withQuery(url, { ...call.query, [typed.name]: "not-a-value" }),
          WRITE,
          body,
        ]);
      else if (field) {
        const wrong = bodySchema.properties[field].type === "string" ? 12345 : "not-a-value";
        bad.push([`a body field of the wrong type (${field})`, url, WRITE, { ...(body as Json), [field]: wrong }]);
      }
      if (bad.length === 0) withoutErrors.push(call.op);
      for (const [what, badUrl, token, badBody] of bad) {
        const refused = await request(method, badUrl, token, badBody);
        expect({ op: call.op, what, status: refused.status, refused: refused.status >= 400 && refused.status < 500 }).toEqual({
          op: call.op,
          what,
          status: refused.status,
          refused: true,
        });
        expectDocumented(call.op, refused);
        refusals++;
      }
    }
    // Public operations without parameters have nothing a caller can get wrong.
    expect(withoutErrors.sort()).toEqual(["GET /api/health", "GET /api/ready", "GET /metrics"]);
    console.log(`openapi: ${calls} calls over ${documentedOps().length} operations and ${refusals} refusals, every answer as documented`);
  }, 90_000);

  it("serves the docs page with a Content-Security-Policy that allows only this origin", async () => {
    const page = await request("GET", `${base}/api/docs`, READ);
    expect(page.headers.get("content-security-policy")).toMatch(/default-src 'none'.*script-src 'self'/);
    const shell = await request("GET", `${base}/docs/`, null);
    expect(shell.status).toBe(200);
    expect(shell.body).toBe(page.body);
    expect(shell.headers.get("content-security-policy")).toBe(page.headers.get("content-security-policy"));
    for (const src of String(page.body).match(/(?:src|href)="[^"]+"/g) ?? []) expect(src).toMatch(/="\/[^/]/);
    const vendor = await request("GET", `${base}/vendor/swagger-ui/swagger-ui-bundle.js`, null);
    expect([vendor.status, vendor.type]).toEqual([200, "text/javascript"]);
    expect((await request("GET", `${base}/vendor/swagger-ui/package.json`, null)).status).toBe(404);
  });
});
