// Id-tasks on the embedded default with short minutes, against upstreams served on loopback:
// the plan, exact counts, users stored, pause/resume and a new RPM, an upstream that is down,
// and bad payloads that store nothing.
import { serveUpstream, type UpstreamServer } from "../../fixtures/upstream-server";
import type { Sluice } from "../../runtime";
import { http as call, startEmbedded, waitFor } from "../support/env";
import { isFinished } from "../../fixtures/api-client";

const MINUTE_MS = 200;

interface QuarterSummary {
  quarter: number;
  from: string;
  to: string;
  counts: { done: number; failed: number };
}

describe("id-tasks (embedded, short minutes)", () => {
  let sluice: Sluice;
  let upstream: UpstreamServer;
  let api = "";
  const task = async (id: number) => (await call(api, "GET", `/api/id-tasks/${id}`)).body;
  const finished = (id: number, timeoutMs = 60_000) =>
    waitFor(
      async () => {
        const t = await task(id);
        return isFinished(t.status) ? t : undefined;
      },
      timeoutMs,
      `id-task ${id} to finish`,
    );
  const quarters: QuarterSummary[] = [];
  const userCount = async () => (await call(api, "GET", "/api/users?pageSize=1")).body.total as number;

  beforeAll(async () => {
    upstream = await serveUpstream();
    sluice = await startEmbedded({
      SCHEDULER_MINUTE_MS: String(MINUTE_MS),
      UPSTREAM_URL: upstream.url,
      UPSTREAM_RATE: "500/s",
      UPSTREAM_MAX_ATTEMPTS: "3",
    });
    api = sluice.apiUrl!;
    sluice.broker.createService({
      name: "quarterWatcher",
      events: {
        "idTasks.quarter"(ctx: { params: QuarterSummary }) {
          quarters.push(ctx.params);
        },
      },
    });
  });
  afterAll(async () => {
    await sluice?.stop();
    await upstream?.close();
  });

  it("plans ids in minutes of RPM, processes each once, and stores its user", async () => {
    const ids = Array.from({ length: 120 }, (_, i) => 1001 + i);
    const created = await call(api, "POST", "/api/id-tasks", { ids, rpm: 4 });
    expect(created.status).toBe(202);
    const { plan } = created.body;
    expect(plan).toMatchObject({ perMinute: 4, minutes: 30 });
    expect(new Date(plan.lastMinute).getTime() - new Date(plan.firstMinute).getTime()).toBeGreaterThanOrEqual(29 * MINUTE_MS);

    // The first minute's ids are planned in pairs of four, in the order they came.
    const slots = (await call(api, "GET", `/api/id-tasks/${created.body.id}/slots?limit=8`)).body.items;
    expect(slots.map((s: { id: number }) => s.id)).toEqual(ids.slice(0, 8));
    expect(new Set(slots.slice(0, 4).map((s: { minute: string }) => s.minute)).size).toBe(1);

    const hitsBefore = upstream.requests.length;
    const done = await finished(created.body.id);
    expect(done).toMatchObject({
      kind: "id-task",
      status: "succeeded",
      progress: { done: 120, total: 120 },
      counts: { planned: 0, running: 0, done: 120, failed: 0 },
      rpm: 4,
    });
    expect(upstream.requests.length - hitsBefore).toBe(120);
    const user = (await call(api, "GET", "/api/users?query=" + encodeURIComponent(JSON.stringify({ externalId: 1001 })))).body.rows[0];
    expect(user).toMatchObject({ externalId: 1001, name: "user 1001", email: "u1001@example.org" });
    // The seed's quarter checker: every 15 minutes a summary of the quarter that ended.
    const quarter = await waitFor(() => quarters.find((q) => q.counts.done > 0), 15 * MINUTE_MS * 2, "a quarter summary with done ids");
    expect(quarter.quarter).toBeGreaterThanOrEqual(0);
    expect(quarter.quarter).toBeLessThanOrEqual(3);
    expect(new Date(quarter.to).getTime() - new Date(quarter.from).getTime()).toBe(15 * MINUTE_MS);
    // The job record is the same one the jobs API shows.
    expect((await call(api, "GET", `/api/jobs/${created.body.id}`)).body).toMatchObject({ kind: "id-task", status: "succeeded" });
  });

  it("a paused task dispatches nothing until resumed; a new RPM plans what is left again", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => 5001 + i);
    const { body } = await call(api, "POST", "/api/id-tasks", { ids, rpm: 2 });
    const paused = await call(api, "PATCH", `/api/id-tasks/${body.id}`, { paused: true });
    expect(paused.body).toMatchObject({ paused: true });
    await new Promise((r) => setTimeout(r, 5 * MINUTE_MS));
    const whilePaused = await task(body.id);
    expect(whilePaused.counts.done + whilePaused.counts.running).toBeLessThanOrEqual(2);
    const replanned = await call(api, "PUT", `/api/id-tasks/${body.id}`, { rpm: 10, paused: false });
    expect(replanned.body).toMatchObject({ rpm: 10, paused: false });
    const done = await finished(body.id);
    expect(done).toMatchObject({ status: "succeeded", counts: { done: 40, failed: 0 } });
  });

  it("an upstream that is down: retries, then each id failed with its error, and exact counts", async () => {
    upstream.down = true;
    try {
      const before = upstream.requests.length;
      const { body } = await call(api, "POST", "/api/id-tasks", { ids: [9001, 9002, 9003], rpm: 10 });
      const done = await finished(body.id);
      expect(done).toMatchObject({
        status: "failed",
        error: "3 of 3 ids failed",
        counts: { done: 0, failed: 3 },
        progress: { done: 3, total: 3 },
      });
      expect(upstream.requests.length - before).toBe(9);
      const slots = (await call(api, "GET", `/api/id-tasks/${body.id}/slots`)).body.items;
      expect(
        slots.every(
          (s: { state: string; attempts: number; error: string }) =>
            s.state === "failed" && s.attempts === 1 && /HTTP 500 \(after 3 attempts\)/.test(s.error),
        ),
      ).toBe(true);
    } finally {
      upstream.down = false;
    }
  });

  it.each([
    ["non-integers", { ids: [1, 2.5] }, "ids[1]"],
    ["strings", { ids: ["a"] }, "ids[0]"],
    ["negative ids", { ids: [3, -4] }, "ids[1]"],
    ["duplicates", { ids: [7, 8, 7] }, "ids"],
    ["2,000,000 ids", { ids: Array.from({ length: 2_000_000 }, (_, i) => i + 1) }, "ids"],
    ["no ids", { ids: [] }, "ids"],
    ["missing ids", { rpm: 3 }, "ids"],
    ["a bad rpm", { ids: [1], rpm: 0 }, "rpm"],
    ["a missing body", undefined, "ids"],
  ])("rejects %s with a 422 naming the field, and stores nothing", async (_what, payload, field) => {
    const tasks = (await call(api, "GET", "/api/id-tasks")).body.total;
    const r = await call(api, "POST", "/api/id-tasks", payload);
    expect(r.status).toBe(422);
    expect(r.body.error.details.field).toBe(field);
    expect((await call(api, "GET", "/api/id-tasks")).body.total).toBe(tasks);
  });

  it("keeps the seed's paths, and users' externalId unique", async () => {
    const created = await call(api, "POST", "/celery_ids_tasks", { ids: [777], rpm: 1 });
    expect(created.status).toBe(202);
    expect((await call(api, "GET", `/celery_ids_tasks/${created.body.id}`)).body.id).toBe(created.body.id);
    await finished(created.body.id);
    const users = await userCount();
    const made = await call(api, "POST", "/users", { externalId: 424242, name: "Ada" });
    expect(made.status).toBe(200);
    expect((await call(api, "PATCH", `/api/users/${made.body.id}`, { email: "ada@example.org" })).body).toMatchObject({
      externalId: 424242,
      email: "ada@example.org",
    });
    const dup = await call(api, "POST", "/api/users", { externalId: 424242 });
    expect(dup.status).toBe(409);
    expect((await call(api, "POST", "/api/users", { externalId: -1 })).status).toBe(422);
    expect(await userCount()).toBe(users + 1);
    expect((await call(api, "GET", "/api/id-tasks/999999")).status).toBe(404);
    expect((await call(api, "PATCH", `/api/id-tasks/${created.body.id}`, { colour: "red" })).status).toBe(422);
  });
});
