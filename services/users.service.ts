// Users (seed: the DRF /users API): moleculer-db CRUD over the shared pool. externalId is unique:
// a second user with the same one is a 409. The scheduler upserts users as it processes ids.
//
// moleculer-db's list/get/update pass `query`, `sort`, `search`, `searchFields`, `page` and `id`
// to Sequelize as they come (a 500, or a filter the caller wrote), so every action here checks
// its parameters itself and hands moleculer-db's methods only values built from allow-lists.
import type { Context, ServiceSchema } from "moleculer";
import { ConflictError, NotFoundError, ValidationError } from "../lib/platform/errors";
import { sqlStateOf } from "../lib/api/http-error";
import {
  DEFAULT_PAGE_LIMIT,
  escapeLike,
  INT4_MAX,
  intFilter,
  isEmailAddress,
  isStorableJson,
  isStorableText,
  MAX_EMAIL_LENGTH,
  MAX_PAGE_LIMIT,
  parseFilter,
  parseIntParam,
  parseNames,
  parseText,
  textFilter,
} from "../lib/api/params";
import { DbMixin } from "../mixins/db.mixin";
import { defineUser } from "../models/users";
import { countOf } from "../models/counts";
import type { Runtime } from "../lib/contracts";

const MAX_NAME_LENGTH = 500;
const MAX_SEARCH_LENGTH = 100;
const MAX_QUERY_JSON_LENGTH = 2048;
// (MAX_PAGE - 1) × MAX_PAGE_LIMIT < 5 × 10^8: an OFFSET far inside Postgres's bigint and JS's
// safe integers. OFFSET reads every row it skips, so a deeper page would only be a slow empty one.
const MAX_PAGE = 1_000_000;

// Columns a list may sort by, search in (text only: LIKE on an integer is a Postgres error) and
// filter on (`query`, equality only). profile (jsonb) is in none of them.
const SORT_COLUMNS = ["id", "externalId", "name", "email", "createdAt", "updatedAt"] as const;
const SEARCH_COLUMNS = ["name", "email"] as const;
const FILTERS = {
  id: intFilter(1, INT4_MAX),
  externalId: intFilter(1, Number.MAX_SAFE_INTEGER),
  name: textFilter(MAX_NAME_LENGTH),
  email: textFilter(MAX_EMAIL_LENGTH),
};

// moleculer merges a service's action into the mixin's one of the same name key by key, so a
// `list` of ours would keep moleculer-db's unchecked `query`, `fields`, `populate`… rules. Its
// actions are dropped here (this mixin is applied over DbMixin) and ours are defined whole. Its
// find, count, insert and remove do not exist on this service at all.
const WITHOUT_DB_ACTIONS: Partial<ServiceSchema> = {
  actions: { find: false, count: false, list: false, create: false, insert: false, get: false, update: false, remove: false },
};

// Declared so that `$$strict` refuses everything else; the handlers parse them.
const optional = { type: "any", optional: true } as const;
const listParams = {
  page: optional,
  pageSize: optional,
  sort: optional,
  search: optional,
  searchFields: optional,
  query: optional,
  $$strict: true,
} as const;

// Length caps run before anything else looks at a value (fastest-validator's checks are O(1)
// for length); what the validator cannot check in linear time is checked in checkFields.
const fields = {
  name: { type: "string", max: MAX_NAME_LENGTH, optional: true, nullable: true },
  email: { type: "string", max: MAX_EMAIL_LENGTH, optional: true, nullable: true },
  profile: { type: "object", optional: true, nullable: true },
} as const;
const externalId = { type: "number", integer: true, positive: true, max: Number.MAX_SAFE_INTEGER } as const;

interface UserFields {
  externalId?: number;
  name?: string | null;
  email?: string | null;
  profile?: Record<string, unknown> | null;
}

interface ListParams {
  page?: unknown;
  pageSize?: unknown;
  sort?: unknown;
  search?: unknown;
  searchFields?: unknown;
  query?: unknown;
}

/** What moleculer-db's methods take from us: only values parsed below. */
interface DbMethods {
  _list(ctx: Context, params: object): Promise<object>;
  _find(ctx: Context, params: object): Promise<object[]>;
  _get(ctx: Context, params: { id: number }): Promise<object>;
  _create(ctx: Context, params: UserFields): Promise<object>;
  _update(ctx: Context, params: UserFields & { id: number }): Promise<object>;
}

