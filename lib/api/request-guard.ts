// Pure checks the gateway runs on every request before an action sees it: who may call what,
// and which request bodies are acceptable. Each is linear in its input: nothing here lets one
// request keep the event loop busy.

/** Who may call an action through the gateway. */
export type Access = "public" | "read" | "write";
/** What a request's credentials allow. */
export type Caller = "anonymous" | "reader" | "writer";

export interface Tokens {
  /** API_TOKEN: may read and write. null: the API is open (no token configured). */
  write: string | null;
  /** API_READ_TOKEN: may read only. */
  read: string | null;
}

// JSON nested deeper than this is refused before it is parsed: no route takes more than a few levels.
export const MAX_JSON_DEPTH = 32;

/** The bearer token of an Authorization header, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (!header || header.length > 1024) return null;
  const [scheme, token, rest] = header.trim().split(/ +/);
  if (rest !== undefined || !token || scheme?.toLowerCase() !== "bearer") return null;
  return token;
}

/**
 * The outcome of checking a caller against an action's access class: "ok", or the status to
 * refuse with (401 without valid credentials, 403 for a read token on a write).
 */
export function authorize(access: Access, caller: Caller | "invalid", open: boolean): "ok" | 401 | 403 {
  if (access === "public" || open) return "ok";
  if (caller === "invalid" || caller === "anonymous") return 401;
  if (access === "write" && caller === "reader") return 403;
  return "ok";
}

/** application/json or any +json type, in UTF-8 (JSON has no other charset: RFC 8259). */
export function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false;
  const [type, ...params] = header
    .toLowerCase()
    .split(";")
    .map((s) => s.trim());
  const json =
    type === "application/json" || (type !== undefined && type.length <= 127 && type.startsWith("application/") && type.endsWith("+json"));
  if (!json) return false;
  const charset = params
    .find((p) => p.startsWith("charset="))
    ?.slice(8)
    .replace(/"/g, "");
  return charset === undefined || charset === "utf-8" || charset === "utf8";
}

// Content-Encodings body parsing can undo; anything else is refused.
const ENCODINGS = new Set(["identity", "gzip", "deflate", "br"]);

export function isSupportedEncoding(header: string | undefined): boolean {
  return header === undefined || header.split(",").every((e) => ENCODINGS.has(e.trim().toLowerCase()));
}

/** Whether the raw JSON nests arrays and objects deeper than `max`; one pass, strings skipped. */
export function jsonDepthExceeds(raw: Buffer | string, max = MAX_JSON_DEPTH): boolean {
  const s = typeof raw === "string" ? raw : raw.toString("utf8");
  let depth = 0;
  let inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}

/**
 * The path of the first string (value or key) holding a NUL character, or null. Postgres text
 * cannot store NUL: taking it would mean a 500 or a silently altered value. Iterative, so the
 * depth of the input does not matter.
 */
export function findNul(value: unknown, root = ""): string | null {
  const stack: [unknown, string][] = [[value, root]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === "string") {
      if (v.includes("\u0000")) return path;
    } else if (Array.isArray(v)) {
      v.forEach((item, i) => stack.push([item, `${path}[${i}]`]));
    } else if (v !== null && typeof v === "object") {
      for (const [k, item] of Object.entries(v)) {
        const child = path ? `${path}.${k}` : k;
        if (k.includes("\u0000")) return child;
        stack.push([item, child]);
      }
    }
  }
  return null;
}

/** Whether an Origin is in the configured list (exact match, scheme and port included). */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): origin is string {
  return origin !== undefined && allowed.includes(origin);
}
