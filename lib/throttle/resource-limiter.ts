// One resource's limits on one node: its concurrency slots (leases, lib/throttle/leased-slots.ts)
// and its rate (Bottleneck, clustered on Redis while Redis is up, else local at this node's
// share). The hub (hub.ts) owns the Redis connection and tells each limiter when to fall back
// and when to go back to the cluster. See docs/throttle.md.
import Bottleneck from "bottleneck";
import type { LimiterHub } from "./hub";
import { LeasedSlots } from "./leased-slots";
import { RATE_SPACING_MARGIN, startSpacingMs, type Rate } from "./rate";

export interface LimitSpec {
  maxConcurrent: number | null;
  rate: Rate | null;
  /** Space starts exactly at the rate, without the safety margin: for an adaptive rate, which is a probe pushed until the upstream throttles. */
  exact?: boolean;
  /** Slots that stand for something outside this process (a Postgres connection) come back only after this check. */
  checked?: CheckedReclaim;
  /** A floor on the spacing of starts, whatever the rate (a site's robots.txt Crawl-delay). */
  minSpacingMs?: number;
}

export interface CheckedReclaim {
  /**
   * Of these holders, whose slots have expired, the ones whose connections are gone. `own`:
   * the check may open a connection of its own (its slot is held for it); otherwise it uses a
   * pooled one.
   */
  gone(holders: string[], own: boolean): Promise<string[]>;
  /** The holder's node has left the cluster (or restarted under a new holder name). */
  absent(holder: string): boolean;
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
  /** Slots this node took back from holders that stopped renewing. */
  reclaimed: number;
}

// Queued clustered jobs with no start for this long (plus 3 spacings) count as stuck.
export const STUCK_AFTER_MS = 30_000;

// Bottleneck holds only the rate (minTime); it has no maxConcurrent, so the jobs a dead node
// leaves "running" in it hold nothing back. Concurrency is the leases' (lib/throttle/leased-slots.ts).
const rateOptions = (spec: LimitSpec, share = 1): Bottleneck.ConstructorOptions => ({
  maxConcurrent: null,
  minTime: Math.ceil(spacingMs(spec) * share),
});

/**
 * The spacing of starts: the rate's, raised to the floor (with the rate's safety margin, so that
 * the gaps the far side sees hold the floor too). 0: starts are not spaced at all.
 */
const spacingMs = (spec: LimitSpec): number =>
  Math.max(spec.rate ? startSpacingMs(spec.rate, spec.exact) : 0, (spec.minSpacingMs ?? 0) * RATE_SPACING_MARGIN);

/**
 * Stops a clustered limiter: queued starts are handed back, and then its heartbeat stops.
 * stop() alone leaves the heartbeat running for ever, and after a Redis restart every beat
 * fails with UNKNOWN_CLIENT. disconnect() would stop it too, but it also unsubscribes the
 * pub/sub channel that the successor limiter (same id, same shared connection) listens on, so
 * only the heartbeat timer is cleared.
 */
async function retire(limiter: Bottleneck | null): Promise<void> {
  if (!limiter) return;
  await limiter.stop({ dropWaitingJobs: true }).catch(() => {});
  clearInterval((limiter as unknown as { _store: { heartbeat?: NodeJS.Timeout } })._store.heartbeat);
}

export class ResourceLimiter {
  private clustered: Bottleneck | null = null;
  private local: Bottleneck;
  /** Concurrency slots; null while the resource has no maxConcurrent. */
  slots: LeasedSlots | null = null;
  private running = 0;
  private queued = 0;
  private waitingForStart = 0;
  private peakRunning = 0;
  private done = 0;
  private lastStart = Date.now();
  /** When work last came through (ms): a per-host limiter idle for long is dropped. */
  lastUsed = Date.now();
  sweeping = false;
  /** A check of expired holders waiting for one of this node's pooled connections. */
  pooledCheck: Promise<string[]> | null = null;

  constructor(
    readonly resource: string,
    private spec: LimitSpec,
    private readonly hub: LimiterHub,
  ) {
    this.local = new Bottleneck(rateOptions(spec, hub.connection ? hub.share(resource) : 1));
    this.ensureSlots();
    if (hub.connection && hub.redisReady) this.cluster();
  }

  get checked(): CheckedReclaim | undefined {
    return this.spec.checked;
  }

  get maxConcurrent(): number | null {
    return this.spec.maxConcurrent;
  }

  get minSpacingMs(): number {
    return this.spec.minSpacingMs ?? 0;
  }

  private ensureSlots(): void {
    if (this.spec.maxConcurrent === null) return;
    if (this.slots) return this.slots.setLimit(this.spec.maxConcurrent);
    this.slots = new LeasedSlots(this.resource, this.spec.maxConcurrent, this.hub.slotsEnv(this.resource), {
      reclaimExpired: !this.spec.checked,
    });
  }

