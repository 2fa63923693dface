// A throwaway nginx serving one directory on 127.0.0.1, for the nginx crawl benchmark: its own
// config, logs, pid file and temp paths in a temp dir (so it runs without root), `daemon off` as a
// child of this process, and an access log of what it sent, read back phase by phase.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../fixtures/node-process";
import { waitFor } from "../fixtures/polling";

/** The nginx binary: `explicit` if given, else nginx on PATH, else /usr/sbin/nginx (Debian's, not on every user's PATH). */
export function findNginx(explicit: string | undefined): string | null {
  const candidates = explicit ? [explicit] : ["nginx", "/usr/sbin/nginx"];
  return candidates.find((bin) => spawnSync(bin, ["-v"], { stdio: "ignore" }).status === 0) ?? null;
}

/** One access-log line: `log_format bench` below. */
export interface AccessEntry {
  status: number;
  /** $bytes_sent: status line, headers and body. */
  bytesSent: number;
  /** $body_bytes_sent: the body alone. */
  bodyBytesSent: number;
  uri: string;
  userAgent: string;
  /** The request's If-None-Match / If-Modified-Since ("" when absent): was it conditional. */
  ifNoneMatch: string;
  ifModifiedSince: string;
}

/** What nginx sent during one phase of the benchmark. */
export interface PhaseTraffic {
  requests: number;
  bytesSent: number;
  bodyBytesSent: number;
  /** Count of each status, e.g. {200: 1169, 404: 1}. */
  byStatus: Record<number, number>;
  /** Requests that carried If-None-Match or If-Modified-Since. */
  conditional: number;
  entries: AccessEntry[];
}

export interface NginxSite {
  /** http://127.0.0.1:<port> */
  origin: string;
  port: number;
  /** Ends the current phase and answers what nginx sent since the previous call (or since start). */
  phase(name: string): Promise<PhaseTraffic>;
  stop(): Promise<void>;
}

// Requests under this prefix mark the end of a phase in the access log; they are not counted.
const MARK_PREFIX = "/__bench/mark/";
const FIELDS = ["$status", "$bytes_sent", "$body_bytes_sent", "$uri", "$http_user_agent", "$http_if_none_match", "$http_if_modified_since"];

function nginxConfig(dir: string, root: string, port: number): string {
  const p = (name: string) => path.join(dir, name);
  // Started as root, nginx hands its workers to "nobody" unless told otherwise: keep the current user.
  const user = process.getuid?.() === 0 ? `user ${os.userInfo().username};\n` : "";
  return `${user}daemon off;
# One worker: the access log is then written in the order requests finish, so a phase's marker
# request is logged after every request that finished before it was sent.
worker_processes 1;
pid ${p("nginx.pid")};
error_log ${p("error.log")} warn;
events { worker_connections 1024; }
http {
  types { text/html html htm; text/css css; image/svg+xml svg; image/png png; text/plain txt; }
  default_type application/octet-stream;
  log_format bench '${FIELDS.join("\\t")}';
  access_log ${p("access.log")} bench;
  client_body_temp_path ${p("client_body")};
  proxy_temp_path ${p("proxy")};
  fastcgi_temp_path ${p("fastcgi")};
  uwsgi_temp_path ${p("uwsgi")};
  scgi_temp_path ${p("scgi")};
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65s;
  keepalive_requests 100000;
  etag on;
  gzip off;
  server_tokens off;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location ${MARK_PREFIX} { return 204; }
  }
}
`;
}

function parseEntry(line: string): AccessEntry {
  const f = line.split("\t");
  const dash = (v: string | undefined) => (v === undefined || v === "-" ? "" : v);
  return {
    status: Number(f[0]),
    bytesSent: Number(f[1]),
    bodyBytesSent: Number(f[2]),
    uri: f[3] ?? "",
    userAgent: dash(f[4]),
    ifNoneMatch: dash(f[5]),
    ifModifiedSince: dash(f[6]),
  };
}

export function summarize(entries: AccessEntry[]): PhaseTraffic {
  const t: PhaseTraffic = { requests: 0, bytesSent: 0, bodyBytesSent: 0, byStatus: {}, conditional: 0, entries };
  for (const e of entries) {
    t.requests++;
    t.bytesSent += e.bytesSent;
    t.bodyBytesSent += e.bodyBytesSent;
    t.byStatus[e.status] = (t.byStatus[e.status] ?? 0) + 1;
    if (e.ifNoneMatch || e.ifModifiedSince) t.conditional++;
  }
  return t;
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((resolve) => child.once("exit", resolve));
}

/** Starts nginx on a free port of 127.0.0.1 serving `root`; its files live in a temp dir removed by stop(). */
export async function startNginx(bin: string, root: string): Promise<NginxSite> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-bench-nginx-"));
  const port = await freePort();
  const conf = path.join(dir, "nginx.conf");
  fs.writeFileSync(conf, nginxConfig(dir, root, port));
  const accessLog = path.join(dir, "access.log");
  const errorLog = path.join(dir, "error.log");
  // -e: the error log before the config is read (the built-in one, /var/log/nginx, needs root).
  const child = spawn(bin, ["-p", dir, "-c", conf, "-e", errorLog], { stdio: ["ignore", "inherit", "inherit"] });
  const origin = `http://127.0.0.1:${port}`;
  const stop = async () => {
    // SIGQUIT: graceful shutdown (finish what is in flight, then exit).
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGQUIT");
    await exited(child);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  let marks = 0;
  let offset = 0;
  const phase = async (name: string): Promise<PhaseTraffic> => {
    // $uri is logged decoded: the name is kept to characters that need no encoding.
    const mark = `${MARK_PREFIX}${++marks}-${name.replace(/[^A-Za-z0-9_-]+/g, "-")}`;
    const res = await fetch(origin + mark);
    await res.arrayBuffer();
    // The marker's line can trail its response by a moment: wait until it is in the log.
    const text = await waitFor(
      () => {
        const all = fs.readFileSync(accessLog, "utf8").slice(offset);
        const at = all.indexOf(`\t${mark}\t`);
        return at < 0 ? undefined : all.slice(0, all.indexOf("\n", at) + 1);
      },
      10_000,
      `nginx to log ${mark}`,
    );
    offset += text.length;
    const entries = text
      .split("\n")
      .filter((l) => l !== "")
      .map(parseEntry)
      .filter((e) => !e.uri.startsWith(MARK_PREFIX));
    return summarize(entries);
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${readTail(errorLog)}`);
        const res = await fetch(`${origin}${MARK_PREFIX}0-start`);
        await res.arrayBuffer();
        return res.status === 204 ? true : undefined;
      },
      10_000,
      `nginx on ${origin}`,
    );
    // The start-up probes belong to no phase.
    await phase("start");
  } catch (err) {
    await stop();
    throw err;
  }
  return { origin, port, phase, stop };
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").trim().split("\n").slice(-3).join(" | ");
  } catch {
    return "(no error log)";
  }
}
