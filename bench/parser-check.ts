// The crawler's parser (extractPage) against the cheerio reference (fixtures/cheerio-extract.ts) on
// every page of a directory of HTML: the unit test does the same on the sample site and generated
// pages; this covers a real manual, which is an apt package and so not the unit suite's to read.
import fs from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { cheerioExtract } from "../fixtures/cheerio-extract";
import { extractPage } from "../lib/crawl/url";

type Extracted = ReturnType<typeof extractPage>;

export interface ParserDifference {
  file: string;
  ours: Extracted;
  theirs: Extracted;
}

export interface ParserCheck {
  pages: number;
  /** Links found over all pages, by extractPage. */
  links: number;
  differences: ParserDifference[];
  oursSeconds: number;
  cheerioSeconds: number;
}

export function compareWithCheerio(dir: string, files: string[], origin: string): ParserCheck {
  const check: ParserCheck = { pages: files.length, links: 0, differences: [], oursSeconds: 0, cheerioSeconds: 0 };
  for (const file of files) {
    const html = fs.readFileSync(path.join(dir, file), "utf8");
    const url = `${origin}/${file}`;
    const t0 = performance.now();
    const ours = extractPage(html, url);
    const t1 = performance.now();
    const theirs = cheerioExtract(html, url);
    check.oursSeconds += (t1 - t0) / 1000;
    check.cheerioSeconds += (performance.now() - t1) / 1000;
    check.links += ours.links.length;
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) check.differences.push({ file, ours, theirs });
  }
  return check;
}

/** How two results differ, in a line or three. */
export function describeDifference(d: ParserDifference): string[] {
  const lines: string[] = [];
  if (d.ours.title !== d.theirs.title) lines.push(`title: ours ${JSON.stringify(d.ours.title)}, cheerio ${JSON.stringify(d.theirs.title)}`);
  const theirs = new Set(d.theirs.links);
  const ours = new Set(d.ours.links);
  const onlyOurs = d.ours.links.filter((l) => !theirs.has(l));
  const onlyTheirs = d.theirs.links.filter((l) => !ours.has(l));
  const few = (links: string[]) => links.slice(0, 3).join(" ") + (links.length > 3 ? ` … (${links.length})` : "");
  if (onlyOurs.length) lines.push(`links only extractPage finds: ${few(onlyOurs)}`);
  if (onlyTheirs.length) lines.push(`links only cheerio finds: ${few(onlyTheirs)}`);
  if (!onlyOurs.length && !onlyTheirs.length && d.ours.title === d.theirs.title) lines.push("same links in another order");
  return lines;
}
