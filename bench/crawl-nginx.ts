// Crawl benchmark on a real static site: `npm run bench:crawl:nginx`. See bench/README.md.
//
// Serves Debian's PostgreSQL manual (postgresql-doc-15, ~1,169 HTML pages) with nginx on 127.0.0.1
// and, in one run at one concurrency, measures a bare undici fetch loop over its pages, a Sluice
// crawl storing them in PostgreSQL, the same root crawled again (the recrawl: what nginx sent, how
// many 304s), and Scrapy; then checks the crawler's parser against cheerio on every page. What nginx
// sent is read from its own access log ($status, $bytes_sent, $body_bytes_sent), phase by phase.
//
// Knobs (environment):
//   BENCH_CONCURRENCY          fetches at once, for all three: Sluice's CRAWL_HOST_CONCURRENCY and
//                              CRAWL_NODE_CONCURRENCY, the undici loop's workers and connections,
//                              Scrapy's CONCURRENT_REQUESTS(_PER_DOMAIN) (default 16)
//   BENCH_BASELINE_ROUNDS      passes of the undici loop; the median is reported (default 5)
//   BENCH_SLUICE_ROUNDS        Sluice's crawl and recrawl, each in a new database; the median of each is
//                              reported, and every round's figures are logged (default 3)
//   BENCH_DB_NODE_CONCURRENCY  DB_NODE_CONCURRENCY for Sluice (default: Sluice's default)
//   BENCH_TIMEOUT_S            a crawl (or Scrapy) still unfinished after this long fails the run (default 600)
//   BENCH_DOC_DIR              the site's directory (default /usr/share/doc/postgresql-doc-15/html)
//   BENCH_NGINX_BIN            the nginx binary (default nginx on PATH, else /usr/sbin/nginx)
//   BENCH_PYTHON               the Python that runs Scrapy (default python3, else /usr/bin/python3)
//   BENCH_SCRAPY=0             leave Scrapy out
//   BENCH_RECRAWL=0            leave the recrawl out
//   BENCH_PARSER_CHECK=0       leave the extractPage-vs-cheerio check out
//   DATABASE_URL               admin URL of the Postgres server (default postgres://postgres@127.0.0.1:5432/test)
//
// Exit code: 2 when something to install is missing (the message says what), 1 when a run is wrong
// (a crawl failed or missed pages, nginx answered the baseline with anything but 200), else 0. A
// target not met is reported, not an exit code.
import fs from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { formatCrawl } from "../repl/commands";
import type { CrawlView } from "../services/crawls.service";
import { bootSluiceForCrawls, medianPass, timedCrawl, timedFetchLoop, type TimedCrawl } from "./crawl-support";
import { findNginx, startNginx, type NginxSite, type PhaseTraffic } from "./nginx";
import { compareWithCheerio, describeDifference, type ParserCheck } from "./parser-check";
import { findScrapyPython, runScrapy, type ScrapyRun } from "./scrapy";
import { createBenchDatabase, intEnv, log, round, runBench, table } from "./support";

const CONCURRENCY = intEnv("BENCH_CONCURRENCY", 16, 1, 1000);
const BASELINE_ROUNDS = intEnv("BENCH_BASELINE_ROUNDS", 5, 1, 100);
const SLUICE_ROUNDS = intEnv("BENCH_SLUICE_ROUNDS", 3, 1, 20);
const DB_NODE_CONCURRENCY = process.env.BENCH_DB_NODE_CONCURRENCY?.trim() ? intEnv("BENCH_DB_NODE_CONCURRENCY", 4, 1, 100) : null;
const CRAWL_TIMEOUT_S = intEnv("BENCH_TIMEOUT_S", 600, 1, 86_400);
const DOC_DIR = process.env.BENCH_DOC_DIR?.trim() || "/usr/share/doc/postgresql-doc-15/html";
const ROOT_PAGE = "index.html";
const WITH_SCRAPY = process.env.BENCH_SCRAPY !== "0";
const WITH_RECRAWL = process.env.BENCH_RECRAWL !== "0";
const WITH_PARSER_CHECK = process.env.BENCH_PARSER_CHECK !== "0";
const ADMIN_DATABASE_URL = process.env.DATABASE_URL?.trim() || "postgres://postgres@127.0.0.1:5432/test";

