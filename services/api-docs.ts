// GET /api/openapi.json and the page that renders it (GET /api/docs, and /docs/ without a token).
// The document is built at each request from the gateway's routes, their access classes, the
// actions' params as the registry holds them, and services/api-responses.ts. The page is Swagger UI,
// served from node_modules (swagger-ui-dist) like the console's vendor modules: nothing is loaded
// from outside, and the Content-Security-Policy says so to the browser.
import fs from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { buildOpenApi, type JsonSchema } from "../lib/api/openapi";
import { DEFAULT_METRICS_PORT, type Config } from "../lib/platform/config";
import { ACTION_ACCESS, routeSpecs } from "./api-routes";
import { ACTION_RESPONSES, API_TAGS, metricsOperation, RESPONSE_SCHEMAS, tagOf } from "./api-responses";

const ROOT = path.join(__dirname, "..");
const SWAGGER_UI = path.join(ROOT, "node_modules", "swagger-ui-dist");
export const DOCS_PAGE = path.join(ROOT, "public", "docs", "index.html");
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** Same origin only; Swagger UI sets element styles from script, and its CSS inlines SVG icons as data: URLs. */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The files /vendor/swagger-ui/ serves. Nothing else of the package is reachable. */
const DOCS_VENDOR_FILES: Record<string, string> = {
  "swagger-ui-bundle.js": "text/javascript",
  "swagger-ui.css": "text/css",
};
const DOCS_VENDOR_PREFIX = "/vendor/swagger-ui/";

/** Serves GET /vendor/swagger-ui/<file> (public, like the console's vendor modules). False for anything else. */
export function serveDocsVendor(req: IncomingMessage, res: ServerResponse, url: string): boolean {
  if (!url.startsWith(DOCS_VENDOR_PREFIX) || (req.method !== "GET" && req.method !== "HEAD")) return false;
  const name = url.slice(DOCS_VENDOR_PREFIX.length);
  const type = Object.hasOwn(DOCS_VENDOR_FILES, name) ? DOCS_VENDOR_FILES[name] : undefined;
  if (!type) {
    res.writeHead(404, { "Content-Type": "application/json; charset=utf-8" });
    res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: `no vendor file ${url}` } }));
    return true;
  }
  res.writeHead(200, { "Content-Type": `${type}; charset=utf-8`, "Cache-Control": "public, max-age=3600" });
  if (req.method === "HEAD") res.end();
  else fs.createReadStream(path.join(SWAGGER_UI, name)).pipe(res);
  return true;
}

/** The docs page's headers, for the static copy under /docs/ (moleculer-web's assets, serve-static's setHeaders). */
export function docsAssetHeaders(res: ServerResponse, file: string): void {
  if (path.dirname(file) === path.dirname(DOCS_PAGE)) {
    res.setHeader("Content-Security-Policy", DOCS_CSP);
    res.setHeader("X-Content-Type-Options", "nosniff");
  }
}

export function docsPageHeaders(): Record<string, string> {
  return { "Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache" };
}

interface RegisteredAction {
  name: string;
  action?: { params?: Record<string, unknown> };
}

/** The document, from the routes of `config` and the actions the registry knows now. */
export function openApiDocument(config: Config, actions: RegisteredAction[]): JsonSchema {
  const params = new Map(actions.map((a) => [a.name, a.action?.params]));
  return buildOpenApi({
    info: {
      title: "Sluice",
      version: VERSION,
      description:
        "Crawls, rate-limited upstream calls and bulk loads into Postgres, from a Moleculer cluster. " +
        "Every error is `{ error: { code, message, details? } }`. Generated from the running gateway: its routes, " +
        "their access classes and the actions' own parameter rules.",
    },
    routes: routeSpecs(config.apiBodyLimitBytes),
    access: ACTION_ACCESS,
    params: (action) => params.get(action),
    operations: ACTION_RESPONSES,
    schemas: RESPONSE_SCHEMAS,
    tags: API_TAGS,
    tagOf,
    extra: [metricsOperation(config.metricsPort || DEFAULT_METRICS_PORT)],
  });
}
