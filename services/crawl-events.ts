// What the crawl services tell the cluster: a crawl finished, a crawl job's progress changed.
// The statements are in models/crawls.ts; the events go out here, next to the services that
// send them (the crawler, the ingestor, the crawls service).
import type { Sequelize } from "sequelize";
import { EVENT_CRAWL_FINISHED, EVENT_JOBS_UPDATED } from "../lib/platform/names";
import { crawlJobs, finishIfDone, withCrawlProgress } from "../models/crawls";
import { presentJob } from "../models/jobs";

type Broadcaster = { broadcast(event: string, payload: unknown): unknown };

/** finishIfDone, and tells the cluster when it did. */
export async function finishAndAnnounce(db: Sequelize, broker: Broadcaster, crawlId: number): Promise<void> {
  const status = await finishIfDone(db, crawlId);
  if (status) {
    // Events are fire-and-forget in Moleculer: a node that misses one reads the row.
    void broker.broadcast(EVENT_CRAWL_FINISHED, { id: crawlId, status });
    await announceCrawlJobs(db, broker, [crawlId]);
  }
}

/** Sends the jobs.updated event of these crawls' jobs. */
export async function announceCrawlJobs(db: Sequelize, broker: Broadcaster, crawlIds: number[]): Promise<void> {
  const rows = await crawlJobs(db, crawlIds);
  for (const view of await withCrawlProgress(db, rows.map(presentJob))) void broker.broadcast(EVENT_JOBS_UPDATED, view);
}
