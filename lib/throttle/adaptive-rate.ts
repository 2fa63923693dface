// The rate for an upstream whose limit is unknown (UPSTREAM_RATE=auto): raised on success, cut
// on a throttle (429, 503, a timeout), paused for a Retry-After. Pure: the caller feeds it
// outcomes with their times and reads the rate to space its calls by.
//
// The shape is CUBIC's, as in the AWS SDK's "adaptive" retry mode: a throttle sets rMax, the
// rate the upstream turned out to allow: the successes counted in the last second (the sending
// rate, if that is lower), which for a windowed limit is the limit itself. The rate drops to
// BETA × rMax, and from there follows r(t) = c·rMax·(t − K)³ + rMax, which
// climbs quickly back towards rMax, stays near it for a while (where the limit was found), and
// then accelerates, so a limit that has risen is found again. K is the time r takes to get back
// to rMax: PLATEAU_S seconds whatever the rate. Until the first throttle, and after PROBE_AFTER_S
// without one, the rate doubles every second (slow start). Throttles within COOLDOWN_MS of a cut are the same burst
// (calls already in flight) and do not cut again.

export const BETA = 0.95;
export const PLATEAU_S = 10;
export const COOLDOWN_MS = 1_000;
// Seconds without a throttle after which the rate doubles again, as in slow start.
export const PROBE_AFTER_S = 2 * PLATEAU_S;
// c such that r(0) = BETA·rMax: c·K³ = 1 − BETA.
const CUBIC_C = (1 - BETA) / PLATEAU_S ** 3;

export interface AdaptiveState {
  /** Calls per second allowed now. */
  rate: number;
  /** The rate at the last throttle; null until the first (slow start). */
  rMax: number | null;
  /** When the last cut happened (ms). */
  cutAt: number;
  /** No call before this time (ms): the upstream's Retry-After. */
  pausedUntil: number;
  /** Successes counted in the second `second` (epoch seconds), and in the one before it. */
  second: number;
  thisSecond: number;
  lastSecond: number;
}

export interface AdaptiveBounds {
  minRate: number;
  maxRate: number;
}

export function initialState(startRate: number, now = 0): AdaptiveState {
  return {
    rate: startRate,
    rMax: null,
    cutAt: now - COOLDOWN_MS,
    pausedUntil: now,
    second: Math.floor(now / 1000),
    thisSecond: 0,
    lastSecond: 0,
  };
}

const clamp = (rate: number, b: AdaptiveBounds) => Math.min(b.maxRate, Math.max(b.minRate, rate));

/** The success counters moved on to the second of `now`. */
function counted(s: AdaptiveState, now: number, successes: number): AdaptiveState {
  const second = Math.floor(now / 1000);
  if (second === s.second) return { ...s, thisSecond: s.thisSecond + successes };
  return { ...s, second, thisSecond: successes, lastSecond: second === s.second + 1 ? s.thisSecond : 0 };
}

/** A successful call at time `now` (ms). */
export function onSuccess(state: AdaptiveState, b: AdaptiveBounds, now: number): AdaptiveState {
  const s = counted(state, now, 1);
  // Slow start, and again once a long while has passed without a throttle (the limit has risen
  // far above rMax): + 1 per success is + rate per second, doubling.
  if (s.rMax === null || now - s.cutAt > PROBE_AFTER_S * 1000) return { ...s, rate: clamp(s.rate + 1, b) };
  const t = (now - s.cutAt) / 1000 - PLATEAU_S;
  return { ...s, rate: clamp(Math.max(s.rate, CUBIC_C * s.rMax * t ** 3 + s.rMax), b) };
}

/** A throttled call at `now`: cut (once per burst), and pause for the upstream's Retry-After. */
export function onThrottle(state: AdaptiveState, b: AdaptiveBounds, now: number, retryAfterMs: number | null = null): AdaptiveState {
  const s = counted(state, now, 0);
  const pausedUntil = retryAfterMs ? Math.max(s.pausedUntil, now + retryAfterMs) : s.pausedUntil;
  if (now - s.cutAt < COOLDOWN_MS) return { ...s, pausedUntil };
  const allowed = Math.max(s.thisSecond, s.lastSecond);
  const rMax = clamp(allowed > 0 ? Math.min(s.rate, allowed) : s.rate, b);
  return { ...s, rate: clamp(rMax * BETA, b), rMax, cutAt: now, pausedUntil };
}

/** Milliseconds between call starts at the current rate. */
export const spacingMs = (s: AdaptiveState): number => 1000 / s.rate;

/** Parses Retry-After (seconds, or an HTTP date) into milliseconds from `now`; null when absent or invalid. */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
