// The console in real Chromium against a Sluice with API_TOKEN and API_READ_TOKEN: it asks for
// the token when the API answers 401, keeps it for the tab's session only (sessionStorage), reads
// with the read token and is refused (403) when it tries to write with it.
import type { Page } from "playwright-core";
import { CHROMIUM_AVAILABLE, openConsole, ProblemLog, screenshot, sluiceInChromium } from "./console-harness";

const WRITE = "dashboard-write-token-0123456789";
const READ = "dashboard-read-token-0123456789";

(CHROMIUM_AVAILABLE ? describe : describe.skip)("the console asks for a token (Chromium)", () => {
  const log = new ProblemLog();
  const started = sluiceInChromium({ API_TOKEN: WRITE, API_READ_TOKEN: READ }, log);

  const open = (): Promise<Page> => openConsole(started.browser, log, started.sluice.apiUrl!, "/throttle");
  const logIn = async (page: Page, token: string) => {
    await page.locator("#login").waitFor({ state: "visible" });
    await page.fill("#login input[name=token]", token);
    await page.click("#login button");
    await page.locator("#login").waitFor({ state: "detached" });
  };

  it("shows nothing without the token, everything with it, and keeps it in sessionStorage only", async () => {
    const page = await open();
    await page.locator("#login").waitFor({ state: "visible" });
    expect(await page.locator("#auth-error").textContent()).toMatch(/NO_TOKEN/);
    expect(await page.locator("#limits tr").count()).toBe(0);
    await screenshot(page, "login");
    await logIn(page, WRITE);
    await page.locator("#limits tbody tr").first().waitFor();
    await page.locator("#session").waitFor({ state: "visible" });
    expect(await page.evaluate('[sessionStorage.getItem("sluice.token"), localStorage.length, document.cookie]')).toEqual([WRITE, 0, ""]);

    await page.goto(`${started.sluice.apiUrl}/#/jobs`);
    await page.fill("#insert input[name=rows]", "1000");
    await page.click("#insert button");
    await page.waitForURL(/#\/jobs\/\d+$/);
    await page.locator(".job[data-status=succeeded]").waitFor();
    expect(log.writes).toEqual(["POST /api/inserts"]);

    // Another tab (a new browser context) has no token: it asks again.
    const other = await open();
    await other.locator("#login").waitFor({ state: "visible" });
    expect(await other.evaluate('sessionStorage.getItem("sluice.token")')).toBeNull();

    // Forgetting the token hides the data behind the prompt again.
    await page.click("#forget");
    await page.locator("#login").waitFor({ state: "visible" });
    expect(await page.evaluate('sessionStorage.getItem("sluice.token")')).toBeNull();
  });

  it("reads with the read-only token, hides the writes, and is refused when it writes anyway", async () => {
    const page = await open();
    await logIn(page, READ);
    await page.locator("#limits tbody tr").first().waitFor();
    await page.locator("#read-only").waitFor();
    await page.goto(`${started.sluice.apiUrl}/#/jobs`);
    await page.locator("#jobs-title").waitFor();
    expect(await page.locator("#insert").count()).toBe(0);
    const refused = await page.evaluate(
      `fetch("/api/inserts", { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer " + sessionStorage.getItem("sluice.token") }, body: '{"rows":10}' })
        .then(async (r) => [r.status, (await r.json()).error.code])`,
    );
    expect(refused).toEqual([403, "FORBIDDEN"]);
    expect(await page.locator("#login").count()).toBe(0);
    // What the token may do came from GET /api/whoami: the only write is the refused one above.
    expect(log.writes).toEqual(["POST /api/inserts"]);
  });
});
