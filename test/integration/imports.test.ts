// Imports on a real Postgres: CSV and NDJSON uploads staged through COPY before the 202, then
// loaded all or none; every kind of bad input named by line (and column) with nothing left
// behind; stops in the upload and in the load; URL imports under the crawler's SSRF rules.
import http from "node:http";
import zlib from "node:zlib";
import pg from "pg";
import type { Sluice } from "../../runtime";
import { waitUntilFinished } from "../../fixtures/api-client";
import { sweepImports } from "../../models/imports";
import { createTestDatabase, describeWithServers, http as call, startEmbedded, waitFor } from "../support/env";

const MAX_BYTES = 3_000_000;

/** Sends `body` as an upload; answers the status and the JSON answer. */
async function upload(
  api: string,
  query: string,
  body: Buffer | string,
  headers: Record<string, string> = { "content-type": "text/csv" },
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${api}/api/imports?${query}`, { method: "POST", headers, body });
  return { status: res.status, body: await res.json() };
}

function csvOrders(n: number, from = 1): string {
  let s = "";
  for (let i = from; i < from + n; i++) {
    s += `${i},"order ${i}, ""quoted""",${(i * 1.25).toFixed(2)},2026-01-0${(i % 9) + 1}T10:00:00Z,"{""k"": ${i}, ""tags"": [""a""]}"\n`;
  }
  return s;
}
const HEADER = "n,label,amount,at,doc\n";

describeWithServers(["DATABASE_URL"], "imports through COPY", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sluice: Sluice;
  let direct: pg.Client;
  let api = "";
  let files: http.Server;
  let filesUrl = "";
  const sql = async <T extends object = any>(text: string, values: unknown[] = []) => (await direct.query<T>(text, values)).rows;
  const count = async (table = "orders") => Number((await sql(`SELECT count(*)::int AS n FROM ${table}`))[0].n);
  const stagingTables = async () => (await sql(`SELECT relname FROM pg_class WHERE relname LIKE 'import_staging_%'`)).map((r) => r.relname);
  const finished = (id: number) => waitUntilFinished(api, `/api/imports/${id}`, 60_000, `import ${id}`);

  beforeAll(async () => {
    db = await createTestDatabase();
    direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    sluice = await startEmbedded({
      DATABASE_URL: db.url,
      IMPORT_TABLES: "rows,orders,tags",
      IMPORT_MAX_BYTES: String(MAX_BYTES),
      JOB_HEARTBEAT_MS: "200",
      CRAWL_ALLOW_HOSTS: "127.0.0.1",
    });
    api = sluice.apiUrl!;
    await sql(`CREATE TABLE orders (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer NOT NULL, label text, amount numeric(12,2),
      at timestamptz, doc jsonb, created_at timestamptz NOT NULL DEFAULT now())`);
    await sql(`CREATE TABLE tags (name text PRIMARY KEY)`);
    files = http.createServer((req, res) => {
      if (req.url === "/orders.csv.gz") {
        res.writeHead(200, { "content-type": "text/csv" });
        res.end(zlib.gzipSync(HEADER + csvOrders(500, 50_001)));
      } else if (req.url === "/bad.csv") {
        res.writeHead(200, { "content-type": "text/csv" });
        res.end(HEADER + csvOrders(3, 60_001) + "x,y,1,2026-01-01T00:00:00Z,{}\n");
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => files.listen(0, "127.0.0.1", resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as { port: number }).port}`;
  }, 60_000);
  afterAll(async () => {
    await direct?.end();
    await sluice?.stop();
    await new Promise((r) => files?.close(r));
    await db?.drop();
  });

  it("a gzipped CSV with a header lands whole, with its types, and its staging goes", async () => {
    const body = zlib.gzipSync(HEADER + csvOrders(3000));
    const res = await upload(api, "table=orders", body, { "content-type": "text/csv", "content-encoding": "gzip" });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ id: expect.any(Number), status: "pending", rows: 3000 });
    const job = await finished(res.body.id);
    expect(job).toMatchObject({
      kind: "import",
      status: "succeeded",
      attempts: 1,
      import: { table: "orders", format: "csv", source: "upload", columns: ["n", "label", "amount", "at", "doc"], phase: "succeeded" },
    });
    expect(job.import.rows).toMatchObject({ done: 3000, total: 3000 });
    expect(job.import.bytes.done).toBe(Buffer.byteLength(HEADER + csvOrders(3000)));
    expect(await count()).toBe(3000);
    const [row] = await sql(`SELECT n, label, amount::text, at, doc FROM orders WHERE n = 1234`);
    expect(row).toEqual({
      n: 1234,
      label: 'order 1234, "quoted"',
      amount: "1542.50",
      at: new Date("2026-01-02T10:00:00Z"),
      doc: { k: 1234, tags: ["a"] },
    });
    expect(await stagingTables()).toEqual([]);
  });

  it("NDJSON keys map to columns, a nested object fills a jsonb column, and a missing key is NULL", async () => {
    const before = await count();
    const lines = Array.from({ length: 2000 }, (_, i) =>
      JSON.stringify(i === 7 ? { n: 100_000 + i } : { n: 100_000 + i, label: `tab\there ${i}`, amount: i / 4, doc: { nested: { i } } }),
    );
    const res = await upload(api, "table=orders", lines.join("\n") + "\n\n", { "content-type": "application/x-ndjson" });
    expect(res.status).toBe(202);
    expect(await finished(res.body.id)).toMatchObject({ status: "succeeded", result: { rows: 2000 } });
    expect(await count()).toBe(before + 2000);
    const rows = await sql(`SELECT n, label, amount::float8 AS amount, doc FROM orders WHERE n IN (100003, 100007) ORDER BY n`);
    expect(rows).toEqual([
      { n: 100_003, label: "tab\there 3", amount: 0.75, doc: { nested: { i: 3 } } },
      { n: 100_007, label: null, amount: null, doc: null },
    ]);
  });

  it("a CSV without a header into rows takes columns=, and the rows count follows", async () => {
    const counted = (await call(api, "GET", "/api/rows/count")).body.count;
    const res = await upload(api, "table=rows&header=false&columns=name,value", "alpha,1\nbeta,2\ngamma,3");
    expect(res.status).toBe(202);
    expect(await finished(res.body.id)).toMatchObject({ status: "succeeded" });
    expect((await call(api, "GET", "/api/rows/count")).body.count).toBe(counted + 3);
    expect(await sql(`SELECT name, value FROM rows WHERE name IN ('alpha', 'gamma') ORDER BY name`)).toEqual([
      { name: "alpha", value: 1 },
      { name: "gamma", value: 3 },
    ]);
  });

  describe("bad input: a clear error naming the line or field, an unchanged table, no staging", () => {
    const good = csvOrders(5);
    const cases: [string, () => Promise<{ status: number; body: any }>, number, Record<string, unknown>][] = [
      [
        "an unterminated quote",
        () => upload(api, "table=orders", HEADER + good + '6,"open quote,1,2026-01-01T00:00:00Z,{}\n'),
        422,
        { line: 7 },
      ],
      [
        "too many fields",
        () => upload(api, "table=orders", HEADER + good + "6,x,1,2026-01-01T00:00:00Z,{},extra\n" + good),
        422,
        { line: 7 },
      ],
      ["too few fields", () => upload(api, "table=orders", HEADER + good.repeat(2) + "6,x\n"), 422, { line: 12 }],
      [
        "a value of the wrong type",
        () => upload(api, "table=orders", HEADER + good + "six,x,1,2026-01-01T00:00:00Z,{}\n"),
        422,
        { line: 7, column: "n" },
      ],
      [
        "a bad timestamp",
        () => upload(api, "table=orders", HEADER + "1,x,1,yesterday-ish,{}\n"),
        422,
        { line: 2, column: "at", reason: expect.stringContaining("yesterday-ish") },
      ],
      [
        "invalid UTF-8",
        () =>
          upload(api, "table=orders", Buffer.concat([Buffer.from(HEADER + good + "6,caf"), Buffer.from([0xe9]), Buffer.from(",1,,\n")])),
        422,
        { line: 7 },
      ],
      [
        "an NDJSON line that is not an object",
        () => upload(api, "table=orders", '{"n": 1}\n{"n": 2}\n[3]\n', { "content-type": "application/x-ndjson" }),
        422,
        { line: 3 },
      ],
      [
        "invalid UTF-8 in NDJSON",
        () =>
          upload(api, "table=orders", Buffer.concat([Buffer.from('{"n": 1}\n{"label": "caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]), {
            "content-type": "application/x-ndjson",
          }),
        422,
        { line: 2 },
      ],
      ["a NULL in a NOT NULL column", () => upload(api, "table=orders", HEADER + good + ",x,1,,\n"), 422, { line: 7, column: "n" }],
      ["an unknown parameter", () => upload(api, "table=orders&colums=n", "n\n1\n"), 422, { field: "colums" }],
      ["a table not in IMPORT_TABLES", () => upload(api, "table=users", "name\nx\n"), 422, { field: "table" }],
      ["an unknown column", () => upload(api, "table=orders", "n,colour\n1,red\n"), 422, { field: "columns", column: "colour" }],
      ["a generated column", () => upload(api, "table=orders", "id,n\n1,1\n"), 422, { field: "columns", column: "id" }],
      ["an empty file", () => upload(api, "table=orders", ""), 422, { field: "body" }],
      ["a header and no rows", () => upload(api, "table=orders", HEADER), 422, { field: "body" }],
      ["a body over IMPORT_MAX_BYTES", () => upload(api, "table=orders", HEADER + csvOrders(40_000)), 413, { field: "body" }],
      [
        "a gzip body over IMPORT_MAX_BYTES once inflated",
        () =>
          upload(api, "table=orders", zlib.gzipSync(HEADER + csvOrders(40_000)), {
            "content-type": "text/csv",
            "content-encoding": "gzip",
          }),
        413,
        { field: "body" },
      ],
      [
        "a body that is not gzip",
        () => upload(api, "table=orders", "not gzip at all", { "content-type": "text/csv", "content-encoding": "gzip" }),
        400,
        { field: "content-encoding" },
      ],
      [
        "a Content-Type that is no import",
        () => upload(api, "table=orders", "<x/>", { "content-type": "application/xml" }),
        415,
        { field: "content-type" },
      ],
    ];
    it.each(cases)("%s", async (_what, send, status, details) => {
      const before = await count();
      const jobsBefore = Number((await sql(`SELECT count(*)::int AS n FROM jobs WHERE kind = 'import'`))[0].n);
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.body.error).toMatchObject({ message: expect.any(String), details: expect.objectContaining(details) });
      expect(await count()).toBe(before);
      expect(await stagingTables()).toEqual([]);
      // A refusal before any row was read makes no job; one found in the data fails its job, saying where.
      const jobs = await sql(`SELECT status, error FROM jobs WHERE kind = 'import' ORDER BY id DESC LIMIT 1`);
      const made = Number((await sql(`SELECT count(*)::int AS n FROM jobs WHERE kind = 'import'`))[0].n) - jobsBefore;
      if (made > 0) {
        expect(jobs[0].status).toBe("failed");
        if (details.line) expect(jobs[0].error).toContain(`line ${details.line as number}`);
      }
    });
  });

  it("an upload cut off mid-way ends failed with 'upload interrupted' and leaves no staging", async () => {
    const before = await count();
    const req = http.request(`${api}/api/imports?table=orders`, { method: "POST", headers: { "content-type": "text/csv" } });
    req.on("error", () => {});
    req.write(HEADER + csvOrders(2000));
    const job = await waitFor(
      async () => (await sql(`SELECT id FROM jobs WHERE kind = 'import' AND status = 'pending'`))[0],
      10_000,
      "the upload's job",
    );
    await new Promise((r) => setTimeout(r, 300));
    req.destroy();
    const failed = await finished(job.id);
    expect(failed).toMatchObject({ status: "failed", error: "upload interrupted" });
    expect(await count()).toBe(before);
    expect(await stagingTables()).toEqual([]);
  });

  it("a stop during the upload ends it: the client hears so, the job is cancelled, and nothing is left", async () => {
    const before = await count();
    const req = http.request(`${api}/api/imports?table=orders`, { method: "POST", headers: { "content-type": "text/csv" } });
    const answer = new Promise<{ status: number; body: any }>((resolve, reject) => {
      req.on("response", (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      req.on("error", reject);
    });
    req.write(HEADER + csvOrders(1000));
    const job = await waitFor(
      async () => (await sql(`SELECT id FROM jobs WHERE kind = 'import' AND status = 'pending'`))[0],
      10_000,
      "the upload's job",
    );
    expect((await call(api, "POST", `/api/jobs/${job.id}/stop`)).body).toMatchObject({ status: "cancelled" });
    // The upload learns of the stop with its next progress write, while the client goes on sending.
    let from = 1001;
    const sending = setInterval(() => req.write(csvOrders(500, (from += 500))), 50);
    try {
      expect(await answer).toMatchObject({ status: 400, body: { error: { code: "STOPPED" } } });
    } finally {
      clearInterval(sending);
      req.destroy();
    }
    expect((await call(api, "GET", `/api/imports/${job.id}`)).body).toMatchObject({ status: "cancelled" });
    expect(await count()).toBe(before);
    expect(await stagingTables()).toEqual([]);
  });

  it("the sweep fails an upload whose transaction is gone and drops staging no running job needs", async () => {
    const [dead] = await sql(
      `INSERT INTO jobs (kind, params, progress_detail, created_at) VALUES ('import', '{}', '{"phase": "uploading"}', now() - interval '2 minutes') RETURNING id`,
    );
    await sql(`CREATE TABLE import_staging_${dead.id} (n int)`);
    await sql(`CREATE TABLE import_staging_99999999 (n int)`);
    const [young] = await sql(
      `INSERT INTO jobs (kind, params, progress_detail) VALUES ('import', '{}', '{"phase": "uploading"}') RETURNING id`,
    );
    const swept = await sweepImports(sluice.db, 60_000);
    expect(swept.failed).toEqual([dead.id]);
    expect(swept.dropped).toBe(2);
    expect(await sql(`SELECT id, status, error FROM jobs WHERE id = ANY($1::int[]) ORDER BY id`, [[dead.id, young.id]])).toEqual([
      { id: dead.id, status: "failed", error: "upload interrupted" },
      { id: young.id, status: "pending", error: null },
    ]);
    expect(await stagingTables()).toEqual([]);
    await sql(`UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = $1`, [young.id]);
  });

  it("a file that breaks a unique key ends failed naming the key and its value, loads nothing, and leaves no staging", async () => {
    const res = await upload(api, "table=tags", "name\nred\ngreen\nred\n");
    expect(res.status).toBe(202);
    const end = await finished(res.body.id);
    // The same staged rows would break the key again: one attempt.
    expect(end).toMatchObject({ status: "failed", attempts: 1 });
    // Postgres's detail travels with its message: the value to look for in the file.
    expect(end.error).toMatch(/duplicate key value violates unique constraint "tags_pkey": Key \(name\)=\(red\) already exists/);
    expect(await count("tags")).toBe(0);
    await waitFor(async () => ((await stagingTables()).length === 0 ? true : undefined), 10_000, "no staging");
  });

  it("a stop during the load rolls every row back, and the staging goes", async () => {
    const before = await count();
    // The load waits behind the test's lock, mid-job; the stop is seen once it may go on.
    await sql("BEGIN");
    await sql("LOCK TABLE orders IN SHARE MODE");
    let id = 0;
    try {
      const res = await upload(api, "table=orders", HEADER + csvOrders(2000));
      expect(res.status).toBe(202);
      id = res.body.id;
      await waitFor(async () => (await call(api, "GET", `/api/imports/${id}`)).body.status === "running" || undefined, 10_000, "running");
      const stop = call(api, "POST", `/api/jobs/${id}/stop`);
      await new Promise((r) => setTimeout(r, 300));
      await sql("COMMIT");
      expect((await stop).status).toBe(200);
    } finally {
      await sql("ROLLBACK").catch(() => {});
    }
    expect(await finished(id)).toMatchObject({ status: "cancelled" });
    expect(await count()).toBe(before);
    await waitFor(async () => ((await stagingTables()).length === 0 ? true : undefined), 10_000, "no staging");
    // An upload's file went with its job: a retry is refused, saying so.
    const retry = await call(api, "POST", `/api/jobs/${id}/retry`);
    expect(retry.status).toBe(409);
    expect(retry.body.error.message).toContain("upload the file again");
  });

  it("a staged import waits while the insert queue is paused; stopped there, it never loads and its staging goes", async () => {
    const before = await count();
    expect((await call(api, "PATCH", "/api/queues/insert", { paused: true })).status).toBe(200);
    try {
      const res = await upload(api, "table=orders", HEADER + csvOrders(100));
      expect(res.status).toBe(202);
      expect(await stagingTables()).toEqual([`import_staging_${res.body.id}`]);
      expect((await call(api, "GET", `/api/imports/${res.body.id}`)).body).toMatchObject({
        status: "pending",
        import: { phase: "staged", rows: { done: 0, total: 100 } },
      });
      expect((await call(api, "POST", `/api/jobs/${res.body.id}/stop`)).body).toMatchObject({ status: "cancelled" });
      expect(await stagingTables()).toEqual([]);
    } finally {
      await call(api, "PATCH", "/api/queues/insert", { paused: false });
    }
    expect(await count()).toBe(before);
  });

  it("a URL import fetches the file (gzip undone) and a retry fetches it again", async () => {
    const before = await count();
    const res = await call(api, "POST", "/api/imports", { url: `${filesUrl}/orders.csv.gz`, table: "orders" });
    expect(res.status).toBe(202);
    expect(await finished(res.body.id)).toMatchObject({ status: "succeeded", result: { rows: 500 }, import: { source: "url" } });
    expect(await count()).toBe(before + 500);

    const bad = await call(api, "POST", "/api/imports", { url: `${filesUrl}/bad.csv`, table: "orders" });
    expect(await finished(bad.body.id)).toMatchObject({
      status: "failed",
      attempts: 1,
      error: expect.stringContaining("line 5, column n"),
    });
    expect(await count()).toBe(before + 500);
    const retried = await call(api, "POST", `/api/jobs/${bad.body.id}/retry`);
    expect(retried.status).toBe(202);
    expect(await finished(bad.body.id)).toMatchObject({ status: "failed", error: expect.stringContaining("line 5") });
  });

  it("a URL import is refused for a target the crawler may not reach, and for bad options", async () => {
    const own = await call(api, "POST", "/api/imports", { url: `${api}/api/jobs`, table: "orders" });
    expect(own.status).toBe(422);
    expect(own.body.error).toMatchObject({ code: "TARGET_NOT_ALLOWED" });
    const table = await call(api, "POST", "/api/imports", { url: `${filesUrl}/orders.csv.gz`, table: "jobs" });
    expect(table.body.error).toMatchObject({ details: { field: "table" } });
    const column = await call(api, "POST", "/api/imports", { url: `${filesUrl}/orders.csv.gz`, table: "orders", columns: ["nope"] });
    expect(column.body.error).toMatchObject({ details: { field: "columns", column: "nope" } });
  });
});
