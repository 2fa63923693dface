// Boot step "budget": every database connection of this process holds one of DB_BUDGET
// cluster-wide connection slots, the pool is sized to this node's share of the budget, and with
// DB_RATE every operation also passes the cluster-wide `db` rate.
import pg from "pg";
import { QueryTypes } from "sequelize";
import { shareOf } from "../throttle/budget";
import { Semaphore } from "../throttle/semaphore";
import type { LimiterHub, LimitSpec } from "../throttle";
import type { Config } from "./config";
import { slowPermitsFor, type Database } from "./database";
import { budgetConnections, CONNECTION_HANDOVER_DELAY_MS, gateConnections, type GateObserver } from "./db";
import { DB_CONNECTIONS_RESOURCE, DB_RESOURCE } from "./names";

type Log = { warn(msg: string): void };
type Query = (sql: string, params: unknown[]) => Promise<{ pid: number; name: string }[]>;

/**
 * The db:connections limit. A slot whose holder stopped renewing comes back only once Postgres
 * no longer lists that holder's connections. A holder still in the cluster (cut off from Redis,
 * not from Postgres) keeps them; one that has left has its connections ended here.
 */
export function connectionSlots(config: Config, database: Database, absent: (holder: string) => boolean, log: Log): LimitSpec {
  const check = async (holders: string[], query: Query) => {
    const rows = await query("SELECT pid, application_name AS name FROM pg_stat_activity WHERE application_name = ANY($1)", [holders]);
    for (const r of rows.filter((r) => absent(r.name))) {
      log.warn(`Ending connection ${r.pid} of ${r.name}: its slots expired and it has left the cluster`);
      await query("SELECT pg_terminate_backend($1)", [r.pid]);
    }
    const open = new Set(rows.map((r) => r.name));
    return holders.filter((h) => !open.has(h));
  };
  return {
    maxConcurrent: config.db.budget,
    rate: null,
    checked: {
      absent,
      async gone(holders, own) {
        if (!own)
          return check(holders, (sql, bind) => database.db.query<{ pid: number; name: string }>(sql, { bind, type: QueryTypes.SELECT }));
        // `own`: this check holds a slot of its own, so it may open a connection outside the pool.
        const client = new pg.Client({ connectionString: database.url, application_name: database.holder });
        await client.connect();
        try {
          return await check(holders, async (sql, params) => (await client.query<{ pid: number; name: string }>(sql, params)).rows);
        } finally {
          await client.end();
        }
      },
    },
  };
}

/** With DB_RATE, each operation also takes a slot of the `db` limiter, whose rate spaces operations across the cluster (a batch is one operation). */
export function gateOperations(config: Config, database: Database, limits: LimiterHub, observer?: GateObserver): void {
  const dbRate = config.db.rate;
  gateConnections(database.db, {
    observer,
    acquire: async (slow) => {
      const lane = slow ? await database.slowGate.acquire() : null;
      let permit: () => void;
      try {
        permit = await database.gate.acquire();
      } catch (err) {
        lane?.();
        throw err;
      }
      const both = () => {
        permit();
        lane?.();
      };
      if (!dbRate) return both;
      try {
        const slot = await limits.hold(DB_RESOURCE, { maxConcurrent: config.db.budget, rate: dbRate });
        return () => {
          slot();
          both();
        };
      } catch (err) {
        both();
        throw err;
      }
    },
  });
}

export interface PoolBudget {
  /** Jobs running on this node at once: each holds a connection for its whole transaction. */
  jobPermits: Semaphore;
  /** Resizes this node's pool to its share of DB_BUDGET for the current membership. */
  rebalance: () => void;
  /** Runs `fn` (the migration) under a connection slot of its own: its connection counts too. */
  withSlot<T>(fn: () => Promise<T>): Promise<T>;
}

/** `members()`: the nodes that share the budget. Embedded mode has no budget: one pooled connection. */
export function budgetPool(
  config: Config,
  database: Database,
  limits: LimiterHub,
  slots: LimitSpec,
  members: () => string[],
  nodeId: string,
): PoolBudget {
  const hold = () => limits.hold(DB_CONNECTIONS_RESOURCE, slots);
  const pool = config.databaseUrl ? budgetConnections(database.db, database.gate, hold) : null;
  // One connection stays free of job transactions (for heartbeats, progress and reads), where
  // there are two or more.
  const jobPermitsFor = (poolSize: number) => Math.max(1, Math.min(config.jobs.concurrency, poolSize - 1));
  const jobPermits = new Semaphore("jobs", jobPermitsFor(database.poolMax), Number.MAX_SAFE_INTEGER);
  return {
    jobPermits,
    rebalance() {
      if (!pool) return;
      // At least one: with more nodes than DB_BUDGET, the cluster-wide slots make the extra nodes wait.
      const size = Math.max(1, Math.min(config.db.nodeConcurrency, shareOf(config.db.budget, members(), nodeId)));
      pool.resize(size);
      jobPermits.setLimit(jobPermitsFor(size));
      database.slowGate.setLimit(slowPermitsFor(size));
    },
    async withSlot(fn) {
      if (!pool) return fn();
      const release = await hold();
      try {
        return await fn();
      } finally {
        setTimeout(release, CONNECTION_HANDOVER_DELAY_MS);
      }
    },
  };
}
