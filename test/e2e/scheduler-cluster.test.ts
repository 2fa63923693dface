// Three scheduler processes over NATS, Redis and Postgres against one upstream that records
// when each request arrived: the known limit (UPSTREAM_RATE) holds at the upstream in every
// window, each minute is dispatched by one node, and every id is processed exactly once.
import { peakInWindow, serveUpstream, type UpstreamServer } from "../../fixtures/upstream-server";
import { createCluster, type Cluster } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

const RATE = 20;
const IDS = 400;

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "scheduler across processes", () => {
  let cluster: Cluster;
  let upstream: UpstreamServer;
  let api = "";
  let api2 = "";

  beforeAll(async () => {
    upstream = await serveUpstream();
    cluster = await createCluster({
      redis: true,
      env: { SCHEDULER_MINUTE_MS: "250", UPSTREAM_URL: upstream.url, UPSTREAM_RATE: `${RATE}/s` },
    });
    cluster.onCleanup(() => upstream.close());
    api = (await cluster.start("api", { services: "api" })).api;
    api2 = (await cluster.start("api2", { services: "api" })).api;
    for (const n of [1, 2, 3]) await cluster.start(`s${n}`, { services: "scheduler" });
    await cluster.waitForNodes(5);
  }, 90_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it(`holds ${RATE}/s at the upstream across three nodes, and processes each id once`, async () => {
    const ids = Array.from({ length: IDS }, (_, i) => 100_001 + i);
    // 100 ids a (250 ms) minute: far more than the upstream's rate, so the limit does the pacing.
    const created = await http(api, "POST", "/api/id-tasks", { ids, rpm: 100 });
    expect(created.status).toBe(202);
    const done = await cluster.waitForIdTask(created.body.id, 120_000);
    expect(done).toMatchObject({ status: "succeeded", counts: { done: IDS, failed: 0 } });

    const times = upstream.requests.map((r) => r.at);
    expect(times).toHaveLength(IDS);
    const peak = peakInWindow(times, 1000);
    console.log(
      `scheduler: ${IDS} ids over ${((Math.max(...times) - Math.min(...times)) / 1000).toFixed(1)} s, peak ${peak} requests in any 1 s window (limit ${RATE}/s)`,
    );
    expect(peak).toBeLessThanOrEqual(RATE);

    await cluster.withClient(async (client) => {
      const users = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM users");
      expect(users.rows[0]!.n).toBe(IDS);
      // Every minute the task used was dispatched, each by one node (the primary key).
      const { rows } = await client.query<{ nodes: number; minutes: number }>(
        `SELECT count(DISTINCT node_id)::int AS nodes, count(*)::int AS minutes FROM dispatched_minutes
          WHERE minute IN (SELECT DISTINCT minute FROM id_task_slots WHERE task_id = $1)`,
        [created.body.id],
      );
      expect(rows[0]!.minutes).toBe(
        (await client.query("SELECT DISTINCT minute FROM id_task_slots WHERE task_id = $1", [created.body.id])).rowCount,
      );
      expect(rows[0]!.nodes).toBeGreaterThanOrEqual(1);
    });
  }, 180_000);

  it("a scheduler node killed mid-task loses nothing: every id processed, exact counts", async () => {
    const ids = Array.from({ length: 300 }, (_, i) => 500_001 + i);
    const before = upstream.requests.length;
    const created = await http(api, "POST", "/api/id-tasks", { ids, rpm: 100 });
    expect(created.status).toBe(202);
    await waitFor(
      async () => ((await http(api, "GET", `/api/id-tasks/${created.body.id}`)).body.counts.done >= 40 ? true : undefined),
      60_000,
      "some ids done",
    );
    cluster.node("s1").kill();
    const done = await cluster.waitForIdTask(created.body.id, 120_000);
    expect(done).toMatchObject({ status: "succeeded", progress: { done: 300, total: 300 }, counts: { done: 300, failed: 0 } });
    await cluster.withClient(async (client) => {
      const users = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM users WHERE external_id BETWEEN 500001 AND 500300");
      expect(users.rows[0]!.n).toBe(300);
    });
    // At least once: an id the dead node had called but not settled is called again.
    const calls = upstream.requests.length - before;
    console.log(`killed scheduler: 300 ids, ${calls} upstream calls`);
    expect(calls).toBeGreaterThanOrEqual(300);
  }, 180_000);

  it("two submissions through different gateways continue one calendar", async () => {
    const a = Array.from({ length: 20 }, (_, i) => 300_001 + i);
    const b = Array.from({ length: 20 }, (_, i) => 400_001 + i);
    const [ra, rb] = await Promise.all([
      http(api, "POST", "/api/id-tasks", { ids: a, rpm: 2 }),
      http(api2, "POST", "/api/id-tasks", { ids: b, rpm: 2 }),
    ]);
    expect([ra.status, rb.status]).toEqual([202, 202]);
    await cluster.withClient(async (client) => {
      // Had each gateway planned on its own fill, both tasks would share their first minutes, 4 ids each.
      const { rows } = await client.query<{ minute: string; n: number }>(
        "SELECT minute, count(*)::int AS n FROM id_task_slots WHERE task_id = ANY($1::int[]) GROUP BY minute ORDER BY minute",
        [[ra.body.id, rb.body.id]],
      );
      expect(rows).toHaveLength(20);
      expect(rows.every((r) => r.n === 2)).toBe(true);
    });
    for (const id of [ra.body.id, rb.body.id]) {
      const t = await cluster.waitForIdTask(id, 60_000);
      expect(t).toMatchObject({ status: "succeeded", counts: { done: 20 } });
    }
  }, 120_000);
});
