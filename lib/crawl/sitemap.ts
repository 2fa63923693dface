// Sitemaps (sitemaps.org protocol 0.9) read into URLs to seed a crawl's frontier: a <urlset> lists
// pages, a <sitemapindex> lists more sitemaps, a text file lists one page per line. The body may be
// gzipped whatever its URL or content type says; the cap counts decoded bytes, so a gzip bomb fails
// like an oversized file. No network here, and the outcome is a value, never a throw: a broken
// sitemap is reported with what could be read from it.
import zlib from "node:zlib";
import { Parser } from "htmlparser2";
import { normalizeUrl } from "./url";

/** URLs (or child sitemaps) one sitemap file may list, per the protocol. */
export const MAX_SITEMAP_URLS = 50_000;
/** Decoded (uncompressed) bytes of one sitemap file, per the protocol: 50 MiB. */
export const MAX_SITEMAP_BYTES = 50 * 1024 * 1024;
/**
 * Index nesting followed. The sitemaps a crawl starts from (robots.txt's, /sitemap.xml) are at
 * depth 0 and those an index at depth d names are at depth d + 1; the child sitemaps of a sitemap
 * at this depth are not fetched. The protocol forbids nesting indexes; sites do it anyway.
 */
export const MAX_SITEMAP_DEPTH = 2;
/** Sitemap files fetched for one crawl, across every index. */
export const MAX_SITEMAPS_PER_CRAWL = 50;

// The protocol requires locs shorter than 2,048 characters; the crawler admits no longer links.
const MAX_LOC_CHARS = 2_048;
// Text of one <loc> past this cannot trim down to a usable URL, so it is not held.
const MAX_LOC_TEXT_CHARS = 64 * 1024;
// Real sitemaps nest 3 elements deep (5 with the image, video and news extensions). A cap keeps
// htmlparser2's open-element stack short: it is searched on every end tag and grown at its front.
const MAX_XML_DEPTH = 32;

export interface SitemapOptions {
  /**
   * The sitemap was named in robots.txt, which lets it list any URL on its origin instead of only
   * those under its directory. A child of an index that was named there may be given it too: the
   * host's owner vouched for the index, and an index may only name sitemaps on its own origin.
   */
  fromRobots?: boolean;
  /** Default MAX_SITEMAP_URLS. */
  maxUrls?: number;
  /** Cap on the decoded body, in bytes. Default MAX_SITEMAP_BYTES. */
  maxBytes?: number;
}

export interface ParsedSitemap {
  /** Pages (from a <urlset> or a text sitemap), normalised, in scope, deduplicated, in document order. */
  urls: string[];
  /** Child sitemaps (from a <sitemapindex>), normalised, on the sitemap's origin, deduplicated. */
  sitemaps: string[];
  /** The file listed more than maxUrls entries (usable or not); the rest were not read. */
  truncated: boolean;
  /** Why the file could not be read, or read only in part; what was read is still returned. */
  error?: string;
}

export function parseSitemap(body: Buffer, sitemapUrl: string, opts: SitemapOptions = {}): ParsedSitemap {
  const maxBytes = opts.maxBytes ?? MAX_SITEMAP_BYTES;
  const result: ParsedSitemap = { urls: [], sitemaps: [], truncated: false };
  const fail = (error: string): ParsedSitemap => ({ ...result, error });

  const pageInScope = scopeTest(sitemapUrl, opts.fromRobots ?? false);
  const sitemapInScope = scopeTest(sitemapUrl, true);
  if (pageInScope === null || sitemapInScope === null) return fail(`bad sitemap URL "${sitemapUrl}"`);

  let data = body;
  if (isGzip(body)) {
    try {
      // maxOutputLength stops inflating at the cap: a bomb costs at most maxBytes of memory.
      data = zlib.gunzipSync(body, { maxOutputLength: maxBytes });
    } catch (err) {
      if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") return fail(`sitemap exceeds ${maxBytes} bytes decompressed`);
      return fail(`bad gzip data: ${(err as Error).message}`);
    }
  } else if (body.length > maxBytes) {
    return fail(`sitemap exceeds ${maxBytes} bytes`);
  }

  let text = data.toString("utf8");
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const trimmedStart = text.trimStart();
  if (trimmedStart === "") return fail("empty sitemap");

  const collector = new Collector(opts.maxUrls ?? MAX_SITEMAP_URLS);
  if (!trimmedStart.startsWith("<")) {
    collectLines(text, (loc) => collector.add(result.urls, loc, pageInScope));
    result.truncated = collector.truncated;
    return result;
  }
  const error = collectXml(text, (kind, loc) =>
    kind === "url" ? collector.add(result.urls, loc, pageInScope) : collector.add(result.sitemaps, loc, sitemapInScope),
  );
  result.truncated = collector.truncated;
  return error === undefined ? result : fail(error);
}

