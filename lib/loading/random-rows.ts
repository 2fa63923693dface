// Random rows for the bulk-insert job (the seed's dummy table: a name and a value each): as
// COPY text, which the job streams, and as column arrays (the benchmark's multi-row INSERT).
export interface RowBatch {
  names: string[];
  values: number[];
}

const LETTERS = "abcdefghijklmnopqrstuvwxyz";
export const ROW_NAME_LENGTH = 12;
export const ROW_VALUE_MAX = 1_000_000;

export function randomRowBatch(size: number, random: () => number = Math.random): RowBatch {
  const names = new Array<string>(size);
  const values = new Array<number>(size);
  for (let i = 0; i < size; i++) {
    let name = "";
    for (let k = 0; k < ROW_NAME_LENGTH; k++) name += LETTERS[Math.floor(random() * LETTERS.length)];
    names[i] = name;
    values[i] = Math.floor(random() * ROW_VALUE_MAX);
  }
  return { names, values };
}

// A row of COPY text at its longest: the name, a tab, up to six digits, a newline.
const MAX_ROW_BYTES = ROW_NAME_LENGTH + 1 + String(ROW_VALUE_MAX - 1).length + 1;
const TAB = 0x09;
const LF = 0x0a;
const ZERO = 0x30;
const A = 0x61;

/**
 * `size` random rows as COPY text (name TAB value, one per line): what the insert job streams
 * to COPY. Written as bytes straight into one buffer: generating rows must not be what limits
 * a job that COPY can take at a million rows a second.
 */
export function randomRowsCopyText(size: number, random: () => number = Math.random): Buffer {
  const out = Buffer.allocUnsafe(size * MAX_ROW_BYTES);
  let at = 0;
  for (let i = 0; i < size; i++) {
    for (let k = 0; k < ROW_NAME_LENGTH; k++) out[at++] = A + Math.floor(random() * LETTERS.length);
    out[at++] = TAB;
    let value = Math.floor(random() * ROW_VALUE_MAX);
    const start = at;
    do {
      out[at++] = ZERO + (value % 10);
      value = Math.floor(value / 10);
    } while (value > 0);
    out.subarray(start, at).reverse();
    out[at++] = LF;
  }
  return out.subarray(0, at);
}

/** The sizes of the batches that make up `total` rows. */
export function* batchSizes(total: number, batchRows: number): Generator<number> {
  for (let left = total; left > 0; left -= batchRows) yield Math.min(left, batchRows);
}
