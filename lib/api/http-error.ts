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
  // Sequelize keeps the driver's error in both.
  parent?: { code?: unknown };
  original?: { code?: unknown };
}

interface ValidatorItem {
  field?: string;
  message?: string;
  type?: string;
  actual?: unknown;
}

// How much of a client's own input a validation error echoes back: a 1 MB value must not come
// back as a 1 MB error.
const MAX_ECHO_CHARS = 100;
const MAX_MESSAGE_CHARS = 300;

const SQLSTATE = /^[0-9A-Z]{5}$/;

// Postgres's class 22 (data exception): the value, not the server, is at fault.
const DATA_ERRORS: Record<string, string> = {
  "22P02": "a value is not valid for its column's type",
  "22003": "a number is out of range for its column",
  "22021": "a text value is not valid UTF-8 or holds a NUL character",
  "22P05": "a text value holds a character the database cannot store",
  "22001": "a text value is too long for its column",
  "22007": "a date or time value is not valid",
  "22008": "a date or time value is out of range",
};
// Class 23 (integrity constraint violation): the change conflicts with what is stored.
const INTEGRITY_ERRORS: Record<string, string> = {
  "23505": "a record with that unique value already exists",
  "23503": "the change refers to a record that does not exist, or one that others refer to",
  "23502": "a required value is missing",
  "23514": "a value fails a check constraint",
  "23P01": "the change conflicts with a database constraint",
};
// Sequelize's constraint errors, for when the driver's code did not travel with them (a fake in
// a test, or an error rebuilt on another node).
const SEQUELIZE_CONSTRAINT_ERRORS: Record<string, string> = {
  SequelizeUniqueConstraintError: "23505",
  SequelizeForeignKeyConstraintError: "23503",
  SequelizeExclusionConstraintError: "23P01",
};

const make = (status: number, code: string, message: string, details?: unknown): HttpError => ({
  status,
  body: { error: details === undefined ? { code, message } : { code, message, details } },
});

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max)}…` : s);

/** A value the client sent, as far as an error may show it: short scalars only. */
function echo(actual: unknown): unknown {
  if (typeof actual === "string") return clip(actual, MAX_ECHO_CHARS);
  return actual !== null && typeof actual === "object" ? undefined : actual;
}

/**
 * The SQLSTATE of a Postgres error: pg's own error carries it in `code`, Sequelize's in
 * `parent.code` / `original.code`. Anything else (a Node errno such as "ECONNRESET", a
 * moleculer error's numeric code) gives undefined or a code of another class.
 */
export function sqlStateOf(err: unknown): string | undefined {
  if (err === null || typeof err !== "object") return undefined;
  const e = err as ErrorLike;
  for (const code of [e.parent?.code, e.original?.code, e.code]) {
    if (typeof code === "string" && SQLSTATE.test(code)) return code;
  }
  return typeof e.name === "string" ? SEQUELIZE_CONSTRAINT_ERRORS[e.name] : undefined;
}

/**
 * Whether Postgres refused the data rather than failed to run (SQLSTATE class 22, a data
 * exception; 23, an integrity violation; 54, a limit such as an index row's size): the same rows
 * would be refused again, and in a batch one row is enough to fail it all.
 */
export function isDataFault(err: unknown): boolean {
  const sqlState = sqlStateOf(err);
  return sqlState !== undefined && ["22", "23", "54"].includes(sqlState.slice(0, 2));
}

/** moleculer's parameter validator: data is a list of { field, message, type, actual }. */
function validatorError(items: ValidatorItem[]): HttpError {
  // Only what the client needs: the validator's items also name the node and the action.
  const errors = items.map(({ field, message, type, actual }) => {
    // `$$strict` names no field ("The object '' contains forbidden keys: 'a, b'"): the first key
    // it refused is the one at fault.
    if (field === undefined && type === "objectStrict" && typeof actual === "string") {
      const keys = actual.split(", ");
      const key = clip(keys[0] ?? "", MAX_ECHO_CHARS);
      const more = keys.length > 1 ? ` (nor are ${keys.length - 1} more)` : "";
      return { field: key, message: `The '${key}' field is not allowed here${more}.`, type, actual: echo(actual) };
    }
    return { field, message: message === undefined ? undefined : clip(message, MAX_MESSAGE_CHARS), type, actual: echo(actual) };
  });
  const first = errors[0];
  return make(422, "VALIDATION_ERROR", first?.message ?? "invalid parameters", { field: first?.field, errors });
}

export function toHttpError(err: unknown): HttpError {
  const e = (err ?? {}) as ErrorLike;
  // The database's message names values and SQL: only the SQLSTATE goes out.
  const sqlState = sqlStateOf(err);
  if (sqlState?.startsWith("23")) {
    return make(409, "CONFLICT", INTEGRITY_ERRORS[sqlState] ?? "the change conflicts with a database constraint", { sqlstate: sqlState });
  }
  if (sqlState?.startsWith("22")) {
    return make(422, "VALIDATION_ERROR", DATA_ERRORS[sqlState] ?? "a value is not valid for the database", { sqlstate: sqlState });
  }
  // body-parser's errors carry `status` and a dotted `type`.
  if (e.type === "entity.parse.failed") return make(400, "MALFORMED_JSON", "request body is not valid JSON");
  if (e.type === "entity.too.large") return make(413, "PAYLOAD_TOO_LARGE", e.message ?? "request body too large");
  // An unknown Content-Encoding leaves the bytes unreadable: 400, as the request guard answers
  // it. An unknown charset is a media type the API does not take: 415.
  if (e.type === "encoding.unsupported")
    return make(400, "BAD_CONTENT_ENCODING", e.message ?? "unsupported encoding", { field: "content-encoding" });
  if (e.type === "charset.unsupported") return make(415, "UNSUPPORTED_MEDIA_TYPE", e.message ?? "unsupported charset");

  const status = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : 500;
  const type = typeof e.type === "string" ? e.type : undefined;
  if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE") {
    return make(503, "UNAVAILABLE", "the service behind this route is not running on any node; try again shortly");
  }
  if (type === "VALIDATION_ERROR" && Array.isArray(e.data)) return validatorError(e.data as ValidatorItem[]);
  if (status >= 400 && status < 500) {
    return make(status, type ?? "BAD_REQUEST", e.message ?? "bad request", e.data ?? undefined);
  }
  if (status >= 500 && status < 600 && type) return make(status, type, e.message ?? "unavailable", e.data ?? undefined);
  return make(500, "INTERNAL_ERROR", "internal error");
}
