// The client side of POST /api/imports, shared by `npm run import` (bin/import.ts) and the REPL's
// `import` command: it streams a local file as the request's body (never read whole), then polls
// the job until it finishes, drawing one progress line for the upload (bytes) and one for the
// load (rows). The formatting is pure functions, so the bar is tested without a server.
// Nothing here loads Sequelize or the models: the CLI starts in the time of a request or two.
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { Config } from "../platform/config";
import { IMPORT_FORMATS, type ImportFormat } from "../loading/import-format";

/** How often the job is read while it loads; the issue asks for 500 ms. */
export const IMPORT_POLL_MS = 500;
/** Without a terminal (CI logs, `| tee`), a progress line at most this often. */
export const LOG_LINE_INTERVAL_MS = 2_000;
/** On a terminal, redraws at most this often: a 64 KiB chunk arrives far more often than an eye can read. */
export const TTY_REDRAW_MS = 100;
/** The rate is measured over the last few seconds, so a stall shows instead of being averaged away. */
export const RATE_WINDOW_MS = 5_000;
// Polls that fail in a row (network, 5xx) before watching gives up: a restarting gateway is not a failed import.
const MAX_POLL_FAILURES = 10;
const BAR_WIDTH = 24;

const CONTENT_TYPE: Record<ImportFormat, string> = { csv: "text/csv", ndjson: "application/x-ndjson" };

/** One import as the client sends it. header, delimiter and columns are passed on for the server to check. */
export interface ImportOptions {
  file: string;
  table: string;
  format: ImportFormat;
  /** The file is gzip: sent as it is, with Content-Encoding: gzip. */
  gzip: boolean;
  header?: string;
  delimiter?: string;
  columns?: string;
  /** Where the API is, without a trailing slash (http://127.0.0.1:3000). */
  api: string;
  token: string | null;
}

/** The 202 of an upload: the file is staged, and the job is queued to load it. */
export interface StagedImport {
  id: number;
  status: "pending";
  rows: number;
  bytes: number;
}

/** GET /api/imports/:id, as far as the client reads it. */
export interface ImportJob {
  id: number;
  status: "pending" | "running" | "succeeded" | "failed" | "cancelled";
  error: string | null;
  throughput: number | null;
  result: { rows: number; bytes: number; seconds: number } | null;
  import: {
    phase: string;
    table: string;
    format: ImportFormat;
    rows: { done: number; total: number | null };
    bytes: { done: number; total: number | null };
  };
}

/** A refusal of the API (with its status, code and details), an unreachable API, or a failed job. */
export class ImportClientError extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
    readonly code: string | null = null,
    readonly details: Record<string, unknown> | null = null,
  ) {
    super(message);
    this.name = "ImportClientError";
  }

  /** Worth another poll: the API could not be reached, or failed on its side. */
  get transient(): boolean {
    return this.status === null || this.status >= 500;
  }
}

/** The format a file's name implies (.csv, .ndjson, .jsonl, each optionally .gz), and whether it is gzip. */
export function formatOfFile(file: string): { format: ImportFormat | null; gzip: boolean } {
  const name = file.toLowerCase();
  const gzip = name.endsWith(".gz");
  const base = gzip ? name.slice(0, -3) : name;
  const format = base.endsWith(".csv") ? "csv" : base.endsWith(".ndjson") || base.endsWith(".jsonl") ? "ndjson" : null;
  return { format, gzip };
}

/** What `import` takes on its command line (the CLI's and the REPL's), as strings. */
export interface ImportArgs {
  table?: unknown;
  format?: unknown;
  header?: unknown;
  delimiter?: unknown;
  columns?: unknown;
  api?: unknown;
  token?: unknown;
}

// The REPL's parser hands over numbers as numbers (`--delimiter 1`); both mean the text typed.
const text = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : undefined;

/**
 * An import's options from the command line, with the defaults: the format from the file's
 * extension, the API on this machine's PORT, and API_TOKEN as the token (both from loadConfig).
 */
export function importOptionsOf(file: string, args: ImportArgs, config: Pick<Config, "port" | "apiToken">): ImportOptions {
  if (!file) throw new ImportClientError("name the file to import");
  const table = text(args.table);
  if (!table) throw new ImportClientError("--table is required: the table to import into (one of the server's IMPORT_TABLES)");
  const named = formatOfFile(file);
  const format = text(args.format) ?? named.format;
  if (format === null) {
    throw new ImportClientError(`cannot tell the format of ${file} from its extension: give --format csv or --format ndjson`);
  }
  if (!(IMPORT_FORMATS as readonly string[]).includes(format))
    throw new ImportClientError(`--format must be csv or ndjson, not "${format}"`);
  const api = (text(args.api) ?? `http://127.0.0.1:${config.port}`).replace(/\/+$/, "");
  let protocol = "";
  try {
    protocol = new URL(api).protocol;
  } catch {
    // not a URL: refused just below, with the value in the message
  }
  if (protocol !== "http:" && protocol !== "https:") throw new ImportClientError(`--api must be an http:// or https:// URL, not "${api}"`);
  const options: ImportOptions = {
    file,
    table,
    format: format as ImportFormat,
    gzip: named.gzip,
    api,
    token: text(args.token) ?? config.apiToken,
  };
  for (const key of ["header", "delimiter", "columns"] as const) {
    const value = text(args[key]);
    if (value !== undefined) options[key] = value;
  }
  return options;
}

