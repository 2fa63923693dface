// fetchPage and compressed bodies (issue 13): it offers gzip, deflate and br, decodes what comes
// back, and holds the body cap against the decoded bytes, so a decompression bomb fails fast and
// small instead of filling memory.
import http from "node:http";
import type net from "node:net";
import { randomBytes } from "node:crypto";
import zlib from "node:zlib";
import { Agent } from "undici";
import { fetchPage, type FetchOptions } from "../../lib/crawl/fetch-page";
import { CrawlTargetPolicy, guardedConnector } from "../../lib/crawl/ssrf";

const MAX_BYTES = 1024 * 1024;
const HTML = `<!doctype html><title>Encoded</title><p>${"Grüße, ".repeat(500)}</p>`;
const ZEROS = Buffer.alloc(1024 * 1024);

// A gzip body may hold several members, decoded one after the other: 100 members of 1 MiB of
// zeros make a 100 MiB body out of ~100 KiB on the wire, without compressing 100 MiB here.
const GZIP_MEMBER_OF_ZEROS = zlib.gzipSync(ZEROS);
const GZIP_BOMB = Buffer.concat(Array.from({ length: 100 }, () => GZIP_MEMBER_OF_ZEROS));
// A full flush ends the output on a byte boundary with nothing left pending, so copies of it
// chain into one raw deflate stream that never ends.
const RAW_DEFLATE_OF_ZEROS = zlib.deflateRawSync(ZEROS, { finishFlush: zlib.constants.Z_FULL_FLUSH });

/** A page of exactly `size` bytes. */
const pageOf = (size: number) => Buffer.concat([Buffer.from("<!doctype html>"), Buffer.alloc(size - 15, "a")]);

interface Served {
  /** Content-Encoding to send, if any. */
  encoding?: string;
  body: Buffer;
  contentType?: string;
}

const corrupted = (data: Buffer) => {
  const copy = Buffer.from(data);
  for (let i = Math.floor(copy.length / 3); i < copy.length - 10; i += 7) copy[i] = (copy[i] ?? 0) ^ 0x5a;
  return copy;
};

const ROUTES: Record<string, () => Served> = {
  "/plain": () => ({ body: Buffer.from(HTML) }),
  "/identity": () => ({ encoding: "identity", body: Buffer.from(HTML) }),
  "/gzip": () => ({ encoding: "gzip", body: zlib.gzipSync(HTML) }),
  "/x-gzip": () => ({ encoding: "x-gzip", body: zlib.gzipSync(HTML) }),
  "/gzip-upper": () => ({ encoding: "GZIP", body: zlib.gzipSync(HTML) }),
  "/deflate": () => ({ encoding: "deflate", body: zlib.deflateSync(HTML) }),
  "/deflate-raw": () => ({ encoding: "deflate", body: zlib.deflateRawSync(HTML) }),
  "/br": () => ({ encoding: "br", body: zlib.brotliCompressSync(HTML) }),
  // Listed in the order applied: gzip first, then br.
  "/gzip-br": () => ({ encoding: "gzip, br", body: zlib.brotliCompressSync(zlib.gzipSync(HTML)) }),
  "/deflate-raw-gzip": () => ({ encoding: "deflate, gzip", body: zlib.gzipSync(zlib.deflateRawSync(HTML)) }),
  "/robots.txt": () => ({ encoding: "gzip", body: zlib.gzipSync("User-agent: *\nDisallow: /private\n"), contentType: "text/plain" }),
  "/empty-gzip": () => ({ encoding: "gzip", body: Buffer.alloc(0) }),
  "/at-cap": () => ({ encoding: "gzip", body: zlib.gzipSync(pageOf(MAX_BYTES)) }),
  "/over-cap": () => ({ encoding: "gzip", body: zlib.gzipSync(pageOf(MAX_BYTES + 1)) }),
  "/deflate-over-cap": () => ({ encoding: "deflate", body: zlib.deflateSync(pageOf(MAX_BYTES + 1)) }),
  "/br-over-cap": () => ({ encoding: "br", body: zlib.brotliCompressSync(pageOf(MAX_BYTES + 1)) }),
  // Incompressible: gzip makes it a little longer than the cap on the wire, while it decodes to the cap.
  "/random-at-cap": () => ({ encoding: "gzip", body: zlib.gzipSync(Buffer.concat([pageOf(15), randomBytes(MAX_BYTES - 15)])) }),
  "/identity-over-cap": () => ({ body: pageOf(MAX_BYTES + 1) }),
  "/gzip-bomb": () => ({ encoding: "gzip", body: GZIP_BOMB }),
  "/corrupt-gzip": () => ({ encoding: "gzip", body: corrupted(zlib.gzipSync(HTML)) }),
  "/truncated-gzip": () => {
    const whole = zlib.gzipSync(HTML);
    return { encoding: "gzip", body: whole.subarray(0, whole.length >> 1) };
  },
  "/corrupt-deflate": () => ({ encoding: "deflate", body: corrupted(zlib.deflateSync(HTML)) }),
  "/corrupt-br": () => ({ encoding: "br", body: Buffer.from("this is not brotli, whatever the header says") }),
  "/zstd": () => ({ encoding: "zstd", body: Buffer.from("(pretend zstd)") }),
  "/gzip-compress": () => ({ encoding: "gzip, compress", body: Buffer.from("(pretend compress)") }),
  "/too-many": () => ({ encoding: "gzip, gzip, gzip, gzip", body: zlib.gzipSync(zlib.gzipSync(zlib.gzipSync(zlib.gzipSync(HTML)))) }),
};

