// CSV import benchmark: `npm run bench:import`. See bench/README.md.
//
// In one run, against fresh databases on the same Postgres server:
//   1. a CSV file of mixed types (int, quoted text with commas and doubled quotes, numeric(12,2),
//      ISO timestamptz, quoted jsonb) of exactly BENCH_IMPORT_BYTES, generated into os.tmpdir()
//      (or reused, when a file of that size from an earlier run is there);
//   2. raw COPY of that file into bench_orders through pg (pg-copy-streams), one transaction: the
//      denominator;
//   3. a Sluice import of the same file end to end: POST /api/imports with the file as the body on
//      an api node (which stages it through COPY before its 202), the jobs channel (JetStream when
//      NATS_URL is set), an ingestor node that moves the staged rows into bench_orders. Timed from
//      the first byte sent to the moment GET /api/imports/:id shows it succeeded; the 202 splits it
//      into the upload and the load. Each node is its own process;
//   4. the same import of a BENCH_IMPORT_SMALL_BYTES file on fresh nodes, for the peak RSS (VmHWM)
//      of each process: it must not grow with the file.
//
// Knobs: BENCH_IMPORT_BYTES (default 2 GiB), BENCH_IMPORT_SMALL_BYTES (default 200 MiB),
// BENCH_KEEP_FILE=1, BENCH_TIMEOUT_S, DATABASE_URL (admin URL; default the local server),
// NATS_URL, REDIS_URL.
import fs from "node:fs";
import { request as httpRequest } from "node:http";
import os from "node:os";
import path from "node:path";
import { once } from "node:events";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { from as copyFrom } from "pg-copy-streams";
import { http, waitForNodes, waitForReady, waitUntilFinished } from "../fixtures/api-client";
import { deleteRedisKeys, deleteStreams, namespaceKeys } from "../fixtures/namespace-cleanup";
import { freePort, uniqueNamespace, type NodeProcess } from "../fixtures/node-process";
import { withClient } from "../fixtures/pg-client";
import type { ScratchDatabase } from "../fixtures/scratch-db";
import { DEFAULT_IMPORT_MAX_BYTES } from "../lib/platform/config";
import { migrate } from "../lib/platform/migrate";
import { createBenchDatabase, intEnv, log, peakRssMiB, round, runBench, seeded, startApiAndIngestor } from "./support";

const MiB = 1024 ** 2;
const BIG_BYTES = intEnv("BENCH_IMPORT_BYTES", 2 * 1024 ** 3, 4096, Number.MAX_SAFE_INTEGER);
const SMALL_BYTES = intEnv("BENCH_IMPORT_SMALL_BYTES", 200 * MiB, 4096, Number.MAX_SAFE_INTEGER);
const KEEP_FILE = process.env.BENCH_KEEP_FILE === "1";
const TIMEOUT_MS = intEnv("BENCH_TIMEOUT_S", 3600, 1, 86_400) * 1000;
const ADMIN_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS_URL = process.env.NATS_URL ?? null;
const REDIS_URL = process.env.REDIS_URL ?? null;

// The targets the run is judged by.
const RATIO_TARGET = 0.7;
const PEAK_TARGET_MIB = 250;
// "Flat": the big file's peak within 10% of the small file's, per process.
const FLAT_FACTOR = 1.1;

const TABLE = "bench_orders";
const CREATE_TABLE = `CREATE TABLE ${TABLE} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer NOT NULL, label text, amount numeric(12,2), at timestamptz, doc jsonb)`;
const HEADER = "n,label,amount,at,doc\n";
const RAW_COPY = `COPY ${TABLE} (n, label, amount, at, doc) FROM STDIN WITH (FORMAT csv, HEADER true)`;

// ---------------------------------------------------------------------------------------------
// The file

