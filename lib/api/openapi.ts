// The gateway's OpenAPI 3.1 document, built from what the gateway runs: its routes and the access
// class of each action, each action's own `params` (fastest-validator rules, turned into JSON
// Schema 2020-12 here) and one response description per action. Nothing is written twice, so the
// document cannot drift from the code: a route, a rule or an access class changes it at once.
// Pure: the caller hands in the routes, the rules and the descriptions.
import type { Access } from "./request-guard";

export type JsonSchema = Record<string, unknown>;
type Rule = unknown;

/** The shape the gateway promises for every error (lib/api/http-error.ts). */
export const ERROR_SCHEMA: JsonSchema = {
  type: "object",
  required: ["error"],
  additionalProperties: false,
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      additionalProperties: false,
      properties: {
        code: { type: "string", pattern: "^[A-Z][A-Z0-9_]*$", examples: ["VALIDATION_ERROR", "NOT_FOUND", "NO_TOKEN"] },
        message: { type: "string" },
        details: {
          type: "object",
          description:
            "What the problem is about: `field` names the parameter at fault (422), `errors` lists every rule that failed, " +
            "`sqlstate` is the database's code (422, 409), `retryAfterSeconds` says when to try again (429, 503)",
          properties: {
            field: { type: "string" },
            errors: { type: "array", items: { type: "object" } },
            sqlstate: { type: "string" },
            retryAfterSeconds: { type: "number" },
          },
        },
      },
    },
  },
};

/** What each error status means here. Every error answer carries ERROR_SCHEMA. */
export const ERROR_STATUSES: Record<number, string> = {
  400: "The body could not be read: malformed JSON, JSON nested deeper than 32 levels, or a bad Content-Encoding",
  401: "No token, or a wrong one (when API_TOKEN is set)",
  403: "The read-only token (API_READ_TOKEN) on a write",
  404: "No such record",
  409: "The change conflicts with the record's state or a unique value",
  413: "The body is over the route's limit (also after decompression)",
  415: "The body is not JSON in UTF-8 (or, for an import, not CSV or NDJSON)",
  422: "A parameter or body field is wrong: `details.field` names it",
  429: "Too much work queued on this node; retry after `Retry-After` seconds",
  500: "Internal error (the details are in the node's log)",
  503: "The service behind the route runs on no node right now, or a dependency is down",
};

const ERROR_NAMES: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  413: "PayloadTooLarge",
  415: "UnsupportedMediaType",
  422: "ValidationFailed",
  429: "TooManyRequests",
  500: "InternalError",
  503: "Unavailable",
};

// Any action can meet these: a full bulkhead, a fault, a service no node runs.
const SERVER_ERRORS = [429, 500, 503];

/** How one action answers, written next to the routes (services/api-responses.ts). */
export interface OperationDoc {
  summary: string;
  description?: string;
  /** The success status. */
  status: number;
  /** The success body as JSON; absent when `content` gives other media types. */
  schema?: JsonSchema;
  /** The success body in other media types (an event stream, a page). */
  content?: Record<string, JsonSchema>;
  /** A Location header on the success answer. */
  location?: string;
  /** Error statuses beyond those every operation of its kind has (401, 403, 404, 422, 4xx of a body, 429, 500, 503). */
  errors?: number[];
  /** Other answers with bodies of their own (readiness's 503). */
  also?: Record<number, { description: string; schema: JsonSchema }>;
  /** Parameters the handler checks itself (declared `any` so that `$$strict` refuses the rest): what they take. */
  paramDetails?: Record<string, JsonSchema>;
  /** A body is required even though each of its fields is optional (an empty body is a 422 naming `body`). */
  bodyRequired?: boolean;
  /** Request bodies served before the action (a file upload), with the query parameters they take. */
  uploads?: { mediaTypes: string[]; description: string; query: Record<string, JsonSchema>; response: JsonSchema };
}

/** A route as the gateway mounts it (services/api-routes.ts). */
export interface RouteSource {
  path: string;
  aliases: Record<string, string>;
}

/** An operation served outside the gateway's routes (the Prometheus endpoint). */
export interface ExtraOperation {
  method: string;
  path: string;
  operation: JsonSchema;
}

