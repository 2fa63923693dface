// GET /api/events: Server-Sent Events to every open console. Each api node relays the cluster's
// broadcasts (job updates and progress, throttle and queue changes, crawls finishing, nodes
// joining and leaving) to the clients connected to it. The request guard hands the response
// over once the caller may read: moleculer-web would pipe a stream and log every client that
// leaves as a stream error.
import type { IncomingMessage, ServerResponse } from "node:http";

// A comment line this often keeps proxies from closing an idle stream.
export const SSE_PING_MS = 15_000;
// Clients one node serves at once; past it a new one is told to come back later.
export const MAX_SSE_CLIENTS = 500;
// A client that lets this much pile up unread is dropped (it reconnects, and re-reads).
const MAX_BUFFERED_BYTES = 1024 * 1024;

export class EventFanout {
  private readonly clients = new Set<ServerResponse>();
  private readonly ping: NodeJS.Timeout;

  constructor() {
    this.ping = setInterval(() => this.write(": ping\n\n"), SSE_PING_MS);
    this.ping.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  serve(req: IncomingMessage, res: ServerResponse): void {
    if (this.clients.size >= MAX_SSE_CLIENTS) {
      res.writeHead(503, { "Content-Type": "application/json; charset=utf-8", "Retry-After": "5" });
      res.end(JSON.stringify({ error: { code: "TOO_MANY_STREAMS", message: "this node serves as many event streams as it can; retry" } }));
      return;
    }
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache, no-transform",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    // How long a client waits before it reconnects after the stream ends.
    res.write("retry: 3000\n\n");
    this.clients.add(res);
    const drop = () => this.clients.delete(res);
    req.on("close", drop);
    res.on("close", drop);
  }

  publish(event: string, data: unknown): void {
    if (this.clients.size > 0) this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  close(): void {
    clearInterval(this.ping);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private write(chunk: string): void {
    for (const res of this.clients) {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        this.clients.delete(res);
        res.destroy();
      } else res.write(chunk);
    }
  }
}
