// The operator console in real Chromium against an embedded Sluice with API_TOKEN and
// API_READ_TOKEN: each scenario works through the views as an operator would, updates arrive
// over /api/events (no reloads), and no page logs an error. Every view is saved as a screenshot
// under test-output/console.
import type { Browser, Page } from "playwright-core";
import type { Sluice } from "../../runtime";
import { serveGeneratedSite, type GeneratedSiteServer } from "../../fixtures/site-server";
import { http, startEmbedded, waitFor } from "../support/env";
import {
  CHROMIUM_AVAILABLE,
  confirm,
  expectSteady,
  launchChromium,
  openConsole,
  PHONE,
  ProblemLog,
  screenshot,
  waitUntilSteady,
} from "./console-harness";

const WRITE = "console-write-token-0123456789";
const READ = "console-read-token-0123456789";
jest.setTimeout(120_000);

(CHROMIUM_AVAILABLE ? describe : describe.skip)("the console (Chromium)", () => {
  let sluice: Sluice;
  let site: GeneratedSiteServer;
  let browser: Browser;
  const log = new ProblemLog();
  const api = (method: string, path: string, body?: unknown, token = WRITE) =>
    http(sluice.apiUrl!, method, path, body, { authorization: `Bearer ${token}` });
  const open = (hash: string, token: string | undefined = WRITE, viewport?: typeof PHONE): Promise<Page> =>
    openConsole(browser, log, sluice.apiUrl!, hash, token, viewport);
  const crawlDone = async (id: number) =>
    waitFor(
      async () => {
        const { body } = await api("GET", `/api/crawls/${id}`);
        return ["succeeded", "failed", "cancelled"].includes(body.status) ? body : undefined;
      },
      60_000,
      `crawl ${id} to finish`,
    );

  beforeAll(async () => {
    [sluice, site, browser] = await Promise.all([
      startEmbedded({ API_TOKEN: WRITE, API_READ_TOKEN: READ }),
      serveGeneratedSite({ pages: 20 }),
      launchChromium(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
    await sluice?.stop();
  });
  afterEach(async () => {
    for (const context of browser.contexts()) await context.close();
    expect(log.take()).toEqual([]);
  });

  it("starts a crawl from the form and shows it reach succeeded without a reload", async () => {
    const page = await open("/crawls");
    await page.fill("#start-crawl input[name=url]", site.entryUrl);
    await page.fill("#start-crawl input[name=maxPages]", "50");
    await page.fill("#start-crawl input[name=maxDepth]", "10");
    await page.click("#start-crawl button");
    await page.waitForURL(/#\/crawls\/\d+$/);
    await page.evaluate("window.__sameDocument = true");
    await page.locator(".crawl[data-status=succeeded]").waitFor({ timeout: 60_000 });
    expect(await page.evaluate("window.__sameDocument")).toBe(true);
    const id = Number(/crawls\/(\d+)/.exec(page.url())![1]);
    const { body: crawl } = await api("GET", `/api/crawls/${id}`);
    expect(crawl.pages.stored).toBe(site.expectedPages);
    await page.locator("#count-stored", { hasText: String(site.expectedPages) }).waitFor();
    await page.locator("#crawl-pages tbody tr").first().waitFor();
    await screenshot(page, "crawl");
    await page.goto(`${sluice.apiUrl}/#/crawls`);
    await page.locator(`#crawls tr[data-crawl="${id}"]`).waitFor();
    await screenshot(page, "crawls");
  });

  it("stops a running insert job from its page: it shows cancelled and the row count is unchanged", async () => {
    const before = (await api("GET", "/api/rows/count")).body.count as number;
    const page = await open("/jobs");
    await page.fill("#insert input[name=rows]", "2000000");
    await page.click("#insert button");
    await page.waitForURL(/#\/jobs\/\d+$/);
    await page.locator(".job[data-status=running]").waitFor({ timeout: 30_000 });
    await page.click("#job-actions button:has-text('Stop')");
    await confirm(page);
    await page.locator(".job[data-status=cancelled]").waitFor();
    expect((await api("GET", "/api/rows/count")).body.count).toBe(before);
    await page.locator("#timeline [data-type=stopped]").waitFor();
    await screenshot(page, "job-cancelled");
    // A finished job can be deleted from its page: then the jobs list shows, without it.
    const id = Number(/jobs\/(\d+)/.exec(page.url())![1]);
    await page.click("#job-actions button:has-text('Delete')");
    await confirm(page);
    await page.waitForURL(/#\/jobs$/);
    await page.locator("#jobs tbody tr").first().waitFor();
    expect(await page.locator(`#jobs tr[data-job="${id}"]`).count()).toBe(0);
    expect((await api("GET", `/api/jobs/${id}`)).status).toBe(404);
    expect(log.writes).toEqual(["POST /api/inserts", `POST /api/jobs/${id}/stop`, `DELETE /api/jobs/${id}`]);
  });

  it("retries a failed job and shows the new attempt in its timeline", async () => {
    const { body: created } = await api("POST", "/api/crawls", { url: `${site.url}/no-such-root` });
    const failed = await crawlDone(created.id);
    expect(failed.status).toBe("failed");
    const page = await open(`/jobs/${failed.jobId}`);
    await page.locator(".job[data-status=failed]").waitFor();
    await page.locator("#timeline [data-type=failed]").waitFor();
    const ran = page.locator("#timeline li:is([data-type=attempt], [data-type=running])");
    const runsBefore = await ran.count();
    await page.click("#job-actions button:has-text('Retry')");
    await confirm(page);
    await page.locator("#timeline [data-type=retry]").waitFor();
    await waitFor(async () => ((await ran.count()) > runsBefore ? true : undefined), 30_000, "a new attempt in the timeline");
    await page.locator(".job[data-status=failed]").waitFor({ timeout: 30_000 });
    await screenshot(page, "job-retried");
  });

  it("filters jobs by kind and by text", async () => {
    const { body: created } = await api("POST", "/api/crawls", { url: `${site.url}/filter-me` });
    const crawl = await crawlDone(created.id);
    await api("POST", "/api/inserts", { rows: 10 });
    const phone = await open("/jobs", WRITE, PHONE);
    await phone.locator("#jobs tbody tr").first().waitFor();
    await screenshot(phone, "jobs-phone");
    const page = await open("/jobs");
    await page.locator(`#jobs tbody tr[data-job="${crawl.jobId}"]`).waitFor();
    await screenshot(page, "jobs");
    await page.selectOption("select[name=kind]", "crawl");
    await page.waitForURL(/kind=crawl/);
    await page.waitForFunction(
      `[...document.querySelectorAll("#jobs tbody tr td:nth-child(2)")].every((td) => td.textContent === "crawl")`,
    );
    expect(await page.locator("#jobs tbody tr").count()).toBeGreaterThan(0);
    // A word of the crawl's URL finds its job, and only it; the kind filter stays.
    await page.fill("input[type=search]", "filter-me");
    await page.waitForURL(/q=filter-me/);
    expect(new URL(page.url()).hash).toMatch(/kind=crawl/);
    await page.waitForFunction(`[...document.querySelectorAll("#jobs tbody tr")].map((tr) => tr.dataset.job).join() === "${crawl.jobId}"`);
    expect(await page.locator(`#jobs tr[data-job="${crawl.jobId}"] td:nth-child(2)`).textContent()).toBe("crawl");
    expect(await page.locator("select[name=kind]").inputValue()).toBe("crawl");
    await screenshot(page, "jobs-filtered");
    // The text alone finds it too; and the other kind, with the same text, finds nothing.
    await page.selectOption("select[name=kind]", "insert");
    await page.waitForURL(/kind=insert/);
    await page.locator(".empty", { hasText: "No jobs match" }).waitFor();
    expect(await page.locator("#jobs tbody tr").count()).toBe(0);
  });

  it("shows a known plan's fill in the heatmap and one minute's ids", async () => {
    const page = await open("/id-tasks");
    const slotReads: string[] = [];
    page.on("request", (req) => req.url().includes("/slots") && slotReads.push(new URL(req.url()).search));
    await page.fill("#schedule input[name=ids]", "5001-5025");
    await page.fill("#schedule input[name=rpm]", "10");
    await page.click("#schedule button");
    await page.waitForURL(/#\/id-tasks\/\d+$/);
    const cells = page.locator("#heatmap a.cell");
    await cells.first().waitFor();
    // 25 ids at 10 a minute: two full minutes, then five, in consecutive minutes.
    expect(await cells.evaluateAll((els) => els.map((el) => Number(el.getAttribute("data-count"))))).toEqual([10, 10, 5]);
    await screenshot(page, "id-task");
    // By keyboard: the arrow keys move between minutes, Enter opens one.
    await cells.nth(1).focus();
    await page.keyboard.press("ArrowLeft");
    expect(await page.evaluate("document.activeElement.dataset.minute")).toBe(await cells.first().getAttribute("data-minute"));
    await page.keyboard.press("Enter");
    await page.waitForURL(/\?minute=/);
    await page.locator("#minute-slots tbody tr").first().waitFor();
    expect(await page.locator("#minute-slots tbody tr").count()).toBe(10);
    // The calendar comes from /minutes; /slots is read only for the minute opened.
    expect(slotReads.length).toBeGreaterThan(0);
    expect(slotReads.every((q) => new URLSearchParams(q).has("minute"))).toBe(true);
    await screenshot(page, "id-task-minute");
    await page.goto(`${sluice.apiUrl}/#/id-tasks`);
    await page.locator("#id-tasks tbody tr").first().waitFor();
    await screenshot(page, "id-tasks");
  });

  it("moves between minutes across the hour's edge by keyboard (the plan's hours are rows)", async () => {
    // 610 ids at 10 a minute fill this hour's minutes to :59 and go on at :00 of the next.
    const ids = Array.from({ length: 610 }, (_, i) => 7001 + i);
    const { body: task } = await api("POST", "/api/id-tasks", { ids, rpm: 10 });
    const page = await open(`/id-tasks/${task.id}`);
    const lastOfFirstHour = page.locator('#heatmap a.cell[data-row="0"][data-col="59"]');
    await lastOfFirstHour.waitFor();
    const focused = () => page.evaluate("[document.activeElement.dataset.row, document.activeElement.dataset.col].join()");
    await lastOfFirstHour.focus();
    await page.keyboard.press("ArrowRight");
    expect(await focused()).toBe("1,0");
    await page.keyboard.press("ArrowLeft");
    expect(await focused()).toBe("0,59");
    expect((await api("POST", `/api/jobs/${task.id}/stop`, {})).status).toBe(200);
  });

  it("edits a limit after a confirmation, and GET /api/throttle shows it", async () => {
    const resource = `fetch:${new URL(site.url).host}`;
    const has = async () =>
      ((await api("GET", "/api/throttle")).body.resources as { resource: string }[]).some((r) => r.resource === resource);
    if (!(await has())) await crawlDone((await api("POST", "/api/crawls", { url: site.entryUrl, maxPages: 2 })).body.id);
    const page = await open("/throttle");
    const row = page.locator(`#limits tr[data-resource="${resource}"]`);
    await row.locator("button:has-text('Edit')").click();
    await page.fill("#edit-limit input[name=maxConcurrent]", "3");
    await page.fill("#edit-limit input[name=rate]", "7/s");
    await page.click("#edit-limit button:has-text('Save')");
    await confirm(page);
    const shown = await waitFor(
      async () => {
        const r = ((await api("GET", "/api/throttle")).body.resources as { resource: string; limit: number; rate: string }[]).find(
          (x) => x.resource === resource,
        );
        return r?.limit === 3 && r.rate === "7/s" ? r : undefined;
      },
      10_000,
      "the new limit in GET /api/throttle",
    );
    expect(shown).toMatchObject({ limit: 3, rate: "7/s" });
    await row.locator("[data-field=rate]", { hasText: "7/s" }).waitFor();
    await screenshot(page, "throttle");
  });

  it("hides the writes from the read-only token, and the server refuses them", async () => {
    const { body: job } = await api("POST", "/api/inserts", { rows: 10 });
    const page = await open("/jobs", READ);
    await page.locator("#read-only").waitFor();
    await page.locator("#jobs tbody tr").first().waitFor();
    expect(await page.locator("#insert").count()).toBe(0);
    await page.goto(`${sluice.apiUrl}/#/crawls`);
    await page.locator("#crawls-title").waitFor();
    expect(await page.locator("#start-crawl").count()).toBe(0);
    await page.goto(`${sluice.apiUrl}/#/jobs/${job.id}`);
    await page.locator(".job").waitFor();
    expect(await page.locator("#job-actions").count()).toBe(0);
    await page.goto(`${sluice.apiUrl}/#/throttle`);
    await page.locator("#limits").waitFor();
    expect(await page.locator("#limits button").count()).toBe(0);
    await screenshot(page, "throttle-read-only");
    const refused = await page.evaluate(
      `fetch("/api/inserts", { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer " + sessionStorage.getItem("sluice.token") }, body: "{}" }).then((r) => r.status)`,
    );
    expect(refused).toBe(403);
    // The console found out from GET /api/whoami: the only write made is the one above.
    expect(log.writes).toEqual(["POST /api/inserts"]);
    expect((await api("GET", "/api/whoami", undefined, READ)).body).toEqual({ caller: "reader", canWrite: false });
  });

  it("pauses a crawl: none of its URLs are fetched until it resumes", async () => {
    const slow = await serveGeneratedSite({ pages: 60 });
    try {
      await api("PATCH", "/api/throttle", { resource: `fetch:${new URL(slow.url).host}`, rate: "10/s" });
      const { body: crawl } = await api("POST", "/api/crawls", { url: slow.entryUrl, maxPages: 100 });
      const page = await open(`/crawls/${crawl.id}`);
      await waitFor(() => (slow.requests.length >= 5 ? true : undefined), 30_000, "the crawl to fetch some pages");
      await page.click("#crawl-actions button:has-text('Pause')");
      await confirm(page);
      await page.locator(".crawl[data-paused=true]").waitFor();
      // Fetches already under way may finish; then nothing more reaches the site.
      await waitUntilSteady(() => `${slow.inFlight}:${slow.requests.length}`, 1_000, 20_000, "the fetches under way at the pause");
      const fetched = await expectSteady(() => slow.requests.length, 2_500, "requests to the paused crawl's site");
      expect(fetched).toBeLessThan(slow.expectedPages);
      await screenshot(page, "crawl-paused");
      await page.click("#crawl-actions button:has-text('Resume')");
      await confirm(page);
      await page.locator(".crawl[data-status=succeeded]").waitFor({ timeout: 60_000 });
      expect(slow.requests.length).toBeGreaterThan(fetched);
    } finally {
      await slow.close();
    }
  });

  it("shows the overview and the data tables, with a user edited from its record", async () => {
    const page = await open("/");
    await page.locator("#nodes tbody tr").first().waitFor();
    await page.locator("#job-counts").waitFor();
    await page.locator("#limit-charts .chart-card canvas").first().waitFor();
    await page.locator("#queue-charts .chart-card").first().waitFor();
    // The charts follow throttle.stats on the event stream: a change shows with no request for it.
    const reads: string[] = [];
    page.on("request", (req) => /\/api\/(throttle|queues)$/.test(new URL(req.url()).pathname) && reads.push(req.url()));
    const resource = `fetch:${new URL(site.url).host}`;
    await api("PATCH", "/api/throttle", { resource, rate: "9/s" });
    await page.locator(`#limit-charts [data-resource="${resource}"] h3`, { hasText: "rate 9/s" }).waitFor({ timeout: 10_000 });
    expect(reads).toEqual([]);
    await screenshot(page, "overview");
    await page.goto(`${sluice.apiUrl}/#/data/pages`);
    await page.locator("#data-table[data-table=pages] tbody tr").first().waitFor();
    await page.click("#data-table th button:has-text('bytes')");
    await page.waitForURL(/sort=bytes/);
    await page.click("#data-table th button:has-text('bytes')");
    await page.waitForURL(/sort=-bytes/);
    const { body: biggest } = await api("GET", "/api/pages?sort=-bytes&limit=1");
    await page.locator(`#data-table tbody tr:first-child a:text-is("${biggest.items[0].id}")`).waitFor();
    await screenshot(page, "data-pages");
    await page.goto(`${sluice.apiUrl}/#/data/rows`);
    await page.locator("#data-table[data-table=rows] tbody tr").first().waitFor();
    await screenshot(page, "data-rows");
    const { body: user } = await api("POST", "/api/users", { externalId: 987654, name: "Ada", email: "ada@example.org" });
    await page.goto(`${sluice.apiUrl}/#/data/users?q=Ada`);
    await page.locator(`#data-table[data-table=users] tbody tr:has-text("ada@example.org")`).waitFor();
    await screenshot(page, "data-users");
    await page.click(`#data-table a:has-text("${user.id}")`);
    await page.fill("#user-form input[name=name]", "Ada Lovelace");
    await page.click("#user-form button");
    await page.locator("#user-form [role=status]").waitFor();
    expect((await api("GET", `/api/users/${user.id}`)).body.name).toBe("Ada Lovelace");
    await screenshot(page, "data-user");
  });
});
