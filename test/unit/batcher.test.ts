import { Batcher } from "../../lib/platform/batcher";

describe("Batcher", () => {
  it("flushes full batches at once and the rest after maxWaitMs", async () => {
    const batches: number[][] = [];
    const b = new Batcher<number>({ maxSize: 3, maxWaitMs: 20, flush: async (items) => void batches.push(items) });
    const done = Promise.all([1, 2, 3, 4, 5].map((n) => b.add(n)));
    await done;
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it("settles add() only after its batch is flushed, and rejects every item of a failed batch", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number>({ maxSize: 2, maxWaitMs: 1000, flush: () => gate });
    let settled = false;
    const p = b.add(1).then(() => (settled = true));
    void b.add(2);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    release();
    await p;
    expect(settled).toBe(true);

    const failing = new Batcher<number>({ maxSize: 2, maxWaitMs: 5, flush: async () => Promise.reject(new Error("db down")) });
    await expect(Promise.all([failing.add(1), failing.add(2)])).rejects.toThrow("db down");
    await expect(failing.add(3)).rejects.toThrow("db down");
  });

  it("flushes each item of a batch alone when the failure may be one item's, so only that item fails", async () => {
    const flushed: number[][] = [];
    const poison = Object.assign(new Error("index row too big"), { itemFault: true });
    const b = new Batcher<number>({
      maxSize: 3,
      maxWaitMs: 5,
      flush: async (items) => {
        flushed.push(items);
        if (items.includes(2)) throw poison;
      },
      isItemFault: (err) => (err as { itemFault?: boolean }).itemFault === true,
    });
    const results = await Promise.allSettled([b.add(1), b.add(2), b.add(3)]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(flushed).toEqual([[1, 2, 3], [1], [2], [3]]);

    // Any other failure (the database is down) fails the batch as it is, without more calls.
    const calls: number[][] = [];
    const down = new Batcher<number>({
      maxSize: 2,
      maxWaitMs: 5,
      flush: async (items) => {
        calls.push(items);
        throw new Error("db down");
      },
      isItemFault: (err) => (err as { itemFault?: boolean }).itemFault === true,
    });
    await expect(Promise.all([down.add(1), down.add(2)])).rejects.toThrow("db down");
    expect(calls).toEqual([[1, 2]]);
  });

  it("keeps batches bounded under a burst", async () => {
    const sizes: number[] = [];
    const b = new Batcher<number>({ maxSize: 100, maxWaitMs: 5, flush: async (items) => void sizes.push(items.length) });
    await Promise.all(Array.from({ length: 1050 }, (_, i) => b.add(i)));
    expect(sizes.reduce((a, n) => a + n, 0)).toBe(1050);
    expect(Math.max(...sizes)).toBe(100);
  });
});
