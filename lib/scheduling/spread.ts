// Sending a minute's ids spread evenly across the minute instead of in a burst at its start:
// item i goes out at start + i × (minute ÷ count). Pure but for the clock and the sender it is
// given, so the timing can be tested on fake timers.
export interface SpreadClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: SpreadClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/** Sends `items` over [start, start + spanMs), evenly; stops early when `stopped()` says so. Answers how many went out. */
export async function sendSpread<T>(
  items: readonly T[],
  start: number,
  spanMs: number,
  send: (item: T) => Promise<void>,
  clock: SpreadClock = realClock,
  stopped: () => boolean = () => false,
): Promise<number> {
  const gap = spanMs / Math.max(1, items.length);
  let sent = 0;
  for (const item of items) {
    if (stopped()) break;
    const wait = start + sent * gap - clock.now();
    if (wait > 0) await clock.sleep(wait);
    await send(item);
    sent++;
  }
  return sent;
}
