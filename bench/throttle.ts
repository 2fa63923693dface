// Throttle cost benchmark: `npm run bench:throttle`. See bench/README.md.
//
// Three questions, each answered against a baseline measured in the same run:
//   1. What does one throttled operation cost? Semaphore.run (the per-node DB bulkhead) and
//      LimiterHub limiters (leased slots, in memory and on Redis) against an unthrottled
//      `await noop()`, one at a time and all at once.
//   2. What does the throttle cost ingest throughput? Sluice's ingestor (in process, real Postgres,
//      DB_BUDGET connections) against bare `pg` loops writing the same rows with the same SQL and
//      batch size, and the same ingestor with the throttle replaced by no-ops (A/B in one process);
//      then crawls of a generated site by 1, 2 and 4 Sluice processes at the same DB_BUDGET.
//   3. How close do rate limits come to their configured rate?
// Every figure comes from one machine in one run: compare rows with each other, not with other machines.
//
// Servers (all optional; a part whose server is unreachable is skipped and says so):
//   DATABASE_URL  admin URL of a Postgres server   (default postgres://postgres@127.0.0.1:5432/test)
//   REDIS_URL     Redis for clustered limiters      (default redis://127.0.0.1:6379)
//   NATS_URL      NATS for the multi-process crawls (default nats://127.0.0.1:4222)
// Knobs (environment):
//   BENCH_OPS              operations per pass for unthrottled and Semaphore (default 20000)
//   BENCH_BOTTLENECK_OPS   operations for each Bottleneck mode (default 2000)
//   BENCH_INGEST_ROWS      rows per direct-ingest round (default 10000)
//   BENCH_INGEST_ROUNDS    measured rounds of each direct-ingest variant, median reported (default 7)
//   BENCH_DB_BUDGET        DB_BUDGET for Sluice and connections of the bare loops (default 4)
//   BENCH_DB_RATE          DB_RATE of the extra direct-ingest run ("none" leaves it out; default 1000/s)
//   BENCH_PAGES            pages of the generated site the crawls fetch (default 3000; entry page is one more)
//   BENCH_PROCESSES        process counts of the crawls (default 1,2,4; empty leaves the crawls out)
//   BENCH_RATE_OPS         operations per rate-accuracy run (default 100)
//   BENCH_TIMEOUT_S        give up on a crawl or an ingest round after this long, and fail (default 120)
import { MAX_MAX_DEPTH } from "../services/crawls.service";
import { createScratchDatabase } from "../fixtures/scratch-db";
import os from "node:os";
import { performance } from "node:perf_hooks";
import IORedis from "ioredis";
import { connect as natsConnect } from "nats";
import pg from "pg";
import { generatedPageDepths, generatedPageLinks, serveGeneratedSite } from "../fixtures/site-server";
import { DEFAULT_DB_QUEUE_MAX, loadConfig } from "../lib/platform/config";
import { migrate } from "../lib/platform/migrate";
import { CHANNEL_PAGES, DB_CONNECTIONS_RESOURCE, EVENT_CRAWL_FINISHED } from "../lib/platform/names";
import { formatRate, parseRate } from "../lib/throttle/rate";
import { Semaphore } from "../lib/throttle/semaphore";
import { LimiterHub } from "../lib/throttle";
import { startSluice, type Sluice } from "../runtime";
import { INGEST_BATCH_SIZE, INGEST_MAX_IN_FLIGHT } from "../services/ingestor.service";
import { distinctPagesByUrl, upsertPagesStatement, type PageRecord } from "../models/pages";
import { FINISH_IF_DONE_SQL, MARK_STORED_SQL } from "../models/crawls";
import { http, waitFor } from "../test/support/env";
import { deleteStreams, freePort, startNode, type NodeProcess } from "../test/support/processes";

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