/**
 * Whether a sitemap at sitemapUrl may list url: on the same origin (scheme, host and port) and,
 * unless the sitemap was named in robots.txt, under the sitemap's directory
 * (https://example.com/catalog/sitemap.xml may list https://example.com/catalog/* only).
 */
export function inSitemapScope(url: string, sitemapUrl: string, fromRobots = false): boolean {
  return scopeTest(sitemapUrl, fromRobots)?.(url) ?? false;
}

/** The conventional sitemap of a page's origin, tried when robots.txt names none. */
export function sitemapUrlFor(pageUrl: string): string {
  return `${new URL(pageUrl).origin}/sitemap.xml`;
}

/** The scope rule of one sitemap, worked out once for all its entries; null for a bad sitemap URL. */
function scopeTest(sitemapUrl: string, wholeOrigin: boolean): ((url: string) => boolean) | null {
  const normalized = normalizeUrl(sitemapUrl);
  if (normalized === null) return null;
  const sitemap = new URL(normalized);
  const directory = wholeOrigin ? "/" : sitemap.pathname.slice(0, sitemap.pathname.lastIndexOf("/") + 1);
  return (url) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return false;
    }
    // new URL has already resolved dot segments, so /catalog/../other is /other here.
    return parsed.origin === sitemap.origin && parsed.pathname.startsWith(directory);
  };
}

function isGzip(data: Buffer): boolean {
  return data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b;
}

/**
 * Reads a file's entries into their lists: usable ones once each, in order. The cap counts every
 * entry listed (the protocol's limit is on the file), so that the work on a file is bounded too.
 */
class Collector {
  truncated = false;
  private readonly seen = new Set<string>();
  private entries = 0;

  constructor(private readonly max: number) {}

  /** Returns false once the file has listed more than the cap: stop reading. */
  add(into: string[], loc: string, inScope: (url: string) => boolean): boolean {
    if (++this.entries > this.max) {
      this.truncated = true;
      return false;
    }
    const trimmed = loc.trim();
    // The scheme test spares normalizeUrl a thrown TypeError on each line of a file of junk.
    if (trimmed.length > MAX_LOC_CHARS || !/^https?:/i.test(trimmed)) return true;
    const url = normalizeUrl(trimmed);
    if (url !== null && !this.seen.has(url) && inScope(url)) {
      this.seen.add(url);
      into.push(url);
    }
    return true;
  }
}

function collectLines(text: string, take: (loc: string) => boolean): void {
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    // take() trims, which also removes the \r of CRLF line ends.
    const line = text.slice(start, end);
    if (line.trim() !== "" && !take(line)) return;
    start = end + 1;
  }
}

type EntryKind = "url" | "sitemap";

/**
 * Reads <urlset><url><loc> and <sitemapindex><sitemap><loc> in one streaming pass of htmlparser2,
 * by local name (any prefix, any namespace or none). Returns an error when the document is not a
 * sitemap or was cut short; the entries read before that have been taken.
 */
