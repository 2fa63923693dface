// Every node reports its limits here; GET /api/throttle and the REPL's `throttle` gather them
// from all nodes. The same figures go to Prometheus as gauges.
import type { Context, ServiceSchema } from "moleculer";
import { ValidationError } from "../lib/platform/errors";
import { formatRate, parseRate, type Rate } from "../lib/throttle/rate";
import type { LimiterStats } from "../lib/throttle";
import { holdersOf, type HolderView } from "../lib/throttle/leased-slots";
import type { SemaphoreStats } from "../lib/throttle/semaphore";
import { nodesRunning } from "../moleculer.config";
import type { Runtime } from "../lib/contracts";
import { EVENT_THROTTLE_CHANGED, METRIC_NODE_ROLE } from "../lib/platform/names";

export const METRICS_INTERVAL_MS = 1_000;
const MAX_CONCURRENT_LIMIT = 10_000;
const MAX_THROTTLE_OVERRIDES = 1_000;

/** "db", or a per-host resource whose host[:port] is written as a URL writes it (lower case, no path). */
export function isThrottleResource(resource: string): boolean {
  if (resource === "db") return true;
  const m = /^(fetch|upstream):(.{1,260})$/.exec(resource);
  if (!m) return false;
  try {
    const url = new URL(`http://${m[2]}/`);
    return url.host === m[2] && url.pathname === "/" && !url.username && !url.password;
  } catch {
    return false;
  }
}

export interface ThrottleChange {
  resource: string;
  maxConcurrent?: number;
  rate?: Rate | null;
}

export interface NodeThrottle {
  nodeId: string;
  redis: "not configured" | "ok" | "down (local fallback)";
  db: SemaphoreStats & { resource: "db"; budget: number };
  limiters: LimiterStats[];
}

/** One resource across the cluster, as GET /api/throttle shows it. */
export interface ResourceRow {
  resource: string;
  limit: number | null;
  rate: string | null;
  running: number;
  queued: number;
  rejected: number;
  fallbackNodes: number;
  nodes: number;
  /** Slots taken back from holders that stopped renewing (cluster-wide, from Redis when it is up). */
  reclaimed?: number;
  /** Who holds the slots across the cluster, live or presumed dead (from Redis). */
  holders?: HolderView[];
}

