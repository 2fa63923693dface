// toHttpError: every error that reaches the gateway becomes { error: { code, message, details? } }
// with a fitting status, and nothing internal (Sequelize, SQL, stacks) leaks into the body.
import { Errors as MoleculerErrors } from "moleculer";
import ApiGateway from "moleculer-web";
import { DatabaseError, ForeignKeyConstraintError, UniqueConstraintError } from "sequelize";
import { ConflictError, NotFoundError, TargetNotAllowedError, UnavailableError, ValidationError } from "../../lib/platform/errors";
import { sqlStateOf, toHttpError } from "../../lib/api/http-error";

/** A pg driver error as Sequelize receives it. */
const pgError = (code: string, message: string) => Object.assign(new Error(message), { code, sql: "INSERT INTO pages (url) VALUES ($1)" });

function expectNoLeak(body: unknown): void {
  const raw = JSON.stringify(body);
  expect(raw).not.toMatch(/sequelize/i);
  expect(raw).not.toMatch(/INSERT INTO|SELEC/);
  expect(raw).not.toMatch(/\bat .+:\d+:\d+/);
}

describe("toHttpError: constraint violations → 409", () => {
  it.each<[string, unknown]>([
    ["a fake { name: SequelizeUniqueConstraintError }", { name: "SequelizeUniqueConstraintError", message: "Validation error" }],
    [
      "a fake { parent: { code: 23505 } }",
      {
        name: "SequelizeDatabaseError",
        message: 'duplicate key value violates unique constraint "pages_url_key"',
        parent: { code: "23505" },
      },
    ],
    [
      "a real Sequelize UniqueConstraintError",
      new UniqueConstraintError({ parent: pgError("23505", 'duplicate key value violates unique constraint "pages_url_key"') }),
    ],
  ])("%s", (_title, err) => {
    const { status, body } = toHttpError(err);
    expect(status).toBe(409);
    expect(body).toEqual({
      error: { code: "CONFLICT", message: "a record with that unique value already exists", details: { sqlstate: "23505" } },
    });
    expectNoLeak(body);
  });
});

/** A pg error as the driver throws it (the message names the value, as Postgres's do). */
const rawPg = (code: string) => pgError(code, `invalid input value "s3cr3t-value" (${code})`);
const wrapped = (code: string) => new DatabaseError(rawPg(code));

describe("toHttpError: Postgres errors by SQLSTATE class, however they arrive", () => {
  const arrivals: [string, (code: string) => unknown][] = [
    ["a raw pg error { code }", rawPg],
    ["a Sequelize DatabaseError (parent and original)", wrapped],
    ["a fake with only { parent: { code } }", (code) => ({ name: "SequelizeDatabaseError", message: "x", parent: { code } })],
    ["a fake with only { original: { code } }", (code) => ({ name: "SequelizeDatabaseError", message: "x", original: { code } })],
  ];
  const data: [string, string][] = [
    ["22P02", "a value is not valid for its column's type"],
    ["22003", "a number is out of range for its column"],
    ["22021", "a text value is not valid UTF-8 or holds a NUL character"],
    ["22P05", "a text value holds a character the database cannot store"],
    ["22001", "a text value is too long for its column"],
    ["22012", "a value is not valid for the database"], // division by zero: any other class 22 code
  ];
  const integrity: [string, string][] = [
    ["23505", "a record with that unique value already exists"],
    ["23503", "the change refers to a record that does not exist, or one that others refer to"],
    ["23502", "a required value is missing"],
    ["23514", "a value fails a check constraint"],
    ["23000", "the change conflicts with a database constraint"],
  ];
  for (const [how, build] of arrivals) {
    it.each(data)(`${how}: %s → 422 with the SQLSTATE and no value`, (code, message) => {
      const { status, body } = toHttpError(build(code));
      expect(status).toBe(422);
      expect(body).toEqual({ error: { code: "VALIDATION_ERROR", message, details: { sqlstate: code } } });
      expect(JSON.stringify(body)).not.toContain("s3cr3t");
      expectNoLeak(body);
    });
    it.each(integrity)(`${how}: %s → 409 with the SQLSTATE and no value`, (code, message) => {
      const { status, body } = toHttpError(build(code));
      expect(status).toBe(409);
      expect(body).toEqual({ error: { code: "CONFLICT", message, details: { sqlstate: code } } });
      expect(JSON.stringify(body)).not.toContain("s3cr3t");
      expectNoLeak(body);
    });
  }

  it.each<[string, unknown, string]>([
    [
      "a real ForeignKeyConstraintError",
      new ForeignKeyConstraintError({ parent: pgError("23503", "insert or update violates foreign key") }),
      "23503",
    ],
    [
      "a fake { name: SequelizeForeignKeyConstraintError } without a code",
      { name: "SequelizeForeignKeyConstraintError", message: "x" },
      "23503",
    ],
    [
      "a fake { name: SequelizeExclusionConstraintError } without a code",
      { name: "SequelizeExclusionConstraintError", message: "x" },
      "23P01",
    ],
  ])("%s → 409", (_title, err, sqlstate) => {
    const { status, body } = toHttpError(err);
    expect(status).toBe(409);
    expect(body.error).toMatchObject({ code: "CONFLICT", details: { sqlstate } });
  });

  it.each<[string, unknown]>([
    ["a syntax error (42601)", wrapped("42601")],
    ["an undefined column (42703)", rawPg("42703")],
    ["a connection failure (08006)", rawPg("08006")],
    ["too many connections (53300)", rawPg("53300")],
    ["a statement timeout (57014)", wrapped("57014")],
    ["a Node errno code", Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })],
    ["a code that is no SQLSTATE", { code: "22P0", message: "x" }],
  ])("%s stays a 500 with nothing internal", (_title, err) => {
    const res = toHttpError(err);
    expect(res).toEqual({ status: 500, body: { error: { code: "INTERNAL_ERROR", message: "internal error" } } });
    expect(JSON.stringify(res.body)).not.toContain("s3cr3t");
  });

  it("sqlStateOf reads parent, original and the raw code, in that order", () => {
    expect(sqlStateOf(wrapped("22P02"))).toBe("22P02");
    expect(sqlStateOf({ parent: { code: "23505" }, code: 500 })).toBe("23505");
    expect(sqlStateOf(rawPg("23502"))).toBe("23502");
    expect(sqlStateOf(new Error("plain"))).toBeUndefined();
    expect(sqlStateOf("23505")).toBeUndefined();
    expect(sqlStateOf(null)).toBeUndefined();
  });
});

