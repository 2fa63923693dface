// `sitemaps: true` (issue 13): a crawl's frontier is seeded from robots.txt's Sitemap: lines and
// /sitemap.xml, through a sitemap index and a gzipped sitemap, with max_pages and the same-origin
// rule holding. The site's pages link nowhere: only the sitemaps can find them.
import zlib from "node:zlib";
import { startTrackedServer, type SiteServer } from "../../fixtures/site/tracked-server";
import { renderHtml } from "../../fixtures/site-server";
import type { Sluice } from "../../runtime";
import { crawlToEnd } from "../support/crawls";
import { createTestDatabase, describeWithServers, http as api, startEmbedded } from "../support/env";

const urlset = (urls: string[]) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">${urls
    .map((u) => `<url><loc>${u}</loc></url>`)
    .join("")}</urlset>`;
const sitemapIndex = (urls: string[]) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">${urls
    .map((u) => `<sitemap><loc>${u}</loc></sitemap>`)
    .join("")}</sitemapindex>`;

async function serveSitemapSite(): Promise<SiteServer> {
  let origin = "";
  const routes: Record<string, () => [string, Buffer | string]> = {
    "/robots.txt": () => [
      "text/plain",
      `User-agent: *\nDisallow: /private\nSitemap: ${origin}/sitemap_index.xml\nSitemap: http://other.test/sitemap.xml\n`,
    ],
    "/sitemap_index.xml": () => [
      "application/xml",
      sitemapIndex([`${origin}/sitemaps/a.xml.gz`, `${origin}/sitemaps/b.xml`, "http://other.test/c.xml"]),
    ],
    // Served as a file, with no Content-Encoding: the crawler must see the gzip itself.
    "/sitemaps/a.xml.gz": () => [
      "application/gzip",
      zlib.gzipSync(urlset([`${origin}/orphan-1`, `${origin}/orphan-2`, "http://other.test/elsewhere", `${origin}/private/secret`])),
    ],
    "/sitemaps/b.xml": () => ["application/xml", urlset([`${origin}/orphan-3`, `${origin}/orphan-1`])],
    "/sitemap.xml": () => ["application/xml", urlset([`${origin}/orphan-4`, `${origin}/`])],
  };
  const tracked = await startTrackedServer((req, res) => {
    const path = req.url ?? "/";
    const route = routes[path];
    if (route) {
      const [type, body] = route();
      res.writeHead(200, { "content-type": type });
      return res.end(body);
    }
    if (path === "/" || /^\/orphan-\d$/.test(path)) {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end(renderHtml(`Page ${path}`, "no links here"));
    }
    res.writeHead(404).end();
  });
  origin = tracked.site.url;
  return tracked.site;
}

describeWithServers(["DATABASE_URL"], "crawls seeded from sitemaps", () => {
  let sluice: Sluice;
  let site: SiteServer;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    site = await serveSitemapSite();
    const db = await createTestDatabase();
    drop = () => db.drop();
    sluice = await startEmbedded({ DATABASE_URL: db.url });
  });
  afterAll(async () => {
    await sluice?.stop();
    await site?.close();
    await drop?.();
  });

  const storedPaths = async (crawlId: number) => {
    const { body } = await api(sluice.apiUrl!, "GET", `/api/pages?crawl=${crawlId}&limit=100`);
    return (body.items as { url: string }[]).map((p) => new URL(p.url).pathname).sort();
  };

  it("finds the pages only the sitemaps list: robots.txt's index, its gzipped child, and /sitemap.xml", async () => {
    const crawl = await crawlToEnd(sluice, { url: `${site.url}/`, sitemaps: true });
    expect(crawl).toMatchObject({ status: "succeeded", sitemaps: true });
    // Off-origin entries and sitemaps are left out; /private is admitted like any same-origin link,
    // and skipped by robots.txt without being fetched.
    expect(await storedPaths(crawl.id)).toEqual(["/", "/orphan-1", "/orphan-2", "/orphan-3", "/orphan-4"]);
    expect(crawl.pages).toMatchObject({ discovered: 6, stored: 5, failed: 0, skipped: 1 });
    expect(site.requests.map((r) => r.path)).not.toContain("/private/secret");
  });

  it("without sitemaps: true, reads none", async () => {
    site.resetStats();
    const crawl = await crawlToEnd(sluice, { url: `${site.url}/` });
    expect(crawl.pages.discovered).toBe(1);
    expect(site.requests.map((r) => r.path).filter((p) => p.includes("sitemap"))).toEqual([]);
  });

  it("holds max_pages", async () => {
    const crawl = await crawlToEnd(sluice, { url: `${site.url}/`, sitemaps: true, maxPages: 3 });
    expect(crawl.status).toBe("succeeded");
    expect(crawl.pages.discovered).toBe(3);
  });

  it("refuses a sitemaps flag that is not a boolean, naming it", async () => {
    const res = await api(sluice.apiUrl!, "POST", "/api/crawls", { url: `${site.url}/`, sitemaps: "yes" });
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.body)).toContain("sitemaps");
  });
});
