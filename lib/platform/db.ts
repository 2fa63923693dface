import pg from "pg";
import { Sequelize } from "sequelize";
import { AsyncLocalStorage } from "node:async_hooks";
import { performance } from "node:perf_hooks";

// Work that may hold a connection for long (a job's transaction, maintenance, searches) runs in
// the slow lane: it takes at most all connections but one, so quick reads never wait behind it.
const slowLane = new AsyncLocalStorage<true>();

/** Runs `fn` in the slow lane: every connection it checks out counts against the slow work's share. */
export function inSlowLane<T>(fn: () => Promise<T>): Promise<T> {
  return slowLane.run(true, fn);
}

/** `fn` in the slow lane when `slow` (a search, say, but not a plain page read). */
export function inSlowLaneIf<T>(slow: boolean, fn: () => Promise<T>): Promise<T> {
  return slow ? inSlowLane(fn) : fn();
}

// int8 (bigint ids, count(*)) arrives as a string by default. Every such value here is far below
// 2^53, so numbers are both safe and what the API promises.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

// Postgres keeps the first 63 bytes of application_name.
const APPLICATION_NAME_MAX_BYTES = 63;

/**
 * `sluice:<nodeID>:<instance>`: what this process's Postgres connections are listed as, and the
 * name its throttle slots are leased under. The instance tells a restarted node (same nodeID)
 * from the process it replaces, so a check of pg_stat_activity finds one process exactly.
 */
export function applicationName(nodeId: string, instance: string): string {
  let node = nodeId;
  while (Buffer.byteLength(`sluice:${node}:${instance}`) > APPLICATION_NAME_MAX_BYTES) node = node.slice(0, -1);
  return `sluice:${node}:${instance}`;
}

export function openSequelize(url: string, appName: string, poolMax: number): Sequelize {
  return new Sequelize(url, {
    dialect: "postgres",
    logging: false,
    dialectOptions: { application_name: appName },
    // Idle connections are closed so a quiet node gives its share back.
    pool: { max: poolMax, min: 0, idle: 10_000, acquire: 30_000, evict: 1_000 },
  });
}

interface ConnectionManager {
  getConnection(options?: object): Promise<object>;
  releaseConnection(connection: object): void;
  destroyConnection(connection: object): Promise<void>;
}

/** What the bulkhead's permits cost, in seconds: the wait for one, and how long it was held (the metrics). */
export interface GateObserver {
  waited(seconds: number, slow: boolean): void;
  held(seconds: number, slow: boolean): void;
}

/**
 * Puts the per-node bulkhead in front of every database operation. Every query and every
 * transaction of this Sequelize instance (moleculer-db's included) checks a connection out of
 * the pool; the check-out waits for a permit, and the permit returns with the connection. So
 * nothing reaches Postgres around the throttle, and a transaction holds one permit throughout.
 */
export function gateConnections(db: Sequelize, gate: { acquire(slow: boolean): Promise<() => void>; observer?: GateObserver }): void {
  const cm = db.connectionManager as unknown as ConnectionManager;
  const permits = new WeakMap<object, () => void>();
  const get = cm.getConnection.bind(cm);
  const release = cm.releaseConnection.bind(cm);
  const destroy = cm.destroyConnection.bind(cm);
  const giveBack = (connection: object) => {
    permits.get(connection)?.();
    permits.delete(connection);
  };
  cm.getConnection = async (options) => {
    const slow = slowLane.getStore() === true;
    const asked = performance.now();
    const granted = await gate.acquire(slow);
    const got = performance.now();
    gate.observer?.waited((got - asked) / 1000, slow);
    const permit = () => {
      granted();
      gate.observer?.held((performance.now() - got) / 1000, slow);
    };
    try {
      const connection = await get(options);
      permits.set(connection, permit);
      return connection;
    } catch (err) {
      permit();
      throw err;
    }
  };
  cm.releaseConnection = (connection) => {
    try {
      release(connection);
    } finally {
      giveBack(connection);
    }
  };
  cm.destroyConnection = async (connection) => {
    try {
      await destroy(connection);
    } finally {
      giveBack(connection);
    }
  };
}

interface PoolInternals {
  size: number;
  _factory: { max: number };
  _availableObjects: { resource: object }[];
  destroy(resource: object): Promise<void>;
}

// After a connection closes, its slot is handed on only after this long, so that the server has
// removed the old backend before another node opens a new one (pg_stat_activity never shows both).
export const CONNECTION_HANDOVER_DELAY_MS = 50;

/**
 * Ties every pooled connection to a cluster-wide slot: a slot is taken before the connection
 * opens and given back after it has closed. `resize` sets the pool's size (this node's share of
 * the budget) and closes idle connections above it at once; busy ones close when released.
 */
export function budgetConnections(
  db: Sequelize,
  gate: { setLimit(n: number): void },
  hold: () => Promise<() => void>,
): { resize(max: number): void } {
  const cm = db.connectionManager as unknown as ConnectionManager & {
    pool: PoolInternals;
    _connect(config: object): Promise<object>;
    _disconnect(connection: object): Promise<void>;
  };
  const slots = new WeakMap<object, () => void>();
  const connect = cm._connect.bind(cm);
  const disconnect = cm._disconnect.bind(cm);
  cm._connect = async (config) => {
    const release = await hold();
    try {
      const connection = await connect(config);
      slots.set(connection, release);
      return connection;
    } catch (err) {
      release();
      throw err;
    }
  };
  cm._disconnect = async (connection) => {
    try {
      await disconnect(connection);
    } finally {
      const release = slots.get(connection);
      slots.delete(connection);
      if (release) setTimeout(release, CONNECTION_HANDOVER_DELAY_MS);
    }
  };
  const trim = () => {
    const pool = cm.pool;
    while (pool.size > pool._factory.max && pool._availableObjects.length > 0) {
      // Not awaited: trimming runs inside a release; a connection that fails to close is gone anyway.
      void pool.destroy(pool._availableObjects[0]!.resource).catch(() => {});
    }
  };
  const release = cm.releaseConnection.bind(cm);
  cm.releaseConnection = (connection) => {
    release(connection);
    trim();
  };
  return {
    resize(max: number) {
      cm.pool._factory.max = max;
      gate.setLimit(max);
      trim();
    },
  };
}
