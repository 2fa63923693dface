// What each action behind a route answers: its success status and body (JSON Schema 2020-12),
// the errors of its own beyond the common ones, and a line of summary. The OpenAPI document
// (GET /api/openapi.json, lib/api/openapi.ts) takes the paths, methods, access classes and
// parameters from the routes and the actions themselves; this map adds only what the code does
// not declare. An alias whose action has no entry here fails test/unit/openapi.test.ts.
import { objectSchema, type ExtraOperation, type JsonSchema, type OperationDoc } from "../lib/api/openapi";
import { INT4_MAX, MAX_PAGE_LIMIT } from "../lib/api/params";
import { MISFIRE_POLICIES } from "../lib/scheduling/cron";
import { CRAWL_STATUSES } from "../models/crawls";
import { SLOT_STATES } from "../models/id-tasks";
import { JOB_KINDS, JOB_STATUSES } from "../models/jobs";
import { QUEUE_NAMES } from "../models/queues";
import { SCHEDULE_KINDS, type ScheduleKind } from "../models/schedules";
import { RELAYED_EVENTS } from "./console-support";
import { CREATE_CRAWL_PARAMS } from "./crawls.service";
import { CREATE_URL_IMPORT_PARAMS } from "./imports.service";
import { CREATE_INSERT_PARAMS } from "./inserts.service";

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const int = (minimum = 0): JsonSchema => ({ type: "integer", minimum });
const nullable = (schema: JsonSchema): JsonSchema => ({ ...schema, type: [schema.type, "null"] });
const text = { type: "string" };
const time = { type: "string", format: "date-time" };
const maybeTime = nullable(time);
const maybeText = nullable(text);
const object = (properties: Record<string, JsonSchema>, optional: string[] = []): JsonSchema => ({
  type: "object",
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  properties,
});
/** A page of a list: `{ items, total, limit, offset }`; `total` may be a lower bound past the count cap. */
const listOf = (item: JsonSchema): JsonSchema =>
  object({ items: { type: "array", items: item }, total: int(), limit: int(1), offset: int(), totalIsLowerBound: { const: true } }, [
    "totalIsLowerBound",
  ]);
const countOf = object({ count: int() });
const deletedOf = object({ deleted: int() });
const slotCounts = object(Object.fromEntries(SLOT_STATES.map((s) => [s, int()])));
/** A stored page's fields, in the summary's order; the full page adds `extra` (its body) before the counts. */
const pageFields = (at: JsonSchema, extra: Record<string, JsonSchema> = {}): Record<string, JsonSchema> => ({
  id: int(1),
  url: text,
  crawlId: nullable(int(1)),
  status: int(),
  title: maybeText,
  contentType: maybeText,
  ...extra,
  bytes: int(),
  links: int(),
  depth: int(),
  fetchedAt: at,
  storedAt: at,
});

