// What the console needs from the gateway besides the REST API: its vendor modules (served from
// node_modules, so `npm ci` is the only install step and the page loads nothing from outside),
// the events relayed to its stream, and each node's description.
import fs from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import type { Context } from "moleculer";
import {
  EVENT_CRAWL_CREATED,
  EVENT_CRAWL_FINISHED,
  EVENT_JOBS_UPDATED,
  EVENT_QUARTER,
  EVENT_QUEUES_CHANGED,
  EVENT_THROTTLE_CHANGED,
} from "../lib/platform/names";

const MODULES = path.join(__dirname, "..", "node_modules");

/** The files /vendor serves, by the name the console's import map uses. Nothing else is reachable. */
export const VENDOR_FILES: Record<string, { file: string; type: string }> = {
  "preact.module.js": { file: "preact/dist/preact.module.js", type: "text/javascript" },
  "hooks.module.js": { file: "preact/hooks/dist/hooks.module.js", type: "text/javascript" },
  "htm.module.js": { file: "htm/dist/htm.module.js", type: "text/javascript" },
  "htm-preact.module.js": { file: "htm/preact/index.module.js", type: "text/javascript" },
  "uPlot.esm.js": { file: "uplot/dist/uPlot.esm.js", type: "text/javascript" },
  "uPlot.min.css": { file: "uplot/dist/uPlot.min.css", type: "text/css" },
};

const VENDOR_PREFIX = "/vendor/";

/**
 * Serves GET /vendor/<file> (public, like the console's own static files: the modules hold no
 * data). False when the request is for something else.
 */
export function serveVendor(req: IncomingMessage, res: ServerResponse, url: string): boolean {
  if (!url.startsWith(VENDOR_PREFIX) || (req.method !== "GET" && req.method !== "HEAD")) return false;
  const entry = VENDOR_FILES[url.slice(VENDOR_PREFIX.length)];
  if (!entry) {
    res.writeHead(404, { "Content-Type": "application/json; charset=utf-8" });
    res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: `no vendor file ${url}` } }));
    return true;
  }
  res.writeHead(200, { "Content-Type": `${entry.type}; charset=utf-8`, "Cache-Control": "public, max-age=3600" });
  if (req.method === "HEAD") res.end();
  else fs.createReadStream(path.join(MODULES, entry.file)).pipe(res);
  return true;
}

/** The broadcasts every api node relays to its event streams, under their own names. */
export const RELAYED_EVENTS = [
  EVENT_JOBS_UPDATED,
  EVENT_THROTTLE_CHANGED,
  EVENT_CRAWL_CREATED,
  EVENT_CRAWL_FINISHED,
  EVENT_QUARTER,
  EVENT_QUEUES_CHANGED,
];

export interface ClusterNode {
  id: string;
  available: boolean;
  local: boolean;
  services?: Record<string, unknown>[];
}

// A node that does not answer its health call within this long is listed without its figures.
const NODE_HEALTH_TIMEOUT_MS = 1_000;

/** One node as GET /api/nodes lists it: its services, and (when it answers) uptime and memory. */
export async function describeNode(ctx: Context, node: ClusterNode) {
  const services = [...new Set((node.services ?? []).map((s) => String(s.name)).filter((n) => !n.startsWith("$")))].sort();
  const base = { nodeId: node.id, available: node.available, local: node.local, services };
  if (!node.available) return base;
  try {
    const health = await ctx.call<{ process: { uptime: number; memory: { rss: number; heapUsed: number } } }, object>(
      "$node.health",
      {},
      { nodeID: node.id, timeout: NODE_HEALTH_TIMEOUT_MS, retries: 0 },
    );
    const { rss, heapUsed } = health.process.memory;
    return { ...base, uptimeSeconds: Math.round(health.process.uptime), memory: { rss, heapUsed } };
  } catch {
    return base;
  }
}
