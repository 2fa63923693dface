// Broker options for every run mode, derived from the validated config. Embedded mode has no
// transporter; distributed mode talks NATS, and its durable channels use JetStream.
import type { BrokerOptions, ServiceBroker } from "moleculer";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import type { Config } from "./lib/platform/config";
import { MemoryChannelAdapter } from "./transport/memory-channel-adapter";
import { NatsChannelAdapter } from "./transport/nats-channel-adapter";
import { replCommands } from "./repl/commands";

// A page message that failed this many deliveries is logged and dropped; the crawl frontier's
// lease then hands its URL back to the queue, so the page is fetched again rather than lost.
export const CHANNEL_MAX_RETRIES = 10;
// JetStream redelivers a message unacked for this long: how soon a killed ingestor's pages move on.
export const CHANNEL_ACK_WAIT_MS = 30_000;

/** @moleculer/channels' middleware; its options type demands keys it has defaults for. */
export function channelsMiddleware(adapter: unknown): ReturnType<typeof ChannelsMiddleware> {
  return ChannelsMiddleware({ adapter, context: false } as unknown as Parameters<typeof ChannelsMiddleware>[0]);
}

/** The nodes that run `service` now, as this node's registry sees them (each once, sorted). */
export function nodesRunning(broker: ServiceBroker, service: string): string[] {
  const list = broker.registry.getServiceList({ onlyAvailable: true }).filter((s) => s.name === service);
  return [...new Set(list.map((s) => s.nodeID ?? broker.nodeID))].sort();
}

export function brokerOptions(config: Config): BrokerOptions {
  const channelAdapter = config.transporter
    ? new NatsChannelAdapter({
        nats: {
          url: config.transporter.join(","),
          // Work-queue retention: a message is deleted once acknowledged, so the stream holds
          // only work not yet done instead of every page ever crawled.
          streamConfig: { retention: "workqueue" },
          // deliver_policy "all": a consumer created after pages were published still gets them
          // (the adapter's default, "new", would skip them; work-queue streams require "all").
          consumerOptions: { config: { ack_wait: CHANNEL_ACK_WAIT_MS * 1_000_000, deliver_policy: "all" } },
        },
        maxRetries: CHANNEL_MAX_RETRIES,
      })
    : new MemoryChannelAdapter({ maxRetries: CHANNEL_MAX_RETRIES });

  return {
    nodeID: config.nodeId,
    // bin/sluice.ts stops the process on SIGTERM/SIGINT; Moleculer's own handlers would stop it a
    // second time (servers closed twice log ERR_SERVER_NOT_RUNNING).
    skipProcessEventRegistration: true,
    namespace: config.namespace,
    transporter: config.transporter ? { type: "NATS", options: { servers: config.transporter } } : undefined,
    logger: { type: "Console", options: { level: config.logLevel, formatter: "short", colors: process.stdout.isTTY } },
    logLevel: config.logLevel,
    requestTimeout: 30_000,
    // A killed node is noticed (and its jobs reaped) within 15 s instead of Moleculer's 30.
    heartbeatInterval: 5,
    heartbeatTimeout: 15,
    retryPolicy: {
      enabled: true,
      retries: 3,
      delay: 100,
      maxDelay: 2000,
      factor: 2,
      check: (err: Error) => Boolean((err as { retryable?: boolean }).retryable),
    },
    circuitBreaker: { enabled: true, threshold: 0.5, minRequestCount: 20, windowTime: 60, halfOpenTime: 10_000 },
    metrics: {
      enabled: true,
      reporter: [{ type: "Prometheus", options: { port: config.metricsPort, path: "/metrics" } }],
    },
    tracing: { enabled: false },
    middlewares: [channelsMiddleware(channelAdapter)],
    // Moleculer types a custom command's args as string[]; moleculer-repl passes an object.
    replOptions: { customCommands: replCommands as unknown as NonNullable<BrokerOptions["replOptions"]>["customCommands"] },
  };
}
