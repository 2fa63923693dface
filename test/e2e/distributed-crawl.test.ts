// api, crawler and ingestor in three separate OS processes over real NATS and Postgres.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { Client } from "pg";
import { createCluster, everyPageStored, type Cluster } from "../support/cluster";
import { describeWithServers, http } from "../support/env";

describeWithServers(["DATABASE_URL", "NATS_URL"], "distributed crawl over NATS and Postgres", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await createCluster({ site: { pages: 500 }, env: { DB_NODE_CONCURRENCY: "2" }, stopSignal: "SIGTERM" });
    await cluster.start("api", { services: "api" });
    await cluster.start("crawler", { services: "crawler" });
    await cluster.start("ingestor", { services: "ingestor" });
  }, 60_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it("crawls a 500-page site with exact counts", async () => {
    const { api, site, namespace } = cluster;
    // The api answers 503 until the crawler has joined the cluster.
    const id = await cluster.startCrawl({ url: site.entryUrl, maxDepth: MAX_MAX_DEPTH });
    const crawl = await cluster.waitForCrawl(id, 120_000);
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual(everyPageStored(site));
    expect((await http(api, "GET", `/api/pages/count?crawl=${crawl.id}`)).body).toEqual({ count: site.expectedPages });

    // Each page was fetched exactly once (robots.txt aside), and Postgres holds one row per URL.
    const pageRequests = site.requests.filter((r) => r.path !== "/robots.txt");
    expect(pageRequests.length).toBe(site.expectedPages);
    expect(new Set(pageRequests.map((r) => r.path)).size).toBe(site.expectedPages);

    // Every connection to the crawl's database says which node (and which process of it) holds it.
    const pg = new Client({ connectionString: process.env.DATABASE_URL });
    await pg.connect();
    const { rows } = await pg.query<{ application_name: string; n: number }>(
      "SELECT application_name, count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 GROUP BY 1",
      [cluster.db.name],
    );
    await pg.end();
    const names = rows.map((r) => r.application_name).sort();
    // One pool per process, never more connections than DB_NODE_CONCURRENCY.
    for (const r of rows) expect(r.n).toBeLessThanOrEqual(2);
    expect(names.some((n) => n.startsWith(`sluice:${namespace}-ingestor:`))).toBe(true);
    for (const name of names) expect(name).toMatch(new RegExp(`^sluice:${namespace}-(api|crawler|ingestor):[0-9a-f]{6}$`));
    const ready = await http(api, "GET", "/api/ready");
    expect(ready.body).toEqual({ ready: true, checks: { database: "ok", transporter: "ok" } });
  }, 180_000);
});
