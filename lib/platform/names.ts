// Channel, event and metric names in one place.
export const CHANNEL_PAGES = "sluice.pages";
export const EVENT_CRAWL_CREATED = "crawls.created";
export const EVENT_CRAWL_FINISHED = "crawls.finished";

export const METRIC_PAGES_FETCHED = "sluice.pages.fetched";
export const METRIC_PAGES_STORED = "sluice.pages.stored";
export const METRIC_PAGES_FAILED = "sluice.pages.failed";
export const METRIC_PAGES_SKIPPED = "sluice.pages.skipped";
export const METRIC_PAGES_UNCHANGED = "sluice.pages.unchanged";
export const CHANNEL_JOBS = "sluice.jobs";
/** Every job status change (and running progress), with the job's view as payload. */
export const EVENT_JOBS_UPDATED = "jobs.updated";
/** One id of an id-task, due now: { taskId, externalId }. */
export const CHANNEL_IDS = "sluice.ids";
/** A quarter of the hour has ended: what the scheduler dispatched in it. */
export const EVENT_QUARTER = "idTasks.quarter";

/** The cluster-wide limiter whose slots are Postgres connections. */
export const DB_CONNECTIONS_RESOURCE = "db:connections";
/** The cluster-wide limiter of database operations (only with DB_RATE). */
export const DB_RESOURCE = "db";
/** A queue was paused or resumed: the queue's view. */
export const EVENT_QUEUES_CHANGED = "queues.changed";
/** A limit was changed at runtime (PATCH /api/throttle): { resource, maxConcurrent?, rate? }. */
export const EVENT_THROTTLE_CHANGED = "throttle.changed";

// Histograms are in seconds and named `_seconds`, as Prometheus has it (Moleculer's reporter turns
// the dots into underscores). What each measures, its labels and buckets: services/metrics.ts.
export const METRIC_FETCH_SECONDS = "sluice.fetch.duration.seconds";
export const METRIC_UPSTREAM_SECONDS = "sluice.upstream.duration.seconds";
export const METRIC_JOB_SECONDS = "sluice.job.duration.seconds";
export const METRIC_JOB_OUTCOMES = "sluice.job.outcomes";
export const METRIC_DB_PERMIT_WAIT_SECONDS = "sluice.db.permit.wait.seconds";
export const METRIC_DB_PERMIT_HOLD_SECONDS = "sluice.db.permit.hold.seconds";
/** 1 per role this node runs (SERVICES): which nodes schedule, crawl, ingest or serve the API. */
export const METRIC_NODE_ROLE = "sluice.node.role";
