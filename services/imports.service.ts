// Imports of CSV and NDJSON files: jobs of kind "import". An upload (POST /api/imports with the
// file as the body) is served by import-upload.ts before any action runs; a JSON body names a
// URL instead, which the job fetches under the crawler's SSRF rules (`create`). `get` is the
// job with its progress in rows and in bytes.
import type { Context, ServiceSchema } from "moleculer";
import type { Sequelize } from "sequelize";
import type { Config } from "../lib/platform/config";
import { NotFoundError, ValidationError } from "../lib/platform/errors";
import { intIdParam, pageOf, paginationParams } from "../lib/api/params";
import { columnProblem, importSpecOf } from "../lib/loading/import-format";
import { checkedTarget, CrawlTargetPolicy } from "../lib/crawl/ssrf";
import { createJob, JOB_STATUSES, listJobs, presentJob, type JobStatus, type JobView } from "../models/jobs";
import { catalogColumns } from "../models/imports";
import type { HttpMeta, Runtime } from "../lib/contracts";
import { announceJob } from "./announce";
import { queueBulkJob } from "./bulk-job";
import type { ImportParams } from "./import-job";

/** An import job as GET /api/imports/:id shows it: the job, with the import's own figures. */
export function presentImport(job: JobView) {
  const { done, total, phase, bytes, rowsStaged } = job.progress as {
    done: number;
    total: number | null;
    phase?: string;
    bytes?: number;
    rowsStaged?: number;
  };
  const p = job.params;
  const finished = job.status === "succeeded";
  const fileBytes = Number((job.result?.bytes as number | undefined) ?? bytes ?? 0);
  // While rows move from staging, the bytes behind them are in proportion.
  const bytesDone =
    finished || phase === "uploading" || phase === "staged" ? fileBytes : total ? Math.round((fileBytes * done) / total) : 0;
  return {
    ...job,
    import: {
      table: p.table,
      format: p.format,
      source: p.source,
      ...(p.url ? { url: p.url } : {}),
      columns: p.columns,
      phase: job.status === "pending" || job.status === "running" ? (phase ?? "queued") : job.status,
      rows: {
        done: phase === "uploading" ? 0 : done,
        total: total ?? (phase === "uploading" ? null : (rowsStaged ?? null)),
        staged: rowsStaged ?? null,
      },
      bytes: { done: bytesDone, total: phase === "uploading" ? null : fileBytes || null },
    },
  };
}

/** POST /api/imports's JSON body (a URL import); an import schedule's job params are checked against it too (schedules.service.ts). */
export const CREATE_URL_IMPORT_PARAMS = {
  url: { type: "string", min: 1, max: 2048 },
  table: { type: "string", max: 200 },
  format: { type: "string", max: 20, optional: true },
  header: { type: "boolean", optional: true },
  delimiter: { type: "string", max: 4, optional: true },
  columns: { type: "array", items: { type: "string", max: 63 }, max: 1600, optional: true },
  $$strict: true,
} as const;

/**
 * A URL import request's job params: its spec, its URL past the SSRF guard, its table and columns
 * checked against the catalog. Each refusal is a ValidationError naming the field.
 */
export async function urlImportParams(
  db: Sequelize,
  config: Config,
  policy: CrawlTargetPolicy,
  params: Record<string, unknown> & { url: string },
): Promise<ImportParams> {
  const spec = importSpecOf(params, config.imports.tables, null);
  const url = await checkedTarget(params.url, policy);
  const catalog = await catalogColumns(db, spec.table);
  if (!catalog) throw new ValidationError("table", `table ${spec.table} does not exist`);
  const problem = spec.columns.length > 0 ? columnProblem(spec.columns, catalog) : null;
  if (problem) throw new ValidationError("columns", problem.message, { column: problem.column });
  return { ...spec, source: "url", url };
}

export default function importsService({ db, config, ownPorts }: Runtime): ServiceSchema {
  let policy: CrawlTargetPolicy;
  return {
    name: "imports",

    created() {
      policy = CrawlTargetPolicy.fromConfig(config, ownPorts);
    },

    actions: {
      /** A URL import (JSON body). An upload never reaches here: import-upload.ts serves it. */
      create: {
        retryPolicy: { enabled: false },
        params: CREATE_URL_IMPORT_PARAMS,
        async handler(ctx: Context<Record<string, unknown> & { url: string }, HttpMeta>) {
          const params = await urlImportParams(db, config, policy, ctx.params);
          const job = await createJob(db, "import", { ...params }, null);
          announceJob(ctx, job);
          await queueBulkJob(db, this.broker, job);
          ctx.meta.$statusCode = 202;
          ctx.meta.$responseHeaders = { Location: `/api/imports/${job.id}` };
          return { id: job.id, status: job.status };
        },
      },

      get: {
        params: { id: intIdParam },
        async handler(ctx: Context<{ id: number }>) {
          // jobs.get knows a job running in this process from its runner.
          const job: JobView = await ctx.call("jobs.get", { id: ctx.params.id });
          if (job.kind !== "import") throw new NotFoundError("import", ctx.params.id);
          return presentImport(job);
        },
      },

      list: {
        params: { ...paginationParams, status: { type: "enum", values: [...JOB_STATUSES], optional: true } },
        async handler(ctx: Context<{ limit?: number; offset?: number; status?: JobStatus }>) {
          const page = pageOf(ctx.params);
          const { rows, ...total } = await listJobs(db, { kind: "import", status: ctx.params.status, ...page });
          return { items: rows.map((r) => presentImport(presentJob(r))), ...total, ...page };
        },
      },
    },
  };
}