describe("toHttpError: body-parser errors", () => {
  it.each<[string, object, number, string]>([
    ["entity.parse.failed", { status: 400, type: "entity.parse.failed", message: "Unexpected end of JSON input" }, 400, "MALFORMED_JSON"],
    ["entity.too.large", { status: 413, type: "entity.too.large", message: "request entity too large" }, 413, "PAYLOAD_TOO_LARGE"],
    [
      "encoding.unsupported",
      { status: 415, type: "encoding.unsupported", message: 'unsupported content encoding "br"' },
      400,
      "BAD_CONTENT_ENCODING",
    ],
    [
      "charset.unsupported",
      { status: 415, type: "charset.unsupported", message: 'unsupported charset "KOI8-R"' },
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    ],
  ])("%s", (_type, err, status, code) => {
    const res = toHttpError(err);
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    // Only a refused encoding names a field (the header); the others are about the whole body.
    if (code === "BAD_CONTENT_ENCODING") expect(res.body.error.details).toEqual({ field: "content-encoding" });
    else expect(res.body.error.details).toBeUndefined();
  });

  it("a parse failure does not echo the parser's message", () => {
    expect(toHttpError({ status: 400, type: "entity.parse.failed", message: "Unexpected token } in JSON at position 7" }).body).toEqual({
      error: { code: "MALFORMED_JSON", message: "request body is not valid JSON" },
    });
  });
});

