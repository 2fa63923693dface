import zlib from "node:zlib";
import {
  MAX_SITEMAP_BYTES,
  MAX_SITEMAP_DEPTH,
  MAX_SITEMAP_URLS,
  MAX_SITEMAPS_PER_CRAWL,
  inSitemapScope,
  parseSitemap,
  sitemapUrlFor,
} from "../../lib/crawl/sitemap";

const SITEMAP_URL = "https://example.com/sitemap.xml";
const NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"';

const urlset = (locs: string[], attrs = NS): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<urlset ${attrs}>\n${locs.map((l) => `  <url><loc>${l}</loc></url>\n`).join("")}</urlset>\n`;
const parse = (body: string | Buffer, url = SITEMAP_URL, opts?: Parameters<typeof parseSitemap>[2]) =>
  parseSitemap(typeof body === "string" ? Buffer.from(body) : body, url, opts);

describe("parseSitemap: XML", () => {
  it("reads the page URLs of a <urlset>, normalised, in document order", () => {
    const body = [
      '<?xml version="1.0" encoding="UTF-8"?>',
      `<urlset ${NS} xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">`,
      "  <url><loc>https://example.com/</loc><lastmod>2024-05-01</lastmod><priority>1.0</priority></url>",
      "  <url>",
      "    <loc>HTTPS://Example.com:443/b#top</loc>",
      "    <image:image><image:loc>https://example.com/img/b.png</image:loc></image:image>",
      "  </url>",
      "  <url><loc>https://example.com/a?</loc></url>",
      "</urlset>",
    ].join("\n");
    expect(parse(body)).toEqual({
      urls: ["https://example.com/", "https://example.com/b", "https://example.com/a"],
      sitemaps: [],
      truncated: false,
    });
  });

  it("reads the child sitemaps of a <sitemapindex>, and only those", () => {
    const body = [
      `<sitemapindex ${NS}>`,
      "  <sitemap><loc>https://example.com/sitemaps/pages-1.xml.gz</loc><lastmod>2024-05-01</lastmod></sitemap>",
      "  <sitemap><loc>https://example.com/other/pages-2.xml</loc></sitemap>",
      "  <url><loc>https://example.com/not-an-entry-of-an-index</loc></url>",
      "</sitemapindex>",
    ].join("\n");
    expect(parse(body)).toEqual({
      urls: [],
      sitemaps: ["https://example.com/sitemaps/pages-1.xml.gz", "https://example.com/other/pages-2.xml"],
      truncated: false,
    });
  });

  it("takes no <sitemap> entries from a <urlset>", () => {
    const body = `<urlset><sitemap><loc>https://example.com/s.xml</loc></sitemap><url><loc>https://example.com/p</loc></url></urlset>`;
    expect(parse(body)).toEqual({ urls: ["https://example.com/p"], sitemaps: [], truncated: false });
  });

  it("matches tags by local name: no namespace, a default one, any prefix", () => {
    const plain = "<urlset><url><loc>https://example.com/1</loc></url></urlset>";
    const prefixed = [
      '<sm:urlset xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9">',
      "<sm:url><sm:loc>https://example.com/1</sm:loc></sm:url>",
      "</sm:urlset>",
    ].join("");
    const index =
      '<ns0:sitemapindex xmlns:ns0="x"><ns0:sitemap><ns0:loc>https://example.com/s1.xml</ns0:loc></ns0:sitemap></ns0:sitemapindex>';
    expect(parse(plain).urls).toEqual(["https://example.com/1"]);
    expect(parse(urlset(["https://example.com/1"])).urls).toEqual(["https://example.com/1"]);
    expect(parse(prefixed).urls).toEqual(["https://example.com/1"]);
    expect(parse(index).sitemaps).toEqual(["https://example.com/s1.xml"]);
  });

  it("decodes CDATA and XML entities and trims whitespace around the loc", () => {
    const body = urlset([
      "<![CDATA[https://example.com/q?a=1&b=2]]>",
      "https://example.com/e?a=1&amp;b=2&#38;c=&#x33;",
      "\n      https://example.com/spaced\n    ",
      "  <![CDATA[ https://example.com/c ]]>  ",
    ]);
    expect(parse(body).urls).toEqual([
      "https://example.com/q?a=1&b=2",
      "https://example.com/e?a=1&b=2&c=3",
      "https://example.com/spaced",
      "https://example.com/c",
    ]);
  });

  it("drops locs that are relative, not http(s), empty or too long, and dedupes the rest", () => {
    const body = urlset([
      "/relative",
      "page.html",
      "ftp://example.com/f",
      "mailto:x@example.com",
      "",
      `https://example.com/${"x".repeat(3_000)}`,
      "https://example.com/a",
      "https://example.com/a#again",
      "https://example.com:443/a",
      "https://example.com/b",
    ]);
    expect(parse(body)).toEqual({ urls: ["https://example.com/a", "https://example.com/b"], sitemaps: [], truncated: false });
  });

  it("reads a UTF-8 byte order mark and percent-encoded or non-ASCII paths", () => {
    const body = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(urlset(["https://example.com/caf\u00e9", "https://example.com/a%20b"])),
    ]);
    expect(parse(body).urls).toEqual(["https://example.com/caf%C3%A9", "https://example.com/a%20b"]);
  });
});

