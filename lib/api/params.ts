// Parameter schemas (fastest-validator) shared by the services' actions, and the checks those
// rules cannot express or cannot bound.
import { ValidationError } from "../platform/errors";

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 500;

export const idParam = { type: "number", integer: true, positive: true, convert: true } as const;
// The id of a row whose key is a Postgres integer (crawls, jobs): a larger id would fail in the
// database (a 500) instead of a 422.
export const intIdParam = { ...idParam, max: 2_147_483_647 } as const;

export const paginationParams = {
  limit: { type: "number", integer: true, min: 1, max: MAX_PAGE_LIMIT, optional: true, convert: true },
  // OFFSET is a bigint; beyond it (e.g. 1e20) Postgres fails the query.
  offset: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER, optional: true, convert: true },
} as const;

/** The page a list action was asked for, with the defaults filled in. */
export function pageOf(params: { limit?: number; offset?: number }): { limit: number; offset: number } {
  return { limit: params.limit ?? DEFAULT_PAGE_LIMIT, offset: params.offset ?? 0 };
}

// Checks for request values that fastest-validator's rules get wrong or cannot bound. Each is
// linear in its input (most refuse an over-long value before looking at it), and each refusal
// is a ValidationError naming the parameter.

/** The largest value of a Postgres `integer` column. */
export const INT4_MAX = 2_147_483_647;
// 2^53 has 16 digits: a longer string is no integer we take, and is refused unread.
const MAX_INT_DIGITS = 16;
const DIGITS = /^[0-9]+$/;
// The longest list of column names (`sort`, `searchFields`) a request may send, in characters.
const MAX_NAMES_LENGTH = 200;
// RFC 5321: a path is at most 256 octets with its angle brackets; the local part at most 64.
export const MAX_EMAIL_LENGTH = 254;
const MAX_EMAIL_LOCAL_LENGTH = 64;
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const EMAIL_FORBIDDEN = /[\s\u0000-\u001f\u007f]/; // one character class, no quantifier

/**
 * A whole number: a JS integer, or a string of decimal digits only. Number() would also take
 * "1e3", "0x10", " 7", "" (0) and ["7"], none of which is an id someone typed.
 */
function toInt(raw: unknown): number | null {
  if (typeof raw === "number") return Number.isInteger(raw) ? raw : null;
  if (typeof raw === "string" && raw.length <= MAX_INT_DIGITS && DIGITS.test(raw)) return Number(raw);
  return null;
}

export function parseIntParam(field: string, raw: unknown, min: number, max: number): number {
  const n = toInt(raw);
  if (n === null || n < min || n > max) {
    throw new ValidationError(field, `The '${field}' field must be a whole number from ${min} to ${max}.`, { min, max });
  }
  return n;
}

/** Text Postgres can store as given: no NUL, no unpaired UTF-16 surrogate (pg would send U+FFFD, jsonb refuses it). */
export function isStorableText(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return false;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/** Every string and key in a JSON value is storable text. Iterative: the depth of the value does not matter. */
export function isStorableJson(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "string") {
      if (!isStorableText(v)) return false;
    } else if (Array.isArray(v)) {
      stack.push(...v);
    } else if (v !== null && typeof v === "object") {
      for (const [k, item] of Object.entries(v)) {
        if (!isStorableText(k)) return false;
        stack.push(item);
      }
    }
  }
  return true;
}

/** A string of at most `maxLength` storable characters. */
export function parseText(field: string, raw: unknown, maxLength: number): string {
  if (typeof raw !== "string" || raw.length > maxLength || !isStorableText(raw)) {
    throw new ValidationError(field, `The '${field}' field must be text of at most ${maxLength} characters.`, { max: maxLength });
  }
  return raw;
}

/**
 * An e-mail address, checked in one pass: one "@", a local part of 1..64 characters, a domain
 * of dot-separated non-empty labels (at least two), no whitespace or control characters.
 * fastest-validator's `email` rule runs a regular expression that backtracks in cubic time.
 */
export function isEmailAddress(s: string): boolean {
  if (s.length > MAX_EMAIL_LENGTH || EMAIL_FORBIDDEN.test(s) || !isStorableText(s)) return false;
  const at = s.indexOf("@");
  if (at < 1 || at > MAX_EMAIL_LOCAL_LENGTH || at !== s.lastIndexOf("@")) return false;
  const labels = s.slice(at + 1).split(".");
  return labels.length >= 2 && labels.every((label) => label.length > 0);
}

