// The HTTP gateway: REST under /api, the dashboard at /, health and readiness. Every error
// leaves as { error: { code, message, details? } } (lib/api/http-error.ts).
import type { IncomingMessage, ServerResponse } from "node:http";
import fs from "node:fs";
import path from "node:path";
import ApiGateway from "moleculer-web";
import type { Context, ServiceSchema } from "moleculer";
import IORedis from "ioredis";
import { ValidationError } from "../lib/platform/errors";
import { toHttpError } from "../lib/api/http-error";
import { findNul, type Caller } from "../lib/api/request-guard";
import { BODY_METHODS, hasBody, requestGuard, type GuardedRequest, type PublicFiles, type StreamHandlers } from "./api-guard";
import { importUploadHandler } from "./import-upload";
import { ACTION_ACCESS, routeSpecs } from "./api-routes";
import { holdersOf } from "../lib/throttle/leased-slots";
import { DB_CONNECTIONS_RESOURCE } from "../lib/platform/names";
import type { HttpMeta, Runtime } from "../lib/contracts";
import type { BodyMeta } from "./inserts.service";
import { EventFanout } from "./api-events";
import { describeNode, RELAYED_EVENTS, serveVendor, type ClusterNode } from "./console-support";
import { docsAssetHeaders, docsPageHeaders, DOCS_PAGE, openApiDocument, serveDocsVendor } from "./api-docs";

const READY_CHECK_TIMEOUT_MS = 2_000;
// Moleculer tells the other nodes about this node's services a second after they last changed
// (transit.serviceChangedDebounceTime, left at its default), and delivery takes a moment more.
// Until then no other node sends it events: a console connected here would miss them.
const ANNOUNCE_MS = 1_000 + 500;
// A connection that sends nothing for this long is closed (an upload that stalled, say).
const IDLE_SOCKET_TIMEOUT_MS = 120_000;
// How often connected consoles get the limits' and queues' figures.
const STATS_STREAM_MS = 2_000;
const STREAMED_STATS = [
  ["throttle.cluster", "throttle.stats"],
  ["queues.list", "queues.stats"],
] as const;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref())]);
}

type GatewayRequest = GuardedRequest & { $params?: Record<string, unknown>; $action?: { name: string } };
export interface CallerMeta {
  /** Who the request's credentials make it (set by the gateway; absent for calls inside the cluster). */
  caller?: Caller;
}

/** A POST without a body is told so (422 naming "body"), where `{}` would take the defaults. */
function markMissingBody(ctx: Context<unknown, BodyMeta>, _route: unknown, req: IncomingMessage): void {
  if (BODY_METHODS.has(req.method ?? "") && !hasBody(req)) ctx.meta.bodyMissing = true;
}

/** The seed's path numbers (`/insert/500`) arrive as strings: digits become numbers, anything else is left for validation to reject. */
function numericPathParams(req: GatewayRequest): void {
  const params = req.$params ?? {};
  for (const key of ["rows", "id"]) {
    const v = params[key];
    if (typeof v === "string" && /^\d{1,15}$/.test(v)) params[key] = Number(v);
  }
}