describe("parseSitemap: malformed input", () => {
  it("keeps what it read from a document cut short, without the loc that was cut", () => {
    const body =
      "<urlset><url><loc>https://example.com/1</loc></url><url><loc>https://example.com/2</loc></url><url><loc>https://example.com/pro";
    const result = parse(body);
    expect(result.urls).toEqual(["https://example.com/1", "https://example.com/2"]);
    expect(result.error).toMatch(/truncated/);
  });

  it("reads through stray and mismatched tags without throwing", () => {
    const body = "<urlset><url><loc>https://example.com/1</loc></b></url><url><loc>https://example.com/2</url><junk <<>> &bogus; </urlset>";
    const result = parse(body);
    expect(result.urls).toEqual(["https://example.com/1", "https://example.com/2"]);
  });

  it.each([
    ["an HTML page", "<!DOCTYPE html><html><body><a href='https://example.com/x'>x</a></body></html>", /root element <html>/],
    ["an RSS feed", "<rss><channel><item><link>https://example.com/x</link></item></channel></rss>", /root element <rss>/],
    ["a comment only", "<!-- nothing here -->", /no root element/],
    ["an empty body", "  \n ", /empty/],
    ["deep nesting", `<urlset>${"<a>".repeat(10_000)}`, /nested deeper/],
  ])("reports %s as not a sitemap, with nothing read", (_label, body, error) => {
    const result = parse(body);
    expect(result.urls).toEqual([]);
    expect(result.sitemaps).toEqual([]);
    expect(result.error).toMatch(error);
  });

  it("reports a sitemap URL it cannot scope", () => {
    expect(parse(urlset(["https://example.com/a"]), "not a url").error).toMatch(/bad sitemap URL/);
  });
});

describe("parseSitemap: plain text", () => {
  it("reads one URL per line, trimming, skipping blank and unusable lines", () => {
    const body =
      "https://example.com/a\r\n\r\n   https://example.com/b  \nnot a url\n/relative\nhttps://example.com/a\nhttps://other.example/x\nhttps://example.com/c";
    expect(parse(body)).toEqual({
      urls: ["https://example.com/a", "https://example.com/b", "https://example.com/c"],
      sitemaps: [],
      truncated: false,
    });
  });

  it("applies the path rule to a text sitemap too", () => {
    const body = "https://example.com/docs/a\nhttps://example.com/blog/b\n";
    expect(parse(body, "https://example.com/docs/sitemap.txt").urls).toEqual(["https://example.com/docs/a"]);
  });
});

