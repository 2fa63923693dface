// The throttle: per-node bulkheads, cluster-wide slots (leases) and rates, the connection
// budget's shares and the adaptive rate. docs/throttle.md explains the algorithm.
export { LimiterHub, type HubOptions } from "./hub";
export { ResourceLimiter, type CheckedReclaim, type LimiterStats, type LimitSpec } from "./resource-limiter";
export { Semaphore, type SemaphoreStats } from "./semaphore";
