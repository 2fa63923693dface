// The only reader of process.env. Everything is validated at boot so that a typo fails the
// process with the variable's name instead of surfacing later as odd behaviour.
import { isIP } from "node:net";
import os from "node:os";
import path from "node:path";
import { ConfigError } from "./errors";
import { parseRate, type Rate } from "../throttle/rate";

export const ROLES = ["api", "crawler", "ingestor", "scheduler"] as const;
export type Role = (typeof ROLES)[number];

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

// Named defaults, each with its unit.
export const DEFAULT_PORT = 3000;
export const DEFAULT_METRICS_PORT = 3030;
export const DEFAULT_CRAWL_HOST_CONCURRENCY = 8;
export const DEFAULT_CRAWL_NODE_CONCURRENCY = 16;
export const DEFAULT_CRAWL_FETCH_TIMEOUT_MS = 10_000;
// A page travels to the ingestor as one NATS message, and NATS refuses payloads over 1 MiB by
// default; the cap leaves room for the envelope.
export const DEFAULT_CRAWL_MAX_BYTES = 512 * 1024;
export const MAX_CRAWL_MAX_BYTES = 900 * 1024;
export const DEFAULT_CRAWL_MAX_REDIRECTS = 5;
// How long a claimed URL may stay "fetching" or "fetched" (awaiting the ingestor) before another
// node takes it over: the recovery path when a node dies holding it.
export const DEFAULT_CRAWL_LEASE_MS = 120_000;
export const DEFAULT_DB_BUDGET = 10;
export const DEFAULT_DB_NODE_CONCURRENCY_CAP = 4;
export const DEFAULT_DB_QUEUE_MAX = 1000;
export const DEFAULT_API_BODY_LIMIT_BYTES = 1024 * 1024;
export const DEFAULT_JOB_CONCURRENCY = 2;
export const DEFAULT_JOB_MAX_ATTEMPTS = 3;
export const DEFAULT_JOB_HEARTBEAT_MS = 2_000;
export const DEFAULT_INSERT_BATCH_ROWS = 5_000;
export const DEFAULT_SCHEDULER_MINUTE_MS = 60_000;
export const DEFAULT_SCHEDULER_RPM = 10;
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 5_000;
export const DEFAULT_UPSTREAM_MAX_ATTEMPTS = 4;
// How long a throttle slot (a connection, a fetch) outlives its holder's last renewal. With
// renewals every quarter of it and a check as often, a dead node's slots are back within ~1.25x.
export const DEFAULT_THROTTLE_LEASE_MS = 20_000;

export interface CrawlSettings {
  hostConcurrency: number;
  hostRate: Rate | null;
  nodeConcurrency: number;
  fetchTimeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
  leaseMs: number;
  /** CRAWL_ALLOW_HOSTS: private or loopback targets that may be crawled anyway. */
  allowHosts: AllowHost[];
}

/** One CRAWL_ALLOW_HOSTS entry. */
export interface AllowHost {
  /** As WHATWG URL spells a hostname (lower case, IPv6 in brackets), so it compares with `url.hostname`. */
  host: string;
  /** null: every port of the host. */
  port: number | null;
}

export interface DbSettings {
  /** Postgres connections the whole cluster may hold. */
  budget: number;
  /** Database operations (and pooled connections) at once in this process. */
  nodeConcurrency: number;
  /** Operations that may wait for a slot in this process before new ones are refused (429). */
  queueMax: number;
  /** Database operations per unit of time across the cluster (Celery syntax); null: no rate limit. */
  rate: Rate | null;
}

export interface JobSettings {
  /** Jobs one node runs at once (each holds a database connection for its transaction). */
  concurrency: number;
  /** Attempts before a job ends failed (a node dying mid-job costs one). */
  maxAttempts: number;
  /** How often a running job proves it is alive; three missed beats make it stale. */
  heartbeatMs: number;
  /** Rows per INSERT statement of a bulk-insert job; progress is reported after each. */
  insertBatchRows: number;
}

export interface SchedulerSettings {
  /** How long a scheduler minute lasts (shrunk for tests and the demo). */
  minuteMs: number;
  /** Ids per minute when a task names no RPM. */
  defaultRpm: number;
  /** The upstream's user URL, with `{id}` where the id goes; null: ids are stored without a profile. */
  upstreamUrl: string | null;
  /** A known limit (cluster-wide), "auto" for an unknown one, or null for none. */
  upstreamRate: Rate | "auto" | null;
  upstreamTimeoutMs: number;
  upstreamMaxAttempts: number;
}

export interface Config {
  /** NATS server URLs; null means every service runs in this process with no transporter. */
  transporter: string[] | null;
  /** null means the embedded PGlite under `dataDir`. */
  databaseUrl: string | null;
  redisUrl: string | null;
  roles: Role[];
  nodeId: string;
  /** Moleculer namespace: nodes only see nodes (and channels) of the same namespace. */
  namespace: string;
  port: number;
  metricsPort: number;
  apiToken: string | null;
  /** A token that may read but not write (dashboards, monitoring). */
  apiReadToken: string | null;
  /** Origins (scheme://host[:port]) whose browsers may call the API cross-site; empty: none. */
  apiCorsOrigins: string[];
  /** How long a cluster-wide slot lives without its holder renewing it. */
  throttleLeaseMs: number;
  apiBodyLimitBytes: number;
  logLevel: LogLevel;
  dataDir: string;
  db: DbSettings;
  crawl: CrawlSettings;
  jobs: JobSettings;
  scheduler: SchedulerSettings;
}

