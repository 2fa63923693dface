// `npm run compose:check`: docker-compose.yml really started and worked, where a Docker engine
// runs. It builds the image and starts the stack (with a generated-site container beside it)
// under a project name of its own, waits until every container is healthy, then crawls, runs an
// insert job, scales crawlers and ingestors up and down, kills the ingestor running a job, and
// checks the counts exactly, while Postgres is sampled for Sluice's connections (peak at most
// DB_BUDGET). It tears everything down however it ends. CI does not run it (no engine there).
//
// Exit codes: 0 passed; 1 a check failed; 2 it cannot run here (no engine, no compose, or a base
// image that is neither present nor pullable), said in one line.
//
// COMPOSE_CHECK_BUILD_NETWORK=host builds with the host's network (an engine started with
// --iptables=false gives build containers none).
//
// Inside the site container the same file serves the sites: `--serve-site 8080,8081`.
import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { http as request, isFinished } from "../fixtures/api-client";
import { waitFor } from "../fixtures/polling";
import { generatedSiteDepth, serveGeneratedSite } from "../fixtures/site-server";

const ROOT = path.join(__dirname, "..");
const SITE_PAGES = 300;
const SITE_PORTS = [8080, 8081];
const INSERT_ROWS = 200_000;
// Large enough to be running when the kill comes: a few seconds of COPY at least.
const KILLED_INSERT_ROWS = 3_000_000;
const BUILD_TIMEOUT_MS = 15 * 60_000;
const HEALTHY_TIMEOUT_MS = 5 * 60_000;
const WORK_TIMEOUT_MS = 5 * 60_000;
const SAMPLE_EVERY_MS = 20;
const CANNOT_RUN = 2;

class CannotRun extends Error {}

interface Run {
  code: number;
  out: string;
  err: string;
}

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, out, err) => {
      const code = error ? (typeof error.code === "number" ? error.code : 127) : 0;
      resolve({ code, out: out.toString(), err: err.toString() || (error && code === 127 ? error.message : "") });
    });
  });
}

async function must(cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${(r.err || r.out).trim().split("\n").slice(-15).join("\n")}`);
  return r.out;
}

const lastLine = (r: Run) => (r.err || r.out).trim().split("\n").pop() ?? "";

function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  return fn().then((v) => {
    console.log(`ok   ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return v;
  });
}

/** `docker compose` or `docker-compose`, whichever is there. */
async function composeCommand(): Promise<string[]> {
  if ((await run("docker", ["compose", "version"])).code === 0) return ["docker", "compose"];
  const v1 = await run("docker-compose", ["version", "--short"]);
  if (v1.code === 0) return ["docker-compose"];
  throw new CannotRun(`no compose: neither "docker compose" nor "docker-compose" runs (${lastLine(v1)})`);
}

/** The images the build and the stack start from: the Dockerfile's FROM and the servers' image. */
function baseImages(): string[] {
  const dockerfile = fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
  const compose = fs.readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8");
  const from = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);
  const servers = [...compose.matchAll(/^ {4}image:\s*(\S+)/gm)].map((m) => m[1]!).filter((i) => !i.startsWith("sluice:"));
  return [...new Set([...from, ...servers])];
}

