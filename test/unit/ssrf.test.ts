import net from "node:net";
import os from "node:os";
import { Agent, request } from "undici";
import { loadConfig, parseAllowHost } from "../../lib/platform/config";
import { TargetNotAllowedError, ValidationError } from "../../lib/platform/errors";
import {
  assertPublicTarget,
  CrawlTargetPolicy,
  guardedConnector,
  guardedLookup,
  isPrivateAddress,
  type Lookup,
} from "../../lib/crawl/ssrf";

// Any IPv4 or IPv6 address in a text: a refusal must contain none.
const ADDRESS = /\b\d{1,3}(\.\d{1,3}){3}\b|[0-9a-f]*:[0-9a-f]*:[0-9a-f:.]*/i;

const resolving =
  (table: Record<string, string[]>): Lookup =>
  async (host) => {
    const addrs = table[host];
    if (!addrs) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return addrs.map((address) => ({ address }));
  };

/** A policy as CRAWL_ALLOW_HOSTS spells its entries. */
const policyOf = (allow: string[], more: Partial<ConstructorParameters<typeof CrawlTargetPolicy>[0]> = {}) =>
  new CrawlTargetPolicy({ allowHosts: allow.map(parseAllowHost), lookup: resolving({}), ...more });

const refusal = (url: string, policy: CrawlTargetPolicy) =>
  assertPublicTarget(url, policy).then(
    () => null,
    (e: unknown) => e,
  );

describe("isPrivateAddress", () => {
  it.each([
    "0.0.0.0",
    "0.255.1.2",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.8.9.10",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "[::1]",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "febf::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "0:0:0:0:0:ffff:7f00:1",
    "::FFFF:A9FE:A9FE",
    "::ffff:10.1.2.3",
  ])("%s is private", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each([
    "::127.0.0.1", // IPv4-compatible
    "::2",
    "::ffff:0:7f00:1", // IPv4-translated
    "64:ff9b::7f00:1", // NAT64
    "64:ff9b:1::a00:1",
    "2002:7f00:1::1", // 6to4
    "2001:0:4136:e378::1", // Teredo
    "fec0::1", // deprecated site-local
    "100::1", // discard prefix
  ])("%s (an IPv6 form that embeds or reaches IPv4, or is reserved) is refused", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "192.169.0.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "::ffff:101:101",
  ])("%s is public", (ip) => {
    expect(isPrivateAddress(ip)).toBe(false);
  });

  it.each(["", "example.com", "256.1.1.1", "1.2.3", "::g", "::ffff:999.1.1.1"])("refuses invalid input %j", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });
});

describe("CrawlTargetPolicy.isAllowListed", () => {
  it("matches host names case-insensitively and exactly", () => {
    const p = policyOf(["Intranet.Local"]);
    expect(p.isAllowListed("intranet.local", 80)).toBe(true);
    expect(p.isAllowListed("INTRANET.local", 80)).toBe(true);
    expect(p.isAllowListed("a.intranet.local", 80)).toBe(false);
    expect(policyOf([]).isAllowListed("intranet.local", 80)).toBe(false);
  });

  it("a bare host means every port; host:port only that port", () => {
    const bare = policyOf(["intranet.local"]);
    expect([1, 80, 443, 8443, 65535].every((port) => bare.isAllowListed("intranet.local", port))).toBe(true);
    const ported = policyOf(["intranet.local:8443", "127.0.0.1:8080"]);
    expect(ported.isAllowListed("intranet.local", 8443)).toBe(true);
    expect(ported.isAllowListed("intranet.local", 443)).toBe(false);
    expect(ported.isAllowListed("127.0.0.1", 8080)).toBe(true);
    expect(ported.isAllowListed("127.0.0.1", 8081)).toBe(false);
  });

  it("IPv6: with or without brackets, any spelling of the address", () => {
    expect(policyOf(["::1"]).isAllowListed("[::1]", 3000)).toBe(true);
    expect(policyOf(["[::1]"]).isAllowListed("[::1]", 3000)).toBe(true);
    expect(policyOf(["[0:0::1]"]).isAllowListed("[::1]", 3000)).toBe(true);
    expect(policyOf(["[::1]:8080"]).isAllowListed("[::1]", 8080)).toBe(true);
    expect(policyOf(["[::1]:8080"]).isAllowListed("[::1]", 8081)).toBe(false);
    expect(policyOf(["::1"]).isAllowListed("[::2]", 80)).toBe(false);
  });
});

