// Reading a Prometheus scrape in tests: one sample's value by its name and labels.

/** The value of the first sample of `name` carrying every one of `labels`; undefined when there is none. */
export function metricValue(scrape: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const line = scrape
    .split("\n")
    .find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** A counter's value from the node's /metrics at `url`; 0 before its first increment. */
export async function scrapeCount(url: string, name: string, labels: Record<string, string>): Promise<number> {
  return metricValue(await (await fetch(url)).text(), name, labels) ?? 0;
}
