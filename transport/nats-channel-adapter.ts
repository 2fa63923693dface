// @moleculer/channels' NATS adapter, made safe for nodes that start together. The first
// subscriber of a group creates its durable JetStream consumer with its own deliver subject;
// when two nodes find no consumer at the same moment, the second create is refused with
// "consumer name already in use" and the adapter throws, which stops that node's boot (CI saw
// an ingestor die this way). A second try finds the consumer and binds to it as a queue member.
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
}

export class NatsChannelAdapter extends (Adapters.NATS as unknown as new (opts?: object) => NatsLike) {
  override async subscribe(chan: Chan): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await super.subscribe(chan);
      } catch (err) {
        const code = (err as { api_error?: { err_code?: number } }).api_error?.err_code;
        if (code !== CONSUMER_NAME_IN_USE || attempt === ATTEMPTS) throw err;
        this.logger.warn(`Another node created the '${chan.group}' consumer of '${chan.name}' at the same time; subscribing again (attempt ${attempt + 1}).`);
        // The failed try registered the channel's in-flight list; the next one registers it anew.
        this.activeMessages.delete(chan.id);
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt + Math.random() * 100));
      }
    }
  }
}
