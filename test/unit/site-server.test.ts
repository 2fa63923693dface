import * as http from "node:http";
import { performance } from "node:perf_hooks";
import {
  GENERATED_FAULT_PATHS,
  HUGE_BODY_BYTES,
  SAMPLE_SITE_EXPECTED,
  generatedPageDepths,
  generatedPageLinks,
  generatedSiteDepth,
  serveGeneratedSite,
  serveSampleSite,
  type GeneratedSiteServer,
  type SiteServer,
} from "../../fixtures/site-server";

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  bytes: number;
}

/** Raw GET (no URL normalisation, no keep-alive, no redirect following). */
function get(base: string, rawPath: string, opts: { keepBody?: boolean; method?: string } = {}): Promise<Res> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: Number(port), path: rawPath, method: opts.method ?? "GET", agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on("data", (c: Buffer) => {
          bytes += c.length;
          if (opts.keepBody !== false) chunks.push(c);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8"), bytes }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const decode = (s: string): string =>
  s
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");

function titleOf(html: string): string | undefined {
  const m = /<title>([^<]*)<\/title>/i.exec(html);
  return m?.[1] === undefined ? undefined : decode(m[1]);
}

function hrefs(html: string): string[] {
  return [...html.matchAll(/<a\s[^>]*?href="([^"]*)"/gi)].map((m) => decode(m[1] ?? ""));
}

/** path + query of an absolute URL */
const pq = (u: URL): string => u.pathname + u.search;

describe("serveSampleSite", () => {
  let site: SiteServer;
  beforeAll(async () => {
    site = await serveSampleSite();
  });
  afterAll(() => site.close());

  test("listens on 127.0.0.1 with an ephemeral port", () => {
    expect(site.url).toBe(`http://127.0.0.1:${site.port}`);
    expect(site.port).toBeGreaterThan(0);
  });

  test("serves the index with a title", async () => {
    const res = await get(site.url, "/");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/html/);
    expect(titleOf(res.body)).toBe("The Locks & Sluices Handbook");
    expect(Number(res.headers["content-length"])).toBe(Buffer.byteLength(res.body));
  });

  test("maps /dir/ to index.html and 301s /dir to /dir/", async () => {
    const res = await get(site.url, "/guide/");
    expect(res.status).toBe(200);
    expect(titleOf(res.body)).toBe("Operating Guide: Overview");
    const noSlash = await get(site.url, "/guide");
    expect(noSlash.status).toBe(301);
    expect(noSlash.headers.location).toBe("/guide/");
  });

  test("ignores the query string when locating the file", async () => {
    const res = await get(site.url, "/maintenance/stoppages.html?year=2024");
    expect(res.status).toBe(200);
    expect(titleOf(res.body)).toBe("Planned Stoppages");
  });

  test("404 with a small HTML body", async () => {
    const res = await get(site.url, "/guide/ropes.html");
    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toMatch(/^text\/html/);
    expect(titleOf(res.body)).toBe("Not Found");
  });

  test("301 from /old-page.html to an existing page", async () => {
    const res = await get(site.url, "/old-page.html");
    expect(res.status).toBe(301);
    expect(res.headers.location).toBe("/history.html");
    const target = await get(site.url, "/history.html");
    expect(target.status).toBe(200);
  });

  test("CSV is served as text/csv", async () => {
    const res = await get(site.url, "/files/lock-dimensions.csv");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/csv/);
    expect(res.body.split("\n")[0]).toBe("lock,reach,length_m,width_m,rise_m,type");
  });

  test("robots.txt disallows /private/", async () => {
    const res = await get(site.url, "/robots.txt");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/plain/);
    expect(res.body).toMatch(/^User-agent: \*$/m);
    expect(res.body).toMatch(/^Disallow: \/private\/$/m);
  });

  test.each(["/../package.json", "/%2e%2e/package.json", "/guide/..%2f..%2fpackage.json", "/..%5c..%5cpackage.json"])(
    "path traversal %s is blocked",
    async (p) => {
      const res = await get(site.url, p);
      expect([400, 403, 404]).toContain(res.status);
      expect(res.body).not.toContain('"devDependencies"');
    },
  );

  test("rejects other methods; HEAD has headers but no body", async () => {
    expect((await get(site.url, "/", { method: "POST" })).status).toBe(405);
    const head = await get(site.url, "/about.html", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.bytes).toBe(0);
    expect(Number(head.headers["content-length"])).toBeGreaterThan(0);
  });

  test("every HTML file has a distinct title; samples match", async () => {
    const titles = new Map<string, string>();
    const paths = [
      ...SAMPLE_SITE_EXPECTED.storedPaths.filter((p) => !p.includes("?")),
      "/private/",
      "/private/rota.html",
      "/unlisted.html",
    ];
    for (const p of paths) {
      const res = await get(site.url, p);
      expect(res.status).toBe(200);
      const t = titleOf(res.body);
      expect(t).toBeTruthy();
      titles.set(p, t ?? "");
    }
    expect(new Set(titles.values()).size).toBe(paths.length);
    for (const s of SAMPLE_SITE_EXPECTED.samples) {
      expect(titleOf((await get(site.url, s.path)).body)).toBe(s.title);
    }
  });

  test("a BFS crawl under the documented rules matches SAMPLE_SITE_EXPECTED", async () => {
    const fresh = await serveSampleSite();
    try {
      const origin = new URL(fresh.url).origin;
      const robots = (await get(fresh.url, "/robots.txt")).body;
      const disallowed = [...robots.matchAll(/^Disallow:\s*(\S+)/gim)].map((m) => m[1] ?? "");
      const start = new URL(fresh.url + "/");
      const depth = new Map<string, number>([[start.href, 0]]);
      const queue = [start.href];
      const stored: string[] = [];
      const failed: string[] = [];
      const skipped: string[] = [];
      const external = new Set<string>();
      const enqueue = (href: string, base: string, d: number): void => {
        const u = new URL(href, base);
        u.hash = "";
        if (u.origin !== origin) {
          external.add(u.href);
          return;
        }
        if (!depth.has(u.href) && d <= 10) {
          depth.set(u.href, d);
          queue.push(u.href);
        }
      };
      for (let url = queue.shift(); url !== undefined; url = queue.shift()) {
        const u = new URL(url);
        const d = depth.get(url) ?? 0;
        if (disallowed.some((p) => u.pathname.startsWith(p))) {
          skipped.push(pq(u));
          continue;
        }
        const res = await get(fresh.url, pq(u));
        if (res.status >= 300 && res.status < 400) {
          skipped.push(pq(u));
          enqueue(String(res.headers.location), url, d + 1);
        } else if (res.status >= 400) {
          failed.push(pq(u));
        } else if (!String(res.headers["content-type"]).startsWith("text/html")) {
          skipped.push(pq(u));
        } else {
          stored.push(pq(u));
          for (const h of hrefs(res.body)) enqueue(h, url, d + 1);
        }
      }
      const E = SAMPLE_SITE_EXPECTED;
      expect({ discovered: depth.size, stored: stored.length, failed: failed.length, skipped: skipped.length }).toEqual({
        discovered: E.discovered,
        stored: E.stored,
        failed: E.failed,
        skipped: E.skipped,
      });
      expect(E.discovered).toBe(E.stored + E.failed + E.skipped);
      expect([...stored].sort()).toEqual([...E.storedPaths].sort());
      expect([...failed].sort()).toEqual([...E.failedPaths].sort());
      expect([...skipped].sort()).toEqual([...E.skippedPaths].sort());
      expect(Math.max(...depth.values())).toBe(E.maxLinkDepth);
      expect([...external]).toEqual([...E.externalLinks]);
      const requested = fresh.requests.map((r) => r.path);
      for (const p of E.neverFetched) expect(requested).not.toContain(p);
      expect(requested.length).toBe(1 + E.discovered - E.robotsDisallowed.length);
    } finally {
      await fresh.close();
    }
  });

  test("the cycle A → B → C → A exists", async () => {
    const [a, b, c] = SAMPLE_SITE_EXPECTED.cycle;
    const linksOf = async (p: string): Promise<string[]> => hrefs((await get(site.url, p)).body).map((h) => pq(new URL(h, site.url + p)));
    expect(await linksOf(a)).toContain(b);
    expect(await linksOf(b)).toContain(c);
    expect(await linksOf(c)).toContain(a);
  });
});

