// Part 2b: crawls of a generated site by 1, 2 and 4 bin/sluice.ts processes at one DB_BUDGET,
// each on a fresh database and a namespace of its own.
import { startCrawlWhenReady, waitForNodes, waitUntilFinished } from "../../fixtures/api-client";
import { deleteStreams } from "../../fixtures/namespace-cleanup";
import { freePort, startNode, type NodeProcess } from "../../fixtures/node-process";
import type { GeneratedSiteServer } from "../../fixtures/site-server";
import { MAX_MAX_DEPTH } from "../../services/crawls.service";
import { createBenchDatabase, log } from "../support";
import { deleteLimiterKeys } from "./servers";
import { ADMIN_DATABASE_URL, DB_BUDGET, NATS_URL, REDIS_URL, RUN_ID, TIMEOUT_MS } from "./settings";

export interface CrawlRow {
  processes: number;
  pages: number;
  seconds: number;
  pagesPerSec: number;
  status: string;
  ok: boolean;
  note?: string;
}

export async function crawlWith(processes: number, site: GeneratedSiteServer, redisOk: boolean): Promise<CrawlRow> {
  const db = await createBenchDatabase(ADMIN_DATABASE_URL);
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
    // Every node has joined (so every pool is sized to its share of the budget) before the crawl starts.
    await waitForNodes(api, processes, 60_000).catch((err: Error) => {
      throw new Error(`${err.message} (${nodes.map((n) => `${n.name}: ${n.output().slice(-1500)}`).join("\n")})`);
    });
    site.resetStats();
    const id = await startCrawlWhenReady(api, { url: site.entryUrl, maxDepth: MAX_MAX_DEPTH, maxPages: site.expectedPages + 100 }, 30_000);
    const crawl = await waitUntilFinished(api, `/api/crawls/${id}`, TIMEOUT_MS, `the ${processes}-process crawl to finish`);
    return crawlRow(processes, site, crawl);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await db.drop();
    await deleteStreams(NATS_URL, namespace).catch(() => {});
    if (redisOk) await deleteLimiterKeys(`sluice:${namespace}:`);
  }
}

function crawlRow(processes: number, site: GeneratedSiteServer, crawl: any): CrawlRow {
  const stored = crawl.pages.stored as number;
  const seconds = (new Date(crawl.finishedAt).getTime() - new Date(crawl.createdAt).getTime()) / 1000;
  const problems: string[] = [];
  if (crawl.status !== "succeeded") problems.push(`status ${crawl.status}`);
  if (stored !== site.expectedPages) problems.push(`stored ${stored} ≠ ${site.expectedPages}`);
  log(`  crawl with ${processes} process(es): ${stored} pages in ${seconds.toFixed(2)} s`);
  return {
    processes,
    pages: stored,
    seconds,
    pagesPerSec: stored / seconds,
    status: crawl.status,
    ok: problems.length === 0,
    ...(problems.length ? { note: problems.join(", ") } : {}),
  };
}
