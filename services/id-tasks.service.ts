// Id-tasks (seed: DRF + Celery): a list of user ids, spread over the minutes of the hour under an
// RPM cap, each processed in its minute by the scheduler. The records and their changes.
import type { Context, ServiceSchema } from "moleculer";
import { NotFoundError, ValidationError } from "../lib/platform/errors";
import { intIdParam, pageOf, paginationParams } from "../lib/api/params";
import { createIdTask, getIdTasks, listSlots, minuteFill, replanIdTask, setPaused, slotCounts } from "../models/id-tasks";
import { getJob, listJobs, presentJob, type JobRow } from "../models/jobs";
import type { HttpMeta, Runtime } from "../lib/contracts";
import { announceJob } from "./announce";

export const MAX_TASK_IDS = 1_000_000;
export const MAX_RPM = 1_000_000;
const rpmParam = { type: "number", integer: true, min: 1, max: MAX_RPM, optional: true } as const;

export default function idTasksService({ db, config }: Runtime): ServiceSchema {
  const minuteMs = config.scheduler.minuteMs;
  /** The tasks' views, with their id_tasks rows and slot counts read once for all of them. */
  const views = async (jobs: JobRow[]) => {
    const ids = jobs.map((j) => j.id);
    const [tasks, counts] = await Promise.all([getIdTasks(db, ids), slotCounts(db, ids)]);
    return jobs.flatMap((job) => {
      const task = tasks.get(job.id);
      if (!task) return [];
      const firstMinuteAt = new Date(task.first_minute * minuteMs);
      const lastMinuteAt = new Date(task.last_minute * minuteMs);
      return [{ ...presentJob(job), rpm: task.rpm, paused: task.paused, firstMinuteAt, lastMinuteAt, counts: counts.get(job.id)! }];
    });
  };
  const view = async (id: number) => {
    const job = await getJob(db, id);
    const [found] = job ? await views([job]) : [];
    if (!found) throw new NotFoundError("id-task", id);
    return found;
  };

  return {
    name: "idTasks",
    actions: {
      create: {
        retryPolicy: { enabled: false },
        params: {
          ids: {
            type: "array",
            min: 1,
            max: MAX_TASK_IDS,
            items: { type: "number", integer: true, positive: true, max: Number.MAX_SAFE_INTEGER },
          },
          rpm: rpmParam,
        },
        async handler(ctx: Context<{ ids: number[]; rpm?: number }, HttpMeta>) {
          const seen = new Set<number>();
          for (const id of ctx.params.ids) {
            if (seen.has(id)) throw new ValidationError("ids", `id ${id} appears more than once`, { id });
            seen.add(id);
          }
          const { job, plan } = await createIdTask(db, ctx.params.ids, ctx.params.rpm ?? config.scheduler.defaultRpm, minuteMs);
          announceJob(ctx, job);
          ctx.meta.$statusCode = 202;
          ctx.meta.$responseHeaders = { Location: `/api/id-tasks/${job.id}` };
          return {
            id: job.id,
            status: job.status,
            plan: { firstMinute: plan.firstMinuteAt, lastMinute: plan.lastMinuteAt, perMinute: plan.perMinute, minutes: plan.minutes },
          };
        },
      },

      list: {
        params: paginationParams,
        async handler(ctx: Context<{ limit?: number; offset?: number }>) {
          const { limit, offset } = pageOf(ctx.params);
          const { rows, total } = await listJobs(db, { kind: "id-task", limit, offset });
          return { items: await views(rows), total, limit, offset };
        },
      },

      get: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          return view(ctx.params.id);
        },
      },

      /** Pause, resume, or a new RPM for the ids not dispatched yet (planned again from the next minute). */
      update: {
        retryPolicy: { enabled: false },
        params: { id: intIdParam, paused: { type: "boolean", optional: true }, rpm: rpmParam, $$strict: true },
        async handler(ctx: Context<{ id: number; paused?: boolean; rpm?: number }>) {
          if (ctx.params.paused === undefined && ctx.params.rpm === undefined)
            throw new ValidationError("paused", "send paused (true or false) and/or rpm");
          await view(ctx.params.id);
          if (ctx.params.paused !== undefined) await setPaused(db, ctx.params.id, ctx.params.paused);
          if (ctx.params.rpm !== undefined) await replanIdTask(db, ctx.params.id, ctx.params.rpm, minuteMs);
          return view(ctx.params.id);
        },
      },

      /** GET /api/id-tasks/:id/minutes: the plan per minute (the console's heatmap), by state. */
      minutes: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          const task = await view(ctx.params.id);
          const fill = await minuteFill(db, ctx.params.id);
          return { rpm: task.rpm, minuteMs, items: fill.map((m) => ({ minute: new Date(m.minute * minuteMs), counts: m.counts })) };
        },
      },

      slots: {
        params: { id: intIdParam, minute: { type: "date", convert: true, optional: true }, ...paginationParams },
        async handler(ctx: Context<{ id: number; minute?: Date; limit?: number; offset?: number }>) {
          await view(ctx.params.id);
          const { limit, offset } = pageOf(ctx.params);
          const minute = ctx.params.minute ? Math.floor(ctx.params.minute.getTime() / minuteMs) : null;
          const rows = await listSlots(db, ctx.params.id, minute, limit, offset);
          return {
            items: rows.map((r) => ({
              id: r.external_id,
              minute: new Date(r.minute * minuteMs),
              state: r.state,
              attempts: r.attempts,
              error: r.error,
            })),
            limit,
            offset,
          };
        },
      },
    },
  };
}
