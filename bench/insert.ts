// Bulk-insert benchmark: `npm run bench:insert`. See bench/README.md.
//
// In one run, against fresh databases on the same Postgres server:
//   1. raw COPY of N rows through pg (pg-copy-streams), one transaction;
//   2. raw multi-row INSERT of the same N rows through pg, 1000 rows a statement, one transaction;
//   3. a Sluice job of N rows end to end: POST /api/inserts on an api node, the jobs channel
//      (JetStream when NATS_URL is set), an ingestor node, the throttle (Redis when REDIS_URL is
//      set), Postgres. Timed from the POST to the job's finishedAt. Each node is its own process.
// Then peak RSS (VmHWM) of a fresh ingestor process running a 100k-row job and a 1M-row job.
//
// Knobs: BENCH_ROWS (default 1000000), DATABASE_URL (admin URL; default the local server),
// NATS_URL, REDIS_URL.
import { performance } from "node:perf_hooks";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { from as copyFrom } from "pg-copy-streams";
import { http, waitForNodes, waitForReady, waitUntilFinished } from "../fixtures/api-client";
import { freePort, uniqueNamespace } from "../fixtures/node-process";
import { withClient } from "../fixtures/pg-client";
import type { ScratchDatabase } from "../fixtures/scratch-db";
import { batchSizes, randomRowBatch, randomRowsCopyText, type RowBatch } from "../lib/loading/random-rows";
import { migrate } from "../lib/platform/migrate";
import { createBenchDatabase, log, peakRssMiB, seeded, startApiAndIngestor } from "./support";

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const ADMIN_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS_URL = process.env.NATS_URL ?? null;
const REDIS_URL = process.env.REDIS_URL ?? null;
// The goal: a job's throughput at least this share of raw COPY's.
const COPY_GOAL = 0.8;

function* sameRows(total: number, batch: number): Generator<RowBatch> {
  const random = seeded(42);
  for (let left = total; left > 0; left -= batch) yield randomRowBatch(Math.min(batch, left), random);
}

async function freshDb(): Promise<ScratchDatabase> {
  const db = await createBenchDatabase(ADMIN_URL);
  await migrate(db.url, "sluice-bench", () => {});
  return db;
}

async function rawCopy(url: string): Promise<number> {
  return withClient(url, async (c) => {
    const t0 = performance.now();
    await c.query("BEGIN");
    // The rows as the job makes them (randomRowsCopyText), so the ratio is what Sluice adds.
    const random = seeded(42);
    const lines = (function* () {
      for (const size of batchSizes(ROWS, 10_000)) yield randomRowsCopyText(size, random);
    })();
    await pipeline(Readable.from(lines), c.query(copyFrom("COPY rows (name, value) FROM STDIN")));
    await c.query("COMMIT");
    return (performance.now() - t0) / 1000;
  });
}

