// Turns any error that reaches the gateway into the one JSON shape the API promises:
// { error: { code, message, details? } } with a fitting status. Internal errors keep their
// details in the log, not in the response.
export interface HttpError {
  status: number;
  body: { error: { code: string; message: string; details?: unknown } };
}

interface ErrorLike {
  name?: string;
  message?: string;
  code?: unknown;
  status?: unknown;
  type?: unknown;
  data?: unknown;
  parent?: { code?: string };
}

const make = (status: number, code: string, message: string, details?: unknown): HttpError => ({
  status,
  body: { error: details === undefined ? { code, message } : { code, message, details } },
});

export function toHttpError(err: unknown): HttpError {
  const e = (err ?? {}) as ErrorLike;
  if (e.name === "SequelizeUniqueConstraintError" || e.parent?.code === "23505") {
    return make(409, "CONFLICT", "a record with that unique value already exists");
  }
  // Any other integrity constraint (SQLSTATE class 23: foreign key, check, not-null, exclusion).
  if (e.parent?.code?.startsWith("23") || /^Sequelize(ForeignKey|Exclusion)ConstraintError$/.test(e.name ?? "")) {
    return make(409, "CONFLICT", "the change conflicts with a database constraint");
  }
  // body-parser's errors carry `status` and a dotted `type`.
  if (e.type === "entity.parse.failed") return make(400, "MALFORMED_JSON", "request body is not valid JSON");
  if (e.type === "entity.too.large") return make(413, "PAYLOAD_TOO_LARGE", e.message ?? "request body too large");
  if (e.type === "encoding.unsupported" || e.type === "charset.unsupported") return make(415, "UNSUPPORTED_MEDIA_TYPE", e.message ?? "unsupported encoding");

  const status = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : 500;
  const type = typeof e.type === "string" ? e.type : undefined;
  if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE") {
    return make(503, "UNAVAILABLE", "the service behind this route is not running on any node; try again shortly");
  }
  // moleculer's parameter validator: data is a list of { field, message, type }.
  if (type === "VALIDATION_ERROR" && Array.isArray(e.data)) {
    // Only what the client needs: the validator's items also name the node and the action.
    const errors = (e.data as { field?: string; message?: string; type?: string; actual?: unknown }[]).map(({ field, message, type, actual }) => ({ field, message, type, actual }));
    const first = errors[0];
    return make(422, "VALIDATION_ERROR", first?.message ?? "invalid parameters", { field: first?.field, errors });
  }
  if (status >= 400 && status < 500) {
    return make(status, type ?? "BAD_REQUEST", e.message ?? "bad request", e.data ?? undefined);
  }
  if (status >= 500 && status < 600 && type) return make(status, type, e.message ?? "unavailable", e.data ?? undefined);
  return make(500, "INTERNAL_ERROR", "internal error");
}
