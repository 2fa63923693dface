// What this process knows about the cluster's members, from the broker's registry: who shares a
// resource's limits, and whether a holder of slots is still a member.
import type { ServiceBroker } from "moleculer";
import { nodesRunning } from "../../moleculer.config";

// A node may call another holder of slots gone from the cluster only after it has had time to
// hear from every node (one heartbeat): before that, an empty registry means nothing.
const DISCOVERY_GRACE_MS = 5_000;

/** The lease holder a node's broker metadata names (every Sluice node has one). */
const leaseHolderOf = (n: { metadata: unknown }): string | undefined => (n.metadata as { leaseHolder?: string } | null)?.leaseHolder;

/**
 * Whether the process named `holder` (its broker metadata leaseHolder) is no longer a member: it
 * has left the registry, or has sent no heartbeat for heartbeatTimeout. The second is what the
 * registry itself judges by, but it looks only once every heartbeatTimeout, which alone would
 * let a dead holder count as present for up to twice that.
 */
export function holderAbsence(broker: ServiceBroker, ownHolder: string): (holder: string) => boolean {
  const startedAt = Date.now();
  const timeoutS = broker.options.heartbeatTimeout ?? Number.POSITIVE_INFINITY;
  return (holder) => {
    if (holder === ownHolder || Date.now() - startedAt < DISCOVERY_GRACE_MS) return false;
    const silent = (n: { local: boolean; lastHeartbeatTime: number }) => !n.local && process.uptime() - n.lastHeartbeatTime > timeoutS;
    return !broker.registry.nodes.toArray().some((n) => n.available && !silent(n) && leaseHolderOf(n) === holder);
  };
}

/**
 * The nodes that share the connection budget: every available Sluice node (its metadata names
 * its lease holder) from the moment it joins, not once its services have started. A node still
 * booting needs its share already: its migration waits for a connection slot, and the nodes
 * running before it give slots up only when they count it. Counted by its services instead, it
 * could wait as long as they stayed busy (seen: a minute, and more, under steady load).
 */
export function budgetMembers(broker: ServiceBroker): () => string[] {
  return () =>
    broker.registry.nodes
      .toArray()
      .filter((n) => n.available && leaseHolderOf(n) !== undefined)
      .map((n) => n.id)
      .sort();
}

/**
 * How many nodes share a resource's limits (for the local fallback share): the crawlers share
 * the per-host limits; every node shares the database's.
 */
export function nodesSharing(broker: ServiceBroker): (resource: string) => number {
  return (resource) => nodesRunning(broker, resource.startsWith("fetch:") ? "crawler" : "throttle").length || 1;
}
