// The API's docs page in real Chromium against a Sluice with API_TOKEN: without a token it asks
// for one, with the console's token it renders every operation, "Try it out" sends the token,
// and no request leaves this origin (the page, Swagger UI and the document all come from it).
import type { Page } from "playwright-core";
import { CHROMIUM_AVAILABLE, ProblemLog, screenshot, sluiceInChromium } from "./console-harness";

const WRITE = "docs-write-token-0123456789";
const READ = "docs-read-token-0123456789";

(CHROMIUM_AVAILABLE ? describe : describe.skip)("the API docs page (Chromium)", () => {
  const log = new ProblemLog();
  const started = sluiceInChromium({ API_TOKEN: WRITE, API_READ_TOKEN: READ }, log);
  const requested: string[] = [];

  afterEach(() => {
    const origin = new URL(started.sluice.apiUrl!).origin;
    expect(requested.splice(0).filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith("data:"))).toEqual([]);
  });

  async function open(path: string, token?: string): Promise<Page> {
    const context = await started.browser.newContext({ viewport: { width: 1280, height: 900 } });
    if (token) await context.addInitScript(`sessionStorage.setItem("sluice.token", ${JSON.stringify(token)})`);
    const page = log.watch(await context.newPage());
    page.on("request", (req) => requested.push(req.url()));
    await page.goto(`${started.sluice.apiUrl}${path}`);
    return page;
  }

  it("asks for a token, then renders every operation of the document", async () => {
    const page = await open("/docs/");
    await page.locator("#token-form").waitFor({ state: "visible" });
    await page.fill("#token-form input[name=token]", READ);
    await page.click("#token-form button");
    await page.locator(".opblock").first().waitFor();
    const res = await fetch(`${started.sluice.apiUrl}/api/openapi.json`, { headers: { authorization: `Bearer ${READ}` } });
    const doc = (await res.json()) as { paths: Record<string, object> };
    const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
    expect(await page.locator(".opblock").count()).toBe(operations);
    expect(await page.locator(".opblock-summary-path", { hasText: "/api/crawls/{id}/failures" }).count()).toBe(1);
    expect(await page.evaluate('sessionStorage.getItem("sluice.token")')).toBe(READ);
    await screenshot(page, "api-docs");
  });

  it("sends the console's token when an operation is tried out", async () => {
    const page = await open("/docs/", WRITE);
    const block = page.locator(".opblock", { has: page.locator('.opblock-summary-path[data-path="/api/whoami"]') });
    await block.locator(".opblock-summary").click();
    await block.locator(".try-out__btn").click();
    const answer = page.waitForResponse((res) => res.url().endsWith("/api/whoami"));
    await block.locator(".execute").click();
    const res = await answer;
    expect(res.request().headers().authorization).toBe(`Bearer ${WRITE}`);
    expect(await res.json()).toEqual({ caller: "writer", canWrite: true });
  });

  it("renders at /api/docs for a client that sends the token", async () => {
    const context = await started.browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${READ}` } });
    const page = log.watch(await context.newPage());
    page.on("request", (req) => requested.push(req.url()));
    await context.addInitScript(`sessionStorage.setItem("sluice.token", ${JSON.stringify(READ)})`);
    await page.goto(`${started.sluice.apiUrl}/api/docs`);
    await page.locator(".opblock").first().waitFor();
  });
});
