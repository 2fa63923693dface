// The import client (lib/api/import-client.ts) and `npm run import` (bin/import.ts) against a
// Sluice on a real Postgres that wants a token: the CLI as a child process lands every row and
// says so, names the line of a bad row and exits 1, takes the API and the token from PORT and
// API_TOKEN; the client's own error says 401 without the token. The progress line's formatting
// is tested as the pure functions it is.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import pg from "pg";
import type { Sluice } from "../../runtime";
import {
  errorOfAnswer,
  etaSeconds,
  formatDuration,
  formatLoadProgress,
  formatOfFile,
  formatUploadProgress,
  humanBytes,
  humanCount,
  ImportClientError,
  importOptionsOf,
  ProgressLine,
  progressBar,
  RateMeter,
  runImport,
  uploadUrl,
} from "../../lib/api/import-client";
import { createTestDatabase, describeWithServers, startEmbedded, tempDir } from "../support/env";

const ROOT = path.join(__dirname, "..", "..");
const TOKEN = "import-client-test-token-0123456789";
const CLI_TIMEOUT_MS = 60_000;

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs bin/import.ts as `npm run import` would (tsx), with only the environment given. */
function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "import.ts"), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), CLI_TIMEOUT_MS);
  return new Promise((resolve) =>
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** `prefix-1,1` … `prefix-n,n`: rows for the rows table (name, value), no header. */
const csvRows = (prefix: string, n: number): string => Array.from({ length: n }, (_, i) => `${prefix}-${i + 1},${i + 1}\n`).join("");

/** What a test reads of the progress output: every write, as one text. */
function captured(isTTY: boolean) {
  const out = { text: "", isTTY, columns: 200, write: (s: string) => void (out.text += s) };
  return out;
}

describeWithServers(["DATABASE_URL"], "import client and CLI", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sluice: Sluice;
  let direct: pg.Client;
  let api = "";
  let dir = "";
  const landed = async (prefix: string) => {
    const { rows } = await direct.query<{ n: number; sum: string }>(
      `SELECT count(*)::int AS n, coalesce(sum(value), 0)::text AS sum FROM rows WHERE name LIKE $1`,
      [`${prefix}-%`],
    );
    return { n: rows[0]!.n, sum: Number(rows[0]!.sum) };
  };
  const triangle = (n: number) => (n * (n + 1)) / 2;

  beforeAll(async () => {
    db = await createTestDatabase();
    direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    sluice = await startEmbedded({ DATABASE_URL: db.url, API_TOKEN: TOKEN, JOB_HEARTBEAT_MS: "200" });
    api = sluice.apiUrl!;
    dir = tempDir("sluice-import-client-");
  }, 60_000);
  afterAll(async () => {
    await direct?.end();
    await sluice?.stop();
    await db?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the CLI imports a few thousand rows exactly, prints the summary and exits 0", async () => {
    const file = path.join(dir, "cli.csv");
    fs.writeFileSync(file, csvRows("cli", 5000));
    const run = await runCli([file, "--table", "rows", "--header", "false", "--columns", "name,value", "--api", api, "--token", TOKEN]);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(await landed("cli")).toEqual({ n: 5000, sum: triangle(5000) });
    // Not a terminal: whole lines, no `\r` redraws; each phase ends at 100%.
    expect(run.stdout).not.toContain("\r");
    const lines = run.stdout.trim().split("\n");
    expect(lines.find((l) => l.startsWith("upload"))).toBeDefined();
    expect(lines.filter((l) => l.startsWith("upload")).at(-1)).toMatch(/100%.*5,000 rows staged/);
    expect(lines.filter((l) => l.startsWith("load")).at(-1)).toMatch(/100% {2}5,000 of 5,000 rows/);
    expect(lines.at(-1)).toMatch(/^imported 5,000 rows \(\d+(\.\d+)? kB\) into rows in [\d.]+ s \(load [\d.]+ s; import \d+\)$/);
  });

  it("the CLI takes the API from PORT and the token from API_TOKEN, and sends a .csv.gz as gzip", async () => {
    const file = path.join(dir, "defaults.csv.gz");
    fs.writeFileSync(file, zlib.gzipSync("name,value\n" + csvRows("gz", 3000)));
    const port = new URL(api).port;
    const run = await runCli([file, "--table", "rows"], { PORT: port, API_TOKEN: TOKEN });
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout).toContain("imported 3,000 rows");
    expect(await landed("gz")).toEqual({ n: 3000, sum: triangle(3000) });
  });

  it("a bad row makes the CLI exit 1 with the error naming its line, and nothing lands", async () => {
    const file = path.join(dir, "bad.csv");
    fs.writeFileSync(file, csvRows("bad", 3) + "x,notanumber\n" + csvRows("bad", 2));
    const run = await runCli([file, "--table", "rows", "--header", "false", "--columns", "name,value", "--api", api, "--token", TOKEN]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^import failed: .*line 4.*notanumber.*HTTP 422/m);
    expect(run.stdout).not.toContain("imported");
    expect(await landed("bad")).toEqual({ n: 0, sum: 0 });
  });

  it("the CLI refuses an unknown extension without --format, and a missing --table, before sending anything", async () => {
    const file = path.join(dir, "data.txt");
    fs.writeFileSync(file, "a,1\n");
    const format = await runCli([file, "--table", "rows", "--api", api]);
    expect(format.code).toBe(1);
    expect(format.stderr).toContain("give --format csv or --format ndjson");
    const table = await runCli([file, "--format", "csv", "--api", api]);
    expect(table.code).toBe(1);
    expect(table.stderr).toContain("--table is required");
  });

  it("the client sends the token: without it the API's 401 is the error, with it a .jsonl file lands as NDJSON", async () => {
    const file = path.join(dir, "client.jsonl");
    fs.writeFileSync(file, Array.from({ length: 1200 }, (_, i) => JSON.stringify({ name: `jsonl-${i + 1}`, value: i + 1 })).join("\n"));
    const config = { port: 0, apiToken: null };

    const refused = runImport(importOptionsOf(file, { table: "rows", api }, config), captured(false));
    await expect(refused).rejects.toBeInstanceOf(ImportClientError);
    await expect(refused).rejects.toMatchObject({ status: 401, message: expect.stringMatching(/token.*HTTP 401/) });
    expect(await landed("jsonl")).toEqual({ n: 0, sum: 0 });

    const out = captured(false);
    const job = await runImport(importOptionsOf(file, { table: "rows", api, token: TOKEN }, config), out, 100);
    expect(job).toMatchObject({ status: "succeeded", result: { rows: 1200 }, import: { format: "ndjson", table: "rows" } });
    expect(out.text).toMatch(/imported 1,200 rows/);
    expect(await landed("jsonl")).toEqual({ n: 1200, sum: triangle(1200) });
  });

  it("a table the server does not import into is the API's 422, field and all", async () => {
    const file = path.join(dir, "users.csv");
    fs.writeFileSync(file, "name\nx\n");
    const refused = runImport(importOptionsOf(file, { table: "users", api, token: TOKEN }, { port: 0, apiToken: null }), captured(false));
    await expect(refused).rejects.toMatchObject({ status: 422, code: "VALIDATION_ERROR", details: { field: "table" } });
  });
});

