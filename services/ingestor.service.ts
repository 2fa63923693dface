// The only writer of pages. Page messages arrive on the durable pages channel; they are
// batched, written with one idempotent multi-row upsert per batch (with the fetches' history
// rows), and each message is
// acknowledged only after the transaction holding its row has committed.
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Batcher } from "../lib/platform/batcher";
import { isDataFault } from "../lib/api/http-error";
import { CHANNEL_PAGES, METRIC_PAGES_STORED } from "../lib/platform/names";
import { markStored } from "../models/frontier";
import { finishAndAnnounce } from "./announce";
import type { Runtime } from "../lib/contracts";
import { recordHistory } from "../models/page-fetches";
import { distinctPagesByUrl, historyOf, upsertPages, type PageRecord } from "../models/pages";

export const INGEST_BATCH_SIZE = 100;
export const INGEST_BATCH_WAIT_MS = 50;
// Messages handled at once per node: enough to fill a couple of batches.
export const INGEST_MAX_IN_FLIGHT = 2 * INGEST_BATCH_SIZE;

interface IngestorVars {
  batcher: Batcher<PageRecord>;
}
interface IngestorMethods {
  storePages(pages: PageRecord[]): Promise<void>;
}

export default function ingestorService({ db }: Runtime): ServiceSchema<ServiceSettingSchema, IngestorMethods, IngestorVars> {
  return {
    name: "ingestor",

    channels: {
      [CHANNEL_PAGES]: {
        group: "ingestor",
        maxInFlight: INGEST_MAX_IN_FLIGHT,
        handler(this: IngestorVars, page: PageRecord) {
          return this.batcher.add(page);
        },
      },
    },

    created() {
      this.broker.metrics.register({ type: "counter", name: METRIC_PAGES_STORED, description: "Pages written to Postgres" });
      this.batcher = new Batcher({
        maxSize: INGEST_BATCH_SIZE,
        maxWaitMs: INGEST_BATCH_WAIT_MS,
        flush: (pages) => this.storePages(pages),
        // A page Postgres refuses is redelivered alone; its batch-mates are stored.
        isItemFault: isDataFault,
      });
    },

    async stopped() {
      await this.batcher.drain();
    },

    methods: {
      async storePages(batch: PageRecord[]) {
        const pages = distinctPagesByUrl(batch);
        await db.transaction(async (t) => {
          await upsertPages(db, pages, t);
          // Every message's fetch, even one whose page lost to a newer copy in this batch.
          await recordHistory(db, batch.map(historyOf), t);
          await markStored(
            db,
            pages.map((p) => ({ crawlId: p.crawlId, url: p.url })),
            t,
          );
        });
        this.broker.metrics.increment(METRIC_PAGES_STORED, undefined, pages.length);
        // The pages are committed: a failure here must not redeliver them (the sweep finishes the crawl).
        for (const crawlId of new Set(pages.map((p) => p.crawlId))) {
          await finishAndAnnounce(db, this.broker, crawlId).catch((err: unknown) =>
            this.logger.warn(`Finishing crawl ${crawlId} failed`, err),
          );
        }
      },
    },
  };
}
