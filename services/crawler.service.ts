// The fetch worker. Each crawler node leases queued URLs from the shared frontier, fetches them
// politely (per-host concurrency and rate, and the site's Crawl-delay), records each URL's
// outcome and the links it found, and sends fetched pages to the ingestor over the durable pages
// channel. A URL stored by an earlier crawl is asked for conditionally; when the server or the
// body's hash says it is unchanged, its row stays as it is and its links come from the stored copy.
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Agent } from "undici";
import { fetchPage, type FetchOptions, type FetchOutcome } from "../lib/crawl/fetch-page";
import {
  CHANNEL_PAGES,
  EVENT_CRAWL_CREATED,
  METRIC_PAGES_FAILED,
  METRIC_PAGES_FETCHED,
  METRIC_PAGES_SKIPPED,
  METRIC_PAGES_UNCHANGED,
} from "../lib/platform/names";
import { parseRobots, robotsUrlFor, type RobotsRules } from "../lib/crawl/robots";
import { CrawlTargetPolicy, guardedConnector } from "../lib/crawl/ssrf";
import { extractPage, sameOrigin } from "../lib/crawl/url";
import { runningCrawlIds } from "../models/crawls";
import { collectSitemapUrls, MAX_SITEMAP_URLS, sitemapUrlFor } from "../lib/crawl/sitemap";
import {
  admitUrls,
  leaseUrls,
  recordFetch,
  recordFetches,
  releaseLease,
  releaseExpiredLeases,
  renewLeases,
  type LeasedUrl,
  type FetchRecord,
  type SettledFetch,
} from "../models/frontier";
import type { FetchHistoryRecord } from "../models/page-fetches";
import { announceCrawlJobs, finishAndAnnounce } from "./announce";
import { ThrottleMixin, type ThrottleMethods } from "../mixins/throttle.mixin";
import type { Runtime } from "../lib/contracts";
import type { PageRecord } from "../models/pages";
import { Batcher } from "../lib/platform/batcher";
import { isDataFault } from "../lib/api/http-error";
import { FETCH_DURATION, observeFetch } from "./metrics";

// How often an idle node looks for queued URLs, and how often it sweeps expired leases and
// crawls whose last URLs were settled by two nodes at once.
export const POLL_INTERVAL_MS = 250;
// Outcomes are recorded in batches (one transaction for up to a node's concurrency of them); a
// lone outcome waits at most this long for company.
export const SETTLE_BATCH_WAIT_MS = 10;
export const SWEEP_INTERVAL_MS = 2_000;
// Leases of one URL before it is failed (each lease that expires counts).
export const MAX_URL_ATTEMPTS = 3;
// Longer links are not admitted: they are rarely real pages and can exceed Postgres's index row size.
export const MAX_URL_LENGTH = 2048;
// A page travels to the ingestor as one NATS message (1 MiB by default), envelope included.
export const MAX_PAGE_MESSAGE_BYTES = 1_000_000;
// A robots.txt Crawl-delay above this is held to it: one site's wish should not stall a crawl
// for hours (Heritrix caps it the same way).
export const MAX_CRAWL_DELAY_MS = 30_000;
// A sitemap's body as fetched (a gzipped one is decoded later, under the protocol's 50 MiB cap).
export const SITEMAP_FETCH_MAX_BYTES = 10 * 1024 * 1024;

/**
 * Whether a page's message fits in MAX_PAGE_MESSAGE_BYTES. JSON escaping makes a character at
 * most 6 bytes, so most pages are known to fit without serialising them just to measure.
 */
