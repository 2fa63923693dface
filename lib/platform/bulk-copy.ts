// COPY FROM STDIN inside a Sequelize transaction: the bulk path of imports and of the
// random-row job. On a real server the records stream through pg-copy-streams on the
// transaction's own connection (so the bulkhead and the budget count it like any query). The
// embedded PGlite's socket cannot carry COPY FROM STDIN (the session loses protocol sync), so
// there the records go to PGlite's own COPY FROM '/dev/blob', a few MiB at a time, in the same
// single session and so in the same transaction.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ClientBase } from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { Transaction } from "sequelize";
import type { RecordChunk } from "../loading/import-format";
import type { EmbeddedPostgres } from "./embedded-pg";

/**
 * Runs `sql` (a `COPY … FROM STDIN` statement) with `chunks` as its input, inside `t`. Answers
 * the rows copied. A failure carries Postgres's `where` ("COPY t, line 3, column c") and
 * `linesBefore`, the input lines of earlier COPY statements, so that the line counts from the start.
 */
export type CopyIn = (t: Transaction, sql: string, chunks: AsyncIterable<RecordChunk>) => Promise<number>;

export interface CopyFailure extends Error {
  where?: string;
  linesBefore?: number;
}

// Embedded: records sent to PGlite per COPY statement (each is one Blob in WASM memory).
const EMBEDDED_BLOB_BYTES = 4 * 1024 * 1024;

/** The pg connection a Sequelize transaction runs on (for statements Sequelize has no API for). */
export const connectionOf = (t: Transaction) => (t as unknown as { connection: ClientBase }).connection;

export function copyInFor(embedded: EmbeddedPostgres | null): CopyIn {
  return embedded ? embeddedCopyIn(embedded) : serverCopyIn;
}

const serverCopyIn: CopyIn = async (t, sql, chunks) => {
  const stream = connectionOf(t).query(copyFrom(sql));
  const data = Readable.from(
    (async function* () {
      for await (const chunk of chunks) yield chunk.data;
    })(),
    { objectMode: false },
  );
  await pipeline(data, stream);
  return stream.rowCount;
};

function embeddedCopyIn(embedded: EmbeddedPostgres): CopyIn {
  return async (_t, sql, chunks) => {
    const blobSql = sql.replace(/ FROM STDIN\b/, ` FROM '/dev/blob'`);
    if (blobSql === sql) throw new Error(`not a COPY FROM STDIN statement: ${sql}`);
    let rows = 0;
    let lines = 0;
    let pendingLines = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const data = Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      try {
        rows += (await embedded.copyFromBlob(blobSql, data)).rows;
      } catch (err) {
        (err as CopyFailure).linesBefore = lines;
        throw err;
      }
      lines += pendingLines;
      pendingLines = 0;
    };
    for await (const chunk of chunks) {
      pending.push(chunk.data);
      pendingBytes += chunk.data.length;
      pendingLines += chunk.lines;
      if (pendingBytes >= EMBEDDED_BLOB_BYTES) await flush();
    }
    await flush();
    return rows;
  };
}