/** The upload's URL: the options go in the query string, since the body is the file. */
export function uploadUrl(o: ImportOptions): URL {
  const url = new URL(`${o.api}/api/imports`);
  url.searchParams.set("table", o.table);
  url.searchParams.set("format", o.format);
  for (const key of ["header", "delimiter", "columns"] as const) {
    if (o[key] !== undefined) url.searchParams.set(key, o[key]);
  }
  return url;
}

const authorization = (token: string | null): Record<string, string> => (token ? { Authorization: `Bearer ${token}` } : {});

/** The API's error answer `{error: {code, message, details}}` as an ImportClientError; any other body by its status. */
export function errorOfAnswer(status: number, body: string): ImportClientError {
  let error: { code?: unknown; message?: unknown; details?: unknown } | undefined;
  try {
    error = (JSON.parse(body) as { error?: typeof error }).error;
  } catch {
    // not JSON (a proxy's page): the status and the start of the text say what happened
  }
  if (!error || typeof error.message !== "string") {
    const start = body.trim().slice(0, 200);
    return new ImportClientError(`HTTP ${status}${start ? `: ${start}` : ""}`, status);
  }
  const code = typeof error.code === "string" ? error.code : null;
  const details = error.details !== null && typeof error.details === "object" ? (error.details as Record<string, unknown>) : null;
  // The line is what a person fixes the file by: named even where the message leaves it out.
  const line = typeof details?.line === "number" && !error.message.includes(`line ${details.line}`) ? ` (line ${details.line})` : "";
  return new ImportClientError(`${error.message}${line} [HTTP ${status}${code ? ` ${code}` : ""}]`, status, code, details);
}

/**
 * Streams the file to POST /api/imports and answers the 202 once the server has staged it.
 * `onSent` hears the bytes handed to the connection so far, of the file's size. An answer that
 * comes before the whole file was sent (a refusal) stops the sending.
 */
export async function uploadFile(o: ImportOptions, onSent: (sent: number, size: number) => void = () => {}): Promise<StagedImport> {
  let size: number;
  try {
    size = (await fs.promises.stat(o.file)).size;
  } catch (err) {
    throw new ImportClientError(`cannot read ${o.file}: ${(err as Error).message}`);
  }
  const url = uploadUrl(o);
  const headers: Record<string, string> = {
    "Content-Type": CONTENT_TYPE[o.format],
    "Content-Length": String(size),
    Accept: "application/json",
    ...(o.gzip ? { "Content-Encoding": "gzip" } : {}),
    ...authorization(o.token),
  };
  return new Promise<StagedImport>((resolve, reject) => {
    const file = fs.createReadStream(o.file);
    const req = (url.protocol === "https:" ? https : http).request(url, { method: "POST", headers });
    let answered = false;
    let sent = 0;
    file.on("data", (chunk) => {
      sent += chunk.length;
      onSent(sent, size);
    });
    file.on("error", (err) => {
      req.destroy();
      reject(new ImportClientError(`cannot read ${o.file}: ${err.message}`));
    });
    req.on("error", (err) => {
      // Once an answer arrived, the connection's end (the server closes after a refusal) is no news.
      if (!answered) reject(new ImportClientError(`cannot reach the API at ${o.api}: ${err.message}`));
    });
    req.on("response", (res) => {
      answered = true;
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("error", (err) => reject(new ImportClientError(`the API's answer broke off: ${err.message}`)));
      res.on("end", () => {
        // A refusal can come mid-file: the rest is not sent.
        file.unpipe(req);
        file.destroy();
        req.destroy();
        if (res.statusCode !== 202) return reject(errorOfAnswer(res.statusCode ?? 0, body));
        try {
          resolve(JSON.parse(body) as StagedImport);
        } catch {
          reject(new ImportClientError(`the API answered 202 without its JSON: ${body.slice(0, 200)}`, 202));
        }
      });
    });
    file.pipe(req);
  });
}