const bytesOf = (s: string): Buffer => Buffer.from(s, "latin1");
const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo", "lima"];
const DAY_MS = 86_400_000;
const T0 = Date.UTC(2020, 0, 1);
const DAYS = 6 * 365;
// The constant runs of a record are encoded once, here, and copied: a record is then a few copies
// and the digits. "2020-01-01T" … for every day: Date#toISOString per record cost more than all the rest.
const DAY_PREFIX = Array.from({ length: DAYS }, (_, d) => bytesOf(new Date(T0 + d * DAY_MS).toISOString().slice(0, 11)));
const byWords = (f: (word: string, other: string) => string): Buffer[][] => WORDS.map((w) => WORDS.map((o) => bytesOf(f(w, o))));
const LABEL_QUOTES = byWords((w, o) => `,"${w}, ""${o}"" no. `);
const LABEL_COMMA = byWords((w, o) => `,"${w}, ${o}",`);
const LABEL_PLAIN = byWords((w, o) => `,"${w} ${o}",`);
const DOC_TAIL = [false, true].map((gift) => byWords((w, o) => `,""tags"":[""${w}"",""${o}""],""gift"":${gift}}"\n`));
const PIECE = {
  textOpen: bytesOf(',"'),
  textClose: bytesOf('",'),
  docOpen: bytesOf(',"{""sku"":""SKU-'),
  docQty: bytesOf('"",""qty"":'),
};
const code = (c: string): number => c.charCodeAt(0);
const [COMMA, MINUS, DOT, COLON, X, Z] = [code(","), code("-"), code("."), code(":"), code("x"), code("Z")];
// No record is longer than this (the longest is about 180 bytes); the last one, padded, excepted.
const MAX_ROW = 512;

/** Writes records byte by byte into a buffer: building strings and encoding them ran at under 30 MiB/s. */
class RowWriter {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  put(piece: Uint8Array): void {
    // A loop, not buf.set(): the pieces are a few bytes, and a native call per piece cost more than the copy.
    const buf = this.buf;
    let pos = this.pos;
    for (let k = 0; k < piece.length; k++) buf[pos++] = piece[k]!;
    this.pos = pos;
  }
  byte(c: number): void {
    this.buf[this.pos++] = c;
  }
  /** A non-negative integer below 2^32 in decimal (all this file's are): `>>> 0` divides in integers, 3× faster than Math.floor. */
  uint(n: number): void {
    const buf = this.buf;
    const start = this.pos;
    do {
      const q = (n / 10) >>> 0;
      buf[this.pos++] = 48 + n - q * 10;
      n = q;
    } while (n > 0);
    for (let l = start, r = this.pos - 1; l < r; l++, r--) {
      const c = buf[l]!;
      buf[l] = buf[r]!;
      buf[r] = c;
    }
  }
  /** The last `width` decimal digits of a non-negative integer below 2^32, zero-padded. */
  digits(n: number, width: number): void {
    for (let at = this.pos + width - 1; at >= this.pos; at--) {
      const q = (n / 10) >>> 0;
      this.buf[at] = 48 + n - q * 10;
      n = q;
    }
    this.pos += width;
  }
}

/**
 * One record of `n,label,amount,at,doc`. Every text value is quoted; some hold the delimiter and
 * doubled quotes, which is what a naive CSV splitter gets wrong. `pad` replaces the label with
 * that many x's (the last record, which makes the file exactly the size asked).
 */
function writeRow(w: RowWriter, i: number, random: () => number, pad?: number): void {
  const n = Math.floor(random() * 4_294_967_296) - 2_147_483_648;
  const word = i % WORDS.length;
  const other = Math.floor(random() * WORDS.length);
  if (n < 0) w.byte(MINUS);
  w.uint(Math.abs(n));
  if (pad !== undefined) {
    w.put(PIECE.textOpen);
    for (let k = 0; k < pad; k++) w.byte(X);
    w.put(PIECE.textClose);
  } else if (i % 4 === 0) {
    w.put(LABEL_QUOTES[word]![other]!);
    w.uint(i);
    w.put(PIECE.textClose);
  } else w.put((i % 4 === 1 ? LABEL_COMMA : LABEL_PLAIN)[word]![other]!);
  // |amount| < 1e9 fits numeric(12,2); one record in 50 leaves it NULL (an unquoted empty field).
  if (i % 50 !== 7) {
    const cents = Math.floor(random() * 2e11) - 1e11;
    if (cents < 0) w.byte(MINUS);
    w.uint(Math.floor(Math.abs(cents) / 100));
    w.byte(DOT);
    w.digits(Math.abs(cents) % 100, 2);
  }
  const t = Math.floor(random() * DAYS * DAY_MS);
  const ms = t % DAY_MS;
  w.byte(COMMA);
  w.put(DAY_PREFIX[Math.floor(t / DAY_MS)]!);
  w.digits(Math.floor(ms / 3_600_000), 2);
  w.byte(COLON);
  w.digits(Math.floor(ms / 60_000) % 60, 2);
  w.byte(COLON);
  w.digits(Math.floor(ms / 1000) % 60, 2);
  w.byte(DOT);
  w.digits(ms % 1000, 3);
  w.byte(Z);
  w.put(PIECE.docOpen);
  w.uint(i % 100_000);
  w.put(PIECE.docQty);
  w.uint(n & 63);
  w.put(DOC_TAIL[n & 1]![word]![other]!);
}

