// What Moleculer's ServiceSchema type lacks but its mixins read: moleculer-db's adapter and
// model, and @moleculer/channels' channel handlers. Declared once here instead of casting at
// every service.
import "moleculer";

declare module "moleculer" {
  interface ServiceBroker {
    /** Added by @moleculer/channels' middleware. */
    sendToChannel(channelName: string, payload: unknown, opts?: Record<string, unknown>): Promise<void>;
  }
  namespace Service {
    interface ChannelHandlerSchema {
      group?: string;
      maxInFlight?: number;
      maxRetries?: number;
      context?: boolean;
      /** The NATS adapter's per-channel overrides (e.g. the consumer's ack_wait). */
      nats?: { consumerOptions?: Record<string, unknown>; streamConfig?: Record<string, unknown> };
      handler: (payload: any, raw?: unknown) => Promise<unknown>;
    }
    interface ActionSchema {
      /** Read by Moleculer's timeout middleware (0: no timeout); missing from its typings. */
      timeout?: number;
    }
    interface ServiceSchema {
      adapter?: unknown;
      model?: unknown;
      channels?: Record<string, ChannelHandlerSchema>;
    }
  }
}
