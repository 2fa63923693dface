// The SSRF guard in the running embedded system: a site on an allow-listed host:port links and
// redirects to targets that are not allowed (another loopback address, another port of the
// allowed address, Sluice's own API and metrics ports). Those servers must see nothing at all.
import http from "node:http";
import net from "node:net";
import type { Sluice } from "../../runtime";
import type { CrawlView } from "../../services/crawls.service";
import { http as call, startEmbedded, waitFor } from "../support/env";
import { isFinished } from "../../fixtures/api-client";

// Any IPv4 or IPv6 address in a text.
const ADDRESS = /\b\d{1,3}(\.\d{1,3}){3}\b|[0-9a-f]*:[0-9a-f]*:[0-9a-f:.]*/i;

/** A TCP server that only counts connections: any request at all would show up here. */
interface Trap {
  port: number;
  connections: number;
  close(): Promise<void>;
}

async function trap(host: string): Promise<Trap> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    t.connections++;
    sockets.add(socket);
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, host, resolve));
  const t: Trap = {
    port: (server.address() as net.AddressInfo).port,
    connections: 0,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return t;
}

/** The site: "/" links to /ok, to each /go/<name> (a 302 to redirects[name]) and straight to each target. */
async function serveSite(redirects: () => Record<string, string>) {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = req.url ?? "/";
    requests.push(path);
    const targets = redirects();
    const go = /^\/go\/([a-z-]+)$/.exec(path)?.[1];
    if (go !== undefined && targets[go]) {
      res.writeHead(302, { location: targets[go] }).end();
    } else if (path === "/" || path === "/ok") {
      const links = ["/ok", ...Object.keys(targets).map((name) => `/go/${name}`), ...Object.values(targets)];
      const body = `<!doctype html><title>${path}</title>${links.map((l) => `<a href="${l}">${l}</a>`).join("\n")}`;
      res.writeHead(200, { "content-type": "text/html" }).end(body);
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("crawl targets that are not allowed", () => {
  let sluice: Sluice;
  let site: Awaited<ReturnType<typeof serveSite>>;
  let otherLoopback: Trap;
  let otherPort: Trap;
  let targets: Record<string, string> = {};

  beforeAll(async () => {
    // Linux answers on all of 127.0.0.0/8.
    otherLoopback = await trap("127.0.0.2");
    otherPort = await trap("127.0.0.1");
    site = await serveSite(() => targets);
    // PORT=0 and METRICS_PORT=0 (the test config): the guard must know the ports picked at start.
    // localhost is listed without a port, i.e. every port of it: Sluice's own ones stay refused.
    sluice = await startEmbedded({ CRAWL_ALLOW_HOSTS: `127.0.0.1:${site.port},localhost` });
    const apiPort = new URL(sluice.apiUrl!).port;
    const metricsPort = new URL(sluice.metricsUrl!).port;
    targets = {
      "other-address": `http://127.0.0.2:${otherLoopback.port}/`,
      "other-port": `http://127.0.0.1:${otherPort.port}/`,
      api: `http://127.0.0.1:${apiPort}/api/health`,
      "api-by-name": `http://localhost:${apiPort}/api/health`,
      metrics: `http://localhost:${metricsPort}/metrics`,
    };
  });
  afterAll(async () => {
    await sluice?.stop();
    await Promise.all([site?.close(), otherLoopback?.close(), otherPort?.close()]);
  });

  it("POST /api/crawls answers 422 TARGET_NOT_ALLOWED, without the address", async () => {
    for (const url of Object.values(targets)) {
      const res = await call(sluice.apiUrl!, "POST", "/api/crawls", { url });
      expect(res.status).toBe(422);
      const hostname = new URL(url).hostname;
      expect(res.body.error).toEqual({
        code: "TARGET_NOT_ALLOWED",
        message: expect.any(String),
        details: { field: "url", host: hostname },
      });
      expect(res.body.error.message).not.toMatch(ADDRESS);
      // A name's answer is never echoed (a literal target is the client's own input).
      if (hostname === "localhost") expect(JSON.stringify(res.body)).not.toMatch(ADDRESS);
    }
    expect(otherLoopback.connections + otherPort.connections).toBe(0);
  });

  it("the crawl finishes, records each refused redirect as skipped without an address, and nothing reaches the targets", async () => {
    const created = await call(sluice.apiUrl!, "POST", "/api/crawls", { url: `${site.url}/` });
    expect(created.status).toBe(202);
    const crawl = await waitFor(
      async () => {
        const { body } = await call(sluice.apiUrl!, "GET", `/api/crawls/${created.body.id}`);
        return isFinished(body.status) ? (body as CrawlView) : undefined;
      },
      60_000,
      "the crawl to finish",
    );
    expect(crawl.status).toBe("succeeded");
    const names = Object.keys(targets);
    expect(crawl.pages).toEqual({ discovered: 2 + names.length, fetched: 2, stored: 2, unchanged: 0, failed: 0, skipped: names.length });

    const [rows] = await sluice.db.query(`SELECT url, state, reason FROM crawl_urls WHERE crawl_id = ${Number(crawl.id)} ORDER BY url`);
    const byPath = new Map((rows as { url: string; state: string; reason: string | null }[]).map((r) => [r.url.replace(site.url, ""), r]));
    // The links straight to other origins are never URLs of the crawl (same-origin rule).
    expect([...byPath.keys()].sort()).toEqual(["/", "/ok", ...names.map((n) => `/go/${n}`)].sort());
    for (const name of names) {
      const row = byPath.get(`/go/${name}`)!;
      expect(row.state).toBe("skipped");
      expect(row.reason).toMatch(/not allowed/);
      expect(row.reason).not.toMatch(ADDRESS);
    }

    expect(otherLoopback.connections).toBe(0);
    expect(otherPort.connections).toBe(0);
    expect([...new Set(site.requests)].sort()).toEqual(["/", "/ok", "/robots.txt", ...names.map((n) => `/go/${n}`)].sort());
  });
});
