// One resource's concurrency slots as one node sees them: the slots it holds, the callers
// waiting for one, and where slots come from. With Redis, from the cluster-wide leases
// (lib/throttle/lease-store.ts); without it, or while it is down, from this node's local share. A
// waiter is served as soon as a slot frees anywhere in the cluster (a pub/sub message), and
// at the latest at the next poll.
import { leaseMember, type LeaseSnapshot, type LeaseStore } from "./lease-store";

export type Release = () => void;

// How often waiters ask Redis again when no "freed" message came (a slot may have expired).
export const SLOT_POLL_MS = 500;
// A caller that has waited this long for a slot is logged once, with who holds the slots.
export const SLOW_WAIT_LOG_MS = 5_000;

export interface SlotsEnv {
  /** null: no Redis configured; the node is the whole cluster. */
  store: LeaseStore | null;
  /** This process, as its leases and its Postgres connections name it. */
  holder: string;
  leaseMs: number;
  /** Redis is reachable now. */
  clustered(): boolean;
  /** This node's share of `limit` while Redis is down. */
  localShare(limit: number): number;
  onRedisError(err: Error): void;
  log: { warn(msg: string): void; info(msg: string): void };
}

export interface SlotsPolicy {
  /**
   * true: an expired lease returns as soon as anyone asks for a slot (its holder is presumed
   * dead). false: only a reclaim after a check (database connections: Postgres must no longer
   * list the holder's connections).
   */
  reclaimExpired: boolean;
}

export interface HolderView {
  holder: string;
  slots: number;
  /** When its oldest slot was granted, ISO time. */
  since: string;
  /** "live" while it renews; "presumed dead" once its leases have expired. */
  state: "live" | "presumed dead";
  /** How long ago its slots expired (ms), when presumed dead. */
  expiredForMs?: number;
}

/** Who holds a resource's slots, one row per holder, oldest first. */
export function holdersOf(snapshot: LeaseSnapshot): HolderView[] {
  const byHolder = new Map<string, { slots: number; since: number; deadline: number }>();
  for (const l of snapshot.leases) {
    const h = byHolder.get(l.holder) ?? { slots: 0, since: l.since, deadline: l.deadline };
    h.slots++;
    h.since = Math.min(h.since, l.since);
    h.deadline = Math.max(h.deadline, l.deadline);
    byHolder.set(l.holder, h);
  }
  return [...byHolder.entries()]
    .sort((a, b) => a[1].since - b[1].since)
    .map(([holder, h]) => {
      const live = h.deadline >= snapshot.now;
      return {
        holder,
        slots: h.slots,
        since: new Date(h.since).toISOString(),
        state: live ? "live" : "presumed dead",
        ...(live ? {} : { expiredForMs: snapshot.now - h.deadline }),
      };
    });
}

export const describeHolders = (holders: HolderView[]): string =>
  holders.length === 0 ? "nobody" : holders.map((h) => `${h.holder} (${h.slots}, since ${h.since}, ${h.state})`).join("; ");

interface Waiter {
  grant(release: Release): void;
}

export class LeasedSlots {
  private readonly held = new Set<string>();
  private readonly waiting: Waiter[] = [];
  private seq = 0;
  private pumping = false;
  private pumpAgain = false;
  private poll: NodeJS.Timeout | null = null;
  private waitingSince = 0;
  private loggedSlowWait = false;
  /** Slots this node took back from holders that stopped renewing. */
  reclaimed = 0;

  constructor(
    readonly resource: string,
    private limit: number,
    private readonly env: SlotsEnv,
    readonly policy: SlotsPolicy,
  ) {}

  get running(): number {
    return this.held.size;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** The members this node holds, for renewal. */
  members(): string[] {
    return [...this.held];
  }

  /** Resolves with a release function once this node holds a slot. */
  acquire(): Promise<Release> {
    return new Promise((resolve) => {
      if (this.waiting.length === 0) {
        this.waitingSince = Date.now();
        this.loggedSlowWait = false;
      }
      this.waiting.push({ grant: resolve });
      this.wake();
    });
  }

  setLimit(limit: number): void {
    this.limit = limit;
    this.wake();
  }

  /** Try to serve waiters now (a slot freed somewhere, Redis came back, the limit rose). */
  wake(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    void this.pump(); // waiters settle through their own promises; pump never rejects
  }

  stop(): void {
    if (this.poll) clearTimeout(this.poll);
    this.poll = null;
  }

  private grant(member: string): void {
    this.held.add(member);
    let released = false;
    this.waiting.shift()!.grant(() => {
      if (released) return;
      released = true;
      this.held.delete(member);
      // When Redis cannot take the release now, the next renewal drops the member (it is no
      // longer listed) or, if Redis lost it, it is simply gone.
      if (this.env.store && this.env.clustered()) this.env.store.release(this.resource, [member]).catch(() => {});
      this.wake();
    });
  }

  private nextMember(): string {
    return leaseMember(this.env.holder, ++this.seq);
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        if (!this.env.store || !this.env.clustered()) {
          const cap = this.env.store ? this.env.localShare(this.limit) : this.limit;
          while (this.waiting.length > 0 && this.held.size < cap) this.grant(this.nextMember());
          continue;
        }
        if (this.waiting.length === 0) continue;
        try {
          await this.fromCluster();
        } catch (err) {
          this.env.onRedisError(err as Error);
          this.pumpAgain = true;
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    this.schedulePoll();
    if (this.waiting.length > 0) void this.logSlowWait(); // a log line; never rejects
  }

  private async fromCluster(): Promise<void> {
    const store = this.env.store!;
    const members = this.waiting.map(() => this.nextMember());
    const opts = { leaseMs: this.env.leaseMs, limit: this.limit, reclaimExpired: this.policy.reclaimExpired };
    const { granted, reclaimed } = await store.acquire(this.resource, members, opts);
    this.reclaimed += reclaimed;
    for (let i = 0; i < granted; i++) this.grant(members[i]!);
  }

  private schedulePoll(): void {
    if (this.poll || this.waiting.length === 0 || !this.env.store) return;
    this.poll = setTimeout(() => {
      this.poll = null;
      this.wake();
    }, SLOT_POLL_MS);
    this.poll.unref();
  }

  private async logSlowWait(): Promise<void> {
    const waitedMs = Date.now() - this.waitingSince;
    if (this.loggedSlowWait || waitedMs < SLOW_WAIT_LOG_MS) return;
    this.loggedSlowWait = true;
    let holders = "unknown (Redis unreachable)";
    if (this.env.store && this.env.clustered()) {
      holders = await this.env.store.snapshot(this.resource).then(
        (s) => describeHolders(holdersOf(s)),
        () => holders,
      );
    } else if (!this.env.store) {
      holders = `this node (${this.held.size} of ${this.limit})`;
    }
    this.env.log.warn(
      `Waiting ${Math.round(waitedMs / 1000)} s for a ${this.resource} slot (${this.waiting.length} waiting); held by: ${holders}`,
    );
  }
}