async function rawInsert(url: string): Promise<number> {
  return withClient(url, async (c) => {
    const t0 = performance.now();
    await c.query("BEGIN");
    for (const b of sameRows(ROWS, 1000)) {
      const values = b.names.map((_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(", ");
      await c.query(
        `INSERT INTO rows (name, value) VALUES ${values}`,
        b.names.flatMap((n, i) => [n, b.values[i]]),
      );
    }
    await c.query("COMMIT");
    return (performance.now() - t0) / 1000;
  });
}

/** A Sluice cluster (api node + ingestor node) on a fresh database; runs one job of `rows`. */
async function sluiceJob(rows: number): Promise<{ seconds: number; ingestorPeakMiB: number; job: any }> {
  const db = await freshDb();
  const port = await freePort();
  const namespace = uniqueNamespace("bench");
  const env: Record<string, string> = { DATABASE_URL: db.url, NAMESPACE: namespace, DATA_DIR: "" };
  if (REDIS_URL) env.REDIS_URL = REDIS_URL;
  const nodes = startApiAndIngestor(namespace, env, port, NATS_URL);
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitForNodes(base, nodes.length, 60_000);
    // Ready once its channels are connected: a job posted before is refused (503 NOT_QUEUED).
    await waitForReady(base, 60_000);
    const t0 = performance.now();
    const res = await http(base, "POST", "/api/inserts", { rows });
    if (res.status !== 202) throw new Error(`POST /api/inserts answered ${res.status}: ${JSON.stringify(res.body)}`);
    const id = res.body.id as number;
    const job = await waitUntilFinished(base, `/api/jobs/${id}`, 600_000, `job ${id}`);
    const seconds = (performance.now() - t0) / 1000;
    if (job.status !== "succeeded") throw new Error(`job ${id} ended ${job.status}: ${job.error}`);
    const counted = await withClient(db.url, async (c) => (await c.query("SELECT count(*)::int AS n FROM rows")).rows[0].n);
    if (counted !== rows) throw new Error(`expected ${rows} rows, found ${counted}`);
    return { seconds, ingestorPeakMiB: peakRssMiB(nodes[nodes.length - 1]!.child.pid!), job };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await db.drop();
  }
}

async function main(): Promise<void> {
  log(`bench:insert: ${ROWS} rows; transporter ${NATS_URL ?? "none (one process)"}, limiter ${REDIS_URL ? "Redis" : "in-memory"}`);
  const run = async (fn: (url: string) => Promise<number>) => {
    const db = await freshDb();
    try {
      return await fn(db.url);
    } finally {
      await db.drop();
    }
  };
  const copy = await run(rawCopy);
  log(`raw COPY done in ${copy.toFixed(2)} s`);
  const insert = await run(rawInsert);
  log(`raw multi-row INSERT done in ${insert.toFixed(2)} s`);
  const big = await sluiceJob(ROWS);
  log(`sluice job done in ${big.seconds.toFixed(2)} s`);
  const small = await sluiceJob(100_000);

  const rate = (s: number) => Math.round(ROWS / s);
  const table = [
    { what: "raw COPY (pg)", seconds: copy, rowsPerSecond: rate(copy), vsInsert: insert / copy },
    { what: "raw multi-row INSERT (pg)", seconds: insert, rowsPerSecond: rate(insert), vsInsert: 1 },
    {
      what: "sluice job (API → channel → ingestor)",
      seconds: big.seconds,
      rowsPerSecond: rate(big.seconds),
      vsInsert: insert / big.seconds,
    },
  ];
  console.table(table.map((r) => ({ ...r, seconds: r.seconds.toFixed(2), vsInsert: `${r.vsInsert.toFixed(2)}×` })));
  // The goal is set against raw COPY, the fastest way pg can write the rows; INSERT stays for context.
  console.log(
    `sluice vs raw COPY: ${(copy / big.seconds).toFixed(2)}×; goal job ÷ raw COPY ≥ ${COPY_GOAL.toFixed(2)}: ${copy / big.seconds >= COPY_GOAL ? "met" : "NOT met"}`,
  );
  console.log(`sluice vs raw multi-row INSERT: ${(insert / big.seconds).toFixed(2)}×`);
  console.log(
    `ingestor peak RSS: ${small.ingestorPeakMiB.toFixed(0)} MiB for 100k rows, ${big.ingestorPeakMiB.toFixed(0)} MiB for ${ROWS} rows`,
  );
  console.log(
    JSON.stringify({
      rows: ROWS,
      copyRowsPerS: rate(copy),
      insertRowsPerS: rate(insert),
      sluiceRowsPerS: rate(big.seconds),
      ratioToInsert: +(insert / big.seconds).toFixed(3),
      ratioToCopy: +(copy / big.seconds).toFixed(3),
      peakRssMiB100k: Math.round(small.ingestorPeakMiB),
      peakRssMiBBig: Math.round(big.ingestorPeakMiB),
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
