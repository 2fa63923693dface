import dnsCallback, { promises as dns, type LookupAddress } from "node:dns";
import { BlockList, isIP } from "node:net";
import { TargetNotAllowedError, ValidationError } from "./errors";

type Lookup = (host: string) => Promise<{ address: string }[]>;

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

export function isPrivateAddress(ip: string): boolean {
  // A zone id (fe80::1%eth0) only appears on scoped, i.e. link-local, addresses anyway.
  const addr = stripBrackets(ip.trim()).split("%")[0] ?? "";
  const family = isIP(addr);
  // Anything we cannot parse is refused rather than trusted.
  if (family === 0) return true;
  // BlockList matches IPv4-mapped IPv6 (::ffff:127.0.0.1, ::ffff:7f00:1, long forms)
  // against the IPv4 rules itself, so the mapped form cannot bypass them.
  return blocked.check(addr, family === 4 ? "ipv4" : "ipv6");
}

export function isAllowedHost(hostname: string, allowHosts: readonly string[]): boolean {
  const host = stripBrackets(hostname).toLowerCase();
  return allowHosts.some((h) => stripBrackets(h.trim()).toLowerCase() === host);
}

const defaultLookup: Lookup = (host) => dns.lookup(host, { all: true, verbatim: true });

// Checks every resolved address, not just the first: a host with one public and one
// private record could otherwise be steered onto the private one by the connector.
// This does not stop DNS rebinding between this check and the fetch; the fetcher must
// connect to a checked address for that.
export async function assertPublicTarget(
  url: string,
  allowHosts: readonly string[],
  lookup: Lookup = defaultLookup,
): Promise<void> {
  let hostname: string;
  try {
    hostname = new URL(url).hostname;
  } catch {
    throw new ValidationError("url", `invalid URL "${url}"`);
  }
  if (isAllowedHost(hostname, allowHosts)) return;

  const host = stripBrackets(hostname);
  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    try {
      addresses = (await lookup(host)).map((r) => r.address);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new ValidationError("url", `cannot resolve host "${host}"`, { host, code });
    }
    if (addresses.length === 0) {
      throw new ValidationError("url", `cannot resolve host "${host}"`, { host });
    }
  }

  for (const address of addresses) {
    if (isPrivateAddress(address)) throw new TargetNotAllowedError(host, address);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for the fetcher's sockets that refuses private addresses at connect time. The
 * check before a fetch resolves the name once; the connection resolves it again, and a DNS
 * answer that changed in between (rebinding) is caught here.
 */
export function guardedLookup(allowHosts: readonly string[]) {
  return (hostname: string, options: dnsCallback.LookupOptions, callback: LookupCallback): void => {
    dnsCallback.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const list = addresses as LookupAddress[];
      if (!isAllowedHost(hostname, allowHosts)) {
        const bad = list.find((a) => isPrivateAddress(a.address));
        if (bad) return callback(new TargetNotAllowedError(hostname, bad.address) as unknown as NodeJS.ErrnoException, []);
      }
      if (options.all) return callback(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), []);
      callback(null, first.address, first.family);
    });
  };
}
