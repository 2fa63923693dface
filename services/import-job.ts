// The work of an import job, inside the bulk job's transaction (bulk-job.ts). An upload was
// parsed into its staging table before the 202, so the job moves the staged rows into the
// target, a few MiB of blocks per statement (a stop is seen between them), and drops the
// staging with its commit. A URL import fetches the file (under the crawler's SSRF rules) and
// streams it through COPY straight into the target; another attempt fetches it again.
import { createGunzip } from "node:zlib";
import { Readable } from "node:stream";
import { Agent, request, type Dispatcher } from "undici";
import type { Config } from "../lib/platform/config";
import { columnProblem, copyStatement, ImportDataError, type ImportSpec } from "../lib/loading/import-format";
import { asDataError, openRecords, type ImportRecords } from "../lib/loading/import-stream";
import { connectionOf } from "../lib/platform/bulk-copy";
import { jobErrorText, PermanentJobError } from "../lib/platform/errors";
import { isDataFault } from "../lib/api/http-error";
import { assertPublicTarget, CrawlTargetPolicy, guardedConnector } from "../lib/crawl/ssrf";
import { USER_AGENT } from "../lib/crawl/robots";
import { addToCount, countedByWriters } from "../models/counts";
import { catalogColumns, dropStaging, moveStagedBlocks, stagingBlocks } from "../models/imports";
import type { Sequelize, Transaction } from "sequelize";
import type { JobRow } from "../models/jobs";
import type { BulkJobDeps, JobWork, WorkIO } from "./bulk-job";

export interface ImportDeps {
  maxBytes: number;
  policy: CrawlTargetPolicy;
  /** Connects through guardedConnector(policy): every name is checked again at connect time. */
  dispatcher: Dispatcher;
}

/** An import job's params. `source` "upload": staged before the 202; "url": fetched by the job. */
export type ImportParams = ImportSpec & { source: "upload" | "url"; url?: string };

/** What a node needs to run imports: the file cap, and the crawler's SSRF rules for URL imports. */
export function importDepsFor(config: Config, ownPorts: () => number[]): ImportDeps {
  const policy = CrawlTargetPolicy.fromConfig(config, ownPorts);
  return { maxBytes: config.imports.maxBytes, policy, dispatcher: new Agent({ connect: guardedConnector(policy) }) };
}

// Staged blocks moved per statement: 8 MiB of an 8 KiB-block table.
const MOVE_BLOCKS = 1024;
const URL_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 5;

export const importWork: JobWork = async (deps, job, t, io) => {
  const spec = job.params as unknown as ImportParams;
  const rows = spec.source === "url" ? await loadFromUrl(deps, spec, t, io) : await loadStaged(deps.db, spec, job, t, io);
  io.checkpoint();
  if (countedByWriters(spec.table)) await addToCount(deps.db, "rows", rows.rows, t);
  // With the commit: the staging goes exactly when its rows have arrived.
  if (spec.source === "upload") await dropStaging(deps.db, job.id, t);
  return { done: rows.rows, result: { rows: rows.rows, bytes: rows.bytes, table: spec.table } };
};

async function loadStaged(
  db: Sequelize,
  spec: ImportParams,
  job: JobRow,
  t: Transaction,
  io: WorkIO,
): Promise<{ rows: number; bytes: number }> {
  const jobId = job.id;
  const staged = Number(job.progress_total ?? 0);
  const bytes = Number(job.progress_detail?.bytes ?? 0);
  const blocks = await stagingBlocks(db, jobId, t);
  let rows = 0;
  for (let from = 0; blocks !== null && from < blocks; from += MOVE_BLOCKS) {
    io.checkpoint();
    rows += await moveStagedBlocks(connectionOf(t), jobId, spec, from, from + MOVE_BLOCKS).catch((err: unknown) => {
      // The staged rows are the same at every attempt: what the target refuses of them would be
      // refused again, after moving as many rows.
      throw isDataFault(err) ? new PermanentJobError(jobErrorText(err), { cause: err }) : err;
    });
    io.progress(rows, { phase: "loading" });
  }
  // An unlogged table is emptied by crash recovery: the upload is gone, and saying so beats loading part of it.
  if (blocks === null || rows !== staged) {
    throw new PermanentJobError(
      `the staged upload is gone (found ${rows} of ${staged} rows; the database restarted after a crash?): upload the file again`,
    );
  }
  return { rows, bytes };
}

async function loadFromUrl(deps: BulkJobDeps, spec: ImportParams, t: Transaction, io: WorkIO): Promise<{ rows: number; bytes: number }> {
  const imports = deps.imports;
  if (!imports) throw new Error("this runner has no import settings (only the job runner runs imports)");
  const body = await openUrl(spec.url!, imports, io.signal);
  let records: ImportRecords | null = null;
  try {
    records = await openRecords(body, spec, imports.maxBytes);
    // On the job's own connection: on PGlite it is the only one, and the pool would wait for it.
    const catalog = await catalogColumns(deps.db, spec.table, t);
    if (!catalog) throw new PermanentJobError(`table ${spec.table} does not exist`);
    if (records.columns.length === 0) throw new ImportDataError(null, "the file is empty");
    const problem = columnProblem(records.columns, catalog);
    if (problem) throw new ImportDataError(1, problem.message, problem.column);
    const reading = records;
    async function* tracked() {
      for await (const chunk of reading.records) {
        io.checkpoint();
        yield chunk;
        io.progress(reading.rows(), { phase: "loading", bytes: reading.bytes() });
      }
    }
    const rows = await deps.copyIn(t, copyStatement({ ...spec, columns: records.columns }), tracked());
    if (rows === 0) throw new ImportDataError(null, "the file has no rows");
    return { rows, bytes: records.bytes() };
  } catch (err) {
    body.destroy();
    throw records ? asDataError(err, records, spec.table) : err;
  }
}

/** The file behind `url` as a byte stream (gzip undone), after the SSRF checks of every hop. */
async function openUrl(url: string, deps: ImportDeps, signal: AbortSignal): Promise<Readable> {
  let current = url;
  for (let hop = 0; ; hop++) {
    // A refused target is permanent; its message never names what the host resolved to.
    await assertPublicTarget(current, deps.policy).catch((err: Error) => {
      throw new PermanentJobError(`${current}: ${err.message}`);
    });
    const res = await request(current, {
      method: "GET",
      headers: { "user-agent": USER_AGENT, "accept-encoding": "gzip" },
      signal,
      dispatcher: deps.dispatcher,
      headersTimeout: URL_TIMEOUT_MS,
      bodyTimeout: URL_TIMEOUT_MS,
    });
    res.body.on("error", () => {}); // reported by whoever reads it
    const location = res.headers.location;
    if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === "string") {
      res.body.destroy();
      if (hop >= MAX_REDIRECTS) throw new PermanentJobError(`${url}: more than ${MAX_REDIRECTS} redirects`);
      current = new URL(location, current).toString();
      continue;
    }
    if (res.statusCode !== 200) {
      res.body.destroy();
      // A server error may pass; a 404 will not.
      const message = `${current} answered HTTP ${res.statusCode}`;
      throw res.statusCode >= 500 || res.statusCode === 429 ? new Error(message) : new PermanentJobError(message);
    }
    const gzipped = String(res.headers["content-encoding"] ?? "").toLowerCase() === "gzip" || /\.gz$/i.test(new URL(current).pathname);
    if (!gzipped) return res.body;
    const gunzip = createGunzip();
    res.body.on("error", (err) => gunzip.destroy(err));
    return res.body.pipe(gunzip);
  }
}
