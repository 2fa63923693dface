// The adaptive rate against a simulated upstream with a hidden limit (fixed one-second windows,
// 429 with Retry-After above the limit), in simulated time.
import {
  initialState,
  onSuccess,
  onThrottle,
  retryAfterMs,
  spacingMs,
  type AdaptiveBounds,
  type AdaptiveState,
} from "../../lib/throttle/adaptive-rate";

const BOUNDS: AdaptiveBounds = { minRate: 0.5, maxRate: 10_000 };

interface Call {
  at: number;
  ok: boolean;
}

/** Runs calls for `seconds` of simulated time against `limitAt(t)` calls per one-second window. */
function simulate(seconds: number, limitAt: (t: number) => number, latencyMs = 40): Call[] {
  let state: AdaptiveState = initialState(1, 0);
  const calls: Call[] = [];
  const pending: { at: number; ok: boolean; retryAfter: number | null }[] = [];
  let windowStart = 0;
  let inWindow = 0;
  let t = 0;
  while (t < seconds * 1000) {
    // Answers that have arrived by now.
    while (pending.length > 0 && pending[0]!.at + latencyMs <= t) {
      const r = pending.shift()!;
      state = r.ok ? onSuccess(state, BOUNDS, r.at + latencyMs) : onThrottle(state, BOUNDS, r.at + latencyMs, r.retryAfter);
    }
    t = Math.max(t, state.pausedUntil);
    if (t - windowStart >= 1000) {
      windowStart = Math.floor(t / 1000) * 1000;
      inWindow = 0;
    }
    const ok = inWindow < limitAt(t);
    if (ok) inWindow++;
    const retryAfter = ok ? null : retryAfterMs(String(Math.ceil((windowStart + 1000 - t) / 1000)), t);
    calls.push({ at: t, ok });
    pending.push({ at: t, ok, retryAfter });
    t += spacingMs(state);
  }
  return calls;
}

const between = (calls: Call[], from: number, to: number) => calls.filter((c) => c.at >= from * 1000 && c.at < to * 1000);
const throughput = (calls: Call[], from: number, to: number) => between(calls, from, to).filter((c) => c.ok).length / (to - from);
const throttledShare = (calls: Call[], from: number, to: number) => {
  const window = between(calls, from, to);
  return window.filter((c) => !c.ok).length / window.length;
};

describe("adaptive rate against a hidden limit", () => {
  it.each([5, 20, 50, 200])("converges within 30 s to >= 80%% of a hidden limit of %i/s, with <= 5%% throttled after", (limit) => {
    const calls = simulate(120, () => limit);
    expect(throughput(calls, 30, 120)).toBeGreaterThanOrEqual(0.8 * limit);
    expect(throughput(calls, 30, 120)).toBeLessThanOrEqual(limit);
    expect(throttledShare(calls, 30, 120)).toBeLessThanOrEqual(0.05);
  });

  it("follows the limit when it drops and when it rises", () => {
    const calls = simulate(240, (t) => (t < 80_000 ? 50 : t < 160_000 ? 15 : 80));
    expect(throughput(calls, 30, 80)).toBeGreaterThanOrEqual(0.8 * 50);
    expect(throughput(calls, 110, 160)).toBeGreaterThanOrEqual(0.8 * 15);
    expect(throttledShare(calls, 110, 160)).toBeLessThanOrEqual(0.05);
    expect(throughput(calls, 190, 240)).toBeGreaterThanOrEqual(0.8 * 80);
    expect(throttledShare(calls, 190, 240)).toBeLessThanOrEqual(0.05);
  });
});

describe("adaptive rate steps", () => {
  it("doubles per second in slow start, then cuts to 0.95 of what the upstream allowed, once per burst, and climbs back over the plateau", () => {
    let s = initialState(10);
    for (let i = 0; i < 10; i++) s = onSuccess(s, BOUNDS, 500);
    expect(s.rate).toBe(20);
    // 10 successes counted in second 0: the upstream allowed 10/s, though the rate was 20.
    s = onThrottle(s, BOUNDS, 900);
    expect(s).toMatchObject({ rate: 9.5, rMax: 10, cutAt: 900 });
    expect(onThrottle(s, BOUNDS, 1500).rate).toBe(9.5);
    // Most of the way back in the first half of the plateau, rMax at its end, then beyond.
    expect(onSuccess(s, BOUNDS, 900 + 5000).rate).toBeGreaterThan(9.9);
    expect(onSuccess(s, BOUNDS, 900 + 10_000).rate).toBeCloseTo(10, 5);
    expect(onSuccess(s, BOUNDS, 900 + 19_000).rate).toBeGreaterThan(10.3);
    // Long without a throttle: doubling again.
    expect(onSuccess(s, BOUNDS, 900 + 25_000).rate).toBe(10.5);
  });

  it("honours Retry-After and stays within bounds", () => {
    const s = onThrottle(initialState(0.5), BOUNDS, 1000, 3000);
    expect(s.pausedUntil).toBe(4000);
    expect(s.rate).toBe(BOUNDS.minRate);
    expect(onSuccess(initialState(BOUNDS.maxRate), BOUNDS, 0).rate).toBe(BOUNDS.maxRate);
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    expect(retryAfterMs("2")).toBe(2000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(retryAfterMs("soon")).toBeNull();
    expect(retryAfterMs(undefined)).toBeNull();
  });
});
