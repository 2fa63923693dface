// An import's file as COPY input: the bytes (counted, capped) become whole records, and the
// columns are settled from the first record when the request did not name them (a CSV header,
// or the keys of the first NDJSON object). Used by the upload (into staging) and by the URL
// import (straight into the target), so both read files alike and name bad lines alike.
import { PermanentJobError } from "../platform/errors";
import {
  copyErrorPosition,
  CsvRecords,
  ImportDataError,
  NdjsonRecords,
  ndjsonFirstKeys,
  parseCsvHeader,
  type ImportSpec,
  type RecordChunk,
} from "./import-format";

/** The file is larger than IMPORT_MAX_BYTES. */
export class ImportTooLargeError extends PermanentJobError {
  constructor(readonly maxBytes: number) {
    super(`the file is larger than IMPORT_MAX_BYTES (${maxBytes} bytes)`);
    this.name = "ImportTooLargeError";
  }
}

export interface ImportRecords {
  /** The file's columns: the request's, or the header's / first object's. */
  columns: string[];
  records: AsyncIterable<RecordChunk>;
  /** The file line of the n-th line of COPY's input (1-based). */
  lineOf(copyLine: number): number;
  /** Bytes read so far. */
  bytes(): number;
  /** Records read so far. */
  rows(): number;
}

// A first line longer than this (a header, or the first NDJSON object) is refused: it would be
// held in memory whole while the columns are settled.
const MAX_FIRST_LINE_BYTES = 1024 * 1024;

/**
 * Reads `source` up to its first whole record, settles the columns, and answers the records
 * from the start. `source` is read lazily after that, as the records are consumed.
 */
export async function openRecords(
  source: AsyncIterable<Buffer>,
  spec: Omit<ImportSpec, "columns"> & { columns: string[] },
  maxBytes: number,
): Promise<ImportRecords> {
  let bytes = 0;
  let rows = 0;
  const it = source[Symbol.asyncIterator]();
  const next = async (): Promise<Buffer | null> => {
    const r = await it.next();
    if (r.done) return null;
    const piece = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    bytes += piece.length;
    if (bytes > maxBytes) throw new ImportTooLargeError(maxBytes);
    return piece;
  };

  const early: RecordChunk[] = [];
  let splitter: CsvRecords | NdjsonRecords;
  let columns = spec.columns;
  let lineOf: (row: number) => number;
  // The source has ended; and the splitter has given its last record.
  let ended = false;
  let flushed = false;
  if (spec.format === "csv") {
    const csv = new CsvRecords(spec.header);
    splitter = csv;
    while (spec.header && csv.header === null) {
      const piece = await next();
      const chunk = piece === null ? csv.end() : csv.push(piece);
      if (chunk) early.push(chunk);
      if (piece === null) ended = flushed = true;
      else if (csv.header === null && bytes > MAX_FIRST_LINE_BYTES) throw new ImportDataError(1, "the header line is longer than 1 MiB");
    }
    if (columns.length === 0)
      columns = csv.header ? parseCsvHeader(csv.header, spec.delimiter).filter((c, i, all) => c !== "" || all.length > 1) : [];
    lineOf = (line) => line + csv.headerLines;
  } else {
    let head = Buffer.alloc(0);
    while (head.indexOf(0x0a) < 0 && !ended) {
      const piece = await next();
      if (piece === null) ended = true;
      else head = Buffer.concat([head, piece]);
      if (head.indexOf(0x0a) < 0 && head.length > MAX_FIRST_LINE_BYTES) throw new ImportDataError(1, "the first line is longer than 1 MiB");
    }
    if (columns.length === 0) {
      const nl = head.indexOf(0x0a);
      const first = nl < 0 ? head : head.subarray(0, nl);
      const keys = first.toString("utf8").trim() === "" ? [] : ndjsonFirstKeys(first);
      if (keys === null) throw new ImportDataError(1, "not a JSON object");
      columns = keys;
    }
    const ndjson = new NdjsonRecords(columns);
    splitter = ndjson;
    if (head.length > 0) {
      const chunk = ndjson.push(head);
      if (chunk) early.push(chunk);
    }
    lineOf = (row) => ndjson.fileLine(row);
  }

  async function* records(): AsyncGenerator<RecordChunk> {
    for (const chunk of early.splice(0)) {
      rows += chunk.records;
      yield chunk;
    }
    while (!flushed) {
      let chunk: RecordChunk | null;
      if (ended) {
        chunk = splitter.end();
        flushed = true;
      } else {
        const piece = await next();
        if (piece === null) {
          ended = true;
          continue;
        }
        chunk = splitter.push(piece);
      }
      if (chunk) {
        rows += chunk.records;
        yield chunk;
      }
    }
  }
  return { columns, records: records(), lineOf, bytes: () => bytes, rows: () => rows };
}

/**
 * A failed COPY as the file's fault, by line and column, when Postgres placed it (a bad value,
 * a malformed row, invalid UTF-8); anything else (a lost connection, a stop) is answered as is.
 * `table` replaces the staging table's name in Postgres's message.
 */
export function asDataError(err: unknown, records: Pick<ImportRecords, "lineOf">, table: string): unknown {
  if (err instanceof PermanentJobError) return err;
  const failure = err as { message?: string; where?: string; column?: string; linesBefore?: number };
  const at = copyErrorPosition(failure);
  if (!at) return err;
  const message = (failure.message ?? "bad value").replace(/import_staging_\d+/g, table);
  return new ImportDataError(records.lineOf((failure.linesBefore ?? 0) + at.row), message, at.column ?? failure.column ?? null);
}
