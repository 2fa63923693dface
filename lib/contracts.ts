// The contracts between the composition root (runtime.ts) and the services: what every service
// factory receives, and the shapes they share. Types only, so any layer may import them.
import type { Sequelize } from "sequelize";
import type { JobRow, JobView } from "../models/jobs";
import type { Config } from "./platform/config";
import type { LimiterHub } from "./throttle";
import type { Semaphore } from "./throttle/semaphore";
import type { CopyIn } from "./platform/bulk-copy";

export interface Runtime {
  config: Config;
  db: Sequelize;
  /** The per-node bulkhead every database operation passes through. */
  dbGate: Semaphore;
  /** Cluster-wide limiters (Bottleneck, on Redis when REDIS_URL is set). */
  limits: LimiterHub;
  /** Resizes this node's pool to its share of DB_BUDGET for the current membership. */
  rebalance: () => void;
  /** Jobs running on this node at once: each holds a connection for its whole transaction. */
  jobPermits: Semaphore;
  /** The jobs running on this node, so that a stop request can abort one. */
  activeJobs: Map<number, ActiveJob>;
  /** Where this process's boot is: the api answers health at once and readiness with this. */
  boot: BootStatus;
  /** The ports this process listens on (API, metrics, embedded database): never crawlable. */
  ownPorts: () => number[];
  /** COPY FROM STDIN inside a transaction (on PGlite, its COPY from a blob). */
  copyIn: CopyIn;
}

export interface BootStatus {
  state: "waiting for a database connection slot" | "migrating" | "starting services" | "ready" | "failed";
  /** When it entered that state, ISO time. */
  since: string;
}

export interface ActiveJob {
  /** "stopped": a stop request (the job ends cancelled); "handed back": this node is stopping (the job goes back to pending). */
  abort(reason?: "stopped" | "handed back"): void;
  /** The job as its runner sees it now: reads of a job running here need no database. */
  view(): JobView | null;
  /** Settles once the job has ended (after its rollback, when aborted). */
  finished: Promise<JobRow | null>;
}

/** What moleculer-web reads from ctx.meta to shape a response. */
export interface HttpMeta {
  $statusCode?: number;
  $responseHeaders?: Record<string, string>;
}
