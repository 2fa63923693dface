import { runEvery } from "../../lib/platform/periodic";

describe("runEvery", () => {
  it("never runs the task twice at once, reports a failure and runs again next period, and stop() waits for the run", async () => {
    let runs = 0;
    let running = 0;
    let peak = 0;
    const errors: unknown[] = [];
    const periodic = runEvery(
      10,
      async () => {
        runs++;
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 35));
        running--;
        if (runs === 1) throw new Error("first run fails");
      },
      (err) => errors.push(err),
      { now: true },
    );
    expect(runs).toBe(1);
    await new Promise((r) => setTimeout(r, 150));
    await periodic.stop();
    expect(running).toBe(0);
    const stoppedAt = runs;
    await new Promise((r) => setTimeout(r, 50));
    expect(runs).toBe(stoppedAt);
    expect(runs).toBeGreaterThan(1);
    expect(peak).toBe(1);
    expect(errors).toEqual([new Error("first run fails")]);
  });
});
