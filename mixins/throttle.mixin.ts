// Cluster-wide limits per resource (today: `fetch:<host>` for the crawler), with Bottleneck.
//
// With REDIS_URL, a resource's limiter is clustered: `maxConcurrent` and the rate (Bottleneck's
// minTime, the spacing between starts) hold across every node, not per worker. Without it,
// the same code runs on Bottleneck's in-memory store. When Redis fails, a node stops its
// clustered limiter (queued jobs come back to us, none is dropped) and runs them on a local
// limiter holding its share of the limits: limit / nodes, rate / nodes. When Redis is ready
// again, a fresh clustered limiter takes over (the old one's scripts or settings key may be
// gone after a Redis restart: Bottleneck issues #118, #205). A watchdog moves jobs stuck in a
// clustered limiter (#194) to the local share. See docs/throttle.md.
import Bottleneck from "bottleneck";
import IORedis from "ioredis";
import type { ServiceSchema } from "moleculer";
import type { Semaphore } from "../lib/semaphore";
import { startSpacingMs, type Rate } from "../lib/rate";

export interface LimitSpec {
  maxConcurrent: number | null;
  rate: Rate | null;
  /** Space starts exactly at the rate, without the safety margin: for an adaptive rate, which is a probe pushed until the upstream throttles. */
  exact?: boolean;
}

export interface LimiterStats {
  resource: string;
  maxConcurrent: number | null;
  /** The configured rate; starts are spaced `minTimeMs` apart to hold it (see RATE_SPACING_MARGIN). */
  rate: Rate | null;
  minTimeMs: number;
  clustered: boolean;
  fallback: boolean;
  running: number;
  queued: number;
  peakRunning: number;
  done: number;
}

// After a Redis error on a healthy connection, how long before the clustered limiters are rebuilt.
const REDIS_RECHECK_MS = 1_000;
// Queued clustered jobs with no start for this long (plus 3 spacings) count as stuck.
const STUCK_AFTER_MS = 30_000;
const WATCHDOG_INTERVAL_MS = 5_000;
// After a stuck limiter fell back, how long before the cluster is tried again.
const STUCK_RETRY_MS = 60_000;

const bottleneckOptions = (spec: LimitSpec, share = 1): Bottleneck.ConstructorOptions => ({
  maxConcurrent: spec.maxConcurrent === null ? null : Math.max(1, Math.floor(spec.maxConcurrent / share)),
  minTime: spec.rate ? Math.ceil(startSpacingMs(spec.rate, spec.exact) * share) : 0,
});

/**
 * Stops a clustered limiter: queued jobs are handed back, running ones finish (a held slot is
 * kept until released), and then its heartbeat stops. stop() alone leaves the heartbeat running
 * for ever, and after a Redis restart every beat fails with UNKNOWN_CLIENT. disconnect() would
 * stop it too, but it also unsubscribes the pub/sub channel that the successor limiter (same
 * id, same shared connection) listens on, so only the heartbeat timer is cleared.
 */
async function retire(limiter: Bottleneck | null): Promise<void> {
  if (!limiter) return;
  await limiter.stop({ dropWaitingJobs: true }).catch(() => {});
  clearInterval((limiter as unknown as { _store: { heartbeat?: NodeJS.Timeout } })._store.heartbeat);
}

class ResourceLimiter {
  private clustered: Bottleneck | null = null;
  private local: Bottleneck;
  private running = 0;
  private queued = 0;
  private peakRunning = 0;
  private done = 0;
  private lastStart = Date.now();

  constructor(
    readonly resource: string,
    private spec: LimitSpec,
    private readonly hub: LimiterHub,
  ) {
    this.local = new Bottleneck(bottleneckOptions(spec, hub.connection ? hub.share(resource) : 1));
    if (hub.connection && hub.redisReady) this.cluster();
  }

