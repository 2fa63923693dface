// Taking back the slots of holders that stopped renewing (a sweep runs per resource four times
// per lease, from the hub). A plain resource's expired slots come back at once; a checked one's
// (database connections) only once the check says the holder's connections are gone.
import { CONNECTION_HANDOVER_DELAY_MS } from "../platform/db";
import { leaseMember, sweepPeriodMs, type LeaseStore } from "./lease-store";
import type { CheckedReclaim, ResourceLimiter } from "./resource-limiter";

// The check's own slot is leased as "<holder>~check".
const CHECK_HOLDER_SUFFIX = "~check";

/** What a sweep needs from the hub. */
export interface ReclaimEnv {
  store: LeaseStore;
  holder: string;
  leaseMs: number;
  log: { info(msg: string): void; warn(msg: string): void };
  /** How many nodes share the resource's limit. */
  share(resource: string): number;
  /** Counts and logs slots taken back. */
  reclaimed(l: ResourceLimiter, n: number, from: string): void;
}

/**
 * Takes back the slots of holders that stopped renewing. A checked resource (database
 * connections) takes a holder's back only once the check says its connections are gone.
 */
export async function sweepExpired(env: ReclaimEnv, l: ResourceLimiter): Promise<void> {
  const store = env.store;
  if (l.sweeping) return;
  l.sweeping = true;
  try {
    const checked = l.checked;
    if (!checked) {
      const n = await store.reclaim(l.resource, "");
      if (n > 0) env.reclaimed(l, n, "holders that stopped renewing");
      return;
    }
    const snapshot = await store.snapshot(l.resource);
    const expired = [
      ...new Set(snapshot.leases.filter((x) => x.deadline < snapshot.now && !x.holder.startsWith(env.holder)).map((x) => x.holder)),
    ];
    if (expired.length === 0) return;
    const gone = await check(env, l, checked, expired).catch((err: Error) => {
      env.log.warn(`${l.resource}: could not check the connections of ${expired.join(", ")}: ${err.message}`);
      return [] as string[];
    });
    for (const holder of gone) {
      const n = await store.reclaim(l.resource, holder);
      if (n > 0) env.reclaimed(l, n, holder);
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
async function check(env: ReclaimEnv, l: ResourceLimiter, checked: CheckedReclaim, expired: string[]): Promise<string[]> {
  const store = env.store;
  // Its own holder name, so that renewing this node's slots does not drop it.
  const member = leaseMember(`${env.holder}${CHECK_HOLDER_SUFFIX}`, 1);
  const adoptFrom = expired.filter((h) => checked.absent(h));
  const limit = l.maxConcurrent ?? 1;
  const held = l.slots?.running ?? 0;
  // A connection of its own only within this node's share: a slot that looks free in Redis may
  // stand for a connection a node cut off from Redis opened on its fallback share.
  const withinShare = held + 1 <= Math.max(1, Math.floor(limit / env.share(l.resource)));
  const { granted, reclaimed } = withinShare
    ? await store.acquire(l.resource, [member], { leaseMs: env.leaseMs, limit, reclaimExpired: false, adoptFrom })
    : { granted: 0, reclaimed: 0 };
  if (reclaimed > 0) env.reclaimed(l, reclaimed, `${adoptFrom.join(", ")} (gone from the cluster), to check the rest`);
  if (granted === 0) {
    // No connection of this node's own to check with: the next sweep tries again (by then
    // the dead may count as gone from the cluster).
    if (held === 0) return [];
    // One pooled check at a time, and the sweep waits for it no longer than a sweep period
    // (every pooled connection may be busy with a long transaction): the next sweep may by then
    // take a dead holder's slot for a check of its own, or hear this one's answer.
    l.pooledCheck ??= checked.gone(expired, false).finally(() => (l.pooledCheck = null));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<string[]>((resolve) => (timer = setTimeout(() => resolve([]), sweepPeriodMs(env.leaseMs))));
    return Promise.race([l.pooledCheck, timedOut]).finally(() => clearTimeout(timer));
  }
  try {
    return await checked.gone(expired, true);
  } finally {
    setTimeout(() => void store.release(l.resource, [member]).catch(() => {}), CONNECTION_HANDOVER_DELAY_MS).unref();
  }
}
