// fetchProfile against a real HTTP server on 127.0.0.1: a body over MAX_UPSTREAM_BODY_BYTES is a
// failed call, cut off while it streams (an endless body ends the call too), never buffered whole;
// and a profile the database could not store is a failed call, not a failed upsert.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fetchProfile, MAX_UPSTREAM_BODY_BYTES } from "../../lib/scheduling/upstream";

const CHUNK = Buffer.alloc(64 * 1024, "x");
// Far more than the cap and the loopback socket buffers could hold between them.
const ENDLESS_LIMIT_BYTES = 512 * 1024 * 1024;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

let server: http.Server;
let base: string;
let handler: Handler;
/** Bytes the last streaming answer wrote before the client went away. */
let streamed = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** A JSON object of exactly `bytes` bytes. */
function jsonOfSize(bytes: number): string {
  const shell = '{"pad":""}';
  return `{"pad":"${"p".repeat(bytes - shell.length)}"}`;
}

/** Writes `{"pad":"xxxx…` until the client closes the connection (or ENDLESS_LIMIT_BYTES). */
function streamForever(status: number): Handler {
  return (_req, res) => {
    streamed = 0;
    res.writeHead(status, { "content-type": "application/json" });
    res.write('{"pad":"');
    const pump = () => {
      while (!res.destroyed && streamed < ENDLESS_LIMIT_BYTES) {
        streamed += CHUNK.length;
        if (!res.write(CHUNK)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  };
}

describe("fetchProfile caps the body it reads", () => {
  it("a profile of exactly the cap is read", async () => {
    const body = jsonOfSize(MAX_UPSTREAM_BODY_BYTES);
    expect(Buffer.byteLength(body)).toBe(MAX_UPSTREAM_BODY_BYTES);
    handler = (_req, res) => res.end(body);
    const out = await fetchProfile(`${base}/users/1`, 5_000);
    expect(out.kind).toBe("ok");
  });

  it("one byte over, declared in Content-Length → failed, unread", async () => {
    handler = (_req, res) => {
      res.setHeader("content-length", String(MAX_UPSTREAM_BODY_BYTES + 1));
      res.end(jsonOfSize(MAX_UPSTREAM_BODY_BYTES + 1));
    };
    expect(await fetchProfile(`${base}/users/1`, 5_000)).toEqual({
      kind: "failed",
      error: `the upstream's answer is over ${MAX_UPSTREAM_BODY_BYTES} bytes`,
    });
  });

  it("one byte over, chunked (no Content-Length) → failed", async () => {
    handler = (_req, res) => {
      const body = jsonOfSize(MAX_UPSTREAM_BODY_BYTES + 1);
      res.write(body.slice(0, 1000));
      res.end(body.slice(1000));
    };
    expect(await fetchProfile(`${base}/users/1`, 5_000)).toMatchObject({ kind: "failed", error: expect.stringContaining("over") });
  });

  it("an endless 200 body → failed once the cap is passed, and the connection is dropped", async () => {
    handler = streamForever(200);
    const started = Date.now();
    const out = await fetchProfile(`${base}/users/1`, 10_000);
    expect(out).toMatchObject({ kind: "failed", error: expect.stringContaining("over") });
    expect(Date.now() - started).toBeLessThan(5_000);
    // The server stopped writing because the client went away, long before its own limit.
    await new Promise((r) => setTimeout(r, 0));
    expect(streamed).toBeLessThan(64 * 1024 * 1024);
  });

  it("an endless 503 body → throttled, its body not read past undici's dump limit", async () => {
    handler = streamForever(503);
    const out = await fetchProfile(`${base}/users/1`, 10_000);
    expect(out).toMatchObject({ kind: "throttled", error: "HTTP 503" });
    expect(streamed).toBeLessThan(64 * 1024 * 1024);
  });

  it.each(['{"name":"a\\u0000b"}', '{"name":"\\ud800"}', '{"k\\u0000":1}'])(
    "a profile the database cannot store (%s) → failed",
    async (body) => {
      handler = (_req, res) => res.end(body);
      expect(await fetchProfile(`${base}/users/1`, 5_000)).toMatchObject({
        kind: "failed",
        error: expect.stringContaining("cannot store"),
      });
    },
  );

  it("JSON nested deeper than a profile can be stored → failed", async () => {
    handler = (_req, res) => res.end(`{"a":${"[".repeat(10_000)}${"]".repeat(10_000)}}`);
    expect(await fetchProfile(`${base}/users/1`, 5_000)).toMatchObject({ kind: "failed", error: expect.stringContaining("nested") });
  });
});
