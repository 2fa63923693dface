// Where the adaptive rate's state lives: in this process, or in Redis so that every node of the
// cluster works from one controller (one rMax, one cut per burst, one Retry-After pause for all).
// A Redis update is optimistic (WATCH/MULTI): a node that lost a race re-reads and applies its
// outcome again. When Redis fails, the node goes on with its last state, alone, until it is back.
import IORedis from "ioredis";
import type { AdaptiveState } from "./adaptive-rate";

export interface AdaptiveStore {
  /** The state as last seen. */
  current(): AdaptiveState;
  /** Applies `change` to the shared state; answers the new state. */
  update(change: (s: AdaptiveState) => AdaptiveState): Promise<AdaptiveState>;
  close(): Promise<void>;
}

export function localAdaptiveStore(initial: AdaptiveState): AdaptiveStore {
  let state = initial;
  return {
    current: () => state,
    update: async (change) => (state = change(state)),
    close: async () => {},
  };
}

// Attempts at an optimistic update before the node applies its outcome to its own copy only.
const UPDATE_TRIES = 5;
// The state expires when nobody has used it for this long: a new run starts from slow start.
const STATE_TTL_S = 3600;
const REDIS_COMMAND_TIMEOUT_MS = 1_000;

export function redisAdaptiveStore(redisUrl: string, key: string, initial: AdaptiveState): AdaptiveStore {
  // Commands wait for the connection, but never long: an outcome must not wait on a Redis outage.
  const redis = new IORedis(redisUrl, { maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS, retryStrategy: () => 1000 });
  redis.on("error", () => {}); // a failed update falls back to the local copy
  let state = initial;
  // Outcomes wait here while one write is in flight, and go to Redis together in the next: one
  // writer per node, so races are between nodes only.
  let queued: { change: (s: AdaptiveState) => AdaptiveState; done: (s: AdaptiveState) => void }[] = [];
  let writing = false;

  const apply = (from: AdaptiveState, batch: typeof queued) => batch.reduce((st, q) => q.change(st), from);
  const write = async (batch: typeof queued): Promise<AdaptiveState> => {
    try {
      for (let i = 0; i < UPDATE_TRIES; i++) {
        await redis.watch(key);
        const raw = await redis.get(key);
        const next = apply(raw ? (JSON.parse(raw) as AdaptiveState) : state, batch);
        if ((await redis.multi().set(key, JSON.stringify(next), "EX", STATE_TTL_S).exec()) !== null) return next;
      }
    } catch {
      await redis.unwatch().catch(() => {});
    }
    return apply(state, batch);
  };
  const flush = async () => {
    writing = true;
    while (queued.length > 0) {
      const batch = queued;
      queued = [];
      state = await write(batch);
      for (const q of batch) q.done(state);
    }
    writing = false;
  };

  return {
    current: () => state,
    update(change) {
      return new Promise((done) => {
        queued.push({ change, done });
        if (!writing) void flush(); // settles through `done`; write never rejects (falls back to the local copy)
      });
    },
    async close() {
      redis.disconnect();
    },
  };
}
