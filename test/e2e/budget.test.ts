// DB_BUDGET holds across processes: however many nodes run, Postgres never sees more Sluice
// connections than the budget, sampled from pg_stat_activity every 20 ms.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import IORedis from "ioredis";
import { serveGeneratedSite } from "../../fixtures/site-server";
import { createTestDatabase, describeWithServers, http, NATS_URL, waitFor } from "../support/env";
import { sampleConnections } from "../support/connections";
import { deleteStreams, freePort, startNode, uniqueNamespace, type NodeProcess } from "../support/processes";

const REDIS_URL = process.env.REDIS_URL;
const BUDGET = 6;
describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "the connection budget across processes", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let namespace = "";
  const nodes: NodeProcess[] = [];
  let common: Record<string, string> = {};
  let api = "";

  beforeEach(async () => {
    db = await createTestDatabase();
    namespace = uniqueNamespace();
    common = {
      TRANSPORTER: NATS_URL!,
      DATABASE_URL: db.url,
      REDIS_URL: REDIS_URL!,
      NAMESPACE: namespace,
      CRAWL_ALLOW_HOSTS: "127.0.0.1",
      DB_BUDGET: String(BUDGET),
      CRAWL_LEASE_MS: "10000",
    };
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    nodes.push(startNode(`${namespace}-n1`, { ...common, SERVICES: "api,crawler,ingestor", PORT: String(port) }));
  }, 60_000);

  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop("SIGKILL")));
    await db.drop();
    await deleteStreams(NATS_URL!, namespace).catch(() => {});
    const redis = new IORedis(REDIS_URL!);
    const keys = await redis.keys(`b_sluice:${namespace}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }, 60_000);

  const addNode = (i: number) => {
    const node = startNode(`${namespace}-n${i}`, { ...common, SERVICES: "api,crawler,ingestor", PORT: "0" });
    nodes.push(node);
    return node;
  };
  const startCrawl = async (url: string, maxDepth: number) =>
    waitFor(async () => {
      const res = await http(api, "POST", "/api/crawls", { url, maxDepth, maxPages: 100_000 });
      return res.status === 202 ? (res.body.id as number) : undefined;
    }, 60_000, "the cluster to accept a crawl");
  const crawlOf = async (id: number) => (await http(api, "GET", `/api/crawls/${id}`)).body;
  const finished = (id: number) =>
    waitFor(async () => {
      const c = await crawlOf(id);
      return c.status === "running" || c.status === "pending" ? undefined : c;
    }, 180_000, "the crawl to finish");

  it("four processes crawling 2,000 pages never hold more than DB_BUDGET connections", async () => {
    const site = await serveGeneratedSite({ pages: 2000 });
    try {
      for (const i of [2, 3, 4]) addNode(i);
      await waitFor(async () => ((await http(api, "GET", "/api/throttle")).body.nodes?.length === 4 ? true : undefined), 60_000, `four nodes: ${nodes.map((n) => n.name + ": " + n.output().slice(-1500)).join("\n")}`);
      const sampler = sampleConnections(new URL(db.url).pathname.slice(1));
      const id = await startCrawl(site.entryUrl, MAX_MAX_DEPTH);
      const crawl = await finished(id);
      const { peak, samples } = await sampler.stop();
      expect(crawl.status).toBe("succeeded");
      expect(crawl.pages).toEqual({ discovered: site.expectedPages, fetched: site.expectedPages, stored: site.expectedPages, failed: 0, skipped: 0 });
      expect(peak).toBeLessThanOrEqual(BUDGET);
      expect(peak).toBeGreaterThan(1);
      expect(samples).toBeGreaterThan(50);
      console.log(`budget ${BUDGET}, 4 processes: peak ${peak} connections over ${samples} samples`);
    } finally {
      await site.close();
    }
  }, 240_000);

  it("holds while the cluster grows from one process to four and shrinks to two mid-crawl, losing nothing", async () => {
    const site = await serveGeneratedSite({ pages: 1200, delayMs: 10 });
    try {
      const sampler = sampleConnections(new URL(db.url).pathname.slice(1));
      const id = await startCrawl(site.entryUrl, MAX_MAX_DEPTH);
      await waitFor(async () => ((await crawlOf(id)).pages.stored >= 100 ? true : undefined), 60_000, "100 pages on one node");
      const grown = [2, 3, 4].map(addNode);
      await waitFor(async () => ((await crawlOf(id)).pages.stored >= 500 ? true : undefined), 120_000, "500 pages on four nodes");
      await Promise.all(grown.slice(1).map((n) => n.stop("SIGTERM")));
      const crawl = await finished(id);
      const { peak, samples } = await sampler.stop();
      expect(crawl.status).toBe("succeeded");
      expect(crawl.pages).toEqual({ discovered: site.expectedPages, fetched: site.expectedPages, stored: site.expectedPages, failed: 0, skipped: 0 });
      expect((await http(api, "GET", `/api/pages/count?crawl=${id}`)).body).toEqual({ count: site.expectedPages });
      expect(peak).toBeLessThanOrEqual(BUDGET);
      console.log(`budget ${BUDGET}, 1 -> 4 -> 2 processes: peak ${peak} connections over ${samples} samples`);
    } finally {
      await site.close();
    }
  }, 300_000);
});
