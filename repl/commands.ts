// Custom REPL commands (moleculer-repl 0.8: registered through replOptions.customCommands).
import type { ServiceBroker } from "moleculer";
import type { CrawlView } from "../services/crawls.service";
import type { NodeThrottle, ResourceRow } from "../services/throttle.service";
import type { ScheduleView } from "../services/schedules.service";
import { formatRate } from "../lib/throttle/rate";
import { FINISHED_JOB_STATUSES, type JobView } from "../models/jobs";
import { importOptionsOf, runImport } from "../lib/api/import-client";
import { loadConfig } from "../lib/platform/config";

// moleculer-repl (vorpal) hands over words as strings, numbers as numbers; anything else is nothing.
const argText = (v: unknown): string => (typeof v === "string" || typeof v === "number" ? String(v) : "");

export const REPL_POLL_INTERVAL_MS = 500;

interface ReplCommand {
  command: string;
  description: string;
  options?: { option: string; description: string }[];
  action(broker: ServiceBroker, args: Record<string, unknown> & { options: Record<string, unknown> }): Promise<void>;
}

const FINISHED = new Set<string>(FINISHED_JOB_STATUSES);

export function formatCrawl(c: CrawlView): string {
  const p = c.pages;
  return `crawl ${c.id} ${c.status}: discovered ${p.discovered}, fetched ${p.fetched}, stored ${p.stored}, unchanged ${p.unchanged}, failed ${p.failed}, skipped ${p.skipped}`;
}

/** Starts a crawl, then prints its progress until it finishes. */
export async function crawlAndWatch(
  broker: ServiceBroker,
  url: string,
  maxPages: number | undefined,
  print: (line: string) => void,
): Promise<CrawlView> {
  const { id } = await broker.call<{ id: number }, object>("crawls.create", maxPages === undefined ? { url } : { url, maxPages });
  let last = "";
  for (;;) {
    const crawl = await broker.call<CrawlView, { id: number }>("crawls.get", { id });
    const line = formatCrawl(crawl);
    if (line !== last) print(line);
    last = line;
    if (FINISHED.has(crawl.status)) return crawl;
    await new Promise((r) => setTimeout(r, REPL_POLL_INTERVAL_MS));
  }
}

export function formatJob(j: JobView): string {
  const total = j.progress.total ?? "?";
  const pct = j.progress.total ? ` (${Math.floor((100 * j.progress.done) / j.progress.total)}%)` : "";
  const rate = j.throughput ? `, ${j.throughput}/s` : "";
  const extra = j.error ? ` - ${j.error}` : "";
  // Attempts and the node belong to bulk jobs (inserts, imports); crawls and id-tasks run on many nodes at once.
  const where = j.kind === "insert" || j.kind === "import" ? `, attempt ${j.attempts}${j.nodeId ? ` on ${j.nodeId}` : ""}` : "";
  return `job ${j.id} ${j.kind} ${j.status}: ${j.progress.done}/${total}${pct}${rate}${where}${extra}`;
}

/** Prints a job's progress until it finishes (or `until` says to stop watching). */
export async function watchJob(
  broker: ServiceBroker,
  id: number,
  print: (line: string) => void,
  until: (j: JobView) => boolean = () => false,
): Promise<JobView> {
  let last = "";
  for (;;) {
    const job = await broker.call<JobView, { id: number }>("jobs.get", { id });
    const line = formatJob(job);
    if (line !== last) print(line);
    last = line;
    if (FINISHED.has(job.status) || until(job)) return job;
    await new Promise((r) => setTimeout(r, REPL_POLL_INTERVAL_MS));
  }
}

/** A time that arrived as a Date (in process) or an ISO string (over the transporter). */
export const isoTime = (t: string | Date): string => new Date(t).toISOString();

/** The words after the command that are not options (`--name value`) or their values. */
export function listedArgs(rawCommand: string): string[] {
  const words = rawCommand.trim().split(/\s+/).slice(1);
  const listed: string[] = [];
  for (let i = 0; i < words.length; i++) {
    if (words[i]!.startsWith("--")) i++;
    else listed.push(words[i]!);
  }
  return listed;
}

/** The ids of a `schedule` command: listed, and/or a range "a-b". */
export function idsFrom(listed: string[], range: string | undefined): number[] {
  const ids = listed.map(Number);
  if (range !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(range.trim());
    if (!m || Number(m[2]) < Number(m[1])) throw new Error(`--range must look like 1001-1030, not "${range}"`);
    for (let id = Number(m[1]); id <= Number(m[2]); id++) ids.push(id);
  }
  if (ids.length === 0) throw new Error("give ids, or --range a-b");
  return ids;
}