export interface ApiSource {
  info: { title: string; version: string; description: string };
  routes: RouteSource[];
  access: Record<string, Access>;
  /** An action's `params`, as its service declares them; undefined when it takes none (or no node runs it). */
  params(action: string): Record<string, Rule> | undefined;
  operations: Record<string, OperationDoc>;
  schemas: Record<string, JsonSchema>;
  tags: { name: string; description: string }[];
  /** The tag of an operation, from its route's path and the path's first segment under it. */
  tagOf(routePath: string, segment: string): string;
  extra?: ExtraOperation[];
}

/** One operation of the document: a method and path of an alias, and its action. */
export interface AliasOperation {
  method: string;
  /** In OpenAPI's form: `/api/crawls/{id}`. */
  path: string;
  action: string;
  routePath: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

function patternSource(p: unknown): string | undefined {
  if (p instanceof RegExp) return p.source;
  return typeof p === "string" ? p : undefined;
}

function withNull(schema: JsonSchema): JsonSchema {
  if (typeof schema.type === "string")
    return { ...schema, type: [schema.type, "null"], ...(schema.enum ? { enum: [...(schema.enum as unknown[]), null] } : {}) };
  return { anyOf: [schema, { type: "null" }] };
}

/** A fastest-validator rule's `a|b:1|optional` shorthand, as the object form. */
function shorthand(rule: string): Record<string, unknown> {
  const [type, ...flags] = rule.split("|");
  const out: Record<string, unknown> = { type };
  for (const flag of flags) {
    const [key, value] = flag.split(":");
    if (!key) continue;
    out[key] =
      value === undefined
        ? true
        : value === "true"
          ? true
          : value === "false"
            ? false
            : Number.isNaN(Number(value))
              ? value
              : Number(value);
  }
  return out;
}

function typedSchema(r: Record<string, unknown>): JsonSchema {
  switch (r.type) {
    case "string": {
      const s: JsonSchema = { type: "string" };
      const min = r.length ?? r.min ?? (r.empty === false ? 1 : undefined);
      const max = r.length ?? r.max;
      if (min !== undefined) s.minLength = min;
      if (max !== undefined) s.maxLength = max;
      const pattern = patternSource(r.pattern);
      if (pattern !== undefined) s.pattern = pattern;
      if (Array.isArray(r.enum)) s.enum = r.enum;
      return s;
    }
    case "number": {
      const s: JsonSchema = { type: r.integer ? "integer" : "number" };
      if (r.min !== undefined) s.minimum = r.min;
      if (r.max !== undefined) s.maximum = r.max;
      if (r.equal !== undefined) s.const = r.equal;
      if (r.positive && s.minimum === undefined) Object.assign(s, r.integer ? { minimum: 1 } : { exclusiveMinimum: 0 });
      if (r.negative && s.maximum === undefined) Object.assign(s, r.integer ? { maximum: -1 } : { exclusiveMaximum: 0 });
      return s;
    }
    case "boolean":
      return { type: "boolean" };
    case "enum": {
      const values = Array.isArray(r.values) ? r.values : [];
      const types = [...new Set(values.map((v) => typeof v))];
      return types.length === 1 && types[0] === "string" ? { type: "string", enum: values } : { enum: values };
    }
    case "array": {
      const s: JsonSchema = { type: "array" };
      if (r.items !== undefined) s.items = ruleToSchema(r.items);
      const min = r.length ?? r.min ?? (r.empty === false ? 1 : undefined);
      const max = r.length ?? r.max;
      if (min !== undefined) s.minItems = min;
      if (max !== undefined) s.maxItems = max;
      if (r.unique) s.uniqueItems = true;
      return s;
    }
    case "object": {
      const props = r.props ?? r.properties;
      if (!isObject(props)) return { type: "object" };
      return objectSchema(props, r.strict === true);
    }
    case "date":
      return { type: "string", format: "date-time" };
    case "email":
      return { type: "string", format: "email" };
    case "url":
      return { type: "string", format: "uri" };
    case "uuid":
      return { type: "string", format: "uuid" };
    case "equal":
      return { const: r.value };
    default:
      // any, custom, and rules this converter does not know: anything the handler then checks.
      return {};
  }
}

/** A fastest-validator rule as JSON Schema 2020-12. */
export function ruleToSchema(rule: Rule): JsonSchema {
  if (typeof rule === "string") return ruleToSchema(shorthand(rule));
  if (Array.isArray(rule)) return { anyOf: rule.map(ruleToSchema) };
  if (!isObject(rule)) return {};
  let s = typedSchema(rule);
  if (rule.default !== undefined && typeof rule.default !== "function") s.default = rule.default;
  if (rule.nullable === true) s = withNull(s);
  return s;
}

/** Whether a request may leave the field out. */
export function isOptional(rule: Rule): boolean {
  const r = typeof rule === "string" ? shorthand(rule) : rule;
  return isObject(r) && (r.optional === true || r.default !== undefined);
}

/** An object of rules (an action's `params`, an object's `props`) as an object schema; `$$strict` refuses other keys. */
export function objectSchema(rules: Record<string, Rule>, strict = rules.$$strict === true): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const [key, rule] of Object.entries(rules)) {
    if (key.startsWith("$$") || (isObject(rule) && rule.type === "forbidden")) continue;
    properties[key] = ruleToSchema(rule);
    if (!isOptional(rule)) required.push(key);
  }
  return {
    type: "object",
    properties,
    ...(required.length > 0 ? { required } : {}),
    ...(strict ? { additionalProperties: false } : {}),
  };
}

