// The throttle benchmark's knobs and servers, read once from the environment (bench/README.md).
import { DEFAULT_DB_QUEUE_MAX } from "../../lib/platform/config";
import { parseRate } from "../../lib/throttle/rate";
import { INGEST_BATCH_SIZE } from "../../services/ingestor.service";
import { intEnv } from "../support";

export const OPS = intEnv("BENCH_OPS", 20_000, 100, 10_000_000);
export const BOTTLENECK_OPS = intEnv("BENCH_BOTTLENECK_OPS", 2_000, 10, 1_000_000);
export const INGEST_ROWS = intEnv("BENCH_INGEST_ROWS", 10_000, INGEST_BATCH_SIZE, 1_000_000);
export const INGEST_ROUNDS = intEnv("BENCH_INGEST_ROUNDS", 7, 1, 50);
export const DB_BUDGET = intEnv("BENCH_DB_BUDGET", 4, 1, 100);
const DB_RATE_RAW = process.env.BENCH_DB_RATE?.trim() || "1000/s";
export const DB_RATE = DB_RATE_RAW === "none" ? null : parseRate(DB_RATE_RAW, "BENCH_DB_RATE");
export const PAGES = intEnv("BENCH_PAGES", 3_000, 1, 99_000);
export const PROCESSES = (process.env.BENCH_PROCESSES ?? "1,2,4")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
  .map(Number);
if (PROCESSES.some((n) => !Number.isInteger(n) || n < 1 || n > 16))
  throw new Error(`BENCH_PROCESSES: expected process counts from 1 to 16, got "${process.env.BENCH_PROCESSES}"`);
export const RATE_OPS = intEnv("BENCH_RATE_OPS", 100, 3, 100_000);
export const TIMEOUT_MS = intEnv("BENCH_TIMEOUT_S", 120, 1, 86_400) * 1000;
export const ADMIN_DATABASE_URL = process.env.DATABASE_URL?.trim() || "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.REDIS_URL?.trim() || "redis://127.0.0.1:6379";
export const NATS_URL = process.env.NATS_URL?.trim() || "nats://127.0.0.1:4222";
// The production bound on the bulkhead's queue (DEFAULT_DB_QUEUE_MAX): bursts are also measured at this size.
export const QUEUE_MAX = DEFAULT_DB_QUEUE_MAX;
// The goal this benchmark checks: the throttle costs under this share of ingest throughput.
export const GOAL_SHARE = 0.05;

export const RUN_ID = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
export const quiet = { warn: () => {}, info: () => {} };
