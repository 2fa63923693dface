// Bulk-insert jobs on the embedded default: exact counts, events in order, stop during a run,
// the blocking variant, the seed's routes, and bad input that changes nothing. Stopping a
// pending job and stops at random points run on a real Postgres (jobs-postgres.test.ts).
import type { Sluice } from "../../runtime";
import { http, startEmbedded, waitFor } from "../support/env";
import { isFinished } from "../../fixtures/api-client";

const TOKEN = "a-test-token-of-16+";

describe("bulk-insert jobs (embedded)", () => {
  let sluice: Sluice;
  let api = "";
  const events: { id: number; status: string; done: number }[] = [];
  const auth = { authorization: `Bearer ${TOKEN}` };
  const count = async () => (await http(api, "GET", "/api/rows/count", undefined, auth)).body.count as number;
  const jobTotal = async () => (await http(api, "GET", "/api/jobs", undefined, auth)).body.total as number;
  const finished = (id: number) =>
    waitFor(
      async () => {
        const j = (await http(api, "GET", `/api/jobs/${id}`, undefined, auth)).body;
        return isFinished(j.status) ? j : undefined;
      },
      60_000,
      `job ${id} to finish`,
    );

  beforeAll(async () => {
    // Small batches: several progress events even for small jobs.
    sluice = await startEmbedded({ API_TOKEN: TOKEN, INSERT_BATCH_ROWS: "500" });
    api = sluice.apiUrl!;
    sluice.broker.createService({
      name: "watcher",
      events: {
        "jobs.updated"(ctx: { params: { id: number; status: string; progress: { done: number } } }) {
          events.push({ id: ctx.params.id, status: ctx.params.status, done: ctx.params.progress.done });
        },
      },
    });
    await sluice.broker.waitForServices("watcher");
  });
  afterAll(() => sluice?.stop());

  it("adds exactly n rows and reports pending → running → succeeded, with progress", async () => {
    const before = await count();
    const created = await http(api, "POST", "/api/inserts", { rows: 20_000 }, auth);
    expect(created.status).toBe(202);
    expect(created.headers.get("location")).toBe(`/api/jobs/${created.body.id}`);
    const job = await finished(created.body.id);
    expect(job).toMatchObject({
      kind: "insert",
      status: "succeeded",
      attempts: 1,
      error: null,
      progress: { done: 20_000, total: 20_000 },
      params: { rows: 20_000 },
    });
    expect(job.throughput).toBeGreaterThan(0);
    expect(job.nodeId).toBe(sluice.broker.nodeID);
    expect(new Date(job.finishedAt).getTime()).toBeGreaterThanOrEqual(new Date(job.startedAt).getTime());
    expect(await count()).toBe(before + 20_000);

    await waitFor(() => (events.some((e) => e.id === job.id && e.status === "succeeded") ? true : undefined), 5_000, "the succeeded event");
    const mine = events.filter((e) => e.id === job.id);
    const statuses = mine.map((e) => e.status).filter((s, i, all) => s !== all[i - 1]);
    expect(statuses).toEqual(["pending", "running", "succeeded"]);
    const progress = mine.filter((e) => e.status === "running").map((e) => e.done);
    expect(progress.length).toBeGreaterThan(2);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
  });

  it("shows a running job's live progress, and stops it with a rollback", async () => {
    const before = await count();
    const running = (await http(api, "POST", "/api/inserts", { rows: 2_000_000 }, auth)).body.id as number;
    // Read from the runner: the job's transaction holds PGlite's one session until it ends.
    const live = await waitFor(
      async () => {
        const j = (await http(api, "GET", `/api/jobs/${running}`, undefined, auth)).body;
        return j.status === "running" && j.progress.done > 0 ? j : undefined;
      },
      10_000,
      "the job to make progress",
    );
    expect(live).toMatchObject({ attempts: 1, nodeId: sluice.broker.nodeID, progress: { total: 2_000_000 } });

    const stopped = await http(api, "POST", `/api/jobs/${running}/stop`, undefined, auth);
    expect(stopped.status).toBe(200);
    expect(stopped.body).toMatchObject({ status: "cancelled", attempts: 1, error: "stopped by request" });
    // The answer comes after the rollback: nothing of the job is left.
    expect(await count()).toBe(before);
    const again = await http(api, "POST", `/api/jobs/${running}/stop`, undefined, auth);
    expect(again.status).toBe(409);
    expect(again.body.error.details).toMatchObject({ id: running, status: "cancelled" });
    expect(await count()).toBe(before);
  });

  it("stopping a finished job answers 409, an unknown one 404", async () => {
    const id = (await http(api, "POST", "/api/inserts", { rows: 10 }, auth)).body.id as number;
    await finished(id);
    const r = await http(api, "POST", `/api/jobs/${id}/stop`, undefined, auth);
    expect(r.status).toBe(409);
    expect(r.body.error.details.status).toBe("succeeded");
    expect((await http(api, "POST", "/api/jobs/999999/stop", undefined, auth)).status).toBe(404);
    expect((await http(api, "GET", "/api/jobs/999999", undefined, auth)).status).toBe(404);
  });

  it.each([
    ["0", { rows: 0 }, "rows"],
    ["-1", { rows: -1 }, "rows"],
    ["10^12", { rows: 1e12 }, "rows"],
    ["a string", { rows: "abc" }, "rows"],
    ["a fraction", { rows: 1.5 }, "rows"],
    ["a missing body", undefined, "body"],
    ["malformed JSON", "{rows:", undefined],
  ])("rejects %s with a 4xx naming the field, and changes nothing", async (_what, body, field) => {
    const [rows, jobs] = [await count(), await jobTotal()];
    for (const path of ["/api/inserts", "/api/inserts/sync"]) {
      const r = await http(api, "POST", path, body, auth);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      if (field) expect(r.body.error.details.field).toBe(field);
    }
    expect(await count()).toBe(rows);
    expect(await jobTotal()).toBe(jobs);
  });

  it("runs the blocking variant inline, up to 100,000 rows", async () => {
    const before = await count();
    const r = await http(api, "POST", "/api/inserts/sync", { rows: 3000 }, auth);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: "succeeded", progress: { done: 3000, total: 3000 }, params: { rows: 3000, sync: true } });
    expect(await count()).toBe(before + 3000);
    const tooMany = await http(api, "POST", "/api/inserts/sync", { rows: 100_001 }, auth);
    expect(tooMany.status).toBe(422);
    expect(tooMany.body.error.details.field).toBe("rows");
  });

  it("lists jobs by status and kind, paginated", async () => {
    const all = (await http(api, "GET", "/api/jobs?limit=2", undefined, auth)).body;
    expect(all.items).toHaveLength(2);
    expect(all.total).toBeGreaterThan(2);
    expect(all.items[0].id).toBeGreaterThan(all.items[1].id);
    const cancelled = (await http(api, "GET", "/api/jobs?status=cancelled&kind=insert", undefined, auth)).body;
    expect(cancelled.items.length).toBeGreaterThanOrEqual(1);
    expect(cancelled.items.every((j: { status: string }) => j.status === "cancelled")).toBe(true);
    for (const q of ["status=done", "kind=mail", "limit=501", "limit=0", "offset=-1"]) {
      const r = await http(api, "GET", `/api/jobs?${q}`, undefined, auth);
      expect(r.status).toBe(422);
      expect(r.body.error.details.field).toBe(q.split("=")[0]);
    }
  });

  it("pages through rows, never unbounded", async () => {
    const page = (await http(api, "GET", "/api/rows?limit=3&offset=1", undefined, auth)).body;
    expect(page.items).toHaveLength(3);
    expect(page.total).toBe(await count());
    expect(Object.keys(page.items[0]).sort()).toEqual(["createdAt", "id", "name", "value"]);
    expect((await http(api, "GET", "/api/rows", undefined, auth)).body.items).toHaveLength(50);
    expect((await http(api, "GET", "/api/rows?limit=100000", undefined, auth)).status).toBe(422);
  });

  describe("the seed's routes", () => {
    it("insert, status, stop, get_data and count mean what they meant", async () => {
      const before = (await http(api, "GET", "/get_data/count", undefined, auth)).body.count as number;
      const started = await http(api, "GET", "/insert/1200", undefined, auth);
      expect(started.status).toBe(202);
      const job = await finished(started.body.id);
      expect((await http(api, "GET", `/status/${job.id}`, undefined, auth)).body).toMatchObject({ id: job.id, status: "succeeded" });
      expect((await http(api, "GET", `/stop/${job.id}`, undefined, auth)).status).toBe(409);
      expect((await http(api, "GET", "/get_data/count", undefined, auth)).body.count).toBe(before + 1200);
      const data = (await http(api, "GET", "/get_data?limit=5", undefined, auth)).body;
      expect(data.items).toHaveLength(5);
      expect((await http(api, "GET", "/get_data", undefined, auth)).body.items).toHaveLength(50);
      const sync = await http(api, "GET", "/dpd_insert/700", undefined, auth);
      expect(sync.body).toMatchObject({ status: "succeeded", progress: { done: 700 } });
      expect((await http(api, "GET", "/get_data/count", undefined, auth)).body.count).toBe(before + 1900);
    });

    it("defaults to 100000 rows without a number", async () => {
      const r = await http(api, "GET", "/insert", undefined, auth);
      expect(r.status).toBe(202);
      expect((await finished(r.body.id)).progress).toEqual({ done: 100_000, total: 100_000 });
    });

    it.each(["abc", "0", "-1", "1.5", "1000000000000", "100001"])("rejects a bad :num (%s) and changes nothing", async (num) => {
      const [rows, jobs] = [await count(), await jobTotal()];
      const paths = num === "100001" ? [`/dpd_insert/${num}`] : [`/insert/${num}`, `/dpd_insert/${num}`];
      for (const path of paths) {
        const r = await http(api, "GET", path, undefined, auth);
        expect(r.status).toBe(422);
        expect(r.body.error.details.field).toBe("rows");
      }
      expect((await http(api, "GET", `/status/${num}`, undefined, auth)).status).toBeGreaterThanOrEqual(400);
      expect(await count()).toBe(rows);
      expect(await jobTotal()).toBe(jobs);
    });

    it("guards the routes that change things with API_TOKEN, and delete_all empties the table", async () => {
      const rows = await count();
      expect(rows).toBeGreaterThan(0);
      for (const path of ["/insert/5", "/dpd_insert/5", "/stop/1", "/delete_all"]) expect((await http(api, "GET", path)).status).toBe(401);
      expect((await http(api, "DELETE", "/api/rows")).status).toBe(401);
      expect(await count()).toBe(rows);
      expect((await http(api, "GET", "/delete_all", undefined, auth)).body).toEqual({ deleted: rows });
      expect(await count()).toBe(0);
      await http(api, "POST", "/api/inserts/sync", { rows: 10 }, auth);
      expect((await http(api, "DELETE", "/api/rows", undefined, auth)).body).toEqual({ deleted: 10 });
    });
  });
});
