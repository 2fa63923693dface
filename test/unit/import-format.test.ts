import {
  columnProblem,
  copyErrorPosition,
  copyStatement,
  CsvRecords,
  ImportDataError,
  importSpecOf,
  isCopyDelimiter,
  NdjsonRecords,
  parseCsvHeader,
  type RecordChunk,
} from "../../lib/loading/import-format";
import { openRecords } from "../../lib/loading/import-stream";

/** Feeds `input` to a splitter cut into pieces of `size` bytes; answers the chunks. */
function split(splitter: CsvRecords | NdjsonRecords, input: string, size: number): RecordChunk[] {
  const buf = Buffer.from(input);
  const out: RecordChunk[] = [];
  for (let i = 0; i < buf.length; i += size) {
    const chunk = splitter.push(buf.subarray(i, i + size));
    if (chunk) out.push(chunk);
  }
  const last = splitter.end();
  if (last) out.push(last);
  return out;
}
const joined = (chunks: RecordChunk[]) => Buffer.concat(chunks.map((c) => c.data)).toString();
const total = (chunks: RecordChunk[], key: "records" | "lines") => chunks.reduce((n, c) => n + c[key], 0);

describe("CsvRecords", () => {
  const file = 'a,b\n1,"x\ny"\n2,"say ""hi"""\n3,plain\n4,last';

  it.each([1, 2, 3, 5, 7, 64])("cuts whole records whatever the piece size (%i bytes), with the header apart", (size) => {
    const csv = new CsvRecords(true);
    const chunks = split(csv, file, size);
    expect(csv.header?.toString()).toBe("a,b\n");
    expect(joined(chunks)).toBe('1,"x\ny"\n2,"say ""hi"""\n3,plain\n4,last\n');
    for (const c of chunks) expect(c.data.toString().endsWith("\n")).toBe(true);
    expect(total(chunks, "records")).toBe(4);
    // COPY counts the newline inside the quotes as a line, and so do the chunks.
    expect(total(chunks, "lines")).toBe(5);
  });

  it("names the line a quote opened on when it is never closed", () => {
    const csv = new CsvRecords(true);
    expect(() => split(csv, 'a,b\n1,x\n2,"open\nmore\n', 4)).toThrow(
      new ImportDataError(3, "a quoted field is never closed (unterminated quote)"),
    );
  });

  it("a file of a header alone has no records", () => {
    const csv = new CsvRecords(true);
    expect(split(csv, "a,b", 2)).toEqual([]);
    expect(csv.header?.toString()).toBe("a,b");
  });
});

