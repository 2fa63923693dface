// Boot step "database": the Postgres this process uses (embedded PGlite unless DATABASE_URL is
// set), its name in pg_stat_activity, one shared Sequelize pool and the bulkhead in front of it.
import crypto from "node:crypto";
import path from "node:path";
import type { Sequelize } from "sequelize";
import { Semaphore } from "../throttle/semaphore";
import type { Config } from "./config";
import { applicationName, openSequelize } from "./db";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "./embedded-pg";

export interface Database {
  /** The connection string every client of this process uses (the embedded server's, if any). */
  url: string;
  embedded: EmbeddedPostgres | null;
  /** This process as a holder: its connections' application_name and its leases' holder. */
  holder: string;
  db: Sequelize;
  /** As many permits as pooled connections: waiting happens in the bulkhead's bounded queue, never in the pool's (which times out after 30 s). */
  gate: Semaphore;
  /** Slow work's permits (lib/platform/db.ts inSlowLane): all connections but one, where there are two. */
  slowGate: Semaphore;
  /** The pool's size before the budget resizes it. */
  poolMax: number;
}

/** Slow work may hold every connection but one. */
export const slowPermitsFor = (poolSize: number): number => Math.max(1, poolSize - 1);

export async function openDatabase(config: Config): Promise<Database> {
  let embedded: EmbeddedPostgres | null = null;
  let url = config.databaseUrl;
  // PGlite is one Postgres session behind a socket server that interleaves its clients'
  // protocol messages one by one: two clients mid extended-query (Parse/Bind/Execute/Sync)
  // corrupt each other's exchange and one of them waits forever. So embedded mode keeps a
  // single pooled connection; PGlite runs one query at a time anyway.
  const poolMax = url ? config.db.nodeConcurrency : 1;
  if (!url) {
    // The pool's connection, plus the migration client (which is done before the pool opens).
    embedded = await startEmbeddedPostgres(path.join(config.dataDir, "pglite"), 2);
    url = embedded.url;
  }
  // The random part tells a restarted node from the process it replaced.
  const holder = applicationName(config.nodeId, crypto.randomBytes(3).toString("hex"));
  const db = openSequelize(url, holder, poolMax);
  const gate = new Semaphore("db", poolMax, config.db.queueMax);
  return { url, embedded, holder, db, gate, slowGate: new Semaphore("db:slow", slowPermitsFor(poolMax), config.db.queueMax), poolMax };
}