type Env = Record<string, string | undefined>;

function dbSettings(int: (name: string, fallback: number, min: number, max: number) => number, rate: (name: string) => Rate | null): DbSettings {
  const budget = int("DB_BUDGET", DEFAULT_DB_BUDGET, 1, 10_000);
  return {
    budget,
    nodeConcurrency: int("DB_NODE_CONCURRENCY", Math.min(budget, DEFAULT_DB_NODE_CONCURRENCY_CAP), 1, budget),
    queueMax: int("DB_QUEUE_MAX", DEFAULT_DB_QUEUE_MAX, 0, 1_000_000),
    rate: rate("DB_RATE"),
  };
}

function upstreamUrl(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  let parsed: URL;
  try {
    parsed = new URL(raw.replace("{id}", "1"));
  } catch {
    throw new ConfigError("UPSTREAM_URL", `not a URL: "${raw}"`);
  }
  if (!["http:", "https:"].includes(parsed.protocol) || !raw.includes("{id}")) {
    throw new ConfigError("UPSTREAM_URL", `expected an http(s) URL with {id} where the id goes, e.g. http://host/users/{id}; got "${raw}"`);
  }
  return raw;
}

/**
 * Parses a CRAWL_ALLOW_HOSTS entry: `host`, `host:port`, `[IPv6]:port`, or an IPv6 address
 * with or without brackets. The host goes through the URL parser so that it is spelt exactly as
 * the crawler will see it in a URL (`0x7f.1` is 127.0.0.1, `[0::1]` is [::1], IDN as punycode).
 */