/** The shapes several answers share, under components.schemas. */
export const RESPONSE_SCHEMAS: Record<string, JsonSchema> = {
  Accepted: {
    ...object({ id: int(1), status: { type: "string", enum: [...JOB_STATUSES] } }),
    description: "The job (or crawl) was queued",
  },
  UploadAccepted: {
    ...object({ id: int(1), status: { type: "string", enum: [...JOB_STATUSES] }, rows: int(), bytes: int() }),
    description: "The file is staged in Postgres: `rows` records, `bytes` bytes as received",
  },
  Job: object({
    id: int(1),
    kind: { type: "string", enum: [...JOB_KINDS] },
    status: { type: "string", enum: [...JOB_STATUSES] },
    progress: {
      ...object({ done: int(), total: nullable(int()) }),
      description: "Units done of the total (rows, URLs, ids); an import adds its phase, bytes and staged rows",
    },
    throughput: { type: ["number", "null"], description: "Units per second over the current attempt" },
    nodeId: maybeText,
    attempts: int(),
    error: maybeText,
    params: { type: "object" },
    result: { type: ["object", "null"] },
    createdAt: time,
    startedAt: maybeTime,
    finishedAt: maybeTime,
    updatedAt: time,
  }),
  JobEvent: object({
    id: int(1),
    at: time,
    type: {
      type: "string",
      examples: ["created", "attempt", "running", "error", "handed back", "retry", "stopped", "succeeded", "failed"],
    },
    status: { type: "string", enum: [...JOB_STATUSES] },
    attempt: int(),
    nodeId: maybeText,
    error: maybeText,
  }),
  Crawl: object({
    id: int(1),
    jobId: nullable(int(1)),
    url: text,
    status: { type: "string", enum: [...CRAWL_STATUSES] },
    maxPages: int(1),
    maxDepth: int(),
    pages: object(Object.fromEntries(["discovered", "fetched", "stored", "unchanged", "failed", "skipped"].map((k) => [k, int()]))),
    sitemaps: { type: "boolean" },
    error: maybeText,
    paused: { type: "boolean" },
    createdAt: time,
    startedAt: maybeTime,
    finishedAt: maybeTime,
  }),
  CrawlFailure: object({
    url: text,
    state: { type: "string", enum: ["failed", "skipped"] },
    reason: maybeText,
    httpStatus: nullable(int()),
    depth: int(),
    updatedAt: time,
  }),
  PageSummary: object(pageFields(time)),
  Page: object({
    ...pageFields(maybeTime, { body: maybeText }),
    etag: maybeText,
    lastModified: maybeText,
    contentHash: maybeText,
    outlinks: { type: ["array", "null"], items: text },
  }),
  PageFetch: object({
    fetchedAt: time,
    crawlId: nullable(int(1)),
    outcome: { type: "string", enum: ["fetched", "unchanged", "failed", "skipped"] },
    status: nullable(int()),
    bytes: int(),
    durationMs: { type: "number", minimum: 0 },
    etag: maybeText,
    lastModified: maybeText,
    contentHash: maybeText,
  }),
  Import: {
    allOf: [
      ref("Job"),
      object({
        import: object(
          {
            table: text,
            format: { type: "string", enum: ["csv", "ndjson"] },
            source: { type: "string", enum: ["upload", "url"] },
            url: text,
            columns: { type: "array", items: text },
            phase: { type: "string", examples: ["uploading", "staged", "loading", "succeeded"] },
            rows: object({ done: int(), total: nullable(int()), staged: nullable(int()) }),
            bytes: object({ done: int(), total: nullable(int()) }),
          },
          ["url"],
        ),
      }),
    ],
  },
  IdTask: {
    allOf: [ref("Job"), object({ rpm: int(1), paused: { type: "boolean" }, firstMinuteAt: time, lastMinuteAt: time, counts: slotCounts })],
  },
  Schedule: object({
    id: int(1),
    cron: text,
    timezone: text,
    misfire: { type: "string", enum: [...MISFIRE_POLICIES] },
    job: object({ kind: { type: "string", enum: [...SCHEDULE_KINDS] }, params: { type: "object" } }),
    paused: { type: "boolean" },
    nextRunAt: { ...maybeTime, description: "null while paused" },
    lastRunAt: maybeTime,
    createdAt: time,
    updatedAt: time,
  }),
  Queue: object({ name: { type: "string", enum: [...QUEUE_NAMES] }, paused: { type: "boolean" }, depth: int(), updatedAt: time }),
  Row: object({ id: int(1), name: text, value: { type: "number" }, createdAt: time }),
  User: object({
    id: int(1),
    externalId: int(1),
    name: maybeText,
    email: maybeText,
    profile: { type: ["object", "null"] },
    createdAt: time,
    updatedAt: time,
  }),
  Rate: object({ count: int(1), perMs: int(1) }),
};

