// The adaptive rate's state shared in Redis: two nodes' controllers are one.
import { initialState, onSuccess, onThrottle } from "../../lib/throttle/adaptive-rate";
import { redisAdaptiveStore, type AdaptiveStore } from "../../lib/throttle/adaptive-store";
import { describeWithServers } from "../support/env";

const BOUNDS = { minRate: 0.5, maxRate: 10_000 };

describeWithServers(["REDIS_URL"], "adaptive rate state in Redis", () => {
  const key = `sluice:test:${process.pid}:${Date.now()}:adaptive`;
  let a: AdaptiveStore;
  let b: AdaptiveStore;

  beforeAll(() => {
    a = redisAdaptiveStore(process.env.REDIS_URL!, key, initialState(1, 0));
    b = redisAdaptiveStore(process.env.REDIS_URL!, key, initialState(1, 0));
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it("applies every node's outcomes to one state, none lost to a race", async () => {
    // 40 successes at once from each of two nodes: slow start adds 1 per success.
    await Promise.all(Array.from({ length: 80 }, (_, i) => (i % 2 ? a : b).update((s) => onSuccess(s, BOUNDS, 500))));
    const seen = await a.update((s) => s);
    expect(seen.rate).toBe(81);
    expect((await b.update((s) => s)).rate).toBe(81);
  });

  it("a throttle seen by one node cuts and pauses the other", async () => {
    await a.update((s) => onThrottle(s, BOUNDS, 900, 2_000));
    const other = await b.update((s) => s);
    expect(other.pausedUntil).toBe(2_900);
    expect(other.rMax).not.toBeNull();
    expect(other.rate).toBeLessThan(81);
  });
});
