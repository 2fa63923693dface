// Redis restarted mid-crawl: every node falls back to its local share, nothing is lost or stuck,
// the budget holds throughout, and the cluster-wide limits resume when Redis is back.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { execFileSync } from "node:child_process";
import IORedis from "ioredis";
import { sampleConnections } from "../support/connections";
import { serveGeneratedSite } from "../../fixtures/site-server";
import { createTestDatabase, describeWithServers, http, NATS_URL, waitFor } from "../support/env";
import { deleteStreams, freePort, startNode, uniqueNamespace, type NodeProcess } from "../support/processes";

const REDIS_URL = process.env.REDIS_URL;
const BUDGET = 6;

function startRedis(): void {
  execFileSync("redis-server", [
    "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "", "--appendonly", "no",
    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
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
  const nodes: NodeProcess[] = [];
  const namespace = uniqueNamespace();
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let site: Awaited<ReturnType<typeof serveGeneratedSite>>;
  let api = "";

  beforeAll(async () => {
    site = await serveGeneratedSite({ pages: 1500, delayMs: 5 });
    db = await createTestDatabase();
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    const common = {
      TRANSPORTER: NATS_URL!, DATABASE_URL: db.url, REDIS_URL: REDIS_URL!, NAMESPACE: namespace,
      CRAWL_ALLOW_HOSTS: "127.0.0.1", DB_BUDGET: String(BUDGET), CRAWL_HOST_CONCURRENCY: "6", SERVICES: "api,crawler,ingestor",
    };
    nodes.push(startNode(`${namespace}-n1`, { ...common, PORT: String(port) }));
    nodes.push(startNode(`${namespace}-n2`, { ...common, PORT: "0" }));
    nodes.push(startNode(`${namespace}-n3`, { ...common, PORT: "0" }));
  }, 60_000);

  afterAll(async () => {
    if (!(await redisUp())) startRedis();
    await Promise.all(nodes.map((n) => n.stop("SIGKILL")));
    await db?.drop();
    await site?.close();
    await deleteStreams(NATS_URL!, namespace).catch(() => {});
  }, 60_000);

  it("finishes with exact counts, never over budget, and resumes cluster-wide limits", async () => {
    await waitFor(async () => ((await http(api, "GET", "/api/throttle")).body.nodes?.length === 3 ? true : undefined), 60_000, "three nodes");
    const sampler = sampleConnections(new URL(db.url).pathname.slice(1));

    const created = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH, maxPages: 100_000 });
    expect(created.status).toBe(202);
    const id = created.body.id as number;
    const crawl = async () => (await http(api, "GET", `/api/crawls/${id}`)).body;
    await waitFor(async () => ((await crawl()).pages.stored >= 150 ? true : undefined), 60_000, "150 pages stored");

    execFileSync("redis-cli", ["-p", "6379", "shutdown", "nosave"]);
    const during = await waitFor(async () => {
      const t = (await http(api, "GET", "/api/throttle")).body;
      return t.nodes.every((n: { redis: string }) => n.redis.startsWith("down")) ? t : undefined;
    }, 20_000, "every node to fall back");
    const storedDuring = (await crawl()).pages.stored;
    await waitFor(async () => ((await crawl()).pages.stored > storedDuring + 50 ? true : undefined), 60_000, "progress while Redis is down");
    expect(during.resources.find((r: { resource: string }) => r.resource === "db:connections").fallbackNodes).toBe(3);
    const ready = await http(api, "GET", "/api/ready");
    expect(ready.status).toBe(503);
    expect(ready.body.checks.redis).toMatch(/^down/);

    startRedis();
    const final = await waitFor(async () => {
      const c = await crawl();
      return c.status === "running" || c.status === "pending" ? undefined : c;
    }, 180_000, "the crawl to finish");
    const { peak } = await sampler.stop();

    expect(final.status).toBe("succeeded");
    expect(final.pages).toEqual({ discovered: site.expectedPages, fetched: site.expectedPages, stored: site.expectedPages, failed: 0, skipped: 0 });
    expect(peak).toBeLessThanOrEqual(BUDGET);
    const after = await waitFor(async () => {
      const t = (await http(api, "GET", "/api/throttle")).body;
      const resumed = t.nodes.every((n: { redis: string; limiters: { fallback: boolean }[] }) => n.redis === "ok" && n.limiters.every((l) => !l.fallback));
      return resumed && t.nodes.length === 3 ? t : undefined;
    }, 30_000, "cluster-wide limits to resume on every node").catch((err: Error) => {
      for (const n of nodes) console.log(`${n.name} exit=${n.child.exitCode} signal=${n.child.signalCode}\n${n.output().slice(-3000)}`);
      throw err;
    });
    expect(after.nodes).toHaveLength(3);
    expect((await http(api, "GET", "/api/ready")).status).toBe(200);
    console.log(`redis restart: peak ${peak} connections (budget ${BUDGET}); ${storedDuring} pages stored when every node had fallen back`);
  }, 300_000);
});
