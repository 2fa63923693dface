// The time arithmetic of recurring schedules (services/schedules.service.ts), pure: which tick is
// due, and what a late one becomes. croner only parses the pattern (5 fields, or 6 with seconds
// first) and finds the next tick in a time zone; it runs no timer of its own here: the schedules
// service polls the database, so that a tick is fired once across the cluster.
import { Cron } from "croner";
import { ValidationError } from "../platform/errors";

export const MISFIRE_POLICIES = ["skip", "run_once"] as const;
export type MisfirePolicy = (typeof MISFIRE_POLICIES)[number];
// What Celery beat and BullMQ users get: beat runs a periodic task that came due while it was
// down once when it is back (is_due), and a BullMQ job scheduler's next job waits, delayed, to run
// once when a worker returns. Quartz's default for cron triggers (fire once now) is the same.
export const DEFAULT_MISFIRE: MisfirePolicy = "run_once";
export const DEFAULT_TIMEZONE = "UTC";
// A tick fired at most this late is on time, and gets its own job even when later ticks are due
// too (a poll that came late, a node killed mid-tick and another taking over). Later than that it
// is a misfire (the schedulers were down), which the schedule's misfire policy settles.
export const MISFIRE_GRACE_MS = 30_000;
export const MAX_CRON_LENGTH = 120;
export const MAX_TIMEZONE_LENGTH = 64;

export interface CronSpec {
  cron: string;
  timezone: string;
}

/** The time zone's canonical IANA name ("utc" gives "UTC"); a ValidationError naming `timezone` for an unknown one. */
export function canonicalTimeZone(timezone: string): string {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    throw new ValidationError(
      "timezone",
      `"${timezone.slice(0, MAX_TIMEZONE_LENGTH)}" is not an IANA time zone such as Europe/Paris or UTC`,
    );
  }
}

/** The pattern, parsed for its time zone (a known one: see canonicalTimeZone); a ValidationError naming `cron` when croner refuses it. */
export function parseCron(spec: CronSpec): Cron {
  try {
    return new Cron(spec.cron, { timezone: spec.timezone });
  } catch (err) {
    throw new ValidationError("cron", `"${spec.cron.slice(0, MAX_CRON_LENGTH)}" is not a cron pattern: ${(err as Error).message}`);
  }
}

/** parseCron for a new or changed schedule: a pattern that never fires (February 30th) is refused too. */
export function compileCron(spec: CronSpec, now: Date): Cron {
  const pattern = parseCron(spec);
  if (nextTick(pattern, now) === null) throw new ValidationError("cron", `"${spec.cron}" never fires`);
  return pattern;
}

/** The first tick strictly after `after`; null when the pattern has none left. */
export function nextTick(pattern: Cron, after: Date): Date | null {
  return pattern.nextRun(after);
}

/** What to do with a due tick. */
export interface TickPlan {
  /** The tick a job is made for (recorded in schedule_runs); null: no job. */
  fireAt: Date | null;
  /** Where the schedule goes next; null: the pattern has no tick left. */
  nextRunAt: Date | null;
  /** The tick was more than the grace late. */
  misfired: boolean;
}

/**
 * The plan for the schedule's due tick `due` at `now`. On time (at most `graceMs` late): a job for
 * that tick, and the schedule moves to the tick after it, which may be due already (the caller
 * fires it next). A misfire: with "skip" no job, with "run_once" one job (for all the missed
 * ticks, recorded at the first); either way the schedule moves past `now`, so a schedule that was
 * down for a day never fires a burst.
 */
export function planTick(due: Date, now: Date, misfire: MisfirePolicy, pattern: Cron, graceMs = MISFIRE_GRACE_MS): TickPlan {
  if (now.getTime() - due.getTime() <= graceMs) return { fireAt: due, nextRunAt: nextTick(pattern, due), misfired: false };
  return { fireAt: misfire === "run_once" ? due : null, nextRunAt: nextTick(pattern, now), misfired: true };
}
