// The SSRF guard: which crawl targets Sluice may connect to. A target is refused when it
// resolves to a private, loopback or link-local address that CRAWL_ALLOW_HOSTS does not list
// (with the target's port, if the entry has one), and always when it reaches Sluice itself:
// its API and metrics ports on a private address or any address of this machine (its public
// interfaces too), or one of the servers it talks to.
import dnsCallback, { promises as dns, type LookupAddress } from "node:dns";
import { BlockList, isIP } from "node:net";
import os from "node:os";
import { buildConnector } from "undici";
import type { AllowHost, Config } from "../platform/config";
import { TargetNotAllowedError, ValidationError } from "../platform/errors";
import { normalizeUrl } from "./url";

export type Lookup = (host: string) => Promise<{ address: string }[]>;

// The ports a server URL means when it names none.
const DEFAULT_SERVER_PORTS: Readonly<Record<string, number>> = {
  "postgres:": 5432,
  "postgresql:": 5432,
  "redis:": 6379,
  "rediss:": 6379,
  "nats:": 4222,
};

const blocked = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  blocked.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  // Forms that embed or reach an IPv4 address: IPv4-compatible, IPv4-translated, NAT64, 6to4, Teredo.
  ["::", 96],
  ["::ffff:0:0:0", 96],
  ["64:ff9b::", 96],
  ["64:ff9b:1::", 48],
  ["2002::", 16],
  ["2001::", 32],
  // Deprecated site-local, and the discard prefix.
  ["fec0::", 10],
  ["100::", 64],
] as const) {
  blocked.addSubnet(net, prefix, "ipv6");
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

// The addresses that reach this machine wherever it runs; its interfaces' own addresses are
// added at each check (interfaceAddresses). A server listening on all interfaces answers on
// every one of them, so they count as one address when comparing a target with a server.
const loopback = new BlockList();
loopback.addSubnet("127.0.0.0", 8, "ipv4");
loopback.addAddress("0.0.0.0", "ipv4");
loopback.addAddress("::1", "ipv6");
loopback.addAddress("::", "ipv6");

/** The addresses of this machine's network interfaces, public ones included (os.networkInterfaces()). */
export function interfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/** An address in one spelling (IPv6 compressed, lower case, no brackets or zone); null if it is none. */
function canonicalAddress(ip: string): string | null {
  const addr = stripBrackets(ip.trim()).split("%")[0] ?? "";
  const family = isIP(addr);
  if (family === 0) return null;
  return family === 4 ? addr : stripBrackets(new URL(`http://[${addr}]/`).hostname);
}

export function isPrivateAddress(ip: string): boolean {
  const addr = canonicalAddress(ip);
  // Anything we cannot parse is refused rather than trusted.
  if (addr === null) return true;
  // BlockList matches IPv4-mapped IPv6 (::ffff:127.0.0.1, ::ffff:7f00:1, long forms)
  // against the IPv4 rules itself, so the mapped form cannot bypass them.
  return blocked.check(addr, isIP(addr) === 4 ? "ipv4" : "ipv6");
}

/** Whether two addresses reach the same host: equal, or both this machine's (`local` tells those). */
function sameAddress(a: string, b: string, local: (ip: string) => boolean): boolean {
  const x = canonicalAddress(a);
  const y = canonicalAddress(b);
  if (x === null || y === null) return false;
  return x === y || (local(x) && local(y));
}

/** A hostname spelt as WHATWG URL spells it for http: (non-special schemes keep the case). */
function canonicalHost(host: string): string {
  try {
    return new URL(`http://${host}/`).hostname;
  } catch {
    return host.toLowerCase();
  }
}

/** The port a URL connects to: its own, or its scheme's default. */
export function effectivePort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface CrawlTargetPolicyOptions {
  allowHosts: readonly AllowHost[];
  /** Sluice's own ports (API, metrics): refused on every private address and every address of this machine, allow-listed or not. */
  ownPorts?: readonly number[];
  /** Ports this process turned out to listen on (PORT=0 picks one at start): read at each check. */
  listeningPorts?: () => readonly number[];
  /** The servers Sluice talks to (database, Redis, NATS): refused wherever a target reaches one. */
  servers?: readonly HostPort[];
  /** Resolves target names (before a fetch) and server names; the system resolver by default. */
  lookup?: Lookup;
  /** This machine's interface addresses, read at each check (an interface may come up later); interfaceAddresses by default. */
  localAddresses?: () => readonly string[];
}

const systemLookup: Lookup = (host) => dns.lookup(host, { all: true, verbatim: true });

export class CrawlTargetPolicy {
  readonly lookup: Lookup;
  private readonly allowHosts: readonly AllowHost[];
  private readonly ownPorts: readonly number[];
  private readonly listeningPorts: () => readonly number[];
  private readonly servers: readonly HostPort[];
  private readonly localAddresses: () => readonly string[];

  constructor(opts: CrawlTargetPolicyOptions) {
    this.allowHosts = opts.allowHosts;
    // Port 0 is "pick one at start": the real one comes from listeningPorts.
    this.ownPorts = (opts.ownPorts ?? []).filter((p) => p > 0);
    this.listeningPorts = opts.listeningPorts ?? (() => []);
    this.servers = (opts.servers ?? []).map((s) => ({ host: canonicalHost(s.host), port: s.port }));
    this.lookup = opts.lookup ?? systemLookup;
    this.localAddresses = opts.localAddresses ?? interfaceAddresses;
  }

  /** The policy a process with this config applies. */
  static fromConfig(config: Config, listeningPorts?: () => readonly number[], lookup?: Lookup): CrawlTargetPolicy {
    const servers: HostPort[] = [];
    for (const raw of [config.databaseUrl, config.redisUrl, ...(config.transporter ?? [])]) {
      if (raw === null) continue;
      const url = new URL(raw);
      const port = url.port ? Number(url.port) : DEFAULT_SERVER_PORTS[url.protocol];
      if (url.hostname && port !== undefined) servers.push({ host: url.hostname, port });
    }
    return new CrawlTargetPolicy({
      allowHosts: config.crawl.allowHosts,
      ownPorts: [config.port, config.metricsPort],
      ...(listeningPorts ? { listeningPorts } : {}),
      servers,
      ...(lookup ? { lookup } : {}),
    });
  }

  /** Whether CRAWL_ALLOW_HOSTS lists hostname:port (`hostname` as URL.hostname gives it). */
  isAllowListed(hostname: string, port: number): boolean {
    const host = canonicalHost(hostname);
    return this.allowHosts.some((h) => h.host === host && (h.port === null || h.port === port));
  }

  /** Whether a connection for `hostname` to `port` on any of `addresses` is refused. */
  async refuses(hostname: string, port: number, addresses: readonly string[]): Promise<boolean> {
    const ownPort = this.ownPorts.includes(port) || this.listeningPorts().includes(port);
    // No entry opens Sluice's own ports: a bare host means every port of it, those included.
    const listed = !ownPort && this.isAllowListed(hostname, port);
    if (addresses.some((a) => isPrivateAddress(a) && !listed)) return true;
    // The API listens on every interface: a public address of this machine reaches it too.
    if (ownPort && addresses.some(this.thisMachine())) return true;
    return this.reachesServer(hostname, port, addresses);
  }

  /** Tells an address of this machine: loopback, unspecified, or one of its interfaces' now. */
  private thisMachine(): (ip: string) => boolean {
    const local = new Set(this.localAddresses().map(canonicalAddress));
    return (ip) => {
      const addr = canonicalAddress(ip);
      return addr !== null && (loopback.check(addr, isIP(addr) === 4 ? "ipv4" : "ipv6") || local.has(addr));
    };
  }

  private async reachesServer(hostname: string, port: number, addresses: readonly string[]): Promise<boolean> {
    const host = canonicalHost(hostname);
    const onPort = this.servers.filter((s) => s.port === port);
    if (onPort.length === 0) return false;
    const local = this.thisMachine();
    for (const server of onPort) {
      if (server.host === host) return true;
      const literal = stripBrackets(server.host);
      // A server name that does not resolve now cannot be compared; the other rules still apply.
      const serverAddresses = isIP(literal) !== 0 ? [literal] : (await this.lookup(literal).catch(() => [])).map((r) => r.address);
      if (addresses.some((a) => serverAddresses.some((b) => sameAddress(a, b, local)))) return true;
    }
    return false;
  }
}

// Checks every resolved address, not just the first: a host with one public and one
// private record could otherwise be steered onto the private one by the connector.
// This does not stop DNS rebinding between this check and the fetch; guardedConnector does.
/**
 * A URL a client gave as a crawl or import target, normalised, once the policy allows it: a 422
 * naming `url` when it is no http(s) URL, TARGET_NOT_ALLOWED when the policy refuses it.
 */
export async function checkedTarget(raw: string, policy: CrawlTargetPolicy): Promise<string> {
  const url = normalizeUrl(raw);
  if (url === null) throw new ValidationError("url", `"${raw.slice(0, 100)}" is not an http:// or https:// URL`);
  await assertPublicTarget(url, policy);
  return url;
}

export async function assertPublicTarget(url: string, policy: CrawlTargetPolicy): Promise<void> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError("url", `invalid URL "${url}"`);
  }
  const host = stripBrackets(parsed.hostname);
  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    // Allow-listed names are resolved too: an allowed host still must not reach Sluice itself.
    try {
      addresses = (await policy.lookup(host)).map((r) => r.address);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new ValidationError("url", `cannot resolve host "${host}"`, { host, code });
    }
    if (addresses.length === 0) {
      throw new ValidationError("url", `cannot resolve host "${host}"`, { host });
    }
  }
  if (await policy.refuses(parsed.hostname, effectivePort(parsed), addresses)) throw new TargetNotAllowedError(host);
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for sockets to `port` that applies the policy at connect time. The check before a
 * fetch resolves the name once; the connection resolves it again, and a DNS answer that changed
 * in between (rebinding) is caught here. It needs the port because allow-list entries and
 * Sluice's own ports are per port, and node's lookup is never told the port.
 */
