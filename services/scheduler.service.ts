// The scheduler: at each minute, one node (whichever claims the minute first) dispatches that
// minute's ids, spread evenly across it, onto the durable ids channel; every scheduler node
// processes ids from it: the user's profile from the upstream API (under a known cluster-wide
// rate, or an adaptive one), with a deadline and retries, then an upsert of the user.
import type { ServiceSchema } from "moleculer";
import { initialState, onSuccess, onThrottle } from "../lib/throttle/adaptive-rate";
import { localAdaptiveStore, redisAdaptiveStore, type AdaptiveStore } from "../lib/throttle/adaptive-store";
import { CHANNEL_IDS, EVENT_QUARTER, METRIC_UPSTREAM_SECONDS } from "../lib/platform/names";
import { QUARTER_MINUTES } from "../lib/scheduling/minute-planner";
import { realClock, sendSpread } from "../lib/scheduling/spread";
import { backoffMs, fetchProfile, upstreamUrlFor, type UpstreamOutcome } from "../lib/scheduling/upstream";
import { claimMinute, dispatchDue, settleSlot, startSlot } from "../models/id-dispatch";
import { minutesSummary, minuteOf, replanOrphans, replanUndelivered } from "../models/id-tasks";
import { upsertUser } from "../models/users";
import { ThrottleMixin } from "../mixins/throttle.mixin";
import { nodesRunning } from "../moleculer.config";
import type { Runtime } from "../lib/contracts";
import { announce, announceJob } from "./announce";
import { jobEnded, runSeconds, timed, UPSTREAM_DURATION } from "./metrics";

// The most ids one minute dispatches; the rest stay planned and go out in the next minutes.
const DISPATCH_MAX_PER_MINUTE = 200_000;
const RETRY_BASE_MS = 200;
const RETRY_CAP_MS = 10_000;
// Ids processed at once per node.
const IDS_IN_FLIGHT = 50;
const IDS_ACK_WAIT_MS = 10_000;
// Past Moleculer's heartbeat timeout (15 s): by then a dead dispatcher has left every registry.
const ORPHAN_AFTER_MS = 30_000;
// The adaptive rate's bounds (calls per second) and the change that is worth writing to Redis.
const ADAPTIVE_BOUNDS = { minRate: 0.5, maxRate: 10_000 };
const ADAPTIVE_START_RATE = 1;
const ADAPTIVE_WRITE_CHANGE = 0.05;

/** A call held back by the upstream's Retry-After: to be made after `waitMs`. */
interface Deferred {
  kind: "deferred";
  waitMs: number;
}

interface IdMessage {
  taskId: number;
  externalId: number;
}