const limiter = object({
  resource: text,
  maxConcurrent: nullable(int()),
  rate: { anyOf: [ref("Rate"), { type: "null" }] },
  minTimeMs: { type: "number" },
  clustered: { type: "boolean" },
  fallback: { type: "boolean" },
  running: int(),
  queued: int(),
  peakRunning: int(),
  done: int(),
  reclaimed: int(),
});
const holder = object(
  {
    holder: text,
    slots: int(),
    since: time,
    state: { type: "string", enum: ["live", "presumed dead"] },
    expiredForMs: { type: "number" },
  },
  ["expiredForMs"],
);
const throttle = object({
  resources: {
    type: "array",
    items: object(
      {
        resource: text,
        limit: nullable(int()),
        rate: { ...maybeText, description: "like 20/s" },
        running: int(),
        queued: int(),
        rejected: int(),
        fallbackNodes: int(),
        nodes: int(),
        reclaimed: int(),
        holders: { type: "array", items: holder },
      },
      ["reclaimed", "holders"],
    ),
  },
  nodes: {
    type: "array",
    items: object({
      nodeId: text,
      redis: { type: "string", enum: ["not configured", "ok", "down (local fallback)"] },
      db: object(
        Object.fromEntries([
          ["resource", { const: "db" }],
          ["budget", int()],
          ...["limit", "running", "queued", "peakRunning", "peakQueued", "rejected", "acquired"].map((k) => [k, int()]),
        ]),
      ),
      limiters: { type: "array", items: limiter },
    }),
  },
});
const node = object(
  {
    nodeId: text,
    available: { type: "boolean" },
    local: { type: "boolean" },
    services: { type: "array", items: text },
    uptimeSeconds: int(),
    memory: object({ rss: int(), heapUsed: int() }),
  },
  ["uptimeSeconds", "memory"],
);
const ready = object({ ready: { type: "boolean" }, checks: { type: "object", additionalProperties: text }, boot: { type: "object" } }, [
  "checks",
  "boot",
]);
const scheduleRun = object({ fireAt: time, jobId: nullable(int(1)), nodeId: maybeText, error: maybeText, createdAt: time });
const usersPage = object({ rows: { type: "array", items: ref("User") }, total: int(), page: int(1), pageSize: int(1), totalPages: int() });

// What the users service parses itself (its rules are `any`, so that `$$strict` refuses the rest).
const userId = { type: "integer", minimum: 1, maximum: INT4_MAX };
const USER_LIST_PARAMS: Record<string, JsonSchema> = {
  page: { type: "integer", minimum: 1, maximum: 1_000_000, default: 1 },
  pageSize: { type: "integer", minimum: 1, maximum: MAX_PAGE_LIMIT, default: 50 },
  sort: {
    type: "string",
    maxLength: 200,
    description: "Columns of id, externalId, name, email, createdAt, updatedAt, each optionally with -",
    default: "id",
  },
  search: { type: "string", maxLength: 100, description: "Matched literally in searchFields" },
  searchFields: { type: "string", maxLength: 200, description: "name, email or both (the default)" },
  query: { type: "string", maxLength: 2048, description: 'A JSON object of id, externalId, name, email to equal values: {"name":"Ada"}' },
};

const UPLOAD_QUERY: Record<string, JsonSchema> = {
  table: { type: "string", maxLength: 200, description: "A table of IMPORT_TABLES" },
  format: { type: "string", enum: ["csv", "ndjson"], description: "Follows the Content-Type" },
  header: { type: "boolean", default: true, description: "The CSV file's first line names its columns" },
  delimiter: { type: "string", minLength: 1, maxLength: 1, default: "," },
  columns: { type: "string", description: "Comma-separated column names" },
};

const job = ref("Job");
const accepted = ref("Accepted");

