// api, crawler and ingestor in three separate OS processes over real NATS and Postgres.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { Client } from "pg";
import { serveGeneratedSite } from "../../fixtures/site-server";
import { createTestDatabase, describeWithServers, http, NATS_URL, waitFor } from "../support/env";
import { deleteStreams, freePort, startNode, uniqueNamespace, type NodeProcess } from "../support/processes";

describeWithServers(["DATABASE_URL", "NATS_URL"], "distributed crawl over NATS and Postgres", () => {
  let site: Awaited<ReturnType<typeof serveGeneratedSite>>;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const nodes: NodeProcess[] = [];
  const namespace = uniqueNamespace();
  let api = "";

  beforeAll(async () => {
    site = await serveGeneratedSite({ pages: 500 });
    db = await createTestDatabase();
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    const common = { TRANSPORTER: NATS_URL!, DATABASE_URL: db.url, NAMESPACE: namespace, CRAWL_ALLOW_HOSTS: "127.0.0.1", DB_NODE_CONCURRENCY: "2" };
    nodes.push(startNode(`${namespace}-api`, { ...common, SERVICES: "api", PORT: String(port) }));
    nodes.push(startNode(`${namespace}-crawler`, { ...common, SERVICES: "crawler" }));
    nodes.push(startNode(`${namespace}-ingestor`, { ...common, SERVICES: "ingestor" }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await db?.drop();
    await site?.close();
    await deleteStreams(NATS_URL!, namespace).catch(() => {});
  }, 60_000);

  it("crawls a 500-page site with exact counts", async () => {
    // The api answers 503 until the crawler has joined the cluster.
    const created = await waitFor(
      async () => {
        const res = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH });
        return res.status === 202 ? res : undefined;
      },
      60_000,
      `the cluster to accept a crawl (node output: ${nodes.map((n) => n.output()).join("\n")})`,
    );
    const crawl = await waitFor(
      async () => {
        const { body } = await http(api, "GET", `/api/crawls/${created.body.id}`);
        return body.status === "running" || body.status === "pending" ? undefined : body;
      },
      120_000,
      "the crawl to finish",
    );
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual({ discovered: site.expectedPages, fetched: site.expectedPages, stored: site.expectedPages, failed: 0, skipped: 0 });
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
      [new URL(db.url).pathname.slice(1)],
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
