// Parameter schemas (fastest-validator) shared by the services' actions.
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