const OPS = intEnv("BENCH_OPS", 20_000, 100, 10_000_000);
const BOTTLENECK_OPS = intEnv("BENCH_BOTTLENECK_OPS", 2_000, 10, 1_000_000);
const INGEST_ROWS = intEnv("BENCH_INGEST_ROWS", 10_000, INGEST_BATCH_SIZE, 1_000_000);
const INGEST_ROUNDS = intEnv("BENCH_INGEST_ROUNDS", 7, 1, 50);
const DB_BUDGET = intEnv("BENCH_DB_BUDGET", 4, 1, 100);
const DB_RATE_RAW = process.env.BENCH_DB_RATE?.trim() || "1000/s";
const DB_RATE = DB_RATE_RAW === "none" ? null : parseRate(DB_RATE_RAW, "BENCH_DB_RATE");
const PAGES = intEnv("BENCH_PAGES", 3_000, 1, 99_000);
const PROCESSES = (process.env.BENCH_PROCESSES ?? "1,2,4").split(",").map((s) => s.trim()).filter(Boolean).map(Number);
if (PROCESSES.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) throw new Error(`BENCH_PROCESSES: expected process counts from 1 to 16, got "${process.env.BENCH_PROCESSES}"`);
const RATE_OPS = intEnv("BENCH_RATE_OPS", 100, 3, 100_000);
const TIMEOUT_MS = intEnv("BENCH_TIMEOUT_S", 120, 1, 86_400) * 1000;
const ADMIN_DATABASE_URL = process.env.DATABASE_URL?.trim() || "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.REDIS_URL?.trim() || "redis://127.0.0.1:6379";
const NATS_URL = process.env.NATS_URL?.trim() || "nats://127.0.0.1:4222";
// The production bound on the bulkhead's queue (DEFAULT_DB_QUEUE_MAX): bursts are also measured at this size.
const QUEUE_MAX = DEFAULT_DB_QUEUE_MAX;
// The goal this benchmark checks: the throttle costs under this share of ingest throughput.
const GOAL_SHARE = 0.05;

const RUN_ID = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const log = (line: string): void => void process.stderr.write(line + "\n");
const quiet = { warn: () => {}, info: () => {} };
const round = (n: number, digits = 3): number => Number(n.toFixed(digits));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function table(head: string[], body: string[][], leftColumns = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i < leftColumns || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(fmt)].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

async function reachable(what: string, probe: () => Promise<void>): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (err) {
    log(`  ${what} unreachable (${(err as Error).message}): its part is skipped`);
    return false;
  }
}

const probeRedis = () =>
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

const probePostgres = () =>
  reachable(`Postgres at ${ADMIN_DATABASE_URL}`, async () => {
    const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 2_000 });
    await c.connect();
    await c.end();
  });

const probeNats = () =>
  reachable(`NATS at ${NATS_URL}`, async () => {
    const nc = await natsConnect({ servers: NATS_URL, timeout: 2_000, reconnect: false });
    await nc.close();
  });

