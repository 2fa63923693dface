// The API the console is built on, on a real Postgres: job history, retries, search, cleanup and
// retention, crawl failures and pause, queue pause, the event stream, and counts kept with their
// writes. Everything is checked against the database with a client of the test's own.
import type pg from "pg";
import { QueryTypes } from "sequelize";
import { inSlowLane } from "../../lib/platform/db";
import type { Sluice } from "../../runtime";
import { serveGeneratedSite, type GeneratedSiteServer } from "../../fixtures/site-server";
import { waitUntilFinished } from "../../fixtures/api-client";
import type { ScratchDatabase } from "../../fixtures/scratch-db";
import { createTestDatabase, describeWithServers, http, startEmbedded, waitFor } from "../support/env";
import { startPostgresSluice, stopPostgresSluice } from "../support/postgres-sluice";

describeWithServers(["DATABASE_URL"], "the console's API on Postgres", () => {
  let db: ScratchDatabase;
  let sluice: Sluice;
  let direct: pg.Client;
  let site: GeneratedSiteServer;
  let api = "";
  const sql = async <T extends object>(text: string, values: unknown[] = []) => (await direct.query<T>(text, values)).rows;
  const finished = (path: string, timeoutMs = 60_000) => waitUntilFinished(api, path, timeoutMs, `${path} to finish`);
  const insertJob = async (rows: number) => (await http(api, "POST", "/api/inserts", { rows })).body.id as number;
  const events = async (id: number) => (await http(api, "GET", `/api/jobs/${id}/events`)).body;
  const failEveryInsert = () => sql("ALTER TABLE rows ADD CONSTRAINT reject_all CHECK (value < 0) NOT VALID");
  const acceptInserts = () => sql("ALTER TABLE rows DROP CONSTRAINT IF EXISTS reject_all");

  beforeAll(async () => {
    site = await serveGeneratedSite({ pages: 20, faults: true });
    ({ db, sluice, direct } = await startPostgresSluice({
      JOB_MAX_ATTEMPTS: "2",
      JOB_HEARTBEAT_MS: "200",
      INSERT_BATCH_ROWS: "1000",
      CRAWL_ALLOW_HOSTS: "127.0.0.1",
      CRAWL_FETCH_TIMEOUT_MS: "1000",
      JOB_RETENTION: "1h",
    }));
    api = sluice.apiUrl!;
  }, 60_000);
  afterAll(async () => {
    await stopPostgresSluice({ db, sluice, direct });
    await site?.close();
  });

  it("a job's history lists each change oldest first, and a retry runs it again with its history kept", async () => {
    await failEveryInsert();
    let id: number;
    try {
      id = await insertJob(3000);
      expect(await finished(`/api/jobs/${id}`)).toMatchObject({ status: "failed", attempts: 2 });
    } finally {
      await acceptInserts();
    }
    const failed = await events(id);
    expect(failed.items.map((e: { type: string }) => e.type)).toEqual(["created", "attempt", "error", "attempt", "failed"]);
    expect(failed.items[2]).toMatchObject({
      status: "pending",
      attempt: 1,
      nodeId: sluice.broker.nodeID,
      error: expect.stringContaining("reject_all"),
    });
    expect(failed.total).toBe(5);

    const retried = await http(api, "POST", `/api/jobs/${id}/retry`);
    expect(retried.status).toBe(202);
    expect(retried.body).toMatchObject({ id, status: "pending", attempts: 0, error: null });
    expect(await finished(`/api/jobs/${id}`)).toMatchObject({ status: "succeeded", progress: { done: 3000, total: 3000 } });
    const after = await events(id);
    expect(after.items.map((e: { type: string }) => e.type)).toEqual([
      "created",
      "attempt",
      "error",
      "attempt",
      "failed",
      "retry",
      "attempt",
      "succeeded",
    ]);
    // Paginated: the second page starts where the first ended.
    const page = (await http(api, "GET", `/api/jobs/${id}/events?limit=3&offset=3`)).body;
    expect(page.items.map((e: { id: number }) => e.id)).toEqual(after.items.slice(3, 6).map((e: { id: number }) => e.id));
    expect((await sql<{ n: number }>("SELECT count(*)::int AS n FROM rows"))[0]!.n).toBe(3000);

    // Only a failed or cancelled job can be retried.
    const again = await http(api, "POST", `/api/jobs/${id}/retry`);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: "CONFLICT", details: { id, status: "succeeded" } });
    expect((await http(api, "POST", "/api/jobs/999999/retry")).status).toBe(404);
    expect((await http(api, "GET", "/api/jobs/999999/events")).status).toBe(404);
  }, 120_000);

  it("retries every failed job at once, and answers how many", async () => {
    await failEveryInsert();
    let ids: number[];
    try {
      ids = [await insertJob(500), await insertJob(700)];
      for (const id of ids) expect(await finished(`/api/jobs/${id}`)).toMatchObject({ status: "failed" });
    } finally {
      await acceptInserts();
    }
    const before = (await sql<{ n: number }>("SELECT count(*)::int AS n FROM rows"))[0]!.n;
    const bulk = await http(api, "POST", "/api/jobs/retry", { status: "failed", kind: "insert" });
    expect(bulk.status).toBe(200);
    expect(bulk.body).toEqual({ retried: 2 });
    for (const id of ids) expect(await finished(`/api/jobs/${id}`)).toMatchObject({ status: "succeeded" });
    expect((await sql<{ n: number }>("SELECT count(*)::int AS n FROM rows"))[0]!.n).toBe(before + 1200);
    // Refused shapes change nothing.
    expect((await http(api, "POST", "/api/jobs/retry", { status: "succeeded" })).status).toBe(422);
    expect((await http(api, "POST", "/api/jobs/retry", { status: "failed", extra: 1 })).status).toBe(422);
  }, 120_000);

  it("finds jobs by id, crawl URL and error text, after a time, in either order", async () => {
    const crawl = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxPages: 5, maxDepth: 1 });
    expect(crawl.status).toBe(202);
    const crawlJob = (await http(api, "GET", `/api/crawls/${crawl.body.id}`)).body.jobId as number;
    const host = new URL(site.entryUrl).host;
    const byUrl = (await http(api, "GET", `/api/jobs?q=${encodeURIComponent(host)}`)).body;
    expect(byUrl.items.map((j: { id: number }) => j.id)).toContain(crawlJob);
    expect(byUrl.items.every((j: { kind: string }) => j.kind === "crawl")).toBe(true);
    // A job that stays failed keeps its error text (a retry clears it; its history keeps it).
    await failEveryInsert();
    let failedId: number;
    try {
      failedId = await insertJob(100);
      await finished(`/api/jobs/${failedId}`);
    } finally {
      await acceptInserts();
    }
    const byError = (await http(api, "GET", "/api/jobs?q=reject_all&kind=insert")).body;
    expect(byError.items.map((j: { id: number }) => j.id)).toContain(failedId);
    expect(byError.total).toBeGreaterThanOrEqual(1);
    expect(byError.items.every((j: { kind: string }) => j.kind === "insert")).toBe(true);
    expect((await http(api, "GET", `/api/jobs?q=${crawlJob}`)).body.items.map((j: { id: number }) => j.id)).toContain(crawlJob);
    const all = (await http(api, "GET", "/api/jobs?sort=createdAt&limit=500")).body.items as { id: number; createdAt: string }[];
    expect(all.map((j) => j.id)).toEqual([...all.map((j) => j.id)].sort((a, b) => a - b));
    const newest = all[all.length - 1]!;
    // The API shows milliseconds; Postgres keeps microseconds: one millisecond later is after it.
    const afterFirst = new Date(Date.parse(all[0]!.createdAt) + 1).toISOString();
    const after = (await http(api, "GET", `/api/jobs?createdAfter=${encodeURIComponent(afterFirst)}`)).body;
    expect(after.items.map((j: { id: number }) => j.id)).toContain(newest.id);
    expect(after.items.map((j: { id: number }) => j.id)).not.toContain(all[0]!.id);
    for (const bad of ["sort=title", "createdAfter=yesterday", `q=${"x".repeat(201)}`]) {
      const r = await http(api, "GET", `/api/jobs?${bad}`);
      expect([r.status, r.body.error.code]).toEqual([422, "VALIDATION_ERROR"]);
    }
    // The search uses its index (the expression of migrations/0006).
    await sql("SET enable_seqscan = off");
    const plan = await sql<{ "QUERY PLAN": string }>(
      `EXPLAIN SELECT id FROM jobs WHERE to_tsvector('simple', regexp_replace(id::text || ' ' || coalesce(params->>'url', '') || ' ' || coalesce(error, ''), '[^[:alnum:]]+', ' ', 'g')) @@ to_tsquery('simple', 'x:*')`,
    );
    await sql("RESET enable_seqscan");
    expect(plan.map((r) => r["QUERY PLAN"]).join("\n")).toContain("jobs_search");
    await finished(`/api/jobs/${crawlJob}`);
  }, 120_000);

  it("lists a crawl's failed and skipped URLs with their reasons and HTTP status", async () => {
    const { body } = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxPages: 100, maxDepth: 1 });
    await finished(`/api/crawls/${body.id}`);
    const failures = (await http(api, "GET", `/api/crawls/${body.id}/failures?limit=100`)).body;
    const byUrl = new Map(
      (failures.items as { url: string; state: string; reason: string; httpStatus: number | null }[]).map((f) => [
        new URL(f.url).pathname,
        f,
      ]),
    );
    expect(byUrl.get(site.faultPaths.error)).toMatchObject({ state: "failed", httpStatus: 500 });
    expect(byUrl.get(site.faultPaths.hang)).toMatchObject({ state: "failed", reason: expect.stringMatching(/timed? ?out/i) });
    const crawl = (await http(api, "GET", `/api/crawls/${body.id}`)).body;
    expect(failures.total).toBe(crawl.pages.failed + crawl.pages.skipped);
    expect((await http(api, "GET", "/api/crawls/999999/failures")).status).toBe(404);
  }, 120_000);

  it("a paused crawl fetches nothing more until it is resumed, then ends exact", async () => {
    const other = await serveGeneratedSite({ pages: 10 });
    try {
      const { body } = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxPages: 21, maxDepth: 10 });
      const paused = await http(api, "PATCH", `/api/crawls/${body.id}`, { paused: true });
      expect(paused.status).toBe(200);
      expect(paused.body.paused).toBe(true);
      // What was leased before the pause may finish; then nothing more of it is fetched.
      const leased = async () =>
        (await sql<{ n: number }>("SELECT count(*)::int AS n FROM crawl_urls WHERE crawl_id = $1 AND state = 'fetching'", [body.id]))[0]!.n;
      await waitFor(async () => ((await leased()) === 0 && site.inFlight === 0 ? true : undefined), 10_000, "fetches in flight to end");
      const fetchedWhilePaused = site.requests.length;
      // Another crawl runs to its end meanwhile: the crawlers were polling all along.
      const busy = await http(api, "POST", "/api/crawls", { url: other.entryUrl, maxPages: 11, maxDepth: 10 });
      expect(await finished(`/api/crawls/${busy.body.id}`)).toMatchObject({ status: "succeeded" });
      expect(site.requests.length).toBe(fetchedWhilePaused);
      const stillPaused = (await http(api, "GET", `/api/crawls/${body.id}`)).body;
      expect(stillPaused).toMatchObject({ paused: true, status: expect.stringMatching(/pending|running/) });
      expect((await http(api, "PATCH", `/api/crawls/${body.id}`, { paused: false })).body.paused).toBe(false);
      const done = await finished(`/api/crawls/${body.id}`);
      expect(done.status).toBe("succeeded");
      expect(done.pages.discovered).toBe(done.pages.stored + done.pages.unchanged + done.pages.failed + done.pages.skipped);
      expect(site.requests.length).toBeGreaterThan(fetchedWhilePaused);
      expect((await http(api, "PATCH", `/api/crawls/${body.id}`, { paused: true })).status).toBe(409);
      expect((await http(api, "PATCH", `/api/crawls/${body.id}`, { paused: "yes" })).status).toBe(422);
    } finally {
      await other.close();
    }
  }, 120_000);

  it("a paused insert queue leaves its jobs pending for the whole cluster, and resumes them", async () => {
    const paused = await http(api, "PATCH", "/api/queues/insert", { paused: true });
    expect(paused.body).toMatchObject({ name: "insert", paused: true });
    const id = await insertJob(1000);
    const waiting = await waitFor(
      async () =>
        ((await http(api, "GET", "/api/queues")).body.items as { name: string; depth: number }[]).find(
          (q) => q.name === "insert" && q.depth === 1,
        ),
      10_000,
      "the insert queue to hold the job",
    );
    expect(waiting).toMatchObject({ paused: true });
    expect((await http(api, "GET", `/api/jobs/${id}`)).body.status).toBe("pending");
    expect((await http(api, "PATCH", "/api/queues/insert", { paused: false })).body.paused).toBe(false);
    expect(await finished(`/api/jobs/${id}`)).toMatchObject({ status: "succeeded" });
    expect((await http(api, "PATCH", "/api/queues/nope", { paused: true })).status).toBe(404);
  }, 60_000);

  it("streams job updates as Server-Sent Events", async () => {
    const controller = new AbortController();
    const res = await fetch(`${api}/api/events`, { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = "";
    const id = await insertJob(2000);
    try {
      await waitFor(
        async () => {
          const { value } = await reader.read();
          text += new TextDecoder().decode(value);
          return text.includes(`"id":${id},`) && /"status":"succeeded"/.test(text) ? true : undefined;
        },
        30_000,
        "the job's updates on the stream",
      );
    } finally {
      controller.abort();
    }
    expect(text).toMatch(/event: jobs\.updated\ndata: \{/);
  }, 60_000);

  it("counts rows and pages with their writes: exact, without counting the tables", async () => {
    const count = async (table: string) => (await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`))[0]!.n;
    expect((await http(api, "GET", "/api/rows/count")).body.count).toBe(await count("rows"));
    expect((await http(api, "GET", "/api/rows?limit=1")).body.total).toBe(await count("rows"));
    expect((await http(api, "GET", "/api/pages/count")).body.count).toBe(await count("pages"));
    expect((await http(api, "GET", "/api/pages?limit=1")).body.total).toBe(await count("pages"));
    expect((await http(api, "DELETE", "/api/rows")).body.deleted).toBeGreaterThan(0);
    expect((await http(api, "GET", "/api/rows/count")).body.count).toBe(0);
    const id = await insertJob(1234);
    await finished(`/api/jobs/${id}`);
    expect((await http(api, "GET", "/api/rows/count")).body.count).toBe(1234);
    for (const externalId of [9001, 9002])
      expect((await http(api, "POST", "/api/users", { externalId, name: `u${externalId}` })).status).toBeLessThan(300);
    const users = (await http(api, "GET", "/api/users?pageSize=1")).body;
    expect([users.total, users.totalPages]).toEqual([await count("users"), await count("users")]);
    // Searched and sorted, the list reads the table itself.
    const titled = (await http(api, "GET", "/api/pages?q=Page%201&sort=-title&limit=5")).body;
    expect(titled.items.length).toBeGreaterThan(0);
    expect(titled.items.every((p: { title: string }) => p.title.includes("Page 1"))).toBe(true);
  }, 60_000);

  it("deletes finished jobs with what belongs only to them, never pages or rows, once per period across the cluster", async () => {
    const pagesBefore = (await sql<{ n: number }>("SELECT count(*)::int AS n FROM pages"))[0]!.n;
    const rowsBefore = (await sql<{ n: number }>("SELECT count(*)::int AS n FROM rows"))[0]!.n;
    const crawls = await sql<{ id: number; job_id: number }>("SELECT id, job_id FROM crawls ORDER BY id LIMIT 1");
    const deleted = await http(api, "DELETE", "/api/jobs?kind=crawl&status=succeeded");
    expect(deleted.status).toBe(200);
    expect(deleted.body.deleted).toBeGreaterThanOrEqual(1);
    expect(await sql("SELECT 1 FROM crawls WHERE id = $1", [crawls[0]!.id])).toEqual([]);
    expect(await sql("SELECT 1 FROM crawl_urls WHERE crawl_id = $1", [crawls[0]!.id])).toEqual([]);
    expect(await sql("SELECT 1 FROM job_events WHERE job_id = $1", [crawls[0]!.job_id])).toEqual([]);
    expect((await sql<{ n: number }>("SELECT count(*)::int AS n FROM pages"))[0]!.n).toBe(pagesBefore);
    expect((await http(api, "DELETE", "/api/jobs?status=running")).status).toBe(422);

    // JOB_RETENTION=1h: a job that finished two hours ago goes at the next sweep, and only one
    // node's sweep runs per period.
    const old = await sql<{ id: number }>("SELECT id FROM jobs WHERE kind = 'insert' AND status = 'succeeded' ORDER BY id LIMIT 1");
    await sql("UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = $1", [old[0]!.id]);
    await sql("DELETE FROM maintenance_runs");
    const admin = sluice.broker.getLocalService("jobAdmin") as unknown as { maintain(): Promise<void> };
    await admin.maintain();
    expect(await sql("SELECT 1 FROM jobs WHERE id = $1", [old[0]!.id])).toEqual([]);
    const kept = await sql<{ id: number }>("SELECT id FROM jobs WHERE status = 'succeeded' ORDER BY id LIMIT 1");
    await sql("UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = $1", [kept[0]!.id]);
    await admin.maintain();
    expect(await sql("SELECT 1 FROM jobs WHERE id = $1", [kept[0]!.id])).toHaveLength(1);
    expect((await sql<{ n: number }>("SELECT count(*)::int AS n FROM rows"))[0]!.n).toBe(rowsBefore);
  }, 60_000);

  it("deletes one finished job, refuses a running one, and says who the caller is", async () => {
    const id = await insertJob(100);
    await finished(`/api/jobs/${id}`);
    expect((await http(api, "DELETE", `/api/jobs/${id}`)).body).toEqual({ deleted: 1 });
    expect((await http(api, "GET", `/api/jobs/${id}`)).status).toBe(404);
    expect((await http(api, "DELETE", `/api/jobs/${id}`)).status).toBe(404);
    await sql("INSERT INTO jobs (kind, status, params) VALUES ('insert', 'running', '{}')");
    const [running] = await sql<{ id: number }>("SELECT id FROM jobs WHERE status = 'running' ORDER BY id DESC LIMIT 1");
    expect((await http(api, "DELETE", `/api/jobs/${running!.id}`)).status).toBe(409);
    await sql("UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = $1", [running!.id]);
    // No token is configured here: the API is open, and whoever calls may write.
    expect((await http(api, "GET", "/api/whoami")).body).toEqual({ caller: "anonymous", canWrite: true });
  });

  it("sums an id-task's plan per minute and state", async () => {
    const { body } = await http(api, "POST", "/api/id-tasks", { ids: Array.from({ length: 25 }, (_, i) => i + 1), rpm: 10 });
    expect(body.id).toEqual(expect.any(Number));
    const minutes = (await http(api, "GET", `/api/id-tasks/${body.id}/minutes`)).body;
    expect([minutes.rpm, minutes.minuteMs]).toEqual([10, 60_000]);
    const total = (m: { counts: Record<string, number> }) => Object.values(m.counts).reduce((a, b) => a + b, 0);
    expect(minutes.items.map(total).reduce((a: number, b: number) => a + b, 0)).toBe(25);
    expect(Math.max(...minutes.items.map(total))).toBeLessThanOrEqual(10);
    expect((await http(api, "GET", "/api/id-tasks/999999/minutes")).status).toBe(404);
    expect((await http(api, "PATCH", `/api/id-tasks/${body.id}`, { paused: true })).status).toBe(200);
    // A stopped id-task runs again when retried: its ids are planned again, from the current minute on.
    expect((await http(api, "POST", `/api/jobs/${body.id}/stop`)).body.status).toBe("cancelled");
    const retried = await http(api, "POST", `/api/jobs/${body.id}/retry`);
    expect([retried.status, retried.body.status]).toEqual([202, "pending"]);
    const task = (await http(api, "GET", `/api/id-tasks/${body.id}`)).body;
    expect(task.counts).toMatchObject({ planned: 25, failed: 0 });
    expect(Date.parse(task.firstMinuteAt)).toBeGreaterThanOrEqual(Math.floor(Date.now() / 60_000) * 60_000 - 60_000);
    expect((await events(body.id)).items.map((e: { type: string }) => e.type)).toEqual(["created", "stopped", "retry"]);
  });
});

describeWithServers(["DATABASE_URL"], "the slow lane on Postgres", () => {
  it("slow work takes every connection but one: a quick read still gets through", async () => {
    const db = await createTestDatabase();
    const sluice = await startEmbedded({ DATABASE_URL: db.url, DB_NODE_CONCURRENCY: "3" });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      // Three slow transactions on a pool of three: two run, the third waits for the slow lane.
      const slow = Array.from({ length: 3 }, () => inSlowLane(() => sluice.db.transaction(() => held)));
      await waitFor(async () => (sluice.dbGate.stats().running === 2 ? true : undefined), 10_000, "two slow transactions to run");
      expect(await sluice.db.query("SELECT 1 AS ok", { type: QueryTypes.SELECT })).toEqual([{ ok: 1 }]);
      expect(sluice.dbGate.stats().running).toBe(2);
      release();
      await Promise.all(slow);
    } finally {
      await sluice.stop();
      await db.drop();
    }
  }, 60_000);
});