/**
 * A route path as OpenAPI writes it: `:id` becomes `{id}`, and an optional group (`{/:rows}`,
 * path-to-regexp's syntax) gives two paths, without and with it.
 */
export function openApiPaths(fullPath: string): string[] {
  const group = /\{([^{}]*)\}/.exec(fullPath);
  if (group) {
    const before = fullPath.slice(0, group.index);
    const after = fullPath.slice(group.index + group[0].length);
    return [...openApiPaths(before + after), ...openApiPaths(before + group[1] + after)];
  }
  return [fullPath.replace(/:(\w+)/g, "{$1}")];
}

const joinPath = (...parts: string[]) =>
  "/" +
  parts
    .flatMap((p) => p.split("/"))
    .filter(Boolean)
    .join("/");

/** Every operation the routes serve, in route order. */
export function aliasOperations(routes: RouteSource[]): AliasOperation[] {
  return routes.flatMap((route) =>
    Object.entries(route.aliases).flatMap(([alias, action]) => {
      const [method = "", aliasPath = ""] = alias.trim().split(/\s+/);
      return openApiPaths(joinPath(route.path, aliasPath)).map((path) => ({
        method: method.toUpperCase(),
        path,
        action,
        routePath: route.path,
      }));
    }),
  );
}

const QUERY_METHODS = new Set(["GET", "HEAD", "DELETE"]);
const ref = (kind: string, name: string) => ({ $ref: `#/components/${kind}/${name}` });

function slug(method: string, path: string): string {
  const words = path
    .replace(/[{}]/g, "")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean);
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

function security(access: Access): JsonSchema[] {
  // The bearer scheme's "roles": which of the two tokens may call it.
  return access === "public" ? [] : [{ bearerToken: [access] }];
}

interface BuiltOperation {
  operation: JsonSchema;
  statuses: number[];
}

