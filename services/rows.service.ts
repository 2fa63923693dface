// The rows that bulk-insert jobs write: count, a paginated, sortable and searchable list, and
// clearing the table. Writes belong to the insert jobs; the count is the kept one (models/counts.ts).
import type { Context, ServiceSchema } from "moleculer";
import { ConflictError } from "../lib/platform/errors";
import { pageOf, paginationParams } from "../lib/api/params";
import { clearRows, listRows, ROW_SORTS, type RowSort } from "../models/rows";
import { LIST_COUNT_CAP } from "../models/query";
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
          // Unfiltered, the total is the kept count (models/counts.ts): a count(*) of millions of
          // rows would hold a connection. A search is counted up to the cap.
          const [{ rows, counted }, kept] = await Promise.all([
            inSlowLaneIf(Boolean(q), () => listRows(db, { q, sort: ctx.params.sort, limit, offset }, LIST_COUNT_CAP)),
            q ? null : countOf(db, "rows"),
          ]);
          const total = kept ?? Math.min(counted, LIST_COUNT_CAP);
          return { items: rows, total, ...(kept === null && counted > LIST_COUNT_CAP ? { totalIsLowerBound: true } : {}), limit, offset };
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
