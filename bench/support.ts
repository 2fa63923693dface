// What every benchmark needs: knobs from the environment, progress on stderr, a table, a scratch
// database, and a main() that exits with its code. Node processes, HTTP and waits: fixtures/.
import fs from "node:fs";
import { startNode, type NodeProcess } from "../fixtures/node-process";
import { createScratchDatabase, type ScratchDatabase } from "../fixtures/scratch-db";

/** An integer knob from the environment, `fallback` when unset; anything out of range fails loudly. */
export function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

/** Progress goes to stderr; stdout holds only the report. */
export const log = (line: string): void => void process.stderr.write(line + "\n");

export const round = (n: number, digits = 3): number => Number(n.toFixed(digits));

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A plain-text table: the first `leftColumns` columns and the last are left-aligned, the rest right-aligned. */
export function table(head: string[], body: string[][], leftColumns = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => (i < leftColumns || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(fmt)].join("\n");
}

/** A fresh database `sluice_bench_<random>` on the admin URL's server, dropped by `drop()`. */
export const createBenchDatabase = (adminUrl: string): Promise<ScratchDatabase> => createScratchDatabase(adminUrl, "sluice_bench");

/** mulberry32: a seeded generator of 32-bit integer arithmetic only, fast and the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A process's peak RSS (VmHWM, since it started), in MiB. */
export const peakRssMiB = (pid: number): number =>
  Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

/**
 * An api node and an ingestor node as two processes over NATS when `natsUrl` is set; without a
 * transporter the nodes could not talk, so then one process runs both roles. The api is first.
 */
export function startApiAndIngestor(namespace: string, env: Record<string, string>, port: number, natsUrl: string | null): NodeProcess[] {
  const common = natsUrl ? { ...env, TRANSPORTER: natsUrl } : env;
  return natsUrl
    ? [
        startNode(`${namespace}-api`, { ...common, SERVICES: "api", PORT: String(port) }),
        startNode(`${namespace}-ingestor`, { ...common, SERVICES: "ingestor", PORT: "0" }),
      ]
    : [startNode(`${namespace}-all`, { ...common, SERVICES: "api,ingestor", PORT: String(port) })];
}

/** Runs a benchmark's main() and exits with its code; says what still holds the loop open, if anything. */
export function runBench(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
      // Everything is closed by now; if something still holds the loop open, say what and leave.
      setTimeout(() => {
        log(`bench: handles still open after 10 s: ${process.getActiveResourcesInfo().join(", ")}`);
        process.exit(code || 2);
      }, 10_000).unref();
    },
    (err: unknown) => {
      console.error("bench failed:", err);
      process.exit(1);
    },
  );
}