describe("parseSitemap: gzip", () => {
  const xml = urlset(["https://example.com/a", "https://example.com/b"]);

  it("decompresses a body that starts with the gzip magic, whatever the URL says", () => {
    const expected = { urls: ["https://example.com/a", "https://example.com/b"], sitemaps: [], truncated: false };
    expect(parse(zlib.gzipSync(xml), "https://example.com/sitemap.xml.gz")).toEqual(expected);
    expect(parse(zlib.gzipSync(xml), "https://example.com/sitemap.xml")).toEqual(expected);
    expect(parse(zlib.gzipSync("https://example.com/a\nhttps://example.com/b\n"))).toEqual(expected);
  });

  it("reads a .gz URL whose body came already decompressed as plain XML", () => {
    expect(parse(xml, "https://example.com/sitemap.xml.gz").urls).toEqual(["https://example.com/a", "https://example.com/b"]);
  });

  it("reports corrupt gzip data", () => {
    const gz = zlib.gzipSync(xml);
    expect(parse(gz.subarray(0, gz.length - 20)).error).toMatch(/bad gzip data/);
    expect(parse(Buffer.from([0x1f, 0x8b, 1, 2, 3, 4])).error).toMatch(/bad gzip data/);
  });

  it("fails a gzip bomb (1 GiB of zeros) quickly, inflating no further than the cap", () => {
    // Gzip members may be concatenated (RFC 1952): 64 members of 16 MiB each decode to 1 GiB.
    const member = zlib.gzipSync(Buffer.alloc(16 * 1024 * 1024));
    const bomb = Buffer.concat(Array.from({ length: 64 }, () => member));
    expect(bomb.length).toBeLessThan(2 * 1024 * 1024);
    const started = performance.now();
    const result = parse(bomb);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(result).toEqual({ urls: [], sitemaps: [], truncated: false, error: `sitemap exceeds ${MAX_SITEMAP_BYTES} bytes decompressed` });
  });

  it("caps the decoded size at maxBytes, and an uncompressed body at the same size", () => {
    const body = urlset(Array.from({ length: 100 }, (_, i) => `https://example.com/${i}`));
    expect(parse(zlib.gzipSync(body), SITEMAP_URL, { maxBytes: 1_000 }).error).toMatch(/exceeds 1000 bytes decompressed/);
    expect(parse(body, SITEMAP_URL, { maxBytes: 1_000 }).error).toMatch(/exceeds 1000 bytes/);
    expect(parse(body, SITEMAP_URL, { maxBytes: body.length }).urls).toHaveLength(100);
  });
});

describe("scope: origin and directory of the sitemap", () => {
  const catalog = "https://example.com/catalog/sitemap.xml";

  it.each([
    ["https://example.com/catalog/", true],
    ["https://example.com/catalog/shoes/red?size=9", true],
    ["https://EXAMPLE.com:443/catalog/x", true],
    ["https://example.com/catalog", false],
    ["https://example.com/catalogue/x", false],
    ["https://example.com/other", false],
    ["https://example.com/catalog/../other", false],
    ["https://example.com/", false],
    ["https://www.example.com/catalog/x", false],
    ["https://example.com:8443/catalog/x", false],
    ["http://example.com/catalog/x", false],
    ["not a url", false],
  ])("a sitemap at /catalog/ may list %s: %s", (url, allowed) => {
    expect(inSitemapScope(url, catalog)).toBe(allowed);
  });

  it("takes the directory from the path, not the query", () => {
    expect(inSitemapScope("https://example.com/any/page", "https://example.com/sitemap.php?page=/any/")).toBe(true);
    expect(inSitemapScope("https://example.com/a", "https://example.com/x/sitemap.php?dir=/")).toBe(false);
  });

  it("lets a sitemap named in robots.txt list anything on its origin, and nothing off it", () => {
    expect(inSitemapScope("https://example.com/other", catalog, true)).toBe(true);
    expect(inSitemapScope("https://example.com:8443/other", catalog, true)).toBe(false);
    expect(inSitemapScope("http://example.com/other", catalog, true)).toBe(false);
    expect(inSitemapScope("https://cdn.example.com/other", catalog, true)).toBe(false);
  });

  it("drops out-of-scope page URLs while parsing, unless fromRobots", () => {
    const body = urlset([
      "https://example.com/catalog/a",
      "https://example.com/other/b",
      "http://example.com/catalog/c",
      "https://example.com:8080/catalog/d",
      "https://evil.example/catalog/e",
    ]);
    expect(parse(body, catalog).urls).toEqual(["https://example.com/catalog/a"]);
    expect(parse(body, catalog, { fromRobots: true }).urls).toEqual(["https://example.com/catalog/a", "https://example.com/other/b"]);
  });

  it("keeps child sitemaps of an index on its origin, in any directory", () => {
    const body = [
      "<sitemapindex>",
      "<sitemap><loc>https://example.com/catalog/s1.xml</loc></sitemap>",
      "<sitemap><loc>https://example.com/sitemaps/s2.xml</loc></sitemap>",
      "<sitemap><loc>https://cdn.example.net/s3.xml</loc></sitemap>",
      "<sitemap><loc>http://example.com/s4.xml</loc></sitemap>",
      "</sitemapindex>",
    ].join("");
    expect(parse(body, "https://example.com/catalog/index.xml").sitemaps).toEqual([
      "https://example.com/catalog/s1.xml",
      "https://example.com/sitemaps/s2.xml",
    ]);
  });

  it("names the origin's conventional sitemap", () => {
    expect(sitemapUrlFor("https://Example.com:443/a/b?c=1")).toBe("https://example.com/sitemap.xml");
    expect(sitemapUrlFor("http://example.com:8080/x")).toBe("http://example.com:8080/sitemap.xml");
  });
});

