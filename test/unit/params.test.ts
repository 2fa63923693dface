// The request checks in lib/api/params.ts: what they take, what they refuse (a ValidationError
// naming the parameter), and that none of them is slower than linear on hostile input.
import { ValidationError } from "../../lib/platform/errors";
import {
  escapeLike,
  INT4_MAX,
  intFilter,
  isEmailAddress,
  isStorableJson,
  isStorableText,
  parseFilter,
  parseIntParam,
  parseNames,
  parseText,
  textFilter,
} from "../../lib/api/params";

function refusal(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

const timed = (fn: () => unknown): number => {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
};

describe("parseIntParam", () => {
  it.each<[unknown, number]>([
    [1, 1],
    ["1", 1],
    ["007", 7],
    [INT4_MAX, INT4_MAX],
    [String(INT4_MAX), INT4_MAX],
  ])("takes %j", (raw, n) => expect(parseIntParam("id", raw, 1, INT4_MAX)).toBe(n));

  it.each<unknown>([
    "abc",
    "1.5",
    "-1",
    "0",
    "1e3",
    "0x10",
    " 1",
    "1 ",
    "+1",
    "",
    "99999999999999999999",
    String(INT4_MAX + 1),
    1.5,
    -1,
    0,
    NaN,
    Infinity,
    ["1"],
    { a: 1 },
    null,
    true,
  ])("refuses %j, naming the field", (raw) => {
    const err = refusal(() => parseIntParam("id", raw, 1, INT4_MAX));
    expect(err.data).toMatchObject({ field: "id" });
    expect(err.message).toContain("'id'");
  });
});

describe("isEmailAddress (one pass, no backtracking)", () => {
  it.each(["a@b.co", "first.last+tag@sub.example.org", "x@localhost.localdomain"])("takes %s", (s) => expect(isEmailAddress(s)).toBe(true));
  it.each([
    "",
    "a",
    "a@b",
    "@b.co",
    "a@.co",
    "a@b.",
    "a@b..co",
    "a@b@c.co",
    "a b@c.co",
    "a@b.co\n",
    "a\u0000@b.co",
    "\ud800@b.co",
    `${"a".repeat(65)}@b.co`,
    `a@${"b".repeat(250)}.co`,
  ])("refuses %j", (s) => expect(isEmailAddress(s)).toBe(false));

  it("answers in linear time on inputs that make ^\\S+@\\S+\\.\\S+$ backtrack", () => {
    // fastest-validator's quick pattern takes ~30 s on 8,000 of these characters.
    for (const s of ["@".repeat(1_000_000), "a@".repeat(500_000), "a.".repeat(500_000) + "@", "a@" + "b.".repeat(500_000)]) {
      expect(timed(() => isEmailAddress(s))).toBeLessThan(100);
    }
  });
});

describe("isStorableText / isStorableJson", () => {
  it("refuses NUL and unpaired surrogates, takes paired ones", () => {
    expect(isStorableText("plain ✓ 😀")).toBe(true);
    expect(isStorableText("a\u0000b")).toBe(false);
    expect(isStorableText("\ud800")).toBe(false);
    expect(isStorableText("\udc00x")).toBe(false);
    expect(isStorableText("x\ud83d")).toBe(false);
  });

  it("walks nested values without recursion", () => {
    let deep: unknown = "ok";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(isStorableJson(deep)).toBe(true);
    expect(isStorableJson({ a: [{ b: "\ud800" }] })).toBe(false);
    expect(isStorableJson({ ["k\u0000"]: 1 })).toBe(false);
  });
});

describe("parseNames", () => {
  const columns = ["id", "name", "email"];
  it("takes commas, spaces and arrays; '-' only when signed", () => {
    expect(parseNames("sort", "name,-id", columns, true)).toEqual(["name", "-id"]);
    expect(parseNames("sort", "name -id", columns, true)).toEqual(["name", "-id"]);
    expect(parseNames("searchFields", ["name", "email"], columns)).toEqual(["name", "email"]);
  });
  it.each<[unknown, boolean]>([
    ["nope", true],
    ["-id", false],
    ["--id", true],
    ["id,", true],
    ["", true],
    ["name;DROP TABLE users", true],
    ["id,".repeat(100), true],
    [["id", 5], true],
    [["id", "id", "id", "id"], true],
    [{ 0: "id" }, true],
  ])("refuses %j", (raw, signed) => {
    expect(refusal(() => parseNames("sort", raw, columns, signed)).data).toMatchObject({ field: "sort", allowed: columns });
  });
});

describe("parseFilter", () => {
  const rules = { id: intFilter(1, INT4_MAX), name: textFilter(10) };
  it("takes an object or its JSON of allowed columns to values, and builds a fresh one", () => {
    expect(parseFilter("query", '{"id":5,"name":null}', rules, 100)).toEqual({ id: 5, name: null });
    expect(parseFilter("query", { id: "5" }, rules, 100)).toEqual({ id: 5 });
    expect(Object.getPrototypeOf(parseFilter("query", "{}", rules, 100))).toBe(Object.prototype);
  });
  it.each<unknown>([
    "{",
    "[1]",
    '"x"',
    "null",
    "5",
    '{"nope":1}',
    '{"__proto__":{"id":1}}',
    '{"constructor":1}',
    '{"id":"abc"}',
    '{"id":0}',
    '{"id":1e10}',
    '{"id":[1,2]}',
    '{"name":{"$ne":"x"}}',
    '{"name":"way too long for it"}',
    '{"name":true}',
    `{"name":"${"x".repeat(200)}"}`,
    { name: { $like: "%" } },
  ])("refuses %j, naming the field", (raw) => {
    expect(refusal(() => parseFilter("query", raw, rules, 100)).data).toMatchObject({ field: "query" });
  });
});

describe("parseText and escapeLike", () => {
  it("caps the length and refuses what Postgres cannot store", () => {
    expect(parseText("search", "abc", 3)).toBe("abc");
    for (const raw of ["abcd", ["a"], 5, "a\u0000", "\ud800"])
      expect(refusal(() => parseText("search", raw, 3)).data).toMatchObject({ field: "search" });
  });
  it("escapes LIKE's wildcards and its escape character", () => {
    expect(escapeLike("50%_off\\")).toBe("50\\%\\_off\\\\");
  });
});
