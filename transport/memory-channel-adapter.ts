// The embedded mode's durable-channel stand-in. @moleculer/channels' Fake adapter rides on
// events with a bulkhead queue of 100 and no retry: STACK.md saw it drop 892 of 1000 messages
// in a burst. This one keeps an unbounded in-process FIFO per channel, runs at most
// `maxInFlight` handlers at once, and puts a failed message back on the queue until
// `maxRetries` is spent. It is only as durable as the process; the crawl frontier's leases
// cover a crash (the URL is fetched again).
import { Adapters } from "@moleculer/channels";

interface Message {
  payload: unknown;
  headers: Record<string, unknown> | undefined;
  attempts: number;
}

interface Subscription {
  chan: {
    id: string;
    name: string;
    maxInFlight?: number;
    maxRetries?: number;
    handler: (payload: unknown, raw: unknown) => Promise<unknown>;
  };
  queue: Message[];
  inFlight: number;
  stopped: boolean;
}

const DEFAULT_MAX_IN_FLIGHT = 100;
const DEFAULT_MAX_RETRIES = 5;

export class MemoryChannelAdapter extends (Adapters.Base as unknown as new (opts?: object) => BaseLike) {
  private readonly subs = new Map<string, Subscription[]>();
  // Messages published before anyone subscribed (a node publishes from its services' started
  // handlers, before the channels middleware subscribes): handed to the first subscriber.
  private readonly unclaimed = new Map<string, Message[]>();

  async connect(): Promise<void> {
    this.connected = true;
  }

  async disconnect(): Promise<void> {
    this.connected = false;
  }

  async subscribe(chan: Subscription["chan"]): Promise<void> {
    const list = this.subs.get(chan.name) ?? [];
    const sub: Subscription = { chan, queue: this.unclaimed.get(chan.name) ?? [], inFlight: 0, stopped: false };
    this.unclaimed.delete(chan.name);
    list.push(sub);
    this.subs.set(chan.name, list);
    this.pump(sub);
  }

  async unsubscribe(chan: Subscription["chan"]): Promise<void> {
    for (const sub of this.subs.get(chan.name) ?? []) if (sub.chan.id === chan.id) sub.stopped = true;
  }

  async publish(channelName: string, payload: unknown, opts: { headers?: Record<string, unknown> } = {}): Promise<void> {
    const subs = this.subs.get(channelName) ?? [];
    if (subs.length === 0) {
      this.unclaimed.set(channelName, [...(this.unclaimed.get(channelName) ?? []), { payload, headers: opts.headers, attempts: 0 }]);
      return;
    }
    // Like a consumer group: every subscribing group gets its own copy.
    for (const sub of subs) {
      sub.queue.push({ payload, headers: opts.headers, attempts: 0 });
      this.pump(sub);
    }
  }

  /** Messages queued or in flight across all channels; 0 means everything published was handled. */
  pending(): number {
    let n = 0;
    for (const list of this.subs.values()) for (const sub of list) n += sub.queue.length + sub.inFlight;
    return n;
  }

  private pump(sub: Subscription): void {
    const limit = sub.chan.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    while (!sub.stopped && sub.inFlight < limit && sub.queue.length > 0) {
      const msg = sub.queue.shift()!;
      sub.inFlight++;
      msg.attempts++;
      sub.chan
        .handler(msg.payload, msg)
        .catch((err: unknown) => {
          if (msg.attempts <= (sub.chan.maxRetries ?? DEFAULT_MAX_RETRIES)) {
            sub.queue.push(msg);
          } else {
            this.logger.error(`Channel '${sub.chan.name}': message dropped after ${msg.attempts} attempts`, err);
          }
        })
        .finally(() => {
          sub.inFlight--;
          this.pump(sub);
        });
    }
  }
}

// The subset of @moleculer/channels' BaseAdapter this class relies on (the package ships no
// usable class typing for subclassing).
interface BaseLike {
  connected: boolean;
  logger: { error(...args: unknown[]): void };
}
