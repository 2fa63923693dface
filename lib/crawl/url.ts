import { Parser } from "htmlparser2";

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

// extractPage reads htmlparser2's events with the few HTML parsing rules that htmlparser2 does not
// apply itself, so that it finds what a full HTML parser (parse5, as cheerio used it, or a browser) finds.

// Elements whose content HTML reads as text (with scripting on) up to their end tag, so no tag inside
// counts. htmlparser2's tokenizer does that itself for script, style, textarea, title and xmp unless they
// are written self-closing (<script src="x"/>); it reads the others as markup. Value: their end tag.
const RAW_TEXT_END = new Map(
  ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript"].map((name) => [
    name,
    new RegExp(`</${name}[\t\n\f />]`, "gi"),
  ]),
);
// Inside <select> HTML ignores every start tag but a few; these end the select…
const SELECT_ENDERS = new Set(["input", "keygen", "textarea"]);
// …and so do these when the select is inside a table.
const TABLE_TAGS = new Set(["caption", "table", "tbody", "tfoot", "thead", "tr", "td", "th"]);
// Inside SVG and MathML: the elements whose content is HTML again (HTML integration points)…
const SVG_HTML_ELEMENTS = new Set(["foreignobject", "desc", "title"]);
const MATHML_HTML_ELEMENTS = new Set(["mi", "mo", "mn", "ms", "mtext"]);
// …and the start tags that end SVG or MathML content (as does <font> with color, face or size).
const FOREIGN_BREAKOUT = new Set(
  (
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img li listing menu meta nobr " +
    "ol p pre ruby s small span strong strike sub sup table tt u ul var"
  ).split(" "),
);

type Namespace = "html" | "svg" | "math";

// The text of a <title> from its source (raw text: only character references to decode).
function titleText(source: string): string {
  if (!source.includes("&")) return source;
  const parts: string[] = [];
  new Parser({ ontext: (text) => parts.push(text) }, { decodeEntities: true }).end(`<title>${source}`);
  return parts.join("");
}

// In SVG and MathML, HTML reads xlink:href as href; of the two, the later one wins.
function foreignHref(attribs: Record<string, string>): string | undefined {
  let href: string | undefined;
  for (const name in attribs) if (name === "href" || name === "xlink:href") href = attribs[name];
  return href;
}

