// The servers the benchmark uses: each probed once (a part whose server is down is skipped), and
// the limiter keys a run leaves on Redis deleted afterwards.
import IORedis from "ioredis";
import { connect as natsConnect } from "nats";
import pg from "pg";
import { deleteRedisKeys } from "../../fixtures/namespace-cleanup";
import { log } from "../support";
import { ADMIN_DATABASE_URL, NATS_URL, REDIS_URL } from "./settings";

async function reachable(what: string, probe: () => Promise<void>): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (err) {
    log(`  ${what} unreachable (${(err as Error).message}): its part is skipped`);
    return false;
  }
}

export const probeRedis = () =>
  reachable(`Redis at ${REDIS_URL}`, async () => {
    const r = new IORedis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2_000 });
    r.on("error", () => {});
    try {
      await r.connect();
      await r.ping();
    } finally {
      r.disconnect();
    }
  });

export const probePostgres = () =>
  reachable(`Postgres at ${ADMIN_DATABASE_URL}`, async () => {
    const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 2_000 });
    await c.connect();
    await c.end();
  });

export const probeNats = () =>
  reachable(`NATS at ${NATS_URL}`, async () => {
    const nc = await natsConnect({ servers: NATS_URL, timeout: 2_000, reconnect: false });
    await nc.close();
  });

/** Deletes the Redis keys (Bottleneck's and the leases') of every limiter whose id starts with `prefix`. */
/** Deletes the Redis keys (Bottleneck's b_<id> and the leases' <prefix>lease:…) of every limiter whose id starts with `prefix`. */
export const deleteLimiterKeys = (prefix: string): Promise<number> => deleteRedisKeys(REDIS_URL, `*${prefix}*`);