  /** (Re)creates the clustered limiter; settings already in Redis win over ours (the cluster's, possibly changed at runtime). */
  cluster(): void {
    if (!this.hub.connection || this.clustered) return;
    const limiter = new Bottleneck({
      ...bottleneckOptions(this.spec),
      id: `${this.hub.prefix}${this.resource}`,
      datastore: "ioredis",
      connection: this.hub.connection,
      clearDatastore: false,
    });
    this.clustered = limiter;
    // Only the current limiter's errors count: a replaced one may still be heartbeating with a
    // client id that a restarted Redis no longer knows, and must not knock its successor over.
    const onError = (err: Error) => {
      if (this.clustered === limiter) this.hub.onRedisError(err);
    };
    limiter.on("error", onError);
    // Bottleneck leaves its registration promise unhandled: when Redis drops mid-registration
    // that rejection would end the process.
    limiter.ready().catch(onError);
  }

  /** Redis is gone: hand every queued job to the local limiter (at this node's share). */
  async fallBack(): Promise<void> {
    const old = this.clustered;
    this.clustered = null;
    this.local.updateSettings(bottleneckOptions(this.spec, this.hub.share(this.resource)));
    await retire(old);
  }

  async schedule<T>(fn: () => Promise<T>): Promise<T> {
    this.queued++;
    let started = false;
    const job = async () => {
      if (!started) {
        started = true;
        this.queued--;
      }
      this.lastStart = Date.now();
      this.running++;
      this.peakRunning = Math.max(this.peakRunning, this.running);
      try {
        return await fn();
      } finally {
        this.running--;
        this.done++;
      }
    };
    for (;;) {
      const limiter = this.clustered ?? this.local;
      try {
        return await limiter.schedule(job);
      } catch (err) {
        if (limiter === this.local || started) throw err;
        // The clustered limiter gave the job back before running it: it was stopped for a
        // fallback, or Redis failed under it. Either way the job runs on the local share.
        if (this.clustered === limiter) this.hub.onRedisError(err as Error);
      }
    }
  }

  /**
   * Bottleneck #194: clustered jobs can stay queued for ever while Redis counts capacity that
   * nobody holds. Jobs waiting long past the spacing, with nothing starting although the
   * cluster reports free capacity, go to the local share; the cluster is tried again later.
   */
  async stuck(now: number): Promise<boolean> {
    const limiter = this.clustered;
    if (!limiter || this.queued === 0) return false;
    const { minTime, maxConcurrent } = bottleneckOptions(this.spec);
    if (now - this.lastStart < STUCK_AFTER_MS + 3 * (minTime ?? 0)) return false;
    const running = await limiter.running().catch(() => 0);
    if (maxConcurrent !== null && maxConcurrent !== undefined && running >= maxConcurrent) return false;
    this.lastStart = now;
    return true;
  }

  /** Applies a runtime change; on the clustered limiter it is written to Redis for every node. */
  async update(patch: Partial<LimitSpec>): Promise<void> {
    this.spec = { ...this.spec, ...patch };
    this.local.updateSettings(bottleneckOptions(this.spec, this.hub.connection ? this.hub.share(this.resource) : 1));
    await this.clustered?.updateSettings(bottleneckOptions(this.spec));
  }

  stats(): LimiterStats {
    const opts = bottleneckOptions(this.spec);
    return {
      resource: this.resource,
      maxConcurrent: opts.maxConcurrent ?? null,
      rate: this.spec.rate,
      minTimeMs: opts.minTime ?? 0,
      clustered: this.clustered !== null,
      fallback: this.hub.connection !== null && this.clustered === null,
      running: this.running,
      queued: this.queued,
      peakRunning: this.peakRunning,
      done: this.done,
    };
  }

  async stop(): Promise<void> {
    await Promise.all([retire(this.clustered), this.local.stop({ dropWaitingJobs: true }).catch(() => {})]);
  }
}

/** The limiters of one process, sharing one Redis connection. */
export class LimiterHub {
  readonly connection: Bottleneck.IORedisConnection | null;
  redisReady = false;
  private readonly limiters = new Map<string, ResourceLimiter>();
  private readonly overrides = new Map<string, Partial<LimitSpec>>();
  private client: IORedis | null = null;
  private recheck: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private stopping = false;
  private warned = false;