/** The throttle as rows for console.table: one per resource and node. */
export function throttleRows(nodes: NodeThrottle[]): Record<string, string | number>[] {
  const rows: Record<string, string | number>[] = [];
  for (const n of nodes) {
    const d = n.db;
    rows.push({
      node: n.nodeId,
      resource: "db",
      limit: d.limit,
      rate: "-",
      running: d.running,
      queued: d.queued,
      peak: d.peakRunning,
      rejected: d.rejected,
      mode: "node bulkhead",
    });
    for (const l of n.limiters) {
      const mode = !l.clustered && !l.fallback ? "in-memory" : l.fallback ? "FALLBACK (local share)" : "cluster (Redis)";
      const rate = l.rate ? formatRate(l.rate) : "-";
      rows.push({
        node: n.nodeId,
        resource: l.resource,
        limit: l.maxConcurrent ?? "-",
        rate,
        running: l.running,
        queued: l.queued,
        peak: l.peakRunning,
        rejected: 0,
        mode,
      });
    }
  }
  return rows;
}

const errorText = (err: unknown) => {
  const e = err as { message?: string; data?: unknown };
  return `${e.message}${e.data ? ` ${JSON.stringify(e.data)}` : ""}`;
};

/** A command's action that prints a failure as "<prefix> <error>" instead of throwing it at the REPL. */
function reporting(prefix: string, action: ReplCommand["action"]): ReplCommand["action"] {
  return async (broker, args) => {
    try {
      await action(broker, args);
    } catch (err) {
      console.error(`${prefix} ${errorText(err)}`);
    }
  };
}

