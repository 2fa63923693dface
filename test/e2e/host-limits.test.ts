// Per-host politeness is cluster-wide: three crawler processes together stay within
// CRAWL_HOST_CONCURRENCY and CRAWL_HOST_RATE, measured where it matters, at the site.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { createCluster, type Cluster } from "../support/cluster";
import { describeWithServers, http } from "../support/env";

const CONCURRENCY = 4;
const RATE_PER_S = 20;

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "cluster-wide per-host limits", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // 160 ms a page: at about 18 starts a second (20/s less the spacing margin) about 3 requests
    // are in flight, so the cap of 4 is reached in bursts. (At 200 ms the cap alone allowed
    // 4 / (0.2 s + each fetch's own overhead), barely above the 16/s the mean rate is held to.)
    cluster = await createCluster({
      redis: true,
      site: { pages: 240, delayMs: 160 },
      // 4 URLs a node at once (not 16): a small frontier is then shared by the three crawlers.
      env: { CRAWL_HOST_CONCURRENCY: String(CONCURRENCY), CRAWL_HOST_RATE: `${RATE_PER_S}/s`, CRAWL_NODE_CONCURRENCY: "4" },
      stopSignal: "SIGTERM",
    });
    await cluster.start("api", { services: "api,ingestor" });
    for (const i of [1, 2, 3]) await cluster.start(`crawler${i}`, { services: "crawler" });
  }, 60_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it("holds peak in-flight ≤ 4 and ≤ 20 starts in any second, at ≥ 80% of 20/s", async () => {
    const { api, site } = cluster;
    // All three crawlers must have joined before the crawl starts, or one could do it all alone.
    await cluster.waitForNodes(4);
    const created = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH });
    expect(created.status).toBe(202);
    const crawl = await cluster.waitForCrawl(created.body.id, 120_000);
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages.stored).toBe(site.expectedPages);

    const starts = site.requests.map((r) => r.start).sort((a, b) => a - b);
    expect(site.inFlightPeak).toBeLessThanOrEqual(CONCURRENCY);
    let maxInWindow = 0;
    for (let i = 0, j = 0; i < starts.length; i++) {
      while (starts[i]! - starts[j]! >= 1000) j++;
      maxInWindow = Math.max(maxInWindow, i - j + 1);
    }
    expect(maxInWindow).toBeLessThanOrEqual(RATE_PER_S);
    const meanRate = (starts.length - 1) / ((starts.at(-1)! - starts[0]!) / 1000);
    // Starts are spaced 10% wider than the rate (RATE_SPACING_MARGIN): about 18/s on average.
    expect(meanRate).toBeGreaterThanOrEqual(0.8 * RATE_PER_S);

    // Every crawler took part: the limits were shared, not held by one node.
    const { body: throttle } = await http(api, "GET", "/api/throttle");
    const fetchers = (throttle.nodes as { nodeId: string; limiters: { resource: string; done: number; clustered: boolean }[] }[])
      .map((n) => n.limiters.find((l) => l.resource.startsWith("fetch:")))
      .filter((l) => l !== undefined);
    expect(fetchers.length).toBe(3);
    for (const l of fetchers) {
      expect(l.clustered).toBe(true);
      expect(l.done).toBeGreaterThan(0);
    }
    console.log(
      `per-host limits: ${starts.length} requests, peak in flight ${site.inFlightPeak}, max ${maxInWindow} starts in 1 s, mean ${meanRate.toFixed(2)}/s`,
    );
  }, 180_000);

  it("spaces the three crawlers' requests to a site by its robots.txt Crawl-delay, together", async () => {
    // 20/s and 4 at once would allow far more: only the Crawl-delay spaces these, on Redis.
    await cluster.waitForNodes(4);
    const polite = await cluster.serveSite({ pages: 20, robots: "User-agent: *\nCrawl-delay: 0.5\n" });
    const created = await http(cluster.api, "POST", "/api/crawls", { url: polite.entryUrl, maxDepth: MAX_MAX_DEPTH });
    expect(created.status).toBe(202);
    const crawl = await cluster.waitForCrawl(created.body.id, 120_000);
    expect(crawl).toMatchObject({ status: "succeeded", pages: { stored: polite.expectedPages } });
    // Each crawler reads robots.txt for itself; the pages' requests are the ones spaced.
    const starts = polite.requests.filter((r) => r.path !== "/robots.txt").map((r) => r.start);
    expect(starts).toHaveLength(polite.expectedPages);
    const gaps = starts.slice(1).map((t, i) => Math.round(t - starts[i]!));
    console.log(`Crawl-delay 0.5 s across three crawlers: gaps at the site ${gaps.join(", ")} ms`);
    // Starts are spaced 550 ms apart on Redis (RATE_SPACING_MARGIN); what each node's event loop
    // adds before its request leaves is not in the limiter's hands: 50 ms of it are allowed.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(450);
    // And they were shared: more than one crawler fetched.
    const { body: throttle } = await http(cluster.api, "GET", "/api/throttle");
    const host = new URL(polite.url).host;
    const fetchedBy = (throttle.nodes as { limiters: { resource: string; done: number }[] }[]).filter((n) =>
      n.limiters.some((l) => l.resource === `fetch:${host}` && l.done > 0),
    );
    expect(fetchedBy.length).toBeGreaterThan(1);
  }, 120_000);
});