export default function schedulerService(rt: Runtime): ServiceSchema {
  const { db, config } = rt;
  const s = config.scheduler;
  const resource = s.upstreamUrl ? `upstream:${new URL(s.upstreamUrl.replace("{id}", "1")).host}` : "upstream";
  // With Redis, one controller for the whole cluster; without, this process's own.
  const adaptiveKey = `sluice:${config.namespace}:adaptive:${resource}`;
  let adaptive: AdaptiveStore | null = null;
  const adaptiveStore = () =>
    (adaptive ??= config.redisUrl
      ? redisAdaptiveStore(config.redisUrl, adaptiveKey, initialState(ADAPTIVE_START_RATE, Date.now()))
      : localAdaptiveStore(initialState(ADAPTIVE_START_RATE, Date.now())));
  let appliedRate = ADAPTIVE_START_RATE;
  let timer: NodeJS.Timeout | null = null;
  let stopping = false;
  let replanned = false;

  return {
    name: "scheduler",
    mixins: [ThrottleMixin(rt)],

    channels: {
      [CHANNEL_IDS]: {
        group: "scheduler",
        maxInFlight: IDS_IN_FLIGHT,
        // A killed node's ids go to another node after this long; a live node keeps its own
        // (waiting for the limiter, retrying) from being redelivered with working().
        nats: { consumerOptions: { config: { ack_wait: IDS_ACK_WAIT_MS * 1_000_000 } } },
        async handler(this: { process(m: IdMessage): Promise<void> }, msg: IdMessage, raw?: unknown) {
          const keepAlive = setInterval(() => (raw as { working?(): void } | undefined)?.working?.(), IDS_ACK_WAIT_MS / 3);
          try {
            await this.process(msg);
          } finally {
            clearInterval(keepAlive);
          }
        },
      },
    },

    methods: {
      /** The minute that has just begun: claim it, and send its ids out spread across it. */
      async tick() {
        if (stopping) return;
        const now = Date.now();
        const minute = minuteOf(now, s.minuteMs);
        timer = setTimeout(
          () => void this.tick().catch((err: unknown) => this.logger.warn("Scheduler tick failed", err)),
          (minute + 1) * s.minuteMs - now + 5,
        );
        // Embedded mode's channel lived in memory: what it held is planned again, once, before
        // anything is dispatched (here rather than at boot, where a busy database would fail it).
        if (!config.transporter && !replanned) {
          await replanUndelivered(db);
          replanned = true;
        }
        if (!(await claimMinute(db, minute, this.broker.nodeID))) return;
        const orphans = await replanOrphans(
          db,
          [...nodesRunning(this.broker, "scheduler"), this.broker.nodeID],
          Math.max(2 * s.minuteMs, ORPHAN_AFTER_MS),
        );
        if (orphans > 0) this.logger.warn(`${orphans} id(s) dispatched by a node that left are planned again`);
        const due = await dispatchDue(db, minute, DISPATCH_MAX_PER_MINUTE, this.broker.nodeID);
        // Not awaited: the quarter report must not delay the minute's dispatch.
        if (minute % QUARTER_MINUTES === 0) void this.reportQuarter(minute).catch(() => {});
        const send = (slot: { task_id: number; external_id: number }) =>
          this.broker.sendToChannel(CHANNEL_IDS, { taskId: slot.task_id, externalId: slot.external_id });
        await sendSpread(due, minute * s.minuteMs, s.minuteMs, send, realClock, () => stopping);
      },

      /** The seed's quarter checker: at minutes 0, 15, 30 and 45, what became of the quarter that ended. */
      async reportQuarter(minute: number) {
        const from = minute - QUARTER_MINUTES;
        const counts = await minutesSummary(db, from, minute);
        const summary = {
          quarter: Math.floor((((from % 60) + 60) % 60) / QUARTER_MINUTES),
          from: new Date(from * s.minuteMs),
          to: new Date(minute * s.minuteMs),
          counts,
        };
        if (Object.values(counts).some((n) => n > 0)) this.logger.info(`Quarter ${summary.quarter} ended: ${JSON.stringify(counts)}`);
        announce(this.broker, EVENT_QUARTER, summary);
      },

      async process(msg: IdMessage) {
        const { taken, job } = await startSlot(db, msg.taskId, msg.externalId);
        announceJob(this.broker, job);
        if (!taken) return;
        let error = "not attempted";
        for (let attempt = 1; attempt <= s.upstreamMaxAttempts; attempt++) {
          const last: UpstreamOutcome | Deferred = await this.callUpstream(msg.externalId);
          if (last.kind === "deferred") {
            // Not sent: the upstream asked everyone to wait. That costs no attempt.
            attempt--;
            await new Promise((r) => setTimeout(r, last.waitMs));
            continue;
          }
          if (last.kind === "ok") {
            await upsertUser(db, msg.externalId, last.profile);
            await this.settle(msg, { ok: true });
            return;
          }
          error = last.error;
          if (attempt < s.upstreamMaxAttempts) {
            const wait =
              last.kind === "throttled" && last.retryAfterMs !== null ? last.retryAfterMs : backoffMs(attempt, RETRY_BASE_MS, RETRY_CAP_MS);
            await new Promise((r) => setTimeout(r, wait));
          }
        }
        await this.settle(msg, { ok: false, error: `${error} (after ${s.upstreamMaxAttempts} attempts)` });
      },

      async settle(msg: IdMessage, outcome: { ok: true } | { ok: false; error: string }) {
        const job = await settleSlot(db, msg.taskId, msg.externalId, outcome);
        // Only the settle that ended the task answers it succeeded or failed (a task cancelled
        // before comes back "cancelled" on every settle): its outcome is counted here, once.
        if (job?.status === "succeeded" || job?.status === "failed") jobEnded(this.broker.metrics, job.kind, job.status, runSeconds(job));
        announceJob(this.broker, job);
      },

      /** One call under the upstream's limit: known (cluster-wide), adaptive, or none. */
      async callUpstream(externalId: number): Promise<UpstreamOutcome | Deferred> {
        if (!s.upstreamUrl) return { kind: "ok", profile: { id: externalId } };
        const url = upstreamUrlFor(s.upstreamUrl, externalId);
        const call = () => timed(this.broker.metrics, METRIC_UPSTREAM_SECONDS, () => fetchProfile(url, s.upstreamTimeoutMs));
        if (s.upstreamRate === null) return call();
        if (s.upstreamRate !== "auto") {
          return this.limiterFor(resource, { maxConcurrent: null, rate: s.upstreamRate }).schedule(call);
        }
        // Calls already waiting in the limiter when a Retry-After came are held back too: sent
        // into a window the upstream has closed, each would only collect another 429.
        const store = adaptiveStore();
        const outcome = await this.limiterFor(resource, {
          maxConcurrent: null,
          rate: { count: appliedRate, perMs: 1000 },
          exact: true,
        }).schedule(async () => {
          const pause = store.current().pausedUntil - Date.now();
          return pause > 0 ? ({ kind: "deferred", waitMs: pause } as const) : call();
        });
        if (outcome.kind === "deferred" || outcome.kind === "failed") return outcome;
        const now = Date.now();
        const state = await store.update((st) =>
          outcome.kind === "throttled" ? onThrottle(st, ADAPTIVE_BOUNDS, now, outcome.retryAfterMs) : onSuccess(st, ADAPTIVE_BOUNDS, now),
        );
        // The limiter's rate lives in Redis too: a change written here holds for every node.
        if (Math.abs(state.rate - appliedRate) / appliedRate >= ADAPTIVE_WRITE_CHANGE) {
          appliedRate = state.rate;
          await rt.limits.update(resource, { rate: { count: appliedRate, perMs: 1000 }, exact: true }).catch(() => {});
        }
        return outcome;
      },
    },

    created() {
      this.broker.metrics.register(UPSTREAM_DURATION);
    },

    started() {
      stopping = false;
      // Not awaited: started() returns at once; each tick schedules the next.
      void this.tick().catch((err: unknown) => this.logger.warn("Scheduler tick failed", err));
    },

    async stopped() {
      stopping = true;
      if (timer) clearTimeout(timer);
      await adaptive?.close();
      adaptive = null;
    },
  };
}
