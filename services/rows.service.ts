// The rows that bulk-insert jobs write: count, a paginated, sortable and searchable list, and
// clearing the table. Writes belong to the insert jobs; the count is the kept one (models/counts.ts).
import type { Context, ServiceSchema } from "moleculer";
import { ConflictError } from "../lib/platform/errors";
import { pageOf, paginationParams } from "../lib/api/params";
import { clearRows, listRows, ROW_SORTS, type RowSort } from "../models/rows";
import { countOf } from "../models/counts";
import { inSlowLaneIf } from "../lib/platform/db";
import type { Runtime } from "../lib/contracts";

export default function rowsService({ db }: Runtime): ServiceSchema {
  return {
    name: "rows",
    actions: {
      list: {
        params: {
          ...paginationParams,
          q: { type: "string", max: 200, optional: true },
          sort: { type: "enum", values: [...ROW_SORTS], optional: true },
        },
        async handler(ctx: Context<{ limit?: number; offset?: number; q?: string; sort?: RowSort }>) {
          const { limit, offset } = pageOf(ctx.params);
          const q = ctx.params.q || undefined;
          const { rows, ...total } = await inSlowLaneIf(Boolean(q), () => listRows(db, { q, sort: ctx.params.sort, limit, offset }));
          return { items: rows, ...total, limit, offset };
        },
      },

      count: {
        async handler() {
          return { count: await countOf(db, "rows") };
        },
      },

      /** Empties the table (guarded by API_TOKEN when it is set, like every write). */
      clear: {
        retryPolicy: { enabled: false },
        async handler() {
          const deleted = await clearRows(db);
          if (deleted === null) throw new ConflictError("insert jobs are writing to the table; try again when they have finished");
          return { deleted };
        },
      },
    },
  };
}