/** GET /api/imports/:id. */
export async function getImport(o: Pick<ImportOptions, "api" | "token">, id: number): Promise<ImportJob> {
  let res: Response;
  try {
    res = await fetch(`${o.api}/api/imports/${id}`, { headers: { Accept: "application/json", ...authorization(o.token) } });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new ImportClientError(`cannot reach the API at ${o.api}: ${cause ?? (err as Error).message}`);
  }
  const body = await res.text();
  if (!res.ok) throw errorOfAnswer(res.status, body);
  return JSON.parse(body) as ImportJob;
}

/** A job's status once it will not change (said here rather than taken from models/jobs, which loads Sequelize). */
export const isFinished = (status: ImportJob["status"]): boolean => status !== "pending" && status !== "running";

/** Polls the import every `pollMs` until it finishes; `onJob` hears each reading. Answers the finished job. */
export async function watchImport(
  o: Pick<ImportOptions, "api" | "token">,
  id: number,
  onJob: (job: ImportJob) => void = () => {},
  pollMs = IMPORT_POLL_MS,
): Promise<ImportJob> {
  let failures = 0;
  for (;;) {
    try {
      const job = await getImport(o, id);
      failures = 0;
      onJob(job);
      if (isFinished(job.status)) return job;
    } catch (err) {
      if (!(err instanceof ImportClientError && err.transient) || ++failures >= MAX_POLL_FAILURES) throw err;
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

// ---- the progress line: pure formatting ----

/** Bytes in decimal units (kB, MB, GB: a rate reads as MB/s), three significant digits. */
export function humanBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1000) return `${Math.max(0, Math.round(Number.isFinite(bytes) ? bytes : 0))} B`;
  const units = ["kB", "MB", "GB", "TB", "PB"];
  let value = bytes;
  let unit = -1;
  while (value >= 999.5 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)} ${units[unit]}`;
}

/** A count with thousands separators: 1234567 → "1,234,567". */
export const humanCount = (n: number): string => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

/** A duration as m:ss (h:mm:ss from an hour); "--:--" when it is not known. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.ceil(seconds);
  const two = (n: number) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

/** Seconds left at `rate` per second; null when the total or a rate is not known. */
export function etaSeconds(done: number, total: number | null, rate: number | null): number | null {
  if (total === null || rate === null || !(rate > 0)) return null;
  return Math.max(0, total - done) / rate;
}

/** `[#########---------------]`: `fraction` of `width` filled (clamped to 0..1). */
export function progressBar(fraction: number | null, width = BAR_WIDTH): string {
  const f = fraction === null || !Number.isFinite(fraction) ? 0 : Math.min(1, Math.max(0, fraction));
  const filled = Math.floor(f * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

const percent = (done: number, total: number | null): string =>
  total ? `${String(Math.floor((100 * Math.min(done, total)) / total)).padStart(3)}%` : "  ?%";

/** The upload's line: bytes sent of the file, the rate, and the time left (or what the server does once all is sent). */
export function formatUploadProgress(p: { sent: number; size: number; rate: number | null; stagedRows?: number }): string {
  const parts = [
    `upload ${progressBar(p.size ? p.sent / p.size : 1)} ${percent(p.sent, p.size || null)}`,
    `${humanBytes(p.sent)} of ${humanBytes(p.size)}`,
  ];
  if (p.rate !== null) parts.push(`${humanBytes(p.rate)}/s`);
  if (p.stagedRows !== undefined) parts.push(`${humanCount(p.stagedRows)} rows staged`);
  else if (p.sent >= p.size) parts.push("the server is staging the rows");
  else parts.push(`ETA ${formatDuration(etaSeconds(p.sent, p.size, p.rate))}`);
  return parts.join("  ");
}

/** The load's line: rows moved of rows staged, rows/s, and the time left (or the phase while the job waits). */
export function formatLoadProgress(p: { done: number; total: number | null; rate: number | null; phase: string }): string {
  const parts = [
    `load   ${progressBar(p.total ? p.done / p.total : p.phase === "succeeded" ? 1 : 0)} ${percent(p.done, p.total)}`,
    `${humanCount(p.done)} of ${p.total === null ? "?" : humanCount(p.total)} rows`,
  ];
  if (p.rate !== null) parts.push(`${humanCount(p.rate)} rows/s`);
  if (p.phase === "loading") parts.push(`ETA ${formatDuration(etaSeconds(p.done, p.total, p.rate))}`);
  else parts.push(p.phase);
  return parts.join("  ");
}

/** The last line of a succeeded import: what it loaded, and how long it all took. */
export function formatSummary(job: ImportJob, elapsedSeconds: number): string {
  const r = job.result ?? { rows: job.import.rows.done, bytes: job.import.bytes.done, seconds: 0 };
  return `imported ${humanCount(r.rows)} rows (${humanBytes(r.bytes)}) into ${job.import.table} in ${elapsedSeconds.toFixed(1)} s (load ${Number(r.seconds).toFixed(1)} s; import ${job.id})`;
}

/** Units per second over the last `windowMs`, from (time, amount done) samples. */
export class RateMeter {
  private samples: [number, number][] = [];

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  add(atMs: number, done: number): void {
    this.samples.push([atMs, done]);
    // Keep one sample older than the window: the rate spans the whole window, not just its newest part.
    while (this.samples.length > 2 && this.samples[1]![0] <= atMs - this.windowMs) this.samples.shift();
  }

  /** null until two samples lie at least 100 ms apart: a rate from one chunk says nothing. */
  rate(): number | null {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last[0] - first[0] < 100) return null;
    return ((last[1] - first[1]) * 1000) / (last[0] - first[0]);
  }
}

/** Where progress goes: process.stdout, or anything with its write and isTTY. */
export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * One progress line. On a terminal it is redrawn in place (`\r`); elsewhere a line is printed at
 * most every LOG_LINE_INTERVAL_MS, so a log holds a readable handful of lines instead of one per chunk.
 */
export class ProgressLine {
  private lastDrawn = -Infinity;
  private lastLine = "";
  /** A terminal line was drawn and not yet ended with a newline. */
  private open = false;

  constructor(
    private readonly out: ProgressOutput,
    private readonly now: () => number = Date.now,
  ) {}

  update(line: string): void {
    const at = this.now();
    if (at - this.lastDrawn < (this.out.isTTY ? TTY_REDRAW_MS : LOG_LINE_INTERVAL_MS)) return;
    this.lastDrawn = at;
    this.draw(line);
  }

  /** A phase's last state: always shown (once), and the line ends; the next update starts a new one. */
  end(line: string): void {
    if (this.out.isTTY || line !== this.lastLine) this.draw(line);
    this.close();
    this.lastDrawn = -Infinity;
    this.lastLine = "";
  }

  /** Ends a terminal line left open, so what is printed next (an error) starts on a line of its own. */
  close(): void {
    if (this.open) this.out.write("\n");
    this.open = false;
  }

  private draw(line: string): void {
    this.lastLine = line;
    if (!this.out.isTTY) {
      this.out.write(`${line}\n`);
      return;
    }
    // A line wider than the terminal wraps, and `\r` would then redraw only its last part.
    const fitted = this.out.columns && line.length >= this.out.columns ? line.slice(0, this.out.columns - 1) : line;
    this.out.write(`\r${fitted}\x1b[K`);
    this.open = true;
  }
}

/**
 * The whole import as the CLI and the REPL run it: the upload with its progress line, then the
 * load with its own, then the summary. Answers the succeeded job; any other end is thrown as an
 * ImportClientError saying why.
 */
export async function runImport(o: ImportOptions, out: ProgressOutput, pollMs = IMPORT_POLL_MS): Promise<ImportJob> {
  const line = new ProgressLine(out);
  const started = Date.now();
  try {
    const sending = new RateMeter();
    sending.add(started, 0);
    let sent = 0;
    let size = 0;
    const staged = await uploadFile(o, (s, total) => {
      sent = s;
      size = total;
      sending.add(Date.now(), s);
      line.update(formatUploadProgress({ sent, size, rate: sending.rate() }));
    });
    // The whole upload's average: the window's rate at its end would leave out the staging's wait.
    const uploadSeconds = (Date.now() - started) / 1000;
    line.end(formatUploadProgress({ sent: size, size, rate: uploadSeconds > 0 ? size / uploadSeconds : null, stagedRows: staged.rows }));

    const loading = new RateMeter();
    const loadLine = (job: ImportJob, rate: number | null) =>
      formatLoadProgress({ done: job.import.rows.done, total: job.import.rows.total ?? staged.rows, rate, phase: job.import.phase });
    const job = await watchImport(
      o,
      staged.id,
      (job) => {
        if (job.import.phase === "loading") loading.add(Date.now(), job.import.rows.done);
        // The runner's own rate (rows since its start) is steadier than one measured here: rows move in blocks of thousands.
        const rate = job.import.phase !== "loading" ? null : job.throughput ? job.throughput : loading.rate();
        if (!isFinished(job.status)) line.update(loadLine(job, rate));
      },
      pollMs,
    );
    // The end's rate is the load's own average, as the job measured it.
    const r = job.result;
    line.end(loadLine(job, r && r.seconds > 0 ? r.rows / r.seconds : null));
    if (job.status !== "succeeded") {
      throw new ImportClientError(
        job.status === "cancelled" ? `import ${job.id} was cancelled: nothing was imported` : `import ${job.id} failed: ${job.error}`,
      );
    }
    out.write(`${formatSummary(job, (Date.now() - started) / 1000)}\n`);
    return job;
  } finally {
    line.close();
  }
}
