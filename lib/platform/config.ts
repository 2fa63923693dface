// The only reader of process.env: named defaults, the settings' shapes, and loadConfig, one
// small reader per section. Everything is validated at boot so that a typo fails the process
// with the variable's name instead of surfacing later as odd behaviour (parsers: env-values.ts).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Rate } from "../throttle/rate";
import { EnvReader, namespace, parseAllowHost, upstreamUrl, type Env } from "./env-values";
import { ConfigError } from "./errors";

export { parseAllowHost };

export const ROLES = ["api", "crawler", "ingestor", "scheduler"] as const;
export type Role = (typeof ROLES)[number];

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const LOG_FORMATS = ["json", "text"] as const;
/** json: one JSON object a line (Pino), for a log system; text: Moleculer's short lines, for a person. */
export type LogFormat = (typeof LOG_FORMATS)[number];

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
// JOB_RETENTION below a minute would delete jobs an operator is still looking at.
export const MIN_JOB_RETENTION_MS = 60_000;
export const DEFAULT_SCHEDULER_MINUTE_MS = 60_000;
export const DEFAULT_SCHEDULER_RPM = 10;
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 5_000;
export const DEFAULT_UPSTREAM_MAX_ATTEMPTS = 4;
// How long a throttle slot (a connection, a fetch) outlives its holder's last renewal. With
// renewals every quarter of it and a check as often, a dead node's slots are back within ~1.25x.
export const DEFAULT_THROTTLE_LEASE_MS = 20_000;
// Months of fetch history (page_fetches) kept: older month partitions are dropped.
export const DEFAULT_FETCH_RETENTION_MONTHS = 12;

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
  /** FETCH_RETENTION_MONTHS: months of fetch history kept. */
  fetchRetentionMonths: number;
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
  /** JOB_RETENTION: finished jobs older than this are deleted by a cluster-wide sweep; null keeps them. */
  retentionMs: number | null;
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
  logFormat: LogFormat;
  dataDir: string;
  db: DbSettings;
  crawl: CrawlSettings;
  jobs: JobSettings;
  scheduler: SchedulerSettings;
  imports: ImportSettings;
}

export interface ImportSettings {
  /** IMPORT_TABLES: the tables an import may write (default rows), as written (optionally schema.table). */
  tables: string[];
  /** IMPORT_MAX_BYTES: the largest file, in bytes (after gzip is undone); a larger one is a 413. */
  maxBytes: number;
}

export const DEFAULT_IMPORT_MAX_BYTES = 10 * 1024 ** 3;

