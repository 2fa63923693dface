// The histograms and job counters Sluice adds to Moleculer's metrics (README "Metrics"; names
// in lib/platform/names.ts). All durations are in seconds. Histograms carry buckets and no
// quantiles: Grafana takes percentiles across nodes with histogram_quantile(), which per-node
// quantiles cannot give. (So Moleculer's reporter writes `_bucket` series only, no `_sum` or
// `_count`: a count is the `le="+Inf"` bucket.)
import { performance } from "node:perf_hooks";
import type { MetricRegistry } from "moleculer";
import type { GateObserver } from "../lib/platform/db";
import {
  METRIC_DB_PERMIT_HOLD_SECONDS,
  METRIC_DB_PERMIT_WAIT_SECONDS,
  METRIC_FETCH_SECONDS,
  METRIC_JOB_OUTCOMES,
  METRIC_JOB_SECONDS,
  METRIC_UPSTREAM_SECONDS,
} from "../lib/platform/names";
import { JOB_KINDS, type JobKind, type JobRow } from "../models/jobs";

// Bucket bounds, in seconds. A fetch or an upstream call: a few ms on a LAN up to its timeout
// (CRAWL_FETCH_TIMEOUT_MS 10 s, UPSTREAM_TIMEOUT_MS 5 s by default; both may be set higher).
const CALL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// A job attempt: a 100-row insert takes well under a second, a crawl or a 5M-row import hours.
const JOB_BUCKETS = [0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];
// Waiting for a database permit: nothing while the bulkhead has room, seconds once it queues.
const PERMIT_WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// Holding one: a query's milliseconds up to a job transaction's hours.
const PERMIT_HOLD_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 14400];

const histogram = (name: string, description: string, labelNames: string[], buckets: number[]) =>
  ({ type: "histogram", name, description, labelNames, buckets, unit: "seconds" }) as const;

export const FETCH_DURATION = histogram(
  METRIC_FETCH_SECONDS,
  "Fetches (pages, robots.txt, sitemaps), from the request to the body read, the wait for the host's turn left out, per host",
  ["host"],
  CALL_BUCKETS,
);
export const UPSTREAM_DURATION = histogram(
  METRIC_UPSTREAM_SECONDS,
  "Upstream API calls, the wait for the limiter left out, by outcome (ok, throttled, failed)",
  ["outcome"],
  CALL_BUCKETS,
);

// The host label is capped per node. A crawl of the open web meets hosts without end, and
// Moleculer's registry never drops a series (13 buckets each); the limiter hub drops idle
// per-host limiters, but nothing does that for metrics. So the first MAX_FETCH_HOST_LABELS hosts
// a node fetches from keep their own series, and any later host is counted under "other".
export const MAX_FETCH_HOST_LABELS = 50;
export const OTHER_HOST = "other";
const hostsOf = new WeakMap<MetricRegistry, Set<string>>();

/** One fetch of `url` that took `ms`. */
export function observeFetch(metrics: MetricRegistry, url: string, ms: number): void {
  let hosts = hostsOf.get(metrics);
  if (!hosts) hostsOf.set(metrics, (hosts = new Set()));
  const host = new URL(url).host;
  if (hosts.size < MAX_FETCH_HOST_LABELS) hosts.add(host);
  metrics.observe(METRIC_FETCH_SECONDS, ms / 1000, { host: hosts.has(host) ? host : OTHER_HOST });
}

/** `call`, timed into `name` with its outcome's kind as the `outcome` label. */
export async function timed<T extends { kind: string }>(metrics: MetricRegistry, name: string, call: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const outcome = await call();
  metrics.observe(name, (performance.now() - started) / 1000, { outcome: outcome.kind });
  return outcome;
}

/**
 * How a job attempt ended: succeeded, failed (no attempt follows), cancelled (by a stop
 * request), retried (it failed and another attempt follows) or handed_back (its node stopped;
 * the attempt is not counted against the job). A crawl and an id-task have one attempt.
 */
export const JOB_OUTCOMES = ["succeeded", "failed", "cancelled", "retried", "handed_back"] as const;
export type JobOutcome = (typeof JOB_OUTCOMES)[number];

/**
 * The job metrics, registered once per broker, with every kind's and outcome's counter at 0, so
 * that rate() and the failure-rate alert see the first outcome of each.
 */
export function registerJobMetrics(metrics: MetricRegistry): void {
  if (metrics.hasMetric(METRIC_JOB_OUTCOMES)) return;
  metrics.register({
    type: "counter",
    name: METRIC_JOB_OUTCOMES,
    description: "Job attempts ended, by kind and outcome",
    labelNames: ["kind", "outcome"],
  });
  metrics.register(histogram(METRIC_JOB_SECONDS, "Job attempts' run time, by kind and outcome", ["kind", "outcome"], JOB_BUCKETS));
  for (const kind of JOB_KINDS) for (const outcome of JOB_OUTCOMES) metrics.increment(METRIC_JOB_OUTCOMES, { kind, outcome }, 0);
}

/** One attempt's end, counted by whoever made its status change (once); `seconds` null when it did not run here. */
export function jobEnded(metrics: MetricRegistry, kind: JobKind, outcome: JobOutcome, seconds: number | null): void {
  registerJobMetrics(metrics);
  metrics.increment(METRIC_JOB_OUTCOMES, { kind, outcome });
  if (seconds !== null) metrics.observe(METRIC_JOB_SECONDS, seconds, { kind, outcome });
}

/** A finished job's run time, from its first start to its end (a crawl's, an id-task's). */
export function runSeconds(job: JobRow): number | null {
  if (!job.started_at || !job.finished_at) return null;
  return Math.max(0, new Date(job.finished_at).getTime() - new Date(job.started_at).getTime()) / 1000;
}

/** The database bulkhead's permits, timed per lane (slow: job transactions and other long work; quick: the rest). */
export function permitTimings(metrics: MetricRegistry): GateObserver {
  metrics.register(
    histogram(METRIC_DB_PERMIT_WAIT_SECONDS, "Waits for a database permit (this node's bulkhead), per lane", ["lane"], PERMIT_WAIT_BUCKETS),
  );
  metrics.register(
    histogram(
      METRIC_DB_PERMIT_HOLD_SECONDS,
      "How long database permits were held (a connection checked out), per lane",
      ["lane"],
      PERMIT_HOLD_BUCKETS,
    ),
  );
  const lane = (slow: boolean) => ({ lane: slow ? "slow" : "quick" });
  return {
    waited: (seconds, slow) => metrics.observe(METRIC_DB_PERMIT_WAIT_SECONDS, seconds, lane(slow)),
    held: (seconds, slow) => metrics.observe(METRIC_DB_PERMIT_HOLD_SECONDS, seconds, lane(slow)),
  };
}