function fitsInMessage(page: PageRecord): boolean {
  const strings = [
    page.body,
    page.title ?? "",
    page.url,
    page.contentType,
    page.etag ?? "",
    page.lastModified ?? "",
    ...(page.outlinks ?? []),
  ];
  const text = strings.reduce((n, s) => n + s.length + 3, 0);
  // A UTF-16 unit is at most 6 bytes of JSON (an escaped control character or lone surrogate;
  // other characters take at most 3 bytes of UTF-8); 1 KiB for the rest of the message.
  if (text * 6 + 1024 <= MAX_PAGE_MESSAGE_BYTES) return true;
  return Buffer.byteLength(JSON.stringify(page)) <= MAX_PAGE_MESSAGE_BYTES;
}

/** A fetch's outcome, and how long the request took (its wait for the host's turn left out). */
type TimedOutcome = FetchOutcome & { durationMs: number };

class NodeStoppingError extends Error {
  constructor() {
    super("crawler node is stopping");
  }
}

interface CrawlerVars {
  policy: CrawlTargetPolicy;
  agent: Agent;
  robots: Map<string, Promise<RobotsRules>>;
  /** Leases being crawled (fetched, or having their outcome recorded), and of those, the ones still fetching. */
  inFlight: number;
  fetching: number;
  filling: boolean;
  stopping: boolean;
  timers: NodeJS.Timeout[];
  /** Leases, fetches and sweeps under way: stopping waits for them so none outlives the pool. */
  work: Set<Promise<unknown>>;
  /** The URLs this node is crawling, whose leases it renews. */
  leased: Set<LeasedUrl>;
  /** Fetches waiting for their host's turn, each given up when the node stops. */
  waiting: Set<() => void>;
  settler: Batcher<Settling>;
}

/** An outcome on its way to recordFetches; `held` is filled in when its batch is committed. */
type Settling = SettledFetch & { held: boolean; sendsPage: boolean };

interface CrawlerMethods extends ThrottleMethods {
  track<T>(p: Promise<T>): Promise<T>;
  fill(): Promise<void>;
  crawlOne(lease: LeasedUrl): Promise<void>;
  fetchPolitely(url: string, spacingFloorMs: number, extra?: Partial<FetchOptions>): Promise<TimedOutcome>;
  robotsFor(lease: LeasedUrl): Promise<RobotsRules>;
  seedFromSitemaps(lease: LeasedUrl, robots: RobotsRules, floorMs: number): Promise<void>;
  settle(lease: LeasedUrl, outcome: TimedOutcome | null): Promise<void>;
  sweep(): Promise<void>;
  renew(): Promise<void>;
}

