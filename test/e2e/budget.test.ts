// DB_BUDGET holds across processes: however many nodes run, Postgres never sees more Sluice
// connections than the budget, sampled from pg_stat_activity every 20 ms.
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
});
