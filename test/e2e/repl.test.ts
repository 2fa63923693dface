// `npm start -- --repl`: the REPL's crawl command starts a crawl and prints progress until done.
import { SAMPLE_SITE_EXPECTED, serveSampleSite, type SiteServer } from "../../fixtures/site-server";
import { createCluster, type Cluster, type ClusterNode } from "../support/cluster";
import { http, waitFor } from "../support/env";

describe("REPL", () => {
  let site: SiteServer;
  let cluster: Cluster;
  let node: ClusterNode;

  beforeAll(async () => {
    site = await serveSampleSite();
    cluster = await createCluster({ embedded: true, stopSignal: "SIGTERM" });
    cluster.onCleanup(() => site.close());
    node = await cluster.start("repl", { args: ["--repl"] });
  });
  afterAll(() => cluster?.cleanup());

  it("crawl <url> --max-pages N prints progress until the crawl finishes", async () => {
    await waitFor(() => (node.output().includes("mol $") ? true : undefined), 60_000, "the REPL prompt");
    node.child.stdin!.write(`crawl ${site.url}/\n`);
    const e = SAMPLE_SITE_EXPECTED;
    const final = `crawl 1 succeeded: discovered ${e.discovered}, fetched ${e.stored}, stored ${e.stored}, unchanged 0, failed ${e.failed}, skipped ${e.skipped}`;
    await waitFor(() => (node.output().includes(final) ? true : undefined), 60_000, `"${final}" in ${node.output()}`);
    expect(node.output()).toMatch(/crawl 1 (pending|running): discovered/);

    node.child.stdin!.write(`crawl ${site.url}/ --max-pages 5\n`);
    await waitFor(() => (/crawl 2 succeeded: discovered 5,/.test(node.output()) ? true : undefined), 60_000, "the capped crawl");

    node.child.stdin!.write("throttle\n");
    await waitFor(
      () => (/fetch:127\.0\.0\.1:\d+.*in-memory/.test(node.output()) && /'db'.*node bulkhead/.test(node.output()) ? true : undefined),
      10_000,
      "the throttle table",
    );
    node.child.stdin!.write(`throttle set fetch:${new URL(site.url).host} maxConcurrent 2\n`);
    await waitFor(() => (/changed: .*maxConcurrent: 2/s.test(node.output()) ? true : undefined), 10_000, "the change");

    node.child.stdin!.write(`crawl ftp://example.org/\n`);
    await waitFor(() => (/crawl failed: .*not an http/.test(node.output()) ? true : undefined), 10_000, "a clear error");
  });

  it("insert <n>, jobs, job <id>, stop <id>, schedule and slots", async () => {
    await waitFor(() => (node.output().includes("mol $") ? true : undefined), 60_000, "the REPL prompt");
    node.child.stdin!.write("insert 30000\n");
    await waitFor(
      () => (/job (\d+) insert succeeded: 30000\/30000 \(100%\)/.test(node.output()) ? true : undefined),
      60_000,
      "the insert job to finish",
    );
    const id = Number(/job (\d+) insert succeeded: 30000/.exec(node.output())![1]);
    node.child.stdin!.write(`job ${id}\n`);
    node.child.stdin!.write("jobs --status succeeded\n");
    // The two crawls above are jobs too (kind crawl).
    await waitFor(
      () => (/3 of 3/.test(node.output()) && /'insert'\s*│\s*'succeeded'/.test(node.output()) ? true : undefined),
      10_000,
      "the jobs table",
    );
    node.child.stdin!.write(`stop ${id}\n`);
    await waitFor(
      () => (new RegExp(`stop: job ${id} has already succeeded`).test(node.output()) ? true : undefined),
      10_000,
      "the 409 as a clear message",
    );
    node.child.stdin!.write("schedule 5 6 --range 1001-1004 --rpm 2\n");
    await waitFor(
      () => (/id-task (\d+): 6 ids over 3 minutes, at most 2 a minute/.test(node.output()) ? true : undefined),
      10_000,
      "the plan",
    );
    const task = Number(/id-task (\d+): 6 ids/.exec(node.output())![1]);
    node.child.stdin!.write(`slots ${task}\n`);
    await waitFor(() => (/│\s*1004\s*│/.test(node.output()) ? true : undefined), 10_000, "the slots table");
    node.child.stdin!.write("schedule --range 9-1\n");
    await waitFor(() => (/schedule failed: --range must look like/.test(node.output()) ? true : undefined), 10_000, "a clear error");
    node.child.stdin!.write("insert 0\n");
    await waitFor(
      () => (/insert failed: .*'rows' field must be greater than or equal to 1/.test(node.output()) ? true : undefined),
      10_000,
      "a clear error",
    );
  });

  it("schedules lists the schedules; schedules pause <id> and resume <id>", async () => {
    await waitFor(() => (node.output().includes("mol $") ? true : undefined), 60_000, "the REPL prompt");
    const created = await http(node.api, "POST", "/api/schedules", {
      cron: "0 0 1 1 *",
      timezone: "Europe/Paris",
      job: { kind: "insert", params: { rows: 7 } },
    });
    expect(created.status).toBe(201);
    const id = created.body.id as number;
    node.child.stdin!.write("schedules\n");
    await waitFor(
      () => (new RegExp(`│\\s*${id}\\s*│\\s*'0 0 1 1 \\*'\\s*│\\s*'Europe/Paris'\\s*│\\s*'insert'`).test(node.output()) ? true : undefined),
      10_000,
      "the schedules table",
    );
    node.child.stdin!.write(`schedules pause ${id}\n`);
    await waitFor(() => (node.output().includes(`schedule ${id} paused`) ? true : undefined), 10_000, "the pause");
    node.child.stdin!.write(`schedules resume ${id}\n`);
    await waitFor(
      // Midnight of January 1st in Paris, as UTC.
      () => (new RegExp(`schedule ${id} resumed: next run \\d{4}-12-31T23:00:00.000Z`).test(node.output()) ? true : undefined),
      10_000,
      "the resume",
    );
    node.child.stdin!.write("schedules delete 1\n");
    await waitFor(() => (/schedules: unknown action "delete"/.test(node.output()) ? true : undefined), 10_000, "a clear error");
    node.child.stdin!.write("schedules pause 999\n");
    await waitFor(() => (/schedules: schedule 999 not found/.test(node.output()) ? true : undefined), 10_000, "the 404 as a clear message");
  });
});
