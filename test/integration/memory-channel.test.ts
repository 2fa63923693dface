// The embedded mode's channel must neither drop a burst nor lose a message whose handler failed.
import { ServiceBroker } from "moleculer";
import { channelsMiddleware } from "../../moleculer.config";
import { MemoryChannelAdapter } from "../../transport/memory-channel-adapter";
import { waitFor } from "../support/env";

describe("MemoryChannelAdapter", () => {
  let broker: ServiceBroker;
  const adapter = new MemoryChannelAdapter({ maxRetries: 5 });
  const handled = new Map<number, number>();
  let running = 0;
  let peak = 0;

  beforeAll(async () => {
    broker = new ServiceBroker({ logger: false, middlewares: [channelsMiddleware(adapter)] });
    broker.createService({
      name: "sink",
      channels: {
        work: {
          maxInFlight: 10,
          async handler(payload: { n: number }) {
            running++;
            peak = Math.max(peak, running);
            await new Promise((r) => setImmediate(r));
            running--;
            // Every third message fails on its first delivery.
            const seen = handled.get(payload.n) ?? 0;
            handled.set(payload.n, seen + 1);
            if (payload.n % 3 === 0 && seen === 0) throw new Error("transient");
          },
        },
      },
    });
    await broker.start();
  });
  afterAll(() => broker.stop());

  it("delivers all of a 5,000-message burst, retries failures, and bounds concurrency", async () => {
    await Promise.all(Array.from({ length: 5000 }, (_, n) => broker.sendToChannel("work", { n })));
    await waitFor(() => (adapter.pending() === 0 ? true : undefined), 20_000, "the queue to drain");
    expect(handled.size).toBe(5000);
    for (let n = 0; n < 5000; n++) expect(handled.get(n)).toBe(n % 3 === 0 ? 2 : 1);
    expect(peak).toBeLessThanOrEqual(10);
    expect(peak).toBeGreaterThan(1);
  });
});
