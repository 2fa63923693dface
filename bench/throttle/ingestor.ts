// Part 2a's Sluice: the ingestor alone in this process, and the switch that bypasses its throttle.
import { performance } from "node:perf_hooks";
import { loadConfig } from "../../lib/platform/config";
import { CHANNEL_PAGES, DB_CONNECTIONS_RESOURCE, EVENT_CRAWL_FINISHED } from "../../lib/platform/names";
import type { PageRecord } from "../../models/pages";
import { startSluice, type Sluice } from "../../runtime";
import { DB_BUDGET, REDIS_URL, TIMEOUT_MS } from "./settings";

export interface Ingestor {
  sluice: Sluice;
  /** Publishes every page to the ingestor's channel; resolves with seconds from the first publish to the crawl's end. */
  ingest(pages: PageRecord[]): Promise<number>;
}

/**
 * A Sluice running only the ingestor in this process, on the in-process channel (no NATS in the
 * way), against the real Postgres and Redis. A crawl's end is the ingestor's own crawls.finished event.
 */
export async function startIngestor(databaseUrl: string, namespace: string, redisOk: boolean, dbRate: string | null): Promise<Ingestor> {
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    SERVICES: "ingestor",
    NAMESPACE: namespace,
    NODE_ID: `${namespace}-ingestor`,
    DB_BUDGET: String(DB_BUDGET),
    PORT: "0",
    METRICS_PORT: "0",
    // "error": stopping a Sluice logs a "Redis unavailable" warning as its limiter connection
    // closes. A real fallback during the measurement is caught by checking limits.redisReady.
    LOG_LEVEL: "error",
  };
  if (redisOk) env.REDIS_URL = REDIS_URL;
  if (dbRate) env.DB_RATE = dbRate;
  const sluice = await startSluice(loadConfig(env));
  const waiting = new Map<number, (status: string) => void>();
  sluice.broker.createService({
    name: "bench-probe",
    events: {
      [EVENT_CRAWL_FINISHED](ctx: { params: { id: number; status: string } }) {
        waiting.get(ctx.params.id)?.(ctx.params.status);
      },
    },
  });
  await sluice.broker.waitForServices(["bench-probe", "ingestor"], 10_000);
  return {
    sluice,
    async ingest(pages: PageRecord[]): Promise<number> {
      const crawlId = pages[0]!.crawlId;
      let timer: NodeJS.Timeout | undefined;
      const finished = new Promise<string>((resolve, reject) => {
        waiting.set(crawlId, resolve);
        timer = setTimeout(() => reject(new Error(`ingest of crawl ${crawlId} unfinished after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
      });
      try {
        const t0 = performance.now();
        await Promise.all(pages.map((p) => sluice.broker.sendToChannel(CHANNEL_PAGES, p)));
        const status = await finished;
        const seconds = (performance.now() - t0) / 1000;
        if (status !== "succeeded") throw new Error(`ingest crawl ended ${status}`);
        return seconds;
      } finally {
        clearTimeout(timer);
        waiting.delete(crawlId);
      }
    },
  };
}

/** Replaces the throttle (bulkhead permits, connection slots, DB_RATE slots) by no-ops, or puts it back. */
export function bypassThrottle(sluice: Sluice, on: boolean): void {
  const gate = sluice.dbGate as unknown as Record<string, unknown>;
  const limits = sluice.limits as unknown as Record<string, unknown>;
  if (on) {
    gate.acquire = async () => () => {};
    limits.hold = async () => () => {};
  } else {
    delete gate.acquire;
    delete limits.hold;
  }
}

export interface ThrottleCounters {
  /** Bulkhead permits taken: one per database operation (a transaction is one). */
  acquired: number;
  /** Connection slots taken: one per Postgres connection opened. */
  slots: number;
}
export function counters(sluice: Sluice): ThrottleCounters {
  const slot = sluice.limits.stats().find((l) => l.resource === DB_CONNECTIONS_RESOURCE);
  return { acquired: sluice.dbGate.stats().acquired, slots: slot ? slot.done + slot.running : 0 };
}
