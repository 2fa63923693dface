// What the crawl benchmarks share (bench/crawl.ts on the generated site, bench/crawl-nginx.ts on the
// PostgreSQL manual served by nginx): the bare undici fetch loop, a Sluice booted for crawling one
// local site, and one crawl timed by its own timestamps.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Agent, request } from "undici";
import { isFinished } from "../fixtures/api-client";
import { loadConfig } from "../lib/platform/config";
import { extractPage } from "../lib/crawl/url";
import { formatCrawl, REPL_POLL_INTERVAL_MS } from "../repl/commands";
import { startSluice, type Sluice } from "../runtime";
import { MAX_MAX_DEPTH, type CrawlView } from "../services/crawls.service";
import { log } from "./support";

/** CPU seconds (user + system, all threads) of this process since `from`. */
export const cpuSecondsSince = (from: NodeJS.CpuUsage): number => {
  const cpu = process.cpuUsage(from);
  return (cpu.user + cpu.system) / 1e6;
};

/**
 * The bare fetch: undici `request` through an Agent of `concurrency` connections, `concurrency`
 * workers taking the next URL, every body read in full (and parsed by extractPage when `parse`).
 * Any answer but 200 fails. Answers the characters read.
 */
export async function fetchLoop(urls: string[], concurrency: number, parse: boolean): Promise<number> {
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 4_000 });
  let next = 0;
  let chars = 0;
  const worker = async (): Promise<void> => {
    while (next < urls.length) {
      const url = urls[next++]!;
      const res = await request(url, { method: "GET", dispatcher: agent });
      const body = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`baseline: ${url} answered HTTP ${res.statusCode}`);
      chars += body.length;
      if (parse) extractPage(body, url);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    await agent.close();
  }
  return chars;
}

export interface FetchPass {
  seconds: number;
  cpuSeconds: number;
}

/** One pass of fetchLoop, timed. */
export async function timedFetchLoop(urls: string[], concurrency: number, parse: boolean): Promise<FetchPass> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await fetchLoop(urls, concurrency, parse);
  return { seconds: (performance.now() - t0) / 1000, cpuSeconds: cpuSecondsSince(cpu0) };
}

/** The median pass by seconds (the upper middle one of an even count). */
export function medianPass<T extends { seconds: number }>(passes: T[]): T {
  const sorted = [...passes].sort((a, b) => a.seconds - b.seconds);
  const mid = sorted[Math.floor(sorted.length / 2)];
  if (mid === undefined) throw new Error("medianPass: no passes");
  return mid;
}

export interface SluiceForCrawls {
  sluice: Sluice;
  bootSeconds: number;
  rssAfterBootBytes: number;
  /** Stops Sluice and removes its data directory. */
  stop(): Promise<void>;
}

export interface SluiceCrawlOptions {
  /** Names the node (`bench-<label>`) and prefixes its progress lines. */
  label: string;
  /** null: embedded PGlite in a temporary data directory. */
  databaseUrl: string | null;
  hostConcurrency: number;
  nodeConcurrency: number;
  /** CRAWL_ALLOW_HOSTS: the local site's host (and port). */
  allowHosts: string;
  /** DB_NODE_CONCURRENCY, only with a databaseUrl; null: Sluice's default. */
  dbNodeConcurrency?: number | null;
}

/** Sluice with every service in this process, quiet, allowed to crawl the local site. Boot is timed apart. */
export async function bootSluiceForCrawls(o: SluiceCrawlOptions): Promise<SluiceForCrawls> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-bench-"));
  const env: Record<string, string> = {
    PORT: "0",
    METRICS_PORT: "0",
    LOG_LEVEL: "warn",
    NODE_ID: `bench-${o.label}`,
    CRAWL_ALLOW_HOSTS: o.allowHosts,
    DATA_DIR: dataDir,
    CRAWL_HOST_CONCURRENCY: String(o.hostConcurrency),
    CRAWL_NODE_CONCURRENCY: String(o.nodeConcurrency),
  };
  if (o.databaseUrl) env.DATABASE_URL = o.databaseUrl;
  if (o.databaseUrl && o.dbNodeConcurrency != null) env.DB_NODE_CONCURRENCY = String(o.dbNodeConcurrency);
  const bootStart = performance.now();
  let sluice: Sluice;
  try {
    sluice = await startSluice(loadConfig(env));
  } catch (err) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    sluice,
    bootSeconds: (performance.now() - bootStart) / 1000,
    rssAfterBootBytes: process.memoryUsage.rss(),
    stop: async () => {
      try {
        await sluice.stop();
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

export interface TimedCrawl {
  crawl: CrawlView;
  /** create → finished, from the crawl's own timestamps (database clock); observedSeconds if it never finished. */
  seconds: number;
  /** create call → finished status seen by the polling client (includes up to one poll interval). */
  observedSeconds: number;
  /** CPU time of this process (main thread and workers, PGlite included) during the crawl. */
  cpuSeconds: number;
}

/**
 * repl/commands.ts crawlAndWatch() with a maxDepth (the deepest allowed) and a deadline: it creates
 * the crawl through the crawls service and polls crawls.get at the REPL's interval until the crawl is
 * finished or `timeoutS` has passed (then the unfinished crawl is answered, for the caller to fail).
 * Progress goes to stderr every 2 s.
 */
export async function timedCrawl(sluice: Sluice, label: string, url: string, maxPages: number, timeoutS: number): Promise<TimedCrawl> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + timeoutS * 1000;
  const { id } = await sluice.broker.call<{ id: number }, object>("crawls.create", { url, maxPages, maxDepth: MAX_MAX_DEPTH });
  let lastPrint = -Infinity;
  let lastPrinted = "";
  for (;;) {
    const crawl = await sluice.broker.call<CrawlView, { id: number }>("crawls.get", { id });
    const line = formatCrawl(crawl);
    const now = performance.now();
    const done = isFinished(crawl.status) || now > deadline;
    // Progress every couple of seconds, enough to see whether ingestion trails fetching; the last state always.
    if (now - lastPrint >= 2000 || (done && line !== lastPrinted)) {
      lastPrint = now;
      lastPrinted = line;
      log(`  [${label} +${((now - t0) / 1000).toFixed(1)}s] ${line}`);
    }
    if (done) {
      const observedSeconds = (now - t0) / 1000;
      const seconds = crawl.finishedAt
        ? (new Date(crawl.finishedAt).getTime() - new Date(crawl.createdAt).getTime()) / 1000
        : observedSeconds;
      return { crawl, seconds, observedSeconds, cpuSeconds: cpuSecondsSince(cpu0) };
    }
    await new Promise((r) => setTimeout(r, REPL_POLL_INTERVAL_MS));
  }
}
