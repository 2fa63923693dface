// Calls to the upstream user API: one GET with a deadline, its outcome classified for the
// limiter (a throttle cuts an adaptive rate) and for the retry policy.
import type { Readable } from "node:stream";
import { request } from "undici";
import { retryAfterMs } from "../throttle/adaptive-rate";
import { isStorableJson } from "../api/params";
import { jsonDepthExceeds } from "../api/request-guard";

/**
 * The most of an upstream answer that is read, in bytes (1 MiB): a profile is a few KiB. A
 * larger body is a failed call, cut off at the cap, never buffered whole.
 */
export const MAX_UPSTREAM_BODY_BYTES = 1024 * 1024;

export type UpstreamOutcome =
  | { kind: "ok"; profile: Record<string, unknown> }
  /** 429, 503 or a timeout: the upstream wants less; retried after Retry-After or a back-off. */
  | { kind: "throttled"; error: string; retryAfterMs: number | null }
  /** Anything else that failed: retried with back-off until the attempts run out. */
  | { kind: "failed"; error: string };

export function upstreamUrlFor(template: string, id: number): string {
  return template.replace("{id}", encodeURIComponent(String(id)));
}

/** The body as UTF-8 text, or null (and the stream destroyed) once it passes `maxBytes`. */
async function readCapped(body: Readable, maxBytes: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      body.destroy();
      return null;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * An oversized body is "failed", retried like malformed JSON: the cap protects this process's
 * memory, each attempt reads at most the cap, and UPSTREAM_MAX_ATTEMPTS bounds the attempts. A
 * "throttled" outcome would wrongly cut the adaptive rate.
 */
export async function fetchProfile(url: string, timeoutMs: number, maxBodyBytes = MAX_UPSTREAM_BODY_BYTES): Promise<UpstreamOutcome> {
  try {
    const res = await request(url, {
      method: "GET",
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.statusCode < 200 || res.statusCode >= 300) {
      // Not used: read up to undici's dump limit (128 KiB) so the connection can be reused, else dropped.
      await res.body.dump().catch(() => {});
      if (res.statusCode === 429 || res.statusCode === 503) {
        const header = res.headers["retry-after"];
        return {
          kind: "throttled",
          error: `HTTP ${res.statusCode}`,
          retryAfterMs: retryAfterMs(Array.isArray(header) ? header[0] : header),
        };
      }
      return { kind: "failed", error: `HTTP ${res.statusCode}` };
    }
    const tooLarge = { kind: "failed", error: `the upstream's answer is over ${maxBodyBytes} bytes` } as const;
    if (Number(res.headers["content-length"] ?? 0) > maxBodyBytes) {
      res.body.destroy();
      return tooLarge;
    }
    const text = await readCapped(res.body, maxBodyBytes);
    if (text === null) return tooLarge;
    // JSON.parse takes any depth, but storing the profile (JSON.stringify, jsonb) would not.
    if (jsonDepthExceeds(text)) return { kind: "failed", error: "the upstream answered JSON nested too deep" };
    const profile = JSON.parse(text) as unknown;
    if (typeof profile !== "object" || profile === null || Array.isArray(profile))
      return { kind: "failed", error: "the upstream answered something other than a JSON object" };
    // jsonb (and text) refuse NUL and unpaired surrogates: the upsert would fail, not the call.
    if (!isStorableJson(profile))
      return { kind: "failed", error: "the upstream answered text the database cannot store (NUL or an unpaired surrogate)" };
    return { kind: "ok", profile: profile as Record<string, unknown> };
  } catch (err) {
    const e = err as Error;
    if (e.name === "TimeoutError" || e.name === "AbortError" || /timeout/i.test(e.message))
      return { kind: "throttled", error: `timed out after ${timeoutMs} ms`, retryAfterMs: null };
    return { kind: "failed", error: e instanceof SyntaxError ? `invalid JSON: ${e.message}` : e.message };
  }
}

/** Exponential back-off with "equal jitter": half the step fixed, half random. */
export function backoffMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const step = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return step / 2 + random() * (step / 2);
}
