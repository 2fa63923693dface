// One suite, two backends: the same limiter tests on Bottleneck's in-memory store and clustered
// on real Redis (where two hubs stand for two nodes sharing the limits).
import IORedis from "ioredis";
import { LimiterHub } from "../../lib/throttle";
import { REQUIRE_SERVICES } from "../support/env";

const REDIS_URL = process.env.REDIS_URL;
const quiet = { warn: () => {}, info: () => {} };
const backends: [string, string | null][] = [["in-memory", null]];
if (REDIS_URL) backends.push(["Redis", REDIS_URL]);
else if (REQUIRE_SERVICES) throw new Error("REQUIRE_SERVICES=1 but REDIS_URL is not set");

describe.each(backends)("limiter on %s", (_name, redisUrl) => {
  const prefix = `sluice:test${process.pid}${Math.random().toString(36).slice(2, 6)}:`;
  const hubs: LimiterHub[] = [];
  const hub = () => {
    const h = new LimiterHub(redisUrl, prefix, () => 1, quiet);
    hubs.push(h);
    return h;
  };
  // Two nodes when clustered; in memory a node only limits itself.
  let nodes: LimiterHub[] = [];

  beforeAll(async () => {
    nodes = redisUrl ? [hub(), hub()] : [hub()];
    await Promise.all(nodes.map((h) => h.ready()));
  });
  afterAll(async () => {
    await Promise.all(hubs.map((h) => h.stop()));
    if (redisUrl) {
      const r = new IORedis(redisUrl);
      const keys = await r.keys(`b_${prefix}*`);
      if (keys.length) await r.del(...keys);
      r.disconnect();
    }
  });

  it("holds maxConcurrent across every node", async () => {
    let running = 0;
    let peak = 0;
    const work = () =>
      new Promise<void>((resolve) => {
        running++;
        peak = Math.max(peak, running);
        setTimeout(() => {
          running--;
          resolve();
        }, 10);
      });
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => nodes[i % nodes.length]!.limiter("conc", { maxConcurrent: 3, rate: null }).schedule(work)),
    );
    expect(peak).toBe(3);
    expect(nodes[0]!.limiter("conc", { maxConcurrent: 3, rate: null }).stats()).toMatchObject({
      clustered: redisUrl !== null,
      fallback: false,
    });
  });

  it("holds a rate written as Celery writes it: never more starts in any second, at >= 85% of it", async () => {
    const starts: number[] = [];
    const spec = { maxConcurrent: null, rate: { count: 20, perMs: 1000 } };
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        nodes[i % nodes.length]!.limiter("rate", spec).schedule(async () => void starts.push(Date.now())),
      ),
    );
    starts.sort((a, b) => a - b);
    let maxInWindow = 0;
    for (let i = 0, j = 0; i < starts.length; i++) {
      while (starts[i]! - starts[j]! >= 1000) j++;
      maxInWindow = Math.max(maxInWindow, i - j + 1);
    }
    expect(maxInWindow).toBeLessThanOrEqual(20);
    const mean = (starts.length - 1) / ((starts.at(-1)! - starts[0]!) / 1000);
    expect(mean).toBeGreaterThanOrEqual(0.85 * 20);
    expect(mean).toBeLessThanOrEqual(20);
  });

  it("hold() keeps a slot until released, and a runtime change applies to every node", async () => {
    const spec = { maxConcurrent: 2, rate: null };
    const a = await nodes[0]!.hold("slots", spec);
    const b = await nodes.at(-1)!.hold("slots", spec);
    let third = false;
    const pending = nodes[0]!.hold("slots", spec).then((release) => ((third = true), release));
    await new Promise((r) => setTimeout(r, 300));
    expect(third).toBe(false);
    a();
    (await pending)();
    expect(third).toBe(true);
    b();

    await nodes[0]!.update("slots", { maxConcurrent: 1 });
    for (const n of nodes) await n.update("slots", { maxConcurrent: 1 });
    const one = await nodes[0]!.hold("slots", spec);
    let two = false;
    const next = nodes
      .at(-1)!
      .hold("slots", spec)
      .then((release) => ((two = true), release));
    await new Promise((r) => setTimeout(r, 300));
    expect(two).toBe(false);
    one();
    (await next)();
  });
});
