// Part 1: what one throttled operation costs, against an unthrottled `await noop()` in the same mode.
import { performance } from "node:perf_hooks";
import { LimiterHub } from "../../lib/throttle";
import { Semaphore } from "../../lib/throttle/semaphore";
import { log, median } from "../support";
import { deleteLimiterKeys } from "./servers";
import { BOTTLENECK_OPS, DB_BUDGET, OPS, QUEUE_MAX, quiet, REDIS_URL, RUN_ID } from "./settings";

type Op = () => Promise<unknown>;
const noop = async (): Promise<void> => {};

/** µs per operation, one operation at a time. */
async function sequential(n: number, op: Op): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await op();
  return ((performance.now() - t0) * 1000) / n;
}

/** µs per operation, `chunk` operations started at once, chunk after chunk (default: all n at once). */
async function burst(n: number, op: Op, chunk = n): Promise<number> {
  const t0 = performance.now();
  for (let done = 0; done < n; done += chunk) {
    await Promise.all(Array.from({ length: Math.min(chunk, n - done) }, op));
  }
  return ((performance.now() - t0) * 1000) / n;
}

/** Median of `passes` passes after one warm-up pass (JIT): the cheap measurements are noisy. */
export async function medianPass(passes: number, pass: () => Promise<number>): Promise<number> {
  await pass();
  const xs: number[] = [];
  for (let i = 0; i < passes; i++) xs.push(await pass());
  return median(xs);
}

export interface CostRow {
  throttle: string;
  mode: "sequential" | "burst" | "bursts of queue max";
  ops: number;
  usPerOp: number;
  /** µs/op ÷ the unthrottled µs/op of the same mode. */
  ratio: number;
  overheadUs: number;
}

export async function measureCosts(redisOk: boolean): Promise<{ rows: CostRow[]; skipped: string[] }> {
  const rows: CostRow[] = [];
  const skipped: string[] = [];
  const base: Record<CostRow["mode"], number> = {
    sequential: await medianPass(5, () => sequential(OPS, noop)),
    burst: await medianPass(5, () => burst(OPS, noop)),
    "bursts of queue max": await medianPass(5, () => burst(OPS, noop, QUEUE_MAX)),
  };
  const add = (throttle: string, mode: CostRow["mode"], ops: number, usPerOp: number) =>
    rows.push({ throttle, mode, ops, usPerOp, ratio: usPerOp / base[mode], overheadUs: usPerOp - base[mode] });
  for (const mode of Object.keys(base) as CostRow["mode"][]) add("unthrottled (await noop())", mode, OPS, base[mode]);
  log(
    `  unthrottled: ${Object.values(base)
      .map((v) => v.toFixed(3))
      .join(" / ")} µs/op`,
  );

  // The bulkhead as runtime.ts builds it: limit = the pool size, a queue that admits the whole burst.
  const sem = new Semaphore("bench", DB_BUDGET, OPS);
  const semOp = () => sem.run(noop);
  add(`Semaphore.run (limit ${DB_BUDGET})`, "sequential", OPS, await medianPass(5, () => sequential(OPS, semOp)));
  add(`Semaphore.run (limit ${DB_BUDGET})`, "burst", OPS, await medianPass(5, () => burst(OPS, semOp)));
  add(`Semaphore.run (limit ${DB_BUDGET})`, "bursts of queue max", OPS, await medianPass(5, () => burst(OPS, semOp, QUEUE_MAX)));
  if (sem.stats().rejected > 0) throw new Error("the semaphore rejected operations: its queue is too small for the burst");
  log(`  semaphore done`);

  const spec = { maxConcurrent: DB_BUDGET, rate: null };
  // maxConcurrent is held by leased slots (in memory, or on Redis with two scripts per operation).
  const hubs: [string, string | null][] = [["slots in memory", null]];
  if (redisOk) hubs.push(["slots leased on Redis", REDIS_URL]);
  else skipped.push("slots leased on Redis (Redis unreachable)");
  for (const [label, url] of hubs) {
    const prefix = `bench-throttle:${RUN_ID}:`;
    const hub = new LimiterHub(url, prefix, () => 1, quiet);
    try {
      await hub.ready();
      const limiter = hub.limiter("bench", spec);
      const op = () => limiter.schedule(noop);
      await sequential(20, op);
      const name = `LimiterHub ${label} (maxConcurrent ${DB_BUDGET})`;
      add(name, "sequential", BOTTLENECK_OPS, await sequential(BOTTLENECK_OPS, op));
      add(name, "burst", BOTTLENECK_OPS, await burst(BOTTLENECK_OPS, op));
      if (url && !hub.redisReady) throw new Error("the Redis limiter fell back to its local share during the measurement");
      log(`  ${label} done`);
    } finally {
      await hub.stop();
      if (url) await deleteLimiterKeys(prefix);
    }
  }
  return { rows, skipped };
}
