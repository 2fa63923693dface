// Broker options for every run mode, derived from the validated config. Embedded mode has no
// transporter; distributed mode talks NATS, and its durable channels use JetStream.
import { inspect } from "node:util";
import type { BrokerOptions, Logger, LoggerConfig, ServiceBroker } from "moleculer";
import { stdTimeFunctions, type LogFn } from "pino";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import type { Config, LogLevel } from "./lib/platform/config";
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

const LOGGER_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const satisfies readonly LogLevel[];

/**
 * Fields every line of a logger carries (boundLogger): in a JSON line they are keys of their own;
 * in text, `label` (say `[job 12 insert]`) leads the message.
 */
export class LogFields {
  constructor(
    readonly fields: Record<string, unknown>,
    readonly label: string,
  ) {}
  // The text logger prints objects with util.inspect.
  [inspect.custom](): string {
    return this.label;
  }
}

/** `logger`, with `fields` on every line it logs. */
export function boundLogger(logger: Logger, fields: LogFields): Logger {
  return Object.fromEntries(LOGGER_LEVELS.map((level) => [level, (...args: unknown[]) => logger[level](fields, ...args)])) as Logger;
}

/**
 * Moleculer hands Pino a log call's arguments as they were written (`"text", err`, `"a:", 1`):
 * the message becomes the text of all but the Error, which goes under `err` with its stack, and
 * LogFields become keys of the line.
 */
function pinoArguments(this: unknown, args: unknown[], method: LogFn): void {
  const merged: Record<string, unknown> = {};
  const parts: string[] = [];
  for (const arg of args) {
    if (arg instanceof LogFields) Object.assign(merged, arg.fields);
    else if (arg instanceof Error && merged.err === undefined) merged.err = arg;
    else parts.push(typeof arg === "string" ? arg : inspect(arg, { depth: 4, breakLength: Infinity }));
  }
  const msg = parts.join(" ") || (merged.err as Error | undefined)?.message || "";
  method.call(this, merged, msg);
}

/**
 * LOG_FORMAT: json is one object a line through Pino, with `level` as a label ("info"), `time`
 * in ISO 8601, Moleculer's bindings (`nodeID`, `ns`, `mod`, `svc`) and `msg`; text is
 * Moleculer's short console lines, coloured on a terminal.
 */
function loggerOptions(config: Config): LoggerConfig {
  if (config.logFormat === "text") {
    return { type: "Console", options: { level: config.logLevel, formatter: "short", colors: process.stdout.isTTY } };
  }
  return {
    type: "Pino",
    options: {
      level: config.logLevel,
      pino: {
        options: {
          formatters: { level: (label: string) => ({ level: label }) },
          timestamp: stdTimeFunctions.isoTime,
          hooks: { logMethod: pinoArguments },
        },
      },
    },
  };
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
    logger: loggerOptions(config),
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
