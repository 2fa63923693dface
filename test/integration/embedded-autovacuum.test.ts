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
  const leasePlan = async () =>
    (
      await query<{ "QUERY PLAN": string }>(
        `EXPLAIN SELECT u.crawl_id, u.url FROM crawl_urls u WHERE u.state = 'queued' ORDER BY u.depth, u.crawl_id LIMIT 64`,
      )
    )
      .map((r) => r["QUERY PLAN"])
      .join("\n");

  beforeAll(async () => {
    sluice = await startEmbedded();
  });
  afterAll(() => sluice?.stop());

  it("analyzes a frontier that grew, on its own, so a lease reads the queue's index instead of sorting it", async () => {
    // A paused crawl: nothing leases its URLs while the test looks.
    await query(
      "INSERT INTO crawls (url, status, max_pages, max_depth, paused) VALUES ('http://127.0.0.1:9/', 'running', 100000, 5, true)",
    );
    const inserted = new Date();
    await query(`INSERT INTO crawl_urls (crawl_id, url, depth, state)
                 SELECT (SELECT max(id) FROM crawls), 'http://127.0.0.1:9/p' || g, 1 + g % 4, 'queued' FROM generate_series(1, 20000) g`);
    await waitFor(
      async () => {
        const { last_analyze } = await stats();
        return last_analyze !== null && new Date(last_analyze) >= inserted ? true : undefined;
      },
      40_000,
      "crawl_urls to be analyzed",
    );
    expect(await leasePlan()).toContain("Index Scan using crawl_urls_queued");
    expect(await leasePlan()).not.toContain("Sort");
  }, 60_000);

  it("vacuums a table whose dead rows pass autovacuum's threshold, and leaves one that does not", async () => {
    await query("UPDATE crawl_urls SET attempts = attempts + 1");
    expect((await stats()).dead).toBeGreaterThan(10_000);
    expect(await autovacuumStandIn(sluice.db)).toContain("VACUUM crawl_urls");
    expect((await stats()).dead).toBeLessThan(100);
    expect((await stats()).last_vacuum).not.toBeNull();
    // Nothing changed since: nothing to do for it.
    expect((await autovacuumStandIn(sluice.db)).filter((t) => t.endsWith(" crawl_urls"))).toEqual([]);
  });
});
