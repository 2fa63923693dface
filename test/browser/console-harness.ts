// What the console's browser tests share: Debian's Chromium driven by playwright-core, pages
// opened with a token already kept for the tab, a watch on every page for script errors and
// unexpected HTTP refusals, the confirmation dialog, and screenshots under test-output/console.
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page, type Response } from "playwright-core";
import type { Sluice } from "../../runtime";
import { REQUIRE_SERVICES, startEmbedded } from "../support/env";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const CHROMIUM_AVAILABLE = fs.existsSync(CHROMIUM);
if (!CHROMIUM_AVAILABLE && REQUIRE_SERVICES) throw new Error(`REQUIRE_SERVICES=1 but there is no Chromium at ${CHROMIUM}`);

export const SCREENSHOTS = path.join(__dirname, "..", "..", "test-output", "console");
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
  });
}

/**
 * The hooks of a suite that drives a Sluice with `env` in Chromium: both started before all and
 * stopped after all; after each test every tab is closed and `log` must hold no problem. Answers
 * the Sluice and the browser, there once beforeAll has run.
 */
export function sluiceInChromium(env: Record<string, string>, log: ProblemLog): { sluice: Sluice; browser: Browser } {
  const started = {} as { sluice: Sluice; browser: Browser };
  beforeAll(async () => {
    [started.sluice, started.browser] = await Promise.all([startEmbedded(env), launchChromium()]);
  });
  afterAll(async () => {
    await started.browser?.close();
    await started.sluice?.stop();
  });
  afterEach(async () => {
    for (const context of started.browser.contexts()) await context.close();
    expect(log.take()).toEqual([]);
  });
  return started;
}

/**
 * HTTP refusals the console provokes on purpose and handles: 401 asks for a token, 403 marks the
 * token read-only. Any other 4xx or 5xx is a problem (GET /api/whoami tells the console what its
 * token may do: no write is ever made to find out).
 */
const expectedRefusal = (res: Response): boolean => res.status() === 401 || res.status() === 403;

/** Collects what a page must not do: log a console error, throw, or get an unexpected HTTP refusal. */
export class ProblemLog {
  readonly problems: string[] = [];
  /** Every request a watched page made that is not a GET, as "METHOD /path". */
  readonly writes: string[] = [];

  watch(page: Page): Page {
    page.on("request", (req) => {
      if (req.method() !== "GET") this.writes.push(`${req.method()} ${new URL(req.url()).pathname}`);
    });
    page.on("console", (m) => {
      // Chromium logs every 4xx/5xx answer as "Failed to load resource"; those are judged by status below.
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) this.problems.push(`console error: ${m.text()}`);
    });
    page.on("pageerror", (err) => this.problems.push(`uncaught: ${err.message}`));
    page.on("response", (res) => {
      if (res.status() >= 400 && !expectedRefusal(res))
        this.problems.push(`${res.request().method()} ${res.url()} answered ${res.status()}`);
    });
    return page;
  }

  /** The problems so far, and a fresh start. */
  take(): string[] {
    this.writes.splice(0);
    return this.problems.splice(0);
  }
}

/** A new tab (its own sessionStorage) with `token` kept, if one is given, at the console's `hash` route. */
export async function openConsole(
  browser: Browser,
  log: ProblemLog,
  apiUrl: string,
  hash: string,
  token?: string,
  viewport = DESKTOP,
): Promise<Page> {
  const context = await browser.newContext({ viewport });
  if (token) await context.addInitScript(`sessionStorage.setItem("sluice.token", ${JSON.stringify(token)})`);
  const page = log.watch(await context.newPage());
  await page.goto(`${apiUrl}/#${hash}`);
  await page.locator("#main").waitFor();
  return page;
}

/** Answers the open confirmation dialog with its first (confirming) button. */
export async function confirm(page: Page): Promise<void> {
  const dialog = page.locator("dialog[open]");
  await dialog.waitFor();
  await dialog.locator(".actions button").first().click();
  await dialog.waitFor({ state: "detached" });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Fails if value() changes during the next `ms` milliseconds (checked every 100 ms): for "nothing more happens". */
export async function expectSteady<T>(value: () => T, ms: number, what: string): Promise<T> {
  const first = value();
  const until = Date.now() + ms;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    const now = value();
    if (now !== first) throw new Error(`${what} changed from ${String(first)} to ${String(now)} within ${ms} ms`);
  }
  return first;
}

/** Waits until value() has not changed for `quietMs` (checked every 100 ms), at most `timeoutMs`; answers it. */
export async function waitUntilSteady<T>(value: () => T, quietMs: number, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = value();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > deadline) throw new Error(`${what} did not settle within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
    const now = value();
    if (now !== last) [last, since] = [now, Date.now()];
  }
  return last;
}