describe("generated site: pure helpers", () => {
  test("links are deterministic, distinct, in range and never self", () => {
    for (const pages of [1, 2, 7, 100, 1000]) {
      for (let i = 0; i < pages; i++) {
        const links = generatedPageLinks(i, pages);
        expect(generatedPageLinks(i, pages)).toEqual(links);
        expect(new Set(links).size).toBe(links.length);
        for (const j of links) {
          expect(j).toBeGreaterThanOrEqual(0);
          expect(j).toBeLessThan(pages);
          expect(j).not.toBe(i);
        }
        if (pages > 5) expect(links.length).toBe(5);
      }
    }
    expect(generatedPageLinks(3, 100).slice(0, 2)).toEqual([7, 8]);
    expect(generatedPageLinks(3, 100, 8)).toHaveLength(8);
    expect(generatedPageLinks(3, 100, 0)).toEqual([7, 8]); // tree links are always present
  });

  test("depth is bounded by the tree and every page is reachable", () => {
    for (const pages of [1, 2, 3, 10, 100, 5000]) {
      const depths = generatedPageDepths(pages);
      expect(depths.every((d) => d >= 1)).toBe(true);
      expect(depths[0]).toBe(1);
      expect(generatedSiteDepth(pages)).toBeLessThanOrEqual(1 + Math.floor(Math.log2(pages)));
    }
    expect(generatedSiteDepth(1)).toBe(1);
    expect(generatedSiteDepth(7, 2)).toBe(3); // pure binary tree: / → 0 → 1,2 → 3..6
    expect(() => generatedSiteDepth(0)).toThrow(RangeError);
  });
});

