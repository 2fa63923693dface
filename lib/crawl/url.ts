import * as cheerio from "cheerio";

// Canonical form of a crawlable URL, so the frontier can dedupe on the string.
// Query parameter order is left alone: some servers give it meaning.
export function normalizeUrl(raw: string, base?: string): string | null {
  const trimmed = raw.trim();
  // new URL("", base) would silently return the base page.
  if (trimmed === "") return null;
  let url: URL;
  try {
    url = new URL(trimmed, base);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  url.hash = "";
  // URL keeps a bare "?" in href even though search reads as ""; assigning clears it.
  if (url.search === "") url.search = "";
  return url.href;
}

export function sameOrigin(a: string, b: string): boolean {
  try {
    const oa = new URL(a).origin;
    // Opaque origins (data:, mailto:...) all serialise as "null" but are never equal.
    return oa !== "null" && oa === new URL(b).origin;
  } catch {
    return false;
  }
}

export function extractPage(html: string, pageUrl: string): { title: string | null; links: string[] } {
  const $ = cheerio.load(html);
  const title = $("title").first().text().trim() || null;

  // Browsers use only the first <base href>; an unusable one falls back to the page URL.
  const baseHref = $("base[href]").first().attr("href");
  const base = (baseHref !== undefined && normalizeUrl(baseHref, pageUrl)) || pageUrl;

  const seen = new Set<string>();
  $("a[href], area[href]").each((_, el) => {
    const rel = ($(el).attr("rel") ?? "").toLowerCase().split(/\s+/);
    if (rel.includes("nofollow")) return;
    const link = normalizeUrl($(el).attr("href") ?? "", base);
    if (link !== null) seen.add(link);
  });
  // A Set iterates in insertion order, which keeps document order.
  return { title, links: [...seen] };
}
