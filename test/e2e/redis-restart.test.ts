// Redis restarted mid-crawl: every node falls back to its local share, nothing is lost or stuck,
// the budget holds throughout, and the cluster-wide limits resume when Redis is back.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { execFileSync } from "node:child_process";
import IORedis from "ioredis";
import { createCluster, everyPageStored, type Cluster } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

const REDIS_URL = process.env.REDIS_URL;
const BUDGET = 6;

function startRedis(): void {
  execFileSync("redis-server", [
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
  ]);
}

async function redisUp(): Promise<boolean> {
  const r = new IORedis(REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => {});
  try {
    await r.connect();
    return (await r.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "Redis restarted mid-crawl", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await createCluster({
      redis: true,
      site: { pages: 1500, delayMs: 5 },
      env: { DB_BUDGET: String(BUDGET), CRAWL_HOST_CONCURRENCY: "6" },
    });
    for (const n of [1, 2, 3]) await cluster.start(`n${n}`, { services: "api,crawler,ingestor" });
  }, 60_000);

  afterAll(async () => {
    if (!(await redisUp())) startRedis();
    // cleanup() deletes the namespace's keys: Redis must answer again first.
    await waitFor(async () => ((await redisUp()) ? true : undefined), 10_000, "Redis to be up");
    await cluster?.cleanup();
  }, 60_000);

  it("finishes with exact counts, never over budget, and resumes cluster-wide limits", async () => {
    const { api, site } = cluster;
    await cluster.waitForNodes(3);
    const sampler = cluster.sampleConnections();

    const created = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH, maxPages: 100_000 });
    expect(created.status).toBe(202);
    const id = created.body.id as number;
    const crawl = () => cluster.crawl(id);
    await waitFor(async () => ((await crawl()).pages.stored >= 150 ? true : undefined), 60_000, "150 pages stored");

    execFileSync("redis-cli", ["-p", "6379", "shutdown", "nosave"]);
    const during = await waitFor(
      async () => {
        const t = (await http(api, "GET", "/api/throttle")).body;
        return t.nodes.every((n: { redis: string }) => n.redis.startsWith("down")) ? t : undefined;
      },
      20_000,
      "every node to fall back",
    );
    const storedDuring = (await crawl()).pages.stored;
    await waitFor(
      async () => ((await crawl()).pages.stored > storedDuring + 50 ? true : undefined),
      60_000,
      "progress while Redis is down",
    );
    expect(during.resources.find((r: { resource: string }) => r.resource === "db:connections").fallbackNodes).toBe(3);
    const ready = await http(api, "GET", "/api/ready");
    expect(ready.status).toBe(503);
    expect(ready.body.checks.redis).toMatch(/^down/);

    startRedis();
    const final = await cluster.waitForCrawl(id, 180_000);
    const { peak } = await sampler.stop();

    expect(final.status).toBe("succeeded");
    expect(final.pages).toEqual(everyPageStored(site));
    expect(peak).toBeLessThanOrEqual(BUDGET);
    const after = await waitFor(
      async () => {
        const t = (await http(api, "GET", "/api/throttle")).body;
        const resumed = t.nodes.every(
          (n: { redis: string; limiters: { fallback: boolean }[] }) => n.redis === "ok" && n.limiters.every((l) => !l.fallback),
        );
        return resumed && t.nodes.length === 3 ? t : undefined;
      },
      30_000,
      "cluster-wide limits to resume on every node",
    ).catch((err: Error) => {
      cluster.printOutputs();
      throw err;
    });
    expect(after.nodes).toHaveLength(3);
    expect((await http(api, "GET", "/api/ready")).status).toBe(200);
    console.log(`redis restart: peak ${peak} connections (budget ${BUDGET}); ${storedDuring} pages stored when every node had fallen back`);
  }, 300_000);
});
