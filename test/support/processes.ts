// Separate OS processes for what must hold across processes: fixtures/node-process.ts, shared
// with the benchmarks. E2e files start them through the cluster harness (cluster.ts).
export { freePort, isRunning, startNode, uniqueNamespace, type NodeProcess } from "../../fixtures/node-process";
export { deleteStreams } from "../../fixtures/namespace-cleanup";