export default function crawlerService(rt: Runtime): ServiceSchema<ServiceSettingSchema, CrawlerMethods, CrawlerVars> {
  const { db, config } = rt;
  const crawl = config.crawl;
  return {
    name: "crawler",
    mixins: [ThrottleMixin(rt)],

    events: {
      [EVENT_CRAWL_CREATED]() {
        void this.fill(); // an event handler need not wait for the leases; fill never rejects
      },
    },

    created() {
      for (const [name, help] of [
        [METRIC_PAGES_FETCHED, "Pages fetched with an HTML response"],
        [METRIC_PAGES_UNCHANGED, "Pages a recrawl found unchanged (a 304, or the stored body)"],
        [METRIC_PAGES_FAILED, "URLs whose fetch failed"],
        [METRIC_PAGES_SKIPPED, "URLs skipped (robots.txt, non-HTML, redirect, target not allowed)"],
      ] as const) {
        this.broker.metrics.register({ type: "counter", name, description: help });
      }
      this.broker.metrics.register(FETCH_DURATION);
    },

    async started() {
      this.policy = CrawlTargetPolicy.fromConfig(config, rt.ownPorts);
      this.agent = new Agent({ connections: crawl.hostConcurrency, keepAliveTimeout: 4_000, connect: guardedConnector(this.policy) });
      this.robots = new Map();
      this.inFlight = 0;
      this.fetching = 0;
      this.filling = false;
      this.stopping = false;
      this.work = new Set();
      this.leased = new Set();
      this.waiting = new Set();
      this.settler = new Batcher({
        maxSize: crawl.nodeConcurrency,
        maxWaitMs: SETTLE_BATCH_WAIT_MS,
        // One record Postgres refuses must not fail its batch-mates (they would be marked failed).
        isItemFault: isDataFault,
        flush: async (items) => {
          const held = await recordFetches(db, this.broker.nodeID, items, crawl.leaseMs);
          items.forEach((item, i) => (item.held = held[i]!));
          // A crawl whose last URLs settled here without a page for the ingestor may be done now;
          // not while this node still holds another of its URLs (that one's settling checks again).
          const settling = new Set(items.map((item) => item.lease));
          const stillHeld = new Set([...this.leased].filter((l) => !settling.has(l)).map((l) => l.crawlId));
          const crawls = new Set(
            items.filter((item) => item.held && !item.sendsPage && !stillHeld.has(item.lease.crawlId)).map((item) => item.lease.crawlId),
          );
          for (const id of crawls)
            await finishAndAnnounce(db, this.broker, id).catch((err: unknown) => this.logger.warn(`Finishing crawl ${id} failed`, err));
        },
      });
      // fill, sweep and renew never reject (each logs its own failure); the next tick retries.
      this.timers = [
        setInterval(() => void this.fill(), POLL_INTERVAL_MS),
        setInterval(() => void this.track(this.sweep()), SWEEP_INTERVAL_MS),
        setInterval(() => void this.track(this.renew()), crawl.leaseMs / 4),
      ];
    },

    async stopped() {
      this.stopping = true;
      for (const giveUp of this.waiting) giveUp();
      this.timers.forEach(clearInterval);
      await Promise.allSettled([...this.work]);
      await this.agent.close();
    },

    methods: {
      track<T>(p: Promise<T>): Promise<T> {
        this.work.add(p);
        // Bookkeeping only: the caller awaits `p` itself and sees its failure.
        void p.finally(() => this.work.delete(p)).catch(() => {});
        return p;
      },

      async fill() {
        if (this.filling || this.stopping) return;
        this.filling = true;
        try {
          // Fetches at once are CRAWL_NODE_CONCURRENCY; leases held, fetching or having their
          // outcome recorded, twice that: the next URLs are fetched while a batch is written.
          const room = Math.min(crawl.nodeConcurrency - this.fetching, 2 * crawl.nodeConcurrency - this.inFlight);
          if (room <= 0) return;
          const leases = await this.track(
            leaseUrls(
              db,
              room,
              this.broker.nodeID,
              crawl.leaseMs,
              (started) => void announceCrawlJobs(db, this.broker, started).catch(() => {}) /* news only */,
            ),
          );
          for (const lease of leases) {
            this.inFlight++;
            this.fetching++;
            this.leased.add(lease);
            // Not awaited: leases run side by side, up to the room; crawlOne never rejects.
            void this.track(this.crawlOne(lease)).finally(() => {
              this.inFlight--;
              this.leased.delete(lease);
              void this.fill(); // never rejects
            });
          }
        } catch (err) {
          this.logger.warn("Leasing URLs failed; retrying on the next tick", err);
        } finally {
          this.filling = false;
        }
      },

      async crawlOne(lease: LeasedUrl) {
        let fetching = true;
        const fetched = () => {
          if (!fetching) return;
          fetching = false;
          this.fetching--;
          void this.fill(); // never rejects
        };
        try {
          const robots = await this.robotsFor(lease);
          const floorMs = Math.min(robots.crawlDelayMs ?? 0, MAX_CRAWL_DELAY_MS);
          // The root's lease seeds the frontier from the sitemaps, once per crawl (a retried root
          // reads them again, and admits nothing twice).
          if (lease.sitemaps && lease.depth === 0 && lease.url === lease.rootUrl) await this.seedFromSitemaps(lease, robots, floorMs);
          if (!robots.isAllowed(lease.url)) {
            fetched();
            return await this.settle(lease, null);
          }
          // Asked conditionally only when the stored copy's links came with the lease: a 304 has
          // no body, and those are what the crawl follows from it.
          const outcome = await this.fetchPolitely(lease.url, floorMs, { validators: lease.stored?.links ? lease.stored : null });
          fetched();
          await this.settle(lease, outcome);
        } catch (err) {
          fetched();
          if (this.stopping) {
            // Hand the URL back now rather than when its lease runs out.
            await releaseLease(db, lease, this.broker.nodeID).catch(() => {});
            return;
          }
          this.logger.error(`Crawling ${lease.url} failed`, err);
          // Record the failure if the database lets us; if not, the lease runs out and the URL is retried.
          const reason = `could not record the result: ${(err as Error).message}`.slice(0, 500);
          const failed: FetchRecord = { state: "failed", reason, httpStatus: null, links: [], linkDepth: 0 };
          await recordFetch(db, lease, this.broker.nodeID, failed, crawl.leaseMs).catch(() => {});
        }
      },

      async fetchPolitely(url: string, spacingFloorMs: number, extra: Partial<FetchOptions> = {}) {
        // Per-host politeness, cluster-wide when Redis is configured. The Crawl-delay floor is
        // part of the limiter's settings, so on Redis every node spaces its fetches by it.
        const spec = { maxConcurrent: crawl.hostConcurrency, rate: crawl.hostRate, minSpacingMs: spacingFloorMs };
        const limiter = this.limiterFor(`fetch:${new URL(url).host}`, spec);
        if (limiter.minSpacingMs !== spacingFloorMs) await limiter.update({ minSpacingMs: spacingFloorMs });
        // Shutting down: a fetch still waiting for its turn (a Crawl-delay can make that long) is
        // given up at once, and its URL goes back to the queue; one already under way finishes.
        let began = false;
        let giveUp!: () => void;
        const stopped = new Promise<never>((_, reject) => {
          giveUp = () => {
            if (!began) reject(new NodeStoppingError());
          };
        });
        this.waiting.add(giveUp);
        const fetched = limiter.schedule(async () => {
          if (this.stopping) throw new NodeStoppingError();
          began = true;
          const started = performance.now();
          const outcome = await fetchPage(url, {
            timeoutMs: crawl.fetchTimeoutMs,
            maxBytes: crawl.maxBytes,
            maxRedirects: crawl.maxRedirects,
            policy: this.policy,
            dispatcher: this.agent,
            ...extra,
          });
          observeFetch(this.broker.metrics, url, performance.now() - started);
          return { ...outcome, durationMs: Math.round(performance.now() - started) };
        });
        // Given up, the fetch's own outcome (NodeStoppingError when its turn comes) goes unheard.
        fetched.catch(() => {});
        try {
          return await Promise.race([fetched, stopped]);
        } finally {
          this.waiting.delete(giveUp);
        }
      },

      robotsFor(lease: LeasedUrl) {
        const key = `${lease.crawlId} ${new URL(lease.url).origin}`;
        let rules = this.robots.get(key);
        if (!rules) {
          const robotsUrl = robotsUrlFor(lease.url);
          rules = this.fetchPolitely(robotsUrl, 0, { accept: () => true, readRedirected: true }).then((res) => {
            if (res.kind === "ok") return parseRobots(robotsUrl, res.body);
            // RFC 9309: a 4xx robots.txt means no rules; an unreachable one means "disallow all".
            if (res.kind === "failed" && res.status !== undefined && res.status < 500) return parseRobots(robotsUrl, null);
            return parseRobots(robotsUrl, "User-agent: *\nDisallow: /\n");
          });
          this.robots.set(key, rules);
          // A failed lookup (not a failed fetch: that is an answer) is not cached.
          rules.catch(() => this.robots.delete(key));
        }
        return rules;
      },

      /**
       * Admits the pages of the site's sitemaps (robots.txt's Sitemap: lines on the crawl's
       * origin, and /sitemap.xml) at depth 0, like the root: they are seeds, and their links are
       * followed to maxDepth. max_pages and the same-origin rule hold as for links. A sitemap that
       * cannot be read is logged and skipped: the crawl goes on from its root.
       */
      async seedFromSitemaps(lease: LeasedUrl, robots: RobotsRules, floorMs: number) {
        const origin = new URL(lease.rootUrl).origin;
        const starts = [
          ...robots.sitemaps.filter((url) => new URL(url).origin === origin).map((url) => ({ url, fromRobots: true })),
          // At the origin's root, its scope is the whole origin anyway; its children keep that.
          { url: sitemapUrlFor(lease.rootUrl), fromRobots: true },
        ];
        const read = async (url: string): Promise<Buffer | null> => {
          if (!robots.isAllowed(url)) return null;
          const res = await this.fetchPolitely(url, floorMs, {
            accept: () => true,
            readRedirected: true,
            keepBytes: true,
            maxBytes: SITEMAP_FETCH_MAX_BYTES,
          });
          if (res.kind === "ok") return res.raw ?? null;
          if (res.kind === "failed" && res.status === 404) return null;
          throw new Error(res.kind === "failed" || res.kind === "skipped" ? res.reason : `answered ${res.kind}`);
        };
        const found = await collectSitemapUrls(starts, read, { maxUrls: MAX_SITEMAP_URLS });
        const urls = found.urls.filter((u) => u.length <= MAX_URL_LENGTH && sameOrigin(u, lease.rootUrl) && u !== lease.url);
        const admitted =
          urls.length === 0
            ? 0
            : await db.transaction((t) =>
                admitUrls(
                  db,
                  urls.map((url) => ({ crawlId: lease.crawlId, url, depth: 0 })),
                  t,
                ),
              );
        for (const error of found.errors) this.logger.warn(`Crawl ${lease.crawlId}: sitemap ${error}`);
        this.logger.info(`Crawl ${lease.crawlId}: ${found.read} sitemap(s) read, ${urls.length} page(s) listed, ${admitted} admitted`);
      },

      async settle(lease: LeasedUrl, outcome: TimedOutcome | null) {
        const fetchedAt = new Date().toISOString();
        const sameSite = (links: string[]) => links.filter((l) => l.length <= MAX_URL_LENGTH && sameOrigin(l, lease.rootUrl));
        // The fetch's history row; a fetched page's travels with the page, for the ingestor to write.
        const history = (state: FetchHistoryRecord["outcome"], fields: Partial<FetchHistoryRecord> = {}): FetchHistoryRecord => ({
          url: lease.url,
          crawlId: lease.crawlId,
          outcome: state,
          status: outcome && "status" in outcome ? (outcome.status ?? null) : null,
          bytes: outcome?.kind === "ok" ? outcome.wireBytes : 0,
          durationMs: outcome?.durationMs ?? 0,
          etag: null,
          lastModified: null,
          contentHash: null,
          fetchedAt,
          ...fields,
        });
        let rec: FetchRecord;
        let page: PageRecord | null = null;
        if (outcome === null) {
          rec = { state: "skipped", reason: "disallowed by robots.txt", httpStatus: null, links: [], linkDepth: 0 };
        } else if (outcome.kind === "ok") {
          const contentHash = createHash("sha256").update(outcome.body).digest("hex");
          const validators = { etag: outcome.etag, lastModified: outcome.lastModified, contentHash };
          const stored = lease.stored;
          if (stored?.links && stored.contentHash === contentHash) {
            // The same body as stored: its links are the stored ones, with no need to parse it.
            rec = {
              state: "unchanged",
              reason: null,
              httpStatus: outcome.status,
              links: sameSite(stored.links),
              linkDepth: lease.depth + 1,
              history: history("unchanged", validators),
              revalidated: { etag: outcome.etag, lastModified: outcome.lastModified },
            };
          } else {
            const { title, links } = extractPage(outcome.body, outcome.url);
            rec = { state: "fetched", reason: null, httpStatus: outcome.status, links: sameSite(links), linkDepth: lease.depth + 1 };
            page = {
              crawlId: lease.crawlId,
              url: lease.url,
              depth: lease.depth,
              status: outcome.status,
              contentType: outcome.contentType,
              title,
              body: outcome.body,
              bytes: outcome.bytes,
              links: links.length,
              fetchedAt,
              ...validators,
              outlinks: links,
              wireBytes: outcome.wireBytes,
              durationMs: outcome.durationMs,
            };
            // Too large with its links: sent without them (its recrawl will fetch it in full).
            if (!fitsInMessage(page)) page.outlinks = null;
            if (!fitsInMessage(page)) {
              rec = {
                state: "failed",
                reason: "page too large to send to the ingestor",
                httpStatus: outcome.status,
                links: [],
                linkDepth: 0,
                history: history("failed", validators),
              };
              page = null;
            }
          }
        } else if (outcome.kind === "unchanged") {
          rec = {
            state: "unchanged",
            reason: null,
            httpStatus: outcome.status,
            links: sameSite(lease.stored?.links ?? []),
            linkDepth: lease.depth + 1,
            history: history("unchanged", {
              etag: outcome.etag,
              lastModified: outcome.lastModified,
              contentHash: lease.stored?.contentHash ?? null,
            }),
            // fetchPage kept the stored validators a 304 left out.
            revalidated: { etag: outcome.etag, lastModified: outcome.lastModified },
          };
        } else if (outcome.kind === "redirect") {
          // The target is crawled as a URL of its own, so each page is stored once under the URL
          // that serves it; like a link, not when it is longer than a URL the frontier admits.
          const followed = sameSite([outcome.to]);
          rec = {
            state: "skipped",
            reason:
              followed.length > 0
                ? `redirected to ${outcome.to}`
                : `redirected to a URL of more than ${MAX_URL_LENGTH} characters, not followed`,
            httpStatus: outcome.status,
            links: followed,
            linkDepth: lease.depth,
            history: history("skipped"),
          };
        } else {
          rec = {
            state: outcome.kind,
            reason: outcome.reason,
            httpStatus: outcome.status ?? null,
            links: [],
            linkDepth: 0,
            history: history(outcome.kind),
          };
        }
        const settling: Settling = { lease, rec, held: false, sendsPage: page !== null };
        await this.settler.add(settling);
        if (!settling.held) return;
        const metric = {
          fetched: METRIC_PAGES_FETCHED,
          unchanged: METRIC_PAGES_UNCHANGED,
          failed: METRIC_PAGES_FAILED,
          skipped: METRIC_PAGES_SKIPPED,
        }[rec.state];
        this.broker.metrics.increment(metric);
        if (page) await this.broker.sendToChannel(CHANNEL_PAGES, page);
      },

      async renew() {
        if (this.stopping || this.leased.size === 0) return;
        try {
          await renewLeases(db, this.broker.nodeID, [...this.leased], crawl.leaseMs);
        } catch (err) {
          this.logger.warn("Renewing URL leases failed; retrying on the next tick", err);
        }
      },

      async sweep() {
        if (this.stopping) return;
        try {
          const released = await releaseExpiredLeases(db, MAX_URL_ATTEMPTS);
          if (released > 0)
            this.logger.warn(`${released} URL(s) whose lease expired were re-queued (or failed after ${MAX_URL_ATTEMPTS} attempts)`);
          const running = await runningCrawlIds(db);
          for (const id of running) await finishAndAnnounce(db, this.broker, id);
          // robots.txt rules are cached per crawl; forget those of crawls that ended.
          for (const key of this.robots.keys()) if (!running.includes(Number(key.split(" ")[0]))) this.robots.delete(key);
        } catch (err) {
          this.logger.warn("Frontier sweep failed; retrying on the next tick", err);
        }
      },
    },
  };
}
