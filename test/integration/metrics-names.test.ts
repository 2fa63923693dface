// Every metric the Grafana dashboard (deploy/grafana/sluice.json) and the alert rules
// (deploy/prometheus/alerts.yml) use must be one Sluice exports. An embedded node does a little
// of everything (a crawl and its recrawl, an insert job, an id-task against an upstream served
// here), and the names in the two files' expressions are compared with its /metrics scrape.
import fs from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { serveSampleSite, type SiteServer } from "../../fixtures/site-server";
import { serveUpstream, type UpstreamServer } from "../../fixtures/upstream-server";
import { isFinished } from "../../fixtures/api-client";
import type { Sluice } from "../../runtime";
import { http, startEmbedded, waitFor } from "../support/env";
import { metricValue, scrapeCount } from "../support/metrics";

const ROOT = path.join(__dirname, "..", "..");
const DASHBOARD = path.join(ROOT, "deploy", "grafana", "sluice.json");
const ALERTS = path.join(ROOT, "deploy", "prometheus", "alerts.yml");

interface Rule {
  alert?: string;
  record?: string;
  expr?: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

// PromQL words that are not metric names.
const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "atan2",
]);
const KEYWORDS_NUMERIC = new Set(["inf", "nan"]);
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

/**
 * The metric names a PromQL expression reads. Strings, Grafana variables ($x, ${x}), label
 * matchers ({...}), ranges ([5m]) and grouping clauses (by (...), on (...)...) go first; what is
 * left of the identifiers, apart from functions and aggregations (followed by "(") and keywords,
 * are metric names. Durations and numbers never start an identifier.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\$\{[^}]*\}|\$\w+/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w.:])[a-zA-Z_:][\w:]*/g)) {
    const word = m[0];
    const next = bare.slice(m.index + word.length).trimStart();
    if (next.startsWith("(") || KEYWORDS.has(word) || KEYWORDS_NUMERIC.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/** Every expression of the dashboard: its panels' targets (rows' panels too) and its variables' label_values(metric, ...). */
function dashboardExprs(dashboard: { panels: Panel[]; templating?: { list: { query?: string | { query?: string } }[] } }): string[] {
  const walk = (panels: Panel[]): string[] =>
    panels.flatMap((p) => [...(p.targets ?? []).map((t) => t.expr).filter((e): e is string => Boolean(e)), ...walk(p.panels ?? [])]);
  const variables = (dashboard.templating?.list ?? [])
    .map((v) => (typeof v.query === "string" ? v.query : v.query?.query) ?? "")
    .map((q) => /^label_values\(\s*(.+?)\s*,\s*\w+\s*\)$/.exec(q)?.[1])
    .filter((e): e is string => Boolean(e));
  return [...walk(dashboard.panels), ...variables];
}

function alertRules(doc: { groups: { name: string; rules: Rule[] }[] }): Rule[] {
  return doc.groups.flatMap((g) => g.rules);
}

/** A /metrics scrape: the sample names it has, and each family's type (# TYPE). */
function readScrape(text: string): { samples: Set<string>; types: Map<string, string> } {
  const samples = new Set<string>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    const sample = /^([a-zA-Z_:][\w:]*)[{ ]/.exec(line);
    if (sample) samples.add(sample[1]!);
  }
  return { samples, types };
}

/**
 * The names used that the scrape lacks, each with why. `x_bucket`, `x_sum` and `x_count` belong
 * to the histogram (or summary) `x` when the scrape has that family; then the series itself must
 * be there too (Moleculer writes `_sum` and `_count` only for histograms with quantiles).
 */
function missingNames(used: string[], scrape: ReturnType<typeof readScrape>): string[] {
  const missing: string[] = [];
  for (const name of used) {
    const suffix = HISTOGRAM_SUFFIXES.find((s) => name.endsWith(s));
    const family = suffix ? name.slice(0, -suffix.length) : null;
    if (family && ["histogram", "summary"].includes(scrape.types.get(family) ?? "")) {
      if (!scrape.samples.has(name)) missing.push(`${name} (the ${scrape.types.get(family)} ${family} exports no ${suffix} series)`);
    } else if (!scrape.samples.has(name)) {
      missing.push(`${name} (not exported)`);
    }
  }
  return missing;
}

const readDashboard = () => JSON.parse(fs.readFileSync(DASHBOARD, "utf8"));
const readAlerts = () => parse(fs.readFileSync(ALERTS, "utf8"));
const usedNames = () =>
  [...new Set([...dashboardExprs(readDashboard()), ...alertRules(readAlerts()).map((r) => r.expr!)].flatMap(metricNames))].sort();

describe("deploy/grafana and deploy/prometheus (offline)", () => {
  it("the dashboard is an exported Grafana dashboard: a DS_PROMETHEUS input, every panel on it with PromQL targets", () => {
    const dashboard = readDashboard();
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" })]);
    type Node = Panel & { id: number; type: string; datasource?: { uid?: string } };
    const walk = (panels: Node[]): Node[] => panels.flatMap((p) => [p, ...walk((p.panels ?? []) as Node[])]);
    const panels = walk(dashboard.panels).filter((p) => p.type !== "row");
    expect(panels.length).toBeGreaterThan(10);
    const problems = panels.flatMap((p) => [
      ...(p.datasource?.uid === "${DS_PROMETHEUS}" ? [] : [`${p.title}: datasource ${JSON.stringify(p.datasource)}`]),
      ...((p.targets ?? []).length > 0 ? [] : [`${p.title}: no targets`]),
      ...(p.targets ?? []).filter((t) => typeof t.expr !== "string" || t.expr === "").map(() => `${p.title}: a target without expr`),
    ]);
    expect(problems).toEqual([]);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("every alert rule has alert, expr, for, labels.severity and annotations.summary", () => {
    const doc = readAlerts();
    expect(Array.isArray(doc.groups)).toBe(true);
    const rules = alertRules(doc);
    expect(rules.map((r) => r.alert)).toEqual([
      "SluiceDbBudgetSaturated",
      "SluiceNodeInFallback",
      "SluiceBacklogGrowing",
      "SluiceJobFailureRate",
      "SluiceNoSchedulerNode",
    ]);
    for (const r of rules) {
      expect({
        alert: r.alert,
        expr: typeof r.expr,
        for: r.for,
        severity: r.labels?.severity,
        summary: typeof r.annotations?.summary,
      }).toEqual({
        alert: r.alert,
        expr: "string",
        for: expect.stringMatching(/^\d+[smh]$/),
        severity: expect.stringMatching(/^(critical|warning|info)$/),
        summary: "string",
      });
    }
  });

  it("reads the metric names of an expression, and nothing else", () => {
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (le, host) (rate(sluice_fetch_duration_seconds_bucket{namespace="$namespace", le!="x"}[$__rate_interval])))',
      ),
    ).toEqual(["sluice_fetch_duration_seconds_bucket"]);
    expect(
      metricNames(
        'count by (namespace) (up) unless on (namespace) count(x{role="a"} == 1) or absent(y) and z offset 5m > bool 1e3 or sum(w) without (a) * inf',
      ),
    ).toEqual(["up", "x", "y", "z", "w"]);
    expect(metricNames("sum(a) by (le) / ignoring(b) group_left(c) d")).toEqual(["a", "d"]);
  });

  it("flags a misspelled name and a series a histogram does not export", () => {
    const scrape = readScrape(
      [
        "# TYPE sluice_pages_fetched counter",
        'sluice_pages_fetched{nodeID="n"} 3',
        "# TYPE sluice_fetch_duration_seconds histogram",
        'sluice_fetch_duration_seconds_bucket{le="0.1"} 1',
      ].join("\n"),
    );
    expect(missingNames(["sluice_pages_fetched", "sluice_fetch_duration_seconds_bucket"], scrape)).toEqual([]);
    expect(missingNames(["sluice_pages_fetchd", "sluice_fetch_duration_seconds_count"], scrape)).toEqual([
      "sluice_pages_fetchd (not exported)",
      "sluice_fetch_duration_seconds_count (the histogram sluice_fetch_duration_seconds exports no _count series)",
    ]);
  });
});

describe("the dashboard's and the alerts' metrics are exported (embedded)", () => {
  let sluice: Sluice;
  let site: SiteServer;
  let upstream: UpstreamServer;
  let api = "";
  const finished = (path: string, what: string) =>
    waitFor(
      async () => {
        const body = (await http(api, "GET", path)).body;
        return isFinished(body.status) ? body : undefined;
      },
      60_000,
      what,
    );
  const scrape = async () => (await fetch(sluice.metricsUrl!)).text();

  beforeAll(async () => {
    [site, upstream] = await Promise.all([serveSampleSite(), serveUpstream()]);
    sluice = await startEmbedded({ SCHEDULER_MINUTE_MS: "200", UPSTREAM_URL: upstream.url, UPSTREAM_RATE: "500/s" });
    api = sluice.apiUrl!;
  });
  afterAll(async () => {
    await sluice?.stop();
    await Promise.all([site?.close(), upstream?.close()]);
  });

  it("exports every name after a crawl, a recrawl, an insert job and an id-task, and counts each job's outcome once", async () => {
    // A crawl, and a recrawl that finds the pages unchanged.
    for (const round of [1, 2]) {
      const crawl = await http(api, "POST", "/api/crawls", { url: `${site.url}/` });
      expect(crawl.status).toBe(202);
      expect((await finished(`/api/crawls/${crawl.body.id}`, `crawl ${round}`)).status).toBe("succeeded");
    }
    const insert = await http(api, "POST", "/api/inserts", { rows: 100 });
    expect(insert.status).toBe(202);
    expect((await finished(`/api/jobs/${insert.body.id}`, "the insert job")).status).toBe("succeeded");
    const task = await http(api, "POST", "/api/id-tasks", { ids: [1, 2, 3], rpm: 60 });
    expect(task.status).toBe(202);
    expect((await finished(`/api/id-tasks/${task.body.id}`, "the id-task")).status).toBe("succeeded");

    const used = usedNames();
    expect(used.length).toBeGreaterThan(15);
    // The throttle's gauges are set every second: wait for a scrape that has them all.
    let missing: string[] = [];
    const text = await waitFor(
      async () => {
        const t = await scrape();
        missing = missingNames(used, readScrape(t));
        return missing.length === 0 ? t : undefined;
      },
      10_000,
      "a scrape with every name the dashboard and the alerts use",
    ).catch(() => "");
    expect(missing).toEqual([]);

    const value = (name: string, labels: Record<string, string>) => metricValue(text, name, labels);
    const outcome = (kind: string, o: string) => value("sluice_job_outcomes", { kind, outcome: o });
    expect([outcome("crawl", "succeeded"), outcome("insert", "succeeded"), outcome("id-task", "succeeded")]).toEqual([2, 1, 1]);
    expect([outcome("crawl", "failed"), outcome("insert", "failed"), outcome("import", "succeeded")]).toEqual([0, 0, 0]);
    expect(value("sluice_job_duration_seconds_bucket", { kind: "insert", outcome: "succeeded", le: "+Inf" })).toBe(1);
    expect(value("sluice_job_duration_seconds_bucket", { kind: "crawl", outcome: "succeeded", le: "+Inf" })).toBe(2);
    expect(value("sluice_upstream_duration_seconds_bucket", { outcome: "ok", le: "+Inf" })).toBe(3);
    expect(value("sluice_node_role", { role: "scheduler" })).toBe(1);
    // Fetches are labelled by host (the sample site's, port included).
    const host = new URL(site.url).host;
    expect(value("sluice_fetch_duration_seconds_bucket", { host, le: "+Inf" })).toBeGreaterThan(0);
    expect(value("sluice_db_permit_wait_seconds_bucket", { lane: "quick", le: "+Inf" })).toBeGreaterThan(0);
    expect(value("sluice_db_permit_hold_seconds_bucket", { lane: "slow", le: "+Inf" })).toBeGreaterThan(0);
  });

  // Each of these ends an attempt outside the runner that counts the usual outcomes: a pending job
  // stopped, a crawl cancelled, a blocking insert. Each must still be counted once.
  it("counts outcomes that end outside a job runner: a pending job stopped, a crawl cancelled, a blocking insert, a refused upload", async () => {
    const count = (kind: string, outcome: string) => scrapeCount(sluice.metricsUrl!, "sluice_job_outcomes", { kind, outcome });
    const counted = () =>
      Promise.all([count("insert", "cancelled"), count("crawl", "cancelled"), count("insert", "succeeded"), count("import", "failed")]);
    const before = await counted();

    // Paused queues keep both jobs pending, so only the stop and the cancel end them.
    for (const name of ["insert", "crawl"]) expect((await http(api, "PATCH", `/api/queues/${name}`, { paused: true })).status).toBe(200);
    try {
      const insert = await http(api, "POST", "/api/inserts", { rows: 100 });
      expect((await http(api, "POST", `/api/jobs/${insert.body.id}/stop`, {})).body.status).toBe("cancelled");
      const crawl = await http(api, "POST", "/api/crawls", { url: `${site.url}/` });
      expect((await http(api, "DELETE", `/api/crawls/${crawl.body.id}`)).status).toBe(200);
    } finally {
      for (const name of ["insert", "crawl"]) await http(api, "PATCH", `/api/queues/${name}`, { paused: false });
    }
    expect((await http(api, "POST", "/api/inserts/sync", { rows: 10 })).body.status).toBe("succeeded");
    // An upload whose data Postgres refuses: its job ends failed in the upload's own request.
    const upload = await fetch(`${api}/api/imports?table=rows&header=false&columns=name,value`, {
      method: "POST",
      headers: { "content-type": "text/csv" },
      body: "a,1\nb,notanumber\n",
    });
    expect(upload.status).toBe(422);

    // The crawl's count follows its announcement, which is not awaited.
    await waitFor(async () => ((await count("crawl", "cancelled")) > before[1] ? true : undefined), 5_000, "the crawl's cancel counted");
    const after = await counted();
    expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 1, 1]);
  });

  // The transporter refusing the message (NATS unreachable, say) is simulated on the broker: the
  // job row, its status and the count are the real ones.
  it("a job that could not be queued answers 503 NOT_QUEUED, ends failed with nothing loaded, and is counted once", async () => {
    const failed = () => scrapeCount(sluice.metricsUrl!, "sluice_job_outcomes", { kind: "insert", outcome: "failed" });
    const before = await failed();
    const broker = sluice.broker as unknown as { sendToChannel: (...args: unknown[]) => Promise<unknown> };
    const send = broker.sendToChannel;
    broker.sendToChannel = () => Promise.reject(new Error("the transporter is down"));
    let res;
    try {
      res = await http(api, "POST", "/api/inserts", { rows: 100 });
    } finally {
      broker.sendToChannel = send;
    }
    expect(res.status).toBe(503);
    expect(res.body.error).toMatchObject({ code: "NOT_QUEUED", details: { id: expect.any(Number) } });
    const job = (await http(api, "GET", `/api/jobs/${res.body.error.details.id}`)).body;
    expect(job).toMatchObject({ status: "failed", progress: { done: 0 }, error: expect.stringContaining("could not be queued") });
    expect(await failed()).toBe(before + 1);
  });
});