describe("NdjsonRecords", () => {
  it("turns objects into COPY text rows, escaping and nesting, and maps rows back to file lines past blank ones", () => {
    const nd = new NdjsonRecords(["n", "s", "doc"]);
    const chunks = split(nd, '{"n":1,"s":"a\\tb\\\\c\\nd"}\n\n{"doc":{"x":[1]},"n":2}\n\n\n{"n":3,"s":null}', 5);
    expect(joined(chunks)).toBe('1\ta\\tb\\\\c\\nd\t\\N\n2\t\\N\t{"x":[1]}\n3\t\\N\t\\N\n');
    expect(total(chunks, "records")).toBe(3);
    expect([1, 2, 3].map((row) => nd.fileLine(row))).toEqual([1, 3, 6]);
  });

  it.each([
    ["[1]\n", 1, "not a JSON object"],
    ['{"n":1}\n{"n":\n', 2, "not valid JSON"],
    ['{"n":1}\n{"zz":1}\n', 2, '"zz" is not one of the import\'s columns'],
  ])("names the line of %j", (input, line, reason) => {
    const nd = new NdjsonRecords(["n"]);
    try {
      split(nd, input, 3);
      throw new Error("no error");
    } catch (err) {
      expect(err).toBeInstanceOf(ImportDataError);
      expect((err as ImportDataError).line).toBe(line);
      expect((err as ImportDataError).reason).toContain(reason);
    }
  });

  it("refuses invalid UTF-8 with its line", () => {
    const nd = new NdjsonRecords(["s"]);
    expect(() => nd.push(Buffer.concat([Buffer.from('{"s":"ok"}\n{"s":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]))).toThrow(
      "line 2, invalid UTF-8",
    );
  });
});

describe("settling the columns from the file", () => {
  async function* pieces(s: string, size: number) {
    for (let i = 0; i < s.length; i += size) yield Buffer.from(s.slice(i, i + size));
  }
  const spec = { table: "t", header: true, delimiter: ",", columns: [] as string[] };

  it("takes a CSV header's names, and counts its line in error lines", async () => {
    const r = await openRecords(pieces('"n","the label"\n1,a\n2,b\n', 3), { ...spec, format: "csv" }, 1000);
    expect(r.columns).toEqual(["n", "the label"]);
    let rows = 0;
    for await (const c of r.records) rows += c.records;
    expect(rows).toBe(2);
    expect(r.lineOf(2)).toBe(3);
  });

  it("takes the first NDJSON object's keys", async () => {
    const r = await openRecords(pieces('{"a":1,"b":2}\n{"b":3}', 4), { ...spec, format: "ndjson" }, 1000);
    expect(r.columns).toEqual(["a", "b"]);
    let text = "";
    for await (const c of r.records) text += c.data.toString();
    expect(text).toBe("1\t2\n\\N\t3\n");
  });

  it("stops reading past the byte cap", async () => {
    const r = await openRecords(pieces("a\n" + "1\n".repeat(100), 10), { ...spec, format: "csv" }, 50);
    await expect(
      (async () => {
        for await (const c of r.records) void c;
      })(),
    ).rejects.toThrow("larger than IMPORT_MAX_BYTES (50 bytes)");
  });
});

describe("import options", () => {
  it("takes defaults, checks the table against IMPORT_TABLES and names every bad field", () => {
    expect(importSpecOf({ table: "rows" }, ["rows"], "csv")).toEqual({
      table: "rows",
      format: "csv",
      columns: [],
      header: true,
      delimiter: ",",
    });
    expect(importSpecOf({ table: "rows", columns: "a, b" }, ["rows"], "ndjson")).toMatchObject({
      format: "ndjson",
      header: false,
      columns: ["a", "b"],
    });
    const field = (raw: Record<string, unknown>, format: "csv" | null = "csv") => {
      try {
        importSpecOf(raw, ["rows"], format);
        return null;
      } catch (err) {
        return (err as { data: { field: string } }).data.field;
      }
    };
    expect(field({})).toBe("table");
    expect(field({ table: "users" })).toBe("table");
    expect(field({ table: "rows", format: "xml" })).toBe("format");
    expect(field({ table: "rows", format: "ndjson" })).toBe("format");
    expect(field({ table: "rows", header: "maybe" })).toBe("header");
    expect(field({ table: "rows", delimiter: '"' })).toBe("delimiter");
    expect(field({ table: "rows", delimiter: ";;" })).toBe("delimiter");
    expect(field({ table: "rows", header: "false" })).toBe("columns");
    expect(field({ table: "rows", columns: [1] }, null)).toBe("columns");
  });

  // COPY takes one byte that is no line break or quote; the rest would be a 500 from Postgres
  // (a multibyte delimiter is SQLSTATE 0A000, a NUL cuts the statement short).
  it.each([["é"], ["\u0000"], ["\u2028"], ["\ud83d"], ["😀"], ["\n"], ["\r"], ['"'], ["\\"], ["\u007f"], ["\u0001"], [""], [";;"], [1]])(
    "refuses the delimiter %j with a 422 naming it",
    (delimiter) => {
      // null: a spec without a Content-Type, as the JSON import route (and an import schedule) reads it.
      for (const format of ["csv", null] as const) {
        let refusal: unknown = null;
        try {
          importSpecOf({ table: "rows", delimiter }, ["rows"], format);
        } catch (err) {
          refusal = err;
        }
        expect(refusal).toMatchObject({ code: 422, type: "VALIDATION_ERROR", data: { field: "delimiter" } });
      }
    },
  );

  it.each([[","], [";"], ["|"], ["\t"], [" "], ["'"], ["~"], ["x"]])("takes the delimiter %j", (delimiter) => {
    expect(importSpecOf({ table: "rows", delimiter }, ["rows"], "csv").delimiter).toBe(delimiter);
    expect(isCopyDelimiter(delimiter)).toBe(true);
  });

  it("finds the first column the catalog refuses", () => {
    const catalog = [
      { name: "id", type: "bigint", generated: true },
      { name: "n", type: "integer", generated: false },
    ];
    expect(columnProblem(["n"], catalog)).toBeNull();
    expect(columnProblem(["n", "x"], catalog)).toMatchObject({ column: "x" });
    expect(columnProblem(["id"], catalog)).toMatchObject({ column: "id", message: expect.stringContaining("generated") });
    expect(columnProblem(["n", "n"], catalog)).toMatchObject({ column: "n", message: expect.stringContaining("twice") });
  });

  it("quotes names in the COPY statement, and reads the line and column back from Postgres's error", () => {
    expect(copyStatement({ table: "public.Orders", format: "csv", columns: ['we"ird', "n"], header: true, delimiter: ";" })).toBe(
      `COPY "public"."Orders" ("we""ird", "n") FROM STDIN WITH (FORMAT csv, DELIMITER ';', ENCODING 'UTF8')`,
    );
    expect(copyErrorPosition({ where: 'COPY orders, line 7, column n: "six"' })).toEqual({ row: 7, column: "n" });
    expect(copyErrorPosition({ where: "COPY orders, line 2" })).toEqual({ row: 2, column: null });
    expect(copyErrorPosition({})).toBeNull();
  });

  it("splits a quoted header", () => {
    expect(parseCsvHeader(Buffer.from('a,"b,c","d ""e"""\r\n'), ",")).toEqual(["a", "b,c", 'd "e"']);
    expect(parseCsvHeader(Buffer.from("a;b\n"), ";")).toEqual(["a", "b"]);
  });
});
