// Reading one variable of the environment: the typed, loudly failing parsers behind loadConfig
// (config.ts). Each error names the variable and says what was expected.
import { isIP } from "node:net";
import { parseRate, type Rate } from "../throttle/rate";
import type { AllowHost } from "./config";
import { ConfigError } from "./errors";

export type Env = Record<string, string | undefined>;

const DURATION_UNITS_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export class EnvReader {
  constructor(private readonly env: Env) {}

  /** The trimmed value; an empty one counts as unset. */
  read(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === "" ? undefined : value;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.read(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigError(name, `expected an integer from ${min} to ${max}, got "${raw}"`);
    }
    return n;
  }

  url(name: string, schemes: string[]): string | null {
    const raw = this.read(name);
    if (raw === undefined) return null;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(name, `not a URL: "${raw}"`);
    }
    if (!schemes.includes(parsed.protocol)) {
      throw new ConfigError(name, `expected a ${schemes.join(" or ")}// URL, got "${raw}"`);
    }
    return raw;
  }

  rate(name: string): Rate | null {
    const raw = this.read(name);
    if (raw === undefined) return null;
    try {
      return parseRate(raw, name);
    } catch (err) {
      throw new ConfigError(name, (err as Error).message);
    }
  }

  /**
   * A duration such as `7d`, `12h`, `30m` or `90s` (a number and one unit), in ms; null when
   * unset. Below `min` is refused: a typo must not delete what it was meant to keep.
   */
  duration(name: string, min: number): number | null {
    const raw = this.read(name);
    if (raw === undefined) return null;
    const m = /^(\d{1,6})(s|m|h|d)$/.exec(raw);
    const ms = m ? Number(m[1]) * DURATION_UNITS_MS[m[2] as keyof typeof DURATION_UNITS_MS] : NaN;
    if (!(ms >= min)) throw new ConfigError(name, `expected a duration of at least ${min / 1000} s such as 7d, 12h or 30m, got "${raw}"`);
    return ms;
  }

  /** A comma-separated list, entries trimmed, empty ones dropped. */
  list(name: string, fallback = ""): string[] {
    return (this.read(name) ?? fallback)
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  }

  /** A token of at least 16 characters, or null when unset. */
  token(name: string): string | null {
    const token = this.read(name) ?? null;
    if (token !== null && token.length < 16) throw new ConfigError(name, "must be at least 16 characters");
    return token;
  }
}

export function upstreamUrl(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  let parsed: URL;
  try {
    parsed = new URL(raw.replace("{id}", "1"));
  } catch {
    throw new ConfigError("UPSTREAM_URL", `not a URL: "${raw}"`);
  }
  if (!["http:", "https:"].includes(parsed.protocol) || !raw.includes("{id}")) {
    throw new ConfigError("UPSTREAM_URL", `expected an http(s) URL with {id} where the id goes, e.g. http://host/users/{id}; got "${raw}"`);
  }
  return raw;
}

/**
 * Parses a CRAWL_ALLOW_HOSTS entry: `host`, `host:port`, `[IPv6]:port`, or an IPv6 address
 * with or without brackets. The host goes through the URL parser so that it is spelt exactly as
 * the crawler will see it in a URL (`0x7f.1` is 127.0.0.1, `[0::1]` is [::1], IDN as punycode).
 */
export function parseAllowHost(entry: string): AllowHost {
  const bad = (why: string) =>
    new ConfigError("CRAWL_ALLOW_HOSTS", `${why} in "${entry}"; expected host, host:port or [IPv6]:port, comma-separated`);
  // A bare IPv6 address has no room for a port: it is the whole entry.
  const m = isIP(entry) === 6 ? ["", `[${entry}]`, undefined] : /^(\[[^\]]*\]|[^:[\]]*)(?::(.*))?$/.exec(entry);
  const hostPart = m?.[1];
  const portPart = m?.[2];
  if (!hostPart) throw bad("no host name or address");
  if (hostPart.includes("*")) throw bad("wildcards are not supported");
  if (/[\s/\\?#@%]/.test(hostPart)) throw bad("not a host name or IP address");
  let host: string;
  try {
    host = new URL(`http://${hostPart}/`).hostname;
  } catch {
    throw bad("not a host name or IP address");
  }
  if (portPart === undefined) return { host, port: null };
  const port = Number(portPart);
  if (!/^\d{1,5}$/.test(portPart) || port < 1 || port > 65535) throw bad(`port "${portPart}" is not from 1 to 65535`);
  return { host, port };
}

export function namespace(raw: string | undefined): string {
  // It becomes part of NATS subjects and JetStream stream names.
  if (raw !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(raw)) {
    throw new ConfigError("NAMESPACE", `expected 1-32 letters, digits, "_" or "-", got "${raw}"`);
  }
  return raw ?? "";
}
