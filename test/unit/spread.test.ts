// The dispatcher's timing on fake timers: a minute's ids go out spread evenly across it.
import { sendSpread, type SpreadClock } from "../../lib/scheduling/spread";

describe("sendSpread (fake timers)", () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());
  const clock: SpreadClock = { now: () => Date.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

  it("sends item i at start + i × minute / count, not in a burst at the start", async () => {
    const sentAt: number[] = [];
    const done = sendSpread([1, 2, 3, 4], 1_000_000, 60_000, async () => void sentAt.push(Date.now()), clock);
    await jest.advanceTimersByTimeAsync(60_000);
    expect(await done).toBe(4);
    expect(sentAt.map((t) => t - 1_000_000)).toEqual([0, 15_000, 30_000, 45_000]);
  });

  it("catches up at once with what is overdue when it starts late, then keeps the spacing", async () => {
    const sentAt: number[] = [];
    // The minute began 25 s ago: the first two are overdue.
    const done = sendSpread([1, 2, 3, 4], 1_000_000 - 25_000, 60_000, async () => void sentAt.push(Date.now() - 1_000_000), clock);
    await jest.advanceTimersByTimeAsync(60_000);
    await done;
    expect(sentAt).toEqual([0, 0, 5_000, 20_000]);
  });

  it("stops when told, and sends nothing for an empty minute", async () => {
    let stop = false;
    const sent: number[] = [];
    const done = sendSpread(
      [1, 2, 3],
      1_000_000,
      3_000,
      async (i) => {
        sent.push(i);
        stop = true;
      },
      clock,
      () => stop,
    );
    await jest.advanceTimersByTimeAsync(3_000);
    expect(await done).toBe(1);
    expect(sent).toEqual([1]);
    expect(await sendSpread([], 1_000_000, 3_000, async () => {}, clock)).toBe(0);
  });
});