// The title (text of the first <title>, trimmed, null when empty) and the links (<a href> and
// <area href> without a rel="nofollow" token, resolved against the first <base href>, normalised,
// deduplicated, in document order) of an HTML page, in one streaming pass of htmlparser2.
// test/unit/extract-page.test.ts checks it against cheerio and pins the differences that remain.
export function extractPage(html: string, pageUrl: string): { title: string | null; links: string[] } {
  // HTML reads CR and CRLF as LF, and U+0000 as U+FFFD, before anything else; both show in titles.
  if (html.includes("\r")) html = html.replace(/\r\n?/g, "\n");
  if (html.includes("\0")) html = html.replaceAll("\0", "\uFFFD");

  // (`as`: both are set in the parser's callbacks, which TypeScript's narrowing does not see.)
  let title = null as string | null; // the first <title>'s text
  let rawEnd = 0; // tags starting before this index of `html` are raw text (Infinity after <plaintext>)
  let inSelect = false;
  let selectImpliedClose = false; // the last event closed a <select> because of the start tag that follows
  let tableDepth = 0;
  // The open elements that change the namespace of their content, and that namespace.
  const contexts: { name: string; ns: Namespace }[] = [];
  let ns: Namespace = "html";
  let lastTagEnd = -1; // where the last start tag ends: a close at the same index is its own (void or self-closing)
  // Browsers use only the first <base href>, and for every link, even those before it: links are resolved at the end.
  let baseHref = undefined as string | undefined;
  const hrefs: string[] = [];

  const rawTextEnd = (name: string, from: number): number => {
    const re = RAW_TEXT_END.get(name)!;
    re.lastIndex = from;
    return re.exec(html)?.index ?? html.length;
  };
  const popContext = (): void => {
    contexts.pop();
    ns = contexts[contexts.length - 1]?.ns ?? "html";
  };

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const afterSelect = selectImpliedClose;
        selectImpliedClose = false;
        if (parser.startIndex < rawEnd) return;
        const tagEnd = parser.endIndex; // the ">"
        lastTagEnd = tagEnd;
        if (inSelect) {
          if (!SELECT_ENDERS.has(name) && !(tableDepth > 0 && TABLE_TAGS.has(name))) return;
          inSelect = false;
        }
        if (
          ns !== "html" &&
          (FOREIGN_BREAKOUT.has(name) || (name === "font" && ("color" in attribs || "face" in attribs || "size" in attribs)))
        ) {
          while (contexts.length > 0 && contexts[contexts.length - 1]!.ns !== "html") popContext();
        }
        const elementNs = ns;
        // In SVG and MathML (and for <svg/> and <math/> themselves) a self-closing tag has no content.
        const selfClosing = html.charCodeAt(tagEnd - 1) === 0x2f && (elementNs !== "html" || name === "svg" || name === "math");
        if (!selfClosing) {
          if (name === "svg" || name === "math") {
            contexts.push({ name, ns: ns === "html" ? name : ns });
          } else if (
            (ns === "svg" && SVG_HTML_ELEMENTS.has(name)) ||
            (ns === "math" &&
              (MATHML_HTML_ELEMENTS.has(name) ||
                (name === "annotation-xml" && /^(text\/html|application\/xhtml\+xml)$/i.test(attribs.encoding ?? ""))))
          ) {
            contexts.push({ name, ns: "html" });
          }
          ns = contexts[contexts.length - 1]?.ns ?? "html";
        }

        switch (name) {
          case "a":
          case "area": {
            const href = elementNs === "html" ? attribs.href : foreignHref(attribs);
            if (href !== undefined && !attribs.rel?.toLowerCase().split(/\s+/).includes("nofollow")) hrefs.push(href);
            return;
          }
          case "base":
            if (baseHref === undefined) baseHref = elementNs === "html" ? attribs.href : foreignHref(attribs);
            return;
          case "title":
            // Raw text in SVG and MathML too, as htmlparser2's tokenizer reads it.
            if (!selfClosing) rawEnd = rawTextEnd(name, tagEnd + 1);
            title ??= selfClosing ? "" : titleText(html.slice(tagEnd + 1, rawEnd));
            return;
        }
        if (elementNs !== "html") return;
        if (RAW_TEXT_END.has(name)) rawEnd = rawTextEnd(name, tagEnd + 1);
        else if (name === "plaintext") rawEnd = Number.POSITIVE_INFINITY;
        else if (name === "table") tableDepth++;
        // A <select> inside a select closes it (htmlparser2 has just done so) and is otherwise ignored.
        else if (name === "select") inSelect = !afterSelect;
      },
      onclosetag(name, isImplied) {
        selectImpliedClose = false;
        if (parser.startIndex < rawEnd || parser.endIndex === lastTagEnd) return;
        if (name === "select") {
          inSelect = false;
          selectImpliedClose = isImplied;
        } else if (name === "table" && tableDepth > 0) {
          tableDepth--;
        }
        if (contexts[contexts.length - 1]?.name === name) popContext();
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.end(html);

  // An unusable <base href> falls back to the page URL.
  const base = (baseHref !== undefined && normalizeUrl(baseHref, pageUrl)) || pageUrl;
  const seen = new Set<string>();
  const resolved = new Set<string>(); // the same href resolves to the same link: once is enough
  for (const href of hrefs) {
    if (resolved.has(href)) continue;
    resolved.add(href);
    const link = normalizeUrl(href, base);
    if (link !== null) seen.add(link);
  }
  // A Set iterates in insertion order, which keeps document order.
  return { title: title?.trim() || null, links: [...seen] };
}