/** Bodies written until the client hangs up: the chunk again and again. */
const ENDLESS_BOMBS: Record<string, { encoding: string; chunk: Buffer }> = {
  "/endless-gzip-bomb": { encoding: "gzip", chunk: GZIP_MEMBER_OF_ZEROS },
  "/endless-deflate-bomb": { encoding: "deflate", chunk: RAW_DEFLATE_OF_ZEROS },
};

/** Bodies that decode to more than the cap and then stall before their end. */
const STALLED_OVER_CAP: Record<string, { encoding: string; body: Buffer }> = {
  "/stalled-over-cap-gzip": { encoding: "gzip", body: zlib.gzipSync(pageOf(2 * MAX_BYTES)) },
  "/stalled-over-cap-deflate": { encoding: "deflate", body: zlib.deflateSync(pageOf(2 * MAX_BYTES)) },
  "/stalled-over-cap-deflate-raw": { encoding: "deflate", body: zlib.deflateRawSync(pageOf(2 * MAX_BYTES)) },
};

interface Seen {
  path: string;
  acceptEncoding: string | undefined;
  /** The client's port: the same one twice means the connection was reused. */
  clientPort: number | undefined;
}

async function serve() {
  const seen: Seen[] = [];
  /** Bytes written by the endless bombs, and whether the client hung up on them. */
  const endless = { written: 0, closed: false };
  const server = http.createServer((req, res) => {
    const path = req.url ?? "/";
    seen.push({ path, acceptEncoding: req.headers["accept-encoding"], clientPort: req.socket.remotePort });
    const cut = /^\/(stalled|reset)-(gzip|deflate|br)$/.exec(path);
    if (cut) {
      const [, how, encoding] = cut;
      const whole = ROUTES[`/${encoding}`]!().body;
      res.writeHead(200, { "content-type": "text/html", "content-encoding": encoding, "content-length": whole.length });
      // Half the body, then nothing more (stalled), or the connection dropped (reset).
      res.write(whole.subarray(0, whole.length >> 1), () => {
        if (how === "reset") res.socket?.destroy();
      });
      return;
    }
    const stalledOverCap = STALLED_OVER_CAP[path];
    if (stalledOverCap) {
      res.writeHead(200, { "content-type": "text/html", "content-encoding": stalledOverCap.encoding });
      // All but the last few bytes: by then the decoder is past the cap, and the rest never comes.
      res.write(stalledOverCap.body.subarray(0, -8));
      return;
    }
    const bomb = ENDLESS_BOMBS[path];
    if (bomb) {
      const { encoding, chunk } = bomb;
      res.writeHead(200, { "content-type": "text/html", "content-encoding": encoding });
      res.on("close", () => (endless.closed = true));
      const pump = () => {
        while (!res.destroyed) {
          endless.written += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
      };
      pump();
      return;
    }
    const route = ROUTES[path];
    if (!route) return void res.writeHead(404, { "content-type": "text/plain" }).end();
    const { encoding, body, contentType } = route();
    res.writeHead(200, {
      "content-type": contentType ?? "text/html; charset=utf-8",
      "content-length": body.length,
      ...(encoding !== undefined ? { "content-encoding": encoding } : {}),
    });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    seen,
    endless,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("fetchPage with compressed bodies", () => {
  const policy = new CrawlTargetPolicy({ allowHosts: [{ host: "127.0.0.1", port: null }] });
  let site: Awaited<ReturnType<typeof serve>>;
  // As the crawler does it: one agent, connecting through the SSRF guard, keeping connections alive.
  let agent: Agent;
  const options = (more: Partial<FetchOptions> = {}): FetchOptions => ({
    timeoutMs: 5_000,
    maxBytes: MAX_BYTES,
    maxRedirects: 3,
    policy,
    dispatcher: agent,
    ...more,
  });
  const fetch = (path: string, more?: Partial<FetchOptions>) => fetchPage(site.url(path), options(more));

  beforeAll(async () => {
    site = await serve();
    agent = new Agent({ connections: 1, keepAliveTimeout: 4_000, connect: guardedConnector(policy) });
  });
  afterAll(async () => {
    await agent.close();
    await site.close();
  });

  it("offers gzip, deflate and br on every request, robots.txt's included", async () => {
    site.seen.length = 0;
    await fetch("/plain");
    const robots = await fetch("/robots.txt", { accept: () => true, readRedirected: true });
    expect(robots).toMatchObject({ kind: "ok", body: "User-agent: *\nDisallow: /private\n" });
    expect(site.seen.map((s) => s.acceptEncoding)).toEqual(["gzip, deflate, br", "gzip, deflate, br"]);
  });

  it.each(["/plain", "/identity", "/gzip", "/x-gzip", "/gzip-upper", "/deflate", "/deflate-raw", "/br", "/gzip-br", "/deflate-raw-gzip"])(
    "decodes %s to the page as sent",
    async (path) => {
      const outcome = await fetch(path);
      const htmlBytes = Buffer.byteLength(HTML);
      expect(outcome).toMatchObject({ kind: "ok", status: 200, body: HTML, bytes: htmlBytes });
      if (outcome.kind !== "ok") return;
      const encoded = path !== "/plain" && path !== "/identity";
      // Repeated prose compresses well; identity comes as it is.
      if (encoded) expect(outcome.wireBytes).toBeLessThan(htmlBytes / 4);
      else expect(outcome.wireBytes).toBe(htmlBytes);
    },
  );

  it("reads an empty body as empty whatever its Content-Encoding says", async () => {
    expect(await fetch("/empty-gzip")).toMatchObject({ kind: "ok", body: "", bytes: 0, wireBytes: 0 });
  });

  it("holds the cap against the decoded bytes: up to it is read, one byte more fails", async () => {
    const atCap = await fetch("/at-cap");
    expect(atCap).toMatchObject({ kind: "ok", bytes: MAX_BYTES });
    expect(atCap.kind === "ok" && atCap.wireBytes).toBeLessThan(MAX_BYTES / 100);
    for (const path of ["/over-cap", "/deflate-over-cap", "/br-over-cap"]) {
      expect(await fetch(path)).toEqual({ kind: "failed", reason: `body exceeds ${MAX_BYTES} bytes`, status: 200 });
    }
  });

  it("does not hold a compressed body's Content-Length against the cap, which counts decoded bytes", async () => {
    const outcome = await fetch("/random-at-cap");
    expect(outcome).toMatchObject({ kind: "ok", bytes: MAX_BYTES });
    expect(outcome.kind === "ok" && outcome.wireBytes).toBeGreaterThan(MAX_BYTES);
    // Unencoded, Content-Length is the body's size and is refused before reading.
    expect(await fetch("/identity-over-cap")).toEqual({
      kind: "failed",
      reason: `body of ${MAX_BYTES + 1} bytes exceeds ${MAX_BYTES}`,
      status: 200,
    });
  });

  /** The outcome of fetching path, how long it took, and how far RSS rose meanwhile (sampled every ms). */
  const measured = async (path: string) => {
    const rssBefore = process.memoryUsage.rss();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 1);
    const started = performance.now();
    try {
      const outcome = await fetch(path);
      const elapsedMs = performance.now() - started;
      return { outcome, elapsedMs, rssGrowth: Math.max(rssPeak, process.memoryUsage.rss()) - rssBefore };
    } finally {
      clearInterval(sampler);
    }
  };

  it("fails a gzip bomb fast, naming the cap, without decoding it into memory", async () => {
    const { outcome, elapsedMs, rssGrowth } = await measured("/gzip-bomb");
    expect(outcome).toEqual({ kind: "failed", reason: `body exceeds ${MAX_BYTES} bytes`, status: 200 });
    expect(elapsedMs).toBeLessThan(1_000);
    // The body decodes to 100 MiB; reading it whole would show here.
    expect(rssGrowth).toBeLessThan(48 * 1024 * 1024);
  });

  it.each(["/endless-gzip-bomb", "/endless-deflate-bomb"])("hangs up on %s, which would never end", async (path) => {
    site.endless.closed = false;
    site.endless.written = 0;
    const { outcome, elapsedMs, rssGrowth } = await measured(path);
    expect(outcome).toEqual({ kind: "failed", reason: `body exceeds ${MAX_BYTES} bytes`, status: 200 });
    expect(elapsedMs).toBeLessThan(1_000);
    expect(rssGrowth).toBeLessThan(48 * 1024 * 1024);
    await waitUntil(() => site.endless.closed);
    // At ~1000:1, what was sent before the hang-up stays near cap / 1000 plus the sockets' buffers.
    expect(site.endless.written).toBeLessThan(32 * 1024 * 1024);
  });

  it.each(Object.keys(STALLED_OVER_CAP))("fails %s at the cap without waiting for the rest", async (path) => {
    const started = performance.now();
    expect(await fetch(path)).toEqual({ kind: "failed", reason: `body exceeds ${MAX_BYTES} bytes`, status: 200 });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it.each([
    ["/corrupt-gzip", "bad gzip body"],
    ["/truncated-gzip", "bad gzip body"],
    ["/corrupt-deflate", "bad deflate body"],
    ["/corrupt-br", "bad br body"],
  ])("fails %s with a reason", async (path, reason) => {
    expect(await fetch(path)).toEqual({ kind: "failed", reason, status: 200 });
  });

  it.each(["gzip", "deflate", "br"])(
    "tells a failing connection from bad data: a stalled or cut-off %s body is the wire's fault",
    async (coding) => {
      expect(await fetch(`/stalled-${coding}`, { timeoutMs: 300 })).toEqual({ kind: "failed", reason: "timed out after 300 ms" });
      const reset = await fetch(`/reset-${coding}`);
      expect(reset.kind).toBe("failed");
      expect(reset.kind === "failed" && reset.reason).not.toMatch(/^bad /);
    },
  );

  it.each([
    ["/zstd", 'unsupported content encoding "zstd"'],
    ["/gzip-compress", 'unsupported content encoding "compress"'],
    ["/too-many", "more than 3 content encodings"],
  ])("fails %s without decoding it", async (path, reason) => {
    expect(await fetch(path)).toEqual({ kind: "failed", reason, status: 200 });
  });

  it("fetches again from the same server after each kind of failure", async () => {
    for (const failing of ["/gzip-bomb", "/corrupt-gzip", "/zstd", "/identity-over-cap"]) {
      expect(await fetch(failing)).toMatchObject({ kind: "failed" });
      expect(await fetch("/gzip")).toMatchObject({ kind: "ok", body: HTML });
    }
  });

  it("keeps the connection alive when it refuses a small body unread", async () => {
    await fetch("/gzip");
    site.seen.length = 0;
    expect(await fetch("/zstd")).toMatchObject({ kind: "failed" });
    expect(await fetch("/gzip")).toMatchObject({ kind: "ok" });
    const [refused, next] = site.seen;
    expect(next?.clientPort).toBe(refused?.clientPort);
  });
});

async function waitUntil(done: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