// A schedule's job: its kind, and its params as that kind's own create action takes them
// (schedules.service.ts checks them against the same rules).
const SCHEDULE_JOB_PARAMS: Record<ScheduleKind, Record<string, unknown>> = {
  crawl: CREATE_CRAWL_PARAMS,
  insert: CREATE_INSERT_PARAMS,
  import: CREATE_URL_IMPORT_PARAMS,
};
const scheduleJob: JsonSchema = {
  anyOf: SCHEDULE_KINDS.map((kind) => ({
    type: "object",
    required: ["kind"],
    additionalProperties: false,
    properties: { kind: { const: kind }, params: objectSchema(SCHEDULE_JOB_PARAMS[kind]) },
  })),
};

/** Every action behind a route, and how it answers. */
export const ACTION_RESPONSES: Record<string, OperationDoc> = {
  "api.health": {
    summary: "Liveness: answers as soon as the process runs",
    status: 200,
    schema: object({ status: { const: "ok" }, nodeId: text, uptimeSeconds: int() }),
  },
  "api.ready": {
    summary: "Readiness: the database, and the transporter and Redis when configured",
    description: "Anonymous callers get only `{ ready }` when API_TOKEN is set. While the node boots: `{ ready: false, boot }`.",
    status: 200,
    schema: ready,
    also: { 503: { description: "Not ready (or still booting)", schema: ready } },
  },
  "api.events": {
    summary: "Server-Sent Events: the cluster's job, crawl, throttle, queue and node news",
    description: `Events: ${[...RELAYED_EVENTS, "throttle.stats", "queues.stats", "nodes.changed"].join(", ")}; a \`: ping\` comment every 15 s. At most 500 streams per node (then 503).`,
    status: 200,
    content: { "text/event-stream": { type: "string" } },
  },
  "api.nodes": {
    summary: "The cluster's nodes, their services, uptime and memory",
    status: 200,
    schema: object({ items: { type: "array", items: node } }),
  },
  "api.whoami": {
    summary: "What the caller's token allows",
    status: 200,
    schema: object({ caller: { type: "string", enum: ["anonymous", "reader", "writer"] }, canWrite: { type: "boolean" } }),
  },
  "api.openapi": {
    summary: "This document",
    status: 200,
    schema: object({ openapi: { type: "string", pattern: "^3\\.1\\." }, info: { type: "object" }, paths: { type: "object" } }),
  },
  "api.docs": {
    summary: "The API's documentation page (this document, rendered)",
    description: "The same page is at `/docs/` without a token (it holds no data); it asks for the token to read this document.",
    status: 200,
    content: { "text/html": { type: "string" } },
  },

  "crawls.create": { summary: "Starts a crawl", status: 202, schema: accepted, location: "/api/crawls/{id}" },
  "crawls.list": { summary: "Crawls, newest first", status: 200, schema: listOf(ref("Crawl")) },
  "crawls.get": { summary: "One crawl and its page counts", status: 200, schema: ref("Crawl") },
  "crawls.update": { summary: "Pauses or resumes a pending or running crawl", status: 200, schema: ref("Crawl"), errors: [409] },
  "crawls.failures": {
    summary: "The crawl's URLs that failed or were skipped, latest first",
    status: 200,
    schema: listOf(ref("CrawlFailure")),
  },
  "crawls.cancel": { summary: "Cancels a pending or running crawl", status: 200, schema: ref("Crawl"), errors: [409] },

  "pages.count": { summary: "How many pages are stored (for one crawl, or all)", status: 200, schema: countOf },
  "pages.list": { summary: "Stored pages without their bodies", status: 200, schema: listOf(ref("PageSummary")) },
  "pages.get": { summary: "One page, with its body, validators and outlinks", status: 200, schema: ref("Page") },
  "pages.fetches": { summary: "The page's fetch history, latest first", status: 200, schema: listOf(ref("PageFetch")) },

  "inserts.create": {
    summary: "Queues a bulk-insert job of random rows",
    status: 202,
    schema: accepted,
    location: "/api/jobs/{id}",
    bodyRequired: true,
  },
  "inserts.sync": {
    summary: "Blocking: runs an insert job inside the request and answers the finished job",
    status: 200,
    schema: job,
    bodyRequired: true,
  },

  "imports.create": {
    summary: "Imports a CSV or NDJSON file: the body itself, or a URL to fetch",
    status: 202,
    schema: accepted,
    location: "/api/imports/{id}",
    uploads: {
      mediaTypes: ["text/csv", "application/x-ndjson"],
      description:
        "A file as the body (`Content-Encoding: gzip` allowed, up to IMPORT_MAX_BYTES), with the query parameters below; or JSON naming a `url` to fetch.",
      query: UPLOAD_QUERY,
      response: ref("UploadAccepted"),
    },
  },
  "imports.list": { summary: "Import jobs, newest first", status: 200, schema: listOf(ref("Import")) },
  "imports.get": { summary: "One import job with its rows and bytes", status: 200, schema: ref("Import") },

  "schedules.create": {
    summary: "Creates a recurring schedule",
    status: 201,
    schema: ref("Schedule"),
    location: "/api/schedules/{id}",
    paramDetails: { job: scheduleJob },
  },
  "schedules.list": { summary: "Schedules", status: 200, schema: listOf(ref("Schedule")) },
  "schedules.get": {
    summary: "One schedule and its latest runs",
    status: 200,
    schema: { allOf: [ref("Schedule"), object({ runs: { type: "array", items: scheduleRun } })] },
  },
  "schedules.update": { summary: "Pauses, resumes or changes a schedule", status: 200, schema: ref("Schedule") },
  "schedules.remove": { summary: "Deletes a schedule and its runs (the jobs it started are kept)", status: 200, schema: ref("Schedule") },

  "jobs.list": { summary: "Jobs, newest first", status: 200, schema: listOf(job) },
  "jobs.get": { summary: "One job", status: 200, schema: job },
  "jobs.stop": { summary: "Stops a job (a rollback)", status: 200, schema: job, errors: [409] },
  "jobAdmin.events": { summary: "The job's history, oldest first", status: 200, schema: listOf(ref("JobEvent")) },
  "jobAdmin.retry": { summary: "Runs a failed or cancelled job again", status: 202, schema: job, errors: [409] },
  "jobAdmin.retryMany": { summary: "Retries every matching failed or cancelled job", status: 200, schema: object({ retried: int() }) },
  "jobAdmin.remove": { summary: "Deletes finished jobs and what belongs only to them", status: 200, schema: deletedOf },
  "jobAdmin.removeOne": { summary: "Deletes one finished job", status: 200, schema: object({ deleted: { const: 1 } }), errors: [409] },

  "queues.list": {
    summary: "The queues, paused or not, and their depth",
    status: 200,
    schema: object({ items: { type: "array", items: ref("Queue") } }),
  },
  "queues.update": { summary: "Pauses or resumes a queue for the whole cluster", status: 200, schema: ref("Queue") },

  "rows.count": { summary: "How many rows the rows table holds (a kept count)", status: 200, schema: countOf },
  "rows.list": { summary: "Rows of the rows table", status: 200, schema: listOf(ref("Row")) },
  "rows.clear": { summary: "Empties the rows table", status: 200, schema: deletedOf, errors: [409] },

  "users.list": { summary: "Users (moleculer-db's page)", status: 200, schema: usersPage, paramDetails: USER_LIST_PARAMS },
  "users.get": { summary: "One user", status: 200, schema: ref("User"), paramDetails: { id: userId } },
  "users.create": { summary: "Creates a user", status: 200, schema: ref("User"), errors: [409] },
  "users.update": { summary: "Changes a user", status: 200, schema: ref("User"), errors: [409], paramDetails: { id: userId } },

  "throttle.cluster": { summary: "The limits, per resource over all nodes and per node", status: 200, schema: throttle },
  "throttle.set": {
    summary: "Changes a limit for the whole cluster at runtime",
    status: 200,
    schema: object({ resource: text, maxConcurrent: int(1), rate: { anyOf: [ref("Rate"), { type: "null" }] } }, ["maxConcurrent", "rate"]),
  },
  "backlog.get": {
    summary: "Queue lag: work waiting for each kind of worker",
    status: 200,
    schema: object({ crawlUrls: int(), insertJobs: int(), ids: int() }),
  },

  "idTasks.create": {
    summary: "Creates an id-task: ids spread over the coming minutes under an RPM cap",
    status: 202,
    location: "/api/id-tasks/{id}",
    schema: object({
      id: int(1),
      status: { type: "string", enum: [...JOB_STATUSES] },
      plan: object({ firstMinute: time, lastMinute: time, perMinute: int(), minutes: int() }),
    }),
  },
  "idTasks.list": { summary: "Id-tasks", status: 200, schema: listOf(ref("IdTask")) },
  "idTasks.get": { summary: "One id-task and its slot counts", status: 200, schema: ref("IdTask") },
  "idTasks.update": { summary: "Pauses or resumes an id-task, or gives it a new RPM", status: 200, schema: ref("IdTask") },
  "idTasks.minutes": {
    summary: "The task's plan per minute (a heatmap)",
    status: 200,
    schema: object({ rpm: int(1), minuteMs: int(1), items: { type: "array", items: object({ minute: time, counts: slotCounts }) } }),
  },
  "idTasks.slots": {
    summary: "The task's ids with their minute, state, attempts and error",
    status: 200,
    schema: object({
      items: {
        type: "array",
        items: object({ id: int(1), minute: time, state: { type: "string", enum: [...SLOT_STATES] }, attempts: int(), error: maybeText }),
      },
      limit: int(1),
      offset: int(),
    }),
  },
};

