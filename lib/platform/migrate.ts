import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { Umzug } from "umzug";

export const MIGRATIONS_DIR = path.join(__dirname, "..", "..", "migrations");
// One advisory lock key for the whole schema: two processes that boot together serialise here,
// and the second finds every migration already applied.
export const MIGRATION_LOCK_KEY = 0x51_1c_e0_01;

/** Applies pending SQL migrations in one transaction under an advisory lock. Returns their names. */
export async function migrate(databaseUrl: string, appName: string, log: (msg: string) => void = () => {}): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: appName });
  await client.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
    await client.query(
      "CREATE TABLE IF NOT EXISTS sluice_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const umzug = new Umzug({
      migrations: fs
        .readdirSync(MIGRATIONS_DIR)
        .filter((f) => f.endsWith(".sql"))
        .sort()
        .map((file) => ({
          name: file,
          up: async () => {
            await client.query(fs.readFileSync(path.join(MIGRATIONS_DIR, file), "utf8"));
          },
        })),
      storage: {
        executed: async () => (await client.query<{ name: string }>("SELECT name FROM sluice_migrations")).rows.map((r) => r.name),
        logMigration: async ({ name }) => {
          await client.query("INSERT INTO sluice_migrations (name) VALUES ($1)", [name]);
        },
        unlogMigration: async ({ name }) => {
          await client.query("DELETE FROM sluice_migrations WHERE name = $1", [name]);
        },
      },
      logger: undefined,
    });
    const applied = await umzug.up();
    await client.query("COMMIT");
    for (const m of applied) log(`migration applied: ${m.name}`);
    return applied.map((m) => m.name);
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}
