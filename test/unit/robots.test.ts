import { ROBOTS_AGENT, USER_AGENT, parseRobots, robotsUrlFor } from "../../lib/crawl/robots";

const ROBOTS_URL = "https://example.com/robots.txt";

describe("parseRobots", () => {
  it("applies the * group when there is no SluiceBot group", () => {
    const rules = parseRobots(ROBOTS_URL, "User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n");
    expect(rules.isAllowed("https://example.com/private/page")).toBe(false);
    expect(rules.isAllowed("https://example.com/private")).toBe(true);
    expect(rules.isAllowed("https://example.com/public")).toBe(true);
    expect(rules.crawlDelayMs).toBe(2_000);
  });

  it("prefers the SluiceBot group, matched case-insensitively", () => {
    const body = [
      "User-agent: *",
      "Disallow: /",
      "",
      "User-agent: sluicebot",
      "Disallow: /admin",
      "Allow: /admin/public",
      "Crawl-delay: 0.5",
    ].join("\n");
    const rules = parseRobots(ROBOTS_URL, body);
    expect(rules.isAllowed("https://example.com/")).toBe(true);
    expect(rules.isAllowed("https://example.com/admin/settings")).toBe(false);
    expect(rules.isAllowed("https://example.com/admin/public/x")).toBe(true);
    expect(rules.crawlDelayMs).toBe(500);
  });

  it("honours wildcards and end anchors", () => {
    const rules = parseRobots(ROBOTS_URL, "User-agent: *\nDisallow: /*.pdf$\nDisallow: /search?\n");
    expect(rules.isAllowed("https://example.com/doc.pdf")).toBe(false);
    expect(rules.isAllowed("https://example.com/doc.pdf?download=1")).toBe(true);
    expect(rules.isAllowed("https://example.com/search?q=x")).toBe(false);
  });

  it("allows everything when the body is null", () => {
    const rules = parseRobots(ROBOTS_URL, null);
    expect(rules.isAllowed("https://example.com/anything")).toBe(true);
    expect(rules.crawlDelayMs).toBeNull();
  });

  it("has no crawl delay unless one is given, and ignores a garbage one", () => {
    expect(parseRobots(ROBOTS_URL, "User-agent: *\nDisallow: /x\n").crawlDelayMs).toBeNull();
    expect(parseRobots(ROBOTS_URL, "User-agent: *\nCrawl-delay: soon\n").crawlDelayMs).toBeNull();
  });

  it("answers true for a URL on another origin (the caller must pick the right robots.txt)", () => {
    const rules = parseRobots(ROBOTS_URL, "User-agent: *\nDisallow: /\n");
    expect(rules.isAllowed("https://example.com/a")).toBe(false);
    expect(rules.isAllowed("https://other.example/a")).toBe(true);
  });
});

describe("parseRobots sitemaps", () => {
  it("lists the Sitemap: lines of every group, normalised, deduplicated, in order, on any origin", () => {
    const body = [
      "Sitemap: https://example.com/sitemap_index.xml",
      "User-agent: *",
      "Disallow: /private/",
      "sitemap:   https://EXAMPLE.com:443/news.xml#x  ",
      "",
      "User-agent: other",
      "Sitemap: https://cdn.example.net/sitemaps/example.xml.gz",
      "Sitemap: https://example.com/sitemap_index.xml",
    ].join("\n");
    expect(parseRobots(ROBOTS_URL, body).sitemaps).toEqual([
      "https://example.com/sitemap_index.xml",
      "https://example.com/news.xml",
      "https://cdn.example.net/sitemaps/example.xml.gz",
    ]);
  });

  it("reads a relative Sitemap: line against robots.txt and drops unusable ones", () => {
    const body = "Sitemap: /sitemap.xml\nSitemap: ftp://example.com/s.xml\nSitemap:\n";
    expect(parseRobots(ROBOTS_URL, body).sitemaps).toEqual(["https://example.com/sitemap.xml"]);
  });

  it("has none without a body or Sitemap: lines", () => {
    expect(parseRobots(ROBOTS_URL, null).sitemaps).toEqual([]);
    expect(parseRobots(ROBOTS_URL, "User-agent: *\nDisallow: /\n").sitemaps).toEqual([]);
  });
});

describe("robotsUrlFor", () => {
  it("keeps scheme, host and non-default port and drops the rest", () => {
    expect(robotsUrlFor("https://Example.com/a/b?c=1#d")).toBe("https://example.com/robots.txt");
    expect(robotsUrlFor("http://example.com:8080/x")).toBe("http://example.com:8080/robots.txt");
    expect(robotsUrlFor("http://example.com:80/x")).toBe("http://example.com/robots.txt");
  });
});

describe("agent strings", () => {
  it("uses the product token of the User-Agent for robots matching", () => {
    expect(USER_AGENT.startsWith(`${ROBOTS_AGENT}/`)).toBe(true);
  });
});
