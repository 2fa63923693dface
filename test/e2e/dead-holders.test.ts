// A crash never shrinks the budget: the slots a dead process held come back on their own, and
// connection slots only once Postgres no longer lists that process's connections. Separate OS
// processes over real NATS, Redis and Postgres; the budget is sampled from pg_stat_activity
// every 20 ms throughout and must never be exceeded.
import IORedis from "ioredis";
import { LeaseStore, type Lease } from "../../lib/throttle/lease-store";
import type { ConnectionSampler } from "../support/connections";
import { createCluster, type Cluster, type ClusterNode } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";
import { tcpProxy } from "../support/tcp-proxy";

const REDIS_URL = process.env.REDIS_URL!;
const BUDGET = 6;
const LEASE_MS = 3_000;
// The bound the issue sets for a slot to come back after its holder's last renewal.
const RECLAIM_BOUND_MS = 30_000;
const MIGRATION_LOCK_KEY = 0x51_1c_e0_01;

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "slots of dead holders come back", () => {
  let cluster: Cluster;
  let redis: IORedis;
  let store: LeaseStore;
  let sampler: ConnectionSampler;
  const reclaimTimes: string[] = [];

  const start = (name: string, services: string, env: Record<string, string> = {}) => cluster.start(name, { services, env });
  const ready = (node: ClusterNode) => cluster.ready(node, 60_000);
  const leases = async (resource: string): Promise<Lease[]> => (await store.snapshot(resource)).leases;
  const heldBy = async (resource: string, prefix: string) => (await leases(resource)).filter((l) => l.holder.startsWith(prefix)).length;
  const insertJobs = async (api: string, n: number, rows = 2_000_000) => {
    for (let i = 0; i < n; i++) expect((await http(api, "POST", "/api/inserts", { rows })).status).toBe(202);
  };
  /** Waits until `prefix`'s holder has no slot of `resource` left; returns how long that took from `since`. */
  const reclaimed = async (resource: string, prefix: string, since: number, what: string) => {
    await waitFor(
      async () => ((await heldBy(resource, prefix)) === 0 ? true : undefined),
      RECLAIM_BOUND_MS + 10_000,
      `${what}: the slots to come back`,
    );
    const ms = Date.now() - since;
    reclaimTimes.push(`${what}: ${ms} ms`);
    expect(ms).toBeLessThanOrEqual(RECLAIM_BOUND_MS);
    return ms;
  };
  /** Load until one node holds the whole budget: it must reach it, so nothing was lost. */
  const reachesFullBudget = async (api: string, prefix: string) => {
    await insertJobs(api, 5, 1_000_000);
    await waitFor(
      async () => {
        await Promise.all(Array.from({ length: 12 }, () => http(api, "GET", "/api/jobs?pageSize=5")));
        const mine = [...(await cluster.connectionsByName()).entries()].filter(([name]) => name.startsWith(prefix));
        return mine.reduce((n, [, c]) => n + c, 0) === BUDGET ? true : undefined;
      },
      60_000,
      `${prefix} to hold all ${BUDGET} connections`,
    );
    const holders = new Set((await leases("db:connections")).map((l) => l.holder));
    expect([...holders].every((h) => h.startsWith(prefix))).toBe(true);
  };

  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
  });
  afterAll(() => {
    console.log(`reclaim times (lease ${LEASE_MS} ms):\n  ${reclaimTimes.join("\n  ")}`);
    redis.disconnect();
  });
  beforeEach(async () => {
    cluster = await createCluster({
      redis: true,
      env: {
        DB_BUDGET: String(BUDGET),
        DB_NODE_CONCURRENCY: String(BUDGET),
        THROTTLE_LEASE_MS: String(LEASE_MS),
        JOB_CONCURRENCY: "5",
        JOB_MAX_ATTEMPTS: "20",
        JOB_HEARTBEAT_MS: "500",
        CRAWL_LEASE_MS: "10000",
      },
    });
    store = new LeaseStore(redis, `sluice:${cluster.namespace}:`);
    sampler = cluster.sampleConnections();
  }, 60_000);
  afterEach(async () => {
    // Stops the nodes, then the sampler, then removes the database, streams and keys.
    await cluster.cleanup();
    expect(sampler.peak).toBeLessThanOrEqual(BUDGET);
  }, 60_000);

  // Three kills leave more dead slots (3 or more each) than the budget of 6 has: without the
  // reclaim, the third replacement could not even boot (issue 8's "kills add up to an outage").
  it("three SIGKILLs mid-job in one namespace, a lone replacement each time: then the full budget", async () => {
    let n = await start("k1", "api,ingestor");
    for (let i = 1; i <= 3; i++) {
      await ready(n);
      await insertJobs(n.api, 4);
      await waitFor(
        async () => ((await heldBy("db:connections", n.holderPrefix)) >= 3 ? true : undefined),
        60_000,
        `${n.name} to hold 3 connection slots`,
      );
      n.kill();
      const killedAt = Date.now();
      // Its replacement boots alone while the dead node's slots are still leased.
      const next = await start(i < 3 ? `k${i + 1}` : "final", "api,ingestor");
      await reclaimed("db:connections", n.holderPrefix, killedAt, `kill ${i} (${n.name}), a lone replacement`);
      if (process.env.DEBUG_RECLAIM) console.log(next.name, Date.now() - killedAt, next.output());
      n = next;
    }
    await ready(n);
    await reachesFullBudget(n.api, n.holderPrefix);
  }, 360_000);

  it("a crawler SIGKILLed with fetches in flight: the host's concurrency comes back", async () => {
    const site = await cluster.serveSite({ pages: 40, delayMs: 1_500 });
    const a = await start("api", "api,ingestor");
    await ready(a);
    // Claims no more than it can fetch at once, so no claim outlives its lease in the queue.
    const env = { CRAWL_HOST_CONCURRENCY: "4", CRAWL_NODE_CONCURRENCY: "4" };
    const c1 = await start("c1", "crawler", env);
    const id = await cluster.startCrawl({ url: site.entryUrl, maxDepth: 10, maxPages: 1000 }, 60_000);
    const resource = `fetch:${new URL(site.entryUrl).host}`;
    await waitFor(
      async () => (site.inFlight >= 4 && (await heldBy(resource, c1.holderPrefix)) === 4 ? true : undefined),
      60_000,
      "4 fetches in flight",
    );
    c1.kill();
    const killedAt = Date.now();
    await start("c2", "crawler", env);
    await reclaimed(resource, c1.holderPrefix, killedAt, "crawler with 4 fetches in flight");
    site.resetStats();
    await waitFor(() => (site.inFlightPeak >= 4 ? true : undefined), 60_000, "the new crawler to fetch 4 at once");
    const crawl = await cluster.waitForCrawl(id, 120_000);
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toMatchObject({ discovered: site.expectedPages, stored: site.expectedPages, failed: 0 });
  }, 240_000);

  it("a node killed while it holds the slot for its migration: health answers, the slot comes back", async () => {
    const a = await start("a", "api,ingestor");
    await ready(a);
    // The migration waits for this lock while its node holds a connection slot.
    await cluster.withClient(async (locker) => {
      await locker.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const m = await start("m", "api,ingestor");
      const booting = await waitFor(
        async () => {
          const r = await http(m.api, "GET", "/api/ready");
          return r.body?.boot?.state === "migrating" ? r : undefined;
        },
        60_000,
        "the node to be migrating",
      );
      expect(booting.status).toBe(503);
      expect((await http(m.api, "GET", "/api/health")).status).toBe(200);
      expect(await heldBy("db:connections", m.holderPrefix)).toBe(1);
      m.kill();
      const killedAt = Date.now();
      await locker.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
      await reclaimed("db:connections", m.holderPrefix, killedAt, "killed during its migration");
    });
    await reachesFullBudget(a.api, a.holderPrefix);
  }, 180_000);

  it("every slot held by the dead: a new node says why it waits, then takes them back", async () => {
    // A process that held the whole budget and was killed (it never renews; it has no
    // connections). Its last renewal was for a long lease, so the new node waits long enough to say so.
    const ghost = `sluice:${cluster.namespace}-ghost:abcdef`;
    const members = Array.from({ length: BUDGET }, (_, i) => `${ghost}#${i + 1}`);
    await store.acquire("db:connections", members, { leaseMs: 4 * LEASE_MS, limit: BUDGET, reclaimExpired: false });
    const diedAt = Date.now();
    const n = await start("n", "api,ingestor");
    const bootWaitsOn = (state: string) =>
      waitFor(
        async () => {
          const r = await http(n.api, "GET", "/api/ready");
          const ghostRow = r.body?.boot?.holders?.find((h: { holder: string }) => h.holder === ghost);
          return r.body?.boot?.state === "waiting for a database connection slot" && ghostRow?.state === state ? r : undefined;
        },
        60_000,
        `readiness to name the ghost as ${state}`,
      );
    // While its lease runs, the ghost still counts as live and holds the whole budget.
    const waiting = await bootWaitsOn("live");
    expect(waiting.status).toBe(503);
    expect(waiting.body.boot.holders).toEqual([expect.objectContaining({ holder: ghost, slots: BUDGET, state: "live" })]);
    // Once it expires it is presumed dead; the checked reclaim may already have taken some of its
    // slots back (each one then held by this node's own check), so only the split is exact.
    const expired = await bootWaitsOn("presumed dead");
    const holders: Array<{ holder: string; slots: number }> = expired.body.boot.holders;
    const ghostSlots = holders.find((h) => h.holder === ghost)!.slots;
    expect(ghostSlots).toBeGreaterThanOrEqual(1);
    expect(holders.filter((h) => h.holder !== ghost).every((h) => h.holder.startsWith(n.holderPrefix))).toBe(true);
    expect(holders.reduce((sum, h) => sum + h.slots, 0)).toBeLessThanOrEqual(BUDGET);
    expect((await http(n.api, "GET", "/api/health")).status).toBe(200);
    if (process.env.DEBUG_RECLAIM) setTimeout(() => console.log(n.output()), 30_000);
    await ready(n);
    await reclaimed("db:connections", ghost, diedAt, "every slot held by a dead process");
    expect(n.output()).toMatch(
      /Waiting \d+ s for a db:connections slot .*held by: sluice:.*-ghost:abcdef \(6, since .*, (live|presumed dead)\)/,
    );
    expect(n.output().match(/Waiting \d+ s for a db:connections slot/g)).toHaveLength(1);
    await reachesFullBudget(n.api, n.holderPrefix);
    const throttle = (await http(n.api, "GET", "/api/throttle")).body;
    expect(throttle.resources.find((r: { resource: string }) => r.resource === "db:connections").reclaimed).toBe(BUDGET);
  }, 180_000);

  it("SIGTERM delivered twice leaves no slot behind", async () => {
    const a = await start("a", "api,ingestor");
    await ready(a);
    const v = await start("v", "ingestor");
    await cluster.waitForNodes(2);
    await insertJobs(a.api, 6);
    await waitFor(
      async () => ((await heldBy("db:connections", v.holderPrefix)) >= 2 ? true : undefined),
      60_000,
      "the victim to hold 2 slots",
    );
    const signalledAt = Date.now();
    v.child.kill("SIGTERM");
    v.child.kill("SIGTERM");
    await v.stop();
    await reclaimed("db:connections", v.holderPrefix, signalledAt, "SIGTERM twice");
    await reachesFullBudget(a.api, a.holderPrefix);
  }, 180_000);

  it("a node cut off from Redis but not from Postgres keeps its slots while its connections live", async () => {
    const a = await start("a", "api,ingestor");
    await ready(a);
    const proxy = await tcpProxy(Number(new URL(REDIS_URL).port || 6379));
    const b = await start("b", "ingestor", { REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
    await cluster.waitForNodes(2);
    await insertJobs(a.api, 6, 10_000_000);
    await waitFor(async () => ((await heldBy("db:connections", b.holderPrefix)) >= 2 ? true : undefined), 60_000, "b to hold 2 slots");
    await proxy.cut();
    const bSlots = await heldBy("db:connections", b.holderPrefix);
    // Three leases long: b's slots expire, but b's connections live, so nobody takes them.
    const until = Date.now() + 3 * LEASE_MS;
    let checks = 0;
    while (Date.now() < until) {
      const bConnections = [...(await cluster.connectionsByName()).entries()].filter(([name]) => name.startsWith(b.holderPrefix));
      expect(bConnections.length).toBeGreaterThan(0);
      expect(await heldBy("db:connections", b.holderPrefix)).toBe(bSlots);
      checks++;
      await new Promise((r) => setTimeout(r, 250));
    }
    const snapshot = await store.snapshot("db:connections");
    expect(snapshot.leases.filter((l) => l.holder.startsWith(b.holderPrefix)).every((l) => l.deadline < snapshot.now)).toBe(true);
    expect(snapshot.reclaimed).toBe(0);
    expect(checks).toBeGreaterThan(10);
    // Its connections end with it: only then do the slots come back.
    b.kill();
    const goneAt = Date.now();
    await reclaimed("db:connections", b.holderPrefix, goneAt, "cut off from Redis, then its connections gone");
    expect((await store.snapshot("db:connections")).reclaimed).toBe(bSlots);
    await reachesFullBudget(a.api, a.holderPrefix);
  }, 240_000);
});
