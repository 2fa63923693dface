import robotsParser from "robots-parser";
import { normalizeUrl } from "./url";

export const USER_AGENT = "SluiceBot/0.1 (+https://github.com/sluice)";
// robots.txt groups are matched on the product token only, without version or comment.
export const ROBOTS_AGENT = "SluiceBot";

export interface RobotsRules {
  isAllowed(url: string): boolean;
  crawlDelayMs: number | null;
  /** The Sitemap: lines (of every group), normalised and deduplicated; any origin, as the protocol allows. */
  sitemaps: string[];
}

// body null means robots.txt is missing or unreachable, which by convention allows
// everything. isAllowed answers true for URLs on another origin than robotsUrl (the
// parser has no opinion on them): callers must pick the rules for the URL's origin.
export function parseRobots(robotsUrl: string, body: string | null): RobotsRules {
  const robot = robotsParser(robotsUrl, body ?? "");
  const delay = robot.getCrawlDelay(ROBOTS_AGENT);
  return {
    isAllowed: (url) => robot.isAllowed(url, ROBOTS_AGENT) ?? true,
    crawlDelayMs: delay !== undefined && Number.isFinite(delay) && delay >= 0 ? delay * 1_000 : null,
    sitemaps: sitemapUrls(robot.getSitemaps(), robotsUrl),
  };
}

// The protocol asks for absolute URLs; a relative one (a common slip) is read against robots.txt.
function sitemapUrls(lines: string[], robotsUrl: string): string[] {
  const urls = new Set<string>();
  for (const line of lines) {
    const url = normalizeUrl(line, robotsUrl);
    if (url !== null) urls.add(url);
  }
  return [...urls];
}

export function robotsUrlFor(pageUrl: string): string {
  return `${new URL(pageUrl).origin}/robots.txt`;
}
