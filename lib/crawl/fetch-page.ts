// One crawl fetch: undici with an overall deadline, a body cap and redirects followed by hand
// so that every hop is checked against the SSRF guard and the same-origin rule before it is
// requested. The outcome is a value, never a throw: the crawler records every URL's fate.
import { request, type Dispatcher } from "undici";
import { assertPublicTarget, type CrawlTargetPolicy } from "./ssrf";
import { normalizeUrl, sameOrigin } from "./url";
import { USER_AGENT } from "./robots";

export type FetchOutcome =
  | { kind: "ok"; url: string; status: number; contentType: string; body: string; bytes: number }
  /** The redirect chain ended at a different same-origin URL; that URL is crawled in its own right. */
  | { kind: "redirect"; status: number; to: string }
  | { kind: "skipped"; reason: string; status?: number }
  | { kind: "failed"; reason: string; status?: number };

export interface FetchOptions {
  timeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
  policy: CrawlTargetPolicy;
  /** Should connect through guardedConnector(policy), which re-checks each name at connect time. */
  dispatcher?: Dispatcher;
  /** Which content types are worth reading; the rest are skipped without reading the body. */
  accept?: (contentType: string) => boolean;
  /** Read the body where a redirect chain ends instead of reporting the redirect (robots.txt). */
  readRedirected?: boolean;
}

export const isHtml = (contentType: string): boolean => /^(text\/html|application\/xhtml\+xml)\b/i.test(contentType);

export async function fetchPage(url: string, opts: FetchOptions): Promise<FetchOutcome> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const accept = opts.accept ?? isHtml;
  let current = url;
  try {
    await assertPublicTarget(url, opts.policy);
    for (let hop = 0; ; hop++) {
      const res = await request(current, {
        method: "GET",
        headers: { "user-agent": USER_AGENT, accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5" },
        signal,
        dispatcher: opts.dispatcher,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
      });
      // Destroying a body mid-read emits 'error'; the outcome already says what went wrong.
      res.body.on("error", () => {});
      const status = res.statusCode;
      const location = header(res.headers, "location");
      if (status >= 300 && status < 400 && location) {
        discard(res.body);
        if (hop >= opts.maxRedirects) return { kind: "failed", reason: `more than ${opts.maxRedirects} redirects`, status };
        const next = normalizeUrl(location, current);
        if (next === null) return { kind: "failed", reason: `bad redirect location "${location}"`, status };
        // The guard before the origin rule: a hop towards a refused target is reported as
        // refused (an attempt worth seeing), without its URL, which may name an internal address.
        await assertPublicTarget(next, opts.policy);
        if (!sameOrigin(next, url)) return { kind: "skipped", reason: `redirect off origin to ${next}`, status };
        current = next;
        continue;
      }
      if (current !== url && !opts.readRedirected) {
        discard(res.body);
        return { kind: "redirect", status, to: current };
      }
      if (status < 200 || status >= 300) {
        discard(res.body);
        return { kind: "failed", reason: `HTTP ${status}`, status };
      }
      const contentType = header(res.headers, "content-type") ?? "";
      if (!accept(contentType)) {
        discard(res.body);
        return { kind: "skipped", reason: `content type "${contentType || "none"}"`, status };
      }
      const declared = Number(header(res.headers, "content-length") ?? NaN);
      if (declared > opts.maxBytes) {
        discard(res.body);
        return { kind: "failed", reason: `body of ${declared} bytes exceeds ${opts.maxBytes}`, status };
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      for await (const chunk of res.body) {
        bytes += (chunk as Buffer).length;
        if (bytes > opts.maxBytes) {
          discard(res.body);
          return { kind: "failed", reason: `body exceeds ${opts.maxBytes} bytes`, status };
        }
        chunks.push(chunk as Buffer);
      }
      // Postgres text cannot hold NUL; pages that contain it are binary in disguise anyway.
      const body = Buffer.concat(chunks).toString("utf8").replaceAll("\u0000", "");
      return { kind: "ok", url: current, status, contentType, body, bytes };
    }
  } catch (err) {
    // A refusal is a decision, like robots.txt's, not a fault of the site.
    if ((err as Error).name === "TargetNotAllowedError") return { kind: "skipped", reason: (err as Error).message };
    return { kind: "failed", reason: describeError(err, opts.timeoutMs) };
  }
}

/** Drains a small unwanted body so the connection can be reused; gives up on a large one. */
function discard(body: Dispatcher.ResponseData["body"]): void {
  body.dump({ limit: 64 * 1024 }).catch(() => {});
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function describeError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === "TimeoutError" || e.name === "AbortError" || e.code === "UND_ERR_HEADERS_TIMEOUT" || e.code === "UND_ERR_BODY_TIMEOUT") {
    return `timed out after ${timeoutMs} ms`;
  }
  if (e.name === "ValidationError") return e.message ?? "invalid target";
  return e.code ? `${e.code}: ${e.message ?? ""}`.trim() : (e.message ?? String(err));
}