export default function throttleService({ config, dbGate, limits, rebalance }: Runtime): ServiceSchema {
  const snapshot = (nodeId: string): NodeThrottle => ({
    nodeId,
    redis: !config.redisUrl ? "not configured" : limits.redisReady ? "ok" : "down (local fallback)",
    db: { resource: "db", budget: config.db.budget, ...dbGate.stats() },
    limiters: limits.stats(),
  });
  let timer: NodeJS.Timeout | null = null;
  // Reclaimed slots already added to the counter, per resource.
  const reported = new Map<string, number>();

  return {
    name: "throttle",

    events: {
      // Membership changed (a node joined, even one still booting, or left): every node
      // recomputes its share of DB_BUDGET.
      "$services.changed"() {
        rebalance();
      },
      "$node.connected"() {
        rebalance();
      },
      "$node.disconnected"() {
        rebalance();
      },

      // Every node applies a change: its own bulkhead, its limiters' local share, and (idempotently) Redis.
      async [EVENT_THROTTLE_CHANGED](ctx: Context<ThrottleChange>) {
        const { resource, maxConcurrent, rate } = ctx.params;
        if (resource === "db") {
          // maxConcurrent of "db" is each node's bulkhead (up to its pool); the rate is cluster-wide.
          if (maxConcurrent !== undefined) dbGate.setLimit(Math.min(maxConcurrent, dbGate.capacity));
          if (rate !== undefined) await limits.update("db", { rate });
          return;
        }
        await limits.update(resource, {
          ...(maxConcurrent !== undefined ? { maxConcurrent } : {}),
          ...(rate !== undefined ? { rate } : {}),
        });
      },
    },

    actions: {
      /** Changes a limit for the whole cluster, with no restart. */
      set: {
        params: {
          resource: { type: "string", min: 1, max: 300 },
          maxConcurrent: { type: "number", integer: true, positive: true, max: MAX_CONCURRENT_LIMIT, optional: true, convert: true },
          rate: { type: "string", max: 32, optional: true },
          $$strict: true,
        },
        async handler(ctx: Context<{ resource: string; maxConcurrent?: number; rate?: string }>) {
          const { resource, maxConcurrent, rate } = ctx.params;
          if (!isThrottleResource(resource)) {
            throw new ValidationError("resource", 'unknown resource: use "db", "fetch:<host[:port]>" or "upstream:<host[:port]>"');
          }
          // Each changed resource is remembered on every node: their number is capped.
          if (!limits.hasLimiter(resource) && limits.overrideCount >= MAX_THROTTLE_OVERRIDES) {
            throw new ValidationError("resource", `at most ${MAX_THROTTLE_OVERRIDES} resources may carry runtime changes`);
          }
          if (maxConcurrent === undefined && rate === undefined) throw new ValidationError("maxConcurrent", "give maxConcurrent or rate");
          if (resource === "db" && rate !== undefined && !config.db.rate) {
            throw new ValidationError("rate", "the database has no rate limiter: start the nodes with DB_RATE to have one");
          }
          const change: ThrottleChange = { resource };
          if (maxConcurrent !== undefined) change.maxConcurrent = maxConcurrent;
          if (rate !== undefined) change.rate = rate === "none" ? null : parseRate(rate, "rate");
          await ctx.broadcast(EVENT_THROTTLE_CHANGED, change);
          return change;
        },
      },

      local: {
        visibility: "public",
        handler(): NodeThrottle {
          return snapshot(this.broker.nodeID);
        },
      },

      /** Every node's figures, and per resource the sums across nodes. */
      async cluster(ctx: Context) {
        const nodes = await Promise.all(
          nodesRunning(this.broker, "throttle").map((nodeID) => ctx.call<NodeThrottle, object>("throttle.local", {}, { nodeID })),
        );
        const resources = new Map<string, ResourceRow>();
        const add = (r: Omit<ResourceRow, "fallbackNodes" | "nodes"> & { fallback: boolean }, sumLimits: boolean) => {
          const { fallback, ...figures } = r;
          const sum = resources.get(r.resource) ?? {
            ...figures,
            limit: sumLimits ? 0 : r.limit,
            running: 0,
            queued: 0,
            rejected: 0,
            fallbackNodes: 0,
            nodes: 0,
          };
          if (sumLimits) sum.limit = (sum.limit ?? 0) + (r.limit ?? 0);
          sum.running += r.running;
          sum.queued += r.queued;
          sum.rejected += r.rejected;
          sum.fallbackNodes += fallback ? 1 : 0;
          sum.nodes++;
          resources.set(r.resource, sum);
        };
        for (const n of nodes) {
          // The bulkheads are per node: the cluster's figure is their sum.
          add(
            {
              resource: "db (bulkheads)",
              limit: n.db.limit,
              rate: null,
              running: n.db.running,
              queued: n.db.queued,
              rejected: n.db.rejected,
              fallback: false,
            },
            true,
          );
          for (const l of n.limiters) {
            const rate = l.rate ? formatRate(l.rate) : null;
            add(
              {
                resource: l.resource,
                limit: l.maxConcurrent,
                rate,
                running: l.running,
                queued: l.queued,
                rejected: 0,
                fallback: l.fallback,
              },
              false,
            );
            const row = resources.get(l.resource)!;
            if (l.maxConcurrent !== null) row.reclaimed = (row.reclaimed ?? 0) + l.reclaimed;
          }
        }
        const store = limits.redisReady ? limits.store : null;
        await Promise.all(
          [...resources.values()].map(async (row) => {
            if (!store || row.reclaimed === undefined) return;
            const snapshot = await store.snapshot(row.resource).catch(() => null);
            if (!snapshot) return;
            row.reclaimed = snapshot.reclaimed;
            row.holders = holdersOf(snapshot);
          }),
        );
        return { resources: [...resources.values()], nodes };
      },
    },

    created() {
      const gauge = (name: string, description: string) =>
        this.broker.metrics.register({ type: "gauge", name, description, labelNames: ["resource"] });
      gauge("sluice.throttle.limit", "Concurrency limit per resource on this node");
      gauge("sluice.throttle.running", "Operations running per resource on this node");
      gauge("sluice.throttle.queued", "Operations waiting per resource on this node");
      gauge("sluice.throttle.rejected", "Operations refused (queue full) per resource on this node");
      gauge("sluice.throttle.fallback", "1 while a resource runs on this node's local share because Redis is down");
      this.broker.metrics.register({
        type: "counter",
        name: "sluice.throttle.reclaimed",
        description: "Slots this node took back from holders that stopped renewing",
        labelNames: ["resource"],
      });
      // Every node runs this service: each role it runs is a series (the no-scheduler alert reads them).
      this.broker.metrics.register({
        type: "gauge",
        name: METRIC_NODE_ROLE,
        description: "1 for each role this node runs",
        labelNames: ["role"],
      });
    },

    started() {
      for (const role of config.roles) this.broker.metrics.set(METRIC_NODE_ROLE, 1, { role });
      rebalance();
      timer = setInterval(() => {
        const s = snapshot(this.broker.nodeID);
        const set = (name: string, resource: string, value: number | null) => this.broker.metrics.set(name, value ?? 0, { resource });
        set("sluice.throttle.limit", "db", s.db.limit);
        set("sluice.throttle.running", "db", s.db.running);
        set("sluice.throttle.queued", "db", s.db.queued);
        set("sluice.throttle.rejected", "db", s.db.rejected);
        for (const l of s.limiters) {
          set("sluice.throttle.limit", l.resource, l.maxConcurrent);
          set("sluice.throttle.running", l.resource, l.running);
          set("sluice.throttle.queued", l.resource, l.queued);
          set("sluice.throttle.fallback", l.resource, l.fallback ? 1 : 0);
          const delta = l.reclaimed - (reported.get(l.resource) ?? 0);
          // A resource's counter starts at 0 (so it is exported, and rate() sees its first reclaim).
          if (delta > 0 || !reported.has(l.resource))
            this.broker.metrics.increment("sluice.throttle.reclaimed", { resource: l.resource }, delta);
          reported.set(l.resource, l.reclaimed);
        }
      }, METRICS_INTERVAL_MS);
    },

    stopped() {
      if (timer) clearInterval(timer);
    },
  };
}
