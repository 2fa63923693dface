import { ValidationError } from "../platform/errors";

export interface Rate {
  count: number;
  perMs: number;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000 } as const;
type Unit = keyof typeof UNIT_MS;

// Celery's syntax: "<count>[/<s|m|h>]", the unit defaulting to seconds.
const RATE = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:\/\s*([smh])\s*)?$/;

export function parseRate(text: string, variable = "rate"): Rate {
  const m = RATE.exec(text);
  const count = m ? Number(m[1]) : NaN;
  if (!m || !Number.isFinite(count) || count <= 0) {
    throw new ValidationError(variable, `invalid rate "${text}": expected a positive count per s, m or h, e.g. "10/s" or "100/m"`);
  }
  const unit = (m[2] ?? "s") as Unit;
  return { count, perMs: UNIT_MS[unit] };
}

export function formatRate(r: Rate): string {
  for (const [unit, ms] of Object.entries(UNIT_MS)) {
    if (ms === r.perMs) return `${r.count}/${unit}`;
  }
  // A hand-built Rate with an odd window is still expressible per second.
  return `${(r.count * 1_000) / r.perMs}/s`;
}

export function minIntervalMs(r: Rate): number {
  return r.perMs / r.count;
}

// A known limit must hold where it is counted: at the site, the upstream or the database, not
// where calls leave. Starts spaced exactly at the rate let timer and event-loop jitter put one
// start too many into a window there (20/s gave 21 in a second), so they are spaced 10% wider.
export const RATE_SPACING_MARGIN = 1.1;

/** The spacing between starts that keeps `r` at the far end; `exact` for a rate being probed. */
export function startSpacingMs(r: Rate, exact = false): number {
  // Rounded to a microsecond: 200 * 1.1 is 220.00000000000003 in floating point, which a
  // caller's Math.ceil would turn into 221.
  return Math.round(minIntervalMs(r) * (exact ? 1 : RATE_SPACING_MARGIN) * 1000) / 1000;
}
