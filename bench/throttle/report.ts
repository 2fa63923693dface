// The throttle benchmark's report: one table per part, the goal's verdict, and one JSON line.
import os from "node:os";
import { formatRate } from "../../lib/throttle/rate";
import { INGEST_BATCH_SIZE, INGEST_MAX_IN_FLIGHT } from "../../services/ingestor.service";
import { median, round, table } from "../support";
import type { CostRow } from "./costs";
import type { CrawlRow } from "./crawls";
import type { DirectResult } from "./ingest";
import type { RateRow } from "./rates";
import { DB_BUDGET, DB_RATE, GOAL_SHARE, INGEST_ROUNDS, INGEST_ROWS, OPS, PAGES, QUEUE_MAX, RATE_OPS } from "./settings";

export interface Results {
  costs: CostRow[];
  ingest: DirectResult | null;
  crawls: CrawlRow[];
  rates: RateRow[];
  redisOk: boolean;
  skipped: string[];
}

export interface Verdict {
  /** "unresolved": over the goal, but fewer than 3 rounds, or some had the throttled run the faster: within the noise. */
  status: "holds" | "does not hold" | "unresolved";
  /** 1 − the median over rounds of throttled rows/s ÷ bypassed rows/s. */
  cost: number;
  perRound: number[];
}
const verdict = (ratios: number[]): Verdict => {
  const cost = 1 - median(ratios);
  const perRound = ratios.map((x) => 1 - x);
  // Over the goal is a verdict only when every round (at least 3) agrees; otherwise it is within the noise.
  const status = cost < GOAL_SHARE ? "holds" : perRound.length >= 3 && perRound.every((x) => x > 0) ? "does not hold" : "unresolved";
  return { status, cost, perRound };
};

export interface Goal {
  plain: Verdict;
  dbRate: Verdict | null;
  estimatedShare: number;
  vsBareSameSql: number;
}

const fmtUs = (us: number) => (us >= 100 ? us.toFixed(0) : us >= 1 ? us.toFixed(2) : us.toFixed(3));
const pct = (x: number, d = 1) => `${(100 * x).toFixed(d)}%`;

export function printCosts(costs: CostRow[]): void {
  console.log("");
  console.log("1. Cost per operation (µs/op; × and overhead against the unthrottled call in the same mode)");
  console.log(
    table(
      ["throttle", "mode", "ops", "µs/op", "× unthrottled", "overhead µs/op"],
      costs.map((r) => [
        r.throttle,
        r.mode === "bursts of queue max" ? `bursts of ${QUEUE_MAX}` : r.mode === "burst" ? "burst (all at once)" : r.mode,
        String(r.ops),
        fmtUs(r.usPerOp),
        r.ratio.toFixed(1),
        r.throttle.startsWith("unthrottled") ? "-" : fmtUs(r.overheadUs),
      ]),
      2,
    ),
  );

  const semBurst = costs.find((r) => r.throttle.startsWith("Semaphore") && r.mode === "burst")!;
  const semChunks = costs.find((r) => r.throttle.startsWith("Semaphore") && r.mode === "bursts of queue max")!;
  console.log(
    `  Semaphore, all ${OPS} at once: ${fmtUs(semBurst.usPerOp)} µs/op against ${fmtUs(semChunks.usPerOp)} µs/op with at most ${QUEUE_MAX} waiting. The cost per waiter grows with the queue ` +
      `(its waiting list is an array drained with shift(), which V8 copies once it holds more than ~16k entries); in production DB_QUEUE_MAX (default ${QUEUE_MAX}) caps the queue.`,
  );
  console.log(
    `  Bottleneck's in-memory store yields through setTimeout(0) (≥ 1 ms) on each of its several calls per job; on Redis each call is a script round trip. So a job costs milliseconds, and Sluice gives it only: ` +
      `a connection slot per Postgres connection opened, a fetch slot per page fetched, and with DB_RATE one slot per database operation.`,
  );
}

