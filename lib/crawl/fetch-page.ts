// One crawl fetch: undici with an overall deadline, a body cap and redirects followed by hand
// so that every hop is checked against the SSRF guard and the same-origin rule before it is
// requested. Bodies may come compressed (gzip, deflate, br); the cap counts the decoded bytes,
// so a decompression bomb fails like any other oversized body. A URL fetched before is asked for
// conditionally (its stored ETag and Last-Modified), and a 304 is an outcome of its own. The
// outcome is a value, never a throw: the crawler records every URL's fate.
import { Duplex, Readable, Transform, Writable, pipeline as pipelineWithCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { request, type Dispatcher } from "undici";
import { assertPublicTarget, type CrawlTargetPolicy } from "./ssrf";
import { normalizeUrl, sameOrigin } from "./url";
import { USER_AGENT } from "./robots";

export type FetchOutcome =
  /**
   * `bytes` is the decoded body's length; `wireBytes` what came over the wire (smaller when
   * compressed). `raw` is the decoded body as bytes, when asked for (a gzipped sitemap is not text).
   */
  | {
      kind: "ok";
      url: string;
      status: number;
      contentType: string;
      body: string;
      bytes: number;
      wireBytes: number;
      etag: string | null;
      lastModified: string | null;
      raw?: Buffer;
    }
  /** A 304 to a conditional request: the stored copy is current. */
  | { kind: "unchanged"; status: 304; etag: string | null; lastModified: string | null }
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
  /** The stored copy's validators: the request is conditional, and a 304 answers "unchanged". */
  validators?: Validators | null;
  /** Also answer the decoded body as bytes (`raw`). */
  keepBytes?: boolean;
}

export interface Validators {
  etag: string | null;
  lastModified: string | null;
}

/** The codings offered in Accept-Encoding: those DECODERS can undo. */
const ACCEPT_ENCODING = "gzip, deflate, br";

/** More codings than this on one body is no real server; each would cost a decoder's memory. */
const MAX_CODINGS = 3;

export const isHtml = (contentType: string): boolean => /^(text\/html|application\/xhtml\+xml)\b/i.test(contentType);

export async function fetchPage(url: string, opts: FetchOptions): Promise<FetchOutcome> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  const accept = opts.accept ?? isHtml;
  let current = url;
  try {
    await assertPublicTarget(url, opts.policy);
    for (let hop = 0; ; hop++) {
      // Only the URL itself is asked for conditionally: the validators are its own, not a redirect target's.
      const conditional = hop === 0 ? conditionalHeaders(opts.validators) : {};
      const res = await request(current, {
        method: "GET",
        headers: {
          "user-agent": USER_AGENT,
          accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
          "accept-encoding": ACCEPT_ENCODING,
          ...conditional,
        },
        signal,
        dispatcher: opts.dispatcher,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
      });
      // Destroying a body mid-read emits 'error'; the outcome already says what went wrong.
      res.body.on("error", () => {});
      const status = res.statusCode;
      const etag = validator(header(res.headers, "etag"));
      const lastModified = validator(header(res.headers, "last-modified"));
      if (status === 304 && Object.keys(conditional).length > 0) {
        discard(res.body);
        return {
          kind: "unchanged",
          status,
          etag: etag ?? opts.validators?.etag ?? null,
          lastModified: lastModified ?? opts.validators?.lastModified ?? null,
        };
      }
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
      const codings = contentCodings(res.headers);
      // Content-Length counts wire bytes: it foretells the decoded size only when nothing is encoded.
      const declared = Number(header(res.headers, "content-length") ?? NaN);
      if (codings.length === 0 && declared > opts.maxBytes) {
        discard(res.body);
        return { kind: "failed", reason: `body of ${declared} bytes exceeds ${opts.maxBytes}`, status };
      }
      const read = await readBody(res.body, codings, opts.maxBytes);
      if (read.kind === "failed") return { ...read, status };
      // Postgres text cannot hold NUL; pages that contain it are binary in disguise anyway.
      const body = read.body.toString("utf8").replaceAll("\u0000", "");
      return {
        kind: "ok",
        url: current,
        status,
        contentType,
        body,
        bytes: read.body.length,
        wireBytes: read.wireBytes,
        etag,
        lastModified,
        ...(opts.keepBytes ? { raw: read.body } : {}),
      };
    }
  } catch (err) {
    // A refusal is a decision, like robots.txt's, not a fault of the site.
    if ((err as Error).name === "TargetNotAllowedError") return { kind: "skipped", reason: (err as Error).message };
    return { kind: "failed", reason: describeError(err, opts.timeoutMs) };
  }
}

type BodyRead = { kind: "read"; body: Buffer; wireBytes: number } | { kind: "failed"; reason: string };

/**
 * Reads a body through the decoders for its codings, as a stream: at most `maxBytes` decoded bytes
 * are ever held, and the first byte over the cap stops everything (the undici body is destroyed,
 * which closes its connection). Errors of the wire (deadline, reset) are thrown for the caller to
 * describe; bad compressed data is an outcome naming the coding.
 */
