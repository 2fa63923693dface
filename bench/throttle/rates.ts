// Part 3: how close rate-only limiters come to their configured rate, in memory and on Redis.
import { performance } from "node:perf_hooks";
import { LimiterHub } from "../../lib/throttle";
import { log } from "../support";
import { deleteLimiterKeys } from "./servers";
import { quiet, RATE_OPS, REDIS_URL, RUN_ID } from "./settings";

export interface RateRow {
  limiter: string;
  configured: number;
  ops: number;
  observed: number;
  ratio: number;
  minGapMs: number;
  maxGapMs: number;
}

export async function measureRates(redisOk: boolean): Promise<RateRow[]> {
  const rows: RateRow[] = [];
  const backends: [string, string | null][] = [["in-memory", null]];
  if (redisOk) backends.push(["Redis", REDIS_URL]);
  for (const [label, url] of backends) {
    const prefix = `bench-rate:${RUN_ID}:`;
    const hub = new LimiterHub(url, prefix, () => 1, quiet);
    try {
      await hub.ready();
      for (const perSecond of [20, 100]) {
        const limiter = hub.limiter(`rate${perSecond}`, { maxConcurrent: null, rate: { count: perSecond, perMs: 1000 } });
        const starts: number[] = [];
        // All submitted at once: the limiter alone spaces the starts.
        await Promise.all(Array.from({ length: RATE_OPS }, () => limiter.schedule(async () => void starts.push(performance.now()))));
        const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
        const observed = (starts.length - 1) / ((starts[starts.length - 1]! - starts[0]!) / 1000);
        rows.push({
          limiter: `LimiterHub ${label}`,
          configured: perSecond,
          ops: RATE_OPS,
          observed,
          ratio: observed / perSecond,
          minGapMs: Math.min(...gaps),
          maxGapMs: Math.max(...gaps),
        });
        log(`  rate ${label} ${perSecond}/s: observed ${observed.toFixed(2)}/s`);
      }
      if (url && !hub.redisReady) throw new Error("the Redis limiter fell back to its local share during the measurement");
    } finally {
      await hub.stop();
      if (url) await deleteLimiterKeys(prefix);
    }
  }
  return rows;
}
