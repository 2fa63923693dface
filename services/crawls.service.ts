// Crawl requests: create, read, list, cancel. The fetching happens in the crawler service.
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ConflictError, NotFoundError } from "../lib/platform/errors";
import { EVENT_CRAWL_CREATED } from "../lib/platform/names";
import { intIdParam, pageOf, paginationParams } from "../lib/api/params";
import { checkedTarget, CrawlTargetPolicy } from "../lib/crawl/ssrf";
import {
  cancelCrawl,
  crawlCounts,
  createCrawl,
  CRAWL_STATUSES,
  getCrawl,
  listCrawls,
  setCrawlPaused,
  type CrawlCounts,
  type CrawlRow,
  type CrawlStatus,
} from "../models/crawls";
import { listFailures } from "../models/frontier";
import { announce, announceCrawlEnded, announceJob } from "./announce";
import type { HttpMeta, Runtime } from "../lib/contracts";

export const DEFAULT_MAX_PAGES = 1000;
export const MAX_MAX_PAGES = 100_000;
export const DEFAULT_MAX_DEPTH = 10;
export const MAX_MAX_DEPTH = 100;

export interface CreateCrawlParams {
  url: string;
  maxPages?: number;
  maxDepth?: number;
  /** Seed the frontier from the site's sitemaps too (robots.txt's Sitemap: lines and /sitemap.xml). */
  sitemaps?: boolean;
}

/** POST /api/crawls's body; a crawl schedule's job params are checked against it too (schedules.service.ts). */
export const CREATE_CRAWL_PARAMS = {
  url: { type: "string", min: 1, max: 2048 },
  maxPages: { type: "number", integer: true, min: 1, max: MAX_MAX_PAGES, optional: true },
  maxDepth: { type: "number", integer: true, min: 0, max: MAX_MAX_DEPTH, optional: true },
  sitemaps: { type: "boolean", optional: true },
  $$strict: true,
} as const;

/** A crawl request past the SSRF guard (its URL normalised), with the defaults filled in. */
export async function crawlRequest(params: CreateCrawlParams, policy: CrawlTargetPolicy): Promise<Required<CreateCrawlParams>> {
  return {
    url: await checkedTarget(params.url, policy),
    maxPages: params.maxPages ?? DEFAULT_MAX_PAGES,
    maxDepth: params.maxDepth ?? DEFAULT_MAX_DEPTH,
    sitemaps: params.sitemaps ?? false,
  };
}

