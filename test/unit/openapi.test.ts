// The OpenAPI document's builder (lib/api/openapi.ts) and its one hand-written input, the
// response map (services/api-responses.ts): an alias with no response description, or a
// description no alias uses, fails here, so the document cannot silently drift from the routes.
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { aliasOperations, buildOpenApi, objectSchema, openApiPaths, ruleToSchema, type ApiSource } from "../../lib/api/openapi";
import { intIdParam, isoTimeParam, paginationParams } from "../../lib/api/params";
import { ACTION_ACCESS, routeSpecs } from "../../services/api-routes";
import { ACTION_RESPONSES, API_TAGS, metricsOperation, RESPONSE_SCHEMAS, tagOf } from "../../services/api-responses";
import { CREATE_CRAWL_PARAMS } from "../../services/crawls.service";
import { CREATE_URL_IMPORT_PARAMS } from "../../services/imports.service";
import { CREATE_INSERT_PARAMS } from "../../services/inserts.service";

const routes = routeSpecs(1024 * 1024);
const actions = [...new Set(routes.flatMap((r) => Object.values(r.aliases)))];

// A few actions' real rules; the integration test builds the document from the running services.
const PARAMS: Record<string, Record<string, unknown>> = {
  "crawls.create": CREATE_CRAWL_PARAMS,
  "crawls.get": { id: intIdParam },
  "crawls.list": { ...paginationParams, status: { type: "enum", values: ["pending", "running"], optional: true } },
  "inserts.create": CREATE_INSERT_PARAMS,
  "imports.create": CREATE_URL_IMPORT_PARAMS,
  "jobAdmin.remove": { status: { type: "enum", values: ["succeeded"], optional: true }, finishedBefore: isoTimeParam },
};

const source = (operations = ACTION_RESPONSES): ApiSource => ({
  info: { title: "Sluice", version: "0.0.0", description: "test" },
  routes,
  access: ACTION_ACCESS,
  params: (action) => PARAMS[action],
  operations,
  schemas: RESPONSE_SCHEMAS,
  tags: API_TAGS,
  tagOf,
  extra: [metricsOperation(3030)],
});

