// The schedules' time arithmetic (lib/scheduling/cron.ts) on explicit dates: next ticks for 5-
// and 6-field patterns in a time zone, what is refused (naming cron or timezone), and the misfire
// policy for a tick that is on time, within the grace, or missed.
import { canonicalTimeZone, compileCron, MISFIRE_GRACE_MS, nextTick, parseCron, planTick, type CronSpec } from "../../lib/scheduling/cron";
import { ValidationError } from "../../lib/platform/errors";

const at = (iso: string) => new Date(iso);
const utc = (cron: string): CronSpec => ({ cron, timezone: "UTC" });
/** The n ticks after `from`. */
const ticks = (spec: CronSpec, from: string, n: number): string[] => {
  const pattern = parseCron(spec);
  const out: string[] = [];
  let t: Date | null = at(from);
  for (let i = 0; i < n && t; i++) {
    t = nextTick(pattern, t);
    if (t) out.push(t.toISOString());
  }
  return out;
};
const refusal = (fn: () => unknown): { field: unknown; message: string } => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    const e = err as ValidationError;
    return { field: (e.data as { field?: unknown }).field, message: e.message };
  }
  throw new Error("not refused");
};

describe("next ticks", () => {
  it("5 fields: minutes, strictly after the given time", () => {
    expect(ticks(utc("*/15 * * * *"), "2026-01-01T10:00:00Z", 3)).toEqual([
      "2026-01-01T10:15:00.000Z",
      "2026-01-01T10:30:00.000Z",
      "2026-01-01T10:45:00.000Z",
    ]);
    expect(ticks(utc("0 9 * * 1"), "2026-01-01T00:00:00Z", 2)).toEqual(["2026-01-05T09:00:00.000Z", "2026-01-12T09:00:00.000Z"]);
  });

  it("6 fields: seconds first, every second from a time inside a second", () => {
    expect(ticks(utc("* * * * * *"), "2026-01-01T10:00:00.400Z", 3)).toEqual([
      "2026-01-01T10:00:01.000Z",
      "2026-01-01T10:00:02.000Z",
      "2026-01-01T10:00:03.000Z",
    ]);
    expect(ticks(utc("30 0 12 * * *"), "2026-01-01T12:00:30Z", 1)).toEqual(["2026-01-02T12:00:30.000Z"]);
  });

  it("in the schedule's time zone, across daylight saving time (each wall-clock tick once)", () => {
    const paris = { cron: "0 30 2 * * *", timezone: "Europe/Paris" };
    // 2026-03-29: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist that day and fires an hour late.
    expect(ticks(paris, "2026-03-27T12:00:00Z", 3)).toEqual([
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:30:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
    // 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice and fires once.
    expect(ticks(paris, "2026-10-24T12:00:00Z", 2)).toEqual(["2026-10-25T01:30:00.000Z", "2026-10-26T01:30:00.000Z"]);
    expect(ticks({ cron: "0 9 * * *", timezone: "America/New_York" }, "2026-07-01T00:00:00Z", 1)).toEqual(["2026-07-01T13:00:00.000Z"]);
  });
});

describe("what is refused", () => {
  it("a bad pattern names cron", () => {
    for (const cron of ["", "bad", "* * * *", "* * * * * * *", "61 * * * *", "* * 32 * *", "* * * * * ?x"]) {
      expect(refusal(() => compileCron(utc(cron), at("2026-01-01T00:00:00Z"))).field).toBe("cron");
    }
  });

  it("a pattern that never fires names cron", () => {
    expect(refusal(() => compileCron(utc("0 0 30 2 *"), at("2026-01-01T00:00:00Z")))).toEqual({
      field: "cron",
      message: '"0 0 30 2 *" never fires',
    });
    // February 29th does fire, in the next leap year.
    expect(nextTick(compileCron(utc("0 0 29 2 *"), at("2026-01-01T00:00:00Z")), at("2026-01-01T00:00:00Z"))).toEqual(
      at("2028-02-29T00:00:00Z"),
    );
  });

  it("an unknown time zone names timezone; a known one comes back canonical", () => {
    for (const tz of ["Mars/Olympus", "", "+01:00", "Europe/Pariss"]) expect(refusal(() => canonicalTimeZone(tz)).field).toBe("timezone");
    expect(canonicalTimeZone("utc")).toBe("UTC");
    expect(canonicalTimeZone("europe/paris")).toBe("Europe/Paris");
  });
});

describe("planTick (misfire policy)", () => {
  const everyMinute = parseCron(utc("* * * * *"));
  const due = at("2026-01-01T10:00:00Z");

  it("a tick on time, or late within the grace, gets its job and moves to the tick after it", () => {
    for (const late of [0, 900, MISFIRE_GRACE_MS]) {
      for (const misfire of ["skip", "run_once"] as const) {
        expect(planTick(due, new Date(due.getTime() + late), misfire, everyMinute)).toEqual({
          fireAt: due,
          nextRunAt: at("2026-01-01T10:01:00Z"),
          misfired: false,
        });
      }
    }
  });

  it("catching up within the grace fires every tick: the next one may be due already", () => {
    const everySecond = parseCron(utc("* * * * * *"));
    const now = at("2026-01-01T10:00:05.200Z");
    const fired: string[] = [];
    let next: Date | null = due;
    while (next && next <= now) {
      const plan = planTick(next, now, "skip", everySecond);
      fired.push(plan.fireAt!.toISOString());
      next = plan.nextRunAt;
    }
    expect(fired).toHaveLength(6);
    expect(next).toEqual(at("2026-01-01T10:00:06Z"));
  });

  it("skip: a missed tick gets no job, and the schedule moves to the first tick after now", () => {
    const now = at("2026-01-02T08:17:30Z"); // a day late
    expect(planTick(due, now, "skip", everyMinute)).toEqual({ fireAt: null, nextRunAt: at("2026-01-02T08:18:00Z"), misfired: true });
    expect(planTick(due, new Date(due.getTime() + MISFIRE_GRACE_MS + 1), "skip", everyMinute).fireAt).toBeNull();
  });

  it("run_once: one job for all the missed ticks (recorded at the first), then the first tick after now: no burst", () => {
    const now = at("2026-01-02T08:17:30Z");
    expect(planTick(due, now, "run_once", everyMinute)).toEqual({ fireAt: due, nextRunAt: at("2026-01-02T08:18:00Z"), misfired: true });
  });

  it("a grace of its own", () => {
    expect(planTick(due, at("2026-01-01T10:00:02Z"), "skip", everyMinute, 1_000).misfired).toBe(true);
  });
});