/** Deletes the Redis keys (Bottleneck's and the leases') of every limiter whose id starts with `prefix`. */
async function deleteLimiterKeys(prefix: string): Promise<number> {
  const redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    let deleted = 0;
    do {
      // Bottleneck's keys (b_<id>) and the leases' (<prefix>lease:...).
      const [next, keys] = await redis.scan(cursor, "MATCH", `*${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== "0");
    return deleted;
  } finally {
    redis.disconnect();
  }
}

const createBenchDatabase = () => createScratchDatabase(ADMIN_DATABASE_URL, "sluice_bench");

// ---------------------------------------------------------------------------------------------
// 1. Cost per operation
// ---------------------------------------------------------------------------------------------

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
async function medianPass(passes: number, pass: () => Promise<number>): Promise<number> {
  await pass();
  const xs: number[] = [];
  for (let i = 0; i < passes; i++) xs.push(await pass());
  return median(xs);
}

interface CostRow {
  throttle: string;
  mode: "sequential" | "burst" | "bursts of queue max";
  ops: number;
  usPerOp: number;
  /** µs/op ÷ the unthrottled µs/op of the same mode. */
  ratio: number;
  overheadUs: number;
}

async function measureCosts(redisOk: boolean): Promise<{ rows: CostRow[]; skipped: string[] }> {
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
  log(`  unthrottled: ${Object.values(base).map((v) => v.toFixed(3)).join(" / ")} µs/op`);

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

// ---------------------------------------------------------------------------------------------
// 2. Ingest throughput
// ---------------------------------------------------------------------------------------------

// The generated site's page template (fixtures/site-server.ts), so rows have the crawl's shape.
const FILLER =
  "Sluices and locks regulate the river; each generated page carries a little text so that page " +
  "sizes resemble a real site rather than a bare list of links.";
const html = (title: string, body: string) =>
  `<!doctype html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n<body>\n<h1>${title}</h1>\n${body}\n</body></html>\n`;

/** The page messages a crawl of a `pages`-page generated site at `origin` sends: entry page, then /p/0 … */
function syntheticPages(origin: string, pages: number): Omit<PageRecord, "crawlId">[] {
  const depths = generatedPageDepths(pages);
  const fetchedAt = new Date().toISOString();
  const out: Omit<PageRecord, "crawlId">[] = [];
  const entry = html("Generated site", `<ul>\n<li><a href="/p/0">Page 0</a> (first of ${pages})</li>\n</ul>`);
  out.push({ url: `${origin}/`, depth: 0, status: 200, contentType: "text/html; charset=utf-8", title: "Generated site", body: entry, bytes: Buffer.byteLength(entry), links: 1, fetchedAt });
  for (let i = 0; i < pages; i++) {
    const links = generatedPageLinks(i, pages);
    const items = links.map((j) => `<li><a href="${j === 2 * i + 1 || j === 2 * i + 2 ? `/p/${j}` : String(j)}">Page ${j}</a></li>`);
    const body = html(`Page ${i}`, `<p>Generated page ${i} of ${pages}. ${FILLER}</p>\n<ul>\n${items.join("\n")}\n</ul>`);
    out.push({ url: `${origin}/p/${i}`, depth: depths[i]!, status: 200, contentType: "text/html; charset=utf-8", title: `Page ${i}`, body, bytes: Buffer.byteLength(body), links: links.length, fetchedAt });
  }
  return out;
}

/** Batches as the ingestor forms them: consecutive messages, 100 a batch, deduplicated and sorted by URL. */
function batchesOf(pages: PageRecord[]): PageRecord[][] {
  const out: PageRecord[][] = [];
  for (let i = 0; i < pages.length; i += INGEST_BATCH_SIZE) out.push(distinctPagesByUrl(pages.slice(i, i + INGEST_BATCH_SIZE)));
  return out;
}

/**
 * Every round starts from the same state: empty pages, one running crawl whose URLs are all
 * fetched and awaiting the ingestor (what the crawler leaves behind), fresh planner statistics.
 */
async function prepareRound(admin: pg.Client, rows: Omit<PageRecord, "crawlId">[]): Promise<PageRecord[]> {
  await admin.query("TRUNCATE pages, crawl_urls, crawls CASCADE");
  const { rows: [crawl] } = await admin.query<{ id: number }>(
    `INSERT INTO crawls (url, status, max_pages, max_depth, discovered, started_at) VALUES ($1, 'running', $2, 100, $2, now()) RETURNING id`,
    [rows[0]!.url, rows.length],
  );
  await admin.query(
    `INSERT INTO crawl_urls (crawl_id, url, depth, state, leased_by, lease_until, attempts)
     SELECT $1, u, d, 'fetched', 'bench', now() + interval '1 hour', 1 FROM unnest($2::text[], $3::int[]) AS t(u, d)`,
    [crawl!.id, rows.map((r) => r.url), rows.map((r) => r.depth)],
  );
  await admin.query("ANALYZE pages, crawl_urls, crawls");
  return rows.map((r) => ({ ...r, crawlId: crawl!.id }));
}

type BareKind = "insert" | "ingestor-sql";

/** `connections` clients, each taking the next batch until none is left; seconds from first batch to last commit. */
async function bareLoop(clients: pg.Client[], pages: PageRecord[], kind: BareKind): Promise<number> {
  const batches = batchesOf(pages);
  const crawlId = pages[0]!.crawlId;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        // The ingestor's own statements (models/pages.ts, models/crawls.ts), issued with bare pg.
        const { sql: text, bind: values } = upsertPagesStatement(batch);
        if (kind === "insert") {
          await c.query(text, values);
          continue;
        }
        await c.query("START TRANSACTION");
        try {
          await c.query(text, values);
          await c.query(MARK_STORED_SQL, [batch.map((p) => p.crawlId), batch.map((p) => p.url)]);
          await c.query("COMMIT");
        } catch (err) {
          await c.query("ROLLBACK").catch(() => {});
          throw err;
        }
        await c.query(FINISH_IF_DONE_SQL, [crawlId]);
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

interface IngestRow {
  mode: string;
  connections: string;
  rows: number;
  seconds: number;
  rowsPerSec: number;
  ratio: number;
  /** rows/s of every round, for the spread. */
  rounds: number[];
}

interface Ingestor {
  sluice: Sluice;
  /** Publishes every page to the ingestor's channel; resolves with seconds from the first publish to the crawl's end. */
  ingest(pages: PageRecord[]): Promise<number>;
}

/**
 * A Sluice running only the ingestor in this process, on the in-process channel (no NATS in the
 * way), against the real Postgres and Redis. A crawl's end is the ingestor's own crawls.finished event.
 */
async function startIngestor(databaseUrl: string, namespace: string, redisOk: boolean, dbRate: string | null): Promise<Ingestor> {
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    SERVICES: "ingestor",
    NAMESPACE: namespace,
    NODE_ID: `${namespace}-ingestor`,
    DB_BUDGET: String(DB_BUDGET),
    PORT: "0",
    METRICS_PORT: "0",
    // "error": stopping a Sluice logs a "Redis unavailable" warning as its limiter connection
    // closes. A real fallback during the measurement is caught by checking limits.redisReady.
    LOG_LEVEL: "error",
  };
  if (redisOk) env.REDIS_URL = REDIS_URL;
  if (dbRate) env.DB_RATE = dbRate;
  const sluice = await startSluice(loadConfig(env));
  const waiting = new Map<number, (status: string) => void>();
  sluice.broker.createService({
    name: "bench-probe",
    events: {
      [EVENT_CRAWL_FINISHED](ctx: { params: { id: number; status: string } }) {
        waiting.get(ctx.params.id)?.(ctx.params.status);
      },
    },
  });
  await sluice.broker.waitForServices(["bench-probe", "ingestor"], 10_000);
  return {
    sluice,
    async ingest(pages: PageRecord[]): Promise<number> {
      const crawlId = pages[0]!.crawlId;
      let timer: NodeJS.Timeout | undefined;
      const finished = new Promise<string>((resolve, reject) => {
        waiting.set(crawlId, resolve);
        timer = setTimeout(() => reject(new Error(`ingest of crawl ${crawlId} unfinished after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
      });
      try {
        const t0 = performance.now();
        await Promise.all(pages.map((p) => sluice.broker.sendToChannel(CHANNEL_PAGES, p)));
        const status = await finished;
        const seconds = (performance.now() - t0) / 1000;
        if (status !== "succeeded") throw new Error(`ingest crawl ended ${status}`);
        return seconds;
      } finally {
        clearTimeout(timer);
        waiting.delete(crawlId);
      }
    },
  };
}

