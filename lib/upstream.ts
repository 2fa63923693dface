// Calls to the upstream user API: one GET with a deadline, its outcome classified for the
// limiter (a throttle cuts an adaptive rate) and for the retry policy.
import { request } from "undici";
import { retryAfterMs } from "./adaptive-rate";

export type UpstreamOutcome =
  | { kind: "ok"; profile: Record<string, unknown> }
  /** 429, 503 or a timeout: the upstream wants less; retried after Retry-After or a back-off. */
  | { kind: "throttled"; error: string; retryAfterMs: number | null }
  /** Anything else that failed: retried with back-off until the attempts run out. */
  | { kind: "failed"; error: string };

export function upstreamUrlFor(template: string, id: number): string {
  return template.replace("{id}", encodeURIComponent(String(id)));
}

export async function fetchProfile(url: string, timeoutMs: number): Promise<UpstreamOutcome> {
  try {
    const res = await request(url, { method: "GET", headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.body.text();
    if (res.statusCode === 429 || res.statusCode === 503) {
      const header = res.headers["retry-after"];
      return { kind: "throttled", error: `HTTP ${res.statusCode}`, retryAfterMs: retryAfterMs(Array.isArray(header) ? header[0] : header) };
    }
    if (res.statusCode < 200 || res.statusCode >= 300) return { kind: "failed", error: `HTTP ${res.statusCode}` };
    const profile = JSON.parse(text) as unknown;
    if (typeof profile !== "object" || profile === null || Array.isArray(profile)) return { kind: "failed", error: "the upstream answered something other than a JSON object" };
    return { kind: "ok", profile: profile as Record<string, unknown> };
  } catch (err) {
    const e = err as Error;
    if (e.name === "TimeoutError" || e.name === "AbortError" || /timeout/i.test(e.message)) return { kind: "throttled", error: `timed out after ${timeoutMs} ms`, retryAfterMs: null };
    return { kind: "failed", error: e instanceof SyntaxError ? `invalid JSON: ${e.message}` : e.message };
  }
}

/** Exponential back-off with "equal jitter": half the step fixed, half random. */
export function backoffMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const step = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return step / 2 + random() * (step / 2);
}