// The issue's targets.
const TARGET_VS_UNDICI = 0.8;
const TARGET_VS_SCRAPY = 2;
const TARGET_RECRAWL_BYTES = 0.05;
const TARGET_RECRAWL_SPEEDUP = 3;

interface Prerequisites {
  nginx: string;
  python: string | null;
}

/** Everything to install, said at once; null when something is missing. */
function prerequisites(): Prerequisites | null {
  const missing: string[] = [];
  if (!fs.existsSync(`${DOC_DIR}/${ROOT_PAGE}`)) {
    missing.push(`the site: no ${DOC_DIR}/${ROOT_PAGE} (apt-get install -y postgresql-doc-15, or set BENCH_DOC_DIR)`);
  }
  const nginx = findNginx(process.env.BENCH_NGINX_BIN?.trim() || undefined);
  if (!nginx) missing.push("nginx: not found (apt-get install -y nginx, or set BENCH_NGINX_BIN)");
  const explicitPython = process.env.BENCH_PYTHON?.trim() || undefined;
  const python = WITH_SCRAPY ? findScrapyPython(explicitPython) : null;
  if (WITH_SCRAPY && !python) {
    missing.push(
      `Scrapy: ${explicitPython ?? "neither python3 nor /usr/bin/python3"} cannot import scrapy (apt-get install -y python3-scrapy, ` +
        "set BENCH_PYTHON to a Python that has it, or BENCH_SCRAPY=0 to leave Scrapy out)",
    );
  }
  if (missing.length > 0 || !nginx) {
    console.error(`bench:crawl:nginx cannot run; missing:\n${missing.map((m) => `  - ${m}`).join("\n")}`);
    return null;
  }
  return { nginx, python };
}

interface Row {
  mode: string;
  pages: number;
  seconds: number;
  traffic: PhaseTraffic;
  problems: string[];
}

const pagesPerSec = (r: { pages: number; seconds: number }): number => r.pages / r.seconds;
const mib = (bytes: number): number => bytes / (1024 * 1024);
const count = (t: PhaseTraffic, status: number): number => t.byStatus[status] ?? 0;
/** The crawl's `unchanged` count (pages answered 304), once the crawls service reports one. */
const unchangedOf = (crawl: CrawlView): number | null => {
  const n = (crawl.pages as Record<string, unknown>).unchanged;
  return typeof n === "number" ? n : null;
};

function crawlProblems(run: TimedCrawl, expected: number, recrawl: boolean): string[] {
  const { crawl } = run;
  const problems: string[] = [];
  if (crawl.status !== "succeeded") problems.push(`status ${crawl.status}${crawl.error ? ` (${crawl.error})` : ""}`);
  // A recrawl may count the pages answered 304 as unchanged rather than stored.
  const accounted = crawl.pages.stored + (recrawl ? (unchangedOf(crawl) ?? 0) : 0);
  if (crawl.pages.stored !== expected && accounted !== expected) problems.push(`stored ${crawl.pages.stored} ≠ ${expected}`);
  return problems;
}

async function baseline(site: NginxSite, urls: string[]): Promise<Row> {
  const passes: { seconds: number; traffic: PhaseTraffic }[] = [];
  for (let i = 0; i < BASELINE_ROUNDS; i++) {
    const pass = await timedFetchLoop(urls, CONCURRENCY, false);
    passes.push({ ...pass, traffic: await site.phase(`undici ${i + 1}`) });
  }
  log(`  [bare undici fetch] passes: ${passes.map((p) => p.seconds.toFixed(3)).join(", ")} s`);
  const median = medianPass(passes);
  const problems = passes.some((p) => count(p.traffic, 200) !== urls.length) ? ["a pass got answers other than 200"] : [];
  return { mode: "bare undici fetch", pages: urls.length, seconds: median.seconds, traffic: median.traffic, problems };
}

