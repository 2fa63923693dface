// The HTTP gateway: REST under /api, the dashboard at /, health and readiness. Every error
// leaves as { error: { code, message, details? } } (lib/http-error.ts).
import crypto from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import ApiGateway from "moleculer-web";
import type { Context, ServiceSchema } from "moleculer";
import IORedis from "ioredis";
import { toHttpError } from "../lib/http-error";
import { holdersOf } from "../lib/leased-slots";
import { DB_CONNECTIONS_RESOURCE } from "../lib/names";
import type { HttpMeta, Runtime } from "../runtime";
import type { BodyMeta } from "./inserts.service";

const READY_CHECK_TIMEOUT_MS = 2_000;
const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
// 1,000,000 ids of up to 16 digits, with commas and some room.
const ID_TASK_BODY_LIMIT = 20 * 1024 * 1024;

const digest = (s: string) => crypto.createHash("sha256").update(s).digest();

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref())]);
}

// The users API, under /api and under the seed's path (/users/).
const USER_ALIASES = {
  "GET users": "users.list",
  "POST users": "users.create",
  "GET users/:id": "users.get",
  "PUT users/:id": "users.update",
  "PATCH users/:id": "users.update",
};

// Actions that change things although the seed routes reach them with GET.
const GUARDED_ACTIONS = new Set(["inserts.create", "inserts.sync", "jobs.stop", "rows.clear"]);

type GatewayRequest = IncomingMessage & { $params?: Record<string, unknown>; $action?: { name: string } };

function idTaskRoute(path: string) {
  return {
    path,
    mappingPolicy: "restrict",
    mergeParams: true,
    authorization: true,
    bodyParsers: { json: { strict: true, limit: ID_TASK_BODY_LIMIT } },
    aliases: {
      "POST /": "idTasks.create",
      "GET /": "idTasks.list",
      "GET /:id": "idTasks.get",
      "PUT /:id": "idTasks.update",
      "PATCH /:id": "idTasks.update",
      "GET /:id/slots": "idTasks.slots",
    },
    onBeforeCall: markMissingBody,
  };
}

/** A POST without a body is told so (422 naming "body"), where `{}` would take the defaults. */
function markMissingBody(ctx: Context<unknown, BodyMeta>, _route: unknown, req: IncomingMessage): void {
  const length = Number(req.headers["content-length"] ?? 0);
  if (MUTATING.has(req.method ?? "") && !req.headers["transfer-encoding"] && !(length > 0)) ctx.meta.bodyMissing = true;
}

/** The seed's path numbers (`/insert/500`) arrive as strings: digits become numbers, anything else is left for validation to reject. */
function numericPathParams(_ctx: Context, _route: unknown, req: GatewayRequest): void {
  const params = req.$params ?? {};
  for (const key of ["rows", "id"]) {
    const v = params[key];
    if (typeof v === "string" && /^\d{1,15}$/.test(v)) params[key] = Number(v);
  }
}

export default function apiService({ db, config, boot, limits }: Runtime): ServiceSchema<Record<string, unknown>> {
  const tokenDigest = config.apiToken ? digest(config.apiToken) : null;
  let redis: IORedis | null = null;

  return {
    name: "api",
    mixins: [ApiGateway as unknown as Partial<ServiceSchema>],
    settings: {
      port: config.port,
      ip: "0.0.0.0",
      routes: [
        // Id-tasks have their own body limit (a task may hold 1,000,000 ids), under /api and
        // under the seed's path.
        idTaskRoute("/api/id-tasks"),
        idTaskRoute("/celery_ids_tasks"),
        {
          path: "/api",
          mappingPolicy: "restrict",
          mergeParams: true,
          authorization: true,
          bodyParsers: { json: { strict: true, limit: config.apiBodyLimitBytes } },
          aliases: {
            "POST crawls": "crawls.create",
            "GET crawls": "crawls.list",
            "GET crawls/:id": "crawls.get",
            "DELETE crawls/:id": "crawls.cancel",
            // Before pages/:id, so "count" is not taken for an id.
            "GET pages/count": "pages.count",
            "GET pages": "pages.list",
            "GET pages/:id": "pages.get",
            "POST inserts": "inserts.create",
            "POST inserts/sync": "inserts.sync",
            "GET jobs": "jobs.list",
            "GET jobs/:id": "jobs.get",
            "POST jobs/:id/stop": "jobs.stop",
            // Before rows/:id would be; rows has no per-row route.
            "GET rows/count": "rows.count",
            "GET rows": "rows.list",
            "DELETE rows": "rows.clear",
            ...USER_ALIASES,
            "GET throttle": "throttle.cluster",
            "GET backlog": "backlog.get",
            "PATCH throttle": "throttle.set",
            "GET health": "api.health",
            "GET ready": "api.ready",
          },
          onBeforeCall: markMissingBody,
        },
        {
          // The seed Flask app's routes, with the same meaning, so its users switch by changing a
          // host name. GETs that change things are guarded by API_TOKEN like every write.
          path: "",
          mappingPolicy: "restrict",
          authorization: true,
          aliases: {
            "GET insert{/:rows}": "inserts.create",
            "GET dpd_insert{/:rows}": "inserts.sync",
            "GET status/:id": "jobs.get",
            "GET stop/:id": "jobs.stop",
            "GET get_data/count": "rows.count",
            "GET get_data": "rows.list",
            "GET delete_all": "rows.clear",
            ...USER_ALIASES,
          },
          onBeforeCall: numericPathParams,
        },
      ],
      assets: { folder: path.join(__dirname, "..", "public") },
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

    actions: {
      // The broker's retry policy must not re-run the HTTP handler: by then it has consumed the
      // route prefix of req.url, and a retried request falls through to a 404. The actions it
      // calls are retried on their own.
      rest: { retryPolicy: { enabled: false } },

      health() {
        return { status: "ok", nodeId: this.broker.nodeID, uptimeSeconds: Math.round(process.uptime()) };
      },

      async ready(ctx: Context<unknown, HttpMeta>) {
        if (boot.state !== "ready") {
          ctx.meta.$statusCode = 503;
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
        return { ready, checks };
      },
    },

    methods: {
      // With API_TOKEN set, every mutating route needs "Authorization: Bearer <token>".
      authorize(_ctx: Context, _route: unknown, req: IncomingMessage) {
        if (!tokenDigest) return;
        if (!MUTATING.has(req.method ?? "") && !GUARDED_ACTIONS.has((req as GatewayRequest).$action?.name ?? "")) return;
        const header = req.headers.authorization ?? "";
        const token = header.startsWith("Bearer ") ? header.slice(7) : null;
        if (token === null) throw new ApiGateway.Errors.UnAuthorizedError(ApiGateway.Errors.ERR_NO_TOKEN, null);
        if (!crypto.timingSafeEqual(digest(token), tokenDigest)) {
          throw new ApiGateway.Errors.UnAuthorizedError(ApiGateway.Errors.ERR_INVALID_TOKEN, null);
        }
      },
    },

    async stopped() {
      redis?.disconnect();
    },
  };
}
