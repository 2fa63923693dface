// Crawl throughput benchmark: `npm run bench:crawl`. See bench/README.md.
//
// Serves a generated site on 127.0.0.1, measures what a bare undici fetch loop can pull from it
// (and the same loop plus the crawler's own parsing (extractPage, htmlparser2)), then crawls it with Sluice in embedded mode (PGlite,
// one process) and, when DATABASE_URL is set, against a fresh database on that Postgres server.
// Every figure comes from one process on one machine: compare rows with each other, not with
// other machines.
//
// Knobs (environment):
//   BENCH_PAGES             pages of the generated site (default 2000; the entry page is one more)
//   BENCH_HOST_CONCURRENCY  CRAWL_HOST_CONCURRENCY given to Sluice and the baselines' concurrency
//                           (default: Sluice's default, 8)
//   BENCH_NODE_CONCURRENCY  CRAWL_NODE_CONCURRENCY given to Sluice (default: Sluice's default, 16)
//   BENCH_DELAY_MS          latency the site adds to every response (default 0)
//   BENCH_BASELINE_ROUNDS   passes of each baseline; the median is reported (default 5)
//   BENCH_DB_NODE_CONCURRENCY       DB_NODE_CONCURRENCY for the Postgres run (default: Sluice's default, 4; embedded mode always uses 1)
//   BENCH_TRACE=1           also print where Sluice's database time goes (queries, pool waits; on
//                           Postgres, what the server's sessions wait on, from pg_stat_activity)
//   BENCH_TIMEOUT_S         give up on a crawl still unfinished after this long, and fail (default 600)
//   BENCH_SKIP_EMBEDDED=1   leave out the embedded run (with DATABASE_URL: Postgres only)
//   DATABASE_URL            admin URL of a Postgres server: adds a run against a fresh database there
import os from "node:os";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { Agent, request } from "undici";
import { DEFAULT_CRAWL_HOST_CONCURRENCY, DEFAULT_CRAWL_NODE_CONCURRENCY } from "../lib/platform/config";
import { serveGeneratedSite, type GeneratedSiteServer, type RequestLog } from "../fixtures/site-server";
import { formatCrawl } from "../repl/commands";
import type { Sluice } from "../runtime";
import { MAX_MAX_PAGES, type CrawlView } from "../services/crawls.service";
import { bootSluiceForCrawls, medianPass, timedCrawl, timedFetchLoop } from "./crawl-support";
import { createBenchDatabase, intEnv, log, round, runBench, table as textTable } from "./support";

const PAGES = intEnv("BENCH_PAGES", 2000, 1, MAX_MAX_PAGES - 1);
const HOST_CONCURRENCY = intEnv("BENCH_HOST_CONCURRENCY", DEFAULT_CRAWL_HOST_CONCURRENCY, 1, 1000);
const NODE_CONCURRENCY = intEnv("BENCH_NODE_CONCURRENCY", DEFAULT_CRAWL_NODE_CONCURRENCY, 1, 1000);
const DELAY_MS = intEnv("BENCH_DELAY_MS", 0, 0, 60_000);
const BASELINE_ROUNDS = intEnv("BENCH_BASELINE_ROUNDS", 5, 1, 100);
const DB_NODE_CONCURRENCY = process.env.BENCH_DB_NODE_CONCURRENCY?.trim() ? intEnv("BENCH_DB_NODE_CONCURRENCY", 4, 1, 100) : null;
const CRAWL_TIMEOUT_S = intEnv("BENCH_TIMEOUT_S", 600, 1, 86_400);
const SKIP_EMBEDDED = process.env.BENCH_SKIP_EMBEDDED === "1";
const TRACE = process.env.BENCH_TRACE === "1";
const ADMIN_DATABASE_URL = process.env.DATABASE_URL?.trim() || null;

// ---------------------------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------------------------

/** Samples RSS while a phase runs; process.resourceUsage().maxRSS only knows the lifetime peak. */
async function withRssPeak<T>(fn: () => Promise<T>): Promise<{ value: T; rssPeakBytes: number }> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 25);
  try {
    const value = await fn();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { value, rssPeakBytes: peak };
  } finally {
    clearInterval(timer);
  }
}