describe("assertPublicTarget", () => {
  it("passes when every address is public", async () => {
    const p = policyOf([], { lookup: resolving({ "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"] }) });
    await expect(assertPublicTarget("https://example.com/x", p)).resolves.toBeUndefined();
  });

  it("refuses on any private address among mixed results, without saying which", async () => {
    const p = policyOf([], { lookup: resolving({ "mixed.example": ["8.8.8.8", "10.0.0.5", "127.0.0.1"] }) });
    const err = await refusal("http://mixed.example/", p);
    expect(err).toBeInstanceOf(TargetNotAllowedError);
    expect(err).toMatchObject({ code: 422, type: "TARGET_NOT_ALLOWED" });
    expect((err as TargetNotAllowedError).data).toEqual({ field: "url", host: "mixed.example" });
    expect((err as Error).message).not.toMatch(ADDRESS);
    expect((err as Error).message).not.toContain("10.0.0.5");
  });

  it("the refusal is the same whatever the address (no DNS oracle)", async () => {
    const lookup = resolving({ a: ["10.1.2.3"], b: ["169.254.169.254"], c: ["::1"] });
    const errs = (await Promise.all(["http://a/", "http://b/", "http://c/"].map((u) => refusal(u, policyOf([], { lookup }))))) as Error[];
    expect(new Set(errs.map((e) => e.message)).size).toBe(1);
  });

  it("lets an allow-listed host through on its listed ports only", async () => {
    const p = policyOf(["intranet.local:8443", "127.0.0.1:8080", "[::1]:8080", "localhost"], {
      lookup: resolving({ "intranet.local": ["10.0.0.7"], localhost: ["127.0.0.1", "::1"] }),
    });
    await expect(assertPublicTarget("https://Intranet.Local:8443/", p)).resolves.toBeUndefined();
    await expect(assertPublicTarget("http://127.0.0.1:8080/", p)).resolves.toBeUndefined();
    await expect(assertPublicTarget("http://[::1]:8080/", p)).resolves.toBeUndefined();
    await expect(assertPublicTarget("http://localhost:1234/", p)).resolves.toBeUndefined();
    for (const url of [
      "https://intranet.local/",
      "http://intranet.local:8080/",
      "http://127.0.0.1:8081/",
      "http://127.0.0.1/",
      "http://[::1]:8443/",
      "http://127.0.0.2:8080/",
    ]) {
      expect(await refusal(url, p)).toBeInstanceOf(TargetNotAllowedError);
    }
  });

  it("compares an entry's port with the URL's effective port (80 and 443 when absent)", async () => {
    const p = policyOf(["10.0.0.1:80", "10.0.0.2:443"]);
    await expect(assertPublicTarget("http://10.0.0.1/", p)).resolves.toBeUndefined();
    await expect(assertPublicTarget("http://10.0.0.1:80/", p)).resolves.toBeUndefined();
    expect(await refusal("https://10.0.0.1/", p)).toBeInstanceOf(TargetNotAllowedError);
    await expect(assertPublicTarget("https://10.0.0.2/", p)).resolves.toBeUndefined();
    expect(await refusal("http://10.0.0.2/", p)).toBeInstanceOf(TargetNotAllowedError);
  });

  it("refuses IP literals without a lookup", async () => {
    const lookup = jest.fn(resolving({}));
    const p = policyOf([], { lookup });
    await expect(assertPublicTarget("http://127.0.0.1:3000/", p)).rejects.toMatchObject({
      name: "TargetNotAllowedError",
      data: { host: "127.0.0.1" },
    });
    await expect(assertPublicTarget("http://[::1]/", p)).rejects.toMatchObject({ name: "TargetNotAllowedError", data: { host: "::1" } });
    await expect(assertPublicTarget("http://[::ffff:127.0.0.1]/", p)).rejects.toBeInstanceOf(TargetNotAllowedError);
    // WHATWG URL turns the decimal form into 127.0.0.1 before we see it.
    await expect(assertPublicTarget("http://2130706433/", p)).rejects.toMatchObject({ data: { host: "127.0.0.1" } });
    await expect(assertPublicTarget("http://8.8.8.8/", p)).resolves.toBeUndefined();
    expect(lookup).not.toHaveBeenCalled();
  });

  it("turns a DNS failure into a ValidationError on url", async () => {
    const err = await refusal("https://nowhere.invalid/", policyOf([]));
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toBe('cannot resolve host "nowhere.invalid"');
    expect((err as ValidationError).data).toMatchObject({ field: "url", host: "nowhere.invalid", code: "ENOTFOUND" });
  });

  it("treats an empty lookup result as unresolvable", async () => {
    await expect(assertPublicTarget("https://empty.example/", policyOf([], { lookup: async () => [] }))).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  it("rejects an unparsable URL", async () => {
    await expect(assertPublicTarget("not a url", policyOf([]))).rejects.toMatchObject({ name: "ValidationError", data: { field: "url" } });
  });
});

describe("Sluice's own ports and servers are never crawlable", () => {
  const lookup = resolving({
    localhost: ["127.0.0.1", "::1"],
    "intranet.local": ["10.0.0.7"],
    "db.internal": ["10.0.0.9"],
    "public.example": ["93.184.215.14"],
    "nats-host": ["192.168.5.5"],
  });
  const config = loadConfig({
    PORT: "3000",
    METRICS_PORT: "3030",
    DATABASE_URL: "postgres://u@db.internal/sluice",
    REDIS_URL: "redis://127.0.0.1:6380",
    TRANSPORTER: "nats://NATS-host:4333,nats://[::1]",
    CRAWL_ALLOW_HOSTS: "127.0.0.1,[::1],localhost,intranet.local,db.internal,10.0.0.9,192.168.5.5",
  });
  const policy = CrawlTargetPolicy.fromConfig(config, () => [41234], lookup);

  it.each([
    "http://127.0.0.1:3000/",
    "http://127.0.0.1:3030/metrics",
    "http://[::1]:3000/",
    "http://localhost:3030/",
    "http://127.0.0.5:3000/",
    "http://intranet.local:3000/",
    // The port this process listens on although PORT is 0 in its config.
    "http://localhost:41234/",
  ])("the API and metrics ports on a private address, allow-listed or not: %s", async (url) => {
    const err = await refusal(url, policy);
    expect(err).toBeInstanceOf(TargetNotAllowedError);
    expect((err as Error).message).not.toMatch(ADDRESS);
  });

  it.each([
    // DATABASE_URL without a port: 5432, by name and by the address the name resolves to.
    "http://db.internal:5432/",
    "http://10.0.0.9:5432/",
    "http://127.0.0.1:6380/",
    // Any name or address of this machine reaches a loopback server.
    "http://localhost:6380/",
    "http://[::1]:6380/",
    "http://nats-host:4333/",
    "http://192.168.5.5:4333/",
    "http://localhost:4222/",
  ])("the configured servers, however the target reaches them: %s", async (url) => {
    expect(await refusal(url, policy)).toBeInstanceOf(TargetNotAllowedError);
  });

  it.each([
    "http://127.0.0.1:8080/",
    "http://localhost:5432/",
    "http://10.0.0.9:8080/",
    "http://db.internal:8080/",
    "http://public.example:3000/",
    "http://intranet.local:6380/",
  ])("other ports of the same hosts, and the same ports elsewhere, follow the ordinary rules: %s", async (url) => {
    await expect(assertPublicTarget(url, policy)).resolves.toBeUndefined();
  });
});

describe("Sluice's own ports on this machine's public addresses", () => {
  // A public address of one of this machine's interfaces, and a name for it.
  const own = "203.0.113.7";
  const policy = new CrawlTargetPolicy({
    allowHosts: [],
    ownPorts: [3000, 3030],
    listeningPorts: () => [41234],
    localAddresses: () => ["127.0.0.1", "::1", own, "2001:db8::7", "fe80::1%eth0"],
    lookup: resolving({ "me.example": [own], "me6.example": ["2001:DB8:0:0:0:0:0:7"], "other.example": ["203.0.113.8"] }),
  });

  it.each([
    `http://${own}:3000/`,
    `http://${own}:3030/metrics`,
    `http://${own}:41234/`,
    "http://me.example:3000/",
    "http://[2001:db8::7]:3000/",
    // Another spelling of the same address, through a name.
    "http://me6.example:3030/",
  ])("refuses %s, without saying why or where", async (url) => {
    const err = await refusal(url, policy);
    expect(err).toBeInstanceOf(TargetNotAllowedError);
    expect((err as Error).message).not.toMatch(ADDRESS);
  });

  it.each([`http://${own}:8080/`, "http://me.example/", "http://other.example:3000/", "http://[2001:db8::8]:3000/"])(
    "other ports of this machine, and the same ports elsewhere, follow the ordinary rules: %s",
    async (url) => {
      await expect(assertPublicTarget(url, policy)).resolves.toBeUndefined();
    },
  );

  it("reads the interfaces at each check (one that comes up later counts)", async () => {
    const addresses: string[] = [];
    const later = new CrawlTargetPolicy({ allowHosts: [], ownPorts: [3000], localAddresses: () => addresses });
    await expect(assertPublicTarget(`http://${own}:3000/`, later)).resolves.toBeUndefined();
    addresses.push(own);
    expect(await refusal(`http://${own}:3000/`, later)).toBeInstanceOf(TargetNotAllowedError);
  });

  it("by default, every address of the real interfaces (os.networkInterfaces()) on an own port", async () => {
    const real = new CrawlTargetPolicy({ allowHosts: [parseAllowHost("127.0.0.1")], ownPorts: [3000] });
    const literals = Object.values(os.networkInterfaces())
      .flatMap((list) => list ?? [])
      .map((i) => (i.family === "IPv6" ? `[${i.address.split("%")[0]}]` : i.address));
    expect(literals.length).toBeGreaterThan(0);
    for (const host of literals)
      expect([host, await refusal(`http://${host}:3000/`, real)]).toEqual([host, expect.any(TargetNotAllowedError)]);
  });
});

describe("guardedLookup (connect-time check against DNS rebinding)", () => {
  const resolve = (allow: string[], host: string, port: number, all = false) =>
    new Promise<{ err: unknown; address: unknown }>((done) =>
      guardedLookup(policyOf(allow), port)(host, { all }, (err, address) => done({ err, address })),
    );

  it("refuses a name that resolves to loopback unless host (and port) are allowed", async () => {
    const refused = await resolve([], "localhost", 80);
    expect(refused.err).toBeInstanceOf(TargetNotAllowedError);
    expect(String((refused.err as Error).message)).not.toMatch(ADDRESS);
    const allowed = await resolve(["localhost"], "localhost", 80);
    expect(allowed.err).toBeNull();
    expect(String(allowed.address)).toMatch(/^(127\.0\.0\.1|::1)$/);
    const all = await resolve(["localhost"], "localhost", 80, true);
    expect(Array.isArray(all.address)).toBe(true);
    expect((await resolve(["localhost:8080"], "localhost", 8080)).err).toBeNull();
    expect((await resolve(["localhost:8080"], "localhost", 8081)).err).toBeInstanceOf(TargetNotAllowedError);
  });
});

describe("guardedConnector (undici's sockets go through the policy with their port)", () => {
  let server: net.Server;
  let port: number;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  beforeAll(async () => {
    server = net.createServer((socket) => {
      connections++;
      sockets.add(socket);
      socket.end("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  const get = async (policy: CrawlTargetPolicy) => {
    const agent = new Agent({ connect: guardedConnector(policy) });
    try {
      // By name, so that the connection resolves it: IP literals are checked before the fetch only.
      const res = await request(`http://localhost:${port}/`, { dispatcher: agent });
      await res.body.dump();
      return res.statusCode;
    } catch (err) {
      return err;
    } finally {
      await agent.close();
    }
  };

  it("connects where host and port are allowed, and refuses before connecting where not", async () => {
    // localhost may resolve to ::1 first; the server listens on 127.0.0.1 only.
    const allowed = await get(new CrawlTargetPolicy({ allowHosts: [parseAllowHost(`localhost:${port}`)] }));
    expect(allowed === 204 || (allowed as { code?: string }).code === "ECONNREFUSED").toBe(true);
    const before = connections;
    for (const policy of [
      new CrawlTargetPolicy({ allowHosts: [] }),
      new CrawlTargetPolicy({ allowHosts: [parseAllowHost(`localhost:${port + 1}`)] }),
      new CrawlTargetPolicy({ allowHosts: [parseAllowHost("localhost")], ownPorts: [port] }),
    ]) {
      const err = await get(policy);
      expect(err).toMatchObject({ name: "TargetNotAllowedError" });
    }
    expect(connections).toBe(before);
  });
});
