// (Page scripts are passed as strings: they run in the browser, not under this file's types.)
// The dashboard in real Chromium against a Sluice with API_TOKEN and API_READ_TOKEN: it asks
// for the token when the API answers 401, keeps it for the tab's session only, reads with the
// read token and is refused (403) when it tries to write with it.
import fs from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";
import type { Sluice } from "../../runtime";
import { REQUIRE_SERVICES, startEmbedded } from "../support/env";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const WRITE = "dashboard-write-token-0123456789";
const READ = "dashboard-read-token-0123456789";
const available = fs.existsSync(CHROMIUM);
if (!available && REQUIRE_SERVICES) throw new Error(`REQUIRE_SERVICES=1 but there is no Chromium at ${CHROMIUM}`);

(available ? describe : describe.skip)("the dashboard asks for a token (Chromium)", () => {
  let sluice: Sluice;
  let browser: Browser;

  beforeAll(async () => {
    sluice = await startEmbedded({ API_TOKEN: WRITE, API_READ_TOKEN: READ });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await sluice?.stop();
  });

  const open = async (): Promise<Page> => {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${sluice.apiUrl}/`);
    return page;
  };
  const logIn = async (page: Page, token: string) => {
    await page.locator("#login").waitFor({ state: "visible" });
    await page.fill("#login input[name=token]", token);
    await page.click("#login button");
    await page.locator("#login").waitFor({ state: "hidden" });
  };

  it("shows nothing without the token, everything with it, and keeps it in sessionStorage only", async () => {
    const page = await open();
    await page.locator("#login").waitFor({ state: "visible" });
    expect(await page.locator("#error").textContent()).toMatch(/NO_TOKEN/);
    expect(await page.locator("#limits tr").count()).toBe(0);
    await logIn(page, WRITE);
    await page.locator("#limits tr").first().waitFor();
    await page.locator("#session").waitFor({ state: "visible" });
    expect(await page.evaluate('[sessionStorage.getItem("sluice.token"), localStorage.length, document.cookie]')).toEqual([WRITE, 0, ""]);

    await page.fill("#insert input[name=rows]", "1000");
    await page.click("#insert button");
    await page.locator("#jobs tr", { hasText: "insert" }).first().waitFor();
    expect(await page.locator("#error").textContent()).toBe("");

    // Another tab (a new browser context) has no token: it asks again.
    const other = await open();
    await other.locator("#login").waitFor({ state: "visible" });
    expect(await other.evaluate('sessionStorage.getItem("sluice.token")')).toBeNull();

    // Forgetting the token hides the data behind the prompt again.
    await page.click("#forget");
    await page.locator("#login").waitFor({ state: "visible" });
    expect(await page.evaluate('sessionStorage.getItem("sluice.token")')).toBeNull();
  });

  it("reads with the read-only token and says so when it tries to write", async () => {
    const page = await open();
    await logIn(page, READ);
    await page.locator("#limits tr").first().waitFor();
    await page.fill("#insert input[name=rows]", "10");
    await page.click("#insert button");
    await page.locator("#error", { hasText: "FORBIDDEN" }).waitFor();
    expect(await page.locator("#login").isVisible()).toBe(false);
  });
});
