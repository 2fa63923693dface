// The users routes (moleculer-db underneath) against hostile requests, end to end on an embedded
// Sluice: every one is refused with a 4xx JSON error naming the parameter at fault, answers
// fast whatever its size, and leaves the users table as it was (counted by a direct query).
import { QueryTypes } from "sequelize";
import type { Sluice } from "../../runtime";
import { http, startEmbedded, type HttpResult } from "../support/env";

// Validation is in-process work: a refusal that takes longer has something super-linear in it.
const REFUSAL_BUDGET_MS = 1_000;
const BIG_BUDGET_MS = 500;
const MB = 1_000_000;

interface Hostile {
  method: string;
  path: string;
  body?: unknown;
  status?: number;
  code?: string;
  /** details.field; a RegExp where the gateway names a path inside the field (profile.a). */
  field: string | RegExp;
}

let sluice: Sluice;
let base: string;
// Two users made in beforeAll: the targets of updates and of the unique-violation cases.
let first: { id: number; externalId: number };
let second: { id: number; externalId: number };

async function userCount(): Promise<number> {
  const [row] = await sluice.db.query<{ n: number }>("SELECT count(*)::int AS n FROM users", { type: QueryTypes.SELECT });
  return row!.n;
}

function expectErrorBody(res: HttpResult, status: number, code: string): { code: string; message: string; details?: any } {
  expect({ status: res.status, body: res.body }).toMatchObject({ status, body: { error: { code } } });
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  expect(Object.keys(res.body)).toEqual(["error"]);
  expect(typeof res.body.error.message).toBe("string");
  const raw = JSON.stringify(res.body);
  expect(raw).not.toMatch(/sequelize|SELECT|INSERT|UPDATE "/i);
  expect(raw).not.toMatch(/\bat .+:\d+:\d+/);
  // An error never echoes a large value back.
  expect(raw.length).toBeLessThan(4_000);
  return res.body.error;
}

/** Sends a request that must be refused; checks the answer, its time and the row count. */
async function expectRefused(req: Hostile, budgetMs = REFUSAL_BUDGET_MS): Promise<{ code: string; message: string; details?: any }> {
  const before = await userCount();
  const started = Date.now();
  const res = await http(base, req.method, req.path, req.body);
  const elapsed = Date.now() - started;
  const error = expectErrorBody(res, req.status ?? 422, req.code ?? "VALIDATION_ERROR");
  if (req.field instanceof RegExp) expect(error.details?.field).toMatch(req.field);
  else expect(error.details).toMatchObject({ field: req.field });
  expect(elapsed).toBeLessThan(budgetMs);
  expect(await userCount()).toBe(before);
  return error;
}

const q = (s: string) => encodeURIComponent(s);
const get = (path: string, field: string): Hostile => ({ method: "GET", path, field });
const post = (body: unknown, field: string | RegExp, status?: number, code?: string): Hostile => ({
  method: "POST",
  path: "/api/users",
  body,
  field,
  status,
  code,
});

beforeAll(async () => {
  sluice = await startEmbedded();
  base = sluice.apiUrl!;
  const make = async (externalId: number, name: string) => {
    const res = await http(base, "POST", "/api/users", { externalId, name, email: `u${externalId}@example.org` });
    expect(res.status).toBe(200);
    return { id: res.body.id as number, externalId };
  };
  first = await make(9_000_001, "50% off_sale");
  second = await make(9_000_002, "plain");
});

afterAll(async () => {
  await sluice?.stop();
});

describe("ids: 422 naming id, never a database error", () => {
  const badIds = ["abc", "1.5", "-1", "0", "99999999999999999999", "1e3", "0x10", "2147483648", "%201", "1%20", "%2B1", "%00"];
  it.each(badIds)("GET /api/users/%s", async (id) => {
    const error = await expectRefused(get(`/api/users/${id}`, "id"));
    expect(error.message).toMatch(/'id'|"id"/);
  });

  it.each<Hostile>([
    { method: "GET", path: "/users/abc", field: "id" },
    // The seed path turns digits into a number: the range check still holds.
    { method: "GET", path: "/users/3000000000", field: "id" },
    { method: "PUT", path: "/api/users/abc", body: { name: "x" }, field: "id" },
    { method: "PATCH", path: "/api/users/1e3", body: { name: "x" }, field: "id" },
    { method: "PUT", path: "/api/users/99999999999999999999", body: { name: "x" }, field: "id" },
    { method: "PATCH", path: "/users/-1", body: { name: "x" }, field: "id" },
  ])("$method $path", async (req) => {
    await expectRefused(req);
  });

  it.each([
    ["GET", "/api/users/2147483647"], // the largest int4: valid, and no such user
    ["GET", "/users/123456"],
    ["PATCH", "/api/users/2147483647"],
  ])("%s %s → 404 naming the user", async (method, path) => {
    const before = await userCount();
    const res = await http(base, method, path, method === "GET" ? undefined : { name: "x" });
    const error = expectErrorBody(res, 404, "NOT_FOUND");
    expect(error.details).toMatchObject({ entity: "user", id: Number(path.split("/").pop()) });
    expect(await userCount()).toBe(before);
  });
});

describe("list parameters: 422 naming the parameter", () => {
  const cases: [string, string][] = [
    // [query string, field]
    ["page=0", "page"],
    ["page=-1", "page"],
    ["page=abc", "page"],
    ["page=1.5", "page"],
    ["page=1e20", "page"], // was a 500: bigint OFFSET out of range
    ["page=1000001", "page"],
    ["page[]=1", "page"],
    ["page=1&page=2", "page"],
    ["pageSize=0", "pageSize"],
    ["pageSize=501", "pageSize"],
    ["pageSize=abc", "pageSize"],
    ["pageSize=-5", "pageSize"],
    ["sort=nope", "sort"], // was a 500: column does not exist
    [`sort=${q("name;DROP TABLE users")}`, "sort"],
    ["sort=--id", "sort"],
    ["sort=id,", "sort"],
    ["sort=profile", "sort"],
    [`sort=${"id,".repeat(70)}id`, "sort"],
    [`sort=id${"&sort=id".repeat(6)}`, "sort"], // more names than there are columns
    [`search=${"s".repeat(101)}`, "search"],
    ["search[]=x", "search"],
    ["search[a]=x", "search"],
    ["search=a%00b", "search"],
    ["search=x&searchFields=id", "searchFields"], // was a 500: integer ~~ unknown
    ["search=x&searchFields=nope", "searchFields"],
    ["search=x&searchFields=name,profile", "searchFields"],
    ["searchFields=externalId", "searchFields"],
    [`query=${q("{")}`, "query"], // was a 500: JSON.parse threw
    [`query=${q('{"nope":1}')}`, "query"],
    [`query=${q('{"name":{"$ne":"x"}}')}`, "query"],
    [`query=${q("[1]")}`, "query"],
    [`query=${q('"x"')}`, "query"],
    [`query=${q("null")}`, "query"],
    [`query=${q('{"id":"abc"}')}`, "query"], // was a 500: invalid input syntax for integer
    [`query=${q('{"id":99999999999}')}`, "query"],
    [`query=${q('{"id":[1,2]}')}`, "query"],
    [`query=${q('{"externalId":1.5}')}`, "query"],
    [`query=${q('{"__proto__":{"id":1}}')}`, "query"],
    [`query=${q('{"profile":{}}')}`, "query"],
    [`query=${q('{"createdAt":"2020-01-01"}')}`, "query"],
    [`query=${q(JSON.stringify({ name: "x".repeat(3000) }))}`, "query"],
    ["query[name][$like]=%25", "query"],
    ["query[id]=abc", "query"],
    // moleculer-db's other list and find parameters are not taken.
    ["fields=x", "fields"],
    ["populate=x", "populate"],
    ["excludeFields=x", "excludeFields"],
    ["iSearch=x", "iSearch"],
    ["limit=10", "limit"],
    ["offset=10", "offset"],
  ];
  const titled = cases.map(([qs, field]) => [qs.length > 70 ? `${qs.slice(0, 70)}…` : qs, field, qs] as const);
  it.each(titled)("GET /api/users?%s → 422 naming %s", async (_title, field, qs) => {
    await expectRefused(get(`/api/users?${qs}`, field));
  });

  it("the seed path takes the same checks", async () => {
    await expectRefused(get(`/users?sort=nope`, "sort"));
    await expectRefused(get(`/users?query=${q('{"nope":1}')}`, "query"));
  });
});

describe("create and update bodies: 422 naming the field, fast at any size", () => {
  it("a 1 MB email → 422 email, well under a second", async () => {
    const error = await expectRefused(post({ externalId: 1, email: "a".repeat(MB) + "@example.org" }, "email"), BIG_BUDGET_MS);
    expect(error.message).toContain("'email'");
  });

  it("a 1 MB name → 422 name, well under a second", async () => {
    await expectRefused(post({ externalId: 1, name: "n".repeat(MB) }, "name"), BIG_BUDGET_MS);
  });

  it("a 1 MB email through PATCH → 422 email, well under a second", async () => {
    await expectRefused(
      { method: "PATCH", path: `/api/users/${first.id}`, body: { email: `${"@".repeat(MB)}.x` }, field: "email" },
      BIG_BUDGET_MS,
    );
  });

  it("8,000 characters that make fastest-validator's email pattern backtrack (~30 s) → 422 at once", async () => {
    await expectRefused(post({ externalId: 1, email: "a@".repeat(4_000) }, "email"), BIG_BUDGET_MS);
  });

  const bodies: [string, unknown, string | RegExp][] = [
    ["not an address", { externalId: 1, email: "not-an-email" }, "email"],
    ["no dot in the domain", { externalId: 1, email: "a@b" }, "email"],
    ["a space", { externalId: 1, email: "a b@c.co" }, "email"],
    ["two @", { externalId: 1, email: "a@b@c.co" }, "email"],
    ["an empty local part", { externalId: 1, email: "@b.co" }, "email"],
    ["an empty label", { externalId: 1, email: "a@b..co" }, "email"],
    ["255 characters", { externalId: 1, email: `${"a".repeat(61)}@${"b".repeat(190)}.co` }, "email"],
    ["an unpaired surrogate in the email", { externalId: 1, email: "\ud800@b.co" }, "email"],
    ["an email that is not a string", { externalId: 1, email: ["a@b.co"] }, "email"],
    ["no externalId", { name: "x" }, "externalId"],
    ["externalId as a string", { externalId: "123" }, "externalId"],
    ["externalId 1.5", { externalId: 1.5 }, "externalId"],
    ["externalId 2^53", { externalId: 2 ** 53 }, "externalId"],
    ["externalId -5", { externalId: -5 }, "externalId"],
    ["externalId 0", { externalId: 0 }, "externalId"],
    ["an id in the body", { externalId: 1, id: 5 }, "id"],
    ["a createdAt in the body", { externalId: 1, createdAt: "2020-01-01" }, "createdAt"],
    ["a NUL in the name", { externalId: 1, name: "a\u0000b" }, "name"],
    ["an unpaired surrogate in the name", { externalId: 1, name: "\udc00" }, "name"],
    ["a name that is a number", { externalId: 1, name: 5 }, "name"],
    ["a profile that is a string", { externalId: 1, profile: "x" }, "profile"],
    ["a profile that is an array", { externalId: 1, profile: [1] }, "profile"],
    ["an unpaired surrogate in the profile", { externalId: 1, profile: { a: ["\ud800"] } }, "profile"],
    ["a NUL in a profile key", { externalId: 1, profile: { ["k\u0000"]: 1 } }, /^profile/],
  ];
  it.each(bodies)("POST: %s", async (_title, body, field) => {
    await expectRefused(post(body, field));
  });

  it.each<[string, unknown, string]>([
    ["a bad email", { email: "nope" }, "email"],
    ["externalId as a string", { externalId: "5" }, "externalId"],
    ["an unknown field", { updatedAt: "2020-01-01" }, "updatedAt"],
    ["an unpaired surrogate in the name", { name: "x\ud800" }, "name"],
  ])("PATCH: %s", async (_title, body, field) => {
    await expectRefused({ method: "PATCH", path: `/api/users/${first.id}`, body, field });
  });
});

describe("unique externalId → 409 naming it", () => {
  it("POST with a taken externalId", async () => {
    const error = await expectRefused(post({ externalId: first.externalId, name: "again" }, "externalId", 409, "CONFLICT"));
    expect(error.message).toBe("a user with that externalId already exists");
  });

  it("PUT giving one user another's externalId, and the user is unchanged", async () => {
    await expectRefused({
      method: "PUT",
      path: `/api/users/${second.id}`,
      body: { externalId: first.externalId },
      field: "externalId",
      status: 409,
      code: "CONFLICT",
    });
    expect((await http(base, "GET", `/api/users/${second.id}`)).body).toMatchObject({ externalId: second.externalId });
  });
});

describe("what the checks let through still works", () => {
  it("the service has only its four checked actions: moleculer-db's find, count, insert and remove do not exist", () => {
    const actions = sluice.broker.registry
      .getActionList({})
      .map((a: { name: string }) => a.name)
      .filter((n: string) => n.startsWith("users."));
    expect(actions.sort()).toEqual(["users.create", "users.get", "users.list", "users.update"]);
  });

  it("sort, search (its % taken literally), query and paging", async () => {
    const sorted = await http(base, "GET", "/api/users?sort=-externalId&pageSize=1");
    expect(sorted.status).toBe(200);
    expect(sorted.body).toMatchObject({ total: 2, page: 1, pageSize: 1, totalPages: 2, rows: [{ externalId: second.externalId }] });

    const percent = await http(base, "GET", `/api/users?search=${q("%")}`);
    expect(percent.body.rows.map((r: { id: number }) => r.id)).toEqual([first.id]);
    const underscore = await http(base, "GET", "/api/users?search=_&searchFields=name");
    expect(underscore.body.rows.map((r: { id: number }) => r.id)).toEqual([first.id]);

    const byJson = await http(base, "GET", `/api/users?query=${q(JSON.stringify({ externalId: second.externalId }))}`);
    expect(byJson.body.rows.map((r: { id: number }) => r.id)).toEqual([second.id]);
    const byQs = await http(base, "GET", `/api/users?query[id]=${first.id}&query[email]=${q(`u${first.externalId}@example.org`)}`);
    expect(byQs.body.rows.map((r: { id: number }) => r.id)).toEqual([first.id]);

    const last = await http(base, "GET", "/api/users?page=1000000&pageSize=500");
    expect(last.status).toBe(200);
    expect(last.body).toMatchObject({ rows: [], total: 2, page: 1_000_000, pageSize: 500 });
  });

  it("GET, PATCH and the seed path by id", async () => {
    expect((await http(base, "GET", `/users/${first.id}`)).body).toMatchObject({ id: first.id, externalId: first.externalId });
    const patched = await http(base, "PATCH", `/api/users/${second.id}`, { name: "renamed", email: null, profile: { tags: ["a"] } });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ id: second.id, name: "renamed", email: null, profile: { tags: ["a"] } });
  });
});
