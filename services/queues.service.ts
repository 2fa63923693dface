// The queues an operator can pause for the whole cluster (BullMQ's queue.pause()): crawl (the
// frontier), insert (the bulk-insert jobs) and ids (the id scheduler's dispatch). A pause stops
// new work from being taken; what runs goes on. Resumed, the queue's work is sent again.
import type { Context, ServiceSchema } from "moleculer";
import { NotFoundError } from "../lib/platform/errors";
import { CHANNEL_JOBS, EVENT_CRAWL_CREATED, EVENT_QUEUES_CHANGED } from "../lib/platform/names";
import { BULK_KINDS, pendingJobIds } from "../models/jobs";
import { listQueues, QUEUE_NAMES, setQueuePaused, type QueueName } from "../models/queues";
import type { Runtime } from "../lib/contracts";
import { announce } from "./announce";

export default function queuesService({ db }: Runtime): ServiceSchema {
  const queue = async (name: QueueName) => (await listQueues(db)).find((q) => q.name === name)!;
  return {
    name: "queues",

    actions: {
      list: {
        async handler() {
          return { items: await listQueues(db) };
        },
      },

      update: {
        retryPolicy: { enabled: false },
        params: { name: { type: "string", max: 20 }, paused: { type: "boolean" }, $$strict: true },
        async handler(ctx: Context<{ name: string; paused: boolean }>) {
          const name = QUEUE_NAMES.find((n) => n === ctx.params.name);
          if (!name) throw new NotFoundError("queue", ctx.params.name);
          await setQueuePaused(db, name, ctx.params.paused);
          if (!ctx.params.paused) {
            // Whatever waited while paused goes out now instead of at the next resend.
            if (name === "insert")
              for (const id of await pendingJobIds(db, BULK_KINDS)) await this.broker.sendToChannel(CHANNEL_JOBS, { id });
            if (name === "crawl") announce(ctx, EVENT_CRAWL_CREATED, {});
          }
          const view = await queue(name);
          announce(ctx, EVENT_QUEUES_CHANGED, view);
          return view;
        },
      },
    },
  };
}
