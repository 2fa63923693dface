// Read access to stored pages (moleculer-db over the shared pool). Writes belong to the
// ingestor alone, so moleculer-db's write actions are switched off.
import type { Context, ServiceSchema } from "moleculer";
import { NotFoundError } from "../lib/platform/errors";
import { DbMixin } from "../mixins/db.mixin";
import { definePage } from "../models/pages";
import type { Runtime } from "../lib/contracts";
import { idParam, pageOf, paginationParams } from "../lib/api/params";

interface PageQuery {
  crawl?: number;
  limit?: number;
  offset?: number;
}

interface Adapter {
  find(filters: { query?: object; limit?: number; offset?: number; sort?: string[] }): Promise<object[]>;
  count(filters: { query?: object }): Promise<number>;
  findById(id: number): Promise<object | null>;
  entityToObject(entity: object): Record<string, unknown>;
}

const crawlFilter = { crawl: { type: "number", integer: true, positive: true, optional: true, convert: true } } as const;
const queryOf = (p: PageQuery) => (p.crawl === undefined ? {} : { crawlId: p.crawl });

export default function pagesService({ db }: Runtime): ServiceSchema {
  return {
    name: "pages",
    mixins: [DbMixin(db, definePage(db))],
    actions: {
      create: false,
      insert: false,
      update: false,
      remove: false,

      list: {
        params: { ...crawlFilter, ...paginationParams },
        async handler(ctx: Context<PageQuery>) {
          const adapter = this.adapter as Adapter;
          const { limit, offset } = pageOf(ctx.params);
          const query = queryOf(ctx.params);
          const [docs, total] = await Promise.all([adapter.find({ query, limit, offset, sort: ["id"] }), adapter.count({ query })]);
          // Bodies can be large: the list leaves them out; GET /api/pages/:id has them.
          const items = docs.map((d) => {
            const { body: _body, ...rest } = adapter.entityToObject(d);
            return rest;
          });
          return { items, total, limit, offset };
        },
      },

      count: {
        params: crawlFilter,
        async handler(ctx: Context<PageQuery>) {
          return { count: await (this.adapter as Adapter).count({ query: queryOf(ctx.params) }) };
        },
      },

      get: {
        params: { id: idParam },
        async handler(ctx: Context<{ id: number }>) {
          const adapter = this.adapter as Adapter;
          const doc = await adapter.findById(ctx.params.id);
          if (!doc) throw new NotFoundError("page", ctx.params.id);
          return adapter.entityToObject(doc);
        },
      },
    },
  };
}