  /** (Re)creates the clustered rate limiter; settings already in Redis win over ours (the cluster's, possibly changed at runtime). */
  cluster(): void {
    this.slots?.wake();
    if (!this.hub.connection || this.clustered || spacingMs(this.spec) === 0) return;
    const limiter = new Bottleneck({
      ...rateOptions(this.spec),
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

  /** Redis is gone: starts waiting for the rate go to the local limiter (at this node's share). */
  async fallBack(): Promise<void> {
    const old = this.clustered;
    this.clustered = null;
    this.local.updateSettings(rateOptions(this.spec, this.hub.share(this.resource)));
    this.slots?.wake();
    await retire(old);
  }

  /** Nothing running, waiting or held: the limiter can be dropped and built again later. */
  idleSince(now: number): number {
    const busy = this.running + this.queued + (this.slots?.running ?? 0) + (this.slots?.queued ?? 0) > 0;
    return busy ? 0 : now - this.lastUsed;
  }

  async schedule<T>(fn: () => Promise<T>): Promise<T> {
    this.lastUsed = Date.now();
    this.queued++;
    let started = false;
    let release: (() => void) | null = null;
    const run = async () => {
      this.queued--;
      started = true;
      this.running++;
      this.peakRunning = Math.max(this.peakRunning, this.running);
      try {
        return await fn();
      } finally {
        this.running--;
        this.done++;
      }
    };
    try {
      if (this.slots) release = await this.slots.acquire();
      return spacingMs(this.spec) > 0 ? await this.rated(run, () => started) : await run();
    } finally {
      if (!started) this.queued--;
      release?.();
    }
  }

  /**
   * Runs `run` once the rate allows it, cluster-wide while Redis is up. It runs inside the
   * Bottleneck job, with no hop in between: what the rate spaces is the call itself.
   */
  private async rated<T>(run: () => Promise<T>, started: () => boolean): Promise<T> {
    let waiting = true;
    const stopWaiting = () => {
      if (waiting) this.waitingForStart--;
      waiting = false;
    };
    this.waitingForStart++;
    const job = () => {
      stopWaiting();
      this.lastStart = Date.now();
      return run();
    };
    try {
      for (;;) {
        const limiter = this.clustered ?? this.local;
        try {
          return await limiter.schedule(job);
        } catch (err) {
          if (limiter === this.local || started()) throw err;
          // The clustered limiter gave the job back before running it: it was stopped for a
          // fallback, or Redis failed under it. Either way it runs on the local share.
          if (this.clustered === limiter) this.hub.onRedisError(err as Error);
        }
      }
    } finally {
      stopWaiting();
    }
  }

  /**
   * Bottleneck #194: clustered jobs can stay queued for ever while Redis says nothing holds
   * them back. Starts waiting long past the spacing, with nothing starting, go to the local
   * share; the cluster is tried again later.
   */
  stuck(now: number): boolean {
    if (!this.clustered || this.waitingForStart === 0) return false;
    if (now - this.lastStart < STUCK_AFTER_MS + 3 * (rateOptions(this.spec).minTime ?? 0)) return false;
    this.lastStart = now;
    return true;
  }

  /** Applies a runtime change; on Redis it is written for every node. */
  async update(patch: Partial<LimitSpec>): Promise<void> {
    this.spec = { ...this.spec, ...patch };
    this.ensureSlots();
    this.local.updateSettings(rateOptions(this.spec, this.hub.connection ? this.hub.share(this.resource) : 1));
    if (spacingMs(this.spec) > 0 && this.hub.redisReady) this.cluster();
    // Typed as returning the limiter; it returns a promise of it (Bottleneck.js updateSettings).
    await (this.clustered?.updateSettings(rateOptions(this.spec)) as unknown as Promise<Bottleneck> | undefined);
    if (patch.maxConcurrent !== undefined && patch.maxConcurrent !== null && this.hub.redisReady)
      await this.hub.store?.setLimit(this.resource, patch.maxConcurrent);
  }

  stats(): LimiterStats {
    return {
      resource: this.resource,
      maxConcurrent: this.spec.maxConcurrent,
      rate: this.spec.rate,
      minTimeMs: rateOptions(this.spec).minTime ?? 0,
      clustered: this.hub.redisReady,
      fallback: this.hub.connection !== null && !this.hub.redisReady,
      running: this.running,
      queued: this.queued,
      peakRunning: this.peakRunning,
      done: this.done,
      reclaimed: this.slots?.reclaimed ?? 0,
    };
  }

  async stop(): Promise<void> {
    this.slots?.stop();
    await Promise.all([retire(this.clustered), this.local.stop({ dropWaitingJobs: true }).catch(() => {})]);
  }
}

/** The limiters of one process, sharing one Redis connection. */
