// Bulk-insert jobs on a real Postgres (one process, in-process queue): all or none under stops
// at random points, a pending job that never starts, and a job that fails every attempt.
import type pg from "pg";
import type { ScratchDatabase } from "../../fixtures/scratch-db";
import type { Sluice } from "../../runtime";
import { describeWithServers, http, startEmbedded, waitFor } from "../support/env";
import { startPostgresSluice, stopPostgresSluice } from "../support/postgres-sluice";
import { isFinished } from "../../fixtures/api-client";

// One job at a time, so that a second one waits (pending) while the first runs.
const env = { JOB_CONCURRENCY: "1", INSERT_BATCH_ROWS: "2000", JOB_HEARTBEAT_MS: "200" };

describeWithServers(["DATABASE_URL"], "bulk-insert jobs on Postgres", () => {
  let db: ScratchDatabase;
  let sluice: Sluice;
  let direct: pg.Client;
  let api = "";
  // Counted with a client of our own, not through the API under test.
  const count = async () => (await direct.query<{ n: number }>("SELECT count(*)::int AS n FROM rows")).rows[0]!.n;
  const job = async (id: number) => (await http(api, "GET", `/api/jobs/${id}`)).body;
  const finished = (id: number, timeoutMs = 60_000) =>
    waitFor(
      async () => {
        const j = await job(id);
        return isFinished(j.status) ? j : undefined;
      },
      timeoutMs,
      `job ${id} to finish`,
    );

  beforeAll(async () => {
    ({ db, sluice, direct } = await startPostgresSluice(env));
    api = sluice.apiUrl!;
  }, 60_000);
  afterAll(() => stopPostgresSluice({ db, sluice, direct }));

  it("a job left alone adds exactly n rows", async () => {
    const before = await count();
    const { body } = await http(api, "POST", "/api/inserts", { rows: 54_321 });
    expect(await finished(body.id)).toMatchObject({ status: "succeeded", attempts: 1, progress: { done: 54_321, total: 54_321 } });
    expect(await count()).toBe(before + 54_321);
  });

  it("stopped at 20 random points, the row count is unchanged every time", async () => {
    const outcomes: string[] = [];
    for (let i = 0; i < 20; i++) {
      const before = await count();
      const { body } = await http(api, "POST", "/api/inserts", { rows: 3_000_000 });
      // Anywhere from before the claim to deep into the insert.
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 1500)));
      const seen = await job(body.id);
      const stop = await http(api, "POST", `/api/jobs/${body.id}/stop`);
      expect(stop.status).toBe(200);
      expect(stop.body.status).toBe("cancelled");
      expect(await count()).toBe(before);
      const end = await finished(body.id);
      expect(end.status).toBe("cancelled");
      expect(await count()).toBe(before);
      outcomes.push(`${seen.status}@${seen.progress.done}`);
    }
    console.log(`stops landed at: ${outcomes.join(", ")}`);
    // The points were spread: some jobs were stopped while inserting.
    expect(outcomes.some((o) => o.startsWith("running@") && !o.endsWith("@0"))).toBe(true);
  }, 120_000);

  it("a pending job that is stopped never starts", async () => {
    const before = await count();
    const first = (await http(api, "POST", "/api/inserts", { rows: 3_000_000 })).body.id as number;
    await waitFor(async () => ((await job(first)).status === "running" ? true : undefined), 10_000, "the first job to run");
    const second = (await http(api, "POST", "/api/inserts", { rows: 1000 })).body.id as number;
    expect((await job(second)).status).toBe("pending");
    const stopped = await http(api, "POST", `/api/jobs/${second}/stop`);
    expect(stopped.body).toMatchObject({ status: "cancelled", attempts: 0 });
    expect((await http(api, "POST", `/api/jobs/${first}/stop`)).status).toBe(200);
    // The slot is free again: a job queued now runs, the stopped one never does.
    const third = (await http(api, "POST", "/api/inserts", { rows: 10 })).body.id as number;
    expect((await finished(third)).status).toBe("succeeded");
    expect(await job(second)).toMatchObject({ status: "cancelled", attempts: 0, startedAt: null, nodeId: null });
    expect(await count()).toBe(before + 10);
  }, 60_000);

  it("a node that stops mid-job hands it back; the next node to start runs it, and the attempt is not counted", async () => {
    const before = await count();
    const { body } = await http(api, "POST", "/api/inserts", { rows: 3_000_000 });
    await waitFor(async () => ((await job(body.id)).progress.done > 0 ? true : undefined), 10_000, "the job to make progress");
    await sluice.stop();
    const handedBack = (await direct.query("SELECT status, attempts, error, node_id FROM jobs WHERE id = $1", [body.id])).rows[0];
    expect(handedBack).toEqual({ status: "pending", attempts: 0, error: "handed back by a stopping node", node_id: null });
    expect(await count()).toBe(before);
    // In-process queue: the new process queues what is pending at start.
    sluice = await startEmbedded({ DATABASE_URL: db.url, ...env });
    api = sluice.apiUrl!;
    expect(await finished(body.id)).toMatchObject({ status: "succeeded", attempts: 1, error: null });
    expect(await count()).toBe(before + 3_000_000);
  }, 90_000);

  it("a job that fails every attempt ends failed, with its error, and inserts nothing", async () => {
    const before = await count();
    // Every insert now violates a constraint: the job fails on each attempt.
    await direct.query("ALTER TABLE rows ADD CONSTRAINT reject_all CHECK (value < 0) NOT VALID");
    try {
      const { body } = await http(api, "POST", "/api/inserts", { rows: 5000 });
      const end = await finished(body.id);
      expect(end).toMatchObject({ status: "failed", attempts: 3 });
      // Postgres's detail names the row it refused.
      expect(end.error).toMatch(/reject_all.*: Failing row contains \(/);
      expect(await count()).toBe(before);
    } finally {
      await direct.query("ALTER TABLE rows DROP CONSTRAINT reject_all");
    }
  }, 60_000);
});
