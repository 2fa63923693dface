// Concurrency slots on Redis as leases (the Lua scripts in lib/throttle/lua/, one file each).
//
// A slot is a member of one sorted set per resource, scored by its deadline on Redis's clock.
// Its holder renews every slot it holds in one call a few times per lease; a holder that dies
// stops renewing, and its slots come back once they expire. Bottleneck frees a dead client's
// *queued* jobs but never its *running* ones unless each has a fixed `expiration`, and a fixed
// expiration is wrong for a pooled connection that lives longer: so the slots live here and
// Bottleneck keeps only the rates (docs/throttle.md).
import fs from "node:fs";
import path from "node:path";
import type IORedis from "ioredis";

/** Holders renew their leases, and every node sweeps for expired ones, this many times a lease: a holder misses three renewals in a row before its slots expire. */
export const RENEWALS_PER_LEASE = 4;
/** The period of the renewals and of the sweep. */
export const sweepPeriodMs = (leaseMs: number): number => Math.max(100, Math.floor(leaseMs / RENEWALS_PER_LEASE));

export const LUA_DIR = path.join(__dirname, "lua");
export const LEASE_SCRIPTS = ["acquire-leases-4", "renew-leases-2", "release-leases-2", "reclaim-leases-3"] as const;

/** One slot as Redis holds it. */
export interface Lease {
  member: string;
  holder: string;
  /** When it was granted (ms, Redis's clock). */
  since: number;
  /** When it expires unless renewed (ms, Redis's clock). */
  deadline: number;
}

export interface LeaseSnapshot {
  /** Redis's clock when the snapshot was taken, ms. */
  now: number;
  limit: number | null;
  reclaimed: number;
  leases: Lease[];
}

/** "<holder>#<n>": the holder is what renews it, and what Postgres lists as application_name. */
export const leaseMember = (holder: string, n: number): string => `${holder}#${n}`;
export const holderOf = (member: string): string => member.slice(0, member.lastIndexOf("#"));

type Script = (...args: (string | number)[]) => Promise<unknown>;

export class LeaseStore {
  private readonly scripts: Record<(typeof LEASE_SCRIPTS)[number], Script>;
  /** The pub/sub channel that hears of freed slots; the message is the resource. */
  readonly channel: string;

  constructor(
    private readonly redis: IORedis,
    /** Key prefix, `sluice:<namespace>:`. */
    private readonly prefix: string,
  ) {
    this.channel = `${prefix}lease:freed`;
    const scripts = {} as Record<(typeof LEASE_SCRIPTS)[number], Script>;
    for (const name of LEASE_SCRIPTS) {
      const keys = Number(name.split("-").at(-1));
      const command = `sluice_${name.replace(/-/g, "_")}`;
      if (!(command in redis))
        redis.defineCommand(command, { numberOfKeys: keys, lua: fs.readFileSync(path.join(LUA_DIR, `${name}.lua`), "utf8") });
      scripts[name] = (...args) => (redis as unknown as Record<string, Script>)[command]!(...args);
    }
    this.scripts = scripts;
  }

  private keys(resource: string) {
    const base = `${this.prefix}lease:${resource}`;
    return { leases: base, since: `${base}:since`, limit: `${base}:limit`, reclaimed: `${base}:reclaimed` };
  }

  /**
   * Grants as many of `members` as the limit allows, in order. `reclaimExpired` returns any
   * expired lease on the way; `adoptFrom` names holders whose expired leases may be taken over.
   */
  async acquire(
    resource: string,
    members: string[],
    opts: { leaseMs: number; limit: number; reclaimExpired: boolean; adoptFrom?: string[] },
  ): Promise<{ granted: number; reclaimed: number }> {
    const k = this.keys(resource);
    const adopt = opts.adoptFrom ?? [];
    const [granted, reclaimed] = (await this.scripts["acquire-leases-4"](
      k.leases,
      k.since,
      k.limit,
      k.reclaimed,
      opts.leaseMs,
      opts.limit,
      opts.reclaimExpired ? "1" : "0",
      adopt.length,
      ...adopt,
      ...members,
    )) as [number, number];
    return { granted, reclaimed };
  }

  async renew(
    resource: string,
    holder: string,
    members: string[],
    leaseMs: number,
  ): Promise<{ renewed: number; readded: number; dropped: number }> {
    const k = this.keys(resource);
    const [renewed, readded, dropped] = (await this.scripts["renew-leases-2"](
      k.leases,
      k.since,
      leaseMs,
      holder,
      this.channel,
      resource,
      ...members,
    )) as [number, number, number];
    return { renewed, readded, dropped };
  }

  async release(resource: string, members: string[]): Promise<number> {
    if (members.length === 0) return 0;
    const k = this.keys(resource);
    return (await this.scripts["release-leases-2"](k.leases, k.since, this.channel, resource, ...members)) as number;
  }

  /** Takes back the expired leases of `holder` ("" for every holder); returns how many. */
  async reclaim(resource: string, holder: string): Promise<number> {
    const k = this.keys(resource);
    return (await this.scripts["reclaim-leases-3"](k.leases, k.since, k.reclaimed, this.channel, resource, holder)) as number;
  }

  async setLimit(resource: string, limit: number): Promise<void> {
    await this.redis.set(this.keys(resource).limit, limit);
  }

  async snapshot(resource: string): Promise<LeaseSnapshot> {
    const k = this.keys(resource);
    const results = await this.redis
      .multi()
      .time()
      .zrange(k.leases, 0, -1, "WITHSCORES")
      .hgetall(k.since)
      .get(k.limit)
      .get(k.reclaimed)
      .exec();
    if (!results) throw new Error("Redis discarded the snapshot transaction");
    for (const [err] of results) if (err) throw err;
    const [time, scored, since, limit, reclaimed] = results.map((r) => r[1]) as [
      [string, string],
      string[],
      Record<string, string>,
      string | null,
      string | null,
    ];
    const leases: Lease[] = [];
    for (let i = 0; i + 1 < scored.length; i += 2) {
      const member = scored[i]!;
      leases.push({ member, holder: holderOf(member), since: Number(since[member] ?? 0), deadline: Number(scored[i + 1]) });
    }
    return {
      now: Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000),
      limit: limit === null ? null : Number(limit),
      reclaimed: Number(reclaimed ?? 0),
      leases,
    };
  }
}