/** Part 1's sequential per-op costs: the Semaphore's, and a slot's (on Redis when it ran there). */
function perOpCosts(costs: CostRow[]): { semSeq: CostRow; slotUs: number } {
  const semSeq = costs.find((r) => r.throttle.startsWith("Semaphore") && r.mode === "sequential")!;
  const redisSeq = costs.find((r) => r.throttle.includes("Redis") && r.mode === "sequential");
  const memSeq = costs.find((r) => r.throttle.includes("in-memory") && r.mode === "sequential")!;
  return { semSeq, slotUs: (redisSeq ?? memSeq).usPerOp };
}

/** Prints part 2a and answers the goal's verdict, and whether the A/B was invalid. */
export function printIngest(ingest: DirectResult, costs: CostRow[]): { goal: Goal; invalid: boolean } {
  const ir = ingest.rows;
  console.log("");
  console.log(
    `2a. Direct ingest: ${INGEST_ROWS} page rows (the generated site's page shape) into the real pages table, batches of ${INGEST_BATCH_SIZE}, ` +
      `median of ${INGEST_ROUNDS} interleaved rounds, every round from the same state; × is against the first row`,
  );
  console.log(
    table(
      ["mode", "connections", "rows", "seconds", "rows/s", "× bare INSERT", "rounds (rows/s)"],
      ir.map((r) => [
        r.mode,
        r.connections,
        String(r.rows),
        r.seconds.toFixed(3),
        r.rowsPerSec.toFixed(0),
        r.ratio.toFixed(3),
        r.rounds.map((x) => x.toFixed(0)).join(" "),
      ]),
      2,
    ),
  );
  const { semSeq, slotUs } = perOpCosts(costs);
  const on = ir.find((r) => r.mode.includes("throttle on ("))!;
  const sqlNarrow = ir.find(
    (r) => r.mode.includes("ingestor's SQL") && r.connections === String(Math.min(DB_BUDGET, INGEST_MAX_IN_FLIGHT / INGEST_BATCH_SIZE)),
  )!;
  const t = ingest.throttled;
  // The throttle's own work in a throttled round, priced at part 1's sequential per-op costs.
  const estimatedUs = t.acquiredPerRound * semSeq.overheadUs + t.slotsPerRound * slotUs;
  const estimatedShare = estimatedUs / 1e6 / t.seconds;
  const vsBareSameSql = 1 - on.rowsPerSec / sqlNarrow.rowsPerSec;
  const goal: Goal = {
    plain: verdict(ingest.abRatios),
    dbRate: ingest.dbRateRatios.length ? verdict(ingest.dbRateRatios) : null,
    estimatedShare,
    vsBareSameSql,
  };
  let invalid = false;
  // The bypass swaps methods that runtime.ts looks up at call time; if that ever changes, the A/B measures nothing.
  if (ingest.bypassCheck.acquiredDuringBypass !== 0 || t.acquiredPerRound === 0) {
    invalid = true;
    console.log(
      `  A/B INVALID: ${t.acquiredPerRound} permits per throttled round, ${ingest.bypassCheck.acquiredDuringBypass} while bypassed: the bypass no longer reaches the throttle (runtime.ts changed?).`,
    );
  }
  printIngestFindings(ingest, goal, { semSeqOverheadUs: semSeq.overheadUs, slotUs, estimatedUs, sqlNarrow: sqlNarrow.connections });
  return { goal, invalid };
}

