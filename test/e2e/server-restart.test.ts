// A server restarted mid-crawl and mid-job, with two Sluice processes running. NATS: publishes
// and acks fail while it is down, leases bring the URLs back, and the transporter and the
// JetStream consumers reconnect (JetStream keeps its streams on disk, -sd, as in production).
// PostgreSQL: every pooled connection breaks at once; the insert job's transaction is lost and a
// second attempt runs it. Either way each page is stored once and the rows are exact.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { createCluster, everyPageStored, type Cluster } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

const INSERT_ROWS = 1_500_000;
const NATS_SERVER = "/usr/sbin/nats-server";

function natsUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(4222, "127.0.0.1", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

function startNats(): void {
  execFileSync("start-stop-daemon", [
    "--start",
    "--oknodo",
    "--background",
    "--exec",
    NATS_SERVER,
    "--",
    "-a",
    "127.0.0.1",
    "-p",
    "4222",
    "-js",
    "-sd",
    "/var/lib/nats-server",
    "-l",
    "/var/log/nats-server.log",
  ]);
}

const waitForNats = () => waitFor(async () => ((await natsUp()) ? true : undefined), 30_000, "NATS to be up");

const SERVERS: { name: string; restart(): Promise<void>; ensureUp(): Promise<unknown> }[] = [
  {
    name: "NATS",
    async restart() {
      execFileSync("start-stop-daemon", ["--stop", "--oknodo", "--retry", "10", "--exec", NATS_SERVER]);
      expect(await natsUp()).toBe(false);
      // Long enough for in-flight publishes and acks to fail, short of Moleculer's node timeout.
      await new Promise((r) => setTimeout(r, 3_000));
      startNats();
      await waitForNats();
    },
    async ensureUp() {
      if (!(await natsUp())) startNats();
      return waitForNats();
    },
  },
  {
    name: "PostgreSQL",
    // Synchronous: pg_ctlcluster returns once the server accepts connections again.
    async restart() {
      const version = fs.readdirSync("/etc/postgresql")[0]!;
      execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"]);
    },
    async ensureUp() {},
  },
];

for (const server of SERVERS) {
  describeWithServers(["DATABASE_URL", "NATS_URL"], `${server.name} restarted mid-crawl and mid-job`, () => {
    let cluster: Cluster;

    beforeAll(async () => {
      // A short lease: a URL whose page could not be sent or recorded is fetched again soon.
      cluster = await createCluster({ site: { pages: 1200, delayMs: 5 }, env: { CRAWL_LEASE_MS: "10000", INSERT_BATCH_ROWS: "5000" } });
      await cluster.start("n1", { services: "api,crawler,ingestor" });
      await cluster.start("n2", { services: "crawler,ingestor" });
    }, 60_000);

    afterAll(async () => {
      await server.ensureUp();
      await cluster?.cleanup();
    }, 90_000);

    it("finishes the crawl and the insert job with exact counts", async () => {
      const { api, site } = cluster;
      await cluster.waitForNodes(2);
      const created = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH, maxPages: 100_000 });
      expect(created.status).toBe(202);
      const crawl = () => cluster.crawl(created.body.id);
      await waitFor(async () => ((await crawl()).pages.stored >= 100 ? true : undefined), 60_000, "100 pages stored");
      const job = await http(api, "POST", "/api/inserts", { rows: INSERT_ROWS });
      expect(job.status).toBe(202);
      await waitFor(async () => ((await cluster.job(job.body.id)).status === "running" ? true : undefined), 30_000, "the job to run");

      const storedBefore = (await crawl()).pages.stored;
      await server.restart();

      const final = await cluster.waitForCrawl(created.body.id, 180_000);
      expect(final.status).toBe("succeeded");
      expect(final.pages).toEqual(everyPageStored(site));

      const done = await cluster.waitForJob(job.body.id, 120_000);
      expect(done.status).toBe("succeeded");
      // Counted with a client of our own: each page once, exactly the job's rows.
      await cluster.withClient(async (direct) => {
        const { rows } = await direct.query<{ pages: number; rows: number }>(
          "SELECT (SELECT count(*)::int FROM pages) AS pages, (SELECT count(*)::int FROM rows) AS rows",
        );
        expect(rows[0]).toEqual({ pages: site.expectedPages, rows: INSERT_ROWS });
      });
      console.log(
        `${server.name} restart: ${storedBefore} pages stored before, crawl and a ${INSERT_ROWS}-row job (${done.attempts} attempt(s)) finished exact`,
      );
    }, 300_000);
  });
}
