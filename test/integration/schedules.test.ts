// Recurring schedules through the HTTP API, with the tick loop running in the same process: the
// API (every refusal names its field), misfires on explicit dates (next_run_at moved into the past
// with SQL, as a scheduler that was down would leave it), catching up within the grace,
// pause/resume, the SSRF check at each fire, on a real Postgres; and one tick on embedded PGlite.
import type pg from "pg";
import type { ScratchDatabase } from "../../fixtures/scratch-db";
import type { Sluice } from "../../runtime";
import { describeWithServers, http, startEmbedded, waitFor } from "../support/env";
import { startPostgresSluice, stopPostgresSluice } from "../support/postgres-sluice";

// Yearly: a schedule made with it fires only when a test moves its next run into the past.
const YEARLY = "0 0 1 1 *";
const DAY_MS = 86_400_000;

interface Run {
  fireAt: string;
  jobId: number | null;
  nodeId: string;
  error: string | null;
}

describeWithServers(["DATABASE_URL"], "schedules on Postgres", () => {
  let db: ScratchDatabase;
  let sluice: Sluice;
  let direct: pg.Client;
  let api = "";

  const create = (body: unknown) => http(api, "POST", "/api/schedules", body);
  const get = async (id: number) => (await http(api, "GET", `/api/schedules/${id}`)).body;
  const patch = (id: number, body: unknown) => http(api, "PATCH", `/api/schedules/${id}`, body);
  const insertSchedule = async (extra: object = {}) => {
    const res = await create({ cron: YEARLY, job: { kind: "insert", params: { rows: 1 } }, ...extra });
    expect(res.status).toBe(201);
    return res.body as { id: number; nextRunAt: string };
  };
  /** Moves the schedule's next run to `at`, as a scheduler down since then would have left it. */
  const dueAt = (id: number, at: Date) => direct.query("UPDATE schedules SET next_run_at = $2 WHERE id = $1", [id, at]);
  const runsOf = async (id: number) =>
    (
      await direct.query<{ fire_at: Date; job_id: number | null; error: string | null }>(
        "SELECT fire_at, job_id, error FROM schedule_runs WHERE schedule_id = $1 ORDER BY fire_at",
        [id],
      )
    ).rows;
  const jobsOf = async (id: number) =>
    (
      await direct.query<{ id: number; kind: string; params: Record<string, unknown> }>(
        "SELECT * FROM jobs WHERE params->>'scheduleId' = $1",
        [String(id)],
      )
    ).rows;
  /** Waits until the tick loop has moved the schedule's next run past `than`. */
  const movedPast = (id: number, than: Date) =>
    waitFor(
      async () => {
        const s = await get(id);
        return new Date(s.nextRunAt).getTime() > than.getTime() ? s : undefined;
      },
      10_000,
      `schedule ${id} to move on`,
    );
  const refusal = async (res: Promise<{ status: number; body: any }>) => {
    const { status, body } = await res;
    return { status, field: body?.error?.details?.field };
  };

  beforeAll(async () => {
    ({ db, sluice, direct } = await startPostgresSluice());
    api = sluice.apiUrl!;
  }, 60_000);
  afterAll(() => stopPostgresSluice({ db, sluice, direct }));

  it("creates (201, with nextRunAt), lists with pagination, gets with its runs, patches and deletes", async () => {
    const before = Date.now();
    const res = await create({
      cron: "0 9 * * 1-5",
      timezone: "europe/paris",
      misfire: "skip",
      job: { kind: "insert", params: { rows: 5 } },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("location")).toBe(`/api/schedules/${res.body.id}`);
    expect(res.body).toMatchObject({
      cron: "0 9 * * 1-5",
      timezone: "Europe/Paris",
      misfire: "skip",
      job: { kind: "insert", params: { rows: 5 } },
      paused: false,
      lastRunAt: null,
    });
    const next = new Date(res.body.nextRunAt);
    expect(next.getTime()).toBeGreaterThan(before);
    expect(next.getTime() - before).toBeLessThanOrEqual(4 * DAY_MS);
    // 09:00 in Paris is 07:00 or 08:00 UTC.
    expect([7, 8]).toContain(next.getUTCHours());

    // The defaults: UTC, run_once (what Celery beat and BullMQ users get), the insert's own default rows.
    const defaults = await create({ cron: "*/10 * * * * *", job: { kind: "insert" } });
    expect(defaults.status).toBe(201);
    expect(defaults.body).toMatchObject({ timezone: "UTC", misfire: "run_once", job: { kind: "insert", params: { rows: 100_000 } } });
    await patch(defaults.body.id, { paused: true });

    const crawl = await create({ cron: YEARLY, job: { kind: "crawl", params: { url: "HTTP://127.0.0.1:9/a/../b" } } });
    expect(crawl.status).toBe(201);
    // Normalised as POST /api/crawls would, with its defaults.
    expect(crawl.body.job.params).toMatchObject({ url: "http://127.0.0.1:9/b", maxPages: 1000, maxDepth: 10 });
    const imp = await create({ cron: YEARLY, job: { kind: "import", params: { url: "http://127.0.0.1:9/rows.csv", table: "rows" } } });
    expect(imp.status).toBe(201);
    expect(imp.body.job.params).toMatchObject({ url: "http://127.0.0.1:9/rows.csv", table: "rows", format: "csv", source: "url" });

    const list = await http(api, "GET", "/api/schedules?limit=2&offset=1");
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ total: 4, limit: 2, offset: 1 });
    expect(list.body.items.map((s: { id: number }) => s.id)).toEqual([crawl.body.id, defaults.body.id]);
    expect(list.body.items[0].nextRunAt).toEqual(expect.any(String));

    expect(await get(res.body.id)).toMatchObject({ id: res.body.id, runs: [] });

    const changed = await patch(res.body.id, { cron: "30 8 * * *", timezone: "UTC", misfire: "run_once" });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ cron: "30 8 * * *", timezone: "UTC", misfire: "run_once" });
    const nextUtc = new Date(changed.body.nextRunAt);
    expect([nextUtc.getUTCHours(), nextUtc.getUTCMinutes()]).toEqual([8, 30]);
    expect(nextUtc.getTime() - Date.now()).toBeLessThanOrEqual(DAY_MS);

    for (const id of [res.body.id, defaults.body.id, crawl.body.id, imp.body.id]) {
      const del = await http(api, "DELETE", `/api/schedules/${id}`);
      expect(del.status).toBe(200);
      expect(del.body.id).toBe(id);
    }
    expect((await http(api, "GET", "/api/schedules")).body).toMatchObject({ items: [], total: 0 });
  });

  it("refuses bad input with a 422 naming the field, and changes nothing", async () => {
    const job = { kind: "insert", params: { rows: 1 } };
    const crawl = (params: object) => ({ cron: YEARLY, job: { kind: "crawl", params } });
    const cases: [unknown, string][] = [
      [{ job }, "cron"],
      [{ cron: "bad", job }, "cron"],
      [{ cron: "61 * * * *", job }, "cron"],
      [{ cron: "* * * * * * *", job }, "cron"],
      [{ cron: "0 0 30 2 *", job }, "cron"],
      [{ cron: 5, job }, "cron"],
      [{ cron: YEARLY, timezone: "Mars/Olympus", job }, "timezone"],
      [{ cron: YEARLY, timezone: "", job }, "timezone"],
      [{ cron: YEARLY, misfire: "burst", job }, "misfire"],
      [{ cron: YEARLY, job, every: "1s" }, "every"],
      [{ cron: YEARLY }, "job"],
      [{ cron: YEARLY, job: [job] }, "job"],
      [{ cron: YEARLY, job: { kind: "id-task", params: {} } }, "job.kind"],
      [{ cron: YEARLY, job: { ...job, priority: 1 } }, "job.priority"],
      [{ cron: YEARLY, job: { kind: "insert", params: "rows=1" } }, "job.params"],
      [{ cron: YEARLY, job: { kind: "insert", params: { rows: 0 } } }, "job.params.rows"],
      [{ cron: YEARLY, job: { kind: "insert", params: { rows: "5" } } }, "job.params.rows"],
      [{ cron: YEARLY, job: { kind: "insert", params: { rows: 1, sync: true } } }, "job.params.sync"],
      [crawl({}), "job.params.url"],
      [crawl({ url: "ftp://example.org/" }), "job.params.url"],
      // The SSRF guard of POST /api/crawls: a private address, and this process's own API port.
      [crawl({ url: "http://10.0.0.1/" }), "job.params.url"],
      [crawl({ url: `http://127.0.0.1:${new URL(api).port}/` }), "job.params.url"],
      [crawl({ url: "http://127.0.0.1:9/", maxPages: 0 }), "job.params.maxPages"],
      [crawl({ url: "http://127.0.0.1:9/", depth: 2 }), "job.params.depth"],
      [{ cron: YEARLY, job: { kind: "import", params: { url: "http://127.0.0.1:9/x.csv" } } }, "job.params.table"],
      [{ cron: YEARLY, job: { kind: "import", params: { url: "http://127.0.0.1:9/x.csv", table: "users" } } }, "job.params.table"],
      [
        { cron: YEARLY, job: { kind: "import", params: { url: "http://127.0.0.1:9/x.csv", table: "rows", format: "xml" } } },
        "job.params.format",
      ],
      [{ cron: YEARLY, job: { kind: "import", params: { url: "http://192.168.1.1/x.csv", table: "rows" } } }, "job.params.url"],
    ];
    for (const [body, field] of cases) expect([body, await refusal(create(body))]).toEqual([body, { status: 422, field }]);
    expect((await http(api, "GET", "/api/schedules")).body.total).toBe(0);

    const { id } = await insertSchedule();
    const patches: [unknown, string][] = [
      [{}, "body"],
      [{ cron: "bad" }, "cron"],
      [{ timezone: "Nowhere/Town" }, "timezone"],
      [{ misfire: "later" }, "misfire"],
      [{ paused: "yes" }, "paused"],
      [{ job: { kind: "insert" } }, "job"],
    ];
    for (const [body, field] of patches) expect([body, await refusal(patch(id, body))]).toEqual([body, { status: 422, field }]);
    expect(await get(id)).toMatchObject({ cron: YEARLY, timezone: "UTC", misfire: "run_once", paused: false });

    // Ids as the other routes take them; 404 for one that does not exist.
    for (const bad of ["abc", "0", "-1", "1.5", "99999999999"]) {
      expect(await refusal(http(api, "GET", `/api/schedules/${bad}`))).toEqual({ status: 422, field: "id" });
    }
    for (const [method, body] of [
      ["GET", undefined],
      ["PATCH", { paused: true }],
      ["DELETE", undefined],
    ] as const) {
      const res = await http(api, method, "/api/schedules/424242", body);
      expect([method, res.status, res.body.error.code]).toEqual([method, 404, "NOT_FOUND"]);
    }
    expect(await refusal(http(api, "GET", "/api/schedules?limit=0"))).toEqual({ status: 422, field: "limit" });
    await http(api, "DELETE", `/api/schedules/${id}`);
  });

  it("skip: a tick missed for days makes no job, and the schedule moves to the first tick after now", async () => {
    const { id } = await create({ cron: "0 0 * * *", misfire: "skip", job: { kind: "insert", params: { rows: 1 } } }).then((r) => r.body);
    const now = new Date();
    await dueAt(id, new Date(now.getTime() - 10 * DAY_MS));
    const s = await movedPast(id, now);
    expect(new Date(s.nextRunAt).getTime() - now.getTime()).toBeLessThanOrEqual(DAY_MS);
    expect(new Date(s.nextRunAt).getUTCHours()).toBe(0);
    expect(s.lastRunAt).toBeNull();
    expect(await runsOf(id)).toEqual([]);
    expect(await jobsOf(id)).toEqual([]);
    await http(api, "DELETE", `/api/schedules/${id}`);
  });

  it("run_once: ten missed daily ticks make one job (no burst), recorded at the first, then the first tick after now", async () => {
    const { id } = await create({ cron: "0 0 * * *", misfire: "run_once", job: { kind: "insert", params: { rows: 3 } } }).then(
      (r) => r.body,
    );
    const now = new Date();
    const missedSince = new Date(Math.floor(now.getTime() / DAY_MS) * DAY_MS - 10 * DAY_MS);
    await dueAt(id, missedSince);
    const s = await movedPast(id, now);
    expect(new Date(s.nextRunAt).getTime() - now.getTime()).toBeLessThanOrEqual(DAY_MS);
    expect(s.lastRunAt).toEqual(expect.any(String));
    const runs = await runsOf(id);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.fire_at).toEqual(missedSince);
    const jobs = await jobsOf(id);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({
      id: runs[0]!.job_id,
      kind: "insert",
      params: { rows: 3, scheduleId: id, scheduledFor: missedSince.toISOString() },
    });
    // The job is a bulk job like any other: queued after the commit, run by the ingestor.
    await waitFor(
      async () => ((await http(api, "GET", `/api/jobs/${jobs[0]!.id}`)).body.status === "succeeded" ? true : undefined),
      30_000,
    );
    const shown = await get(id);
    expect(shown.runs).toEqual([expect.objectContaining({ fireAt: missedSince.toISOString(), jobId: jobs[0]!.id, error: null })]);
    // Deleting the schedule keeps its job.
    await http(api, "DELETE", `/api/schedules/${id}`);
    expect((await http(api, "GET", `/api/jobs/${jobs[0]!.id}`)).status).toBe(200);
    expect(await runsOf(id)).toEqual([]);
  });

  it("every second: each tick gets one job, a late poll catches up within the grace, pause stops it, resume starts from now", async () => {
    const { id } = await create({ cron: "* * * * * *", job: { kind: "insert", params: { rows: 1 } } }).then((r) => r.body);
    // Five seconds behind: within the grace, so each of those ticks is on time and gets its own job.
    const behind = new Date(Math.floor(Date.now() / 1000) * 1000 - 5000);
    await dueAt(id, behind);
    await waitFor(async () => ((await runsOf(id)).length >= 8 ? true : undefined), 15_000, "eight runs");
    const paused = await patch(id, { paused: true });
    expect(paused.body).toMatchObject({ paused: true, nextRunAt: null });
    const runs = await runsOf(id);
    expect(runs[0]!.fire_at).toEqual(behind);
    // One run a second, no gaps, each with its own job.
    runs.forEach((r, i) => expect(r.fire_at.getTime() - behind.getTime()).toBe(i * 1000));
    expect(new Set(runs.map((r) => r.job_id)).size).toBe(runs.length);
    expect((await jobsOf(id)).map((j) => j.id).sort((a, b) => a - b)).toEqual(runs.map((r) => r.job_id).sort((a, b) => a! - b!));
    const shown = await get(id);
    expect(shown.runs).toHaveLength(Math.min(runs.length, 10));
    expect(shown.runs[0].fireAt).toBe(runs[runs.length - 1]!.fire_at.toISOString());

    // Paused: no tick fires, even one overdue. A witness ticking every second shows the polls that passed it by.
    await direct.query("UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1", [id]);
    const count = runs.length;
    const witness = (await create({ cron: "* * * * * *", job: { kind: "insert", params: { rows: 1 } } })).body.id as number;
    await waitFor(async () => ((await runsOf(witness)).length >= 2 ? true : undefined), 10_000, "two polls");
    await http(api, "DELETE", `/api/schedules/${witness}`);
    expect(await runsOf(id)).toHaveLength(count);

    // Resumed: from the next tick after now, the paused seconds not fired.
    const resumedAt = Date.now();
    const resumed = await patch(id, { paused: false });
    const next = new Date(resumed.body.nextRunAt).getTime();
    expect(next).toBeGreaterThan(resumedAt);
    expect(next).toBeLessThanOrEqual(resumedAt + 1000);
    await waitFor(async () => ((await runsOf(id)).length > count ? true : undefined), 10_000, "a run after the resume");
    await patch(id, { paused: true });
    const after = (await runsOf(id)).slice(count);
    expect(after[0]!.fire_at.getTime()).toBe(next);
    await http(api, "DELETE", `/api/schedules/${id}`);
  });

  it("a crawl schedule makes a crawl per tick, and checks its target again at each fire", async () => {
    const { id } = await create({ cron: YEARLY, job: { kind: "crawl", params: { url: "http://127.0.0.1:9/", maxPages: 3 } } }).then(
      (r) => r.body,
    );
    const first = new Date(Date.now() - 1000);
    await dueAt(id, first);
    await movedPast(id, new Date());
    const [job] = await jobsOf(id);
    expect(job).toMatchObject({ kind: "crawl", params: { url: "http://127.0.0.1:9/", maxPages: 3, scheduleId: id } });
    const crawl = await direct.query("SELECT id, url, max_pages FROM crawls WHERE job_id = $1", [job!.id]);
    expect(crawl.rows).toEqual([{ id: job!.params.crawlId, url: "http://127.0.0.1:9/", max_pages: 3 }]);

    // The target stopped being allowed since the schedule was made (here: its stored URL is changed).
    await direct.query(`UPDATE schedules SET job_params = job_params || '{"url": "http://169.254.169.254/latest"}' WHERE id = $1`, [id]);
    const second = new Date(Date.now() - 1000);
    await dueAt(id, second);
    await movedPast(id, new Date());
    const runs = await runsOf(id);
    expect(runs).toHaveLength(2);
    expect(runs[1]).toMatchObject({ fire_at: second, job_id: null, error: expect.stringMatching(/not allowed/) });
    expect(await jobsOf(id)).toHaveLength(1);
    await http(api, "DELETE", `/api/schedules/${id}`);
  });
});

