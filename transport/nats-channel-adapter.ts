// @moleculer/channels' NATS adapter, made safe for nodes that start together. The first
// subscriber of a group creates its durable JetStream consumer with its own deliver subject;
// when two nodes find no consumer at the same moment, the second create is refused with
// "consumer name already in use" and the adapter throws, which stops that node's boot (CI saw
// an ingestor die this way). A second try finds the consumer and binds to it as a queue member.
//
// Publishing, too, must work before any subscriber has run: JetStream refuses a subject no
// stream holds (a new namespace, no worker started yet), and the stock adapter logs an ERROR and
// throws. Here each channel's stream is created before its first publish, as a subscriber would
// create it, so work can be queued before any worker has ever started.
import { Adapters } from "@moleculer/channels";

// JetStream's JSConsumerNameExistErr.
const CONSUMER_NAME_IN_USE = 10013;
const ATTEMPTS = 5;

interface Chan {
  id: string;
  name: string;
  group: string;
}

interface NatsLike {
  activeMessages: Map<string, unknown>;
  logger: { warn(...args: unknown[]): void };
  subscribe(chan: Chan): Promise<void>;
  publish(channelName: string, payload: unknown, opts?: object): Promise<void>;
  createStream(name: string, subjects: string[], opts: object): Promise<unknown>;
}

export class NatsChannelAdapter extends (Adapters.NATS as unknown as new (opts?: object) => NatsLike) {
  /** Channels (prefixed subjects) whose stream this process has made sure of. */
  private readonly streams = new Set<string>();

  override async publish(channelName: string, payload: unknown, opts?: object): Promise<void> {
    if (!this.streams.has(channelName)) {
      // The adapter's own naming: a stream per subject, dots turned into underscores.
      await this.createStream(channelName.split(".").join("_"), [channelName], {});
      this.streams.add(channelName);
    }
    try {
      return await super.publish(channelName, payload, opts);
    } catch (err) {
      // The stream may be gone (deleted, or its creation failed and was only logged): the next
      // publish makes sure of it again.
      this.streams.delete(channelName);
      throw err;
    }
  }

  override async subscribe(chan: Chan): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await super.subscribe(chan);
      } catch (err) {
        const code = (err as { api_error?: { err_code?: number } }).api_error?.err_code;
        if (code !== CONSUMER_NAME_IN_USE || attempt === ATTEMPTS) throw err;
        this.logger.warn(
          `Another node created the '${chan.group}' consumer of '${chan.name}' at the same time; subscribing again (attempt ${attempt + 1}).`,
        );
        // The failed try registered the channel's in-flight list; the next one registers it anew.
        this.activeMessages.delete(chan.id);
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt + Math.random() * 100));
      }
    }
  }
}
