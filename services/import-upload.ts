// POST /api/imports with a file as the body (text/csv or application/x-ndjson, gzip allowed):
// the request guard hands the request over once the caller may write, before any byte is read.
// The body streams through COPY into the job's staging table, inside one transaction, so every
// value is parsed and checked (with its line) before the answer. The 202 is sent only after
// that transaction committed: from then on the upload is in Postgres, and a node that dies
// loses nothing. A failure rolls the transaction back, staging table and all, and the job
// ends failed saying why (or "upload interrupted" when the client went away).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable, Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import type { Sequelize } from "sequelize";
import type { Config } from "../lib/platform/config";
import { inSlowLane } from "../lib/platform/db";
import type { CopyIn } from "../lib/platform/bulk-copy";
import { JobStoppedError, RequestError, ValidationError } from "../lib/platform/errors";
import { toHttpError } from "../lib/api/http-error";
import { findNul } from "../lib/api/request-guard";
import {
  columnProblem,
  copyStatement,
  formatOfContentType,
  ImportDataError,
  importSpecOf,
  type ImportSpec,
} from "../lib/loading/import-format";
import { asDataError, ImportTooLargeError, openRecords, type ImportRecords } from "../lib/loading/import-stream";
import { createJob, finishPendingJob, getJob } from "../models/jobs";
import { catalogColumns, createStaging, dropStaging, recordUpload, stagingTable, type ImportProgress } from "../models/imports";
import { announceEnded, announceJob } from "./announce";
import { queueBulkJob, type JobQueuer } from "./bulk-job";

export interface UploadDeps {
  db: Sequelize;
  config: Config;
  copyIn: CopyIn;
  broker: JobQueuer;
  logger: { error(...args: unknown[]): void };
}

// How often an upload records its progress (and learns whether it was stopped).
const UPLOAD_PROGRESS_MS = 1_000;

const UPLOAD_PARAMS = ["table", "format", "header", "delimiter", "columns"];

const DECODERS: Record<string, () => Transform> = {
  gzip: createGunzip,
  "x-gzip": createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

/** The handler of POST /api/imports: true when it took the request (a file), false for a JSON body (a URL import, the action's). */
export function importUploadHandler(deps: UploadDeps) {
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const type = String(req.headers["content-type"] ?? "").toLowerCase();
    if (type.startsWith("application/json")) return false;
    upload(deps, req, res).catch((err: unknown) => {
      if (toHttpError(err).status >= 500) deps.logger.error(`import upload failed`, err);
      send(res, err);
    });
    return true;
  };
}

async function upload(deps: UploadDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { spec, records } = await openUpload(deps, req);
  const job = await createJob(deps.db, "import", { ...spec, source: "upload" }, null);
  const rows = await stage(deps, req, job.id, spec, records);
  await queueBulkJob(deps.db, deps.broker, job);
  announceJob(deps.broker, await getJob(deps.db, job.id));
  res.writeHead(202, { "Content-Type": "application/json; charset=utf-8", Location: `/api/imports/${job.id}` });
  res.end(JSON.stringify({ id: job.id, status: "pending", rows, bytes: records.bytes() }));
}

/**
 * Checks the request and reads the file up to its first record, which settles the columns.
 * Nothing is written yet: a refusal here changes nothing (no job, no staging).
 */
async function openUpload(deps: UploadDeps, req: IncomingMessage): Promise<{ spec: ImportSpec; records: ImportRecords }> {
  const { db, config } = deps;
  const format = formatOfContentType(req.headers["content-type"]);
  if (format === null) {
    throw new RequestError(415, "UNSUPPORTED_MEDIA_TYPE", "an import's body is text/csv or application/x-ndjson (or JSON with a url)", {
      field: "content-type",
    });
  }
  const query = Object.fromEntries(new URL(req.url ?? "/", "http://localhost").searchParams);
  // As for JSON parameters (api.service.ts): a NUL would reach the COPY statement or the catalog query.
  const nul = findNul(query);
  if (nul !== null) throw new ValidationError(nul.slice(0, 100), `"${nul.slice(0, 100)}" must not contain a NUL character`);
  const unknown = Object.keys(query).find((k) => !UPLOAD_PARAMS.includes(k));
  if (unknown !== undefined) {
    const name = unknown.slice(0, 100);
    throw new ValidationError(name, `unknown parameter "${name}": an upload takes ${UPLOAD_PARAMS.join(", ")}`);
  }
  const spec = importSpecOf(query, config.imports.tables, format);
  const encoding = String(req.headers["content-encoding"] ?? "identity")
    .trim()
    .toLowerCase();
  // 400 as on the JSON routes (api-guard.ts): the body's bytes are unreadable, whatever their type.
  if (encoding !== "identity" && !DECODERS[encoding]) {
    throw new RequestError(400, "BAD_CONTENT_ENCODING", "Content-Encoding must be identity, gzip, deflate or br", {
      field: "content-encoding",
    });
  }
  const maxBytes = config.imports.maxBytes;
  if (Number(req.headers["content-length"] ?? 0) > maxBytes) throw tooLarge(maxBytes);
  const catalog = await catalogColumns(db, spec.table);
  if (!catalog) throw new ValidationError("table", `table ${spec.table} does not exist`);

  const body: Readable = encoding === "identity" ? req : req.pipe(DECODERS[encoding]!());
  if (body !== req) req.on("error", (err) => body.destroy(err));
  let records: ImportRecords;
  try {
    records = await openRecords(body, spec, maxBytes);
  } catch (err) {
    throw refusal(err, req);
  }
  if (records.columns.length === 0) throw new ValidationError("body", "the file is empty");
  const problem = columnProblem(records.columns, catalog);
  if (problem) throw new ValidationError("columns", problem.message, { column: problem.column });
  return { spec: { ...spec, columns: records.columns }, records };
}

