// `npm run demo`: the embedded system end to end. Serves the bundled sample site on loopback,
// crawls it, runs a bulk-insert job and stops a second one part-way, schedules 300 ids against a
// user API it serves itself, prints what happened, and exits 0 only if every count is exact.
import { loadConfig } from "../lib/platform/config";
import { ConfigError } from "../lib/platform/errors";
import { SAMPLE_SITE_EXPECTED, serveSampleSite } from "../fixtures/site-server";
import { serveUpstream, type UpstreamServer } from "../fixtures/upstream-server";
import { crawlAndWatch, isoTime, throttleRows, watchJob } from "../repl/commands";
import type { NodeThrottle } from "../services/throttle.service";
import { startSluice, type Sluice } from "../runtime";
import { FINISHED_JOB_STATUSES } from "../models/jobs";

async function main(): Promise<number> {
  const site = await serveSampleSite();
  const env = process.env;
  const allow = [env.CRAWL_ALLOW_HOSTS, "127.0.0.1"].filter(Boolean).join(",");
  // Ephemeral ports and its own data directory unless set, so the demo runs beside a running server.
  // The id scheduler calls a small user API served here, with quarter-second minutes.
  const upstream = await serveUpstream();
  const config = loadConfig({
    PORT: "0",
    METRICS_PORT: "0",
    LOG_LEVEL: "warn",
    DATA_DIR: "data/demo",
    SCHEDULER_MINUTE_MS: "250",
    UPSTREAM_URL: upstream.url,
    UPSTREAM_RATE: "200/s",
    ...env,
    CRAWL_ALLOW_HOSTS: allow,
  });
  console.log(
    `Sample site on ${site.url}; starting Sluice (${config.databaseUrl ? "DATABASE_URL" : `embedded PGlite in ${config.dataDir}`})...`,
  );
  const sluice = await startSluice(config);
  try {
    console.log(`API on ${sluice.apiUrl}. Crawling ${site.url}/ ...`);
    const started = Date.now();
    const crawl = await crawlAndWatch(sluice.broker, `${site.url}/`, undefined, (line) => console.log(`  ${line}`));
    const seconds = (Date.now() - started) / 1000;
    const p = crawl.pages;
    const pages = await sluice.broker.call<{ items: { url: string; title: string | null }[] }, object>("pages.list", {
      crawl: crawl.id,
      limit: 5,
    });

    console.log("\nSummary");
    console.table([
      { crawl: crawl.id, status: crawl.status, discovered: p.discovered, stored: p.stored, failed: p.failed, skipped: p.skipped, seconds },
    ]);
    console.log("First stored pages:");
    for (const page of pages.items) console.log(`  ${page.url.replace(site.url, "")}  "${page.title}"`);

    const { nodes } = await sluice.broker.call<{ nodes: NodeThrottle[] }>("throttle.cluster");
    console.log("\nThrottle (limits, peaks reached, rejections)");
    console.table(throttleRows(nodes));

    const e = SAMPLE_SITE_EXPECTED;
    const exact =
      crawl.status === "succeeded" &&
      p.discovered === e.discovered &&
      p.stored === e.stored &&
      p.failed === e.failed &&
      p.skipped === e.skipped;
    console.log(
      exact ? "\nCounts match the sample site exactly." : `\nCounts differ from the sample site's: expected ${JSON.stringify(e)}`,
    );
    const inserts = await insertJobs(sluice);
    const scheduled = await scheduleIds(sluice, upstream);
    return exact && inserts && scheduled ? 0 : 1;
  } finally {
    await sluice.stop();
    await site.close();
    await upstream.close();
  }
}

/**
 * A bulk-insert job of 100,000 rows, its progress printed from the jobs.updated events; then a
 * second, larger job stopped part-way. True when the row counts are exactly what they must be.
 */
