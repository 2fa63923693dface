// The gateway's door: the first middleware of every route, before any body is read. It answers
// OPTIONS itself (an action never runs for it), decides who may call the action the request
// resolves to (by the action's access class, never by the HTTP method), and only then reads a
// body, if the route takes one, refusing every shape the actions do not expect.
import crypto from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import bodyParser from "body-parser";
import { ForbiddenError, NotFoundError, RequestError, UnauthorizedError, ValidationError } from "../lib/platform/errors";
import {
  authorize,
  bearerToken,
  isJsonContentType,
  isSupportedEncoding,
  jsonDepthExceeds,
  MAX_JSON_DEPTH,
  originAllowed,
  type Caller,
  type Tokens,
} from "../lib/api/request-guard";
import { ACTION_ACCESS, type RouteSpec } from "./api-routes";

export type GuardedRequest = IncomingMessage & { parsedUrl?: string; body?: unknown; $caller?: Caller };
type Next = (err?: unknown) => void;
interface Gateway {
  resolveAlias(url: string, method?: string): { alias: { action?: string } } | false;
}

const PREFLIGHT_MAX_AGE_SECONDS = 600;
export const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

const digest = (s: string) => crypto.createHash("sha256").update(s).digest();

/** Who the request's credentials make it; "invalid": a token that is neither. */
export function callerFrom(header: string | undefined, tokens: Tokens): Caller | "invalid" {
  const token = bearerToken(header);
  // Another scheme (Basic …) carries no token; a malformed Bearer header carries a bad one.
  if (token === null) return /^bearer\b/i.test(header ?? "") ? "invalid" : "anonymous";
  // Compared as digests: equal lengths, constant time.
  const given = digest(token);
  if (tokens.write && crypto.timingSafeEqual(given, digest(tokens.write))) return "writer";
  if (tokens.read && crypto.timingSafeEqual(given, digest(tokens.read))) return "reader";
  return "invalid";
}

export const hasBody = (req: IncomingMessage) =>
  Boolean(req.headers["transfer-encoding"]) || Number(req.headers["content-length"] ?? 0) > 0;

/**
 * Actions whose request the guard hands over once the caller may call them, before any body is
 * read (event streams, file uploads). A handler answering false declines: the request goes on
 * to the action as usual.
 */
export type StreamHandlers = Record<string, (req: IncomingMessage, res: ServerResponse) => boolean>;
/** Public files outside moleculer-web's assets folder (the console's vendor modules); true when it served the request. */
export type PublicFiles = (req: IncomingMessage, res: ServerResponse, url: string) => boolean;

export function requestGuard(
  route: RouteSpec,
  tokens: Tokens,
  corsOrigins: readonly string[],
  streams: StreamHandlers = {},
  publicFiles: PublicFiles = () => false,
) {
  const open = tokens.write === null;
  const parseJson = bodyParser.json({
    limit: route.bodyLimitBytes,
    // Any JSON value parses, so that a string, a number or null is refused below as "not an
    // object" (422) like an array, not as malformed (400): strict mode would call it unparsable.
    strict: false,
    // The depth is checked on the raw bytes, before JSON.parse builds anything.
    verify: (_req, _res, buf) => {
      if (jsonDepthExceeds(buf))
        throw new RequestError(400, "JSON_TOO_DEEP", `JSON nested deeper than ${MAX_JSON_DEPTH} levels`, { field: "body" });
    },
    // Every JSON media type was checked before: parse whatever reaches the parser.
    type: () => true,
  });

  return function guard(this: Gateway, req: GuardedRequest, res: ServerResponse, next: Next): void {
    const origin = req.headers.origin;
    const corsAllowed = originAllowed(origin, corsOrigins);
    if (corsAllowed) {
      res.setHeader("Access-Control-Allow-Origin", origin);
      res.setHeader("Vary", "Origin");
    }
    const url = req.parsedUrl ?? "/";
    if (req.method === "OPTIONS") {
      const wanted = String(req.headers["access-control-request-method"] ?? "").toUpperCase();
      if (!corsAllowed || !wanted || !this.resolveAlias(url, wanted)) {
        return next(
          new RequestError(405, "METHOD_NOT_ALLOWED", "OPTIONS is answered only to a CORS preflight from an origin in API_CORS_ORIGINS"),
        );
      }
      res.setHeader("Access-Control-Allow-Methods", wanted);
      res.setHeader("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.setHeader("Access-Control-Max-Age", String(PREFLIGHT_MAX_AGE_SECONDS));
      res.writeHead(204);
      res.end();
      return;
    }

    const caller = callerFrom(req.headers.authorization, tokens);
    req.$caller = caller === "invalid" ? "anonymous" : caller;
    const found = this.resolveAlias(url, req.method);
    const action = found ? found.alias.action : undefined;
    if (!action) {
      // Not an action. Outside the API's paths, GET and HEAD reach the dashboard's static files;
      // anything else needs a token all the same and is then a 404. No body is read.
      const known = open || caller === "reader" || caller === "writer";
      if (route.path === "" && publicFiles(req, res, url)) return;
      if (route.path === "" && (known || req.method === "GET" || req.method === "HEAD")) return next();
      if (!known) return next(new UnauthorizedError(caller === "invalid" ? "INVALID_TOKEN" : "NO_TOKEN"));
      return next(new NotFoundError("route", `${req.method} ${url}`));
    }
    const verdict = authorize(ACTION_ACCESS[action] ?? "write", caller, open);
    if (verdict === 401) return next(new UnauthorizedError(caller === "invalid" ? "INVALID_TOKEN" : "NO_TOKEN"));
    if (verdict === 403) return next(new ForbiddenError("the read-only token cannot change anything: use API_TOKEN"));
    if (streams[action]?.(req, res)) return;

    if (!BODY_METHODS.has(req.method ?? "") || !hasBody(req)) return next();
    if (!isSupportedEncoding(req.headers["content-encoding"])) {
      return next(
        new RequestError(400, "BAD_CONTENT_ENCODING", "Content-Encoding must be identity, gzip, deflate or br", {
          field: "content-encoding",
        }),
      );
    }
    if (!isJsonContentType(req.headers["content-type"])) {
      return next(
        new RequestError(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be JSON, sent as Content-Type: application/json", {
          field: "content-type",
        }),
      );
    }
    parseJson(req, res, (err?: unknown) => {
      if (err) return next(bodyError(err));
      const body = req.body;
      if (body === null || typeof body !== "object" || Array.isArray(body)) {
        return next(new ValidationError("body", "the body must be a JSON object"));
      }
      next();
    });
  };
}

/** body-parser's errors as the API's: 400 for anything wrong with the bytes, 413 for too many. */
function bodyError(err: unknown): unknown {
  if (err instanceof RequestError) return err;
  const e = err as { type?: string; status?: number; message?: string; expose?: boolean };
  if (e.type === "entity.too.large") return new RequestError(413, "PAYLOAD_TOO_LARGE", "request body too large", { field: "body" });
  if (e.type === "entity.parse.failed") return new RequestError(400, "MALFORMED_JSON", "request body is not valid JSON", { field: "body" });
  if (e.type === "encoding.unsupported" || e.type === "charset.unsupported") {
    return new RequestError(400, "BAD_CONTENT_ENCODING", e.message ?? "unsupported encoding", { field: "content-encoding" });
  }
  // A body that does not inflate, or a stream cut short.
  return new RequestError(400, "BAD_REQUEST_BODY", "the request body could not be read", { field: "body" });
}
