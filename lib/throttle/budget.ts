// How a cluster-wide connection budget is split between nodes.
//
// Every node computes the same split from the same membership list: the budget divided evenly,
// the remainder going to the first nodes in nodeID order. A node's pool never holds more than
// its share, so while all nodes agree on the membership the sum of the pools is at most the
// budget. While they do not (a node joined or left and not everyone has seen it yet), the
// cluster-wide connection slots (Bottleneck on Redis, one slot per open connection) keep the
// total under the budget: a joining node gets a slot only when another node has closed a
// connection, which it does as it shrinks to its new share. See docs/throttle.md.
export function shareOf(budget: number, nodeIds: readonly string[], me: string): number {
  const nodes = [...new Set([...nodeIds, me])].sort();
  const base = Math.floor(budget / nodes.length);
  const extra = budget % nodes.length;
  return base + (nodes.indexOf(me) < extra ? 1 : 0);
}
