// Queue lag: how much work waits for each kind of worker. Kept as the `sluice_backlog{queue}`
// gauge for Prometheus, so a HorizontalPodAutoscaler can add crawlers or ingestors when work
// piles up (k8s/), and served at GET /api/backlog.
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { readBacklog, type Backlog } from "../models/backlog";
import type { Runtime } from "../lib/contracts";

// Often enough for an autoscaler (Prometheus scrapes every 15-30 s), rare enough to cost nothing.
export const BACKLOG_REFRESH_MS = 10_000;
export const METRIC_BACKLOG = "sluice.backlog";
const QUEUES: Record<keyof Backlog, string> = { crawlUrls: "crawl_urls", insertJobs: "insert_jobs", ids: "ids" };

interface BacklogMethods {
  refresh(): Promise<Backlog>;
}

export default function backlogService({ db }: Runtime): ServiceSchema<ServiceSettingSchema, BacklogMethods> {
  let timer: NodeJS.Timeout | null = null;
  let ticking: Promise<unknown> | null = null;
  return {
    name: "backlog",

    actions: {
      /** The counts now; the gauge is set from the same read. */
      get(): Promise<Backlog> {
        return this.refresh();
      },
    },

    methods: {
      async refresh() {
        const backlog = await readBacklog(db);
        for (const [key, queue] of Object.entries(QUEUES))
          this.broker.metrics.set(METRIC_BACKLOG, backlog[key as keyof Backlog], { queue });
        return backlog;
      },
    },

    created() {
      this.broker.metrics.register({
        type: "gauge",
        name: METRIC_BACKLOG,
        description: "Work waiting for a worker, per queue",
        labelNames: ["queue"],
      });
    },

    started() {
      // One refresh at a time: with the database slow, ticks are skipped rather than stacked.
      const tick = () => {
        ticking ??= this.refresh()
          .catch((err: unknown) => this.logger.warn("Backlog refresh failed", err))
          .finally(() => (ticking = null));
      };
      tick();
      timer = setInterval(tick, BACKLOG_REFRESH_MS);
    },

    async stopped() {
      if (timer) clearInterval(timer);
      await ticking;
    },
  };
}