describe("the response map", () => {
  it("describes every action behind an alias, and nothing else", () => {
    expect(actions.filter((a) => !ACTION_RESPONSES[a])).toEqual([]);
    expect(Object.keys(ACTION_RESPONSES).filter((a) => !actions.includes(a))).toEqual([]);
  });

  it("refuses to build a document with an undescribed alias", () => {
    const { ["rows.count"]: _gone, ...rest } = ACTION_RESPONSES;
    expect(() => buildOpenApi(source(rest))).toThrow("no response description for rows.count");
  });

  it("has response schemas that compile under JSON Schema 2020-12 in strict mode", () => {
    const ajv = new Ajv2020({ strict: true });
    addFormats(ajv);
    // The components under an $id of their own, and every reference to them pointed there.
    const local = (schema: unknown) => JSON.parse(JSON.stringify(schema).replace(/#\/components\/schemas\//g, "sluice:components#/$defs/"));
    ajv.addSchema(local({ $id: "sluice:components", $defs: RESPONSE_SCHEMAS }));
    const problems: string[] = [];
    for (const [action, doc] of Object.entries(ACTION_RESPONSES)) {
      const schemas = [
        doc.schema,
        doc.uploads?.response,
        ...Object.values(doc.content ?? {}),
        ...Object.values(doc.also ?? {}).map((a) => a.schema),
      ];
      for (const schema of schemas) {
        try {
          if (schema) ajv.compile(local(schema));
        } catch (err) {
          problems.push(`${action}: ${(err as Error).message}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});

describe("fastest-validator rules as JSON Schema", () => {
  it.each<[string, unknown, object]>([
    ["a bounded string", { type: "string", min: 1, max: 2048 }, { type: "string", minLength: 1, maxLength: 2048 }],
    ["a pattern", { type: "string", pattern: /^\d{4}$/ }, { type: "string", pattern: "^\\d{4}$" }],
    ["a string enum", { type: "string", enum: ["a", "b"] }, { type: "string", enum: ["a", "b"] }],
    ["a positive id", intIdParam, { type: "integer", minimum: 1, maximum: 2_147_483_647 }],
    ["a positive number", { type: "number", positive: true }, { type: "number", exclusiveMinimum: 0 }],
    ["an enum", { type: "enum", values: ["failed", "cancelled"] }, { type: "string", enum: ["failed", "cancelled"] }],
    ["a boolean", { type: "boolean", optional: true }, { type: "boolean" }],
    [
      "an array",
      { type: "array", min: 1, max: 10, items: { type: "number", integer: true } },
      { type: "array", minItems: 1, maxItems: 10, items: { type: "integer" } },
    ],
    [
      "a strict object",
      { type: "object", strict: true, props: { a: { type: "string" }, b: { type: "number", optional: true } } },
      { type: "object", properties: { a: { type: "string" }, b: { type: "number" } }, required: ["a"], additionalProperties: false },
    ],
    ["a loose object", { type: "object" }, { type: "object" }],
    ["a date (from a query string)", { type: "date", convert: true }, { type: "string", format: "date-time" }],
    ["a nullable string", { type: "string", max: 5, nullable: true }, { type: ["string", "null"], maxLength: 5 }],
    ["a default", { type: "number", default: 3 }, { type: "number", default: 3 }],
    ["a shorthand", "string|min:2|optional", { type: "string", minLength: 2 }],
    ["any", { type: "any" }, {}],
  ])("%s", (_title, rule, schema) => {
    expect(ruleToSchema(rule)).toEqual(schema);
  });

  it("makes params an object: optional ones not required, $$strict refusing other keys", () => {
    expect(objectSchema(CREATE_CRAWL_PARAMS)).toEqual({
      type: "object",
      properties: {
        url: { type: "string", minLength: 1, maxLength: 2048 },
        maxPages: { type: "integer", minimum: 1, maximum: 100_000 },
        maxDepth: { type: "integer", minimum: 0, maximum: 100 },
        sitemaps: { type: "boolean" },
      },
      required: ["url"],
      additionalProperties: false,
    });
  });
});

describe("paths and operations", () => {
  it("writes path parameters OpenAPI's way, and an optional group as two paths", () => {
    expect(openApiPaths("/api/crawls/:id/failures")).toEqual(["/api/crawls/{id}/failures"]);
    expect(openApiPaths("/insert{/:rows}")).toEqual(["/insert", "/insert/{rows}"]);
  });

  it("lists every alias once per method and path", () => {
    const ops = aliasOperations(routes);
    expect(ops.length).toBeGreaterThan(actions.length);
    const keys = ops.map((o) => `${o.method} ${o.path}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toEqual(
      expect.arrayContaining(["GET /api/id-tasks", "GET /api/openapi.json", "GET /insert/{rows}", "POST /celery_ids_tasks"]),
    );
  });

  // The document itself is checked against the OpenAPI 3.1 schema in test/integration/openapi.test.ts.
  it("builds operations whose security follows ACTION_ACCESS, parameters where the gateway reads them", () => {
    const doc = buildOpenApi(source()) as { paths: Record<string, Record<string, Record<string, any>>> };
    const crawl = doc.paths["/api/crawls"]!.post!;
    expect(crawl.security).toEqual([{ bearerToken: ["write"] }]);
    expect(crawl.requestBody.content["application/json"].schema.required).toEqual(["url"]);
    expect(Object.keys(crawl.responses).sort()).toEqual(["202", "400", "401", "403", "413", "415", "422", "429", "500", "503"]);
    expect(doc.paths["/api/health"]!.get!.security).toEqual([]);
    expect(doc.paths["/api/openapi.json"]!.get!.security).toEqual([{ bearerToken: ["read"] }]);
    // GET parameters are in the query, a path's in the path.
    expect(doc.paths["/api/crawls"]!.get!.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual([
      "query:limit",
      "query:offset",
      "query:status",
    ]);
    expect(doc.paths["/api/crawls/{id}"]!.get!.parameters).toEqual([
      { name: "id", in: "path", required: true, schema: { type: "integer", minimum: 1, maximum: 2_147_483_647 } },
    ]);
    // DELETE takes its filters in the query too; an upload's media types sit beside JSON.
    expect(doc.paths["/api/jobs"]!.delete!.parameters.map((p: { name: string }) => p.name)).toEqual(["status", "finishedBefore"]);
    expect(Object.keys(doc.paths["/api/imports"]!.post!.requestBody.content)).toEqual([
      "application/json",
      "text/csv",
      "application/x-ndjson",
    ]);
    expect(doc.paths["/insert/{rows}"]!.get!.tags).toEqual(["compatibility"]);
    expect(doc.paths["/insert/{rows}"]!.get!.description).toMatch("POST /api/inserts");
  });
});
