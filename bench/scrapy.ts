// Runs bench/scrapy_spider.py with `python3 -m scrapy runspider` and reads back its stats.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

const SPIDER = path.join(__dirname, "scrapy_spider.py");

/**
 * A Python that can import scrapy: `explicit` (BENCH_PYTHON) if given, else python3 on PATH, else
 * /usr/bin/python3, where Debian's python3-scrapy lives when PATH's python3 is another (pyenv, a venv).
 */
export function findScrapyPython(explicit: string | undefined): string | null {
  const candidates = explicit ? [explicit] : ["python3", "/usr/bin/python3"];
  return candidates.find((py) => spawnSync(py, ["-c", "import scrapy"], { stdio: "ignore" }).status === 0) ?? null;
}

export interface ScrapyRun {
  /** HTML responses the spider parsed (its bench/pages stat). */
  pages: number;
  /** Scrapy's elapsed_time_seconds: spider opened → closed, without Python's start-up. */
  seconds: number;
  /** The whole process, start-up and shutdown included. */
  processSeconds: number;
  finishReason: string;
  /** Scrapy's stats as the spider wrote them. */
  stats: Record<string, unknown>;
}

export async function runScrapy(python: string, root: string, concurrency: number, timeoutS: number): Promise<ScrapyRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-bench-scrapy-"));
  const statsFile = path.join(dir, "stats.json");
  const logFile = path.join(dir, "scrapy.log");
  try {
    const args = ["-m", "scrapy", "runspider", SPIDER, "-a", `root=${root}`, "-a", `stats_file=${statsFile}`];
    for (const s of ["CONCURRENT_REQUESTS", "CONCURRENT_REQUESTS_PER_DOMAIN"]) args.push("-s", `${s}=${concurrency}`);
    const logFd = fs.openSync(logFile, "w");
    const t0 = performance.now();
    // No __pycache__ next to the spider in the repository.
    const env = { ...process.env, PYTHONDONTWRITEBYTECODE: "1" };
    const child = spawn(python, args, { cwd: dir, env, stdio: ["ignore", logFd, logFd] });
    fs.closeSync(logFd);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutS * 1000);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (c) => resolve(c));
    }).finally(() => clearTimeout(timer));
    const processSeconds = (performance.now() - t0) / 1000;
    const tail = () => fs.readFileSync(logFile, "utf8").trim().split("\n").slice(-15).join("\n");
    if (code !== 0 || !fs.existsSync(statsFile)) {
      throw new Error(`scrapy exited with ${code ?? "a signal (timed out?)"}; the end of its log:\n${tail()}`);
    }
    const stats = JSON.parse(fs.readFileSync(statsFile, "utf8")) as Record<string, unknown>;
    return {
      pages: Number(stats["bench/pages"] ?? 0),
      seconds: Number(stats.elapsed_time_seconds ?? processSeconds),
      processSeconds,
      finishReason: String(stats.finish_reason),
      stats,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
