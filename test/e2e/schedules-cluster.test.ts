// Schedules fired by three scheduler processes over NATS and Postgres: a schedule ticking every
// second gets exactly one job per tick, with no gap between the first and the last; and a node
// SIGKILLed in the middle of a tick (its transaction held on a lock the tick needs after claiming
// the schedule) leaves that tick to another node, which fires it once.
import { createCluster, type Cluster, type ClusterNode } from "../support/cluster";
import { describeWithServers, http, waitFor } from "../support/env";

interface RunRow {
  fire_at: Date;
  job_id: number | null;
  node_id: string;
}

describeWithServers(["DATABASE_URL", "NATS_URL"], "schedules across processes", () => {
  let cluster: Cluster;
  let schedulers: ClusterNode[] = [];

  const runsOf = (id: number) =>
    cluster.withClient(
      async (c) =>
        (await c.query<RunRow>("SELECT fire_at, job_id, node_id FROM schedule_runs WHERE schedule_id = $1 ORDER BY fire_at", [id])).rows,
    );
  const jobsOf = (id: number) =>
    cluster.withClient(
      async (c) =>
        (
          await c.query<{ id: number; scheduled_for: string }>(
            "SELECT id, params->>'scheduledFor' AS scheduled_for FROM jobs WHERE params->>'scheduleId' = $1 ORDER BY id",
            [String(id)],
          )
        ).rows,
    );
  /** A schedule firing an insert job (that no ingestor runs: it stays pending) every second. */
  const everySecond = async () => {
    const res = await http(cluster.api, "POST", "/api/schedules", { cron: "* * * * * *", job: { kind: "insert", params: { rows: 1 } } });
    expect(res.status).toBe(201);
    return res.body.id as number;
  };
  const pause = (id: number) => http(cluster.api, "PATCH", `/api/schedules/${id}`, { paused: true });
  /** Every tick from the first run to the last has exactly one run and one job of its own. */
  const expectOneJobPerTick = async (id: number) => {
    const runs = await runsOf(id);
    const first = runs[0]!.fire_at.getTime();
    expect(runs.map((r) => r.fire_at.getTime() - first)).toEqual(runs.map((_, i) => i * 1000));
    const jobs = await jobsOf(id);
    expect(jobs.map((j) => j.id)).toEqual(runs.map((r) => r.job_id).sort((a, b) => a! - b!));
    expect(jobs.map((j) => j.scheduled_for).sort()).toEqual(runs.map((r) => r.fire_at.toISOString()));
    return runs;
  };

  beforeAll(async () => {
    cluster = await createCluster();
    const api = await cluster.start("api", { services: "api" });
    schedulers = await Promise.all(["s1", "s2", "s3"].map((name) => cluster.start(name, { services: "scheduler" })));
    await cluster.ready(api);
    await cluster.waitForNodes(4);
  }, 90_000);

  afterAll(() => cluster?.cleanup(), 60_000);

  it("three scheduler nodes fire a schedule ticking every second once per tick: one job each, no gaps", async () => {
    const id = await everySecond();
    await waitFor(async () => ((await runsOf(id)).length >= 6 ? true : undefined), 20_000, "six ticks fired");
    await pause(id);
    const runs = await expectOneJobPerTick(id);
    const byNode = new Map<string, number>();
    for (const r of runs) byNode.set(r.node_id, (byNode.get(r.node_id) ?? 0) + 1);
    console.log(`schedules: ${runs.length} ticks fired, by node: ${JSON.stringify(Object.fromEntries(byNode))}`);
    expect([...byNode.keys()].every((n) => schedulers.some((s) => s.name === n))).toBe(true);
  }, 60_000);

  it("a node SIGKILLed mid-tick rolls its tick back, and another node fires that tick exactly once", async () => {
    const id = await everySecond();
    await waitFor(async () => ((await runsOf(id)).length >= 2 ? true : undefined), 20_000, "two ticks fired");
    // The tick's transaction claims the schedule row, then inserts its job: with the jobs table
    // locked, the node that claimed the next tick waits there, inside its transaction.
    const blocked = await cluster.withClient(async (lock) => {
      await lock.query("BEGIN");
      await lock.query("LOCK TABLE jobs IN EXCLUSIVE MODE");
      // A backend waiting for a lock on jobs (pg reports the statement it waits in only once it
      // runs: the lock is taken while the INSERT is parsed).
      const waiting = await waitFor(
        async () => {
          const { rows } = await lock.query<{ app: string }>(
            `SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE NOT l.granted AND l.relation = 'jobs'::regclass AND a.datname = current_database()`,
          );
          const ticks = rows.filter((r) => schedulers.some((s) => r.app.startsWith(`sluice:${s.name}:`)));
          return ticks.length > 0 ? ticks : undefined;
        },
        10_000,
        "a tick waiting on the jobs lock",
      );
      // Only the node holding the schedule row gets that far: the others skip the locked row.
      expect(waiting).toHaveLength(1);
      const victim = schedulers.find((s) => waiting[0]!.app.startsWith(`sluice:${s.name}:`))!;
      expect(victim).toBeDefined();
      // The tick it holds: the schedule's committed next run.
      const { rows } = await lock.query<{ next_run_at: Date }>("SELECT next_run_at FROM schedules WHERE id = $1", [id]);
      const tick = rows[0]!.next_run_at;
      victim.kill();
      await new Promise<void>((resolve) =>
        victim.child.exitCode !== null || victim.child.signalCode !== null ? resolve() : victim.child.once("exit", () => resolve()),
      );
      // Its transaction still holds the schedule row: no other node has fired that tick.
      const early = await lock.query("SELECT 1 FROM schedule_runs WHERE schedule_id = $1 AND fire_at = $2", [id, tick]);
      expect(early.rowCount).toBe(0);
      await lock.query("ROLLBACK");
      return { victim, tick };
    });

    // Postgres rolls the dead node's transaction back once it finds the client gone; another node fires the tick.
    const run = await waitFor(
      async () => (await runsOf(id)).find((r) => r.fire_at.getTime() === blocked.tick.getTime()),
      20_000,
      `the tick at ${blocked.tick.toISOString()} fired by another node`,
    );
    expect(run.node_id).not.toBe(blocked.victim.name);
    expect(schedulers.filter((s) => s !== blocked.victim).map((s) => s.name)).toContain(run.node_id);
    // And the ticks after it, caught up within the grace; then stop it.
    await waitFor(
      async () => ((await runsOf(id)).some((r) => r.fire_at.getTime() >= blocked.tick.getTime() + 2000) ? true : undefined),
      20_000,
      "two more ticks",
    );
    await pause(id);
    const runs = await expectOneJobPerTick(id);
    const jobs = await jobsOf(id);
    expect(jobs.filter((j) => j.scheduled_for === blocked.tick.toISOString())).toHaveLength(1);
    console.log(
      `schedules: killed ${blocked.victim.name} mid-tick (${blocked.tick.toISOString()}); ${run.node_id} fired it; ${runs.length} ticks, one job each`,
    );
  }, 90_000);
});
