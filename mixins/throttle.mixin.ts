// Cluster-wide limits per resource (`db:connections`, `db`, `fetch:<host>`, `upstream:<host>`).
//
// Two parts, each held across every node when REDIS_URL is set:
// - concurrency (`maxConcurrent`): slots that are leases on Redis, renewed by their holder, so
//   a node that dies gives its slots back (lib/leased-slots.ts, lib/lease-store.ts);
// - the rate (Bottleneck's minTime, the spacing between starts): Bottleneck clustered on Redis,
//   with no maxConcurrent, so nothing a dead node leaves in it holds anyone back.
// Without Redis both run in this process. When Redis fails, a node serves both from its share
// of the limits (limit / nodes, rate / nodes); nothing queued is dropped. When Redis is ready
// again, the node re-asserts the slots it holds and a fresh clustered rate limiter takes over
// (the old one's scripts or settings key may be gone: Bottleneck issues #118, #205). A
// watchdog moves starts stuck in a clustered limiter (#194) to the local share. See
// docs/throttle.md.
import crypto from "node:crypto";
import Bottleneck from "bottleneck";
import IORedis from "ioredis";
import type { ServiceSchema } from "moleculer";
import type { Semaphore } from "../lib/semaphore";
import { startSpacingMs, type Rate } from "../lib/rate";
import { DEFAULT_THROTTLE_LEASE_MS } from "../lib/config";
import { leaseMember, LeaseStore } from "../lib/lease-store";
import { SLOT_HANDOVER_DELAY_MS } from "../lib/db";
import { LeasedSlots, type SlotsEnv } from "../lib/leased-slots";

export interface LimitSpec {
  maxConcurrent: number | null;
  rate: Rate | null;
  /** Space starts exactly at the rate, without the safety margin: for an adaptive rate, which is a probe pushed until the upstream throttles. */
  exact?: boolean;
  /** Slots that stand for something outside this process (a Postgres connection) come back only after this check. */
  checked?: CheckedReclaim;
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

export interface HubOptions {
  /** This process as its leases (and its Postgres connections' application_name) name it. */
  holder: string;
  /** How long a slot lives without renewal; renewed four times per lease. */
  leaseMs: number;
  /** How long a per-host limiter may sit idle before it is dropped (rebuilt on demand). */
  idleLimiterMs: number;
}

// After a Redis error on a healthy connection, how long before the clustered limiters are rebuilt.
const REDIS_RECHECK_MS = 1_000;
// Queued clustered jobs with no start for this long (plus 3 spacings) count as stuck.
const STUCK_AFTER_MS = 30_000;
const WATCHDOG_INTERVAL_MS = 5_000;
// After a stuck limiter fell back, how long before the cluster is tried again.
const STUCK_RETRY_MS = 60_000;
// The check's own slot is leased as "<holder>~check".
const CHECK_HOLDER_SUFFIX = "~check";
// Per-host limiters (one per crawled host or upstream) idle this long are dropped, so their
// number stays bounded by the hosts in use; their settings live on in Redis (or in overrides).
const IDLE_LIMITER_MS = 10 * 60_000;
const EVICT_INTERVAL_MS = 30_000;
const PER_HOST_RESOURCE = /^(fetch|upstream):/;
// How long stop() waits for slots still held to be released before it drops them.
const STOP_RELEASE_WAIT_MS = 500;
// Renewals per lease: a holder misses three in a row before its slots expire.
const RENEWALS_PER_LEASE = 4;

// Bottleneck holds only the rate (minTime); it has no maxConcurrent, so the jobs a dead node
// leaves "running" in it hold nothing back. Concurrency is the leases' (lib/leased-slots.ts).
const rateOptions = (spec: LimitSpec, share = 1): Bottleneck.ConstructorOptions => ({
  maxConcurrent: null,
  minTime: spec.rate ? Math.ceil(startSpacingMs(spec.rate, spec.exact) * share) : 0,
});

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

class ResourceLimiter {
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

  private ensureSlots(): void {
    if (this.spec.maxConcurrent === null) return;
    if (this.slots) return this.slots.setLimit(this.spec.maxConcurrent);
    this.slots = new LeasedSlots(this.resource, this.spec.maxConcurrent, this.hub.slotsEnv(this.resource), { reclaimExpired: !this.spec.checked });
  }

