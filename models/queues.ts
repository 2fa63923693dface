// The queues an operator can pause for the whole cluster. The pause is read inside the
// statements that take work (leaseUrls, claimJob, dispatchDue), so it holds on every node at
// once, with no cache to go stale.
import type { Sequelize } from "sequelize";
import { readBacklog } from "./backlog";
import { select, selectOne } from "./query";

export const QUEUE_NAMES = ["crawl", "insert", "ids"] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** SQL that is true while queue `name` (a literal from QUEUE_NAMES) is paused. */
export const queuePaused = (name: QueueName): string => `EXISTS (SELECT 1 FROM queues WHERE name = '${name}' AND paused)`;

export interface QueueView {
  name: QueueName;
  paused: boolean;
  /** Work waiting: queued frontier URLs, pending insert jobs, or ids sent in their minute and not yet taken. */
  depth: number;
  updatedAt: Date;
}

export async function listQueues(db: Sequelize): Promise<QueueView[]> {
  // The depths are the backlog's figures (models/backlog.ts), under the queues' names.
  const [rows, backlog] = await Promise.all([
    select<{ name: QueueName; paused: boolean; updated_at: Date }>(db, `SELECT name, paused, updated_at FROM queues`, []),
    readBacklog(db),
  ]);
  const depth: Record<QueueName, number> = { crawl: backlog.crawlUrls, insert: backlog.insertJobs, ids: backlog.ids };
  return QUEUE_NAMES.flatMap((name) => {
    const row = rows.find((r) => r.name === name);
    return row ? [{ name, paused: row.paused, depth: depth[name], updatedAt: row.updated_at }] : [];
  });
}

export async function setQueuePaused(db: Sequelize, name: QueueName, paused: boolean): Promise<void> {
  await selectOne(db, `UPDATE queues SET paused = $2, updated_at = now() WHERE name = $1 RETURNING name`, [name, paused]);
}