  constructor(
    redisUrl: string | null,
    readonly prefix: string,
    /** How many nodes share a resource's limits, for the local fallback share. */
    readonly share: (resource: string) => number,
    private readonly log: { warn(msg: string): void; info(msg: string): void },
  ) {
    if (!redisUrl) {
      this.connection = null;
      return;
    }
    const client = new IORedis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 500 });
    this.client = client;
    this.connection = new Bottleneck.IORedisConnection({ client });
    client.on("ready", () => this.onRedisReady());
    client.on("close", () => {
      if (!this.stopping) this.onRedisError(new Error("connection closed"));
    });
    this.watchdog = setInterval(() => void this.unstick(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
  }

  async ready(): Promise<void> {
    if (this.connection) await this.connection.ready;
  }

  limiter(resource: string, spec: LimitSpec): ResourceLimiter {
    let limiter = this.limiters.get(resource);
    if (!limiter) {
      limiter = new ResourceLimiter(resource, { ...spec, ...this.overrides.get(resource) }, this);
      this.limiters.set(resource, limiter);
    }
    return limiter;
  }

  /**
   * Takes one slot of `resource` and keeps it until the returned function is called: a job
   * that runs for as long as what it stands for (a database connection) is open. A node that
   * dies keeps nothing: Bottleneck frees the jobs of a client whose heartbeat stopped.
   */
  hold(resource: string, spec: LimitSpec): Promise<() => void> {
    return new Promise((granted, refused) => {
      this.limiter(resource, spec)
        .schedule(() => new Promise<void>((release) => granted(() => release())))
        .catch(refused);
    });
  }

  /** A runtime change (`throttle set`): applies now, and to the limiter if it is created later. */
  async update(resource: string, patch: Partial<LimitSpec>): Promise<void> {
    this.overrides.set(resource, { ...this.overrides.get(resource), ...patch });
    await this.limiters.get(resource)?.update(patch);
  }

  stats(): LimiterStats[] {
    return [...this.limiters.values()].map((l) => l.stats());
  }

  onRedisError(err: Error): void {
    if (this.redisReady || !this.warned) {
      this.log.warn(`Redis unavailable (${err.message}): limits fall back to this node's local share`);
      this.warned = true;
    }
    this.redisReady = false;
    for (const l of this.limiters.values()) void l.fallBack();
    // The connection may be fine and Bottleneck's state not (a flushed or restarted Redis loses
    // its scripts and settings keys): then no 'ready' event will come, so retry on a timer.
    if (this.client?.status === "ready") {
      this.recheck ??= setTimeout(() => {
        this.recheck = null;
        this.onRedisReady();
      }, REDIS_RECHECK_MS);
    }
  }

  private onRedisReady(): void {
    if (this.redisReady) return;
    this.redisReady = true;
    if (this.warned) this.log.info("Redis is back: cluster-wide limits resumed");
    this.warned = false;
    for (const l of this.limiters.values()) l.cluster();
  }

  private async unstick(): Promise<void> {
    const now = Date.now();
    for (const l of this.limiters.values()) {
      if (!(await l.stuck(now))) continue;
      this.log.warn(`Limiter ${l.resource}: queued jobs made no progress on Redis for ${STUCK_AFTER_MS / 1000} s; running them on this node's share`);
      await l.fallBack();
      setTimeout(() => {
        if (this.redisReady && !this.stopping) l.cluster();
      }, STUCK_RETRY_MS).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.recheck) clearTimeout(this.recheck);
    await Promise.all([...this.limiters.values()].map((l) => l.stop()));
    await this.connection?.disconnect(false);
  }
}

export interface ThrottleMethods {
  /** The cluster-wide limiter of `resource`, created with `spec` on first use. */
  limiterFor(resource: string, spec: LimitSpec): ResourceLimiter;
}

/** What every service that talks to Postgres or an upstream mixes in: the process's limits. */
export function ThrottleMixin(rt: { limits: LimiterHub; dbGate: Semaphore }): Partial<ServiceSchema> {
  return {
    methods: {
      limiterFor(resource: string, spec: LimitSpec) {
        return rt.limits.limiter(resource, spec);
      },
    },
  };
}

export type { ResourceLimiter };