/** Tags, in the order the docs page shows them. */
export const API_TAGS = [
  { name: "crawls", description: "Crawl requests and their progress" },
  { name: "pages", description: "Stored pages and their fetch history" },
  { name: "inserts", description: "Bulk-insert jobs" },
  { name: "imports", description: "CSV and NDJSON imports" },
  { name: "jobs", description: "Every long operation is a job" },
  { name: "schedules", description: "Recurring jobs" },
  { name: "id-tasks", description: "Ids spread over minutes under an RPM cap" },
  { name: "users", description: "The users table (moleculer-db CRUD)" },
  { name: "rows", description: "The rows that insert jobs write" },
  { name: "queues", description: "Pausing work cluster-wide" },
  { name: "throttle", description: "Limits per resource" },
  { name: "backlog", description: "Queue lag" },
  { name: "gateway", description: "Health, readiness, the caller, the nodes, the event stream and this document" },
  { name: "metrics", description: "Prometheus, on METRICS_PORT" },
  { name: "compatibility", description: "The seed apps' routes, with the same meaning" },
];

const GATEWAY_SEGMENTS = new Set(["health", "ready", "whoami", "nodes", "events", "docs", "openapi.json"]);

export function tagOf(routePath: string, segment: string): string {
  if (routePath === "" || routePath === "/celery_ids_tasks") return "compatibility";
  if (routePath === "/api/id-tasks") return "id-tasks";
  return GATEWAY_SEGMENTS.has(segment) ? "gateway" : segment;
}

/** The Prometheus endpoint: served by the broker's reporter on its own port, not by the gateway, and unguarded. */
export function metricsOperation(port: number): ExtraOperation {
  return {
    method: "GET",
    path: "/metrics",
    operation: {
      operationId: "metrics",
      summary: "Prometheus metrics (on METRICS_PORT, without authentication)",
      description: "Served by the broker's Prometheus reporter on its own port: bind it to the cluster's network only (docs/security.md).",
      tags: ["metrics"],
      servers: [
        {
          url: "http://{host}:{port}",
          description: "METRICS_PORT",
          variables: { host: { default: "localhost" }, port: { default: String(port) } },
        },
      ],
      security: [],
      responses: { 200: { description: "The Prometheus text format", content: { "text/plain": { schema: { type: "string" } } } } },
    },
  };
}
