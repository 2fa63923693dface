// Bulk-insert jobs across OS processes over NATS JetStream, Postgres and Redis: an ingestor
// killed mid-job (with and without a second one alive), twenty jobs at once under the
// connection budget, and jobs.updated events seen by a client node.
import { ServiceBroker } from "moleculer";
import { createCluster, type Cluster } from "../support/cluster";
import { describeWithServers, http, NATS_URL, waitFor } from "../support/env";
import { freePort } from "../../fixtures/node-process";
import { scrapeCount } from "../support/metrics";

const BUDGET = 6;

describeWithServers(["DATABASE_URL", "NATS_URL", "REDIS_URL"], "bulk-insert jobs across processes", () => {
  let cluster: Cluster;
  const count = () => cluster.withClient(async (c) => (await c.query<{ n: number }>("SELECT count(*)::int AS n FROM rows")).rows[0]!.n);
  const finished = (id: number) => cluster.waitForJob(id, 120_000);
  const ingestor = (name: string) => cluster.start(name, { services: "ingestor" });
  /** Waits until the job is inserting, and answers the node running it. */
  const runningOn = (id: number) =>
    waitFor(
      async () => {
        const j = await cluster.job(id);
        return j.status === "running" && j.progress.done > 0 ? (j.nodeId as string) : undefined;
      },
      60_000,
      `job ${id} to make progress`,
    );

  // The api node runs the reaper, and counts the outcome of each attempt it ends.
  let apiMetrics = "";
  const retriedInserts = () => scrapeCount(apiMetrics, "sluice_job_outcomes", { kind: "insert", outcome: "retried" });

  beforeAll(async () => {
    // Fast heartbeats: a dead runner's claim goes stale in 1.5 s.
    cluster = await createCluster({ redis: true, env: { DB_BUDGET: String(BUDGET), JOB_HEARTBEAT_MS: "500" } });
    const metricsPort = await freePort();
    apiMetrics = `http://127.0.0.1:${metricsPort}/metrics`;
    await cluster.ready(await cluster.start("api", { services: "api", env: { METRICS_PORT: String(metricsPort) } }));
  }, 90_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it("a job whose ingestor is killed mid-job completes on the other one: exactly n rows, 2 attempts", async () => {
    const a = await ingestor("ingestor-a");
    const b = await ingestor("ingestor-b");
    await cluster.waitForNodes(["ingestor-a", "ingestor-b"]);
    const rows = 3_000_000;
    const { body } = await http(cluster.api, "POST", "/api/inserts", { rows });
    const victim = await runningOn(body.id);
    const [killed, survivor] = victim === a.name ? [a, b] : [b, a];
    killed.kill();

    const end = await finished(body.id);
    expect(end).toMatchObject({
      status: "succeeded",
      attempts: 2,
      nodeId: survivor.name,
      error: null,
      progress: { done: rows, total: rows },
    });
    // Postgres rolled the killed transaction back: no row of the first attempt is left.
    expect(await count()).toBe(rows);
  }, 180_000);

  it("runs twenty jobs at once within the connection budget, and a client sees each job's events in order", async () => {
    const before = await count();
    const { namespace } = cluster;
    const client = new ServiceBroker({ nodeID: `${namespace}-watcher`, namespace, transporter: NATS_URL as "NATS", logLevel: "warn" });
    const events = new Map<number, string[]>();
    client.createService({
      name: "watcher",
      events: {
        "jobs.updated"(ctx: { params: { id: number; status: string } }) {
          const seen = events.get(ctx.params.id) ?? [];
          if (seen[seen.length - 1] !== ctx.params.status) seen.push(ctx.params.status);
          events.set(ctx.params.id, seen);
        },
      },
    });
    await client.start();
    const sampler = cluster.sampleConnections();
    try {
      // Every node that announces must know the watcher's subscription before the jobs start.
      const announcers = cluster.running().map((n) => n.name);
      await waitFor(
        async () => {
          for (const nodeID of announcers) {
            // The watcher's own subscription: other services (the api's event relay) listen to it too.
            const known = await client.call<{ name: string; endpoints?: { nodeID: string }[] }[], object>(
              "$node.events",
              { onlyAvailable: true, withEndpoints: true },
              { nodeID },
            );
            if (!known.some((e) => e.name === "jobs.updated" && e.endpoints?.some((ep) => ep.nodeID === client.nodeID))) return undefined;
          }
          return true;
        },
        30_000,
        "every node to know the watcher",
      );
      const ids = await Promise.all(
        Array.from({ length: 20 }, async () => (await http(cluster.api, "POST", "/api/inserts", { rows: 40_000 })).body.id as number),
      );
      const ends = await Promise.all(ids.map((id) => finished(id)));
      const { peak, samples } = await sampler.stop();
      expect(ends.map((j) => j.status)).toEqual(Array(20).fill("succeeded"));
      expect(await count()).toBe(before + 20 * 40_000);
      expect(peak).toBeLessThanOrEqual(BUDGET);
      console.log(`twenty jobs: peak ${peak} connections (budget ${BUDGET}) over ${samples} samples`);
      await waitFor(
        () => (ids.every((id) => events.get(id)?.includes("succeeded")) ? true : undefined),
        10_000,
        "every succeeded event",
      ).catch((err: Error) => {
        console.log(JSON.stringify([...events.entries()]), JSON.stringify(ends.map((j) => [j.id, j.nodeId])));
        throw err;
      });
      for (const id of ids) expect(events.get(id)).toEqual(["pending", "running", "succeeded"]);
    } finally {
      await sampler.stop();
      await client.stop();
    }
  }, 180_000);

  it("with no ingestor left, a killed job goes back to pending and completes when an ingestor starts", async () => {
    // Only one ingestor stays alive.
    const alive = cluster.running().filter((n) => n.name.includes("ingestor"));
    for (const n of alive.slice(1)) await n.stop("SIGTERM");
    const before = await count();
    const rows = 3_000_000;
    const { body } = await http(cluster.api, "POST", "/api/inserts", { rows });
    const victim = await runningOn(body.id);
    expect(victim).toBe(alive[0]!.name);
    const retriedBefore = await retriedInserts();
    alive[0]!.kill();

    // The reaper notices the node is gone: the job is not left running.
    const reaped = await waitFor(
      async () => {
        const j = await cluster.job(body.id);
        return j.status === "pending" ? j : undefined;
      },
      60_000,
      "the reaper to send the job back to pending",
    );
    expect(reaped).toMatchObject({ attempts: 1, nodeId: null });
    expect(reaped.error).toContain(victim);
    expect(await count()).toBe(before);
    // The reaper's write ended the attempt, so its node counted the outcome: once.
    expect(await retriedInserts()).toBe(retriedBefore + 1);

    await ingestor("ingestor-c");
    const end = await finished(body.id);
    expect(end).toMatchObject({ status: "succeeded", attempts: 2, nodeId: `${cluster.namespace}-ingestor-c` });
    expect(await count()).toBe(before + rows);
  }, 180_000);
});
