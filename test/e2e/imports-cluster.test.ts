// Imports across OS processes over NATS JetStream, Postgres and Redis: once the 202 is sent the
// upload is in Postgres, so an ingestor killed mid-load leads to attempt 2 from the staged
// rows, and an api node killed right after its 202 loses nothing.
import pg from "pg";
import { createCluster, type Cluster } from "../support/cluster";
import { describeWithServers, waitFor } from "../support/env";

const ROWS = 20_000;

function csv(n: number): string {
  let s = "n,label,doc\n";
  for (let i = 1; i <= n; i++) s += `${i},"label ${i}","{""i"": ${i}}"\n`;
  return s;
}

async function upload(api: string, body: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${api}/api/imports?table=orders`, { method: "POST", headers: { "content-type": "text/csv" }, body });
  return { status: res.status, body: await res.json() };
}

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "imports across processes", () => {
  let cluster: Cluster;
  const sql = <T extends object = any>(text: string) => cluster.withClient(async (c) => (await c.query<T>(text)).rows);
  const count = async () => Number((await sql(`SELECT count(*)::int AS n FROM orders`))[0].n);
  const staging = async () => (await sql(`SELECT relname FROM pg_class WHERE relname LIKE 'import_staging_%'`)).length;

  beforeAll(async () => {
    // Fast heartbeats: a dead runner's claim goes stale in 1.5 s.
    cluster = await createCluster({ redis: true, env: { DB_BUDGET: "8", JOB_HEARTBEAT_MS: "500", IMPORT_TABLES: "orders" } });
    await sql(`CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer NOT NULL, label text, doc jsonb)`);
    await cluster.ready(await cluster.start("api-a", { services: "api" }));
  }, 90_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it("an ingestor killed mid-import: attempt 2 loads the staged rows on another, exactly once", async () => {
    const first = await cluster.start("ingestor-a", { services: "ingestor" });
    await cluster.waitForNodes(["api-a", "ingestor-a"]);
    // The test holds a lock the load needs: the job is running, mid-way, when its node dies.
    const blocker = new pg.Client({ connectionString: cluster.db.url });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE orders IN SHARE MODE");
      const res = await upload(cluster.api, csv(ROWS));
      expect(res).toMatchObject({ status: 202, body: { rows: ROWS } });
      const id = res.body.id as number;
      await waitFor(
        async () => {
          const job = await cluster.job(id);
          return job.status === "running" && job.nodeId === first.name ? true : undefined;
        },
        30_000,
        `import ${id} running on ingestor-a`,
      );
      first.kill();
      await cluster.start("ingestor-b", { services: "ingestor" });
      await blocker.query("COMMIT");

      const end = await cluster.waitForJob(id);
      expect(end).toMatchObject({ status: "succeeded", attempts: 2, nodeId: `${cluster.namespace}-ingestor-b`, result: { rows: ROWS } });
      expect(await count()).toBe(ROWS);
      expect(await sql(`SELECT count(DISTINCT n)::int AS n, min(n) AS lo, max(n) AS hi FROM orders`)).toEqual([
        { n: ROWS, lo: 1, hi: ROWS },
      ]);
      expect(await staging()).toBe(0);
    } finally {
      await blocker.end();
    }
  }, 180_000);

  it("the api node that took an upload is killed right after its 202: the import completes all the same", async () => {
    const before = await count();
    const apiB = await cluster.start("api-b", { services: "api" });
    await cluster.ready(apiB);
    const res = await upload(apiB.api, csv(ROWS));
    expect(res.status).toBe(202);
    apiB.kill();
    const end = await cluster.waitForJob(res.body.id);
    expect(end).toMatchObject({ status: "succeeded", result: { rows: ROWS } });
    expect(await count()).toBe(before + ROWS);
    expect(await staging()).toBe(0);
  }, 120_000);
});
