// Migrations are idempotent and safe when several processes boot at once.
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres } from "../../lib/platform/embedded-pg";
import { migrate } from "../../lib/platform/migrate";
import { createTestDatabase, describeWithServers, tempDir } from "../support/env";

async function tables(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const { rows } = await c.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
  await c.end();
  return rows.map((r) => r.t);
}

const EXPECTED_TABLES = [
  "calendar",
  "crawl_urls",
  "crawls",
  "dispatched_minutes",
  "id_task_slots",
  "id_tasks",
  "job_events",
  "jobs",
  "maintenance_runs",
  "page_fetches",
  "page_fetches_default",
  "pages",
  "queues",
  "rows",
  "schedule_runs",
  "schedules",
  "sluice_migrations",
  "table_counts",
  "users",
];
const MIGRATIONS = [
  "0001_init.sql",
  "0002_frontier_attempts.sql",
  "0003_rows.sql",
  "0004_crawl_jobs.sql",
  "0005_id_tasks.sql",
  "0006_console.sql",
  "0007_imports.sql",
  "0008_page_fetches.sql",
  "0009_schedules.sql",
];

describeWithServers(["DATABASE_URL"], "migrations on PostgreSQL", () => {
  it("four concurrent runs apply each migration exactly once", async () => {
    const db = await createTestDatabase();
    try {
      const results = await Promise.all([1, 2, 3, 4].map((i) => migrate(db.url, `sluice:migrate:test${i}`)));
      expect(results.flat()).toEqual(MIGRATIONS);
      expect(await tables(db.url)).toEqual(EXPECTED_TABLES);
      expect(await migrate(db.url, "sluice:migrate:again")).toEqual([]);
    } finally {
      await db.drop();
    }
  });
});

describe("migrations on embedded PGlite", () => {
  it("apply once and are a no-op when the data directory is reopened", async () => {
    const dir = path.join(tempDir(), "pglite");
    let embedded = await startEmbeddedPostgres(dir, 2);
    expect(await migrate(embedded.url, "sluice:migrate:a")).toEqual(MIGRATIONS);
    expect(await tables(embedded.url)).toEqual(EXPECTED_TABLES);
    await embedded.stop();
    embedded = await startEmbeddedPostgres(dir, 2);
    expect(await migrate(embedded.url, "sluice:migrate:b")).toEqual([]);
    await embedded.stop();
  });
});