function printIngestFindings(
  ingest: DirectResult,
  goal: Goal,
  c: { semSeqOverheadUs: number; slotUs: number; estimatedUs: number; sqlNarrow: string },
): void {
  const t = ingest.throttled;
  const { slotUs, estimatedUs } = c;
  const { estimatedShare, vsBareSameSql } = goal;
  console.log("");
  console.log(
    `  One ingestor node runs at most ${INGEST_MAX_IN_FLIGHT / INGEST_BATCH_SIZE} batches at once (INGEST_MAX_IN_FLIGHT ${INGEST_MAX_IN_FLIGHT} ÷ batch ${INGEST_BATCH_SIZE}), ` +
      `so it uses at most that many of its ${DB_BUDGET} connections; the bulkhead peaked at ${t.peakRunning} running and ${t.peakQueued} queued: the budget was not the bottleneck.`,
  );
  console.log(
    `  Throttle work in a throttled round: ${t.acquiredPerRound} bulkhead permits (${(t.acquiredPerRound / Math.ceil(INGEST_ROWS / INGEST_BATCH_SIZE)).toFixed(1)} per batch: the transaction, then finishIfDone) and ${t.slotsPerRound} connection slots ` +
      `(a slot is taken when a connection opens; the pool stays open between rounds). Bypass check: ${ingest.bypassCheck.acquiredDuringBypass} permits taken while bypassed (must be 0).`,
  );
  console.log(
    `  Throttle cost, A/B in one process (throttle on vs no-ops, round by round): ${pct(goal.plain.cost)} of throughput ` +
      `(rounds: ${goal.plain.perRound.map((x) => pct(x)).join(", ")}; negative: the throttled round was the faster, i.e. noise).`,
  );
  console.log(
    `  Throttle cost, estimated from part 1 (permits × ${fmtUs(c.semSeqOverheadUs)} µs + slots × ${fmtUs(slotUs)} µs): ` +
      `${(estimatedUs / 1000).toFixed(3)} ms of a ${(t.seconds * 1000).toFixed(0)} ms round = ${pct(estimatedShare, 3)}.`,
  );
  console.log(
    `  Sluice (throttle on) vs bare pg running the ingestor's statements at its concurrency (${c.sqlNarrow} connections): ${pct(vsBareSameSql)} slower; ` +
      (goal.plain.status === "holds"
        ? `the A/B puts the throttle's part of that under ${pct(GOAL_SHARE, 0)}: the rest is Sequelize, the channel and the batcher.`
        : `the A/B above bounds the throttle's part of that.`),
  );
  if (goal.dbRate) {
    console.log(
      `  With DB_RATE=${formatRate(DB_RATE!)} (not reached: ${(t.acquiredPerRound / t.seconds).toFixed(0)} operations/s needed) every operation also holds a Bottleneck slot ` +
        `(part 1: ${fmtUs(slotUs)} µs each, one at a time): ${pct(goal.dbRate.cost)} below the bypassed throttle (rounds: ${goal.dbRate.perRound.map((x) => pct(x)).join(", ")}).`,
    );
  }
  console.log(
    `  Goal: the throttle costs under ${pct(GOAL_SHARE, 0)} of ingest throughput when the budget is not the bottleneck. ` +
      `Bulkhead + connection slots (the default): ${goal.plain.status.toUpperCase()} (A/B ${pct(goal.plain.cost)}, estimate ${pct(estimatedShare, 3)})` +
      (goal.dbRate ? `; with DB_RATE=${formatRate(DB_RATE!)}: ${goal.dbRate.status.toUpperCase()} (A/B ${pct(goal.dbRate.cost)}).` : "."),
  );
}

export function printCrawls(crawls: CrawlRow[], ingest: DirectResult, redisOk: boolean): void {
  console.log("");
  console.log(
    `2b. Crawls of ${PAGES + 1} pages by separate Sluice processes (api,crawler,ingestor each; NATS, ${redisOk ? "Redis" : "no Redis"}, fresh database), DB_BUDGET ${DB_BUDGET} across the cluster; ` +
      `× is against bare pg INSERT with ${DB_BUDGET} connections on the same ${ingest.crawlBaseline.rows} rows`,
  );
  const cb = ingest.crawlBaseline;
  console.log(
    table(
      ["mode", "processes", "pages", "seconds", "pages/s", "× bare INSERT", "check"],
      [
        [
          `bare pg: INSERT … ON CONFLICT only, ${DB_BUDGET} connections`,
          "-",
          String(cb.rows),
          (cb.rows / cb.rowsPerSec).toFixed(3),
          cb.rowsPerSec.toFixed(0),
          "1.000",
          "ok",
        ],
        ...crawls.map((c) => [
          `sluice crawl`,
          String(c.processes),
          String(c.pages),
          c.seconds.toFixed(2),
          c.pagesPerSec.toFixed(0),
          (c.pagesPerSec / cb.rowsPerSec).toFixed(3),
          c.ok ? "ok" : `FAIL: ${c.note}`,
        ]),
      ],
      1,
    ),
  );
  console.log(
    `  Apples to oranges: a crawl also fetches and parses every page, claims and settles each URL in the frontier (several statements per page) and ships pages over NATS, ` +
      `on ${os.cpus().length} CPU(s) shared by every process and Postgres; seconds are the crawl's createdAt → finishedAt. 2a isolates the ingest path.`,
  );
}