async function insertJobs(sluice: Sluice): Promise<boolean> {
  const { broker } = sluice;
  const count = async () => (await broker.call<{ count: number }>("rows.count")).count;
  const progress = new Map<number, (j: JobUpdate) => void>();
  broker.createService({
    name: "demoWatch",
    events: {
      "jobs.updated"(ctx: { params: JobUpdate }) {
        progress.get(ctx.params.id)?.(ctx.params);
      },
    },
  });
  await broker.waitForServices("demoWatch");
  const run = (rows: number, onUpdate: (j: JobUpdate) => void) =>
    new Promise<JobUpdate>((resolve, reject) => {
      broker.call<{ id: number }, object>("inserts.create", { rows }).then(({ id }) => {
        progress.set(id, (j) => {
          onUpdate(j);
          if ((FINISHED_JOB_STATUSES as readonly string[]).includes(j.status)) resolve(j);
        });
      }, reject);
    });
  const line = (j: JobUpdate) =>
    `  job ${j.id} ${j.status}: ${j.progress.done}/${j.progress.total} rows${j.throughput ? `, ${j.throughput} rows/s` : ""}`;

  const before = await count();
  console.log(`\nBulk insert: a job of 100,000 rows (rows in the table: ${before})`);
  const first = await run(100_000, (j) => console.log(line(j)));
  const afterFirst = await count();

  console.log("\nA job of 2,000,000 rows, stopped part-way:");
  let stopping = false;
  const second = await run(2_000_000, (j) => {
    console.log(line(j));
    if (!stopping && j.progress.done >= 200_000) {
      stopping = true;
      console.log(`  stop ${j.id} ...`);
      // Not awaited: the demo watches the job end cancelled through its events.
      void broker.call("jobs.stop", { id: j.id }).catch((err: unknown) => console.error(`  stop ${j.id} failed:`, err));
    }
  });
  const afterSecond = await count();
  console.table([
    { job: first.id, rows: 100_000, status: first.status, "rows in table after": afterFirst },
    { job: second.id, rows: 2_000_000, status: second.status, "rows in table after": afterSecond },
  ]);
  const ok = first.status === "succeeded" && afterFirst === before + 100_000 && second.status === "cancelled" && afterSecond === afterFirst;
  console.log(
    ok ? "The first job added exactly 100,000 rows; the stopped one rolled back and added none." : "Row counts are not what they must be.",
  );
  return ok;
}

/** Schedules 300 ids at 10 a minute (short minutes) and watches them processed against the upstream. */
async function scheduleIds(sluice: Sluice, upstream: UpstreamServer): Promise<boolean> {
  const ids = Array.from({ length: 300 }, (_, i) => 1001 + i);
  const minuteMs = sluice.config.scheduler.minuteMs;
  console.log(
    `\nId scheduler: 300 ids at 10 a minute (a minute lasts ${minuteMs} ms here), against a user API on ${new URL(upstream.url).host}`,
  );
  const { id, plan } = await sluice.broker.call<
    { id: number; plan: { firstMinute: string; lastMinute: string; perMinute: number; minutes: number } },
    object
  >("idTasks.create", { ids, rpm: 10 });
  console.log(
    `  plan: ${plan.minutes} minutes, at most ${plan.perMinute} ids a minute, from ${isoTime(plan.firstMinute)} to ${isoTime(plan.lastMinute)}`,
  );
  const before = upstream.requests.length;
  const task = await watchJob(sluice.broker, id, (line) => console.log(`  ${line}`));
  const users = await sluice.broker.call<{ total: number }, object>("users.list", { pageSize: 1 });
  const calls = upstream.requests.length - before;
  console.log(
    `  ${task.status}: ${task.progress.done} of ${task.progress.total} ids processed, ${calls} calls to the user API, ${users.total} users stored`,
  );
  return task.status === "succeeded" && task.progress.done === 300 && calls === 300 && users.total >= 300;
}

interface JobUpdate {
  id: number;
  status: string;
  progress: { done: number; total: number | null };
  throughput: number | null;
}

main()
  .then((code) => process.exit(code))
  .catch((err: unknown) => {
    console.error(err instanceof ConfigError ? `Configuration error: ${err.message}` : err);
    process.exit(1);
  });