function collectXml(text: string, take: (kind: EntryKind, loc: string) => boolean): string | undefined {
  // (`as`: all are set in the parser's callbacks, which TypeScript's narrowing does not see.)
  let depth = 0; // open elements, the root being 1
  let entry = null as EntryKind | null; // the root's kind of entry, once the root is known
  let inEntry = false; // inside a <url> of a <urlset> or a <sitemap> of a <sitemapindex>
  let loc = null as string[] | null; // the text of the open <loc>
  let locChars = 0;
  let stopped = false;
  let atEnd = false;
  let error = undefined as string | undefined;

  const stop = (why?: string): void => {
    stopped = true;
    error ??= why;
    parser.pause();
  };

  const parser = new Parser(
    {
      onopentagname(name) {
        if (stopped) return;
        depth++;
        if (depth > MAX_XML_DEPTH) return stop(`XML nested deeper than ${MAX_XML_DEPTH} elements`);
        const local = localName(name);
        if (depth === 1) {
          if (local === "urlset") entry = "url";
          else if (local === "sitemapindex") entry = "sitemap";
          else stop(`not a sitemap: root element <${name.slice(0, 64)}>`);
        } else if (depth === 2) {
          inEntry = local === entry;
        } else if (depth === 3 && inEntry && local === "loc") {
          loc = [];
          locChars = 0;
        }
      },
      ontext(data) {
        if (loc === null || stopped) return;
        locChars += data.length;
        if (locChars <= MAX_LOC_TEXT_CHARS) loc.push(data);
      },
      onclosetag() {
        if (stopped) return;
        depth--;
        if (depth === 2 && loc !== null) {
          const parts = loc;
          loc = null;
          // A loc left open when the document ends may be cut anywhere: a wrong URL, not a short one.
          // One too long to hold still counts as an entry, an unusable one ("").
          if (!atEnd && !take(entry!, locChars <= MAX_LOC_TEXT_CHARS ? parts.join("") : "")) stop();
        } else if (depth === 1) {
          inEntry = false;
        }
      },
    },
    { xmlMode: true, decodeEntities: true },
  );
  parser.write(text);
  if (!stopped) {
    atEnd = true;
    // Tags still open here were never closed: the file was cut short (or is not XML at all).
    const openAtEnd = depth;
    parser.end();
    if (entry === null) error ??= "not a sitemap: no root element";
    else if (openAtEnd > 0) error ??= "XML ends inside an element (truncated?)";
  }
  return error;
}

function localName(name: string): string {
  return name.slice(name.lastIndexOf(":") + 1).toLowerCase();
}

/** One sitemap file to read, and whether robots.txt named it (or an index that robots.txt named). */
export interface SitemapSource {
  url: string;
  fromRobots: boolean;
}

export interface CollectedSitemaps {
  /** Pages of every sitemap read, deduplicated, in the order found. */
  urls: string[];
  /** Sitemap files fetched (at most MAX_SITEMAPS_PER_CRAWL). */
  read: number;
  /** What went wrong, one line per sitemap (a missing /sitemap.xml is not a fault, and is not listed). */
  errors: string[];
}

/**
 * Reads sitemaps breadth first from `starts`, following indexes down to MAX_SITEMAP_DEPTH and
 * reading at most MAX_SITEMAPS_PER_CRAWL files. `fetch` answers a sitemap's body, or null when
 * there is none (a 404), and may throw; one sitemap's failure leaves the rest to be read. A child
 * keeps its index's robots.txt standing, and stays on the index's origin (parseSitemap's rule).
 */
export async function collectSitemapUrls(
  starts: SitemapSource[],
  fetch: (url: string) => Promise<Buffer | null>,
  opts: { maxUrls: number },
): Promise<CollectedSitemaps> {
  const urls = new Set<string>();
  const errors: string[] = [];
  const seen = new Set<string>();
  let level = starts.filter((s) => !seen.has(s.url) && seen.add(s.url));
  let read = 0;
  for (let depth = 0; depth <= MAX_SITEMAP_DEPTH && level.length > 0 && urls.size < opts.maxUrls; depth++) {
    const next: SitemapSource[] = [];
    for (const source of level) {
      if (read >= MAX_SITEMAPS_PER_CRAWL || urls.size >= opts.maxUrls) break;
      read++;
      let body: Buffer | null;
      try {
        body = await fetch(source.url);
      } catch (err) {
        errors.push(`${source.url}: ${(err as Error).message}`);
        continue;
      }
      if (body === null) continue;
      const parsed = parseSitemap(body, source.url, { fromRobots: source.fromRobots });
      if (parsed.error) errors.push(`${source.url}: ${parsed.error}`);
      for (const url of parsed.urls) if (urls.size < opts.maxUrls) urls.add(url);
      for (const child of parsed.sitemaps) {
        if (!seen.has(child)) {
          seen.add(child);
          next.push({ url: child, fromRobots: source.fromRobots });
        }
      }
    }
    level = next;
  }
  return { urls: [...urls], read, errors };
}