/** Replaces the throttle (bulkhead permits, connection slots, DB_RATE slots) by no-ops, or puts it back. */
function bypassThrottle(sluice: Sluice, on: boolean): void {
  const gate = sluice.dbGate as unknown as Record<string, unknown>;
  const limits = sluice.limits as unknown as Record<string, unknown>;
  if (on) {
    gate.acquire = async () => () => {};
    limits.hold = async () => () => {};
  } else {
    delete gate.acquire;
    delete limits.hold;
  }
}

interface ThrottleCounters {
  /** Bulkhead permits taken: one per database operation (a transaction is one). */
  acquired: number;
  /** Connection slots taken: one per Postgres connection opened. */
  slots: number;
}
function counters(sluice: Sluice): ThrottleCounters {
  const slot = sluice.limits.stats().find((l) => l.resource === DB_CONNECTIONS_RESOURCE);
  return { acquired: sluice.dbGate.stats().acquired, slots: slot ? slot.done + slot.running : 0 };
}

interface DirectResult {
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

async function measureIngest(redisOk: boolean): Promise<DirectResult> {
  const db = await createBenchDatabase();
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
    for (const w of widths) {
      bare[w] = await Promise.all(
        Array.from({ length: w }, async () => {
          const c = new pg.Client({ connectionString: db.url, application_name: "bench-bare" });
          await c.connect();
          return c;
        }),
      );
    }
    const rows = syntheticPages("http://127.0.0.1:9", INGEST_ROWS - 1);
    // Both Sluices run side by side (each idle while the other variants run), so their rounds interleave too.
    const plain = await startIngestor(db.url, namespace, redisOk, null);
    ingestors.push(plain);
    const rated = DB_RATE ? await startIngestor(db.url, `${namespace}r`, redisOk, formatRate(DB_RATE)) : null;
    if (rated) ingestors.push(rated);

    type Variant = { mode: string; connections: string; run: (pages: PageRecord[]) => Promise<number> };
    const variants: Variant[] = [];
    for (const w of widths) variants.push({ mode: "bare pg: INSERT … ON CONFLICT only", connections: String(w), run: (p) => bareLoop(bare[w]!, p, "insert") });
    for (const w of widths) variants.push({ mode: "bare pg: the ingestor's SQL (tx + markStored + finishIfDone)", connections: String(w), run: (p) => bareLoop(bare[w]!, p, "ingestor-sql") });
    const throttledWork: ThrottleCounters[] = [];
    const throttledSeconds: number[] = [];
    let acquiredDuringBypass = 0;
    const on: Variant = {
      mode: "sluice ingestor, throttle on (bulkhead + connection slots)",
      connections: `pool ${DB_BUDGET}`,
      run: async (p) => {
        const before = counters(plain.sluice);
        const s = await plain.ingest(p);
        const after = counters(plain.sluice);
        throttledWork.push({ acquired: after.acquired - before.acquired, slots: after.slots - before.slots });
        throttledSeconds.push(s);
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
          acquiredDuringBypass += counters(plain.sluice).acquired - before;
        }
      },
    };
    variants.push(on, off);
    const rate: Variant | null = rated && {
      mode: `sluice ingestor, throttle on + DB_RATE=${formatRate(DB_RATE!)} (${redisOk ? "Redis" : "in-memory"} limiter slot per operation)`,
      connections: `pool ${DB_BUDGET}`,
      run: (p) => rated.ingest(p),
    };
    if (rate) variants.push(rate);