/** `stdoutIsTTY` picks LOG_FORMAT's default: text for a person at a terminal, json for anything else. */
export function loadConfig(env: Env = process.env, stdoutIsTTY = Boolean(process.stdout.isTTY)): Config {
  const r = new EnvReader(env);
  return {
    transporter: transporter(r),
    databaseUrl: databaseUrl(r),
    redisUrl: r.url("REDIS_URL", ["redis:", "rediss:"]),
    roles: roles(r),
    nodeId: r.read("NODE_ID") ?? `${os.hostname()}-${process.pid}`,
    namespace: namespace(r.read("NAMESPACE")),
    port: r.int("PORT", DEFAULT_PORT, 0, 65535),
    metricsPort: r.int("METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535),
    ...apiAccess(r),
    throttleLeaseMs: r.int("THROTTLE_LEASE_MS", DEFAULT_THROTTLE_LEASE_MS, 1_000, 600_000),
    apiBodyLimitBytes: r.int("API_BODY_LIMIT_BYTES", DEFAULT_API_BODY_LIMIT_BYTES, 1024, 64 * 1024 * 1024),
    logLevel: logLevel(r),
    logFormat: logFormat(r, stdoutIsTTY),
    dataDir: path.resolve(r.read("DATA_DIR") ?? "data"),
    db: dbSettings(r),
    crawl: crawlSettings(r),
    scheduler: schedulerSettings(r),
    jobs: jobSettings(r),
    imports: importSettings(r),
  };
}

function importSettings(r: EnvReader): ImportSettings {
  const tables = r.list("IMPORT_TABLES", "rows");
  for (const table of tables) {
    // Names are quoted where they are used; this keeps out what could never be a table name.
    if (!/^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(table)) {
      throw new ConfigError("IMPORT_TABLES", `"${table}" is not a table name (letters, digits, _ and $, optionally schema.table)`);
    }
  }
  return { tables, maxBytes: r.int("IMPORT_MAX_BYTES", DEFAULT_IMPORT_MAX_BYTES, 1, Number.MAX_SAFE_INTEGER) };
}

/** DATABASE_URL, with the password from DATABASE_PASSWORD_FILE (a Docker or Kubernetes secret) put into it. */
function databaseUrl(r: EnvReader): string | null {
  const url = r.url("DATABASE_URL", ["postgres:", "postgresql:"]);
  const file = r.read("DATABASE_PASSWORD_FILE");
  if (file === undefined) return url;
  if (url === null) throw new ConfigError("DATABASE_PASSWORD_FILE", "needs DATABASE_URL, the server the password is for");
  const parsed = new URL(url);
  if (parsed.password) throw new ConfigError("DATABASE_PASSWORD_FILE", "DATABASE_URL holds a password already: give it in one place");
  let password: string;
  try {
    // A secret file often ends with a newline that is not part of the password.
    password = fs.readFileSync(file, "utf8").replace(/\r?\n$/, "");
  } catch (err) {
    throw new ConfigError("DATABASE_PASSWORD_FILE", `cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (password === "") throw new ConfigError("DATABASE_PASSWORD_FILE", `"${file}" is empty`);
  // Encoded whole, so that any character (@, :, /, %) survives the URL.
  parsed.password = encodeURIComponent(password);
  return parsed.href;
}

function transporter(r: EnvReader): string[] | null {
  const raw = r.read("TRANSPORTER");
  if (raw === undefined) return null;
  // Not r.list: an empty entry ("a,,b") is a typo to refuse, not one to drop.
  const servers = raw.split(",").map((server) => server.trim());
  for (const server of servers) {
    if (!/^nats:\/\/[^/\s]+$/.test(server)) {
      throw new ConfigError("TRANSPORTER", `expected nats://host:port (comma-separated for several), got "${server}"`);
    }
  }
  return servers;
}

function roles(r: EnvReader): Role[] {
  const roles = r.list("SERVICES", ROLES.join(","));
  for (const role of roles) {
    if (!(ROLES as readonly string[]).includes(role)) {
      throw new ConfigError("SERVICES", `unknown service "${role}"; choose from ${ROLES.join(", ")}`);
    }
  }
  if (roles.length === 0) throw new ConfigError("SERVICES", "names no service");
  return [...new Set(roles)] as Role[];
}

function logLevel(r: EnvReader): LogLevel {
  const level = (r.read("LOG_LEVEL") ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(level)) {
    throw new ConfigError("LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}, got "${level}"`);
  }
  return level;
}

function logFormat(r: EnvReader, stdoutIsTTY: boolean): LogFormat {
  const format = (r.read("LOG_FORMAT") ?? (stdoutIsTTY ? "text" : "json")) as LogFormat;
  if (!LOG_FORMATS.includes(format)) {
    throw new ConfigError("LOG_FORMAT", `expected one of ${LOG_FORMATS.join(", ")}, got "${format}"`);
  }
  return format;
}

function apiAccess(r: EnvReader): Pick<Config, "apiToken" | "apiReadToken" | "apiCorsOrigins"> {
  const apiToken = r.token("API_TOKEN");
  const apiReadToken = r.token("API_READ_TOKEN");
  if (apiReadToken !== null) {
    if (apiToken === null)
      throw new ConfigError("API_READ_TOKEN", "needs API_TOKEN: without it the API is open and a read token means nothing");
    if (apiReadToken === apiToken) throw new ConfigError("API_READ_TOKEN", "must differ from API_TOKEN");
  }
  const apiCorsOrigins = r.list("API_CORS_ORIGINS");
  for (const origin of apiCorsOrigins) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(origin);
    } catch {
      // not a URL: refused just below, with the value in the message
    }
    if (!parsed || !["http:", "https:"].includes(parsed.protocol) || parsed.origin !== origin) {
      throw new ConfigError(
        "API_CORS_ORIGINS",
        `expected origins such as https://console.example.org (scheme, host, optional port; no path), got "${origin}"`,
      );
    }
  }
  return { apiToken, apiReadToken, apiCorsOrigins };
}

