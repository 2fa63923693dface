// A node killed with SIGKILL mid-crawl loses nothing: its leased URLs go back to the queue when
// the lease runs out, and JetStream redelivers the pages its ingestor had not acknowledged.
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { createCluster, everyPageStored, type Cluster } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

describeWithServers(["DATABASE_URL", "NATS_URL"], "killed nodes over NATS and Postgres", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // Slow pages keep the crawl running long enough to kill nodes in the middle of it.
    cluster = await createCluster({ site: { pages: 300, delayMs: 40 }, env: { CRAWL_LEASE_MS: "3000" } });
    await cluster.start("api", { services: "api" });
  }, 60_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it("finishes with exact counts after a crawler and an ingestor are killed mid-crawl", async () => {
    const site = cluster.site;
    const crawler1 = await cluster.start("crawler1", { services: "crawler" });
    const ingestor1 = await cluster.start("ingestor1", { services: "ingestor" });
    const id = await cluster.startCrawl({ url: site.entryUrl, maxDepth: MAX_MAX_DEPTH });

    await waitFor(async () => ((await cluster.crawl(id)).pages.stored >= 40 ? true : undefined), 60_000, "some pages stored");
    crawler1.kill();
    ingestor1.kill();
    const atKill = (await cluster.crawl(id)).pages;
    expect(atKill.stored).toBeLessThan(site.expectedPages);

    // Replacements join; the crawl resumes where the dead nodes left it.
    await cluster.start("crawler2", { services: "crawler" });
    await cluster.start("ingestor2", { services: "ingestor" });
    const crawl = await cluster.waitForCrawl(id, 120_000);
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages).toEqual(everyPageStored(site));
    const rows = await http(cluster.api, "GET", `/api/pages/count?crawl=${id}`);
    expect(rows.body).toEqual({ count: site.expectedPages });
  }, 240_000);
});