describe("schedules on embedded PGlite", () => {
  let sluice: Sluice;
  afterAll(() => sluice?.stop());

  it("fires a tick in one session: the job is made, queued and run", async () => {
    sluice = await startEmbedded();
    const api = sluice.apiUrl!;
    const created = await http(api, "POST", "/api/schedules", { cron: "* * * * * *", job: { kind: "insert", params: { rows: 10 } } });
    expect(created.status).toBe(201);
    const run = await waitFor(
      async () => {
        const s = (await http(api, "GET", `/api/schedules/${created.body.id}`)).body;
        return s.runs.length > 0 ? (s.runs[s.runs.length - 1] as Run) : undefined;
      },
      15_000,
      "a run",
    );
    await http(api, "PATCH", `/api/schedules/${created.body.id}`, { paused: true });
    expect(run).toMatchObject({ jobId: expect.any(Number), nodeId: sluice.broker.nodeID, error: null });
    const job = await waitFor(async () => {
      const j = (await http(api, "GET", `/api/jobs/${run.jobId}`)).body;
      return j.status === "succeeded" ? j : undefined;
    }, 30_000);
    expect(job).toMatchObject({ kind: "insert", params: { rows: 10, scheduleId: created.body.id }, progress: { done: 10 } });
  }, 60_000);
});
