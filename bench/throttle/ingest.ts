// Part 2a: what the throttle costs ingest throughput. Bare pg loops, the in-process ingestor with
// its throttle on, the same ingestor with the throttle bypassed (the A/B), and with DB_RATE, in
// interleaved rounds from the same state; then the bare baseline of the crawls (part 2b).
import pg from "pg";
import { migrate } from "../../lib/platform/migrate";
import { formatRate } from "../../lib/throttle/rate";
import type { PageRecord } from "../../models/pages";
import { INGEST_BATCH_SIZE, INGEST_MAX_IN_FLIGHT } from "../../services/ingestor.service";
import { createBenchDatabase, log, median } from "../support";
import { bareLoop, prepareRound, syntheticPages } from "./ingest-pages";
import { bypassThrottle, counters, startIngestor, type Ingestor, type ThrottleCounters } from "./ingestor";
import { deleteLimiterKeys } from "./servers";
import { ADMIN_DATABASE_URL, DB_BUDGET, DB_RATE, INGEST_ROUNDS, INGEST_ROWS, PAGES, RUN_ID } from "./settings";

export interface IngestRow {
  mode: string;
  connections: string;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  ratio: number;
  /** rows/s of every round, for the spread. */
  rounds: number[];
}

export interface DirectResult {
  rows: IngestRow[];
  /** Per-round medians of throttle work in the throttled rounds. */
  throttled: { acquiredPerRound: number; slotsPerRound: number; seconds: number; peakRunning: number; peakQueued: number };
  bypassCheck: { acquiredDuringBypass: number };
  /** Per round: throttled rows/s ÷ bypassed rows/s of the same round. */
  abRatios: number[];
  /** Per round: DB_RATE rows/s ÷ bypassed rows/s of the same round. */
  dbRateRatios: number[];
  crawlBaseline: { rows: number; rowsPerSec: number; rounds: number[] };
}

type Variant = { mode: string; connections: string; run: (pages: PageRecord[]) => Promise<number> };

/** What the A/B pair records while it runs. */
interface AbRecord {
  throttledWork: ThrottleCounters[];
  throttledSeconds: number[];
  acquiredDuringBypass: number;
}

interface Variants {
  all: Variant[];
  on: Variant;
  off: Variant;
  rate: Variant | null;
}

interface RoundResults {
  results: Map<Variant, number[]>;
  abRatios: number[];
  dbRateRatios: number[];
}

export async function measureIngest(redisOk: boolean): Promise<DirectResult> {
  const db = await createBenchDatabase(ADMIN_DATABASE_URL);
  log(`  created database ${db.name}`);
  const namespace = `bthr${RUN_ID}`;
  const admin = new pg.Client({ connectionString: db.url, application_name: "bench-admin" });
  const bare: Record<string, pg.Client[]> = {};
  const ingestors: Ingestor[] = [];
  try {
    await migrate(db.url, "bench-migrate");
    await admin.connect();
    const concurrentBatches = INGEST_MAX_IN_FLIGHT / INGEST_BATCH_SIZE;
    const widths = [...new Set([DB_BUDGET, Math.min(DB_BUDGET, concurrentBatches)])];
    for (const w of widths) bare[w] = await openClients(db.url, w);
    const rows = syntheticPages("http://127.0.0.1:9", INGEST_ROWS - 1);
    // Both Sluices run side by side (each idle while the other variants run), so their rounds interleave too.
    const plain = await startIngestor(db.url, namespace, redisOk, null);
    ingestors.push(plain);
    const rated = DB_RATE ? await startIngestor(db.url, `${namespace}r`, redisOk, formatRate(DB_RATE)) : null;
    if (rated) ingestors.push(rated);

    const record: AbRecord = { throttledWork: [], throttledSeconds: [], acquiredDuringBypass: 0 };
    const variants = buildVariants(widths, bare, plain, rated, redisOk, record);
    const rounds = await runRounds(admin, rows, variants, ingestors, redisOk, record);
    const gateStats = plain.sluice.dbGate.stats();
    const crawlBaseline = await measureCrawlBaseline(admin, bare[DB_BUDGET]!);

    const base = median(rounds.results.get(variants.all[0]!)!);
    return {
      rows: variants.all.map((v) => {
        const rs = rounds.results.get(v)!;
        const rowsPerSec = median(rs);
        return {
          mode: v.mode,
          connections: v.connections,
          rows: rows.length,
          seconds: rows.length / rowsPerSec,
          rowsPerSec,
          ratio: rowsPerSec / base,
          rounds: rs,
        };
      }),
      throttled: {
        acquiredPerRound: median(record.throttledWork.map((w) => w.acquired)),
        slotsPerRound: median(record.throttledWork.map((w) => w.slots)),
        seconds: median(record.throttledSeconds),
        peakRunning: gateStats.peakRunning,
        peakQueued: gateStats.peakQueued,
      },
      bypassCheck: { acquiredDuringBypass: record.acquiredDuringBypass },
      abRatios: rounds.abRatios,
      dbRateRatios: rounds.dbRateRatios,
      crawlBaseline,
    };
  } finally {
    for (const i of ingestors) await i.sluice.stop().catch(() => {});
    for (const cs of Object.values(bare)) await Promise.all(cs.map((c) => c.end().catch(() => {})));
    await admin.end().catch(() => {});
    await db.drop();
    if (redisOk) {
      await deleteLimiterKeys(`sluice:${namespace}:`);
      await deleteLimiterKeys(`sluice:${namespace}r:`);
    }
  }
}