function dbSettings(r: EnvReader): DbSettings {
  const budget = r.int("DB_BUDGET", DEFAULT_DB_BUDGET, 1, 10_000);
  return {
    budget,
    nodeConcurrency: r.int("DB_NODE_CONCURRENCY", Math.min(budget, DEFAULT_DB_NODE_CONCURRENCY_CAP), 1, budget),
    queueMax: r.int("DB_QUEUE_MAX", DEFAULT_DB_QUEUE_MAX, 0, 1_000_000),
    rate: r.rate("DB_RATE"),
  };
}

function crawlSettings(r: EnvReader): CrawlSettings {
  return {
    hostConcurrency: r.int("CRAWL_HOST_CONCURRENCY", DEFAULT_CRAWL_HOST_CONCURRENCY, 1, 1000),
    hostRate: r.rate("CRAWL_HOST_RATE"),
    nodeConcurrency: r.int("CRAWL_NODE_CONCURRENCY", DEFAULT_CRAWL_NODE_CONCURRENCY, 1, 1000),
    fetchTimeoutMs: r.int("CRAWL_FETCH_TIMEOUT_MS", DEFAULT_CRAWL_FETCH_TIMEOUT_MS, 100, 600_000),
    maxBytes: r.int("CRAWL_MAX_BYTES", DEFAULT_CRAWL_MAX_BYTES, 1024, MAX_CRAWL_MAX_BYTES),
    maxRedirects: r.int("CRAWL_MAX_REDIRECTS", DEFAULT_CRAWL_MAX_REDIRECTS, 0, 20),
    leaseMs: r.int("CRAWL_LEASE_MS", DEFAULT_CRAWL_LEASE_MS, 1000, 3_600_000),
    allowHosts: r.list("CRAWL_ALLOW_HOSTS").map(parseAllowHost),
    fetchRetentionMonths: r.int("FETCH_RETENTION_MONTHS", DEFAULT_FETCH_RETENTION_MONTHS, 1, 1200),
  };
}

function schedulerSettings(r: EnvReader): SchedulerSettings {
  return {
    minuteMs: r.int("SCHEDULER_MINUTE_MS", DEFAULT_SCHEDULER_MINUTE_MS, 50, 3_600_000),
    defaultRpm: r.int("SCHEDULER_RPM", DEFAULT_SCHEDULER_RPM, 1, 1_000_000),
    upstreamUrl: upstreamUrl(r.read("UPSTREAM_URL")),
    upstreamRate: r.read("UPSTREAM_RATE") === "auto" ? "auto" : r.rate("UPSTREAM_RATE"),
    upstreamTimeoutMs: r.int("UPSTREAM_TIMEOUT_MS", DEFAULT_UPSTREAM_TIMEOUT_MS, 10, 600_000),
    upstreamMaxAttempts: r.int("UPSTREAM_MAX_ATTEMPTS", DEFAULT_UPSTREAM_MAX_ATTEMPTS, 1, 100),
  };
}

function jobSettings(r: EnvReader): JobSettings {
  return {
    concurrency: r.int("JOB_CONCURRENCY", DEFAULT_JOB_CONCURRENCY, 1, 100),
    maxAttempts: r.int("JOB_MAX_ATTEMPTS", DEFAULT_JOB_MAX_ATTEMPTS, 1, 100),
    heartbeatMs: r.int("JOB_HEARTBEAT_MS", DEFAULT_JOB_HEARTBEAT_MS, 100, 600_000),
    insertBatchRows: r.int("INSERT_BATCH_ROWS", DEFAULT_INSERT_BATCH_ROWS, 1, 100_000),
    retentionMs: r.duration("JOB_RETENTION", MIN_JOB_RETENTION_MS),
  };
}
