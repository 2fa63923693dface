// The rows that bulk-insert jobs write: count, a paginated list, and clearing the table
// (moleculer-db reads over the shared pool; writes belong to the insert jobs).
import type { Context, ServiceSchema } from "moleculer";
import { ConflictError } from "../lib/platform/errors";
import { pageOf, paginationParams } from "../lib/api/params";
import { DbMixin } from "../mixins/db.mixin";
import { clearRows, defineRow } from "../models/rows";
import type { Runtime } from "../lib/contracts";

interface Adapter {
  find(filters: { limit?: number; offset?: number; sort?: string[] }): Promise<object[]>;
  count(filters?: object): Promise<number>;
  entityToObject(entity: object): Record<string, unknown>;
}

export default function rowsService({ db }: Runtime): ServiceSchema {
  return {
    name: "rows",
    mixins: [DbMixin(db, defineRow(db))],
    actions: {
      create: false,
      insert: false,
      update: false,
      remove: false,
      get: false,

      list: {
        params: paginationParams,
        async handler(ctx: Context<{ limit?: number; offset?: number }>) {
          const adapter = this.adapter as Adapter;
          const { limit, offset } = pageOf(ctx.params);
          const [docs, total] = await Promise.all([adapter.find({ limit, offset, sort: ["id"] }), adapter.count()]);
          return { items: docs.map((d) => adapter.entityToObject(d)), total, limit, offset };
        },
      },

      count: {
        async handler() {
          return { count: await (this.adapter as Adapter).count() };
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