/**
 * Streams the records into the job's staging table in one transaction, and marks the job
 * staged once it has committed. Answers the rows staged. On a failure the transaction (staging
 * table and all) is rolled back and the job fails saying why; a stop has cancelled it already.
 */
async function stage(deps: UploadDeps, req: IncomingMessage, jobId: number, spec: ImportSpec, records: ImportRecords): Promise<number> {
  const { db } = deps;
  const progress = (phase: ImportProgress["phase"], rowsStaged = records.rows()): ImportProgress => ({
    phase,
    bytes: records.bytes(),
    rowsStaged,
  });
  await recordUpload(db, jobId, progress("uploading"));
  announceJob(deps.broker, await getJob(db, jobId));

  // A progress write that finds the job stopped ends the upload.
  let stopped = false;
  // Typed by assertion: set inside the timer's closure, which narrowing does not see.
  let writing = null as Promise<void> | null;
  const timer = setInterval(() => {
    writing ??= recordUpload(db, jobId, progress("uploading"))
      .then((alive) => void (stopped ||= !alive))
      .catch(() => {})
      .finally(() => (writing = null));
  }, UPLOAD_PROGRESS_MS);
  async function* checked() {
    for await (const chunk of records.records) {
      if (stopped) throw new JobStoppedError(jobId, "stopped");
      yield chunk;
    }
  }
  let rows: number;
  try {
    rows = await inSlowLane(() =>
      db.transaction(async (t) => {
        await createStaging(db, jobId, spec, t);
        const copied = await deps.copyIn(t, copyStatement({ ...spec, table: stagingTable(jobId) }), checked());
        if (copied === 0) throw new ImportDataError(null, "the file has no rows");
        return copied;
      }),
    );
  } catch (err) {
    const refused = refusal(asDataError(err, records, spec.table), req);
    if (!(err instanceof JobStoppedError)) announceEnded(deps.broker, await finishPendingJob(db, jobId, reasonOf(refused)));
    throw refused;
  } finally {
    clearInterval(timer);
    await writing;
  }
  if (!(await recordUpload(db, jobId, progress("staged", rows), rows))) {
    await dropStaging(db, jobId);
    throw new RequestError(400, "STOPPED", `import ${jobId} was stopped during its upload; nothing was imported`, { id: jobId });
  }
  return rows;
}

const tooLarge = (maxBytes: number) =>
  new RequestError(413, "PAYLOAD_TOO_LARGE", `the file is larger than IMPORT_MAX_BYTES (${maxBytes} bytes)`, { field: "body", maxBytes });

/** An upload's failure as the client's error (4xx naming the field), or as it is (a fault of ours). */
function refusal(err: unknown, req: IncomingMessage): unknown {
  if (err instanceof ImportTooLargeError) return tooLarge(err.maxBytes);
  if (err instanceof ImportDataError) {
    return new ValidationError("body", `bad data: ${err.message}`, { line: err.line, column: err.column, reason: err.reason });
  }
  if (err instanceof JobStoppedError)
    return new RequestError(400, "STOPPED", `import ${err.jobId} was stopped during its upload; nothing was imported`);
  const code = (err as { code?: string }).code ?? "";
  if (
    code.startsWith("Z_") ||
    code === "ERR_PADDING_1" ||
    /zlib|incorrect header|invalid (block|stored|distance)/i.test((err as Error).message ?? "")
  ) {
    return new RequestError(400, "BAD_CONTENT_ENCODING", "the body does not decode with its Content-Encoding", {
      field: "content-encoding",
    });
  }
  if (!req.complete) return new InterruptedUpload();
  return err;
}

/** The client went away before the whole body arrived. */
class InterruptedUpload extends RequestError {
  constructor() {
    super(400, "UPLOAD_INTERRUPTED", "upload interrupted", { field: "body" });
  }
}

const reasonOf = (err: unknown): string =>
  err instanceof InterruptedUpload ? "upload interrupted" : (err as Error).message || String(err);

function send(res: ServerResponse, err: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const { status, body } = toHttpError(err);
  // The rest of the body is not read: the connection closes after the answer.
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", Connection: "close" });
  res.end(JSON.stringify(body));
}
