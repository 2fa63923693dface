// A node killed with SIGKILL mid-crawl loses nothing: its leased URLs go back to the queue when
// the lease runs out, and JetStream redelivers the pages its ingestor had not acknowledged.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { serveGeneratedSite } from "../../fixtures/site-server";
import { createTestDatabase, describeWithServers, http, NATS_URL, waitFor } from "../support/env";
import { deleteStreams, freePort, startNode, uniqueNamespace, type NodeProcess } from "../support/processes";

describeWithServers(["DATABASE_URL", "NATS_URL"], "killed nodes over NATS and Postgres", () => {
  let site: Awaited<ReturnType<typeof serveGeneratedSite>>;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const nodes: NodeProcess[] = [];
  const namespace = uniqueNamespace();
  let api = "";
  let common: Record<string, string> = {};

  beforeAll(async () => {
    // Slow pages keep the crawl running long enough to kill nodes in the middle of it.
    site = await serveGeneratedSite({ pages: 300, delayMs: 40 });
    db = await createTestDatabase();
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    common = { TRANSPORTER: NATS_URL!, DATABASE_URL: db.url, NAMESPACE: namespace, CRAWL_ALLOW_HOSTS: "127.0.0.1", CRAWL_LEASE_MS: "3000" };
    nodes.push(startNode(`${namespace}-api`, { ...common, SERVICES: "api", PORT: String(port) }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop("SIGKILL")));
    await db?.drop();
    await site?.close();
    await deleteStreams(NATS_URL!, namespace).catch(() => {});
  }, 60_000);

  const crawlStatus = async (id: number) => (await http(api, "GET", `/api/crawls/${id}`)).body;

  it("finishes with exact counts after a crawler and an ingestor are killed mid-crawl", async () => {
    const crawler1 = startNode(`${namespace}-crawler1`, { ...common, SERVICES: "crawler" });
    const ingestor1 = startNode(`${namespace}-ingestor1`, { ...common, SERVICES: "ingestor" });
    nodes.push(crawler1, ingestor1);
    const created = await waitFor(async () => {
      const res = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH });
      return res.status === 202 ? res : undefined;
    }, 60_000, "the cluster to accept a crawl");
    const id = created.body.id as number;

    await waitFor(async () => ((await crawlStatus(id)).pages.stored >= 40 ? true : undefined), 60_000, "some pages stored");
    crawler1.child.kill("SIGKILL");
    ingestor1.child.kill("SIGKILL");
    const atKill = (await crawlStatus(id)).pages;
    expect(atKill.stored).toBeLessThan(site.expectedPages);

    // Replacements join; the crawl resumes where the dead nodes left it.
    nodes.push(startNode(`${namespace}-crawler2`, { ...common, SERVICES: "crawler" }));
    nodes.push(startNode(`${namespace}-ingestor2`, { ...common, SERVICES: "ingestor" }));
    const crawl = await waitFor(async () => {
      const c = await crawlStatus(id);
      return c.status === "running" || c.status === "pending" ? undefined : c;
    }, 120_000, "the crawl to finish");
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual({ discovered: site.expectedPages, fetched: site.expectedPages, stored: site.expectedPages, failed: 0, skipped: 0 });
    const rows = await http(api, "GET", `/api/pages/count?crawl=${id}`);
    expect(rows.body).toEqual({ count: site.expectedPages });
  }, 240_000);
});
