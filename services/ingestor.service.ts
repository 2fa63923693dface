// The only writer of pages. Page messages arrive on the durable pages channel; they are
// batched, written with one idempotent multi-row upsert per batch, and each message is
// acknowledged only after the transaction holding its row has committed.
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { QueryTypes } from "sequelize";
import { Batcher } from "../lib/platform/batcher";
import { CHANNEL_PAGES, METRIC_PAGES_STORED } from "../lib/platform/names";
import { finishAndAnnounce, markStored } from "../models/crawls";
import type { Runtime } from "../runtime";
import type { PageMessage } from "./crawler.service";

export const INGEST_BATCH_SIZE = 100;
export const INGEST_BATCH_WAIT_MS = 50;
// Messages handled at once per node: enough to fill a couple of batches.
export const INGEST_MAX_IN_FLIGHT = 2 * INGEST_BATCH_SIZE;

const PAGE_COLUMNS = ["url", "crawl_id", "status", "title", "content_type", "body", "bytes", "links", "depth", "fetched_at"] as const;

interface IngestorVars {
  batcher: Batcher<PageMessage>;
}
interface IngestorMethods {
  storePages(pages: PageMessage[]): Promise<void>;
}

export default function ingestorService({ db }: Runtime): ServiceSchema<ServiceSettingSchema, IngestorMethods, IngestorVars> {
  return {
    name: "ingestor",

    channels: {
      [CHANNEL_PAGES]: {
        group: "ingestor",
        maxInFlight: INGEST_MAX_IN_FLIGHT,
        handler(this: IngestorVars, page: PageMessage) {
          return this.batcher.add(page);
        },
      },
    },

    created() {
      this.broker.metrics.register({ type: "counter", name: METRIC_PAGES_STORED, description: "Pages written to Postgres" });
      this.batcher = new Batcher({ maxSize: INGEST_BATCH_SIZE, maxWaitMs: INGEST_BATCH_WAIT_MS, flush: (pages) => this.storePages(pages) });
    },

    async stopped() {
      await this.batcher.drain();
    },

    methods: {
      async storePages(batch: PageMessage[]) {
        // One statement may not upsert the same row twice, and redelivery can put a page in a
        // batch twice. Sorted, so that two batches sharing URLs lock rows in the same order.
        const pages = [...new Map(batch.map((p) => [p.url, p])).values()].sort((a, b) => (a.url < b.url ? -1 : 1));
        const bind: unknown[] = [];
        const rows = pages.map((p) => {
          const values = [p.url, p.crawlId, p.status, p.title, p.contentType, p.body, p.bytes, p.links, p.depth, p.fetchedAt];
          const placeholders = values.map((v) => `$${bind.push(v)}`);
          return `(${placeholders.join(", ")})`;
        });
        const updates = PAGE_COLUMNS.filter((c) => c !== "url").map((c) => `${c} = EXCLUDED.${c}`);
        await db.transaction(async (t) => {
          await db.query(
            `INSERT INTO pages (${PAGE_COLUMNS.join(", ")}) VALUES ${rows.join(", ")}
             ON CONFLICT (url) DO UPDATE SET ${updates.join(", ")}, stored_at = now()
             WHERE pages.fetched_at <= EXCLUDED.fetched_at`,
            { bind, transaction: t, type: QueryTypes.INSERT },
          );
          await markStored(db, pages.map((p) => ({ crawlId: p.crawlId, url: p.url })), t);
        });
        this.broker.metrics.increment(METRIC_PAGES_STORED, undefined, pages.length);
        // The pages are committed: a failure here must not redeliver them (the sweep finishes the crawl).
        for (const crawlId of new Set(pages.map((p) => p.crawlId))) {
          await finishAndAnnounce(db, this.broker, crawlId).catch((err: unknown) => this.logger.warn(`Finishing crawl ${crawlId} failed`, err));
        }
      },
    },
  };
}
