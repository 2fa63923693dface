// `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded database).
import path from "node:path";
import { loadConfig } from "../lib/config";
import { applicationName } from "../lib/db";
import { startEmbeddedPostgres } from "../lib/embedded-pg";
import { migrate } from "../lib/migrate";

async function main(): Promise<void> {
  const config = loadConfig();
  const embedded = config.databaseUrl ? null : await startEmbeddedPostgres(path.join(config.dataDir, "pglite"), 2);
  try {
    const applied = await migrate(config.databaseUrl ?? embedded!.url, applicationName(config.nodeId, "migrate"), console.log);
    console.log(applied.length ? `${applied.length} migration(s) applied` : "schema is up to date");
  } finally {
    await embedded?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