/**
 * Column names from a request, as moleculer-db takes them ("a,b", "a b" or ["a", "b"]), each one
 * of `allowed`; with `signed`, each may start with "-" (descending, for `sort`).
 */
export function parseNames(field: string, raw: unknown, allowed: readonly string[], signed = false): string[] {
  const refuse = () =>
    new ValidationError(
      field,
      `The '${field}' field must name ${signed ? 'columns, each optionally prefixed with "-",' : "columns"} from: ${allowed.join(", ")}.`,
      { allowed },
    );
  let items: unknown[];
  if (typeof raw === "string") {
    if (raw.length > MAX_NAMES_LENGTH) throw refuse();
    items = raw.trim().split(/[\s,]+/); // one quantified class: linear, and the input is short
  } else if (Array.isArray(raw) && raw.length <= allowed.length) {
    items = raw;
  } else {
    throw refuse();
  }
  for (const item of items) {
    if (typeof item !== "string") throw refuse();
    const name = signed && item.startsWith("-") ? item.slice(1) : item;
    if (!allowed.includes(name)) throw refuse();
  }
  return items as string[];
}

/** What one column of a `query` filter takes: `parse` gives the value to filter by, or undefined to refuse it. */
export interface FilterRule {
  expected: string;
  parse(value: unknown): string | number | null | undefined;
}

export const intFilter = (min: number, max: number): FilterRule => ({
  expected: `a whole number from ${min} to ${max}`,
  parse(v) {
    const n = toInt(v);
    return n !== null && n >= min && n <= max ? n : undefined;
  },
});

export const textFilter = (maxLength: number): FilterRule => ({
  expected: `null or text of at most ${maxLength} characters`,
  parse: (v) => (v === null || (typeof v === "string" && v.length <= maxLength && isStorableText(v)) ? v : undefined),
});

/**
 * moleculer-db's `query`: a JSON object (or its text) whose keys are columns in `rules`, each
 * mapped to a value its rule takes. Equality only: an operator object, an array (IN) or an
 * unknown column is refused, so the filter that reaches Sequelize is one we built.
 */
export function parseFilter(
  field: string,
  raw: unknown,
  rules: Readonly<Record<string, FilterRule>>,
  maxJsonLength: number,
): Record<string, string | number | null> {
  const columns = Object.keys(rules);
  let value = raw;
  if (typeof raw === "string") {
    const notJson = new ValidationError(field, `The '${field}' field must be a JSON object of at most ${maxJsonLength} characters.`, {
      max: maxJsonLength,
    });
    if (raw.length > maxJsonLength) throw notJson;
    try {
      value = JSON.parse(raw);
    } catch {
      throw notJson;
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ValidationError(field, `The '${field}' field must be an object of column names to values.`, { allowed: columns });
  }
  const filter: Record<string, string | number | null> = {};
  for (const [column, v] of Object.entries(value)) {
    const rule = Object.hasOwn(rules, column) ? rules[column] : undefined;
    if (!rule) throw new ValidationError(field, `The '${field}' field may filter only on: ${columns.join(", ")}.`, { allowed: columns });
    const parsed = rule.parse(v);
    if (parsed === undefined) throw new ValidationError(field, `The '${field}' field's "${column}" must be ${rule.expected}.`, { column });
    filter[column] = parsed;
  }
  return filter;
}

/** `s` as a literal inside a LIKE pattern: its %, _ and \ escaped (\ is Postgres's default LIKE escape). */
export function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, "\\$&");
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$/;
/** A query parameter's ISO 8601 time (`2026-12-01` or `2026-12-01T10:00:00Z`), checked for range. */
export const isoTimeParam = { type: "string", pattern: ISO_TIME, max: 40, optional: true } as const;

/** The Date of an isoTimeParam value (a day past its month's end, say, is refused here). */
export function parseTime(field: string, raw: string | undefined): Date | undefined {
  if (raw === undefined) return undefined;
  const time = new Date(raw);
  if (Number.isNaN(time.getTime())) throw new ValidationError(field, `"${field}" is not a valid time: "${raw}"`);
  return time;
}
