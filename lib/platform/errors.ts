// The one error hierarchy. Moleculer's error classes carry code/type/data and a retryable
// flag; moleculer-web turns `code` into the HTTP status, so every error thrown from an action
// is one of these and the gateway needs no per-route mapping. This is the only file under lib/
// that imports moleculer, and it only takes the error classes (no broker, no server).
import { Errors } from "moleculer";

export interface FieldDetails {
  field?: string;
  [key: string]: unknown;
}

/** 422: a parameter is wrong; `field` names it. */
export class ValidationError extends Errors.MoleculerClientError {
  constructor(field: string, message: string, details: Record<string, unknown> = {}) {
    super(message, 422, "VALIDATION_ERROR", { field, ...details });
    this.name = "ValidationError";
  }
}

/**
 * 422: a crawl target the SSRF guard refuses (lib/ssrf.ts). It never says what the host
 * resolved to, nor which rule refused it: the answer would let a client map the internal
 * network through the API (a DNS oracle). `host` is the client's own input.
 */
export class TargetNotAllowedError extends Errors.MoleculerClientError {
  constructor(host: string) {
    super(
      "Crawl target not allowed: Sluice does not crawl private, loopback or link-local addresses " +
        "unless CRAWL_ALLOW_HOSTS lists the host (and port), nor its own ports and servers.",
      422,
      "TARGET_NOT_ALLOWED",
      { field: "url", host },
    );
    this.name = "TargetNotAllowedError";
  }
}

export class NotFoundError extends Errors.MoleculerClientError {
  constructor(entity: string, id: unknown) {
    super(`${entity} ${String(id)} not found`, 404, "NOT_FOUND", { entity, id });
    this.name = "NotFoundError";
  }
}

export class ConflictError extends Errors.MoleculerClientError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, 409, "CONFLICT", details);
    this.name = "ConflictError";
  }
}

/** Transient: the database (or another dependency) is unreachable or refused the work for now. */
export class UnavailableError extends Errors.MoleculerRetryableError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, 503, "UNAVAILABLE", details);
    this.name = "UnavailableError";
  }
}

/**
 * 503 for work that was refused and must not be retried by the broker's retry policy: the
 * action that throws it is not idempotent (a retry would create a second job).
 */
export class NotQueuedError extends Errors.MoleculerServerError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, 503, "NOT_QUEUED", details);
    this.name = "NotQueuedError";
    // MoleculerServerError is retryable by default.
    this.retryable = false;
  }
}

/**
 * 429: a bulkhead's queue is full. Retryable, with the seconds to wait in `retryAfterSeconds`
 * (the gateway sends it as Retry-After).
 */
export class QueueFullError extends Errors.MoleculerRetryableError {
  constructor(resource: string, retryAfterSeconds: number) {
    super(`Too much work queued for "${resource}"; retry in ${retryAfterSeconds} s`, 429, "QUEUE_FULL", { resource, retryAfterSeconds });
    this.name = "QueueFullError";
  }
}

/** Boot-time configuration error: names the variable. Not an HTTP error; the process exits. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

/** A running job was told to stop (or its claim was taken over): its transaction rolls back. */
export class JobStoppedError extends Error {
  constructor(
    readonly jobId: number,
    readonly reason: "stopped" | "claim lost" | "handed back",
  ) {
    super(`job ${jobId}: ${reason}`);
    this.name = "JobStoppedError";
  }
}

const MAX_DETAIL_CHARS = 300;

/**
 * A failed attempt's error as its job row keeps it. Postgres's message names only the constraint;
 * its detail names the key or the row it refused ("Key (email)=(a@b.c) already exists."), which
 * is what finds the line of a file to fix. pg keeps it in `detail`, Sequelize in `parent`.
 */
export function jobErrorText(err: unknown): string {
  const e = (err ?? {}) as { message?: unknown; detail?: unknown; parent?: { detail?: unknown } };
  const message = typeof e.message === "string" ? e.message : String(err);
  const detail = [e.detail, e.parent?.detail].find((d): d is string => typeof d === "string" && d !== "");
  if (!detail) return message;
  return `${message}: ${detail.length > MAX_DETAIL_CHARS ? `${detail.slice(0, MAX_DETAIL_CHARS)}…` : detail}`;
}

/** A job failure that another attempt would only repeat (bad data, say): the job fails at once. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PermanentJobError";
  }
}

/** 401: the route needs a token and the request has none (NO_TOKEN) or a wrong one (INVALID_TOKEN). */
export class UnauthorizedError extends Errors.MoleculerClientError {
  constructor(type: "NO_TOKEN" | "INVALID_TOKEN") {
    super(type === "NO_TOKEN" ? "this route needs a token: send Authorization: Bearer <token>" : "the token is not valid", 401, type);
    this.name = "UnauthorizedError";
  }
}

/** 403: a read-only token (API_READ_TOKEN) on a route that changes things. */
export class ForbiddenError extends Errors.MoleculerClientError {
  constructor(message: string) {
    super(message, 403, "FORBIDDEN");
    this.name = "ForbiddenError";
  }
}

/** A request refused for its form before any action saw it: 400, 405, 413 or 415. */
export class RequestError extends Errors.MoleculerClientError {
  constructor(status: 400 | 405 | 413 | 415, type: string, message: string, details?: Record<string, unknown>) {
    super(message, status, type, details);
    this.name = "RequestError";
  }
}
