// The queues an operator can pause for the whole cluster. The pause is read inside the
// statements that take work (leaseUrls, claimJob, dispatchDue), so it holds on every node at
// once, with no cache to go stale.
import type { Sequelize } from "sequelize";
import { select, selectOne } from "./query";

export const QUEUE_NAMES = ["crawl", "insert", "ids"] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** SQL that is true while queue `name` (a literal from QUEUE_NAMES) is paused. */
export const queuePaused = (name: QueueName): string => `EXISTS (SELECT 1 FROM queues WHERE name = '${name}' AND paused)`;

export interface QueueView {
  name: QueueName;
  paused: boolean;
  /** Work waiting: queued frontier URLs, pending insert jobs, or ids planned for minutes already due and not yet done. */
  depth: number;
  updatedAt: Date;
}

export async function listQueues(db: Sequelize): Promise<QueueView[]> {
  const rows = await select<{ name: QueueName; paused: boolean; updated_at: Date; depth: string }>(
    db,
    `SELECT q.name, q.paused, q.updated_at,
            CASE q.name
              WHEN 'crawl' THEN (SELECT count(*) FROM crawl_urls WHERE state = 'queued')
              WHEN 'insert' THEN (SELECT count(*) FROM jobs WHERE kind = 'insert' AND status = 'pending')
              ELSE (SELECT count(*) FROM id_task_slots WHERE state = 'dispatched')
            END AS depth
       FROM queues q ORDER BY array_position(ARRAY['crawl', 'insert', 'ids'], q.name)`,
    [],
  );
  return rows.map((r) => ({ name: r.name, paused: r.paused, depth: Number(r.depth), updatedAt: r.updated_at }));
}

export async function setQueuePaused(db: Sequelize, name: QueueName, paused: boolean): Promise<void> {
  await selectOne(db, `UPDATE queues SET paused = $2, updated_at = now() WHERE name = $1 RETURNING name`, [name, paused]);
}
