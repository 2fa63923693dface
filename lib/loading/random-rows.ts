// Random rows for the bulk-insert job (the seed's dummy table: a name and a value each).
// Column arrays, because one INSERT ... SELECT FROM unnest($1, $2) takes a whole batch in two
// parameters, however many rows it holds.
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

/** `size` random rows as COPY text (name TAB value, one per line): what the insert job streams to COPY. */
export function randomRowsCopyText(size: number, random: () => number = Math.random): string {
  const { names, values } = randomRowBatch(size, random);
  let text = "";
  for (let i = 0; i < size; i++) text += `${names[i]}\t${values[i]}\n`;
  return text;
}

/** The sizes of the batches that make up `total` rows. */
export function* batchSizes(total: number, batchRows: number): Generator<number> {
  for (let left = total; left > 0; left -= batchRows) yield Math.min(left, batchRows);
}
