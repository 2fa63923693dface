// DB_BUDGET holds across processes: however many nodes run, Postgres never sees more Sluice
// connections than the budget, sampled from pg_stat_activity every 20 ms.
import { DEFAULT_DB_NODE_CONCURRENCY_CAP } from "../../lib/platform/config";
import { MIGRATION_LOCK_KEY } from "../../lib/platform/migrate";
import { shareOf } from "../../lib/throttle/budget";
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { createCluster, everyPageStored, type Cluster } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

const BUDGET = 6;
describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "the connection budget across processes", () => {
  let cluster: Cluster;

  beforeEach(async () => {
    cluster = await createCluster({ redis: true, env: { DB_BUDGET: String(BUDGET), CRAWL_LEASE_MS: "10000" } });
    await addNode(1);
  }, 60_000);

  afterEach(() => cluster.cleanup(), 60_000);

  const addNode = (i: number) => cluster.start(`n${i}`, { services: "api,crawler,ingestor" });
  const startCrawl = (url: string, maxDepth: number) => cluster.startCrawl({ url, maxDepth, maxPages: 100_000 }, 60_000);
  const finished = (id: number) => cluster.waitForCrawl(id, 180_000);

  it("four processes crawling 2,000 pages never hold more than DB_BUDGET connections", async () => {
    const site = await cluster.serveSite({ pages: 2000 });
    for (const i of [2, 3, 4]) await addNode(i);
    await cluster.waitForNodes(4);
    const sampler = cluster.sampleConnections();
    const id = await startCrawl(site.entryUrl, MAX_MAX_DEPTH);
    const crawl = await finished(id);
    const { peak, samples } = await sampler.stop();
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual(everyPageStored(site));
    expect(peak).toBeLessThanOrEqual(BUDGET);
    expect(peak).toBeGreaterThan(1);
    expect(samples).toBeGreaterThan(50);
    console.log(`budget ${BUDGET}, 4 processes: peak ${peak} connections over ${samples} samples`);
  }, 240_000);

  it("holds while the cluster grows from one process to four and shrinks to two mid-crawl, losing nothing", async () => {
    const site = await cluster.serveSite({ pages: 1200, delayMs: 10 });
    const sampler = cluster.sampleConnections();
    const id = await startCrawl(site.entryUrl, MAX_MAX_DEPTH);
    await waitFor(async () => ((await cluster.crawl(id)).pages.stored >= 100 ? true : undefined), 60_000, "100 pages on one node");
    const grown = await Promise.all([2, 3, 4].map(addNode));
    await waitFor(async () => ((await cluster.crawl(id)).pages.stored >= 500 ? true : undefined), 120_000, "500 pages on four nodes");
    await Promise.all(grown.slice(1).map((n) => n.stop("SIGTERM")));
    const crawl = await finished(id);
    const { peak, samples } = await sampler.stop();
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual(everyPageStored(site));
    expect((await http(cluster.api, "GET", `/api/pages/count?crawl=${id}`)).body).toEqual({ count: site.expectedPages });
    expect(peak).toBeLessThanOrEqual(BUDGET);
    console.log(`budget ${BUDGET}, 1 -> 4 -> 2 processes: peak ${peak} connections over ${samples} samples`);
  }, 300_000);

  // A joining node's migration waits for a connection slot, so the running nodes must give up
  // theirs as soon as it joins: counted only once its services had started, a joiner at a busy
  // cluster waited a minute or more (issue 14's 22-node finding). Here it is held at its
  // migration by the test, and the running node's share must already be split.
  it("a node counts in the split from the moment it joins, while it still waits at its migration", async () => {
    const first = cluster.node("n1");
    const dbLimit = async () => {
      const nodes = (await http(first.api, "GET", "/api/throttle")).body.nodes as { nodeId: string; db: { limit: number } }[];
      return nodes.find((n) => n.nodeId === first.name)?.db.limit;
    };
    // A node's pool is its share, capped at DB_NODE_CONCURRENCY (here its default).
    const poolOf = (share: number) => Math.min(DEFAULT_DB_NODE_CONCURRENCY_CAP, share);
    const alone = poolOf(BUDGET);
    await waitFor(async () => ((await dbLimit()) === alone ? true : undefined), 30_000, `n1 alone to have a pool of ${alone}`);
    await cluster.withClient(async (locker) => {
      await locker.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      try {
        const joiner = await addNode(2);
        await waitFor(
          async () => ((await http(joiner.api, "GET", "/api/ready")).body?.boot?.state === "migrating" ? true : undefined),
          60_000,
          "n2 to wait at its migration",
        );
        const half = poolOf(shareOf(BUDGET, [first.name, joiner.name], first.name));
        expect(half).toBeLessThan(alone);
        await waitFor(async () => ((await dbLimit()) === half ? true : undefined), 10_000, `n1's share to drop to ${half}`);
      } finally {
        await locker.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
      }
    });
  }, 120_000);
});
