import { QueueFullError } from "../../lib/platform/errors";
import { Semaphore } from "../../lib/throttle/semaphore";

const tick = () => new Promise((r) => setImmediate(r));

describe("Semaphore (the per-node bulkhead)", () => {
  it("never lets more than `limit` run, and serves waiters in order", async () => {
    const sem = new Semaphore("db", 3, 100);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        sem.run(async () => {
          running++;
          peak = Math.max(peak, running);
          order.push(i);
          await tick();
          running--;
        }),
      ),
    );
    expect(peak).toBe(3);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(sem.stats()).toMatchObject({ limit: 3, running: 0, queued: 0, peakRunning: 3, acquired: 50, rejected: 0 });
  });

  it("rejects at once with a retryable 429 QUEUE_FULL when the queue is full", async () => {
    const sem = new Semaphore("db", 1, 2, 3);
    const held = await sem.acquire();
    const waiting = [sem.acquire(), sem.acquire()];
    let err: unknown;
    try {
      await sem.acquire();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QueueFullError);
    expect(err).toMatchObject({ code: 429, type: "QUEUE_FULL", retryable: true, data: { resource: "db", retryAfterSeconds: 3 } });
    expect(sem.stats()).toMatchObject({ running: 1, queued: 2, rejected: 1 });
    held();
    (await waiting[0]!)();
    (await waiting[1]!)();
    expect(sem.stats()).toMatchObject({ running: 0, queued: 0 });
  });

  it("releasing twice frees one slot only", async () => {
    const sem = new Semaphore("db", 1, 10);
    const release = await sem.acquire();
    release();
    release();
    const a = await sem.acquire();
    let second = false;
    void sem.acquire().then(() => (second = true));
    await tick();
    expect(second).toBe(false);
    a();
    await tick();
    expect(second).toBe(true);
  });

  it("applies a new limit at runtime", async () => {
    const sem = new Semaphore("db", 1, 10);
    const first = await sem.acquire();
    let got = 0;
    const more = [sem.acquire(), sem.acquire()].map((p) => p.then((r) => (got++, r)));
    await tick();
    expect(got).toBe(0);
    sem.setLimit(3);
    await tick();
    expect(got).toBe(2);
    sem.setLimit(1);
    first();
    for (const r of await Promise.all(more)) r();
    expect(sem.stats().running).toBe(0);
  });
});