function buildOperation(op: AliasOperation, source: ApiSource, operationId: string, canonical: AliasOperation | undefined): BuiltOperation {
  const doc = source.operations[op.action];
  if (!doc) throw new Error(`no response description for ${op.action} (services/api-responses.ts)`);
  const access = source.access[op.action];
  if (!access) throw new Error(`no access class for ${op.action} (services/api-routes.ts)`);
  const rules = source.params(op.action) ?? {};
  const schemaOf = (name: string) => doc.paramDetails?.[name] ?? ruleToSchema(rules[name]);
  const pathNames = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  const otherNames = Object.keys(rules).filter((k) => !k.startsWith("$$") && !pathNames.includes(k));
  const parameters: JsonSchema[] = pathNames.map((name) => ({
    name,
    in: "path",
    required: true,
    schema: doc.paramDetails?.[name] || rules[name] ? schemaOf(name) : { type: "string" },
  }));
  let requestBody: JsonSchema | undefined;
  const inQuery = QUERY_METHODS.has(op.method);
  if (inQuery) {
    for (const name of otherNames) parameters.push({ name, in: "query", required: !isOptional(rules[name]), schema: schemaOf(name) });
  } else if (otherNames.length > 0) {
    const body = objectSchema(Object.fromEntries(otherNames.map((n) => [n, rules[n]])), rules.$$strict === true);
    for (const name of otherNames)
      if (doc.paramDetails?.[name]) (body.properties as Record<string, JsonSchema>)[name] = doc.paramDetails[name]!;
    const content: Record<string, JsonSchema> = { "application/json": { schema: body } };
    for (const type of doc.uploads?.mediaTypes ?? []) content[type] = { schema: { type: "string", contentMediaType: type } };
    requestBody = {
      required: doc.bodyRequired === true || Array.isArray(body.required) || doc.uploads !== undefined,
      ...(doc.uploads ? { description: doc.uploads.description } : {}),
      content,
    };
    for (const [name, schema] of Object.entries(doc.uploads?.query ?? {}))
      parameters.push({ name, in: "query", required: false, description: "File uploads only", schema });
  }

  const success: JsonSchema = { description: doc.summary };
  const content: Record<string, JsonSchema> = {};
  if (doc.schema) {
    const upload = doc.uploads?.response;
    content["application/json"] = { schema: upload ? { anyOf: [doc.schema, upload] } : doc.schema };
  }
  for (const [type, schema] of Object.entries(doc.content ?? {})) content[type] = { schema };
  if (Object.keys(content).length > 0) success.content = content;
  if (doc.location) success.headers = { Location: { description: doc.location, schema: { type: "string" } } };
  const responses: Record<string, JsonSchema> = { [String(doc.status)]: success };
  for (const [status, also] of Object.entries(doc.also ?? {}))
    responses[status] = { description: also.description, content: { "application/json": { schema: also.schema } } };

  const errors = new Set<number>(doc.errors ?? []);
  if (access !== "public") errors.add(401);
  if (access === "write") errors.add(403);
  if (pathNames.length > 0) errors.add(404);
  if (pathNames.length + otherNames.length > 0 || doc.uploads) errors.add(422);
  if (requestBody) [400, 413, 415].forEach((s) => errors.add(s));
  SERVER_ERRORS.forEach((s) => errors.add(s));
  for (const status of [...errors].sort((a, b) => a - b)) {
    if (responses[String(status)] === undefined) responses[String(status)] = ref("responses", ERROR_NAMES[status] ?? "InternalError");
  }

  const compatibility = canonical ? `The seed's route for \`${canonical.method} ${canonical.path}\`, with the same meaning.` : undefined;
  const description = [compatibility, doc.description].filter(Boolean).join("\n\n");
  const operation: JsonSchema = {
    operationId,
    summary: doc.summary,
    ...(description ? { description } : {}),
    tags: [source.tagOf(op.routePath, op.path.slice(joinPath(op.routePath).length).split("/").filter(Boolean)[0] ?? "")],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses,
    security: security(access),
    "x-sluice-action": op.action,
    "x-sluice-access": access,
  };
  return { operation, statuses: Object.keys(responses).map(Number) };
}

/** The OpenAPI 3.1 document of the routes. */
export function buildOpenApi(source: ApiSource): JsonSchema {
  const ops = aliasOperations(source.routes);
  const seen = new Map<string, AliasOperation>();
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const op of ops) {
    const first = seen.get(op.action);
    if (!first) seen.set(op.action, op);
    const operationId = first ? `${op.action}.${slug(op.method, op.path)}` : op.action;
    // The routes under /api come before the seed's: those are the ones a seed route stands for.
    const canonical = first && first.path.startsWith("/api") && !op.path.startsWith("/api") ? first : undefined;
    const { operation } = buildOperation(op, source, operationId, canonical);
    (paths[op.path] ??= {})[op.method.toLowerCase()] = operation;
  }
  for (const extra of source.extra ?? []) (paths[extra.path] ??= {})[extra.method.toLowerCase()] = extra.operation;

  const responses = Object.fromEntries(
    Object.entries(ERROR_NAMES).map(([status, name]) => {
      const retry = status === "429" || status === "503";
      return [
        name,
        {
          description: ERROR_STATUSES[Number(status)],
          ...(retry
            ? { headers: { "Retry-After": { description: "Seconds to wait before trying again", schema: { type: "integer" } } } }
            : {}),
          content: { "application/json": { schema: ref("schemas", "Error") } },
        },
      ];
    }),
  );
  return {
    openapi: "3.1.0",
    info: source.info,
    servers: [{ url: "/", description: "This gateway" }],
    tags: source.tags,
    paths,
    components: {
      schemas: { Error: ERROR_SCHEMA, ...source.schemas },
      responses,
      securitySchemes: {
        bearerToken: {
          type: "http",
          scheme: "bearer",
          description:
            "API_TOKEN may read and write; API_READ_TOKEN may only read (an operation's `security` names `read` or `write`). " +
            "With no API_TOKEN set, no route needs a token.",
        },
      },
    },
  };
}
