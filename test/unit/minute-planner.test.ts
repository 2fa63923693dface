import { MINUTES_PER_HOUR, planMinutes, quarterOf, summarizePlan, type MinutePick } from "../../lib/scheduling/minute-planner";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const spread = (levels: number[]) => Math.max(...levels) - Math.min(...levels);

describe("planMinutes: phase 1, the seed's sequential fill", () => {
  it("RPM 2: ids 1001..1030 take minutes 0..14 in pairs", () => {
    const slots = [...planMinutes(range(1001, 1030), 2)];
    expect(slots).toEqual(range(0, 29).map((i) => ({ id: 1001 + i, minute: Math.floor(i / 2) })));
    expect(summarizePlan(slots)).toMatchObject({ firstMinute: 0, lastMinute: 14, ids: 30 });
  });

  it("RPM 5: ids fill each minute with five, in clock order", () => {
    const slots = [...planMinutes(range(1, 42), 5)];
    expect(slots.slice(0, 5).every((s) => s.minute === 0)).toBe(true);
    expect(slots[5]).toEqual({ id: 6, minute: 1 });
    expect(slots[41]).toEqual({ id: 42, minute: 8 });
    expect(summarizePlan(slots).perMinute.slice(0, 9)).toEqual([5, 5, 5, 5, 5, 5, 5, 5, 2]);
  });

  it("continues from the hour's current fill", () => {
    const fill = [2, 2, 1];
    expect([...planMinutes([7, 8, 9], 2, fill)]).toEqual([
      { id: 7, minute: 2 },
      { id: 8, minute: 3 },
      { id: 9, minute: 3 },
    ]);
    expect(fill).toEqual([2, 2, 1]);
  });

  it("never puts more than RPM ids in a minute while some minute is below RPM", () => {
    for (const rpm of [1, 2, 3, 7]) {
      const levels = new Array<number>(MINUTES_PER_HOUR).fill(0);
      for (const s of planMinutes(range(1, rpm * MINUTES_PER_HOUR), rpm)) {
        levels[s.minute]!++;
        expect(levels[s.minute]).toBeLessThanOrEqual(rpm);
      }
      expect(levels.every((n) => n === rpm)).toBe(true);
    }
  });
});

describe("planMinutes: phase 2, dispersal once every minute is full", () => {
  it("keeps the fullest and the emptiest minute within 1 after every id", () => {
    const rpm = 3;
    const levels = new Array<number>(MINUTES_PER_HOUR).fill(0);
    let checked = 0;
    for (const s of planMinutes(range(1, rpm * MINUTES_PER_HOUR + 1000), rpm)) {
      levels[s.minute]!++;
      if (checked++ >= rpm * MINUTES_PER_HOUR) expect(spread(levels)).toBeLessThanOrEqual(1);
    }
  });

  it("sends consecutive ids to minutes far apart, and visits every minute once per round", () => {
    const full = new Array<number>(MINUTES_PER_HOUR).fill(2);
    const minutes = [...planMinutes(range(1, 120), 2, full)].map((s) => s.minute);
    for (let i = 1; i < minutes.length; i++) {
      const d = Math.abs(minutes[i]! - minutes[i - 1]!);
      expect(Math.min(d, MINUTES_PER_HOUR - d)).toBeGreaterThanOrEqual(15);
    }
    expect(new Set(minutes.slice(0, 60)).size).toBe(60);
    expect(new Set(minutes.slice(60)).size).toBe(60);
  });

  it("levels an uneven hour: ids go to the least-filled minutes first", () => {
    const fill = Array.from({ length: MINUTES_PER_HOUR }, (_, m) => (m < 10 ? 5 : 4));
    const minutes = [...planMinutes(range(1, 50), 4, fill)].map((s) => s.minute);
    expect(minutes.every((m) => m >= 10)).toBe(true);
    expect(new Set(minutes).size).toBe(50);
  });

  it("is deterministic for the same ids, RPM and fill", () => {
    const plan = (): MinutePick[] => [...planMinutes(range(500, 900), 4, [1, 0, 3])];
    expect(plan()).toEqual(plan());
  });

  it("rejects an RPM that is not a positive integer", () => {
    expect(() => [...planMinutes([1], 0)]).toThrow(RangeError);
    expect(() => [...planMinutes([1], 1.5)]).toThrow(RangeError);
  });
});

describe("planMinutes: memory", () => {
  it("plans 10,000,000 ids from a generator without per-id memory", () => {
    function* ids() {
      for (let i = 1; i <= 10_000_000; i++) yield i;
    }
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    let peak = before;
    let n = 0;
    const levels = new Array<number>(MINUTES_PER_HOUR).fill(0);
    for (const s of planMinutes(ids(), 2)) {
      levels[s.minute]!++;
      if (++n % 1_000_000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    expect(n).toBe(10_000_000);
    expect(spread(levels)).toBeLessThanOrEqual(1);
    // Holding 10M slots would take hundreds of MiB; the plan's own state is 60 counters.
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
  });
});

describe("quarterOf", () => {
  it.each([
    [0, 0],
    [14, 0],
    [15, 1],
    [44, 2],
    [45, 3],
    [59, 3],
  ])("minute %i is in quarter %i", (minute, quarter) => expect(quarterOf(minute)).toBe(quarter));
});

describe("planMinutes: two hours", () => {
  it("fills the rest of the current hour sequentially, then goes on into the next hour with the same iterator", () => {
    const ids = range(1, 30)[Symbol.iterator]();
    const current = [...planMinutes({ [Symbol.iterator]: () => ids }, 2, [], { from: 50, disperse: false })];
    expect(current.map((s) => s.minute)).toEqual([50, 50, 51, 51, 52, 52, 53, 53, 54, 54, 55, 55, 56, 56, 57, 57, 58, 58, 59, 59]);
    const next = [...planMinutes({ [Symbol.iterator]: () => ids }, 2)];
    expect(next.map((s) => s.id)).toEqual(range(21, 30));
    expect(next.map((s) => s.minute)).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
  });

  it("never chooses a minute before `from`, in either phase", () => {
    const full = new Array<number>(MINUTES_PER_HOUR).fill(1);
    const minutes = [...planMinutes(range(1, 200), 1, full, { from: 40 })].map((s) => s.minute);
    expect(minutes.every((m) => m >= 40)).toBe(true);
    expect(new Set(minutes.slice(0, 20)).size).toBe(20);
  });
});
