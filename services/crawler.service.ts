// The fetch worker. Each crawler node leases queued URLs from the shared frontier, fetches them
// politely (per-host concurrency and rate), records each URL's outcome and the links it found,
// and sends fetched pages to the ingestor over the durable pages channel.
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Agent } from "undici";
import { fetchPage, type FetchOutcome } from "../lib/crawl/fetch-page";
import { CHANNEL_PAGES, EVENT_CRAWL_CREATED, METRIC_PAGES_FAILED, METRIC_PAGES_FETCHED, METRIC_PAGES_SKIPPED } from "../lib/platform/names";
import { parseRobots, robotsUrlFor, type RobotsRules } from "../lib/crawl/robots";
import { CrawlTargetPolicy, guardedConnector } from "../lib/crawl/ssrf";
import { extractPage, sameOrigin } from "../lib/crawl/url";
import { runningCrawlIds } from "../models/crawls";
import { leaseUrls, recordFetch, releaseLease, releaseExpiredLeases, type LeasedUrl, type FetchRecord } from "../models/frontier";
import { announceCrawlJobs, finishAndAnnounce } from "./announce";
import { ThrottleMixin, type ThrottleMethods } from "../mixins/throttle.mixin";
import type { Runtime } from "../lib/contracts";
import type { PageRecord } from "../models/pages";

// How often an idle node looks for queued URLs, and how often it sweeps expired leases and
// crawls whose last URLs were settled by two nodes at once.
export const POLL_INTERVAL_MS = 250;
export const SWEEP_INTERVAL_MS = 2_000;
// Leases of one URL before it is failed (each lease that expires counts).
export const MAX_URL_ATTEMPTS = 3;
// Longer links are not admitted: they are rarely real pages and can exceed Postgres's index row size.
export const MAX_URL_LENGTH = 2048;
// A page travels to the ingestor as one NATS message (1 MiB by default), envelope included.
export const MAX_PAGE_MESSAGE_BYTES = 1_000_000;

class NodeStoppingError extends Error {
  constructor() {
    super("crawler node is stopping");
  }
}

interface CrawlerVars {
  policy: CrawlTargetPolicy;
  agent: Agent;
  robots: Map<string, Promise<RobotsRules>>;
  inFlight: number;
  filling: boolean;
  stopping: boolean;
  timers: NodeJS.Timeout[];
  /** Leases, fetches and sweeps under way: stopping waits for them so none outlives the pool. */
  work: Set<Promise<unknown>>;
}

interface CrawlerMethods extends ThrottleMethods {
  track<T>(p: Promise<T>): Promise<T>;
  fill(): Promise<void>;
  crawlOne(lease: LeasedUrl): Promise<void>;
  fetchPolitely(url: string, readAnyText?: boolean): Promise<FetchOutcome>;
  robotsFor(lease: LeasedUrl): Promise<RobotsRules>;
  settle(lease: LeasedUrl, outcome: FetchOutcome): Promise<void>;
  sweep(): Promise<void>;
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
        [METRIC_PAGES_FAILED, "URLs whose fetch failed"],
        [METRIC_PAGES_SKIPPED, "URLs skipped (robots.txt, non-HTML, redirect, target not allowed)"],
      ] as const) {
        this.broker.metrics.register({ type: "counter", name, description: help });
      }
    },

    async started() {
      this.policy = CrawlTargetPolicy.fromConfig(config, rt.ownPorts);
      this.agent = new Agent({ connections: crawl.hostConcurrency, keepAliveTimeout: 4_000, connect: guardedConnector(this.policy) });
      this.robots = new Map();
      this.inFlight = 0;
      this.filling = false;
      this.stopping = false;
      this.work = new Set();
      // fill and sweep never reject (each logs its own failure); the next tick retries.
      this.timers = [
        setInterval(() => void this.fill(), POLL_INTERVAL_MS),
        setInterval(() => void this.track(this.sweep()), SWEEP_INTERVAL_MS),
      ];
    },

    async stopped() {
      this.stopping = true;
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
          const room = crawl.nodeConcurrency - this.inFlight;
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
            // Not awaited: leases run side by side, up to the room; crawlOne never rejects.
            void this.track(this.crawlOne(lease)).finally(() => {
              this.inFlight--;
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
        try {
          const robots = await this.robotsFor(lease);
          const outcome: FetchOutcome = robots.isAllowed(lease.url)
            ? await this.fetchPolitely(lease.url)
            : { kind: "skipped", reason: "disallowed by robots.txt" };
          await this.settle(lease, outcome);
        } catch (err) {
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

      fetchPolitely(url: string, readAnyText = false) {
        // Per-host politeness, cluster-wide when Redis is configured.
        const limiter = this.limiterFor(`fetch:${new URL(url).host}`, { maxConcurrent: crawl.hostConcurrency, rate: crawl.hostRate });
        return limiter.schedule(async () => {
          // Shutting down: a fetch still waiting for its turn is not started (its URL goes back to the queue).
          if (this.stopping) throw new NodeStoppingError();
          return fetchPage(url, {
            timeoutMs: crawl.fetchTimeoutMs,
            maxBytes: crawl.maxBytes,
            maxRedirects: crawl.maxRedirects,
            policy: this.policy,
            dispatcher: this.agent,
            ...(readAnyText ? { accept: () => true, readRedirected: true } : {}),
          });
        });
      },

      robotsFor(lease: LeasedUrl) {
        const key = `${lease.crawlId} ${new URL(lease.url).origin}`;
        let rules = this.robots.get(key);
        if (!rules) {
          const robotsUrl = robotsUrlFor(lease.url);
          rules = this.fetchPolitely(robotsUrl, true).then((res) => {
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

      async settle(lease: LeasedUrl, outcome: FetchOutcome) {
        let rec: FetchRecord;
        let page: PageRecord | null = null;
        if (outcome.kind === "ok") {
          const { title, links } = extractPage(outcome.body, outcome.url);
          const sameSite = links.filter((l) => l.length <= MAX_URL_LENGTH && sameOrigin(l, lease.rootUrl));
          rec = { state: "fetched", reason: null, httpStatus: outcome.status, links: sameSite, linkDepth: lease.depth + 1 };
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
            fetchedAt: new Date().toISOString(),
          };
          if (Buffer.byteLength(JSON.stringify(page)) > MAX_PAGE_MESSAGE_BYTES) {
            rec = {
              state: "failed",
              reason: "page too large to send to the ingestor",
              httpStatus: outcome.status,
              links: [],
              linkDepth: 0,
            };
            page = null;
          }
        } else if (outcome.kind === "redirect") {
          // The target is crawled as a URL of its own, so each page is stored once under the URL that serves it.
          rec = {
            state: "skipped",
            reason: `redirected to ${outcome.to}`,
            httpStatus: outcome.status,
            links: [outcome.to],
            linkDepth: lease.depth,
          };
        } else {
          rec = { state: outcome.kind, reason: outcome.reason, httpStatus: outcome.status ?? null, links: [], linkDepth: 0 };
        }
        const held = await recordFetch(db, lease, this.broker.nodeID, rec, crawl.leaseMs);
        if (!held) return;
        const metric = { fetched: METRIC_PAGES_FETCHED, failed: METRIC_PAGES_FAILED, skipped: METRIC_PAGES_SKIPPED }[rec.state];
        this.broker.metrics.increment(metric);
        if (page) await this.broker.sendToChannel(CHANNEL_PAGES, page);
        else await finishAndAnnounce(db, this.broker, lease.crawlId);
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