interface SluiceRuns {
  first: Row & { run: TimedCrawl };
  recrawl: (Row & { run: TimedCrawl }) | null;
  bootSeconds: number;
}

/**
 * Sluice's runs, SLUICE_ROUNDS times: one crawl's time on a 2-core machine moves with whatever else
 * runs, so each figure is the median round's, and a problem in any round is reported.
 */
async function sluiceRounds(site: NginxSite, root: string, expected: number): Promise<SluiceRuns> {
  const rounds: SluiceRuns[] = [];
  for (let i = 0; i < SLUICE_ROUNDS; i++) rounds.push(await sluice(site, root, expected));
  const seconds = (runs: (Row | null)[]) => runs.map((r) => r?.seconds.toFixed(2)).join(", ");
  log(
    `  [sluice] ${rounds.length} round(s): crawl ${seconds(rounds.map((r) => r.first))} s; recrawl ${seconds(rounds.map((r) => r.recrawl))} s`,
  );
  const median = <T extends Row>(runs: T[]): T => ({ ...medianPass(runs), problems: [...new Set(runs.flatMap((r) => r.problems))] });
  const recrawls = rounds.flatMap((r) => (r.recrawl ? [r.recrawl] : []));
  return {
    first: median(rounds.map((r) => r.first)),
    recrawl: recrawls.length > 0 ? median(recrawls) : null,
    bootSeconds: rounds[0]!.bootSeconds,
  };
}

async function sluice(site: NginxSite, root: string, expected: number): Promise<SluiceRuns> {
  const db = await createBenchDatabase(ADMIN_DATABASE_URL);
  log(`  created database ${db.name}`);
  try {
    const booted = await bootSluiceForCrawls({
      label: "nginx",
      databaseUrl: db.url,
      hostConcurrency: CONCURRENCY,
      nodeConcurrency: CONCURRENCY,
      allowHosts: `127.0.0.1:${site.port}`,
      dbNodeConcurrency: DB_NODE_CONCURRENCY,
    });
    try {
      const crawl = async (mode: string, recrawl: boolean) => {
        const run = await timedCrawl(booted.sluice, mode, root, expected + 100, CRAWL_TIMEOUT_S);
        const traffic = await site.phase(mode);
        // A recrawl's pages are those stored again and those nginx answered 304 for (unchanged).
        const pages = run.crawl.pages.stored + (recrawl ? (unchangedOf(run.crawl) ?? 0) : 0);
        return { mode, pages, seconds: run.seconds, traffic, problems: crawlProblems(run, expected, recrawl), run };
      };
      const first = await crawl("sluice postgres", false);
      const recrawl = WITH_RECRAWL ? await crawl("sluice recrawl", true) : null;
      return { first, recrawl, bootSeconds: booted.bootSeconds };
    } finally {
      await booted.stop();
    }
  } finally {
    await db.drop();
  }
}

async function scrapy(site: NginxSite, python: string, root: string, expected: number): Promise<Row & { run: ScrapyRun }> {
  log(`  [scrapy] ${python} -m scrapy runspider bench/scrapy_spider.py`);
  const run = await runScrapy(python, root, CONCURRENCY, CRAWL_TIMEOUT_S);
  const traffic = await site.phase("scrapy");
  log(`  [scrapy] ${run.pages} pages in ${run.seconds.toFixed(2)} s (process ${run.processSeconds.toFixed(2)} s), ${run.finishReason}`);
  const problems = run.pages === expected ? [] : [`parsed ${run.pages} ≠ ${expected}`];
  return { mode: "scrapy", pages: run.pages, seconds: run.seconds, traffic, problems, run };
}

