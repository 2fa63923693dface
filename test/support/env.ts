// Test environments. Embedded tests need nothing. Suites that need real servers read
// DATABASE_URL / REDIS_URL / NATS_URL; without them they are skipped locally, but with
// REQUIRE_SERVICES=1 (CI) a missing or unreachable server fails the suite instead.
import { createScratchDatabase, type ScratchDatabase } from "../../fixtures/scratch-db";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig, type Config } from "../../lib/platform/config";
import { startSluice, type Sluice } from "../../runtime";

export const REQUIRE_SERVICES = process.env.REQUIRE_SERVICES === "1";
export const DATABASE_URL = process.env.DATABASE_URL;
export const NATS_URL = process.env.NATS_URL;

/** describe() for suites that need the named servers: skipped locally when unset, a failure in CI. */
export function describeWithServers(names: ("DATABASE_URL" | "NATS_URL" | "REDIS_URL")[], title: string, fn: () => void): void {
  const missing = names.filter((n) => !process.env[n]);
  if (missing.length === 0) return describe(title, fn);
  if (REQUIRE_SERVICES) {
    return describe(title, () => {
      it(`needs ${missing.join(", ")}`, () => {
        throw new Error(`REQUIRE_SERVICES=1 but ${missing.join(", ")} is not set`);
      });
    });
  }
  return describe.skip(`${title} (needs ${missing.join(", ")})`, fn);
}

export function tempDir(prefix = "sluice-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A config as a test wants it: ephemeral ports, quiet logs, loopback crawling allowed. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    PORT: "0",
    METRICS_PORT: "0",
    LOG_LEVEL: "warn",
    CRAWL_ALLOW_HOSTS: "127.0.0.1,localhost",
    DATA_DIR: env.DATABASE_URL ? "" : tempDir(),
    ...env,
  });
}

export async function startEmbedded(env: Record<string, string> = {}): Promise<Sluice> {
  return startSluice(testConfig(env));
}

/** A fresh database on the real server, dropped by the returned function. */
export async function createTestDatabase(): Promise<ScratchDatabase> {
  if (!DATABASE_URL) throw new Error("DATABASE_URL is not set");
  return createScratchDatabase(DATABASE_URL, "sluice_test");
}

/**
 * A Sluice with `env` on the embedded default (PGlite), or on a fresh database of the real server
 * (in CI, REQUIRE_SERVICES=1, a missing server fails here rather than skipping); `stop()` stops it
 * and drops that database.
 */
export async function startOnStore(
  embedded: boolean,
  env: Record<string, string> = {},
): Promise<{ sluice: Sluice; stop: () => Promise<void> }> {
  if (embedded) {
    const sluice = await startEmbedded(env);
    return { sluice, stop: () => sluice.stop() };
  }
  const db = await createTestDatabase();
  try {
    const sluice = await startEmbedded({ ...env, DATABASE_URL: db.url });
    const stop = async () => {
      await sluice.stop();
      await db.drop();
    };
    return { sluice, stop };
  } catch (err) {
    await db.drop();
    throw err;
  }
}

export { waitFor } from "../../fixtures/polling";
export { http, type HttpResult } from "../../fixtures/api-client";
