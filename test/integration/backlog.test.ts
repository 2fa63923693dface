// Queue lag on a real Postgres, with no worker running: everything submitted waits, and the
// backlog (API and Prometheus gauge) counts it exactly; and the dashboard that shows it.
import type { Sluice } from "../../runtime";
import { createTestDatabase, describeWithServers, http, startEmbedded } from "../support/env";
import { serveGeneratedSite } from "../../fixtures/site-server";
import fs from "node:fs";
import path from "node:path";

const CONSOLE_DIR = path.join(__dirname, "..", "..", "public", "console");

describeWithServers(["DATABASE_URL"], "backlog", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sluice: Sluice;
  let api = "";
  let site: Awaited<ReturnType<typeof serveGeneratedSite>>;

  beforeAll(async () => {
    db = await createTestDatabase();
    site = await serveGeneratedSite({ pages: 5 });
    // The api role alone: crawls and jobs are accepted, nobody takes them.
    sluice = await startEmbedded({ DATABASE_URL: db.url, SERVICES: "api" });
    api = sluice.apiUrl!;
  }, 60_000);
  afterAll(async () => {
    await sluice?.stop();
    await db?.drop();
    await site?.close();
  });

  it("counts queued crawl URLs, pending insert jobs and waiting ids, in the API and in /metrics", async () => {
    expect((await http(api, "GET", "/api/backlog")).body).toEqual({ crawlUrls: 0, insertJobs: 0, ids: 0 });

    for (let i = 0; i < 2; i++) expect((await http(api, "POST", "/api/crawls", { url: `${site.entryUrl}?copy=${i}` })).status).toBe(202);
    for (let i = 0; i < 3; i++) expect((await http(api, "POST", "/api/inserts", { rows: 10 })).status).toBe(202);
    // Ids wait once their minute has sent them (a scheduler node does that; here, by hand).
    const task = await http(api, "POST", "/api/id-tasks", { ids: [11, 12, 13, 14, 15, 16], rpm: 100 });
    expect(task.status).toBe(202);
    await sluice.db.query(`UPDATE id_task_slots SET state = 'dispatched' WHERE external_id <= 14`);
    const backlog = await http(api, "GET", "/api/backlog");
    expect(backlog.status).toBe(200);
    // Each crawl's root URL is its one queued frontier row.
    expect(backlog.body).toEqual({ crawlUrls: 2, insertJobs: 3, ids: 4 });

    const metrics = await (await fetch(sluice.metricsUrl!)).text();
    expect(metrics).toMatch(/^sluice_backlog\{[^}]*queue="crawl_urls"\} 2$/m);
    expect(metrics).toMatch(/^sluice_backlog\{[^}]*queue="insert_jobs"\} 3$/m);
    expect(metrics).toMatch(/^sluice_backlog\{[^}]*queue="ids"\} 4$/m);

    // A cancelled crawl's queued URLs are no longer work.
    const { body: crawls } = await http(api, "GET", "/api/crawls");
    expect((await http(api, "DELETE", `/api/crawls/${crawls.items[0].id}`)).status).toBe(200);
    expect((await http(api, "GET", "/api/backlog")).body.crawlUrls).toBe(1);
  });

  it("serves the console, its vendor modules, and every list and figure it reads answers 200", async () => {
    const page = await fetch(`${api}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    const html = await page.text();
    // The import map's modules come from node_modules through /vendor: nothing from outside.
    const vendor = [...html.matchAll(/"(\/vendor\/[^"]+)"/g)].map((m) => m[1]!);
    expect(vendor).toEqual(expect.arrayContaining(["/vendor/preact.module.js", "/vendor/htm-preact.module.js", "/vendor/uPlot.esm.js"]));
    for (const path of vendor) {
      const res = await fetch(`${api}${path}`);
      expect([path, res.status, res.headers.get("content-type")]).toEqual([path, 200, expect.stringMatching(/^text\/(javascript|css)/)]);
    }
    expect(html).not.toMatch(/(src|href)="https?:/);
    // The fixed reads of the console's modules (get("/api/...") with no parameters in the path).
    const modules = fs
      .readdirSync(CONSOLE_DIR, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".js"));
    const reads = new Set(
      modules.flatMap((f) => [...fs.readFileSync(path.join(CONSOLE_DIR, f), "utf8").matchAll(/get\("(\/api\/[^"?]+)/g)].map((m) => m[1]!)),
    );
    expect([...reads]).toEqual(expect.arrayContaining(["/api/whoami", "/api/jobs", "/api/crawls", "/api/nodes"]));
    for (const read of reads) expect([read, (await http(api, "GET", read)).status]).toEqual([read, 200]);
  });
});
