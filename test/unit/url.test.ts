import { extractPage, normalizeUrl, sameOrigin } from "../../lib/crawl/url";

describe("normalizeUrl", () => {
  const page = "https://example.com/dir/page.html?x=1";

  it.each([
    ["../a", "https://example.com/a"],
    ["b/c", "https://example.com/dir/b/c"],
    ["/root", "https://example.com/root"],
    ["//other.host/x", "https://other.host/x"],
    ["#frag", "https://example.com/dir/page.html?x=1"],
    ["?q=2", "https://example.com/dir/page.html?q=2"],
    ["  /padded  ", "https://example.com/padded"],
  ])("resolves %j against the page", (raw, expected) => {
    expect(normalizeUrl(raw, page)).toBe(expected);
  });

  it.each([
    ["http://example.com:80/a", "http://example.com/a"],
    ["https://example.com:443/a", "https://example.com/a"],
    ["http://example.com:8080/a", "http://example.com:8080/a"],
    ["HTTP://EXAMPLE.COM/Path", "http://example.com/Path"],
    ["https://example.com/a#section", "https://example.com/a"],
    ["https://example.com/a?", "https://example.com/a"],
    ["https://example.com/a?#x", "https://example.com/a"],
    ["https://example.com", "https://example.com/"],
    ["https://example.com?b=2&a=1", "https://example.com/?b=2&a=1"],
  ])("normalises %j", (raw, expected) => {
    expect(normalizeUrl(raw)).toBe(expected);
  });

  it.each([
    "mailto:someone@example.com",
    "javascript:alert(1)",
    "ftp://example.com/file",
    "data:text/html,hi",
    "tel:+123",
    "",
    "   ",
    "not a url",
    "http://",
  ])("rejects %j", (raw) => {
    expect(normalizeUrl(raw)).toBeNull();
  });

  it("rejects a non-http scheme even with a base", () => {
    expect(normalizeUrl("javascript:void(0)", page)).toBeNull();
    expect(normalizeUrl("", page)).toBeNull();
  });
});

describe("sameOrigin", () => {
  it("compares scheme, host and port", () => {
    expect(sameOrigin("https://example.com/a", "https://EXAMPLE.com:443/b?c")).toBe(true);
    expect(sameOrigin("http://example.com/", "https://example.com/")).toBe(false);
    expect(sameOrigin("https://example.com/", "https://example.com:8443/")).toBe(false);
    expect(sameOrigin("https://example.com/", "https://www.example.com/")).toBe(false);
  });

  it("is false for unparsable or opaque-origin URLs", () => {
    expect(sameOrigin("nope", "https://example.com/")).toBe(false);
    expect(sameOrigin("https://example.com/", "")).toBe(false);
    expect(sameOrigin("data:text/plain,a", "data:text/plain,a")).toBe(false);
  });
});

describe("extractPage", () => {
  const pageUrl = "https://example.com/blog/post";

  it("returns the trimmed title and resolved links in document order without duplicates", () => {
    const html = `<html><head><title>
        Hello  world </title></head><body>
      <a href="../about">About</a>
      <a href="/contact#form">Contact</a>
      <a href="//cdn.example.org/x">CDN</a>
      <a href="/contact">Contact again</a>
      <a href="mailto:me@example.com">Mail</a>
      <a href="javascript:void(0)">JS</a>
      <a name="anchor">no href</a>
      <a href="">empty</a>
      <map><area href="/map-target" alt="m"></map>
      <a href="HTTPS://EXAMPLE.COM:443/about">About again</a>
    </body></html>`;
    expect(extractPage(html, pageUrl)).toEqual({
      title: "Hello  world",
      links: ["https://example.com/about", "https://example.com/contact", "https://cdn.example.org/x", "https://example.com/map-target"],
    });
  });

  it("returns a null title when missing or blank", () => {
    expect(extractPage("<p>no title</p>", pageUrl).title).toBeNull();
    expect(extractPage("<title>   </title>", pageUrl).title).toBeNull();
  });

  it("resolves links against <base href>, itself relative to the page", () => {
    const html = `<head><base href="/static/v2/"></head><a href="img/x">x</a><a href="/abs">y</a>`;
    expect(extractPage(html, pageUrl).links).toEqual(["https://example.com/static/v2/img/x", "https://example.com/abs"]);
  });

  it("falls back to the page URL when <base href> is not http(s)", () => {
    const html = `<base href="javascript:alert(1)"><a href="x">x</a>`;
    expect(extractPage(html, pageUrl).links).toEqual(["https://example.com/blog/x"]);
  });

  it("skips links with a nofollow rel token", () => {
    const html = `
      <a href="/a" rel="nofollow">a</a>
      <a href="/b" rel="noopener NOFOLLOW">b</a>
      <a href="/c" rel="noopener">c</a>
      <area href="/d" rel="nofollow">`;
    expect(extractPage(html, pageUrl).links).toEqual(["https://example.com/c"]);
  });

  it("keeps a nofollow-free duplicate of a nofollow link", () => {
    const html = `<a href="/a" rel="nofollow">a</a><a href="/a">a</a>`;
    expect(extractPage(html, pageUrl).links).toEqual(["https://example.com/a"]);
  });
});
