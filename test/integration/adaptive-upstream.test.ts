// UPSTREAM_RATE=auto against a local upstream with a hidden limit (429 with Retry-After above
// it): the adaptive rate converges within 30 s, then holds >= 80% of the limit with <= 5% of
// calls throttled, and follows the limit when it drops mid-run.
import { serveUpstream, type UpstreamServer } from "../../fixtures/upstream-server";
import type { Sluice } from "../../runtime";
import { http, startEmbedded } from "../support/env";

const HIDDEN = 30;
const LOWER = 12;

describe("adaptive upstream rate (UPSTREAM_RATE=auto)", () => {
  let sluice: Sluice;
  let upstream: UpstreamServer;

  beforeAll(async () => {
    upstream = await serveUpstream({ hiddenLimit: HIDDEN });
    sluice = await startEmbedded({
      SCHEDULER_MINUTE_MS: "1000",
      UPSTREAM_URL: upstream.url,
      UPSTREAM_RATE: "auto",
      UPSTREAM_MAX_ATTEMPTS: "10",
    });
  });
  afterAll(async () => {
    await sluice?.stop();
    await upstream?.close();
  });

  it(`converges to a hidden limit of ${HIDDEN}/s within 30 s, and follows it down to ${LOWER}/s`, async () => {
    // Far more ids a minute than the upstream allows: the adaptive rate does the pacing.
    const ids = Array.from({ length: 4000 }, (_, i) => 200_001 + i);
    const created = await http(sluice.apiUrl!, "POST", "/api/id-tasks", { ids, rpm: 1000 });
    expect(created.status).toBe(202);
    const start = Date.now();
    const sleepUntil = (s: number) => new Promise((r) => setTimeout(r, start + s * 1000 - Date.now()));
    const window = (from: number, to: number) => {
      const calls = upstream.requests.filter((r) => r.at >= start + from * 1000 && r.at < start + to * 1000);
      const ok = calls.filter((c) => c.ok).length;
      return { perSecond: ok / (to - from), throttled: (calls.length - ok) / Math.max(1, calls.length) };
    };

    await sleepUntil(50);
    const settled = window(30, 50);
    upstream.hiddenLimit = LOWER;
    await sleepUntil(85);
    const lowered = window(65, 85);
    console.log(
      `adaptive: ${settled.perSecond.toFixed(1)}/s (${((100 * settled.perSecond) / HIDDEN).toFixed(0)}% of ${HIDDEN}), ${(100 * settled.throttled).toFixed(1)}% throttled; ` +
        `after the drop ${lowered.perSecond.toFixed(1)}/s (${((100 * lowered.perSecond) / LOWER).toFixed(0)}% of ${LOWER}), ${(100 * lowered.throttled).toFixed(1)}% throttled`,
    );
    expect(settled.perSecond).toBeGreaterThanOrEqual(0.8 * HIDDEN);
    expect(settled.throttled).toBeLessThanOrEqual(0.05);
    expect(lowered.perSecond).toBeGreaterThanOrEqual(0.8 * LOWER);
    expect(lowered.perSecond).toBeLessThanOrEqual(LOWER);
    expect(lowered.throttled).toBeLessThanOrEqual(0.05);
  }, 120_000);
});