export function parseAllowHost(entry: string): AllowHost {
  const bad = (why: string) =>
    new ConfigError("CRAWL_ALLOW_HOSTS", `${why} in "${entry}"; expected host, host:port or [IPv6]:port, comma-separated`);
  // A bare IPv6 address has no room for a port: it is the whole entry.
  const m = isIP(entry) === 6 ? ["", `[${entry}]`, undefined] : /^(\[[^\]]*\]|[^:[\]]*)(?::(.*))?$/.exec(entry);
  const hostPart = m?.[1];
  const portPart = m?.[2];
  if (!hostPart) throw bad("no host name or address");
  if (hostPart.includes("*")) throw bad("wildcards are not supported");
  if (/[\s/\\?#@%]/.test(hostPart)) throw bad("not a host name or IP address");
  let host: string;
  try {
    host = new URL(`http://${hostPart}/`).hostname;
  } catch {
    throw bad("not a host name or IP address");
  }
  if (portPart === undefined) return { host, port: null };
  const port = Number(portPart);
  if (!/^\d{1,5}$/.test(portPart) || port < 1 || port > 65535) throw bad(`port "${portPart}" is not from 1 to 65535`);
  return { host, port };
}

function namespace(raw: string | undefined): string {
  // It becomes part of NATS subjects and JetStream stream names.
  if (raw !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(raw)) {
    throw new ConfigError("NAMESPACE", `expected 1-32 letters, digits, "_" or "-", got "${raw}"`);
  }
  return raw ?? "";
}

export function loadConfig(env: Env = process.env): Config {
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === "" ? undefined : value;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigError(name, `expected an integer from ${min} to ${max}, got "${raw}"`);
    }
    return n;
  };
  const url = (name: string, schemes: string[]): string | null => {
    const raw = read(name);
    if (raw === undefined) return null;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(name, `not a URL: "${raw}"`);
    }
    if (!schemes.includes(parsed.protocol)) {
      throw new ConfigError(name, `expected a ${schemes.join(" or ")}// URL, got "${raw}"`);
    }
    return raw;
  };

  const transporterRaw = read("TRANSPORTER");
  const transporter = transporterRaw === undefined ? null : transporterRaw.split(",").map((s) => s.trim());
  for (const server of transporter ?? []) {
    if (!/^nats:\/\/[^/\s]+$/.test(server)) {
      throw new ConfigError("TRANSPORTER", `expected nats://host:port (comma-separated for several), got "${server}"`);
    }
  }

  const roles = (read("SERVICES") ?? ROLES.join(",")).split(",").map((s) => s.trim()).filter(Boolean);
  for (const role of roles) {
    if (!(ROLES as readonly string[]).includes(role)) {
      throw new ConfigError("SERVICES", `unknown service "${role}"; choose from ${ROLES.join(", ")}`);
    }
  }
  if (roles.length === 0) throw new ConfigError("SERVICES", "names no service");

  const logLevel = (read("LOG_LEVEL") ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError("LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  }

  const rate = (name: string): Rate | null => {
    const raw = read(name);
    if (raw === undefined) return null;
    try {
      return parseRate(raw, name);
    } catch (err) {
      throw new ConfigError(name, (err as Error).message);
    }
  };

  const apiToken = read("API_TOKEN") ?? null;
  if (apiToken !== null && apiToken.length < 16) {
    throw new ConfigError("API_TOKEN", "must be at least 16 characters");
  }

  const apiReadToken = read("API_READ_TOKEN") ?? null;
  if (apiReadToken !== null) {
    if (apiToken === null) throw new ConfigError("API_READ_TOKEN", "needs API_TOKEN: without it the API is open and a read token means nothing");
    if (apiReadToken.length < 16) throw new ConfigError("API_READ_TOKEN", "must be at least 16 characters");
    if (apiReadToken === apiToken) throw new ConfigError("API_READ_TOKEN", "must differ from API_TOKEN");
  }
  const apiCorsOrigins = (read("API_CORS_ORIGINS") ?? "").split(",").map((o) => o.trim()).filter(Boolean);
  for (const origin of apiCorsOrigins) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(origin);
    } catch {}
    if (!parsed || !["http:", "https:"].includes(parsed.protocol) || parsed.origin !== origin) {
      throw new ConfigError("API_CORS_ORIGINS", `expected origins such as https://console.example.org (scheme, host, optional port; no path), got "${origin}"`);
    }
  }

  return {
    transporter,
    databaseUrl: url("DATABASE_URL", ["postgres:", "postgresql:"]),
    redisUrl: url("REDIS_URL", ["redis:", "rediss:"]),
    roles: [...new Set(roles)] as Role[],
    nodeId: read("NODE_ID") ?? `${os.hostname()}-${process.pid}`,
    namespace: namespace(read("NAMESPACE")),
    port: int("PORT", DEFAULT_PORT, 0, 65535),
    metricsPort: int("METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535),
    apiToken,
    apiReadToken,
    apiCorsOrigins,
    throttleLeaseMs: int("THROTTLE_LEASE_MS", DEFAULT_THROTTLE_LEASE_MS, 1_000, 600_000),
    apiBodyLimitBytes: int("API_BODY_LIMIT_BYTES", DEFAULT_API_BODY_LIMIT_BYTES, 1024, 64 * 1024 * 1024),
    logLevel,
    dataDir: path.resolve(read("DATA_DIR") ?? "data"),
    db: dbSettings(int, rate),
    crawl: {
      hostConcurrency: int("CRAWL_HOST_CONCURRENCY", DEFAULT_CRAWL_HOST_CONCURRENCY, 1, 1000),
      hostRate: rate("CRAWL_HOST_RATE"),
      nodeConcurrency: int("CRAWL_NODE_CONCURRENCY", DEFAULT_CRAWL_NODE_CONCURRENCY, 1, 1000),
      fetchTimeoutMs: int("CRAWL_FETCH_TIMEOUT_MS", DEFAULT_CRAWL_FETCH_TIMEOUT_MS, 100, 600_000),
      maxBytes: int("CRAWL_MAX_BYTES", DEFAULT_CRAWL_MAX_BYTES, 1024, MAX_CRAWL_MAX_BYTES),
      maxRedirects: int("CRAWL_MAX_REDIRECTS", DEFAULT_CRAWL_MAX_REDIRECTS, 0, 20),
      leaseMs: int("CRAWL_LEASE_MS", DEFAULT_CRAWL_LEASE_MS, 1000, 3_600_000),
      allowHosts: (read("CRAWL_ALLOW_HOSTS") ?? "").split(",").map((h) => h.trim()).filter(Boolean).map(parseAllowHost),
    },
    scheduler: {
      minuteMs: int("SCHEDULER_MINUTE_MS", DEFAULT_SCHEDULER_MINUTE_MS, 50, 3_600_000),
      defaultRpm: int("SCHEDULER_RPM", DEFAULT_SCHEDULER_RPM, 1, 1_000_000),
      upstreamUrl: upstreamUrl(read("UPSTREAM_URL")),
      upstreamRate: read("UPSTREAM_RATE") === "auto" ? "auto" : rate("UPSTREAM_RATE"),
      upstreamTimeoutMs: int("UPSTREAM_TIMEOUT_MS", DEFAULT_UPSTREAM_TIMEOUT_MS, 10, 600_000),
      upstreamMaxAttempts: int("UPSTREAM_MAX_ATTEMPTS", DEFAULT_UPSTREAM_MAX_ATTEMPTS, 1, 100),
    },
    jobs: {
      concurrency: int("JOB_CONCURRENCY", DEFAULT_JOB_CONCURRENCY, 1, 100),
      maxAttempts: int("JOB_MAX_ATTEMPTS", DEFAULT_JOB_MAX_ATTEMPTS, 1, 100),
      heartbeatMs: int("JOB_HEARTBEAT_MS", DEFAULT_JOB_HEARTBEAT_MS, 100, 600_000),
      insertBatchRows: int("INSERT_BATCH_ROWS", DEFAULT_INSERT_BATCH_ROWS, 1, 100_000),
    },
  };
}
