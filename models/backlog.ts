// Work waiting for a worker, per queue: what an autoscaler scales on (queue lag), and what a
// Flower user looks at first.
import type { Sequelize } from "sequelize";
import { selectOne } from "./query";

export interface Backlog {
  /** Frontier URLs no crawler has leased yet: crawler work. */
  crawlUrls: number;
  /** Bulk jobs (inserts and imports) waiting for an ingestor. */
  insertJobs: number;
  /** Ids sent on the ids channel in their minute and not yet taken by a scheduler node. */
  ids: number;
}

export async function readBacklog(db: Sequelize): Promise<Backlog> {
  // Each count reads a partial index (queued frontier rows, dispatched slots) or the small jobs table.
  const row = await selectOne<{ crawl_urls: string; insert_jobs: string; ids: string }>(
    db,
    `SELECT (SELECT count(*) FROM crawl_urls WHERE state = 'queued') AS crawl_urls,
            (SELECT count(*) FROM jobs WHERE kind IN ('insert', 'import') AND status = 'pending') AS insert_jobs,
            (SELECT count(*) FROM id_task_slots WHERE state = 'dispatched') AS ids`,
    [],
  );
  return { crawlUrls: Number(row!.crawl_urls), insertJobs: Number(row!.insert_jobs), ids: Number(row!.ids) };
}
