// The embedded PGlite runs no autovacuum: Sluice does its work there (models/maintenance.ts).
// Without it the frontier is never analyzed, and every lease sorts the whole queue.
import type { Sluice } from "../../runtime";
import { autovacuumStandIn } from "../../models/maintenance";
import { startEmbedded, waitFor } from "../support/env";

describe("the embedded database's autovacuum stand-in", () => {
  let sluice: Sluice;
  const query = async <T>(sql: string): Promise<T[]> => (await sluice.db.query(sql))[0] as T[];
  const stats = async () =>
    (
      await query<{ last_analyze: string | null; last_vacuum: string | null; dead: number }>(
        "SELECT last_analyze, last_vacuum, n_dead_tup::int AS dead FROM pg_stat_user_tables WHERE relname = 'crawl_urls'",
      )
    )[0]!;
  // How many queued URLs the planner expects: with no statistics it guesses a handful, and
  // plans the lease's pick for a handful (a sort of the whole queue).
  const queuedEstimate = async () => {
    const [top] = await query<{ "QUERY PLAN": string }>("EXPLAIN SELECT 1 FROM crawl_urls WHERE state = 'queued'");
    return Number(/rows=(\d+)/.exec(top!["QUERY PLAN"])![1]);
  };

  beforeAll(async () => {
    sluice = await startEmbedded();
  });
  afterAll(() => sluice?.stop());

  it("analyzes a frontier that grew, on its own, so the planner knows how large the queue is", async () => {
    // A paused crawl: nothing leases its URLs while the test looks.
    await query(
      "INSERT INTO crawls (url, status, max_pages, max_depth, paused) VALUES ('http://127.0.0.1:9/', 'running', 100000, 5, true)",
    );
    const inserted = new Date();
    await query(`INSERT INTO crawl_urls (crawl_id, url, depth, state)
                 SELECT (SELECT max(id) FROM crawls), 'http://127.0.0.1:9/p' || g, 1 + g % 4, 'queued' FROM generate_series(1, 20000) g`);
    const guessed = await queuedEstimate();
    await waitFor(
      async () => {
        const { last_analyze } = await stats();
        return last_analyze !== null && new Date(last_analyze) >= inserted ? true : undefined;
      },
      40_000,
      "crawl_urls to be analyzed",
    );
    const estimated = await queuedEstimate();
    console.log(`queued URLs the planner expects: ${guessed} before the stand-in's ANALYZE, ${estimated} after (20,000 queued)`);
    expect(guessed).toBeLessThan(2_000);
    expect(estimated).toBeGreaterThan(15_000);
  }, 60_000);

  it("vacuums a table whose dead rows pass autovacuum's threshold, and leaves one that does not", async () => {
    const before = (await stats()).last_vacuum;
    await query("UPDATE crawl_urls SET attempts = attempts + 1");
    // Postgres reports a backend's counts a moment after its transaction; the timer may vacuum first.
    await waitFor(
      async () => ((await stats()).dead > 10_000 || (await stats()).last_vacuum !== before ? true : undefined),
      10_000,
      "the update's dead rows to be counted",
    );
    await waitFor(
      async () => {
        await autovacuumStandIn(sluice.db);
        const now = await stats();
        return now.last_vacuum !== before && now.dead < 100 ? true : undefined;
      },
      30_000,
      "crawl_urls to be vacuumed",
    );
    // Nothing changed since: nothing to do for it.
    expect((await autovacuumStandIn(sluice.db)).filter((t) => t.endsWith(" crawl_urls"))).toEqual([]);
  });
});