export const replCommands: ReplCommand[] = [
  {
    command: "insert <n>",
    description: "Start a bulk-insert job of n random rows and print its progress until it is done",
    action: reporting("insert failed:", async (broker, args) => {
      const { id } = await broker.call<{ id: number }, object>("inserts.create", { rows: Number(args.n) });
      await watchJob(broker, id, (l) => console.log(l));
    }),
  },
  {
    command: "import <file>",
    description: "Upload a CSV or NDJSON file (.gz too) to the API and print the upload's and the load's progress until it is done",
    options: [
      { option: "--table <table>", description: "the table to import into (one of IMPORT_TABLES)" },
      { option: "--format <format>", description: "csv or ndjson (default: from the file's extension)" },
      { option: "--columns <a,b>", description: "the file's columns, in order (CSV without a header), or the keys taken (NDJSON)" },
      { option: "--header <bool>", description: "CSV: whether the first line is a header (default true)" },
      { option: "--delimiter <char>", description: "CSV: the field separator (default ,)" },
      { option: "--api <url>", description: "the API to upload to (default http://127.0.0.1:$PORT, with API_TOKEN)" },
    ],
    // Through the HTTP API like any client: an upload streams into the API node's staging, which no action call can do.
    action: reporting("import failed:", async (_broker, args) => {
      await runImport(importOptionsOf(argText(args.file), args.options, loadConfig()), process.stdout);
    }),
  },
  {
    command: "jobs",
    description: "List the latest jobs",
    options: [
      { option: "--status <status>", description: "pending, running, succeeded, failed or cancelled" },
      { option: "--limit <n>", description: "how many (default 20)" },
    ],
    action: reporting("jobs:", async (broker, args) => {
      const params = { limit: Number(args.options.limit ?? 20), ...(args.options.status ? { status: argText(args.options.status) } : {}) };
      const { items, total } = await broker.call<{ items: JobView[]; total: number }, object>("jobs.list", params);
      console.table(
        items.map((j) => ({
          id: j.id,
          kind: j.kind,
          status: j.status,
          done: j.progress.done,
          total: j.progress.total,
          attempts: j.attempts,
          node: j.nodeId,
          error: j.error,
        })),
      );
      console.log(`${items.length} of ${total}`);
    }),
  },
  {
    command: "job <id>",
    description: "Show a job, with live progress until it finishes",
    action: reporting("job:", async (broker, args) => {
      await watchJob(broker, Number(args.id), (l) => console.log(l));
    }),
  },
  {
    command: "stop <id>",
    description: "Stop a job: a pending one never starts, a running one rolls back",
    action: reporting("stop:", async (broker, args) => {
      console.log(formatJob(await broker.call<JobView, object>("jobs.stop", { id: Number(args.id) })));
    }),
  },
  {
    command: "crawl <url>",
    description: "Start a crawl and print its progress until it is done",
    options: [{ option: "--max-pages <n>", description: "most URLs to admit (default 1000)" }],
    action: reporting("crawl failed:", async (broker, args) => {
      const raw = args.options.maxPages;
      const maxPages = raw === undefined ? undefined : Number(raw);
      await crawlAndWatch(broker, String(args.url), maxPages, (l) => console.log(l));
    }),
  },
  {
    command: "schedule [ids...]",
    description: "Schedule ids (or --range a-b) over the minutes of the hour and print the plan (`job <id>` watches it)",
    options: [
      { option: "--range <a-b>", description: "every id from a to b" },
      { option: "--rpm <n>", description: "ids per minute (default SCHEDULER_RPM)" },
    ],
    action: reporting("schedule failed:", async (broker, args) => {
      // moleculer-repl hands over only the first of several listed ids: read them from the line.
      const listed = listedArgs(argText(args.rawCommand));
      const ids = idsFrom(listed, args.options.range as string | undefined);
      const rpm = args.options.rpm === undefined ? {} : { rpm: Number(args.options.rpm) };
      const { id, plan } = await broker.call<
        { id: number; plan: { firstMinute: string; lastMinute: string; perMinute: number; minutes: number } },
        object
      >("idTasks.create", { ids, ...rpm });
      console.log(
        `id-task ${id}: ${ids.length} ids over ${plan.minutes} minutes, at most ${plan.perMinute} a minute, ${isoTime(plan.firstMinute)} to ${isoTime(plan.lastMinute)}`,
      );
    }),
  },
  {
    command: "slots <taskId> [minute]",
    description: "The ids of an id-task with their minute and state (one minute's, given its ISO time)",
    action: reporting("slots:", async (broker, args) => {
      const params = { id: Number(args.taskId), limit: 500, ...(args.minute ? { minute: argText(args.minute) } : {}) };
      const { items } = await broker.call<
        { items: { id: number; minute: string; state: string; attempts: number; error: string | null }[] },
        object
      >("idTasks.slots", params);
      console.table(items);
    }),
  },
  {
    command: "schedules [action] [id]",
    description:
      "List the recurring schedules with their next runs; `schedules pause <id>` and `schedules resume <id>` stop and restart one",
    action: reporting("schedules:", async (broker, args) => {
      if (args.action === "pause" || args.action === "resume") {
        const s = await broker.call<ScheduleView, object>("schedules.update", { id: Number(args.id), paused: args.action === "pause" });
        console.log(`schedule ${s.id} ${s.paused ? "paused" : `resumed: next run ${isoTime(s.nextRunAt!)}`}`);
        return;
      }
      if (args.action !== undefined)
        throw new Error(`unknown action "${argText(args.action)}"; use "schedules", "schedules pause <id>" or "schedules resume <id>"`);
      const { items, total } = await broker.call<{ items: ScheduleView[]; total: number }, object>("schedules.list", { limit: 100 });
      console.table(
        items.map((s) => ({
          id: s.id,
          cron: s.cron,
          timezone: s.timezone,
          job: s.job.kind,
          misfire: s.misfire,
          paused: s.paused,
          next: s.nextRunAt ? isoTime(s.nextRunAt) : "-",
          last: s.lastRunAt ? isoTime(s.lastRunAt) : "-",
        })),
      );
      console.log(`${items.length} of ${total}`);
    }),
  },
  {
    command: "throttle [action] [resource] [setting] [value]",
    description: "Print every node's limits; `throttle set <resource> <maxConcurrent|rate> <value>` changes one cluster-wide",
    action: reporting("throttle:", async (broker, args) => {
      if (args.action === "set") {
        const setting = String(args.setting);
        if (setting !== "maxConcurrent" && setting !== "rate") throw new Error(`setting must be maxConcurrent or rate, not "${setting}"`);
        const value = setting === "rate" ? String(args.value) : Number(args.value);
        console.log("changed:", await broker.call("throttle.set", { resource: args.resource, [setting]: value }));
        await new Promise((r) => setTimeout(r, 200));
      } else if (args.action !== undefined) {
        throw new Error(`unknown action "${argText(args.action)}"; use "throttle" or "throttle set ..."`);
      }
      const { nodes, resources } = await broker.call<{ nodes: NodeThrottle[]; resources: ResourceRow[] }>("throttle.cluster");
      console.table(throttleRows(nodes));
      const holders = resources.flatMap((r) => (r.holders ?? []).map((h) => ({ resource: r.resource, ...h })));
      if (holders.length > 0) {
        console.log("slot holders across the cluster:");
        console.table(holders);
      }
    }),
  },
];
