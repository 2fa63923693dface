// Nodes that start together on a new namespace race to create the same durable JetStream
// consumer. Every one of them must boot, and the group must get each message once. And work
// sent before any worker has subscribed is kept for the first one.
import { ServiceBroker } from "moleculer";
import { channelsMiddleware, CHANNEL_MAX_RETRIES } from "../../moleculer.config";
import { NatsChannelAdapter } from "../../transport/nats-channel-adapter";
import { describeWithServers, NATS_URL, waitFor } from "../support/env";
import { deleteStreams, uniqueNamespace } from "../support/processes";

const NODES = 6;
const MESSAGES = 60;

describeWithServers(["NATS_URL"], "NATS channels: nodes that start together", () => {
  const namespace = uniqueNamespace();
  const brokers: ServiceBroker[] = [];
  const received: { node: string; n: number }[] = [];

  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.stop()));
    await deleteStreams(NATS_URL!, namespace).catch(() => {});
  });

  it(`all ${NODES} boot and share one consumer: each message handled once`, async () => {
    for (let i = 0; i < NODES; i++) {
      const nodeID = `${namespace}-${i}`;
      const broker = new ServiceBroker({
        nodeID,
        namespace,
        logger: false,
        middlewares: [
          channelsMiddleware(
            new NatsChannelAdapter({
              nats: { url: NATS_URL!, streamConfig: { retention: "workqueue" }, consumerOptions: { config: { deliver_policy: "all" } } },
              maxRetries: CHANNEL_MAX_RETRIES,
            }),
          ),
        ],
      });
      broker.createService({
        name: "worker",
        channels: {
          "sluice.race": { group: "workers", handler: async (msg: { n: number }) => void received.push({ node: nodeID, n: msg.n }) },
        },
      });
      brokers.push(broker);
    }
    // All at once, as pods an autoscaler adds: each finds no consumer and tries to create it.
    await Promise.all(brokers.map((b) => b.start()));

    for (let n = 0; n < MESSAGES; n++) await brokers[n % NODES]!.sendToChannel("sluice.race", { n });
    await waitFor(() => (received.length >= MESSAGES ? true : undefined), 20_000, `${MESSAGES} messages`);
    // A moment for a duplicate delivery to show up, if there were one.
    await new Promise((r) => setTimeout(r, 500));
    expect(received.map((r) => r.n).sort((a, b) => a - b)).toEqual([...Array(MESSAGES).keys()]);
  });

  it("keeps what is sent before any subscriber exists, without an error", async () => {
    const fresh = uniqueNamespace();
    const adapter = () =>
      new NatsChannelAdapter({
        nats: { url: NATS_URL!, streamConfig: { retention: "workqueue" }, consumerOptions: { config: { deliver_policy: "all" } } },
        maxRetries: CHANNEL_MAX_RETRIES,
      });
    const errors = jest.spyOn(console, "error");
    const sender = new ServiceBroker({
      nodeID: `${fresh}-sender`,
      namespace: fresh,
      logLevel: "error",
      middlewares: [channelsMiddleware(adapter())],
    });
    const got: number[] = [];
    const worker = new ServiceBroker({
      nodeID: `${fresh}-worker`,
      namespace: fresh,
      logLevel: "error",
      middlewares: [channelsMiddleware(adapter())],
    });
    worker.createService({
      name: "late",
      channels: { "sluice.early": { group: "late", handler: async (msg: { n: number }) => void got.push(msg.n) } },
    });
    try {
      await sender.start();
      for (let n = 0; n < 5; n++) await sender.sendToChannel("sluice.early", { n });
      await worker.start();
      await waitFor(() => (got.length >= 5 ? true : undefined), 10_000, "the early messages");
      expect(got.sort()).toEqual([0, 1, 2, 3, 4]);
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
      await Promise.all([sender.stop(), worker.stop()]);
      await deleteStreams(NATS_URL!, fresh).catch(() => {});
    }
  });

  it("makes the stream again after it was lost: one publish fails, the next succeeds", async () => {
    const fresh = uniqueNamespace();
    const sender = new ServiceBroker({
      nodeID: `${fresh}-sender`,
      namespace: fresh,
      logger: false,
      middlewares: [channelsMiddleware(new NatsChannelAdapter({ nats: { url: NATS_URL!, streamConfig: { retention: "workqueue" } } }))],
    });
    try {
      await sender.start();
      await sender.sendToChannel("sluice.lost", { n: 1 });
      await deleteStreams(NATS_URL!, fresh);
      await expect(sender.sendToChannel("sluice.lost", { n: 2 })).rejects.toThrow();
      await sender.sendToChannel("sluice.lost", { n: 3 });
    } finally {
      await sender.stop();
      await deleteStreams(NATS_URL!, fresh).catch(() => {});
    }
  });
});
