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
import os from "node:os";
import { performance } from "node:perf_hooks";
import { serveGeneratedSite } from "../fixtures/site-server";
import { log, runBench } from "./support";
import { measureCosts } from "./throttle/costs";
import { crawlWith, type CrawlRow } from "./throttle/crawls";
import { measureIngest, type DirectResult } from "./throttle/ingest";
import { measureRates } from "./throttle/rates";
import { printCosts, printCrawls, printIngest, printRates, summaryLine, type Goal, type Results } from "./throttle/report";
import { probeNats, probePostgres, probeRedis } from "./throttle/servers";
import { BOTTLENECK_OPS, DB_BUDGET, INGEST_ROUNDS, INGEST_ROWS, OPS, PAGES, PROCESSES, RATE_OPS } from "./throttle/settings";

async function main(): Promise<number> {
  const [redisOk, pgOk, natsOk] = [await probeRedis(), await probePostgres(), await probeNats()];
  console.log(
    `Sluice throttle benchmark: ${OPS} ops (unthrottled, Semaphore), ${BOTTLENECK_OPS} ops (Bottleneck), ` +
      `ingest ${INGEST_ROWS} rows × ${INGEST_ROUNDS} rounds (median), DB_BUDGET ${DB_BUDGET}, crawl of ${PAGES + 1} pages with ${PROCESSES.join("/") || "no"} process(es), ` +
      `rate runs of ${RATE_OPS} ops; Redis ${redisOk ? "yes" : "no"}, Postgres ${pgOk ? "yes" : "no"}, NATS ${natsOk ? "yes" : "no"}; ` +
      `node ${process.version}, ${os.cpus().length} CPU(s)`,
  );
  const started = performance.now();
  const results = await measure(redisOk, pgOk, natsOk);
  let failed = results.crawls.some((c) => !c.ok);

  printCosts(results.costs);
  let goal: Goal | null = null;
  if (results.ingest) {
    const ingest = printIngest(results.ingest, results.costs);
    goal = ingest.goal;
    if (ingest.invalid) failed = true;
    if (results.crawls.length > 0) printCrawls(results.crawls, results.ingest, redisOk);
  }
  printRates(results.rates);
  if (results.skipped.length > 0) console.log(`\nSkipped: ${results.skipped.join("; ")}`);
  const totalSeconds = (performance.now() - started) / 1000;
  console.log(`\nTotal ${totalSeconds.toFixed(1)} s.`);
  console.log("");
  console.log(summaryLine(results, goal, totalSeconds));
  return failed ? 1 : 0;
}

/** The three parts, each against the servers that answered. */
async function measure(redisOk: boolean, pgOk: boolean, natsOk: boolean): Promise<Results> {
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
    else if (PROCESSES.length > 0) crawls.push(...(await measureCrawls(redisOk)));
  }

  log("3. rate accuracy");
  const rates = await measureRates(redisOk);
  return { costs: costs.rows, ingest, crawls, rates, redisOk, skipped };
}

async function measureCrawls(redisOk: boolean): Promise<CrawlRow[]> {
  const site = await serveGeneratedSite({ pages: PAGES });
  try {
    const rows: CrawlRow[] = [];
    for (const n of PROCESSES) rows.push(await crawlWith(n, site, redisOk));
    return rows;
  } finally {
    await site.close();
  }
}

runBench(main);
