// The frontier's recovery rules, driven directly against the embedded database (no crawler runs).
import { crawlCounts, createCrawl, finishIfDone, getCrawl } from "../../models/crawls";
import { leaseUrls, releaseExpiredLeases } from "../../models/frontier";
import type { Sluice } from "../../runtime";
import { startEmbedded } from "../support/env";

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("crawl frontier", () => {
  let sluice: Sluice;
  beforeAll(async () => {
    sluice = await startEmbedded({ SERVICES: "api" });
  });
  afterAll(() => sluice?.stop());

  it("re-queues a URL whose lease expired, and fails it after the last attempt", async () => {
    const { db } = sluice;
    const { crawl } = await createCrawl(db, "http://127.0.0.1:9/", 10, 1);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const claimed = await leaseUrls(db, 10, "dead-node", 1);
      expect(claimed.map((c) => c.url)).toEqual(["http://127.0.0.1:9/"]);
      await pause(20);
      expect(await releaseExpiredLeases(db, 3)).toBe(1);
    }
    expect(await leaseUrls(db, 10, "dead-node", 1)).toEqual([]);
    expect((await crawlCounts(db, [crawl.id])).get(crawl.id)).toMatchObject({ discovered: 1, failed: 1, queued: 0, fetching: 0 });
    expect(await finishIfDone(db, crawl.id)).toBe("failed");
    expect((await getCrawl(db, crawl.id))?.error).toBe("root URL failed: gave up after 3 attempts");
  });
});
