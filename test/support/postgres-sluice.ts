// A Sluice on a fresh database of the real Postgres, with a client of the test's own on that
// database: the suites that check what the API wrote against the tables themselves.
import pg from "pg";
import type { ScratchDatabase } from "../../fixtures/scratch-db";
import type { Sluice } from "../../runtime";
import { createTestDatabase, startEmbedded } from "./env";

export interface PostgresSluice {
  db: ScratchDatabase;
  sluice: Sluice;
  /** Counts and checks with a client of the test's own, not through the API under test. */
  direct: pg.Client;
}

/** Starts a Sluice with `env` on a fresh database and connects a client to it; on a failure, drops what it made. */
export async function startPostgresSluice(env: Record<string, string> = {}): Promise<PostgresSluice> {
  const db = await createTestDatabase();
  let sluice: Sluice | undefined;
  try {
    sluice = await startEmbedded({ DATABASE_URL: db.url, ...env });
    const direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    return { db, sluice, direct };
  } catch (err) {
    await sluice?.stop();
    await db.drop();
    throw err;
  }
}

/** Closes the client, stops the Sluice and drops the database: each of them that was started. */
export async function stopPostgresSluice({ db, sluice, direct }: Partial<PostgresSluice>): Promise<void> {
  await direct?.end();
  await sluice?.stop();
  await db?.drop();
}