async function readBody(wire: Dispatcher.ResponseData["body"], codings: readonly string[], maxBytes: number): Promise<BodyRead> {
  if (codings.length > MAX_CODINGS) {
    discard(wire);
    return { kind: "failed", reason: `more than ${MAX_CODINGS} content encodings` };
  }
  // Applied in the order listed, so undone in reverse.
  const makers: { coding: string; make: DecoderFactory }[] = [];
  for (const coding of [...codings].reverse()) {
    const make = DECODERS.get(coding);
    if (make === undefined) {
      discard(wire);
      return { kind: "failed", reason: `unsupported content encoding "${coding}"` };
    }
    makers.push({ coding, make });
  }
  // The first stream to emit an error is where it came from: pipeline then destroys the others
  // with that same error, so only the first sighting says whether a decoder or the wire failed.
  const errors: { first?: { error: unknown; coding: string | null } } = {};
  const watch = (stream: NodeJS.EventEmitter, coding: string | null) =>
    stream.on("error", (error: unknown) => {
      errors.first ??= { error, coding };
    });
  watch(wire, null);
  let wireBytes = 0;
  const countWire = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      wireBytes += chunk.length;
      callback(null, chunk);
    },
  });
  const decoders = makers.map(({ coding, make }) => make((stream) => watch(stream, coding)));
  const tooLarge = new Error(`body exceeds ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let bytes = 0;
  const collect = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > maxBytes) return callback(tooLarge);
      chunks.push(chunk);
      callback();
    },
  });
  try {
    await pipeline([wire, countWire, ...decoders, collect]);
  } catch (err) {
    if (err === tooLarge) return { kind: "failed", reason: tooLarge.message };
    const first = errors.first;
    const coding = first !== undefined && first.error === err ? first.coding : null;
    if (coding !== null) {
      // Servers put Content-Encoding on empty bodies too; no coding can decode nothing.
      if (wireBytes === 0) return { kind: "read", body: Buffer.alloc(0), wireBytes };
      return { kind: "failed", reason: `bad ${coding} body` };
    }
    throw err;
  }
  return { kind: "read", body: Buffer.concat(chunks), wireBytes };
}

/** A decoder for one coding; `watch` is told of every stream that can fail on bad data. */
type DecoderFactory = (watch: (stream: NodeJS.EventEmitter) => void) => Duplex;

const DECODERS: ReadonlyMap<string, DecoderFactory> = new Map<string, DecoderFactory>([
  ["gzip", (watch) => watched(zlib.createGunzip(), watch)],
  ["x-gzip", (watch) => watched(zlib.createGunzip(), watch)],
  ["br", (watch) => watched(zlib.createBrotliDecompress(), watch)],
  ["deflate", inflateEither],
]);

function watched<T extends Duplex>(stream: T, watch: (stream: NodeJS.EventEmitter) => void): T {
  watch(stream);
  return stream;
}

/**
 * "deflate" means zlib-wrapped data (RFC 9110), but some servers send raw deflate: the first two
 * bytes tell which, since a zlib header is a valid CMF/FLG pair. The choice waits for those bytes;
 * the inflater is then read as an async iterator, so its output waits for the reader (a deflate
 * bomb is inflated only as far as the cap lets it).
 */
function inflateEither(watch: (stream: NodeJS.EventEmitter) => void): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Buffer>) {
    const input = source[Symbol.asyncIterator]();
    let head = Buffer.alloc(0);
    let ended = false;
    while (head.length < 2 && !ended) {
      const next = await input.next();
      if (next.done) ended = true;
      else head = Buffer.concat([head, next.value]);
    }
    const inflater = watched(hasZlibHeader(head) ? zlib.createInflate() : zlib.createInflateRaw(), watch);
    async function* headThenRest() {
      yield head;
      while (!ended) {
        const next = await input.next();
        if (next.done) ended = true;
        else yield next.value;
      }
    }
    // An error on either side destroys the inflater, which ends the loop below with it.
    pipelineWithCallback(Readable.from(headThenRest(), { objectMode: false }), inflater, () => {});
    for await (const chunk of inflater) yield chunk as Buffer;
  });
}

/** Whether data starts with a zlib header (RFC 1950): method 8, a window of at most 32 KiB, a check that divides by 31. */
function hasZlibHeader(data: Buffer): boolean {
  if (data.length < 2) return false;
  const cmfFlg = data.readUInt16BE(0);
  return ((cmfFlg >> 8) & 0x0f) === 8 && cmfFlg >> 12 <= 7 && cmfFlg % 31 === 0;
}

/** Content-Encoding's codings in the order they were applied, without identity (which is none). */
function contentCodings(headers: Record<string, string | string[] | undefined>): string[] {
  const value = headers["content-encoding"];
  const joined = Array.isArray(value) ? value.join(",") : (value ?? "");
  return joined
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
}

/**
 * A validator worth keeping: one that can be sent back as a header as it is (printable ASCII) and
 * is of a sane length. Anything else is dropped, and that URL is simply fetched in full next time.
 */
function validator(value: string | undefined): string | null {
  return value !== undefined && value.length <= MAX_VALIDATOR_LENGTH && /^[\x20-\x7e]+$/.test(value) ? value : null;
}
const MAX_VALIDATOR_LENGTH = 256;

function conditionalHeaders(v: Validators | null | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  if (v?.etag) headers["if-none-match"] = v.etag;
  if (v?.lastModified) headers["if-modified-since"] = v.lastModified;
  return headers;
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