describe("import client: options and the progress line", () => {
  it("tells the format and gzip from the file's extension", () => {
    expect(formatOfFile("a/b.csv")).toEqual({ format: "csv", gzip: false });
    expect(formatOfFile("B.CSV.GZ")).toEqual({ format: "csv", gzip: true });
    expect(formatOfFile("x.ndjson")).toEqual({ format: "ndjson", gzip: false });
    expect(formatOfFile("x.jsonl.gz")).toEqual({ format: "ndjson", gzip: true });
    expect(formatOfFile("x.txt")).toEqual({ format: null, gzip: false });
  });

  it("defaults the API to PORT on this machine and the token to API_TOKEN; --format wins over the extension", () => {
    const o = importOptionsOf("d.csv", { table: "rows" }, { port: 3000, apiToken: "t".repeat(16) });
    expect(o).toMatchObject({ api: "http://127.0.0.1:3000", token: "t".repeat(16), format: "csv", gzip: false });
    const own = importOptionsOf(
      "d.txt.gz",
      { table: "rows", format: "ndjson", api: "https://h:9/", token: "x" },
      { port: 3000, apiToken: null },
    );
    expect(own).toMatchObject({ api: "https://h:9", token: "x", format: "ndjson", gzip: true });
    expect(() => importOptionsOf("d.csv", { table: "rows", api: "ftp://h" }, { port: 1, apiToken: null })).toThrow("--api");
    expect(() => importOptionsOf("d.csv", { table: "rows", format: "xml" }, { port: 1, apiToken: null })).toThrow("--format");
  });

  it("puts the options in the query string, the REPL's numbers as text", () => {
    const o = importOptionsOf(
      "d.csv",
      { table: "rows", header: "false", delimiter: 1, columns: "name,value" },
      { port: 3000, apiToken: null },
    );
    expect(uploadUrl(o).toString()).toBe(
      "http://127.0.0.1:3000/api/imports?table=rows&format=csv&header=false&delimiter=1&columns=name%2Cvalue",
    );
  });

  it("turns the API's error answer into a message with the line, the status and the code", () => {
    const body = JSON.stringify({ error: { code: "VALIDATION_ERROR", message: "bad data: value", details: { field: "body", line: 7 } } });
    expect(errorOfAnswer(422, body)).toMatchObject({
      message: "bad data: value (line 7) [HTTP 422 VALIDATION_ERROR]",
      status: 422,
      details: { line: 7 },
    });
    expect(errorOfAnswer(502, "<html>Bad Gateway</html>").message).toBe("HTTP 502: <html>Bad Gateway</html>");
    expect(errorOfAnswer(502, "").transient).toBe(true);
  });

  it("humanizes bytes in decimal units, counts with separators, and durations as m:ss", () => {
    expect([0, 999, 1000, 1536, 12_345, 999_999, 45_200_000, 1.5e9].map(humanBytes)).toEqual([
      "0 B",
      "999 B",
      "1.00 kB",
      "1.54 kB",
      "12.3 kB",
      "1.00 MB",
      "45.2 MB",
      "1.50 GB",
    ]);
    expect([0, 999, 1000, 1_234_567].map(humanCount)).toEqual(["0", "999", "1,000", "1,234,567"]);
    expect([0, 4.2, 59.5, 61, 3600, 3725, null, Infinity].map(formatDuration)).toEqual([
      "0:00",
      "0:05",
      "1:00",
      "1:01",
      "1:00:00",
      "1:02:05",
      "--:--",
      "--:--",
    ]);
  });

  it("estimates the time left from the rate, and knows when it cannot", () => {
    expect(etaSeconds(25, 100, 5)).toBe(15);
    expect(etaSeconds(100, 100, 5)).toBe(0);
    expect(etaSeconds(1, null, 5)).toBeNull();
    expect(etaSeconds(1, 100, 0)).toBeNull();
    expect(etaSeconds(1, 100, null)).toBeNull();
  });

  it("draws the bar's fill clamped to its width", () => {
    expect(progressBar(0, 10)).toBe("[----------]");
    expect(progressBar(0.55, 10)).toBe("[#####-----]");
    expect(progressBar(1.7, 10)).toBe("[##########]");
    expect(progressBar(null, 4)).toBe("[----]");
  });

  it("formats the upload's line: bytes of the size, MB/s, the ETA, then what the server does", () => {
    expect(formatUploadProgress({ sent: 12_000_000, size: 48_000_000, rate: 4_000_000 })).toBe(
      "upload [######------------------]  25%  12.0 MB of 48.0 MB  4.00 MB/s  ETA 0:09",
    );
    expect(formatUploadProgress({ sent: 10, size: 100, rate: null })).toMatch(/10 B of 100 B {2}ETA --:--$/);
    expect(formatUploadProgress({ sent: 100, size: 100, rate: 50 })).toMatch(/100%.*the server is staging the rows$/);
    expect(formatUploadProgress({ sent: 100, size: 100, rate: 50, stagedRows: 3000 })).toMatch(/50 B\/s {2}3,000 rows staged$/);
  });

  it("formats the load's line: rows of rows, rows/s and the ETA while loading, the phase while waiting", () => {
    expect(formatLoadProgress({ done: 30_000, total: 120_000, rate: 10_000, phase: "loading" })).toBe(
      "load   [######------------------]  25%  30,000 of 120,000 rows  10,000 rows/s  ETA 0:09",
    );
    expect(formatLoadProgress({ done: 0, total: 5000, rate: null, phase: "queued" })).toBe(
      "load   [------------------------]   0%  0 of 5,000 rows  queued",
    );
    expect(formatLoadProgress({ done: 5000, total: 5000, rate: 2500, phase: "succeeded" })).toMatch(
      /100% {2}5,000 of 5,000 rows {2}2,500 rows\/s {2}succeeded$/,
    );
  });

  it("measures the rate over its window only", () => {
    const meter = new RateMeter(1000);
    meter.add(0, 0);
    expect(meter.rate()).toBeNull();
    meter.add(500, 500);
    expect(meter.rate()).toBe(1000);
    // A stall longer than the window shows as no rate at all, not as the old average.
    meter.add(3000, 600);
    meter.add(3500, 600);
    meter.add(4500, 600);
    expect(meter.rate()).toBe(0);
  });

  it("redraws one terminal line with \\r, and ends it with a newline", () => {
    let now = 0;
    const out = captured(true);
    const line = new ProgressLine(out, () => now);
    line.update("a");
    now += 50;
    line.update("skipped: drawn too soon after the last");
    now += 100;
    line.update("b");
    line.end("c");
    expect(out.text).toBe("\ra\x1b[K\rb\x1b[K\rc\x1b[K\n");
  });

  it("without a terminal, prints a line at most every 2 s, and each phase's last line once", () => {
    let now = 0;
    const out = captured(false);
    const line = new ProgressLine(out, () => now);
    for (; now <= 5000; now += 250) line.update(`at ${now}`);
    line.end("done");
    line.update("next phase");
    line.end("next phase");
    expect(out.text).toBe("at 0\nat 2000\nat 4000\ndone\nnext phase\n");
  });
});
