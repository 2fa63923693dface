// `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded database).
import path from "node:path";
import { loadConfig } from "../lib/platform/config";
import { applicationName } from "../lib/platform/db";
import { startEmbeddedPostgres } from "../lib/platform/embedded-pg";
import { migrate } from "../lib/platform/migrate";

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