describe("serveGeneratedSite", () => {
  /** BFS over the live site from entryUrl, following <a href> with a regex extractor. */
  async function crawl(site: GeneratedSiteServer): Promise<Map<string, number>> {
    const depth = new Map<string, number>([[site.entryUrl, 0]]);
    const queue = [site.entryUrl];
    for (let url = queue.shift(); url !== undefined; url = queue.shift()) {
      const res = await get(site.url, pq(new URL(url)));
      expect(res.status).toBe(200);
      for (const h of hrefs(res.body)) {
        const u = new URL(h, url);
        u.hash = "";
        if (!depth.has(u.href)) {
          depth.set(u.href, (depth.get(url) ?? 0) + 1);
          queue.push(u.href);
        }
      }
    }
    return depth;
  }

  test("every page is reachable from the entry; expectedPages and depthNeeded are right", async () => {
    const site = await serveGeneratedSite({ pages: 150 });
    try {
      expect(site.entryUrl).toBe(site.url + "/");
      expect(site.expectedPages).toBe(151);
      const depth = await crawl(site);
      expect(depth.size).toBe(site.expectedPages);
      const expectedUrls = [site.url + "/", ...Array.from({ length: 150 }, (_, i) => `${site.url}/p/${i}`)];
      expect([...depth.keys()].sort()).toEqual(expectedUrls.sort());
      expect(Math.max(...depth.values())).toBe(site.depthNeeded);
      expect(site.depthNeeded).toBe(generatedSiteDepth(150));
      const helperDepths = generatedPageDepths(150);
      for (let i = 0; i < 150; i++) expect(depth.get(`${site.url}/p/${i}`)).toBe(helperDepths[i]);
    } finally {
      await site.close();
    }
  });

  test("pages carry a title and exactly the deterministic links", async () => {
    const a = await serveGeneratedSite({ pages: 40, linksPerPage: 6 });
    const b = await serveGeneratedSite({ pages: 40, linksPerPage: 6 });
    try {
      for (const i of [0, 5, 39]) {
        const ra = await get(a.url, `/p/${i}`);
        const rb = await get(b.url, `/p/${i}`);
        expect(ra.body).toBe(rb.body);
        expect(titleOf(ra.body)).toBe(`Page ${i}`);
        const linked = hrefs(ra.body).map((h) => new URL(h, `${a.url}/p/${i}`).pathname);
        expect(linked).toEqual(generatedPageLinks(i, 40, 6).map((j) => `/p/${j}`));
      }
      const entry = await get(a.url, "/");
      expect(hrefs(entry.body)).toEqual(["/p/0"]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("robots.txt, out-of-range, non-canonical and fault paths (faults off) are 404", async () => {
    const site = await serveGeneratedSite({ pages: 10 });
    try {
      for (const p of ["/robots.txt", "/p/10", "/p/07", "/p/3/", "/p/", ...Object.values(GENERATED_FAULT_PATHS)]) {
        expect([p, (await get(site.url, p)).status]).toEqual([p, 404]);
      }
      expect((await get(site.url, "/p/3?x=1")).status).toBe(200);
      expect(site.faults).toBe(false);
    } finally {
      await site.close();
    }
  });

  test("rejects bad options", async () => {
    await expect(serveGeneratedSite({ pages: 0 })).rejects.toThrow(RangeError);
    await expect(serveGeneratedSite({ pages: 2.5 })).rejects.toThrow(RangeError);
    await expect(serveGeneratedSite({ pages: 3, linksPerPage: -1 })).rejects.toThrow(RangeError);
  });

  test("request log and inFlightPeak are recorded; delayMs delays responses", async () => {
    const site = await serveGeneratedSite({ pages: 10, delayMs: 80 });
    try {
      const t0 = performance.now();
      const results = await Promise.all([0, 1, 2, 3, 4].map((i) => get(site.url, `/p/${i}`)));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(75);
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      expect(site.inFlightPeak).toBe(5);
      expect(site.inFlight).toBe(0);
      expect(site.requests).toHaveLength(5);
      expect(site.requests.map((r) => r.path).sort()).toEqual(["/p/0", "/p/1", "/p/2", "/p/3", "/p/4"]);
      for (const r of site.requests) {
        expect(r.method).toBe("GET");
        expect(r.status).toBe(200);
        expect(r.end - r.start).toBeGreaterThanOrEqual(75);
      }
      await get(site.url, "/nope");
      expect(site.requests.at(-1)).toMatchObject({ path: "/nope", status: 404 });
      expect(site.inFlightPeak).toBe(5);

      site.resetStats();
      expect(site.requests).toHaveLength(0);
      expect(site.inFlightPeak).toBe(0);
      await get(site.url, "/p/1");
      expect(site.inFlightPeak).toBe(1);
    } finally {
      await site.close();
    }
  });

  describe("faults", () => {
    let site: GeneratedSiteServer;
    beforeEach(async () => {
      site = await serveGeneratedSite({ pages: 20, faults: true });
    });
    afterEach(() => site.close());

    test("the entry page links the fault routes; they are exposed as faultPaths", async () => {
      const F = site.faultPaths;
      expect(F).toEqual(GENERATED_FAULT_PATHS);
      const links = hrefs((await get(site.url, "/")).body);
      expect(links).toEqual(["/p/0", F.hang, F.huge, F.loop, F.error]);
      expect(site.expectedPages).toBe(21);
    });

    test("redirect loop and 500", async () => {
      const a = await get(site.url, site.faultPaths.loop);
      expect(a.status).toBe(302);
      expect(a.headers.location).toBe(site.faultPaths.loopTarget);
      const b = await get(site.url, site.faultPaths.loopTarget);
      expect(b.status).toBe(302);
      expect(b.headers.location).toBe(site.faultPaths.loop);
      expect((await get(site.url, site.faultPaths.error)).status).toBe(500);
    });

    test("huge streams exactly HUGE_BODY_BYTES (≥ 10 MB), chunked", async () => {
      const res = await get(site.url, site.faultPaths.huge, { keepBody: false });
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/html/);
      expect(res.headers["content-length"]).toBeUndefined();
      expect(res.headers["transfer-encoding"]).toBe("chunked");
      expect(res.bytes).toBe(HUGE_BODY_BYTES);
      expect(res.bytes).toBeGreaterThanOrEqual(10 * 1024 * 1024);
    });

    test("huge stops streaming when the client aborts", async () => {
      await new Promise<void>((resolve, reject) => {
        const req = http.get({ host: "127.0.0.1", port: site.port, path: site.faultPaths.huge, agent: false }, (res) => {
          let n = 0;
          res.on("data", (c: Buffer) => {
            n += c.length;
            if (n > 256 * 1024) req.destroy();
          });
        });
        req.on("error", () => undefined);
        req.on("close", () => resolve());
        setTimeout(() => reject(new Error("no close")), 5000).unref();
      });
      const deadline = performance.now() + 2000;
      while (site.inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(site.inFlight).toBe(0);
    });

    test("a hanging request does not prevent close()", async () => {
      const hung = get(site.url, site.faultPaths.hang).then(
        () => "responded",
        () => "errored",
      );
      const deadline = performance.now() + 2000;
      while (site.inFlight === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(site.inFlight).toBe(1);
      const t0 = performance.now();
      await site.close();
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(await hung).toBe("errored");
      const entry = site.requests.find((r) => r.path === site.faultPaths.hang);
      expect(entry?.status).toBe(0);
      expect(entry?.end).toBeGreaterThanOrEqual(entry?.start ?? Infinity);
      expect(site.inFlight).toBe(0);
      await site.close(); // idempotent
    });
  });

  test("close() destroys idle keep-alive sockets and cancels pending delays", async () => {
    const site = await serveGeneratedSite({ pages: 3, delayMs: 10_000 });
    const agent = new http.Agent({ keepAlive: true });
    try {
      const pending = new Promise<string>((resolve) => {
        const req = http.get({ host: "127.0.0.1", port: site.port, path: "/p/0", agent }, () => resolve("responded"));
        req.on("error", () => resolve("errored"));
      });
      while (site.inFlight === 0) await new Promise((r) => setTimeout(r, 5));
      const t0 = performance.now();
      await site.close();
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(await pending).toBe("errored");
    } finally {
      agent.destroy();
    }
  });
});
