// A crash never shrinks the budget: the slots a dead process held come back on their own, and
// connection slots only once Postgres no longer lists that process's connections. Separate OS
// processes over real NATS, Redis and Postgres; the budget is sampled from pg_stat_activity
// every 20 ms throughout and must never be exceeded.
import IORedis from "ioredis";
import { MIGRATION_LOCK_KEY } from "../../lib/platform/migrate";
import { LeaseStore, type Lease } from "../../lib/throttle/lease-store";
import type { ResourceRow } from "../../services/throttle.service";
import type { ConnectionSampler } from "../support/connections";
import { createCluster, type Cluster, type ClusterNode } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";
import { freePort, isRunning } from "../support/processes";
import { tcpProxy } from "../support/tcp-proxy";
import { scrapeCount } from "../support/metrics";

const REDIS_URL = process.env.REDIS_URL!;
const BUDGET = 6;
const LEASE_MS = 3_000;
const KILLS = 5;

// How long a dead holder's slots may take to come back, as docs/throttle.md ("How long a dead
// holder's slots take to come back") derives it from the lease.
const SWEEP_MS = LEASE_MS / 4; // renewal and sweep, four times a lease (lib/throttle/hub.ts)
const DISCOVERY_GRACE_MS = 5_000; // lib/platform/membership.ts
const CHECK_MS = 250; // the Postgres check: a connection of its own and one pg_stat_activity query
// Process scheduling on a loaded 2-core machine (timers late, another suite running), and this
// test's 50 ms polls of Redis.
const MARGIN_MS = 1_000;
const bound = {
  /** fetch:<host>, db, upstream:<host>: out at one lease, back at the next sweep or acquire. */
  plain: () => LEASE_MS + SWEEP_MS,
  /** db:connections, the checking node having a connection for the check (`leaseMs`: the holder's). */
  connections: (leaseMs = LEASE_MS) => leaseMs + SWEEP_MS + CHECK_MS,
  /**
   * db:connections, every slot held: the check waits until the node counts the holder gone from
   * the cluster (`goneMs`), and a sweep may first have waited a sweep period for a busy pooled connection.
   */
  allHeld: (goneMs: number, busyConnections: boolean, leaseMs = LEASE_MS) =>
    Math.max(leaseMs + SWEEP_MS, goneMs + SWEEP_MS + (busyConnections ? SWEEP_MS : 0)) + CHECK_MS,
  /** db:connections of a holder whose connections outlived its lease, after they are gone. */
  afterConnectionsGone: () => SWEEP_MS + LEASE_MS + CHECK_MS,
};

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "slots of dead holders come back", () => {
  let cluster: Cluster;
  let redis: IORedis;
  let store: LeaseStore;
  let sampler: ConnectionSampler;
  const reclaimTimes: string[] = [];
  const metricsUrls = new Map<ClusterNode, string>();

  /** Every node serves its Prometheus metrics on a port of its own. */
  const start = async (name: string, services: string, env: Record<string, string> = {}) => {
    const port = await freePort();
    const node = await cluster.start(name, { services, env: { METRICS_PORT: String(port), ...env } });
    metricsUrls.set(node, `http://127.0.0.1:${port}/metrics`);
    return node;
  };
  const ready = (node: ClusterNode) => cluster.ready(node, 60_000);
  const leases = async (resource: string): Promise<Lease[]> => (await store.snapshot(resource)).leases;
  const heldBy = async (resource: string, prefix: string) => (await leases(resource)).filter((l) => l.holder.startsWith(prefix)).length;
  const insertJobs = async (api: string, n: number, rows = 2_000_000) => {
    for (let i = 0; i < n; i++) expect((await http(api, "POST", "/api/inserts", { rows })).status).toBe(202);
  };
  /** Waits until `prefix`'s holder has no slot of `resource` left; returns how long that took from `since`. */
  const slotsBack = async (resource: string, prefix: string, since: number) => {
    await waitFor(
      async () => ((await heldBy(resource, prefix)) === 0 ? true : undefined),
      60_000,
      `${prefix}'s ${resource} slots to come back`,
    );
    return Date.now() - since;
  };
  const within = (what: string, ms: number, boundMs: number) => {
    reclaimTimes.push(`${what}: ${ms} ms (bound ${boundMs} + ${MARGIN_MS} ms)`);
    expect(ms).toBeLessThanOrEqual(boundMs + MARGIN_MS);
  };
  const reclaimed = async (resource: string, prefix: string, since: number, what: string, boundMs: number) =>
    within(what, await slotsBack(resource, prefix, since), boundMs);
  /** When the node first answers /api/health (its broker, and so its count of who is gone, started before). */
  const answersHealth = (node: ClusterNode) =>
    waitFor(
      async () => ((await http(node.api, "GET", "/api/health")).status === 200 ? Date.now() : undefined),
      60_000,
      `${node.name} to answer`,
    );
  const exited = (node: ClusterNode) => waitFor(() => (isRunning(node) ? undefined : true), 15_000, `${node.name} to exit`);
  /** GET /api/throttle's row for `resource`. */
  const throttleRow = async (node: ClusterNode, resource: string): Promise<ResourceRow> => {
    const { body } = await http(node.api, "GET", "/api/throttle");
    return body.resources.find((r: ResourceRow) => r.resource === resource);
  };
  /** The node's sluice_throttle_reclaimed for `resource`: what it took back itself. */
  const reclaimedMetric = (node: ClusterNode, resource: string) =>
    scrapeCount(metricsUrls.get(node)!, "sluice_throttle_reclaimed", { resource });
  /** The metric is reported every second: waits until it reaches `n`, and answers what it shows then. */
  const metricReaches = (node: ClusterNode, resource: string, n: number) =>
    waitFor(
      async () => {
        const value = await reclaimedMetric(node, resource);
        return value >= n ? value : undefined;
      },
      10_000,
      `${node.name}'s sluice_throttle_reclaimed to reach ${n}`,
    );
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
    metricsUrls.clear();
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

  // Five kills leave more dead slots (3 or more each) than the budget of 6 has: without the
  // reclaim, the third replacement could not even boot (issue 8's "kills add up to an outage").
  it("five SIGKILLs mid-job in one namespace, a lone replacement each time: then the full budget", async () => {
    let n = await start("k1", "api,ingestor");
    // What n took back from the node it replaced, and its own metric must show it.
    let tookBack = 0;
    for (let i = 1; i <= KILLS; i++) {
      await ready(n);
      await insertJobs(n.api, 4);
      const [, counted] = await Promise.all([
        waitFor(
          async () => ((await heldBy("db:connections", n.holderPrefix)) >= 3 ? true : undefined),
          60_000,
          `${n.name} to hold 3 slots`,
        ),
        metricReaches(n, "db:connections", tookBack),
      ]);
      expect(counted).toBe(tookBack);
      const before = (await store.snapshot("db:connections")).reclaimed;
      n.kill();
      const killedAt = Date.now();
      // Its replacement boots alone while the dead node's slots are still leased.
      const next = await start(i < KILLS ? `k${i + 1}` : "final", "api,ingestor");
      await exited(n);
      const deadSlots = await heldBy("db:connections", n.holderPrefix);
      const [upAt, ms] = await Promise.all([answersHealth(next), slotsBack("db:connections", n.holderPrefix, killedAt)]);
      // The dead holds most slots, the replacement the rest, busy with jobs: the replacement
      // checks once it counts the dead gone (5 s after it started: it never saw it), perhaps
      // after a sweep waited a lease for one of its own connections.
      within(
        `kill ${i} (${n.name}, ${deadSlots} slots), a lone replacement`,
        ms,
        bound.allHeld(upAt - killedAt + DISCOVERY_GRACE_MS, true),
      );
      if (process.env.DEBUG_RECLAIM) console.log(next.name, Date.now() - killedAt, next.output());
      await ready(next);
      const after = (await store.snapshot("db:connections")).reclaimed;
      expect(after - before).toBe(deadSlots);
      const row = await throttleRow(next, "db:connections");
      expect(row.reclaimed).toBe(after);
      expect(row.holders!.filter((h) => h.holder.startsWith(n.holderPrefix))).toEqual([]);
      tookBack = deadSlots;
      n = next;
    }
    await ready(n);
    await reachesFullBudget(n.api, n.holderPrefix);
    expect(await metricReaches(n, "db:connections", tookBack)).toBe(tookBack);
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
    await reclaimed(resource, c1.holderPrefix, killedAt, "crawler with 4 fetches in flight", bound.plain());
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
      // Slots are free (a holds a few, m held one): a checks on a connection of its own.
      await reclaimed("db:connections", m.holderPrefix, killedAt, "killed during its migration", bound.connections());
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
    const upAt = await answersHealth(n);
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
    // n holds no connection: it checks on a slot of the ghost's, once it counts the ghost gone.
    const boundMs = bound.allHeld(upAt - diedAt + DISCOVERY_GRACE_MS, false, 4 * LEASE_MS);
    // Watched from now, not once n is ready: its boot (the migration, then 1.5 s of announcing
    // itself to the cluster) comes after the slots are back, and is not part of the reclaim.
    const back = slotsBack("db:connections", ghost, diedAt);
    await ready(n);
    within("every slot held by a dead process (a lease of 4 x 3 s)", await back, boundMs);
    expect(n.output()).toMatch(
      /Waiting \d+ s for a db:connections slot .*held by: sluice:.*-ghost:abcdef \(6, since .*, (live|presumed dead)\)/,
    );
    expect(n.output().match(/Waiting \d+ s for a db:connections slot/g)).toHaveLength(1);
    await reachesFullBudget(n.api, n.holderPrefix);
    const throttle = (await http(n.api, "GET", "/api/throttle")).body;
    expect(throttle.resources.find((r: { resource: string }) => r.resource === "db:connections").reclaimed).toBe(BUDGET);
  }, 180_000);

  it("SIGTERM delivered twice leaves no slot behind: a clean exit, nothing to reclaim", async () => {
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
    const before = (await store.snapshot("db:connections")).reclaimed;
    // As npm and a process group deliver it: twice, from two senders, a few ms apart.
    const signalledAt = Date.now();
    v.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 5));
    v.child.kill("SIGTERM");
    await exited(v);
    const exitMs = Date.now() - signalledAt;
    expect({ code: v.child.exitCode, signal: v.child.signalCode }).toEqual({ code: 0, signal: null });
    // Right after the exit: a slot it had leaked would still be leased (it renewed until its
    // limiters stopped), or, had the shutdown outlived a lease, reclaimed.
    const atExit = await store.snapshot("db:connections");
    expect(atExit.leases.filter((l) => l.holder.startsWith(v.holderPrefix))).toEqual([]);
    expect(atExit.reclaimed).toBe(before);
    reclaimTimes.push(`SIGTERM twice: exit 0 after ${exitMs} ms, no slot left at the exit`);
    await reachesFullBudget(a.api, a.holderPrefix);
    // Nothing was ever reclaimed: every slot came back through the clean shutdown.
    expect((await store.snapshot("db:connections")).reclaimed).toBe(before);
    expect((await throttleRow(a, "db:connections")).reclaimed).toBe(before);
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
    // b stopped renewing: /api/throttle on a shows it presumed dead with its slots, a live.
    const leased = await throttleRow(a, "db:connections");
    const ofB = leased.holders!.filter((h) => h.holder.startsWith(b.holderPrefix));
    expect(ofB.map((h) => h.state)).toEqual(ofB.map(() => "presumed dead"));
    expect(ofB.reduce((sum, h) => sum + h.slots, 0)).toBe(bSlots);
    const ofA = leased.holders!.filter((h) => h.holder.startsWith(a.holderPrefix));
    expect(ofA.length).toBeGreaterThan(0);
    expect(ofA.every((h) => h.state === "live")).toBe(true);
    expect(leased.reclaimed).toBe(0);
    expect(await reclaimedMetric(a, "db:connections")).toBe(0);
    // Its connections end with it: only then do the slots come back.
    b.kill();
    const goneAt = Date.now();
    await reclaimed(
      "db:connections",
      b.holderPrefix,
      goneAt,
      "cut off from Redis, then its connections gone",
      bound.afterConnectionsGone(),
    );
    expect((await store.snapshot("db:connections")).reclaimed).toBe(bSlots);
    const back = await throttleRow(a, "db:connections");
    expect(back.reclaimed).toBe(bSlots);
    expect(back.holders!.filter((h) => h.holder.startsWith(b.holderPrefix))).toEqual([]);
    expect(await metricReaches(a, "db:connections", bSlots)).toBe(bSlots);
    await reachesFullBudget(a.api, a.holderPrefix);
  }, 240_000);
});