function listQuery(p: ListParams) {
  const page = p.page === undefined ? 1 : parseIntParam("page", p.page, 1, MAX_PAGE);
  const pageSize = p.pageSize === undefined ? DEFAULT_PAGE_LIMIT : parseIntParam("pageSize", p.pageSize, 1, MAX_PAGE_LIMIT);
  // Without an order, pages of the same list could overlap.
  const sort = p.sort === undefined ? ["id"] : parseNames("sort", p.sort, SORT_COLUMNS, true);
  const query = p.query === undefined ? undefined : parseFilter("query", p.query, FILTERS, MAX_QUERY_JSON_LENGTH);
  const searchFields = p.searchFields === undefined ? [...SEARCH_COLUMNS] : parseNames("searchFields", p.searchFields, SEARCH_COLUMNS);
  // The adapter wraps `search` in %…%: the client's own % and _ are matched literally.
  const search = p.search === undefined ? undefined : escapeLike(parseText("search", p.search, MAX_SEARCH_LENGTH));
  return { page, pageSize, limit: pageSize, offset: (page - 1) * pageSize, sort, query, search, searchFields };
}

/** What the validator's rules do not check: text Postgres can store, and the e-mail's form (in one pass). */
function checkFields(p: UserFields): void {
  if (typeof p.name === "string" && !isStorableText(p.name))
    throw new ValidationError("name", "The 'name' field must not hold NUL or unpaired surrogate characters.");
  if (typeof p.email === "string" && !isEmailAddress(p.email))
    throw new ValidationError("email", "The 'email' field must be an e-mail address.");
  if (p.profile && !isStorableJson(p.profile))
    throw new ValidationError("profile", "The 'profile' field must not hold NUL or unpaired surrogate characters.");
}

/** moleculer-db's "Entity not found" (404 without a type) as ours; a taken externalId as a 409 naming it. */
function asApiError(id: number | null) {
  return (err: unknown): never => {
    if (id !== null && (err as Error | undefined)?.name === "EntityNotFoundError") throw new NotFoundError("user", id);
    if (sqlStateOf(err) === "23505") throw new ConflictError("a user with that externalId already exists", { field: "externalId" });
    throw err;
  };
}

export default function usersService({ db }: Runtime): ServiceSchema {
  const schema: ServiceSchema<ServiceSchema["settings"], DbMethods> = {
    name: "users",
    mixins: [WITHOUT_DB_ACTIONS, DbMixin(db, defineUser(db))],
    // Read by moleculer-db's methods; the limits themselves are enforced by listQuery.
    settings: { pageSize: DEFAULT_PAGE_LIMIT, maxPageSize: MAX_PAGE_LIMIT, maxLimit: MAX_PAGE_LIMIT } as ServiceSchema["settings"],
    actions: {
      list: {
        params: listParams,
        async handler(ctx: Context<ListParams>) {
          const q = listQuery(ctx.params);
          if (q.query !== undefined || q.search !== undefined) return this._list(ctx, q);
          // Unfiltered: moleculer-db's page, with the kept count (models/counts.ts) as the total
          // instead of a count(*) of the whole table. The same shape as _list's answer.
          const [rows, total] = await Promise.all([this._find(ctx, q), countOf(db, "users")]);
          return { rows, total, page: q.page, pageSize: q.pageSize, totalPages: Math.ceil(total / q.pageSize) };
        },
      },

      get: {
        params: { id: { type: "any" }, $$strict: true },
        handler(ctx: Context<{ id: unknown }>) {
          const id = parseIntParam("id", ctx.params.id, 1, INT4_MAX);
          return this._get(ctx, { id }).catch(asApiError(id));
        },
      },

      create: {
        retryPolicy: { enabled: false },
        params: { externalId, ...fields, $$strict: true },
        handler(ctx: Context<UserFields>) {
          checkFields(ctx.params);
          return this._create(ctx, ctx.params).catch(asApiError(null));
        },
      },

      update: {
        params: { id: { type: "any" }, externalId: { ...externalId, optional: true }, ...fields, $$strict: true },
        handler(ctx: Context<UserFields & { id: unknown }>) {
          const id = parseIntParam("id", ctx.params.id, 1, INT4_MAX);
          checkFields(ctx.params);
          return this._update(ctx, { ...ctx.params, id }).catch(asApiError(id));
        },
      },
    },
  };
  return schema as ServiceSchema;
}