describe("toHttpError: moleculer errors", () => {
  it("the parameter validator's error → 422 naming the first field", () => {
    const errors = [
      { type: "numberMin", field: "maxPages", message: "The 'maxPages' field must be greater than or equal to 1.", actual: 0 },
      { type: "required", field: "url", message: "The 'url' field is required." },
    ];
    const { status, body } = toHttpError(new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", errors));
    expect(status).toBe(422);
    expect(body).toEqual({
      error: { code: "VALIDATION_ERROR", message: errors[0]!.message, details: { field: "maxPages", errors } },
    });
  });

  it("a $$strict refusal names the first unknown key as the field", () => {
    const errors = [
      {
        type: "objectStrict",
        message: "The object '' contains forbidden keys: 'fields, populate'.",
        expected: "page, pageSize",
        actual: "fields, populate",
      },
    ];
    const { status, body } = toHttpError(new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", errors));
    expect(status).toBe(422);
    expect(body.error).toMatchObject({
      code: "VALIDATION_ERROR",
      message: "The 'fields' field is not allowed here (nor are 1 more).",
      details: { field: "fields" },
    });
  });

  it("a validator error echoes no more than a short piece of the value", () => {
    const huge = "x".repeat(1_000_000);
    const errors = [
      { type: "string", field: "name", message: "The 'name' field must be a string.", actual: [huge] },
      { type: "stringEnum", field: "status", message: "bad status", actual: huge },
      { type: "objectStrict", message: "forbidden", actual: `${huge}, b` },
    ];
    const { body } = toHttpError(new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", errors));
    expect(JSON.stringify(body).length).toBeLessThan(2_000);
    expect((body.error.details as { errors: { actual?: unknown }[] }).errors[0]!.actual).toBeUndefined();
  });

  it("a validator error with an empty list still answers 422", () => {
    const { status, body } = toHttpError(new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", []));
    expect(status).toBe(422);
    expect(body.error).toMatchObject({ code: "VALIDATION_ERROR", message: "invalid parameters" });
  });

  it.each<[string, unknown]>([
    ["ServiceNotFoundError", new MoleculerErrors.ServiceNotFoundError({ action: "crawls.create" })],
    ["ServiceNotAvailableError", new MoleculerErrors.ServiceNotAvailableError({ action: "crawls.create", nodeID: "node-1" })],
  ])("%s → 503 UNAVAILABLE without naming the action or node", (_name, err) => {
    const { status, body } = toHttpError(err);
    expect(status).toBe(503);
    expect(body.error.code).toBe("UNAVAILABLE");
    expect(body.error.details).toBeUndefined();
    expect(JSON.stringify(body)).not.toMatch(/crawls\.create|node-1/);
  });

  it.each<[string, unknown, string]>([
    ["NO_TOKEN", new ApiGateway.Errors.UnAuthorizedError(ApiGateway.Errors.ERR_NO_TOKEN, null), "NO_TOKEN"],
    ["INVALID_TOKEN", new ApiGateway.Errors.UnAuthorizedError(ApiGateway.Errors.ERR_INVALID_TOKEN, null), "INVALID_TOKEN"],
  ])("moleculer-web's UnAuthorizedError (%s) → 401", (_t, err, code) => {
    const { status, body } = toHttpError(err);
    expect(status).toBe(401);
    expect(body).toEqual({ error: { code, message: "Unauthorized" } });
  });

  it("moleculer-web's NotFoundError (an unknown route) → 404", () => {
    // The gateway's send404 constructs it without arguments; the typings want a type.
    const NotFound = ApiGateway.Errors.NotFoundError as unknown as new () => Error;
    expect(toHttpError(new NotFound())).toEqual({ status: 404, body: { error: { code: "NOT_FOUND", message: "Not found" } } });
  });

  it("a client error without a type → its status, code BAD_REQUEST", () => {
    expect(toHttpError({ code: 418, message: "short and stout" })).toEqual({
      status: 418,
      body: { error: { code: "BAD_REQUEST", message: "short and stout" } },
    });
  });
});

describe("toHttpError: the project's errors (lib/platform/errors.ts)", () => {
  it.each<[string, unknown, number, string, object]>([
    ["ValidationError", new ValidationError("url", '"x" is not a URL'), 422, "VALIDATION_ERROR", { field: "url" }],
    ["TargetNotAllowedError", new TargetNotAllowedError("10.0.0.1"), 422, "TARGET_NOT_ALLOWED", { field: "url", host: "10.0.0.1" }],
    ["NotFoundError", new NotFoundError("crawl", 7), 404, "NOT_FOUND", { entity: "crawl", id: 7 }],
    [
      "ConflictError",
      new ConflictError("crawl 7 is already succeeded", { id: 7, status: "succeeded" }),
      409,
      "CONFLICT",
      { id: 7, status: "succeeded" },
    ],
    ["UnavailableError", new UnavailableError("database unreachable", { retryInMs: 1000 }), 503, "UNAVAILABLE", { retryInMs: 1000 }],
  ])("%s keeps its status, code and details", (_name, err, status, code, details) => {
    const res = toHttpError(err);
    expect(res.status).toBe(status);
    expect(res.body.error).toEqual({ code, message: (err as Error).message, details });
  });
});

describe("toHttpError: anything else → 500 INTERNAL_ERROR, with nothing internal", () => {
  const internal = { status: 500, body: { error: { code: "INTERNAL_ERROR", message: "internal error" } } };
  it.each<[string, unknown]>([
    ["a plain Error", new Error("Cannot read properties of undefined (reading 'id')")],
    ["a Sequelize DatabaseError carrying SQL", new DatabaseError(pgError("42601", 'syntax error at or near "SELEC"'))],
    ["a server error without a type", { code: 500, message: "SequelizeConnectionError: connect ECONNREFUSED" }],
    ["a status outside HTTP's range", { code: 42, message: "odd" }],
    ["a thrown string", "SequelizeDatabaseError"],
    ["null", null],
    ["undefined", undefined],
  ])("%s", (_title, err) => {
    const res = toHttpError(err);
    expect(res).toEqual(internal);
    expectNoLeak(res.body);
  });
});