    // Rounds interleave the variants so that drift (autovacuum, checkpoints, other load) hits all alike.
    const results = new Map<Variant, number[]>(variants.map((v) => [v, []]));
    const abRatios: number[] = [];
    const dbRateRatios: number[] = [];
    for (let r = 0; r <= INGEST_ROUNDS; r++) {
      const perRound = new Map<Variant, number>();
      // The A/B pair swaps places every round, so neither side always runs first.
      const ordered = r % 2 === 0 ? variants : variants.map((v) => (v === on ? off : v === off ? on : v));
      for (const v of ordered) {
        const pages = await prepareRound(admin, rows);
        const seconds = await v.run(pages);
        perRound.set(v, pages.length / seconds);
        if (r > 0) results.get(v)!.push(pages.length / seconds);
      }
      for (const i of ingestors) {
        if (redisOk && !i.sluice.limits.redisReady) throw new Error("a Sluice's limiters fell back to their local share during the measurement");
      }
      if (r === 0) {
        throttledWork.length = 0;
        throttledSeconds.length = 0;
      } else {
        abRatios.push(perRound.get(on)! / perRound.get(off)!);
        if (rate) dbRateRatios.push(perRound.get(rate)! / perRound.get(off)!);
      }
      log(`  ingest round ${r === 0 ? "0 (warm-up, not counted)" : r}: ${variants.map((v) => perRound.get(v)!.toFixed(0)).join(" / ")} rows/s`);
    }
    const gateStats = plain.sluice.dbGate.stats();

    // The crawl's row count, for the crawl comparison's baseline.
    const crawlRows = syntheticPages("http://127.0.0.1:9", PAGES);
    const crawlRounds: number[] = [];
    for (let r = 0; r <= INGEST_ROUNDS; r++) {
      const pages = await prepareRound(admin, crawlRows);
      const seconds = await bareLoop(bare[DB_BUDGET]!, pages, "insert");
      if (r > 0) crawlRounds.push(pages.length / seconds);
    }

