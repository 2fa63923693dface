// What the services tell the cluster: a job changed, a crawl finished. Moleculer events are
// fire-and-forget (a node that misses one reads the row), so a broadcast is never awaited; a
// publish that fails (the transporter reconnecting) is logged here instead of surfacing as an
// unhandled rejection. The crawl statements are in models/crawls.ts.
import type { MetricRegistry } from "moleculer";
import type { Sequelize } from "sequelize";
import { EVENT_CRAWL_FINISHED, EVENT_JOBS_UPDATED } from "../lib/platform/names";
import { crawlJobs, finishIfDone, withCrawlProgress } from "../models/crawls";
import { presentJob, type JobRow } from "../models/jobs";
import { jobEnded, runSeconds, type JobOutcome } from "./metrics";

type Warns = { warn(...args: unknown[]): void };
/** A broker, or an action's context (whose broadcast carries the caller's trace). */
export type Broadcaster = { broadcast(event: string, payload: unknown): Promise<unknown> } & (
  { logger: Warns; metrics: MetricRegistry } | { broker: { logger: Warns; metrics: MetricRegistry } }
);

const metricsOf = (via: Broadcaster): MetricRegistry => ("broker" in via ? via.broker.metrics : via.metrics);

export function announce(via: Broadcaster, event: string, payload: unknown): void {
  via
    .broadcast(event, payload)
    .catch((err: unknown) => ("broker" in via ? via.broker.logger : via.logger).warn(`Broadcasting ${event} failed`, err));
}

/** The jobs.updated event of a job row; nothing for null (a write that changed no job). */
export function announceJob(via: Broadcaster, job: JobRow | null): void {
  if (job) announce(via, EVENT_JOBS_UPDATED, presentJob(job));
}

/**
 * The jobs.updated event of a write that ended the job's attempt on this node outside its runner
 * (a pending job cancelled, a dead node's job reaped, a job that could not be queued, an upload
 * that failed), with its outcome counted: each such write is made once, so it counts once.
 */
export function announceEnded(via: Broadcaster, job: JobRow | null): void {
  if (!job) return;
  announceJob(via, job);
  const metrics = metricsOf(via);
  if (job.status === "pending") jobEnded(metrics, job.kind, "retried", null);
  else if (job.status === "succeeded" || job.status === "failed" || job.status === "cancelled")
    jobEnded(metrics, job.kind, job.status, runSeconds(job));
}

/**
 * finishIfDone, and tells the cluster when it did. Any node may call it for the same crawl (the
 * crawler's sweep, the ingestor); only the one whose UPDATE ended the crawl gets its status, so
 * the crawl's outcome is counted there, once.
 */
export async function finishAndAnnounce(db: Sequelize, via: Broadcaster, crawlId: number): Promise<void> {
  const status = await finishIfDone(db, crawlId);
  if (status) {
    announce(via, EVENT_CRAWL_FINISHED, { id: crawlId, status });
    await announceCrawlEnded(db, via, crawlId, status === "succeeded" ? "succeeded" : "failed");
  }
}

/**
 * The jobs.updated event of a crawl's job after the write that ended the crawl here (it finished,
 * or was cancelled), with its outcome counted once, even when the announcement fails.
 */
export async function announceCrawlEnded(db: Sequelize, via: Broadcaster, crawlId: number, outcome: JobOutcome): Promise<void> {
  let job: JobRow | undefined;
  try {
    [job] = await announceCrawlJobs(db, via, [crawlId]);
  } finally {
    jobEnded(metricsOf(via), "crawl", outcome, job ? runSeconds(job) : null);
  }
}

/** Sends the jobs.updated event of these crawls' jobs; answers their rows. */
export async function announceCrawlJobs(db: Sequelize, via: Broadcaster, crawlIds: number[]): Promise<JobRow[]> {
  const rows = await crawlJobs(db, crawlIds);
  for (const view of await withCrawlProgress(db, rows.map(presentJob))) announce(via, EVENT_JOBS_UPDATED, view);
  return rows;
}
