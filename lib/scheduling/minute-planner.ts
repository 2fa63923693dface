// The id planner (seed: the DRF + Celery scheduler): spreads submitted ids over the 60 minutes
// of an hour so that processing has no peaks. A pure, lazy generator: it keeps 60 counters and a
// cursor, whatever the number of ids.
//
// Phase 1, as in the seed: ids fill the minutes one after another, RPM ids each (RPM 2: ids 1 and
// 2 in minute 0, 3 and 4 in minute 1, ...), starting from the hour's current fill.
// Phase 2, once every minute holds RPM ids: each further id goes to a least-filled minute, so the
// fullest and the emptiest minute never differ by more than 1 (when phase 2 starts level).
// Among the least-filled minutes it takes the next in a fixed order that steps 37 minutes at a
// time (37 and 60 are coprime, so the order visits every minute once per round), so consecutive
// ids land far apart instead of in neighbouring minutes.

export const MINUTES_PER_HOUR = 60;
export const QUARTER_MINUTES = 15;
// The phase-2 step: coprime with 60, and about 60 / golden ratio, so that successive picks are
// 23 or 37 minutes apart.
const SPREAD_STEP = 37;

export interface MinutePick {
  id: number;
  /** Minute of the hour, 0-59. */
  minute: number;
}

/** The quarter (0-3) a minute belongs to: the seed's checker runs at minutes 0, 15, 30 and 45. */
export const quarterOf = (minute: number): number => Math.floor(minute / QUARTER_MINUTES);

export interface PlanOptions {
  /** Minutes before this one are over: never chosen (a plan for the current hour). Default 0. */
  from?: number;
  /** false: stop at the end of phase 1, leaving the remaining ids in the iterator (for the next hour). */
  disperse?: boolean;
}

/**
 * Plans `ids` into the minutes of an hour whose minutes already hold `fill[m]` ids (60 numbers;
 * `fill` is not changed). Deterministic for the same ids, RPM, fill and options. An id is taken
 * from `ids` only once it has a minute, so the same iterator can go on into another hour.
 */
export function* planMinutes(
  ids: Iterable<number>,
  rpm: number,
  fill: readonly number[] = [],
  options: PlanOptions = {},
): Generator<MinutePick> {
  if (!Number.isInteger(rpm) || rpm < 1) throw new RangeError(`rpm must be a positive integer, got ${rpm}`);
  const from = options.from ?? 0;
  const open = (m: number) => m >= from;
  const level = Array.from({ length: MINUTES_PER_HOUR }, (_, m) => fill[m] ?? 0);
  const iterator = ids[Symbol.iterator]();
  // Phase 1: the first open minute (in clock order) still below RPM.
  let next = from;
  // Phase 2: position in the spread order, the lowest level among open minutes and how many are at it.
  let cursor = 0;
  let lowest = -1;
  let atLowest = 0;
  const findLowest = () => {
    const levels = level.filter((_, m) => open(m));
    lowest = Math.min(...levels);
    atLowest = levels.filter((n) => n === lowest).length;
  };
  for (;;) {
    while (next < MINUTES_PER_HOUR && level[next]! >= rpm) next++;
    if (next >= MINUTES_PER_HOUR && (options.disperse === false || from >= MINUTES_PER_HOUR)) return;
    const item = iterator.next();
    if (item.done) return;
    let minute: number;
    if (next < MINUTES_PER_HOUR) {
      minute = next;
      level[minute]!++;
    } else {
      if (lowest < 0) findLowest();
      // An open minute at the lowest level comes up within one round of the order.
      do {
        minute = (cursor * SPREAD_STEP) % MINUTES_PER_HOUR;
        cursor = (cursor + 1) % MINUTES_PER_HOUR;
      } while (!open(minute) || level[minute] !== lowest);
      level[minute]!++;
      if (--atLowest === 0) findLowest();
    }
    yield { id: item.value, minute };
  }
}

/** How a plan fills the hour: the first and last minute used and the ids per minute. */
export function summarizePlan(slots: Iterable<MinutePick>): {
  firstMinute: number | null;
  lastMinute: number | null;
  perMinute: number[];
  ids: number;
} {
  const perMinute = new Array<number>(MINUTES_PER_HOUR).fill(0);
  let ids = 0;
  for (const s of slots) {
    perMinute[s.minute]!++;
    ids++;
  }
  const used = perMinute.map((n, m) => (n > 0 ? m : -1)).filter((m) => m >= 0);
  return { firstMinute: used[0] ?? null, lastMinute: used[used.length - 1] ?? null, perMinute, ids };
}