describe("limits", () => {
  it("exports the protocol's limits and the crawl's", () => {
    expect(MAX_SITEMAP_URLS).toBe(50_000);
    expect(MAX_SITEMAP_BYTES).toBe(52_428_800);
    expect(MAX_SITEMAP_DEPTH).toBeGreaterThanOrEqual(1);
    expect(MAX_SITEMAPS_PER_CRAWL).toBeGreaterThanOrEqual(1);
  });

  it("stops at maxUrls entries and says so", () => {
    const locs = Array.from({ length: 10 }, (_, i) => `https://example.com/${i}`);
    expect(parse(urlset(locs), SITEMAP_URL, { maxUrls: 3 })).toEqual({ urls: locs.slice(0, 3), sitemaps: [], truncated: true });
    expect(parse(urlset(locs), SITEMAP_URL, { maxUrls: 10 })).toEqual({ urls: locs, sitemaps: [], truncated: false });
    expect(parse(locs.join("\n"), SITEMAP_URL, { maxUrls: 3 })).toEqual({ urls: locs.slice(0, 3), sitemaps: [], truncated: true });
  });

  it("counts every entry listed against the cap, usable or not", () => {
    const body = urlset(["https://example.com/a", "junk", "https://example.com/a", "https://example.com/b"]);
    expect(parse(body, SITEMAP_URL, { maxUrls: 3 })).toEqual({ urls: ["https://example.com/a"], sitemaps: [], truncated: true });
  });

  it("parses a full 50,000-URL sitemap in reasonable time, and truncates one more", () => {
    const locs = Array.from({ length: MAX_SITEMAP_URLS + 1 }, (_, i) => `https://example.com/products/${i}?ref=sitemap`);
    const entries = locs.map(
      (l) => `<url><loc>${l}</loc><lastmod>2024-05-01T10:00:00+00:00</lastmod><changefreq>daily</changefreq></url>\n`,
    );
    const full = `<urlset ${NS}>\n${entries.slice(0, -1).join("")}</urlset>`;
    const started = performance.now();
    const result = parse(zlib.gzipSync(full));
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(result.truncated).toBe(false);
    expect(result.error).toBeUndefined();
    expect(result.urls).toHaveLength(MAX_SITEMAP_URLS);
    expect(result.urls[MAX_SITEMAP_URLS - 1]).toBe(locs[MAX_SITEMAP_URLS - 1]);

    const over = parse(`<urlset ${NS}>\n${entries.join("")}</urlset>`);
    expect(over.truncated).toBe(true);
    expect(over.urls).toHaveLength(MAX_SITEMAP_URLS);
  });

  it("reads a cap-sized file of junk lines quickly", () => {
    const started = performance.now();
    const result = parse("x\n".repeat(10 * 1024 * 1024));
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(result).toEqual({ urls: [], sitemaps: [], truncated: true });
  });
});