  /** (Re)creates the clustered rate limiter; settings already in Redis win over ours (the cluster's, possibly changed at runtime). */
  cluster(): void {
    this.slots?.wake();
    if (!this.hub.connection || this.clustered || !this.spec.rate) return;
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
      return this.spec.rate ? await this.rated(run, () => started) : await run();
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
    if (this.spec.rate && this.hub.redisReady) this.cluster();
    await this.clustered?.updateSettings(rateOptions(this.spec));
    if (patch.maxConcurrent !== undefined && patch.maxConcurrent !== null && this.hub.redisReady) await this.hub.store?.setLimit(this.resource, patch.maxConcurrent);
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
export class LimiterHub {
  readonly connection: Bottleneck.IORedisConnection | null;
  readonly store: LeaseStore | null = null;
  readonly holder: string;
  readonly leaseMs: number;
  redisReady = false;
  private readonly limiters = new Map<string, ResourceLimiter>();
  private readonly overrides = new Map<string, Partial<LimitSpec>>();
  private client: IORedis | null = null;
  private subscriber: IORedis | null = null;
  private readonly evictor: NodeJS.Timeout;
  private recheck: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private renewer: NodeJS.Timeout | null = null;
  private stopping = false;
  private warned = false;

  constructor(
    redisUrl: string | null,
    readonly prefix: string,
    /** How many nodes share a resource's limits, for the local fallback share. */
    readonly share: (resource: string) => number,
    private readonly log: { warn(msg: string): void; info(msg: string): void },
    options: Partial<HubOptions> = {},
  ) {
    this.holder = options.holder ?? `sluice:${crypto.randomUUID().slice(0, 8)}`;
    this.leaseMs = options.leaseMs ?? DEFAULT_THROTTLE_LEASE_MS;
    const idleMs = options.idleLimiterMs ?? IDLE_LIMITER_MS;
    this.evictor = setInterval(() => void this.evictIdle(idleMs), Math.min(EVICT_INTERVAL_MS, idleMs));
    this.evictor.unref();
    if (!redisUrl) {
      this.connection = null;
      return;
    }
    const client = new IORedis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 500 });
    this.client = client;
    this.connection = new Bottleneck.IORedisConnection({ client });
    this.store = new LeaseStore(client, prefix);
    client.on("ready", () => this.onRedisReady());
    client.on("close", () => {
      if (!this.stopping) this.onRedisError(new Error("connection closed"));
    });
    // A slot freed on any node wakes this node's waiters for that resource at once.
    const subscriber = client.duplicate({ enableOfflineQueue: true });
    this.subscriber = subscriber;
    subscriber.on("error", () => {}); // the command connection reports Redis failures
    subscriber.on("message", (_channel: string, resource: string) => this.limiters.get(resource)?.slots?.wake());
    void subscriber.subscribe(this.store.channel).catch(() => {});
    this.watchdog = setInterval(() => this.unstick(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
    this.renewer = setInterval(() => void this.renewAndSweep(), Math.max(100, Math.floor(this.leaseMs / RENEWALS_PER_LEASE)));
    this.renewer.unref();
  }

  async ready(): Promise<void> {
    if (this.connection) await this.connection.ready;
  }

  /** What a resource's slots need from the hub. */
  slotsEnv(resource: string): SlotsEnv {
    return {
      store: this.store,
      holder: this.holder,
      leaseMs: this.leaseMs,
      clustered: () => this.redisReady,
      localShare: (limit) => Math.max(1, Math.floor(limit / this.share(resource))),
      onRedisError: (err) => this.onRedisError(err),
      log: this.log,
    };
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
   * Takes one slot of `resource` and keeps it until the returned function is called: for what
   * stays open longer than a call (a database connection). The slot is a lease this process
   * renews, so a process that dies holds it only until it expires.
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

  /** The resources with concurrency slots, for a cluster-wide view of their holders. */
  slotResources(): string[] {
    return [...this.limiters.values()].filter((l) => l.slots).map((l) => l.resource);
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
    if (this.redisReady || this.stopping) return;
    this.redisReady = true;
    if (this.warned) this.log.info("Redis is back: cluster-wide limits resumed");
    this.warned = false;
    // Renewal first, on the same connection as what follows: a restarted Redis learns of the
    // slots this node still holds before anyone is granted more.
    void this.renewAll();
    for (const l of this.limiters.values()) l.cluster();
  }

  private async renewAll(): Promise<void> {
    const store = this.store;
    if (!store || !this.redisReady) return;
    await Promise.all(
      [...this.limiters.values()].map(async (l) => {
        if (!l.slots) return;
        const { readded } = await store.renew(l.resource, this.holder, l.slots.members(), this.leaseMs);
        if (readded > 0) this.log.warn(`${l.resource}: Redis had lost ${readded} slot(s) this node holds; counted again`);
      }),
    ).catch((err: Error) => this.onRedisError(err));
  }

  private async renewAndSweep(): Promise<void> {
    await this.renewAll();
    if (!this.redisReady) return;
    for (const l of this.limiters.values()) if (l.slots) void this.sweep(l);
  }

  /**
   * Takes back the slots of holders that stopped renewing. A checked resource (database
   * connections) takes a holder's back only once the check says its connections are gone.
   */
  private async sweep(l: ResourceLimiter): Promise<void> {
    const store = this.store!;
    if (l.sweeping) return;
    l.sweeping = true;
    try {
      const checked = l.checked;
      if (!checked) {
        const n = await store.reclaim(l.resource, "");
        if (n > 0) this.reclaimed(l, n, "holders that stopped renewing");
        return;
      }
      const snapshot = await store.snapshot(l.resource);
      const expired = [...new Set(snapshot.leases.filter((x) => x.deadline < snapshot.now && !x.holder.startsWith(this.holder)).map((x) => x.holder))];
      if (expired.length === 0) return;
      const gone = await this.check(l, checked, expired).catch((err: Error) => {
        this.log.warn(`${l.resource}: could not check the connections of ${expired.join(", ")}: ${err.message}`);
        return [] as string[];
      });
      for (const holder of gone) {
        const n = await store.reclaim(l.resource, holder);
        if (n > 0) this.reclaimed(l, n, holder);
      }
    } catch {
      // Redis unreachable: the next sweep tries again.
    } finally {
      l.sweeping = false;
    }
  }

  /**
   * Runs the check on a connection of its own when a slot can be had for it: a free one, or
   * one taken over from an expired holder gone from the cluster (after crashes every slot may
   * be held by the dead, and this node's own connections may all be busy). Otherwise the check
   * waits for one of this node's pooled connections (a partition: the holders are alive).
   */
  private async check(l: ResourceLimiter, checked: CheckedReclaim, expired: string[]): Promise<string[]> {
    const store = this.store!;
    // Its own holder name, so that renewing this node's slots does not drop it.
    const member = leaseMember(`${this.holder}${CHECK_HOLDER_SUFFIX}`, 1);
    const adoptFrom = expired.filter((h) => checked.absent(h));
    const limit = l.maxConcurrent ?? 1;
    const held = l.slots?.running ?? 0;
    // A connection of its own only within this node's share: a slot that looks free in Redis may
    // stand for a connection a node cut off from Redis opened on its fallback share.
    const withinShare = held + 1 <= Math.max(1, Math.floor(limit / this.share(l.resource)));
    const { granted, reclaimed } = withinShare
      ? await store.acquire(l.resource, [member], { leaseMs: this.leaseMs, limit, reclaimExpired: false, adoptFrom })
      : { granted: 0, reclaimed: 0 };
    if (reclaimed > 0) this.reclaimed(l, reclaimed, `${adoptFrom.join(", ")} (gone from the cluster), to check the rest`);
    if (granted === 0) {
      // No connection of this node's own to check with: the next sweep tries again (by then
      // the dead may count as gone from the cluster).
      if (held === 0) return [];
      // One pooled check at a time, and the sweep does not wait for it longer than a lease:
      // every pooled connection may be busy with a long transaction.
      l.pooledCheck ??= checked.gone(expired, false).finally(() => (l.pooledCheck = null));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<string[]>((resolve) => (timer = setTimeout(() => resolve([]), this.leaseMs)));
      return Promise.race([l.pooledCheck, timedOut]).finally(() => clearTimeout(timer));
    }
    try {
      return await checked.gone(expired, true);
    } finally {
      setTimeout(() => void store.release(l.resource, [member]).catch(() => {}), SLOT_HANDOVER_DELAY_MS).unref();
    }
  }

  private reclaimed(l: ResourceLimiter, n: number, from: string): void {
    l.slots!.reclaimed += n;
    this.log.info(`${l.resource}: took back ${n} slot(s) of ${from}`);
  }

  private async evictIdle(idleMs: number): Promise<void> {
    const now = Date.now();
    for (const l of [...this.limiters.values()]) {
      if (!PER_HOST_RESOURCE.test(l.resource) || l.idleSince(now) < idleMs) continue;
      this.limiters.delete(l.resource);
      await l.stop();
    }
  }

  /** How many resources carry a runtime change; `throttle set` refuses new ones past a cap. */
  get overrideCount(): number {
    return this.overrides.size;
  }

  hasLimiter(resource: string): boolean {
    return this.limiters.has(resource);
  }

  private unstick(): void {
    const now = Date.now();
    for (const l of this.limiters.values()) {
      if (!l.stuck(now)) continue;
      this.log.warn(`Limiter ${l.resource}: queued starts made no progress on Redis for ${STUCK_AFTER_MS / 1000} s; running them on this node's share`);
      void l.fallBack();
      setTimeout(() => {
        if (this.redisReady && !this.stopping) l.cluster();
      }, STUCK_RETRY_MS).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of [this.watchdog, this.renewer, this.evictor]) if (t) clearInterval(t);
    if (this.recheck) clearTimeout(this.recheck);
    // Connection slots return a moment after their connection closed (SLOT_HANDOVER_DELAY_MS):
    // let those releases happen; whatever is still held then goes back now, not at expiry.
    const deadline = Date.now() + STOP_RELEASE_WAIT_MS;
    while (Date.now() < deadline && [...this.limiters.values()].some((l) => (l.slots?.running ?? 0) > 0)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (this.store && this.redisReady) {
      await Promise.all(this.slotResources().map((r) => this.store!.renew(r, this.holder, [], this.leaseMs).catch(() => {})));
    }
    await Promise.all([...this.limiters.values()].map((l) => l.stop()));
    this.subscriber?.disconnect();
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
