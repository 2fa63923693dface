// LOG_FORMAT=json, as a log system reads it: a real node's stdout, every line one JSON object
// with level, time, nodeID and msg. A job's lines carry its id and kind, an Error keeps its
// stack, and requests are logged at debug only. Stdout is a pipe here, so json is also the
// default when LOG_FORMAT is unset.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createCluster, type Cluster, type ClusterNode } from "../support/cluster";
import { describeWithServers, http } from "../support/env";

interface LogLine {
  level: string;
  time: string;
  nodeID: string;
  msg: string;
  jobId?: number;
  jobKind?: string;
  err?: { message?: string; stack?: string };
}

// moleculer-web's request lines: `=> GET /api/x`, `   Call 'x.y' action`, `<= 200 GET /api/x [+1 ms]`.
const REQUEST_LINE = /^\s*(=>|<=|Call )/;
const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];

/** The node's stdout (not stderr), split into lines once it has closed. */
function stdoutLines(node: ClusterNode): () => Promise<string[]> {
  let out = "";
  node.child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const closed = new Promise((resolve) => node.child.stdout!.once("close", resolve));
  return async () => {
    await closed;
    return out.split("\n").filter((line) => line !== "");
  };
}

/** Parses every line, failing on the first that is not a log line with level, time, nodeID and msg. */
function parseAll(lines: string[], nodeID: string): LogLine[] {
  return lines.map((line) => {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      throw new Error(`not a JSON line: ${line}`);
    }
    expect({ line, level: LEVELS.includes(parsed.level), time: Number.isNaN(Date.parse(parsed.time)), nodeID: parsed.nodeID }).toEqual({
      line,
      level: true,
      time: false,
      nodeID,
    });
    expect(typeof parsed.msg).toBe("string");
    return parsed;
  });
}

describeWithServers(["DATABASE_URL", "NATS_URL"], "JSON logs", () => {
  let cluster: Cluster;
  let files: Server;
  let filesUrl = "";

  beforeAll(async () => {
    cluster = await createCluster({ env: { JOB_HEARTBEAT_MS: "500" } });
    // A URL import of a file that is not there: its job fails, and logs the error.
    files = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => files.listen(0, "127.0.0.1", resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  }, 60_000);
  afterAll(async () => {
    files?.close();
    await cluster?.cleanup();
  }, 60_000);

  it("LOG_FORMAT=json at info: every line is JSON, a job's lines carry its id and kind, an error its stack, a request no line", async () => {
    const node = await cluster.start("json", { env: { LOG_FORMAT: "json", LOG_LEVEL: "info" } });
    const lines = stdoutLines(node);
    await cluster.ready(node);
    const insert = await http(node.api, "POST", "/api/inserts", { rows: 300 });
    expect(insert.status).toBe(202);
    expect(await cluster.waitForJob(insert.body.id)).toMatchObject({ status: "succeeded" });
    const missing = await http(node.api, "POST", "/api/imports", { url: `${filesUrl}/missing.csv`, table: "rows" });
    expect(missing.status).toBe(202);
    expect(await cluster.waitForJob(missing.body.id)).toMatchObject({ status: "failed" });
    await node.stop("SIGTERM");

    const logs = parseAll(await lines(), node.name);
    const insertLines = logs.filter((l) => l.jobId === insert.body.id);
    expect(insertLines.map((l) => [l.jobKind, l.msg.split(":")[0]])).toEqual([
      ["insert", "started"],
      ["insert", "succeeded"],
    ]);
    const failure = logs.find((l) => l.jobId === missing.body.id && l.level === "error");
    expect(failure).toMatchObject({ jobKind: "import", err: { message: expect.stringContaining("answered HTTP 404") } });
    expect(failure!.err!.stack).toMatch(/answered HTTP 404\n\s+at /);
    expect(logs.filter((l) => REQUEST_LINE.test(l.msg))).toEqual([]);
  }, 90_000);

  it("LOG_FORMAT unset and stdout not a terminal: json; at debug a request is logged", async () => {
    const node = await cluster.start("default", { env: { LOG_LEVEL: "debug" } });
    const lines = stdoutLines(node);
    await cluster.ready(node);
    expect((await http(node.api, "GET", "/api/health")).status).toBe(200);
    await node.stop("SIGTERM");

    const logs = parseAll(await lines(), node.name);
    expect(logs.some((l) => l.level === "debug" && /^<= 200 GET \/api\/health/.test(l.msg))).toBe(true);
  }, 90_000);
});