export default function apiService({ db, config, boot, limits, copyIn }: Runtime): ServiceSchema<Record<string, unknown>> {
  const tokens = { write: config.apiToken, read: config.apiReadToken };
  let redis: IORedis | null = null;

  const fanout = new EventFanout();
  // Filled in created(), once the broker exists (the guards hold this object).
  const streams: StreamHandlers = {};
  let statsTimer: NodeJS.Timeout | null = null;
  // The console's vendor modules and the docs page's.
  const publicFiles: PublicFiles = (req, res, url) => serveDocsVendor(req, res, url) || serveVendor(req, res, url);

  return {
    name: "api",

    // Relayed to this node's event streams (GET /api/events).
    events: Object.fromEntries([
      ...RELAYED_EVENTS.map((event) => [event, (ctx: Context) => fanout.publish(event, ctx.params)]),
      ...(["connected", "disconnected"] as const).map((state) => [
        `$node.${state}`,
        (ctx: Context<{ node: { id: string } }>) => fanout.publish("nodes.changed", { nodeId: ctx.params.node.id, state }),
      ]),
    ]),
    mixins: [ApiGateway],
    settings: {
      port: config.port,
      ip: "0.0.0.0",
      // Requests are logged at debug (their params at trace): LOG_LEVEL=info logs no line per request.
      logRequest: "debug",
      logResponse: "debug",
      logRequestParams: "trace",
      logResponseData: null,
      routes: routeSpecs(config.apiBodyLimitBytes).map((spec) => ({
        path: spec.path,
        mappingPolicy: "restrict",
        mergeParams: true,
        aliases: spec.aliases,
        // The guard reads bodies itself, after it has checked the token.
        bodyParsers: false,
        use: [requestGuard(spec, tokens, config.apiCorsOrigins, streams, publicFiles)],
        onBeforeCall(ctx: Context<unknown, BodyMeta & CallerMeta>, route: unknown, req: GatewayRequest) {
          ctx.meta.caller = req.$caller ?? "anonymous";
          if (spec.numericPathParams) numericPathParams(req);
          markMissingBody(ctx, route, req);
          // Postgres text cannot hold NUL: refused here for every field, not altered or a 500.
          const field = findNul(req.$params ?? {});
          if (field !== null) throw new ValidationError(field, `"${field}" must not contain a NUL character`);
        },
      })),
      assets: { folder: path.join(__dirname, "..", "public"), options: { setHeaders: docsAssetHeaders } },
      onError(this: { logger: { error(...a: unknown[]): void } }, req: IncomingMessage, res: ServerResponse, err: unknown) {
        const { status, body } = toHttpError(err);
        if (status >= 500) this.logger.error(`${req.method} ${req.url} failed`, err);
        const retryAfter = (body.error.details as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds;
        if ((status === 429 || status === 503) && retryAfter) res.setHeader("Retry-After", String(retryAfter));
        res.setHeader("Content-Type", "application/json; charset=utf-8");
        res.writeHead(status);
        res.end(JSON.stringify(body));
      },
    },

    methods: {
      // moleculer-web logs every error that is not a 4xx here, as text, before it sends it;
      // onError above logs each 5xx once, with its error as a field, so the gateway's line would
      // be the same fault twice.
      errorHandler(req: IncomingMessage, res: ServerResponse, err: unknown) {
        (this as unknown as { sendError(q: IncomingMessage, s: ServerResponse, e: unknown): void }).sendError(req, res, err);
      },
    },

    actions: {
      // The broker's retry policy must not re-run the HTTP handler: by then it has consumed the
      // route prefix of req.url, and a retried request falls through to a 404. The actions it
      // calls are retried on their own.
      rest: { retryPolicy: { enabled: false } },

      // Served by the request guard (api-events.ts); reached here only if that wiring breaks.
      events() {
        throw new Error("GET /api/events is served by the request guard");
      },

      /** The cluster's nodes with their services, uptime and memory (each node answers for itself). */
      async nodes(ctx: Context) {
        const nodes = this.broker.registry.getNodeList({ onlyAvailable: false, withServices: true }) as ClusterNode[];
        const items = await Promise.all(nodes.map((n) => describeNode(ctx, n)));
        return { items };
      },

      /** Who the caller's token makes it, and whether it may change things (the console hides what it may not). */
      whoami(ctx: Context<unknown, CallerMeta>) {
        const caller = ctx.meta.caller ?? "anonymous";
        return { caller, canWrite: tokens.write === null || caller === "writer" };
      },

      /** GET /api/openapi.json: built from the routes and the actions the registry holds now (services/api-docs.ts). */
      openapi() {
        return openApiDocument(config, this.broker.registry.getActionList({}));
      },

      /** GET /api/docs: the page that renders it (also served, without a token, at /docs/). */
      async docs(ctx: Context<unknown, HttpMeta & { $responseType?: string }>) {
        ctx.meta.$responseType = "text/html; charset=utf-8";
        ctx.meta.$responseHeaders = docsPageHeaders();
        return fs.promises.readFile(DOCS_PAGE);
      },

      health() {
        return { status: "ok", nodeId: this.broker.nodeID, uptimeSeconds: Math.round(process.uptime()) };
      },

      async ready(ctx: Context<unknown, HttpMeta & CallerMeta>) {
        // With a token configured, anonymous callers learn only whether the node is ready:
        // the checks' text can name internal hosts and addresses.
        const detailed = tokens.write === null || ctx.meta.caller === "reader" || ctx.meta.caller === "writer";
        if (boot.state !== "ready") {
          ctx.meta.$statusCode = 503;
          if (!detailed) return { ready: false };
          // While boot waits for a connection slot, who holds them (and whether they still renew).
          const holders =
            boot.state === "waiting for a database connection slot" && limits.store && limits.redisReady
              ? await withTimeout(limits.store.snapshot(DB_CONNECTIONS_RESOURCE), READY_CHECK_TIMEOUT_MS).then(holdersOf, () => undefined)
              : undefined;
          return { ready: false, boot: { ...boot, ...(holders ? { holders } : {}) } };
        }
        const checks: Record<string, string> = {};
        const probe = async (name: string, fn: () => Promise<unknown>) => {
          try {
            await withTimeout(fn(), READY_CHECK_TIMEOUT_MS);
            checks[name] = "ok";
          } catch (err) {
            checks[name] = `down: ${(err as Error).message}`;
          }
        };
        await probe("database", () => db.query("SELECT 1"));
        if (config.transporter) {
          await probe("transporter", async () => {
            if (!this.broker.transit?.connected) throw new Error("not connected");
          });
          if (checks.transporter === "ok" && Date.now() - Date.parse(boot.since) < ANNOUNCE_MS) {
            checks.transporter = "announcing this node's services to the cluster";
          }
        }
        if (config.redisUrl) {
          if (!redis) {
            redis = new IORedis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
            redis.on("error", () => {}); // reported by the probe below, not as unhandled events
          }
          await probe("redis", async () => {
            if (redis!.status === "wait" || redis!.status === "end") await redis!.connect();
            await redis!.ping();
          });
        }
        const ready = Object.values(checks).every((v) => v === "ok");
        if (!ready) ctx.meta.$statusCode = 503;
        return detailed ? { ready, checks } : { ready };
      },
    },

    started() {
      // An import's upload may take longer than node's default 5 minutes for a whole request;
      // an idle connection is still closed (the socket timeout), however long the request.
      const server = (this as unknown as { server?: { requestTimeout: number; timeout: number } }).server;
      if (server) {
        server.requestTimeout = 0;
        server.timeout = IDLE_SOCKET_TIMEOUT_MS;
      }
      // While consoles are connected, the limits' and queues' figures go out on their streams
      // (their charts), so no console polls for them.
      statsTimer = setInterval(() => {
        if (fanout.size === 0) return;
        for (const [action, event] of STREAMED_STATS) {
          this.broker
            .call(action)
            .then((stats) => fanout.publish(event, stats))
            .catch(() => {}); // a node in the middle of leaving: the next tick tries again
        }
      }, STATS_STREAM_MS);
      statsTimer.unref();
    },

    created() {
      Object.assign(streams, {
        "api.events": (req, res) => {
          fanout.serve(req, res);
          return true;
        },
        "imports.create": importUploadHandler({ db, config, copyIn, broker: this.broker, logger: this.logger }),
      } satisfies StreamHandlers);
      // Deny by default: an alias whose action has no access class stops the gateway here.
      for (const spec of routeSpecs(config.apiBodyLimitBytes)) {
        for (const action of Object.values(spec.aliases)) {
          if (!ACTION_ACCESS[action]) throw new Error(`route to ${action} has no access class in services/api-routes.ts`);
        }
      }
    },

    async stopped() {
      if (statsTimer) clearInterval(statsTimer);
      fanout.close();
      redis?.disconnect();
    },
  };
}
