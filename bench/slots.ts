// Scheduler benchmark: `npm run bench:slots`. See bench/README.md.
//
// 1. The planner: ids planned per second and peak RSS for 1M and 10M ids, each in a fresh child
//    process (so one run's heap does not hide in the other's figure), ids from a generator.
// 2. The adaptive rate against a local upstream with a hidden limit (429 + Retry-After above it):
//    time to converge (first 5 s window at >= 80% of the limit) and efficiency (successes per
//    second / the limit) over the last 20 s of BENCH_ADAPTIVE_S, beside a fixed rate set by hand
//    to the hidden limit, measured the same way.
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { initialState, onSuccess, onThrottle, type AdaptiveState } from "../lib/throttle/adaptive-rate";
import { planMinutes } from "../lib/scheduling/minute-planner";
import { fetchProfile, upstreamUrlFor } from "../lib/scheduling/upstream";
import { serveUpstream } from "../fixtures/upstream-server";

const HIDDEN = Number(process.env.BENCH_HIDDEN_LIMIT ?? 50);
const ADAPTIVE_S = Number(process.env.BENCH_ADAPTIVE_S ?? 60);
const log = (line: string) => void process.stderr.write(line + "\n");

/** Child mode: plan N ids and print {n, seconds, peakRssMiB}. */
function planChild(n: number): void {
  function* ids() {
    for (let i = 1; i <= n; i++) yield i;
  }
  let peak = process.memoryUsage().rss;
  const t0 = performance.now();
  let count = 0;
  for (const _ of planMinutes(ids(), 10)) {
    if (++count % 500_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ n: count, seconds, peakRssMiB: Math.max(peak, process.memoryUsage().rss) / 1024 / 1024 }));
}

function planInChild(n: number): { n: number; seconds: number; peakRssMiB: number } {
  const out = execFileSync(process.execPath, ["--import", "tsx", __filename, "--plan", String(n)], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop()!);
}

/** Calls the upstream for `seconds`, paced by `next()` (ms to wait before the next call). */
async function drive(seconds: number, adaptive: boolean): Promise<{ convergedS: number | null; efficiency: number; throttled: number }> {
  const upstream = await serveUpstream({ hiddenLimit: HIDDEN });
  let state: AdaptiveState = initialState(1, Date.now());
  const bounds = { minRate: 0.5, maxRate: 10_000 };
  const start = Date.now();
  const inFlight = new Set<Promise<void>>();
  let id = 0;
  while (Date.now() - start < seconds * 1000) {
    const rate = adaptive ? state.rate : HIDDEN;
    const pause = adaptive ? state.pausedUntil - Date.now() : 0;
    await new Promise((r) => setTimeout(r, Math.max(pause, 1000 / rate)));
    const p = fetchProfile(upstreamUrlFor(upstream.url, ++id), 5_000).then((o) => {
      if (!adaptive) return;
      const now = Date.now();
      state =
        o.kind === "ok" ? onSuccess(state, bounds, now) : o.kind === "throttled" ? onThrottle(state, bounds, now, o.retryAfterMs) : state;
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }
  await Promise.all(inFlight);
  await upstream.close();
  const okIn = (from: number, to: number) =>
    upstream.requests.filter((r) => r.ok && r.at >= start + from * 1000 && r.at < start + to * 1000).length;
  let convergedS: number | null = null;
  for (let t = 0; t + 5 <= seconds; t++) {
    if (okIn(t, t + 5) / 5 >= 0.8 * HIDDEN) {
      convergedS = t + 5;
      break;
    }
  }
  const tail = upstream.requests.filter((r) => r.at >= start + (seconds - 20) * 1000);
  return {
    convergedS,
    efficiency: okIn(seconds - 20, seconds) / 20 / HIDDEN,
    throttled: tail.filter((r) => !r.ok).length / Math.max(1, tail.length),
  };
}

async function main(): Promise<void> {
  log("bench:slots: planning 1M and 10M ids in child processes");
  const plans = [1_000_000, 10_000_000].map(planInChild);
  console.table(
    plans.map((p) => ({
      ids: p.n,
      seconds: p.seconds.toFixed(2),
      idsPerSecond: Math.round(p.n / p.seconds),
      peakRssMiB: p.peakRssMiB.toFixed(0),
    })),
  );
  log(`adaptive rate against a hidden limit of ${HIDDEN}/s for ${ADAPTIVE_S} s, then a fixed rate of ${HIDDEN}/s for 30 s`);
  const adaptive = await drive(ADAPTIVE_S, true);
  const fixed = await drive(30, false);
  console.table([
    {
      rate: "adaptive (auto)",
      convergedAfterS: adaptive.convergedS ?? "never",
      efficiency: adaptive.efficiency.toFixed(3),
      throttledShare: adaptive.throttled.toFixed(3),
    },
    {
      rate: `fixed ${HIDDEN}/s, by hand`,
      convergedAfterS: fixed.convergedS ?? "never",
      efficiency: fixed.efficiency.toFixed(3),
      throttledShare: fixed.throttled.toFixed(3),
    },
  ]);
  console.log(`adaptive efficiency ÷ fixed: ${(adaptive.efficiency / fixed.efficiency).toFixed(3)}`);
  console.log(
    JSON.stringify({
      plan1M: { idsPerS: Math.round(plans[0]!.n / plans[0]!.seconds), peakRssMiB: Math.round(plans[0]!.peakRssMiB) },
      plan10M: { idsPerS: Math.round(plans[1]!.n / plans[1]!.seconds), peakRssMiB: Math.round(plans[1]!.peakRssMiB) },
      adaptive,
      fixed,
    }),
  );
}

if (process.argv[2] === "--plan") planChild(Number(process.argv[3]));
else
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