function openClients(url: string, n: number): Promise<pg.Client[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const c = new pg.Client({ connectionString: url, application_name: "bench-bare" });
      await c.connect();
      return c;
    }),
  );
}

function buildVariants(
  widths: number[],
  bare: Record<string, pg.Client[]>,
  plain: Ingestor,
  rated: Ingestor | null,
  redisOk: boolean,
  record: AbRecord,
): Variants {
  const all: Variant[] = [];
  for (const w of widths)
    all.push({ mode: "bare pg: INSERT … ON CONFLICT only", connections: String(w), run: (p) => bareLoop(bare[w]!, p, "insert") });
  for (const w of widths)
    all.push({
      mode: "bare pg: the ingestor's SQL (tx + markStored + finishIfDone)",
      connections: String(w),
      run: (p) => bareLoop(bare[w]!, p, "ingestor-sql"),
    });
  const on: Variant = {
    mode: "sluice ingestor, throttle on (bulkhead + connection slots)",
    connections: `pool ${DB_BUDGET}`,
    run: async (p) => {
      const before = counters(plain.sluice);
      const s = await plain.ingest(p);
      const after = counters(plain.sluice);
      record.throttledWork.push({ acquired: after.acquired - before.acquired, slots: after.slots - before.slots });
      record.throttledSeconds.push(s);
      return s;
    },
  };
  const off: Variant = {
    mode: "sluice ingestor, throttle bypassed (no-ops)",
    connections: `pool ${DB_BUDGET}`,
    run: async (p) => {
      const before = counters(plain.sluice).acquired;
      bypassThrottle(plain.sluice, true);
      try {
        return await plain.ingest(p);
      } finally {
        bypassThrottle(plain.sluice, false);
        record.acquiredDuringBypass += counters(plain.sluice).acquired - before;
      }
    },
  };
  all.push(on, off);
  const rate: Variant | null = rated && {
    mode: `sluice ingestor, throttle on + DB_RATE=${formatRate(DB_RATE!)} (${redisOk ? "Redis" : "in-memory"} limiter slot per operation)`,
    connections: `pool ${DB_BUDGET}`,
    run: (p) => rated.ingest(p),
  };
  if (rate) all.push(rate);
  return { all, on, off, rate };
}

/** Rounds interleave the variants so that drift (autovacuum, checkpoints, other load) hits all alike. */
async function runRounds(
  admin: pg.Client,
  rows: Omit<PageRecord, "crawlId">[],
  variants: Variants,
  ingestors: Ingestor[],
  redisOk: boolean,
  record: AbRecord,
): Promise<RoundResults> {
  const { all, on, off, rate } = variants;
  const results = new Map<Variant, number[]>(all.map((v) => [v, []]));
  const abRatios: number[] = [];
  const dbRateRatios: number[] = [];
  for (let r = 0; r <= INGEST_ROUNDS; r++) {
    const perRound = new Map<Variant, number>();
    // The A/B pair swaps places every round, so neither side always runs first.
    const ordered = r % 2 === 0 ? all : all.map((v) => (v === on ? off : v === off ? on : v));
    for (const v of ordered) {
      const pages = await prepareRound(admin, rows);
      const seconds = await v.run(pages);
      perRound.set(v, pages.length / seconds);
      if (r > 0) results.get(v)!.push(pages.length / seconds);
    }
    for (const i of ingestors) {
      if (redisOk && !i.sluice.limits.redisReady)
        throw new Error("a Sluice's limiters fell back to their local share during the measurement");
    }
    if (r === 0) {
      record.throttledWork.length = 0;
      record.throttledSeconds.length = 0;
    } else {
      abRatios.push(perRound.get(on)! / perRound.get(off)!);
      if (rate) dbRateRatios.push(perRound.get(rate)! / perRound.get(off)!);
    }
    log(`  ingest round ${r === 0 ? "0 (warm-up, not counted)" : r}: ${all.map((v) => perRound.get(v)!.toFixed(0)).join(" / ")} rows/s`);
  }
  return { results, abRatios, dbRateRatios };
}

/** Bare INSERT of the crawl's row count, for the crawl comparison's baseline. */
async function measureCrawlBaseline(admin: pg.Client, clients: pg.Client[]): Promise<DirectResult["crawlBaseline"]> {
  const crawlRows = syntheticPages("http://127.0.0.1:9", PAGES);
  const crawlRounds: number[] = [];
  for (let r = 0; r <= INGEST_ROUNDS; r++) {
    const pages = await prepareRound(admin, crawlRows);
    const seconds = await bareLoop(clients, pages, "insert");
    if (r > 0) crawlRounds.push(pages.length / seconds);
  }
  return { rows: crawlRows.length, rowsPerSec: median(crawlRounds), rounds: crawlRounds };
}