export function printRates(rates: RateRow[]): void {
  console.log("");
  console.log(
    `3. Rate accuracy: ${RATE_OPS} operations submitted at once to a rate-only limiter; observed = (ops − 1) ÷ (last start − first start)`,
  );
  console.log(
    table(
      ["limiter", "configured/s", "ops", "observed/s", "observed ÷ configured", "min gap ms", "max gap ms"],
      rates.map((r) => [
        r.limiter,
        String(r.configured),
        String(r.ops),
        r.observed.toFixed(2),
        r.ratio.toFixed(3),
        r.minGapMs.toFixed(1),
        r.maxGapMs.toFixed(1),
      ]),
    ),
  );
}

/** The one JSON line for notes. */
export function summaryLine(results: Results, goal: Goal | null, totalSeconds: number): string {
  const { costs, ingest, crawls, rates, skipped } = results;
  const summary = {
    bench: "throttle",
    at: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    dbBudget: DB_BUDGET,
    costs: costs.map((r) => ({
      throttle: r.throttle,
      mode: r.mode,
      ops: r.ops,
      usPerOp: round(r.usPerOp),
      ratio: round(r.ratio, 2),
      overheadUs: round(r.overheadUs),
    })),
    ingest: ingest && {
      rows: ingest.rows.map((r) => ({
        mode: r.mode,
        connections: r.connections,
        rows: r.rows,
        rowsPerSec: round(r.rowsPerSec, 1),
        ratio: round(r.ratio),
        rounds: r.rounds.map((x) => round(x, 1)),
      })),
      throttled: ingest.throttled,
      abRatios: ingest.abRatios.map((x) => round(x, 4)),
      dbRate: DB_RATE ? formatRate(DB_RATE) : null,
      dbRateRatios: ingest.dbRateRatios.map((x) => round(x, 4)),
      crawlBaseline: { rows: ingest.crawlBaseline.rows, rowsPerSec: round(ingest.crawlBaseline.rowsPerSec, 1) },
    },
    crawls: crawls.map((c) => ({
      processes: c.processes,
      pages: c.pages,
      seconds: round(c.seconds),
      pagesPerSec: round(c.pagesPerSec, 1),
      ratio: ingest ? round(c.pagesPerSec / ingest.crawlBaseline.rowsPerSec) : null,
      ok: c.ok,
    })),
    rates: rates.map((r) => ({
      limiter: r.limiter,
      configured: r.configured,
      ops: r.ops,
      observed: round(r.observed, 2),
      ratio: round(r.ratio),
      minGapMs: round(r.minGapMs, 1),
      maxGapMs: round(r.maxGapMs, 1),
    })),
    goal: goal && {
      share: GOAL_SHARE,
      status: goal.plain.status,
      abCost: round(goal.plain.cost, 4),
      estimatedShare: round(goal.estimatedShare, 5),
      vsBareSameSql: round(goal.vsBareSameSql, 4),
      dbRate: goal.dbRate && { status: goal.dbRate.status, abCost: round(goal.dbRate.cost, 4) },
    },
    skipped,
    seconds: round(totalSeconds, 1),
  };
  return JSON.stringify(summary);
}