export function guardedLookup(policy: CrawlTargetPolicy, port: number) {
  return (hostname: string, options: dnsCallback.LookupOptions, callback: LookupCallback): void => {
    dnsCallback.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const list: LookupAddress[] = addresses;
      policy
        .refuses(
          hostname,
          port,
          list.map((a) => a.address),
        )
        .then(
          (refused) => {
            if (refused) return callback(new TargetNotAllowedError(hostname) as unknown as NodeJS.ErrnoException, []);
            if (options.all) return callback(null, list);
            const first = list[0];
            if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), []);
            callback(null, first.address, first.family);
          },
          (e: unknown) => callback(e as NodeJS.ErrnoException, []),
        );
    });
  };
}

/**
 * An undici connector whose sockets resolve names through guardedLookup for their port. (An IP
 * literal is not looked up again: it cannot change, and the check before the fetch covered it.)
 */
export function guardedConnector(policy: CrawlTargetPolicy): buildConnector.connector {
  // One connector per port, built on first use: undici's connector takes one lookup for all.
  const byPort = new Map<number, buildConnector.connector>();
  return (opts, callback) => {
    const port = Number(opts.port) || (opts.protocol === "https:" ? 443 : 80);
    let connect = byPort.get(port);
    if (!connect) {
      connect = buildConnector({ lookup: guardedLookup(policy, port) });
      byPort.set(port, connect);
    }
    connect(opts, callback);
  };
}