// Room left for the last record, whose label is padded so that the file is exactly the size asked.
const LAST_ROW_ROOM = 1024;
const WRITE_CHUNK = 4 * MiB;

/** The CSV file of exactly `bytes` (named by its size, so a later run reuses it). */
async function ensureCsv(bytes: number): Promise<string> {
  const file = path.join(os.tmpdir(), `sluice-bench-import-v1-${bytes}.csv`);
  if (fs.statSync(file, { throwIfNoEntry: false })?.size === bytes) {
    log(`reusing ${file}`);
    return file;
  }
  const disk = fs.statfsSync(os.tmpdir());
  if (disk.bavail * disk.bsize < bytes + 256 * MiB) throw new Error(`not enough room in ${os.tmpdir()} for a ${bytes}-byte file`);
  // Written under another name and renamed when whole: an interrupted run leaves nothing to reuse by mistake.
  const partial = `${file}.${process.pid}.partial`;
  const t0 = performance.now();
  // A few chunks in flight: the next one is generated while the disk takes the last.
  const out = fs.createWriteStream(partial, { highWaterMark: 4 * WRITE_CHUNK });
  try {
    const random = seeded(42);
    let written = 0;
    let i = 0;
    let w = new RowWriter(Buffer.allocUnsafe(WRITE_CHUNK + MAX_ROW));
    w.put(bytesOf(HEADER));
    while (written + w.pos + MAX_ROW + LAST_ROW_ROOM <= bytes) {
      writeRow(w, i++, random);
      if (w.pos >= WRITE_CHUNK) {
        written += w.pos;
        // A fresh buffer each time: the stream holds the last one until it is on disk.
        if (!out.write(w.buf.subarray(0, w.pos))) await once(out, "drain");
        w = new RowWriter(Buffer.allocUnsafe(WRITE_CHUNK + MAX_ROW));
      }
    }
    // The last record: measured bare, then written with the label padded to fill the file exactly
    // (a generator of its own, so that both passes draw the same values).
    const left = bytes - written - w.pos;
    const bare = new RowWriter(Buffer.allocUnsafe(MAX_ROW));
    writeRow(bare, i, seeded(i), 0);
    const last = new RowWriter(Buffer.allocUnsafe(left));
    writeRow(last, i, seeded(i), left - bare.pos);
    out.write(w.buf.subarray(0, w.pos));
    out.end(last.buf.subarray(0, last.pos));
    await finished(out);
    const size = fs.statSync(partial).size;
    if (size !== bytes) throw new Error(`generated ${size} bytes, expected ${bytes}`);
    fs.renameSync(partial, file);
    const seconds = (performance.now() - t0) / 1000;
    log(`generated ${file}: ${i + 1} rows in ${seconds.toFixed(1)} s (${(bytes / MiB / seconds).toFixed(0)} MiB/s)`);
    return file;
  } catch (err) {
    out.destroy();
    fs.rmSync(partial, { force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Databases and the baseline

async function freshDb(): Promise<ScratchDatabase> {
  const db = await createBenchDatabase(ADMIN_URL);
  try {
    await migrate(db.url, "sluice-bench", () => {});
    await withClient(db.url, (c) => c.query(CREATE_TABLE));
    return db;
  } catch (err) {
    await db.drop();
    throw err;
  }
}

const countRows = (url: string): Promise<number> =>
  withClient(url, async (c) => Number((await c.query(`SELECT count(*) AS n FROM ${TABLE}`)).rows[0].n));

async function rawCopy(file: string): Promise<{ seconds: number; rows: number }> {
  const db = await freshDb();
  try {
    return await withClient(db.url, async (c) => {
      const t0 = performance.now();
      await c.query("BEGIN");
      const copy = c.query(copyFrom(RAW_COPY));
      await pipeline(fs.createReadStream(file), copy);
      await c.query("COMMIT");
      return { seconds: (performance.now() - t0) / 1000, rows: copy.rowCount };
    });
  } finally {
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------
// Sluice

// Nodes still running, stopped if the run is interrupted (they are separate processes and would outlive it).
const liveNodes = new Set<NodeProcess>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    for (const node of liveNodes) node.child.kill("SIGTERM");
    process.exit(130);
  });
}

/** POSTs `source` (a file streamed from disk, say) as a CSV body of `bytes`, with its Content-Length; answers the response. */
function postCsv(url: string, source: Readable, bytes: number, sent = { bytes: 0 }): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const headers = { "content-type": "text/csv", "content-length": String(bytes) };
    const req = httpRequest(url, { method: "POST", headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(parts).toString("utf8");
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON: the body stays the text.
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    source.on("data", (d: Buffer) => (sent.bytes += d.length));
    // A refusal is answered before the whole file is read, and the server then closes the
    // connection: the send fails, but the answer (which says why) is what to report.
    pipeline(source, req).catch((err: unknown) => setTimeout(() => reject(err as Error), 1000));
  });
}

const IMPORT_URL = (base: string) => `${base}/api/imports?table=${TABLE}&format=csv&header=true`;

/**
 * A one-record import, then removed: it takes the nodes' first-call costs off the clock. Posted
 * once the api is ready (its channels connected: a job posted before is refused, 503 NOT_QUEUED).
 */
async function warmUp(base: string, dbUrl: string): Promise<void> {
  const w = new RowWriter(Buffer.allocUnsafe(HEADER.length + MAX_ROW));
  w.put(bytesOf(HEADER));
  writeRow(w, 0, seeded(1));
  const body = w.buf.subarray(0, w.pos);
  await waitForReady(base, 60_000);
  const res = await postCsv(IMPORT_URL(base), Readable.from([body]), body.length);
  if (res.status !== 202) throw new Error(`POST /api/imports answered ${res.status}: ${JSON.stringify(res.body)}`);
  const id = Number(res.body.id);
  const job = await waitUntilFinished(base, `/api/imports/${id}`, 60_000, `warm-up import ${id}`);
  if (job.status !== "succeeded") throw new Error(`warm-up import ${id} ended ${job.status}: ${job.error}`);
  await withClient(dbUrl, (c) => c.query(`TRUNCATE ${TABLE} RESTART IDENTITY`));
}

interface SluiceRun {
  bytes: number;
  rows: number;
  seconds: number;
  uploadSeconds: number;
  loadSeconds: number;
  /** The job's own figure (result.seconds): its run on the ingestor, from claim to commit. */
  jobSeconds: number | null;
  apiPeakMiB: number;
  ingestorPeakMiB: number;
}

/** A Sluice cluster (api node + ingestor node) on a fresh database; imports `file` once. */
async function sluiceImport(file: string, bytes: number): Promise<SluiceRun> {
  const db = await freshDb();
  const port = await freePort();
  const namespace = uniqueNamespace("bench");
  const env: Record<string, string> = { DATABASE_URL: db.url, NAMESPACE: namespace, DATA_DIR: "", IMPORT_TABLES: TABLE };
  if (bytes > DEFAULT_IMPORT_MAX_BYTES) env.IMPORT_MAX_BYTES = String(bytes);
  if (REDIS_URL) env.REDIS_URL = REDIS_URL;
  const nodes = startApiAndIngestor(namespace, env, port, NATS_URL);
  nodes.forEach((n) => liveNodes.add(n));
  const base = `http://127.0.0.1:${port}`;
  const sent = { bytes: 0 };
  let id: number | null = null;
  // Progress on stderr every 10 s: a run of minutes should show which phase it is in.
  const ticker = setInterval(() => {
    if (id === null) return log(`  uploading: ${((100 * sent.bytes) / bytes).toFixed(0)}% sent`);
    http(base, "GET", `/api/imports/${id}`)
      .then(({ body }) => log(`  ${body.import?.phase}: ${body.import?.rows?.done ?? "?"} of ${body.import?.rows?.total ?? "?"} rows`))
      .catch(() => {});
  }, 10_000);
  try {
    await waitForNodes(base, nodes.length, 60_000);
    await warmUp(base, db.url);
    const t0 = performance.now();
    const res = await postCsv(IMPORT_URL(base), fs.createReadStream(file), bytes, sent);
    const uploaded = performance.now();
    if (res.status !== 202) throw new Error(`POST /api/imports answered ${res.status}: ${JSON.stringify(res.body)}`);
    id = Number(res.body.id);
    log(`  202 after ${((uploaded - t0) / 1000).toFixed(1)} s: import ${id}, ${res.body.rows} rows staged`);
    const job = await waitUntilFinished(base, `/api/imports/${id}`, TIMEOUT_MS, `import ${id}`);
    const done = performance.now();
    if (job.status !== "succeeded" || !job.finishedAt) throw new Error(`import ${id} ended ${job.status}: ${job.error}`);
    // Read before the nodes stop: VmHWM is the process's peak since it started, boot included.
    const apiPeakMiB = peakRssMiB(nodes[0]!.child.pid!);
    const ingestorPeakMiB = peakRssMiB(nodes[nodes.length - 1]!.child.pid!);
    const counted = await countRows(db.url);
    if (counted !== res.body.rows || counted !== job.result?.rows)
      throw new Error(`import ${id}: ${res.body.rows} rows staged, ${job.result?.rows} loaded, ${counted} in ${TABLE}`);
    return {
      bytes,
      rows: counted,
      seconds: (done - t0) / 1000,
      uploadSeconds: (uploaded - t0) / 1000,
      loadSeconds: (done - uploaded) / 1000,
      jobSeconds: typeof job.result?.seconds === "number" ? job.result.seconds : null,
      apiPeakMiB,
      ingestorPeakMiB,
    };
  } finally {
    clearInterval(ticker);
    await Promise.all(nodes.map((n) => n.stop()));
    nodes.forEach((n) => liveNodes.delete(n));
    // What the namespace left on the shared servers; a failed cleanup must not hide the run's outcome.
    if (NATS_URL) await deleteStreams(NATS_URL, namespace).catch((err: Error) => log(`could not delete streams: ${err.message}`));
    if (REDIS_URL)
      await deleteRedisKeys(REDIS_URL, namespaceKeys(namespace)).catch((err: Error) => log(`could not delete keys: ${err.message}`));
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  log(
    `bench:import: ${BIG_BYTES} and ${SMALL_BYTES} bytes of CSV; transporter ${NATS_URL ?? "none (one process)"}, limiter ${REDIS_URL ? "Redis" : "in-memory"}`,
  );
  const files = new Set<string>();
  try {
    const bigFile = await ensureCsv(BIG_BYTES);
    files.add(bigFile);
    const smallFile = await ensureCsv(SMALL_BYTES);
    files.add(smallFile);

    const copy = await rawCopy(bigFile);
    log(`raw COPY: ${copy.rows} rows in ${copy.seconds.toFixed(2)} s`);
    const big = await sluiceImport(bigFile, BIG_BYTES);
    log(
      `sluice import: ${big.rows} rows in ${big.seconds.toFixed(2)} s (upload ${big.uploadSeconds.toFixed(2)} s, load ${big.loadSeconds.toFixed(2)} s)`,
    );
    // The same file, so the same rows: anything else is a lost or doubled row.
    if (big.rows !== copy.rows) throw new Error(`sluice imported ${big.rows} rows, raw COPY ${copy.rows}`);
    const small = await sluiceImport(smallFile, SMALL_BYTES);
    log(`sluice import (small file): ${small.rows} rows in ${small.seconds.toFixed(2)} s`);

    const mibPerS = (bytes: number, s: number) => +(bytes / MiB / s).toFixed(1);
    const ratioToCopy = copy.seconds / big.seconds;
    const sluiceRow = (what: string, r: SluiceRun, seconds: number) => ({
      what,
      bytes: r.bytes,
      rows: r.rows,
      seconds: seconds.toFixed(2),
      rowsPerSecond: Math.round(r.rows / seconds),
      MiBPerSecond: mibPerS(r.bytes, seconds),
      apiPeakMiB: Math.round(r.apiPeakMiB),
      ingestorPeakMiB: Math.round(r.ingestorPeakMiB),
    });
    console.table([
      {
        what: "raw COPY (pg)",
        bytes: BIG_BYTES,
        rows: copy.rows,
        seconds: copy.seconds.toFixed(2),
        rowsPerSecond: Math.round(copy.rows / copy.seconds),
        MiBPerSecond: mibPerS(BIG_BYTES, copy.seconds),
      },
      sluiceRow("sluice import, end to end", big, big.seconds),
      sluiceRow("  upload (first byte → 202)", big, big.uploadSeconds),
      sluiceRow("  load (202 → succeeded)", big, big.loadSeconds),
      sluiceRow("sluice import, small file", small, small.seconds),
    ]);

    const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
    const peaks = [small.apiPeakMiB, small.ingestorPeakMiB, big.apiPeakMiB, big.ingestorPeakMiB];
    const ratioMet = ratioToCopy >= RATIO_TARGET;
    const peakMet = peaks.every((p) => p <= PEAK_TARGET_MIB);
    const flatMet = big.apiPeakMiB <= small.apiPeakMiB * FLAT_FACTOR && big.ingestorPeakMiB <= small.ingestorPeakMiB * FLAT_FACTOR;
    const mib = (p: number) => `${Math.round(p)} MiB`;
    console.log(`sluice ÷ raw COPY (throughput): ${ratioToCopy.toFixed(2)}; target ≥ ${RATIO_TARGET}: ${verdict(ratioMet)}`);
    console.log(
      `peak RSS (VmHWM), small → big file: api ${mib(small.apiPeakMiB)} → ${mib(big.apiPeakMiB)}, ingestor ${mib(small.ingestorPeakMiB)} → ${mib(big.ingestorPeakMiB)}` +
        (NATS_URL ? "" : " (one process runs both)"),
    );
    console.log(`target peak RSS ≤ ${PEAK_TARGET_MIB} MiB each: ${verdict(peakMet)}`);
    console.log(`target peak RSS flat (big ≤ ${FLAT_FACTOR} × small, each process): ${verdict(flatMet)}`);
    if (big.jobSeconds !== null) log(`the job's own seconds (claim to commit, on the ingestor): ${big.jobSeconds.toFixed(2)}`);
    console.log(
      JSON.stringify({
        bytes: BIG_BYTES,
        rows: copy.rows,
        copySeconds: round(copy.seconds, 2),
        copyRowsPerS: Math.round(copy.rows / copy.seconds),
        sluiceSeconds: round(big.seconds, 2),
        uploadSeconds: round(big.uploadSeconds, 2),
        loadSeconds: round(big.loadSeconds, 2),
        jobSeconds: big.jobSeconds === null ? null : round(big.jobSeconds, 2),
        sluiceRowsPerS: Math.round(big.rows / big.seconds),
        ratioToCopy: round(ratioToCopy),
        smallBytes: SMALL_BYTES,
        smallRows: small.rows,
        smallSeconds: round(small.seconds, 2),
        apiPeakMiBSmall: Math.round(small.apiPeakMiB),
        ingestorPeakMiBSmall: Math.round(small.ingestorPeakMiB),
        apiPeakMiBBig: Math.round(big.apiPeakMiB),
        ingestorPeakMiBBig: Math.round(big.ingestorPeakMiB),
        twoProcesses: NATS_URL !== null,
        targets: { ratioToCopy: verdict(ratioMet), peakRss: verdict(peakMet), peakRssFlat: verdict(flatMet) },
      }),
    );
    return 0;
  } finally {
    if (KEEP_FILE) log(`kept ${[...files].join(", ")}`);
    else for (const f of files) fs.rmSync(f, { force: true });
  }
}

runBench(main);