    const base = median(results.get(variants[0]!)!);
    return {
      rows: variants.map((v) => {
        const rs = results.get(v)!;
        const rowsPerSec = median(rs);
        return { mode: v.mode, connections: v.connections, rows: rows.length, seconds: rows.length / rowsPerSec, rowsPerSec, ratio: rowsPerSec / base, rounds: rs };
      }),
      throttled: {
        acquiredPerRound: median(throttledWork.map((w) => w.acquired)),
        slotsPerRound: median(throttledWork.map((w) => w.slots)),
        seconds: median(throttledSeconds),
        peakRunning: gateStats.peakRunning,
        peakQueued: gateStats.peakQueued,
      },
      bypassCheck: { acquiredDuringBypass },
      abRatios,
      dbRateRatios,
      crawlBaseline: { rows: crawlRows.length, rowsPerSec: median(crawlRounds), rounds: crawlRounds },
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

interface CrawlRow {
  processes: number;
  pages: number;
  seconds: number;
  pagesPerSec: number;
  status: string;
  ok: boolean;
  note?: string;
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

async function crawlWith(processes: number, site: Awaited<ReturnType<typeof serveGeneratedSite>>, redisOk: boolean): Promise<CrawlRow> {
  const db = await createBenchDatabase();
  const namespace = `bthc${processes}${RUN_ID}`;
  const nodes: NodeProcess[] = [];
  try {
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const common: Record<string, string> = {
      TRANSPORTER: NATS_URL,
      DATABASE_URL: db.url,
      NAMESPACE: namespace,
      CRAWL_ALLOW_HOSTS: "127.0.0.1",
      DB_BUDGET: String(DB_BUDGET),
      SERVICES: "api,crawler,ingestor",
    };
    if (redisOk) common.REDIS_URL = REDIS_URL;
    for (let i = 1; i <= processes; i++) nodes.push(startNode(`${namespace}-n${i}`, { ...common, PORT: i === 1 ? String(port) : "0" }));
    const output = () => nodes.map((n) => `${n.name}: ${n.output().slice(-1500)}`).join("\n");
    // Every node has joined (so every pool is sized to its share of the budget) before the crawl starts.
    await waitFor(async () => ((await http(api, "GET", "/api/throttle")).body.nodes?.length === processes ? true : undefined), 60_000, `${processes} nodes to join (${output()})`);
    site.resetStats();
    const created = await waitFor(async () => {
      const res = await http(api, "POST", "/api/crawls", { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH, maxPages: site.expectedPages + 100 });
      return res.status === 202 ? (res.body.id as number) : undefined;
    }, 30_000, "the cluster to accept a crawl");
    const crawl = await waitFor(async () => {
      const { body } = await http(api, "GET", `/api/crawls/${created}`);
      return FINISHED.has(body.status) ? body : undefined;
    }, TIMEOUT_MS, `the ${processes}-process crawl to finish`);
    const stored = crawl.pages.stored as number;
    const seconds = (new Date(crawl.finishedAt).getTime() - new Date(crawl.createdAt).getTime()) / 1000;
    const problems: string[] = [];
    if (crawl.status !== "succeeded") problems.push(`status ${crawl.status}`);
    if (stored !== site.expectedPages) problems.push(`stored ${stored} ≠ ${site.expectedPages}`);
    log(`  crawl with ${processes} process(es): ${stored} pages in ${seconds.toFixed(2)} s`);
    return { processes, pages: stored, seconds, pagesPerSec: stored / seconds, status: crawl.status, ok: problems.length === 0, ...(problems.length ? { note: problems.join(", ") } : {}) };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await db.drop();
    await deleteStreams(NATS_URL, namespace).catch(() => {});
    if (redisOk) await deleteLimiterKeys(`sluice:${namespace}:`);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Rate accuracy
// ---------------------------------------------------------------------------------------------

interface RateRow {
  limiter: string;
  configured: number;
  ops: number;
  observed: number;
  ratio: number;
  minGapMs: number;
  maxGapMs: number;
}

async function measureRates(redisOk: boolean): Promise<RateRow[]> {
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
        rows.push({ limiter: `LimiterHub ${label}`, configured: perSecond, ops: RATE_OPS, observed, ratio: observed / perSecond, minGapMs: Math.min(...gaps), maxGapMs: Math.max(...gaps) });
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

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const [redisOk, pgOk, natsOk] = [await probeRedis(), await probePostgres(), await probeNats()];
  console.log(
    `Sluice throttle benchmark: ${OPS} ops (unthrottled, Semaphore), ${BOTTLENECK_OPS} ops (Bottleneck), ` +
      `ingest ${INGEST_ROWS} rows × ${INGEST_ROUNDS} rounds (median), DB_BUDGET ${DB_BUDGET}, crawl of ${PAGES + 1} pages with ${PROCESSES.join("/") || "no"} process(es), ` +
      `rate runs of ${RATE_OPS} ops; Redis ${redisOk ? "yes" : "no"}, Postgres ${pgOk ? "yes" : "no"}, NATS ${natsOk ? "yes" : "no"}; ` +
      `node ${process.version}, ${os.cpus().length} CPU(s)`,
  );
  const started = performance.now();
  let failed = false;
  const skipped: string[] = [];

  log("1. cost per operation");
  const costs = await measureCosts(redisOk);
  skipped.push(...costs.skipped);

  log("2. ingest throughput");
  let ingest: DirectResult | null = null;
  const crawls: CrawlRow[] = [];
  if (!pgOk) skipped.push("ingest throughput (Postgres unreachable)");
  else {
    ingest = await measureIngest(redisOk);
    if (PROCESSES.length > 0 && !natsOk) skipped.push("multi-process crawls (NATS unreachable)");
    else if (PROCESSES.length > 0) {
      const site = await serveGeneratedSite({ pages: PAGES });
      try {
        for (const n of PROCESSES) {
          const row = await crawlWith(n, site, redisOk);
          if (!row.ok) failed = true;
          crawls.push(row);
        }
      } finally {
        await site.close();
      }
    }
  }

  log("3. rate accuracy");
  const rates = await measureRates(redisOk);

  // ---- Report ----
  const fmtUs = (us: number) => (us >= 100 ? us.toFixed(0) : us >= 1 ? us.toFixed(2) : us.toFixed(3));
  console.log("");
  console.log("1. Cost per operation (µs/op; × and overhead against the unthrottled call in the same mode)");
  console.log(
    table(
      ["throttle", "mode", "ops", "µs/op", "× unthrottled", "overhead µs/op"],
      costs.rows.map((r) => [r.throttle, r.mode === "bursts of queue max" ? `bursts of ${QUEUE_MAX}` : r.mode === "burst" ? "burst (all at once)" : r.mode, String(r.ops), fmtUs(r.usPerOp), r.ratio.toFixed(1), r.throttle.startsWith("unthrottled") ? "-" : fmtUs(r.overheadUs)]),
      2,
    ),
  );

  const semBurst = costs.rows.find((r) => r.throttle.startsWith("Semaphore") && r.mode === "burst")!;
  const semChunks = costs.rows.find((r) => r.throttle.startsWith("Semaphore") && r.mode === "bursts of queue max")!;
  console.log(
    `  Semaphore, all ${OPS} at once: ${fmtUs(semBurst.usPerOp)} µs/op against ${fmtUs(semChunks.usPerOp)} µs/op with at most ${QUEUE_MAX} waiting. The cost per waiter grows with the queue ` +
      `(its waiting list is an array drained with shift(), which V8 copies once it holds more than ~16k entries); in production DB_QUEUE_MAX (default ${QUEUE_MAX}) caps the queue.`,
  );
  console.log(
    `  Bottleneck's in-memory store yields through setTimeout(0) (≥ 1 ms) on each of its several calls per job; on Redis each call is a script round trip. So a job costs milliseconds, and Sluice gives it only: ` +
      `a connection slot per Postgres connection opened, a fetch slot per page fetched, and with DB_RATE one slot per database operation.`,
  );

  const semSeq = costs.rows.find((r) => r.throttle.startsWith("Semaphore") && r.mode === "sequential")!;
  const redisSeq = costs.rows.find((r) => r.throttle.includes("Redis") && r.mode === "sequential");
  const memSeq = costs.rows.find((r) => r.throttle.includes("in-memory") && r.mode === "sequential")!;

  interface Verdict {
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
  let goal: { plain: Verdict; dbRate: Verdict | null; estimatedShare: number; vsBareSameSql: number } | null = null;
  if (ingest) {
    const ir = ingest.rows;
    console.log("");
    console.log(
      `2a. Direct ingest: ${INGEST_ROWS} page rows (the generated site's page shape) into the real pages table, batches of ${INGEST_BATCH_SIZE}, ` +
        `median of ${INGEST_ROUNDS} interleaved rounds, every round from the same state; × is against the first row`,
    );
    console.log(
      table(
        ["mode", "connections", "rows", "seconds", "rows/s", "× bare INSERT", "rounds (rows/s)"],
        ir.map((r) => [r.mode, r.connections, String(r.rows), r.seconds.toFixed(3), r.rowsPerSec.toFixed(0), r.ratio.toFixed(3), r.rounds.map((x) => x.toFixed(0)).join(" ")]),
        2,
      ),
    );
    const on = ir.find((r) => r.mode.includes("throttle on ("))!;
    const sqlNarrow = ir.find((r) => r.mode.includes("ingestor's SQL") && r.connections === String(Math.min(DB_BUDGET, INGEST_MAX_IN_FLIGHT / INGEST_BATCH_SIZE)))!;
    const t = ingest.throttled;
    const slotUs = (redisSeq ?? memSeq).usPerOp;
    // The throttle's own work in a throttled round, priced at part 1's sequential per-op costs.
    const estimatedUs = t.acquiredPerRound * semSeq.overheadUs + t.slotsPerRound * slotUs;
    const estimatedShare = estimatedUs / 1e6 / t.seconds;
    const vsBareSameSql = 1 - on.rowsPerSec / sqlNarrow.rowsPerSec;
    goal = { plain: verdict(ingest.abRatios), dbRate: ingest.dbRateRatios.length ? verdict(ingest.dbRateRatios) : null, estimatedShare, vsBareSameSql };
    // The bypass swaps methods that runtime.ts looks up at call time; if that ever changes, the A/B measures nothing.
    if (ingest.bypassCheck.acquiredDuringBypass !== 0 || t.acquiredPerRound === 0) {
      failed = true;
      console.log(`  A/B INVALID: ${t.acquiredPerRound} permits per throttled round, ${ingest.bypassCheck.acquiredDuringBypass} while bypassed: the bypass no longer reaches the throttle (runtime.ts changed?).`);
    }
    const pct = (x: number, d = 1) => `${(100 * x).toFixed(d)}%`;
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
      `  Throttle cost, estimated from part 1 (permits × ${fmtUs(semSeq.overheadUs)} µs + slots × ${fmtUs(slotUs)} µs): ` +
        `${(estimatedUs / 1000).toFixed(3)} ms of a ${(t.seconds * 1000).toFixed(0)} ms round = ${pct(estimatedShare, 3)}.`,
    );
    console.log(
      `  Sluice (throttle on) vs bare pg running the ingestor's statements at its concurrency (${sqlNarrow.connections} connections): ${pct(vsBareSameSql)} slower; ` +
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

    if (crawls.length > 0) {
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
            [`bare pg: INSERT … ON CONFLICT only, ${DB_BUDGET} connections`, "-", String(cb.rows), (cb.rows / cb.rowsPerSec).toFixed(3), cb.rowsPerSec.toFixed(0), "1.000", "ok"],
            ...crawls.map((c) => [`sluice crawl`, String(c.processes), String(c.pages), c.seconds.toFixed(2), c.pagesPerSec.toFixed(0), (c.pagesPerSec / cb.rowsPerSec).toFixed(3), c.ok ? "ok" : `FAIL: ${c.note}`]),
          ],
          1,
        ),
      );
      console.log(
        `  Apples to oranges: a crawl also fetches and parses every page, claims and settles each URL in the frontier (several statements per page) and ships pages over NATS, ` +
          `on ${os.cpus().length} CPU(s) shared by every process and Postgres; seconds are the crawl's createdAt → finishedAt. 2a isolates the ingest path.`,
      );
    }
  }

  console.log("");
  console.log(`3. Rate accuracy: ${RATE_OPS} operations submitted at once to a rate-only limiter; observed = (ops − 1) ÷ (last start − first start)`);
  console.log(
    table(
      ["limiter", "configured/s", "ops", "observed/s", "observed ÷ configured", "min gap ms", "max gap ms"],
      rates.map((r) => [r.limiter, String(r.configured), String(r.ops), r.observed.toFixed(2), r.ratio.toFixed(3), r.minGapMs.toFixed(1), r.maxGapMs.toFixed(1)]),
    ),
  );
  if (skipped.length > 0) console.log(`\nSkipped: ${skipped.join("; ")}`);
  const totalSeconds = (performance.now() - started) / 1000;
  console.log(`\nTotal ${totalSeconds.toFixed(1)} s.`);

  const summary = {
    bench: "throttle",
    at: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    dbBudget: DB_BUDGET,
    costs: costs.rows.map((r) => ({ throttle: r.throttle, mode: r.mode, ops: r.ops, usPerOp: round(r.usPerOp), ratio: round(r.ratio, 2), overheadUs: round(r.overheadUs) })),
    ingest: ingest && {
      rows: ingest.rows.map((r) => ({ mode: r.mode, connections: r.connections, rows: r.rows, rowsPerSec: round(r.rowsPerSec, 1), ratio: round(r.ratio), rounds: r.rounds.map((x) => round(x, 1)) })),
      throttled: ingest.throttled,
      abRatios: ingest.abRatios.map((x) => round(x, 4)),
      dbRate: DB_RATE ? formatRate(DB_RATE) : null,
      dbRateRatios: ingest.dbRateRatios.map((x) => round(x, 4)),
      crawlBaseline: { rows: ingest.crawlBaseline.rows, rowsPerSec: round(ingest.crawlBaseline.rowsPerSec, 1) },
    },
    crawls: crawls.map((c) => ({ processes: c.processes, pages: c.pages, seconds: round(c.seconds), pagesPerSec: round(c.pagesPerSec, 1), ratio: ingest ? round(c.pagesPerSec / ingest.crawlBaseline.rowsPerSec) : null, ok: c.ok })),
    rates: rates.map((r) => ({ limiter: r.limiter, configured: r.configured, ops: r.ops, observed: round(r.observed, 2), ratio: round(r.ratio), minGapMs: round(r.minGapMs, 1), maxGapMs: round(r.maxGapMs, 1) })),
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
  console.log("");
  console.log(JSON.stringify(summary));
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Everything is closed by now; if something still holds the loop open, say what and leave.
    setTimeout(() => {
      log(`bench: handles still open after 10 s: ${process.getActiveResourcesInfo().join(", ")}`);
      process.exit(code || 2);
    }, 10_000).unref();
  },
  (err: unknown) => {
    console.error("bench failed:", err);
    process.exit(1);
  },
);