/** A target's row: the value, the goal, and met / NOT met (n/a when its part did not run). */
function verdict(label: string, value: number | null, op: "≥" | "<", target: number): string[] {
  const met = value === null ? "n/a" : (op === "≥" ? value >= target : value < target) ? "met" : "NOT met";
  return [label, value === null ? "-" : value.toFixed(3), `${op} ${target}`, met];
}

async function main(): Promise<number> {
  const started = performance.now();
  const pre = prerequisites();
  if (!pre) return 2;
  const files = fs
    .readdirSync(DOC_DIR)
    .filter((f) => f.endsWith(".html"))
    .sort();
  const site = await startNginx(pre.nginx, DOC_DIR);
  const root = `${site.origin}/${ROOT_PAGE}`;
  // Every page of the manual is linked from the root within 2 hops; the crawl stores each once.
  const urls = [root, ...files.filter((f) => f !== ROOT_PAGE).map((f) => `${site.origin}/${f}`)];
  const rows: Row[] = [];
  let sluiceRuns: SluiceRuns;
  let scrapyRow: (Row & { run: ScrapyRun }) | null = null;
  try {
    console.log(
      `Sluice crawl benchmark on nginx ${site.origin} serving ${DOC_DIR}: ${urls.length} pages from ${ROOT_PAGE}, ` +
        `concurrency ${CONCURRENCY} (undici, Sluice host and node, Scrapy), undici: median of ${BASELINE_ROUNDS} pass(es), ` +
        `node ${process.version}, ${os.cpus().length} CPU(s)`,
    );
    // Warm nginx and the page cache with one pass that is not counted.
    await timedFetchLoop(urls, CONCURRENCY, false);
    await site.phase("warm-up");
    rows.push(await baseline(site, urls));
    sluiceRuns = await sluiceRounds(site, root, urls.length);
    rows.push(sluiceRuns.first);
    if (sluiceRuns.recrawl) rows.push(sluiceRuns.recrawl);
    if (pre.python) {
      scrapyRow = await scrapy(site, pre.python, root, urls.length);
      rows.push(scrapyRow);
    }
  } finally {
    await site.stop();
  }
  let parser: ParserCheck | null = null;
  if (WITH_PARSER_CHECK) {
    log(`  [parser] extractPage and cheerio over ${files.length} pages`);
    parser = compareWithCheerio(DOC_DIR, files, site.origin);
  }

  const base = rows[0]!;
  console.log("");
  console.log(
    table(
      ["mode", "pages", "seconds", "pages/s", "× bare fetch", "requests", "MiB sent", "304s", "check"],
      rows.map((r) => [
        r.mode,
        String(r.pages),
        r.seconds.toFixed(2),
        pagesPerSec(r).toFixed(0),
        (pagesPerSec(r) / pagesPerSec(base)).toFixed(3),
        String(r.traffic.requests),
        mib(r.traffic.bytesSent).toFixed(2),
        String(count(r.traffic, 304)),
        r.problems.length ? `FAIL: ${r.problems.join(", ")}` : "ok",
      ]),
    ),
  );
  console.log("  pages: fetched in full (the recrawl: stored again + unchanged, answered 304).");
  console.log("  seconds: undici's median pass; Sluice's crawl from createdAt to finishedAt; Scrapy's elapsed_time_seconds.");
  console.log("  requests, MiB sent ($bytes_sent: headers and bodies), 304s: nginx's access log for that phase (robots.txt included).");

  const { first, recrawl } = sluiceRuns;
  if (recrawl) {
    console.log("");
    console.log("Recrawl (the same root again, same database):");
    const line = (r: Row & { run: TimedCrawl }) => {
      const t = r.traffic;
      const unchanged = unchangedOf(r.run.crawl);
      return (
        `  ${r.mode.padEnd(16)} ${r.seconds.toFixed(2).padStart(7)} s, nginx sent ${t.bytesSent} bytes (bodies ${t.bodyBytesSent}) ` +
        `in ${t.requests} requests: ${Object.entries(t.byStatus)
          .map(([s, n]) => `${n}× ${s}`)
          .join(", ")}; ${t.conditional} conditional; unchanged ${unchanged ?? "(not reported)"}; ${formatCrawl(r.run.crawl)}`
      );
    };
    console.log(line(first));
    console.log(line(recrawl));
  }

  const vsUndici = pagesPerSec(first) / pagesPerSec(base);
  const vsScrapy = scrapyRow ? pagesPerSec(first) / pagesPerSec(scrapyRow) : null;
  const bytesRatio = recrawl ? recrawl.traffic.bytesSent / first.traffic.bytesSent : null;
  const speedup = recrawl ? first.seconds / recrawl.seconds : null;
  console.log("");
  console.log(
    table(
      ["target", "value", "goal", "verdict"],
      [
        verdict("Sluice pages/s ÷ bare undici", vsUndici, "≥", TARGET_VS_UNDICI),
        verdict("Sluice pages/s ÷ Scrapy", vsScrapy, "≥", TARGET_VS_SCRAPY),
        verdict("recrawl bytes ÷ first crawl's", bytesRatio, "<", TARGET_RECRAWL_BYTES),
        verdict("first crawl s ÷ recrawl s", speedup, "≥", TARGET_RECRAWL_SPEEDUP),
      ],
    ),
  );

  if (parser) {
    console.log("");
    console.log(
      `Parser: extractPage and cheerio differ on ${parser.differences.length} of ${parser.pages} pages of the manual ` +
        `(${parser.links} links by extractPage; extractPage ${parser.oursSeconds.toFixed(2)} s, cheerio ${parser.cheerioSeconds.toFixed(2)} s in total)`,
    );
    // The most the first crawl's ratio to the bare loop could be if extracting links were the
    // only work a stored page needed, spread over every core: a bound from this run's figures.
    const ceiling = base.seconds / (parser.oursSeconds / os.cpus().length);
    console.log(
      `  Extracting alone takes ${(parser.oursSeconds / base.seconds).toFixed(1)}× the bare loop's time; ` +
        `even spread over ${os.cpus().length} CPU(s) with nothing else to do, it caps Sluice ÷ bare undici at ${ceiling.toFixed(2)}`,
    );
    for (const d of parser.differences.slice(0, 5)) {
      console.log(`  ${d.file}:`);
      for (const l of describeDifference(d)) console.log(`    ${l}`);
    }
  }

  const wallSeconds = (performance.now() - started) / 1000;
  console.log("");
  console.log(`Run took ${wallSeconds.toFixed(1)} s (Sluice boot ${sluiceRuns.bootSeconds.toFixed(2)} s, not timed).`);
  const summary = {
    bench: "crawl-nginx",
    at: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    pages: urls.length,
    concurrency: CONCURRENCY,
    baselineRounds: BASELINE_ROUNDS,
    results: rows.map((r) => ({
      mode: r.mode,
      pages: r.pages,
      seconds: round(r.seconds),
      pagesPerSec: round(pagesPerSec(r), 1),
      requests: r.traffic.requests,
      bytesSent: r.traffic.bytesSent,
      bodyBytesSent: r.traffic.bodyBytesSent,
      byStatus: r.traffic.byStatus,
      conditional: r.traffic.conditional,
      ok: r.problems.length === 0,
    })),
    scrapyProcessSeconds: scrapyRow ? round(scrapyRow.run.processSeconds) : null,
    vsUndici: round(vsUndici),
    vsScrapy: vsScrapy === null ? null : round(vsScrapy),
    recrawlBytesRatio: bytesRatio === null ? null : round(bytesRatio, 4),
    recrawlSpeedup: speedup === null ? null : round(speedup),
    recrawlUnchanged: recrawl ? unchangedOf(recrawl.run.crawl) : null,
    parserDifferences: parser ? parser.differences.length : null,
    wallSeconds: round(wallSeconds, 1),
  };
  console.log("");
  console.log(JSON.stringify(summary));
  return rows.some((r) => r.problems.length > 0) ? 1 : 0;
}

runBench(main);