async function preflight(): Promise<string[]> {
  const info = await run("docker", ["info", "--format", "{{.ServerVersion}}"]);
  if (info.code !== 0) throw new CannotRun(`no Docker engine: "docker info" says: ${lastLine(info)}`);
  const compose = await composeCommand();
  const version = (await run(compose[0]!, [...compose.slice(1), "version", "--short"])).out.trim();
  console.log(`Docker engine ${info.out.trim()}, ${compose.join(" ")} ${version}`);
  for (const image of baseImages()) {
    if ((await run("docker", ["image", "inspect", image])).code === 0) continue;
    const pull = await run("docker", ["pull", image], 300_000);
    if (pull.code !== 0)
      throw new CannotRun(`base image ${image} is not on this engine, and "docker pull ${image}" failed: ${lastLine(pull)}`);
  }
  return compose;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The check's own project: its .env, its secret, and an override with the sites and a port to Postgres. */
async function prepare(dir: string) {
  const project = `sluicecheck${process.pid}`;
  const token = crypto.randomBytes(24).toString("hex");
  const password = crypto.randomBytes(24).toString("hex");
  const [apiPort, pgPort] = [await freePort(), await freePort()];
  const secret = path.join(dir, "postgres_password");
  fs.writeFileSync(secret, password + "\n", { mode: 0o644 });
  fs.chmodSync(dir, 0o755);
  const envFile = path.join(dir, "env");
  const allow = SITE_PORTS.map((p) => `site:${p}`).join(",");
  fs.writeFileSync(envFile, `API_TOKEN=${token}\nSLUICE_API_PORT=${apiPort}\nCRAWL_ALLOW_HOSTS=${allow}\n`);
  const network = process.env.COMPOSE_CHECK_BUILD_NETWORK;
  const build = JSON.stringify({ context: ROOT, ...(network ? { network } : {}) });
  const sluice = ["api", "crawler", "ingestor", "scheduler"].map((s) => `  ${s}:\n    build: ${build}\n`).join("");
  const override = path.join(dir, "compose.check.yml");
  fs.writeFileSync(
    override,
    `services:
${sluice}  postgres:
    ports: ["127.0.0.1:${pgPort}:5432"]
  site:
    image: sluice:local
    build: ${build}
    command: ["node", "--import", "tsx", "bin/compose-check.ts", "--serve-site", "${SITE_PORTS.join(",")}"]
    healthcheck:
      test: ["CMD", "node", "-e", "fetch('http://127.0.0.1:${SITE_PORTS[0]}/').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
      interval: 5s
      timeout: 3s
      retries: 20
secrets:
  postgres_password:
    file: ${secret}
`,
  );
  const files = ["-p", project, "--env-file", envFile, "-f", path.join(ROOT, "docker-compose.yml"), "-f", override];
  return { project, token, password, apiPort, pgPort, files };
}

async function check(): Promise<void> {
  const compose = await step("preflight: engine, compose and base images", preflight);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-compose-check-"));
  const setup = await prepare(dir);
  const dc = (args: string[], timeoutMs?: number) => must(compose[0]!, [...compose.slice(1), ...setup.files, ...args], timeoutMs);
  const api = `http://127.0.0.1:${setup.apiPort}`;
  const auth = { authorization: `Bearer ${setup.token}` };
  const call = (method: string, p: string, body?: unknown) => request(api, method, p, body, auth);
  const db = new pg.Client({ host: "127.0.0.1", port: setup.pgPort, user: "postgres", password: setup.password, database: "sluice" });
  let sampling = false;
  let peak = 0;
  let samples = 0;
  let sampler: Promise<void> = Promise.resolve();
  try {
    await step("docker-compose up -d --build (the image, the servers, one container per role, the site)", () =>
      dc(["up", "-d", "--build"], BUILD_TIMEOUT_MS),
    );
    await step("every container healthy", () => waitHealthy(dc, 8));
    await step("no container runs a process as root; the API is published on 127.0.0.1 only", () => checkUsersAndPorts(dc));
    await db.connect();
    sampling = true;
    sampler = (async () => {
      while (sampling) {
        const { rows } = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'sluice' AND application_name LIKE 'sluice:%'",
        );
        peak = Math.max(peak, rows[0]!.n);
        samples++;
        await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
      }
    })();
    const budget = Number(/DB_BUDGET: "(\d+)"/.exec(fs.readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8"))![1]);

    await step("a write without the token is refused (401)", async () => {
      const res = await request(api, "POST", "/api/inserts", { rows: 1 });
      if (res.status !== 401) throw new Error(`expected 401, got ${res.status}`);
    });
    await step(`crawl of the site container (${SITE_PAGES + 1} pages), 1 crawler and 1 ingestor: every page stored once`, () =>
      crawl(call, SITE_PORTS[0]!),
    );
    await step(`insert job of ${INSERT_ROWS.toLocaleString("en")} rows: exactly that many rows`, () => insert(call, db, INSERT_ROWS));

    await step("scaled to 3 crawlers and 2 ingestors: all healthy, 7 nodes", async () => {
      await dc(["up", "-d", "--no-recreate", "--scale", "crawler=3", "--scale", "ingestor=2"], BUILD_TIMEOUT_MS);
      await waitHealthy(dc, 11);
      await waitNodes(call, 7);
    });
    await step("crawl of a second site while scaling back to 1 crawler mid-crawl: every page stored once", () =>
      crawl(call, SITE_PORTS[1]!, async () => {
        await dc(["up", "-d", "--no-recreate", "--scale", "crawler=1", "--scale", "ingestor=2"]);
      }),
    );
    await step(`the ingestor running a ${KILLED_INSERT_ROWS.toLocaleString("en")}-row job killed mid-job: attempt 2 exact`, () =>
      killMidJob(dc, call, db),
    );
    await step("scaled down to 1 crawler and 1 ingestor: all healthy, 4 nodes", async () => {
      await dc(["up", "-d", "--no-recreate", "--scale", "crawler=1", "--scale", "ingestor=1"]);
      await waitHealthy(dc, 8);
      await waitNodes(call, 4);
    });
    sampling = false;
    await sampler;
    console.log(`     Sluice's connections in pg_stat_activity: peak ${peak} of DB_BUDGET ${budget}, over ${samples} samples`);
    if (peak > budget) throw new Error(`peak ${peak} connections is over DB_BUDGET ${budget}`);
  } catch (err) {
    const logs = await run(compose[0]!, [...compose.slice(1), ...setup.files, "logs", "--no-color", "--tail", "40"]);
    console.log(`---- last log lines ----\n${logs.out.slice(-20_000)}`);
    throw err;
  } finally {
    sampling = false;
    await sampler.catch(() => {});
    await db.end().catch(() => {});
    const down = await run(
      compose[0]!,
      [...compose.slice(1), ...setup.files, "down", "-v", "--remove-orphans", "--timeout", "40"],
      180_000,
    );
    console.log(down.code === 0 ? "ok   torn down (containers, network, volumes)" : `FAIL tear-down: ${lastLine(down)}`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

type Dc = (args: string[], timeoutMs?: number) => Promise<string>;
type Call = (method: string, p: string, body?: unknown) => ReturnType<typeof request>;

interface ContainerState {
  Name: string;
  Id: string;
  Config: { Hostname: string; User: string };
  State: { Status: string; Health?: { Status: string } };
}

async function containers(dc: Dc): Promise<ContainerState[]> {
  const ids = (await dc(["ps", "-q"])).split("\n").filter(Boolean);
  return ids.length ? (JSON.parse(await must("docker", ["inspect", ...ids])) as ContainerState[]) : [];
}

function waitHealthy(dc: Dc, expected: number): Promise<true> {
  return waitFor(
    async () => {
      const list = await containers(dc);
      const bad = list.filter((c) => c.State.Status === "exited" || c.State.Health?.Status === "unhealthy");
      if (bad.length) throw new Error(`${bad.map((c) => `${c.Name} ${c.State.Status}/${c.State.Health?.Status}`).join(", ")}`);
      return list.length === expected && list.every((c) => c.State.Health?.Status === "healthy") ? true : undefined;
    },
    HEALTHY_TIMEOUT_MS,
    `${expected} healthy containers`,
  );
}

async function checkUsersAndPorts(dc: Dc): Promise<void> {
  for (const c of await containers(dc)) {
    const top = await must("docker", ["top", c.Id, "-eo", "pid,uid,comm"]);
    const root = top
      .split("\n")
      .slice(1)
      .filter((l) => l.trim().split(/\s+/)[1] === "0");
    if (root.length) throw new Error(`${c.Name} runs as root: ${root.join("; ")}`);
  }
  const published = (await dc(["port", "api", "3000"])).trim();
  if (!published.startsWith("127.0.0.1:")) throw new Error(`the API is published on ${published}`);
}

function waitNodes(call: Call, n: number): Promise<true> {
  return waitFor(
    async () => ((((await call("GET", "/api/throttle")).body.nodes ?? []) as unknown[]).length === n ? true : undefined),
    HEALTHY_TIMEOUT_MS,
    `${n} nodes`,
  );
}

async function finished(call: Call, p: string): Promise<any> {
  return waitFor(
    async () => {
      const { body } = await call("GET", p);
      return isFinished(body.status) ? body : undefined;
    },
    WORK_TIMEOUT_MS,
    `${p} to finish`,
  );
}

async function crawl(call: Call, port: number, midway?: () => Promise<void>): Promise<void> {
  const res = await call("POST", "/api/crawls", {
    url: `http://site:${port}/`,
    maxDepth: generatedSiteDepth(SITE_PAGES),
    maxPages: 100_000,
  });
  if (res.status !== 202) throw new Error(`POST /api/crawls: ${res.status} ${JSON.stringify(res.body)}`);
  const id = res.body.id as number;
  if (midway) {
    await waitFor(
      async () => ((await call("GET", `/api/crawls/${id}`)).body.pages.stored >= 50 ? true : undefined),
      WORK_TIMEOUT_MS,
      "50 pages",
    );
    await midway();
  }
  const done = await finished(call, `/api/crawls/${id}`);
  const n = SITE_PAGES + 1;
  const want = { discovered: n, fetched: n, stored: n, unchanged: 0, failed: 0, skipped: 0 };
  if (done.status !== "succeeded" || JSON.stringify(done.pages) !== JSON.stringify(want)) {
    throw new Error(`crawl ${id}: ${done.status} ${JSON.stringify(done.pages)}, expected succeeded ${JSON.stringify(want)}`);
  }
  const count = (await call("GET", `/api/pages/count?crawl=${id}`)).body.count;
  if (count !== n) throw new Error(`crawl ${id}: ${count} page rows, expected ${n}`);
}

const rowCount = async (db: pg.Client) => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM rows")).rows[0]!.n;

async function insert(call: Call, db: pg.Client, rows: number): Promise<any> {
  const before = await rowCount(db);
  const res = await call("POST", "/api/inserts", { rows });
  if (res.status !== 202) throw new Error(`POST /api/inserts: ${res.status} ${JSON.stringify(res.body)}`);
  const job = await finished(call, `/api/jobs/${res.body.id}`);
  const added = (await rowCount(db)) - before;
  if (job.status !== "succeeded" || added !== rows) throw new Error(`job ${job.id}: ${job.status}, ${added} rows added, expected ${rows}`);
  return job;
}

async function killMidJob(dc: Dc, call: Call, db: pg.Client): Promise<void> {
  const before = await rowCount(db);
  const res = await call("POST", "/api/inserts", { rows: KILLED_INSERT_ROWS });
  if (res.status !== 202) throw new Error(`POST /api/inserts: ${res.status} ${JSON.stringify(res.body)}`);
  const jobPath = `/api/jobs/${res.body.id}`;
  const running = await waitFor(
    async () => {
      const { body } = await call("GET", jobPath);
      if (isFinished(body.status)) throw new Error(`job ended ${body.status} before it could be killed`);
      return body.status === "running" && body.progress.done > 0 ? body : undefined;
    },
    WORK_TIMEOUT_MS,
    "the job to be running",
  );
  // NODE_ID is unset in the compose file: a node's ID is its container's hostname and its pid.
  const victim = (await containers(dc)).find((c) => String(running.nodeId).startsWith(`${c.Config.Hostname}-`));
  if (!victim) throw new Error(`no container runs node ${running.nodeId}`);
  await must("docker", ["kill", victim.Id]);
  console.log(`     killed ${victim.Name} (node ${running.nodeId}) at ${running.progress.done} rows`);
  const job = await finished(call, jobPath);
  const added = (await rowCount(db)) - before;
  if (job.status !== "succeeded" || added !== KILLED_INSERT_ROWS || job.attempts !== 2) {
    throw new Error(
      `job ${job.id}: ${job.status} after ${job.attempts} attempts, ${added} rows added, expected ${KILLED_INSERT_ROWS} in attempt 2`,
    );
  }
  console.log(`     attempt 2 on ${job.nodeId}: ${added} rows`);
}

/** In the site container: a generated site on each port, on every interface (the fixture listens on loopback). */
async function serveSites(ports: number[]): Promise<void> {
  for (const port of ports) {
    const site = await serveGeneratedSite({ pages: SITE_PAGES });
    net
      .createServer((client) => {
        const upstream = net.connect(site.port, "127.0.0.1");
        client.pipe(upstream).pipe(client);
        client.on("error", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
      })
      .listen(port, "0.0.0.0");
  }
  console.log(`Generated sites of ${SITE_PAGES + 1} pages on ports ${ports.join(", ")}`);
}

const serveAt = process.argv.indexOf("--serve-site");
if (serveAt >= 0) {
  void serveSites(process.argv[serveAt + 1]!.split(",").map(Number));
} else {
  check().then(
    () => console.log("compose:check passed"),
    (err: unknown) => {
      console.log(`${err instanceof CannotRun ? "CANNOT RUN" : "FAIL"} ${err instanceof Error ? err.message : String(err)}`);
      process.exit(err instanceof CannotRun ? CANNOT_RUN : 1);
    },
  );
}
