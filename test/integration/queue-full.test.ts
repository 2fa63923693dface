// A full per-node bulkhead answers 429 with Retry-After at once: nothing hangs, nothing changes.
import type { Sluice } from "../../runtime";
import { http, startEmbedded, waitFor } from "../support/env";

describe("the database bulkhead under overload", () => {
  let sluice: Sluice;

  beforeAll(async () => {
    // Room for 12 in the queue: the node's own periodic work (backlog refresh, reaper, crawler
    // fill and sweep, schedules, maintenance) may take about half of it while the requests wait
    // (CI once saw it take 3 of 4), and at least 2 must be requests.
    sluice = await startEmbedded({ DB_QUEUE_MAX: "12" });
  });
  afterAll(() => sluice?.stop());

  it("turns away what does not fit with 429 QUEUE_FULL and Retry-After, and serves the rest", async () => {
    // Hold the only database slot so that requests queue behind it.
    const release = await sluice.dbGate.acquire();
    const started = Date.now();
    const responses = Promise.all(Array.from({ length: 40 }, () => http(sluice.apiUrl!, "GET", "/api/crawls")));
    await new Promise((r) => setTimeout(r, 3_000));
    release();
    const results = await responses;
    const rejected = results.filter((r) => r.status === 429);
    const served = results.filter((r) => r.status === 200);
    expect(results.filter((r) => r.status !== 429 && r.status !== 200).map((r) => [r.status, r.body])).toEqual([]);
    expect(rejected.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThanOrEqual(2);
    for (const r of rejected) {
      expect(r.body).toEqual({
        error: { code: "QUEUE_FULL", message: expect.stringContaining("db"), details: { resource: "db", retryAfterSeconds: 1 } },
      });
      expect(r.headers.get("retry-after")).toBe("1");
    }
    expect(Date.now() - started).toBeLessThan(15_000);
    // Nothing hangs: the node's own background work, queued behind the held slot too, drains.
    await waitFor(
      () => {
        const { running, queued } = sluice.dbGate.stats();
        return running === 0 && queued === 0 ? true : undefined;
      },
      5_000,
      "the bulkhead to drain",
    );
    expect(sluice.dbGate.stats().rejected).toBeGreaterThan(0);
  });
});