export interface CrawlView {
  id: number;
  /** The crawl's record in the jobs service (kind "crawl"). */
  jobId: number | null;
  url: string;
  status: CrawlStatus;
  maxPages: number;
  maxDepth: number;
  pages: { discovered: number; fetched: number; stored: number; unchanged: number; failed: number; skipped: number };
  sitemaps: boolean;
  error: string | null;
  /** Crawlers lease none of its URLs while it is paused; it resumes where it stopped. */
  paused: boolean;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/**
 * The API's view of a crawl. When it has succeeded, discovered = stored + unchanged + failed +
 * skipped and fetched = stored (unchanged pages were found current, and their rows left as they are).
 */
function present(crawl: CrawlRow, c: CrawlCounts): CrawlView {
  return {
    id: crawl.id,
    jobId: crawl.job_id,
    url: crawl.url,
    status: crawl.status,
    maxPages: crawl.max_pages,
    maxDepth: crawl.max_depth,
    // fetched: HTML pages fetched, whether still awaiting the ingestor or stored.
    pages: {
      discovered: c.discovered,
      fetched: c.fetched + c.stored,
      stored: c.stored,
      unchanged: c.unchanged,
      failed: c.failed,
      skipped: c.skipped,
    },
    sitemaps: crawl.sitemaps,
    error: crawl.error,
    paused: crawl.paused,
    createdAt: crawl.created_at,
    startedAt: crawl.started_at,
    finishedAt: crawl.finished_at,
  };
}

/**
 * The SSRF guard of this process: its config, plus the ports its API and metrics servers really
 * listen on, which PORT=0 or METRICS_PORT=0 leave to the system at start.
 */
export default function crawlsService({ db, config, ownPorts }: Runtime): ServiceSchema<ServiceSettingSchema> {
  const view = async (crawl: CrawlRow) => present(crawl, (await crawlCounts(db, [crawl.id])).get(crawl.id)!);
  let policy: CrawlTargetPolicy;

  return {
    name: "crawls",

    created() {
      policy = CrawlTargetPolicy.fromConfig(config, ownPorts);
    },

    actions: {
      create: {
        // Not idempotent: a retry would start a second crawl.
        retryPolicy: { enabled: false },
        params: CREATE_CRAWL_PARAMS,
        async handler(ctx: Context<CreateCrawlParams, HttpMeta>) {
          const { url, maxPages, maxDepth, sitemaps } = await crawlRequest(ctx.params, policy);
          const { crawl, job } = await createCrawl(db, url, maxPages, maxDepth, sitemaps);
          ctx.meta.$statusCode = 202;
          ctx.meta.$responseHeaders = { Location: `/api/crawls/${crawl.id}` };
          announce(ctx, EVENT_CRAWL_CREATED, { id: crawl.id });
          announceJob(ctx, job);
          return { id: crawl.id, status: crawl.status };
        },
      },

      get: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const crawl = await getCrawl(db, ctx.params.id);
          if (!crawl) throw new NotFoundError("crawl", ctx.params.id);
          return view(crawl);
        },
      },

      list: {
        params: { ...paginationParams, status: { type: "enum", values: [...CRAWL_STATUSES], optional: true } },
        async handler(ctx: Context<{ limit?: number; offset?: number; status?: CrawlStatus }>) {
          const { limit, offset } = pageOf(ctx.params);
          const { rows, total } = await listCrawls(db, limit, offset, ctx.params.status);
          const counts = await crawlCounts(
            db,
            rows.map((c) => c.id),
          );
          return { items: rows.map((c) => present(c, counts.get(c.id)!)), total, limit, offset };
        },
      },

      /** PATCH /api/crawls/:id { paused }: a paused crawl keeps its frontier; resumed, crawlers pick it up again. */
      update: {
        params: { id: intIdParam, paused: { type: "boolean" }, $$strict: true },
        async handler(ctx: Context<{ id: number; paused: boolean }>) {
          const crawl = await setCrawlPaused(db, ctx.params.id, ctx.params.paused);
          if (!crawl) {
            const existing = await getCrawl(db, ctx.params.id);
            if (!existing) throw new NotFoundError("crawl", ctx.params.id);
            throw new ConflictError(
              `crawl ${existing.id} is ${existing.status}: only a pending or running crawl can be paused or resumed`,
              {
                id: existing.id,
                status: existing.status,
              },
            );
          }
          // Resumed: wake the crawlers now rather than at their next poll.
          if (!crawl.paused) announce(ctx, EVENT_CRAWL_CREATED, { id: crawl.id });
          return view(crawl);
        },
      },

      failures: {
        params: { id: intIdParam, ...paginationParams },
        async handler(ctx: Context<{ id: number; limit?: number; offset?: number }>) {
          if (!(await getCrawl(db, ctx.params.id))) throw new NotFoundError("crawl", ctx.params.id);
          const { limit, offset } = pageOf(ctx.params);
          const { rows, total } = await listFailures(db, ctx.params.id, limit, offset);
          return { items: rows, total, limit, offset };
        },
      },

      cancel: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const cancelled = await cancelCrawl(db, ctx.params.id);
          if (cancelled) {
            // Not awaited: the cancel is committed; the event is news, and a reader sees the row.
            // The outcome is counted here, where the one UPDATE that cancelled it ran.
            void announceCrawlEnded(db, this.broker, cancelled.id, "cancelled").catch(() => {});
            return view(cancelled);
          }
          const crawl = await getCrawl(db, ctx.params.id);
          if (!crawl) throw new NotFoundError("crawl", ctx.params.id);
          throw new ConflictError(`crawl ${crawl.id} is already ${crawl.status}`, { id: crawl.id, status: crawl.status });
        },
      },
    },
  };
}