/** What the site saw during one phase: how busy the crawler (or the loop) kept it. */
interface SiteStats {
  requests: number;
  /** First request's start to last request's end, ms. */
  spanMs: number;
  /** Sum of request durations ÷ span: requests in flight on average. */
  avgInFlight: number;
  peakInFlight: number;
  /** Silences of STALL_MS or more between one request's arrival and the next: the client was busy elsewhere. */
  stalls: number;
  stallMs: number;
  maxGapMs: number;
}

const STALL_MS = 50;

function siteStats(requests: RequestLog[], peakInFlight: number): SiteStats {
  const done = requests.filter((r) => r.end >= 0).sort((a, b) => a.start - b.start);
  const stats: SiteStats = { requests: done.length, spanMs: 0, avgInFlight: 0, peakInFlight, stalls: 0, stallMs: 0, maxGapMs: 0 };
  if (done.length === 0) return stats;
  stats.spanMs = Math.max(...done.map((r) => r.end)) - done[0]!.start;
  stats.avgInFlight = done.reduce((sum, r) => sum + (r.end - r.start), 0) / Math.max(stats.spanMs, 1e-9);
  for (let i = 1; i < done.length; i++) {
    const gap = done[i]!.start - done[i - 1]!.start;
    stats.maxGapMs = Math.max(stats.maxGapMs, gap);
    if (gap >= STALL_MS) {
      stats.stalls++;
      stats.stallMs += gap;
    }
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Sluice runs
// ---------------------------------------------------------------------------------------------

interface DbTrace {
  queries: number;
  queryMs: number;
  acquireWaits: number;
  acquireWaitMs: number;
  byKind: Map<string, { n: number; ms: number }>;
}

/** Counts and times every query through Sequelize's hooks (BENCH_TRACE=1). */
function traceDb(sluice: Sluice): DbTrace {
  const trace: DbTrace = { queries: 0, queryMs: 0, acquireWaits: 0, acquireWaitMs: 0, byKind: new Map() };
  const started = new WeakMap<object, number>();
  const acquiring = new WeakMap<object, number>();
  const db = sluice.db;
  db.addHook("beforePoolAcquire", (options: object) => void acquiring.set(options ?? trace, performance.now()));
  db.addHook("afterPoolAcquire", (_conn: unknown, options: object) => {
    const t0 = acquiring.get(options ?? trace);
    if (t0 === undefined) return;
    trace.acquireWaits++;
    trace.acquireWaitMs += performance.now() - t0;
  });
  db.addHook("beforeQuery", (_options: unknown, query: object) => void started.set(query, performance.now()));
  db.addHook("afterQuery", (_options: unknown, query: object) => {
    const t0 = started.get(query);
    if (t0 === undefined) return;
    const ms = performance.now() - t0;
    trace.queries++;
    trace.queryMs += ms;
    const sql = String((query as { sql?: string }).sql ?? "")
      .replace(/\s+/g, " ")
      .trim();
    const kind = sql.slice(0, 60) || "?";
    const k = trace.byKind.get(kind) ?? { n: 0, ms: 0 };
    k.n++;
    k.ms += ms;
    trace.byKind.set(kind, k);
  });
  return trace;
}

/** What the server's sessions for one database were doing, sampled from pg_stat_activity (BENCH_TRACE=1, Postgres). */
interface PgWaitTrace {
  samples: number;
  /** "wait_event_type/wait_event  query" → active sessions seen in that state, summed over samples. */
  states: Map<string, number>;
  stop(): Promise<void>;
}

async function samplePgActivity(databaseUrl: string): Promise<PgWaitTrace> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const trace: PgWaitTrace = { samples: 0, states: new Map(), stop: async () => {} };
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query<{ w: string; q: string }>(
        `SELECT coalesce(wait_event_type || '/' || wait_event, 'on CPU') AS w, left(regexp_replace(query, '\\s+', ' ', 'g'), 50) AS q
           FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'`,
      );
      trace.samples++;
      for (const r of rows) {
        const key = `${r.w.padEnd(24)} ${r.q}`;
        trace.states.set(key, (trace.states.get(key) ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  trace.stop = async () => {
    running = false;
    await loop.catch(() => {});
    await client.end();
  };
  return trace;
}

interface SluiceRun {
  crawl: CrawlView;
  /** create → finished, from the crawl's own timestamps (database clock). */
  seconds: number;
  /** create call → status "succeeded" seen by the polling client (includes up to one poll interval). */
  observedSeconds: number;
  bootSeconds: number;
  rssAfterBootBytes: number;
  site: SiteStats;
  trace: DbTrace | null;
  pgWaits: PgWaitTrace | null;
  /** CPU time of this process (main thread and workers, PGlite included) during the crawl. */
  cpuSeconds: number;
}

async function runSluice(label: string, site: GeneratedSiteServer, databaseUrl: string | null): Promise<SluiceRun> {
  const booted = await bootSluiceForCrawls({
    label,
    databaseUrl,
    hostConcurrency: HOST_CONCURRENCY,
    nodeConcurrency: NODE_CONCURRENCY,
    allowHosts: "127.0.0.1",
    dbNodeConcurrency: DB_NODE_CONCURRENCY,
  });
  try {
    const trace = TRACE ? traceDb(booted.sluice) : null;
    const pgWaits = TRACE && databaseUrl ? await samplePgActivity(databaseUrl) : null;
    site.resetStats();
    const run = await timedCrawl(booted.sluice, label, site.entryUrl, Math.min(MAX_MAX_PAGES, site.expectedPages + 100), CRAWL_TIMEOUT_S);
    await pgWaits?.stop();
    return {
      ...run,
      bootSeconds: booted.bootSeconds,
      rssAfterBootBytes: booted.rssAfterBootBytes,
      site: siteStats(site.requests, site.inFlightPeak),
      trace,
      pgWaits,
    };
  } finally {
    await booted.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

interface Row {
  mode: string;
  pages: number;
  seconds: number;
  pagesPerSec: number;
  ratio: number | null;
  rssPeakMiB: number;
  /** CPU seconds of this process (all threads) ÷ wall seconds. The Postgres server's CPU is not included. */
  cpuShare: number;
  ok: boolean;
  note?: string;
}

function table(rows: Row[]): string {
  const head = ["mode", "pages", "seconds", "pages/s", "× bare fetch", "RSS peak MiB", "CPU", "check"];
  const body = rows.map((r) => [
    r.mode,
    String(r.pages),
    r.seconds.toFixed(2),
    r.pagesPerSec.toFixed(0),
    r.ratio === null ? "-" : r.ratio.toFixed(3),
    r.rssPeakMiB.toFixed(0),
    `${(100 * r.cpuShare).toFixed(0)}%`,
    r.ok ? "ok" : `FAIL${r.note ? `: ${r.note}` : ""}`,
  ]);
  return textTable(head, body);
}

const mib = (bytes: number): number => bytes / (1024 * 1024);

function printTrace(label: string, run: SluiceRun): void {
  const t = run.trace;
  if (!t) return;
  const wallMs = run.seconds * 1000;
  console.log(
    `\nDB trace (${label}): ${t.queries} queries, ${(t.queryMs / 1000).toFixed(2)} s summed query time ` +
      `(${((100 * t.queryMs) / wallMs).toFixed(0)}% of the crawl's wall time), ${t.acquireWaits} pool acquisitions waiting ` +
      `${(t.acquireWaitMs / 1000).toFixed(2)} s in total (${t.acquireWaits ? (t.acquireWaitMs / t.acquireWaits).toFixed(1) : "0"} ms each)`,
  );
  const kinds = [...t.byKind.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 10);
  for (const [kind, k] of kinds) {
    console.log(
      `  ${String(k.n).padStart(7)} × ${(k.ms / k.n).toFixed(2).padStart(7)} ms = ${(k.ms / 1000).toFixed(2).padStart(6)} s  ${kind}`,
    );
  }
  const w = run.pgWaits;
  if (w && w.samples > 0) {
    console.log(`  pg_stat_activity, ${w.samples} samples: active sessions on average, by wait event and query`);
    for (const [key, n] of [...w.states.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
      console.log(`  ${(n / w.samples).toFixed(2).padStart(7)}  ${key}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const site = await serveGeneratedSite({ pages: PAGES, delayMs: DELAY_MS });
  const agentlessWarmup = new Agent({ connections: 1 });
  const rows: Row[] = [];
  const runs: Record<string, SluiceRun> = {};
  const baselineSite: Record<string, SiteStats> = {};
  let failed = false;
  try {
    const urls = [site.entryUrl, ...Array.from({ length: PAGES }, (_, i) => `${site.url}/p/${i}`)];
    if (urls.length !== site.expectedPages) throw new Error(`URL list has ${urls.length} entries, the site expects ${site.expectedPages}`);
    if (SKIP_EMBEDDED && !ADMIN_DATABASE_URL) throw new Error("BENCH_SKIP_EMBEDDED=1 without DATABASE_URL leaves nothing to run");
    console.log(
      `Sluice crawl benchmark: ${site.expectedPages} pages (entry + /p/0../p/${PAGES - 1}), depth needed ${site.depthNeeded}, ` +
        `host concurrency ${HOST_CONCURRENCY}, node concurrency ${NODE_CONCURRENCY}, site delay ${DELAY_MS} ms, ` +
        `baselines: median of ${BASELINE_ROUNDS} pass(es), ` +
        `node ${process.version}, ${os.cpus().length} CPU(s)`,
    );

    // Warm up the server (and undici) with one request.
    const warm = await request(site.entryUrl, { dispatcher: agentlessWarmup });
    await warm.body.text();
    await agentlessWarmup.close();

    // A baseline pass over 2,000 small pages takes well under a second, so one pass is noisy:
    // each is run BASELINE_ROUNDS times and the median pass is reported.
    for (const [mode, parse] of [
      ["bare undici fetch", false],
      ["undici fetch + extractPage", true],
    ] as const) {
      const passes: { seconds: number; cpuSeconds: number; site: SiteStats }[] = [];
      const { rssPeakBytes } = await withRssPeak(async () => {
        for (let i = 0; i < BASELINE_ROUNDS; i++) {
          site.resetStats();
          const pass = await timedFetchLoop(urls, HOST_CONCURRENCY, parse);
          passes.push({ ...pass, site: siteStats(site.requests, site.inFlightPeak) });
        }
      });
      const median = medianPass(passes);
      baselineSite[mode] = median.site;
      log(`  [${mode}] passes: ${passes.map((p) => p.seconds.toFixed(3)).join(", ")} s`);
      rows.push({
        mode,
        pages: urls.length,
        seconds: median.seconds,
        pagesPerSec: urls.length / median.seconds,
        ratio: null,
        rssPeakMiB: mib(rssPeakBytes),
        cpuShare: median.cpuSeconds / median.seconds,
        ok: true,
      });
    }
    const base = rows[0]!.pagesPerSec;
    for (const r of rows) r.ratio = r.pagesPerSec / base;

    const modes: { label: string; mode: string; databaseUrl: () => Promise<{ url: string | null; drop(): Promise<void> }> }[] = [];
    if (!SKIP_EMBEDDED) {
      modes.push({ label: "embedded", mode: "sluice embedded (PGlite)", databaseUrl: async () => ({ url: null, drop: async () => {} }) });
    }
    if (ADMIN_DATABASE_URL) {
      modes.push({
        label: "postgres",
        mode: "sluice postgres",
        databaseUrl: async () => {
          const created = await createBenchDatabase(ADMIN_DATABASE_URL);
          log(`  created database ${created.name}`);
          return created;
        },
      });
    }
    for (const m of modes) {
      const db = await m.databaseUrl();
      try {
        const { value: run, rssPeakBytes } = await withRssPeak(() => runSluice(m.label, site, db.url));
        runs[m.label] = run;
        const p = run.crawl.pages;
        const problems: string[] = [];
        if (run.crawl.status !== "succeeded") problems.push(`status ${run.crawl.status}${run.crawl.error ? ` (${run.crawl.error})` : ""}`);
        if (p.stored !== site.expectedPages) problems.push(`stored ${p.stored} ≠ ${site.expectedPages}`);
        if (problems.length > 0) failed = true;
        const pagesPerSec = p.stored / run.seconds;
        rows.push({
          mode: m.mode,
          pages: p.stored,
          seconds: run.seconds,
          pagesPerSec,
          ratio: pagesPerSec / base,
          rssPeakMiB: mib(rssPeakBytes),
          cpuShare: run.cpuSeconds / run.observedSeconds,
          ok: problems.length === 0,
          ...(problems.length ? { note: problems.join(", ") } : {}),
        });
      } finally {
        await db.drop();
      }
    }
  } finally {
    await site.close();
  }

  console.log("");
  console.log(table(rows));
  console.log("");
  console.log(`What the site saw (in flight: requests being served at once; stall: ≥ ${STALL_MS} ms between two request arrivals):`);
  const siteRows: [string, SiteStats][] = [
    ...Object.entries(baselineSite),
    ...Object.entries(runs).map(([label, r]) => [`sluice ${label}`, r.site] as [string, SiteStats]),
  ];
  for (const [mode, s] of siteRows) {
    console.log(
      `  ${mode.padEnd(24)} ${String(s.requests).padStart(6)} requests in ${(s.spanMs / 1000).toFixed(2)} s, ` +
        `in flight avg ${s.avgInFlight.toFixed(2)} peak ${s.peakInFlight}, ` +
        `${s.stalls} stalls totalling ${(s.stallMs / 1000).toFixed(2)} s, longest gap ${s.maxGapMs.toFixed(0)} ms`,
    );
  }
  for (const [label, run] of Object.entries(runs)) {
    console.log(
      `  sluice ${label}: boot ${run.bootSeconds.toFixed(2)} s (not timed, RSS ${mib(run.rssAfterBootBytes).toFixed(0)} MiB after it), crawl ${run.seconds.toFixed(2)} s by the crawl's timestamps, ` +
        `${run.observedSeconds.toFixed(2)} s as seen by the polling client; ${formatCrawl(run.crawl)}`,
    );
  }
  for (const [label, run] of Object.entries(runs)) printTrace(label, run);

  const summary = {
    bench: "crawl",
    at: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    pages: PAGES + 1,
    hostConcurrency: HOST_CONCURRENCY,
    nodeConcurrency: NODE_CONCURRENCY,
    delayMs: DELAY_MS,
    baselineRounds: BASELINE_ROUNDS,
    results: rows.map((r) => ({
      mode: r.mode,
      pages: r.pages,
      seconds: round(r.seconds),
      pagesPerSec: round(r.pagesPerSec, 1),
      ratio: r.ratio === null ? null : round(r.ratio),
      rssPeakMiB: round(r.rssPeakMiB, 1),
      cpuShare: round(r.cpuShare, 2),
      ok: r.ok,
    })),
    sluice: Object.fromEntries(
      Object.entries(runs).map(([label, r]) => [
        label,
        {
          bootSeconds: round(r.bootSeconds),
          rssAfterBootMiB: round(mib(r.rssAfterBootBytes), 1),
          observedSeconds: round(r.observedSeconds),
          status: r.crawl.status,
          pages: r.crawl.pages,
          stalls: r.site.stalls,
          stallSeconds: round(r.site.stallMs / 1000),
          maxGapMs: round(r.site.maxGapMs, 0),
        },
      ]),
    ),
    maxRssMiB: round(process.resourceUsage().maxRSS / 1024, 1),
  };
  console.log("");
  console.log(JSON.stringify(summary));
  return failed ? 1 : 0;
}

runBench(main);
