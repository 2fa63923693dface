// A server restarted mid-crawl and mid-job, with two Sluice processes running. NATS: publishes
// and acks fail while it is down, leases bring the URLs back, and the transporter and the
// JetStream consumers reconnect (JetStream keeps its streams on disk, -sd, as in production).
// PostgreSQL: every pooled connection breaks at once; the insert job's transaction is lost and a
// second attempt runs it. Either way each page is stored once and the rows are exact.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import pg from "pg";
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { serveGeneratedSite } from "../../fixtures/site-server";
import { createTestDatabase, describeWithServers, http, NATS_URL, waitFor } from "../support/env";
import { deleteStreams, freePort, startNode, uniqueNamespace, type NodeProcess } from "../support/processes";

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
    "--start", "--oknodo", "--background", "--exec", NATS_SERVER, "--",
    "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
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
    const nodes: NodeProcess[] = [];
    const namespace = uniqueNamespace();
    let db: Awaited<ReturnType<typeof createTestDatabase>>;
    let site: Awaited<ReturnType<typeof serveGeneratedSite>>;
    let api = "";

    beforeAll(async () => {
      site = await serveGeneratedSite({ pages: 1200, delayMs: 5 });
      db = await createTestDatabase();
      const port = await freePort();
      api = `http://127.0.0.1:${port}`;
      // A short lease: a URL whose page could not be sent or recorded is fetched again soon.
      const common = { TRANSPORTER: NATS_URL!, DATABASE_URL: db.url, NAMESPACE: namespace, CRAWL_ALLOW_HOSTS: "127.0.0.1", CRAWL_LEASE_MS: "10000", INSERT_BATCH_ROWS: "5000" };
      nodes.push(startNode(`${namespace}-n1`, { ...common, SERVICES: "api,crawler,ingestor", PORT: String(port) }));
      nodes.push(startNode(`${namespace}-n2`, { ...common, SERVICES: "crawler,ingestor", PORT: "0" }));
    }, 60_000);

    afterAll(async () => {
      await server.ensureUp();
      await Promise.all(nodes.map((n) => n.stop("SIGKILL")));
      await db?.drop();
      await site?.close();
      await deleteStreams(NATS_URL!, namespace).catch(() => {});
    }, 90_000);

    it("finishes the crawl and the insert job with exact counts", async () => {
      await waitFor(async () => ((await http(api, "GET", "/api/throttle")).body.nodes?.length === 2 ? true : undefined), 60_000, "two nodes");
      const created = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH, maxPages: 100_000 });
      expect(created.status).toBe(202);
      const crawl = async () => (await http(api, "GET", `/api/crawls/${created.body.id}`)).body;
      await waitFor(async () => ((await crawl()).pages.stored >= 100 ? true : undefined), 60_000, "100 pages stored");
      const job = await http(api, "POST", "/api/inserts", { rows: INSERT_ROWS });
      expect(job.status).toBe(202);
      await waitFor(async () => ((await http(api, "GET", `/api/jobs/${job.body.id}`)).body.status === "running" ? true : undefined), 30_000, "the job to run");

      const storedBefore = (await crawl()).pages.stored;
      await server.restart();

      const final = await waitFor(async () => {
        const c = await crawl();
        return c.status === "running" || c.status === "pending" ? undefined : c;
      }, 180_000, "the crawl to finish").catch((err: Error) => {
        for (const n of nodes) console.log(`${n.name} exit=${n.child.exitCode}\n${n.output().slice(-3000)}`);
        throw err;
      });
      expect(final.status).toBe("succeeded");
      expect(final.pages).toEqual({ discovered: site.expectedPages, fetched: site.expectedPages, stored: site.expectedPages, failed: 0, skipped: 0 });

      const done = await waitFor(async () => {
        const j = (await http(api, "GET", `/api/jobs/${job.body.id}`)).body;
        return ["succeeded", "failed", "cancelled"].includes(j.status) ? j : undefined;
      }, 120_000, "the insert job to finish");
      expect(done.status).toBe("succeeded");
      // Counted with a client of our own: each page once, exactly the job's rows.
      const direct = new pg.Client({ connectionString: db.url });
      await direct.connect();
      try {
        const { rows } = await direct.query<{ pages: number; rows: number }>("SELECT (SELECT count(*)::int FROM pages) AS pages, (SELECT count(*)::int FROM rows) AS rows");
        expect(rows[0]).toEqual({ pages: site.expectedPages, rows: INSERT_ROWS });
      } finally {
        await direct.end();
      }
      console.log(`${server.name} restart: ${storedBefore} pages stored before, crawl and a ${INSERT_ROWS}-row job (${done.attempts} attempt(s)) finished exact`);
    }, 300_000);
  });
}
