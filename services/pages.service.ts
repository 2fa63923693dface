// Read access to stored pages (moleculer-db over the shared pool). Writes belong to the
// ingestor alone, so moleculer-db's write actions are switched off.
import type { Context, ServiceSchema } from "moleculer";
import { NotFoundError } from "../lib/platform/errors";
import { DbMixin } from "../mixins/db.mixin";
import { definePage } from "../models/pages";
import type { Runtime } from "../lib/contracts";
import { idParam, isoTimeParam, pageOf, paginationParams, parseTime } from "../lib/api/params";
import { listFetches } from "../models/page-fetches";
import { countOf } from "../models/counts";
import { inSlowLaneIf } from "../lib/platform/db";
import { listPages, PAGE_SORTS, pageUrl, type PageSort } from "../models/pages";

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

// The longest text a page search takes.
const MAX_SEARCH_LENGTH = 200;

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
        params: {
          ...crawlFilter,
          ...paginationParams,
          q: { type: "string", max: MAX_SEARCH_LENGTH, optional: true },
          sort: { type: "enum", values: [...PAGE_SORTS], optional: true },
        },
        async handler(ctx: Context<PageQuery & { q?: string; sort?: PageSort }>) {
          const { limit, offset } = pageOf(ctx.params);
          // A text search reads many rows: the slow lane, so quick reads never wait behind it.
          const { rows, ...total } = await inSlowLaneIf(Boolean(ctx.params.q), () =>
            listPages(db, { crawlId: ctx.params.crawl, q: ctx.params.q || undefined, sort: ctx.params.sort, limit, offset }),
          );
          return { items: rows, ...total, limit, offset };
        },
      },

      count: {
        params: crawlFilter,
        async handler(ctx: Context<PageQuery>) {
          if (ctx.params.crawl === undefined) return { count: await countOf(db, "pages") };
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

      /** A page's fetch history, latest first; `since` and `until` bound the time (and the month partitions read). */
      fetches: {
        params: { id: idParam, ...paginationParams, since: isoTimeParam, until: isoTimeParam },
        async handler(ctx: Context<{ id: number; limit?: number; offset?: number; since?: string; until?: string }>) {
          const { limit, offset } = pageOf(ctx.params);
          const since = parseTime("since", ctx.params.since);
          const until = parseTime("until", ctx.params.until);
          const url = await pageUrl(db, ctx.params.id);
          if (url === null) throw new NotFoundError("page", ctx.params.id);
          const { rows, ...total } = await listFetches(db, url, { since, until, limit, offset });
          return { items: rows, ...total, limit, offset };
        },
      },
    },
  };
}
