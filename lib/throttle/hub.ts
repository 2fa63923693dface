// The limiters of one process (lib/throttle/resource-limiter.ts), sharing one Redis connection.
//
// Two parts, each held across every node when REDIS_URL is set:
// - concurrency (`maxConcurrent`): slots that are leases on Redis, renewed by their holder, so
//   a node that dies gives its slots back (lib/throttle/leased-slots.ts, lib/throttle/lease-store.ts);
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
import { DEFAULT_THROTTLE_LEASE_MS } from "../platform/config";
import { LeaseStore, sweepPeriodMs } from "./lease-store";
import { sweepExpired, type ReclaimEnv } from "./reclaim";
import type { SlotsEnv } from "./leased-slots";
import { ResourceLimiter, STUCK_AFTER_MS, type LimiterStats, type LimitSpec } from "./resource-limiter";

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
const WATCHDOG_INTERVAL_MS = 5_000;
// After a stuck limiter fell back, how long before the cluster is tried again.
const STUCK_RETRY_MS = 60_000;
// Per-host limiters (one per crawled host or upstream) idle this long are dropped, so their
// number stays bounded by the hosts in use; their settings live on in Redis (or in overrides).
const IDLE_LIMITER_MS = 10 * 60_000;
const EVICT_INTERVAL_MS = 30_000;
const PER_HOST_RESOURCE = /^(fetch|upstream):/;
// How long stop() waits for slots still held to be released before it drops them.
const STOP_RELEASE_WAIT_MS = 500;

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
    // Not awaited: wake-ups are a shortcut; the 500 ms poll works without them.
    void subscriber.subscribe(this.store.channel).catch(() => {});
    this.watchdog = setInterval(() => this.unstick(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
    this.renewer = setInterval(() => void this.renewAndSweep(), sweepPeriodMs(this.leaseMs));
    this.renewer.unref();
  }

  async ready(): Promise<void> {
    // Bottleneck's typings declare ready() a method; it is a promise property (lib/IORedisConnection.js).
    if (this.connection) await (this.connection as unknown as { ready: Promise<unknown> }).ready;
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
    // Not awaited: fallBack switches at once and only retires the clustered limiter in the background.
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
    void this.renewAll(); // never rejects: a failure is a Redis error, handled by onRedisError
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
    // Not awaited: one slow resource must not hold the others' sweeps; sweep never rejects.
    for (const l of this.limiters.values()) if (l.slots) void sweepExpired(this.reclaimEnv, l);
  }

  private get reclaimEnv(): ReclaimEnv {
    return {
      store: this.store!,
      holder: this.holder,
      leaseMs: this.leaseMs,
      log: this.log,
      share: (resource) => this.share(resource),
      reclaimed: (l, n, from) => this.reclaimed(l, n, from),
    };
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
      this.log.warn(
        `Limiter ${l.resource}: queued starts made no progress on Redis for ${STUCK_AFTER_MS / 1000} s; running them on this node's share`,
      );
      void l.fallBack(); // switches at once; retiring the old limiter never rejects
      setTimeout(() => {
        if (this.redisReady && !this.stopping) l.cluster();
      }, STUCK_RETRY_MS).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of [this.watchdog, this.renewer, this.evictor]) if (t) clearInterval(t);
    if (this.recheck) clearTimeout(this.recheck);
    // Connection slots return a moment after their connection closed (CONNECTION_HANDOVER_DELAY_MS):
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
