// Boots one Sluice process: the database (embedded PGlite unless DATABASE_URL is set), the
// migrations, one shared connection pool, and a broker running the services of the roles in
// SERVICES. Each service is a factory that receives the process's config and pool.
import crypto from "node:crypto";
import path from "node:path";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import pg from "pg";
import { QueryTypes, type Sequelize } from "sequelize";
import type { Config, Role } from "./lib/platform/config";
import { shareOf } from "./lib/throttle/budget";
import { applicationName, budgetConnections, gateConnections, openSequelize, CONNECTION_HANDOVER_DELAY_MS } from "./lib/platform/db";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "./lib/platform/embedded-pg";
import { migrate } from "./lib/platform/migrate";
import { Semaphore } from "./lib/throttle/semaphore";
import { brokerOptions, nodesRunning } from "./moleculer.config";
import apiService from "./services/api.service";
import crawlsService from "./services/crawls.service";
import crawlerService from "./services/crawler.service";
import ingestorService from "./services/ingestor.service";
import pagesService from "./services/pages.service";
import throttleService from "./services/throttle.service";
import jobsService from "./services/jobs.service";
import jobControlService from "./services/job-control.service";
import jobRunnerService from "./services/job-runner.service";
import insertsService from "./services/inserts.service";
import rowsService from "./services/rows.service";
import idTasksService from "./services/id-tasks.service";
import usersService from "./services/users.service";
import schedulerService from "./services/scheduler.service";
import backlogService from "./services/backlog.service";
import type { JobRow, JobView } from "./models/jobs";
import { DB_CONNECTIONS_RESOURCE, DB_RESOURCE } from "./lib/platform/names";
import { LimiterHub, type LimitSpec } from "./lib/throttle";

export interface Runtime {
  config: Config;
  db: Sequelize;
  /** The per-node bulkhead every database operation passes through. */
  dbGate: Semaphore;
  /** Cluster-wide limiters (Bottleneck, on Redis when REDIS_URL is set). */
  limits: LimiterHub;
  /** Resizes this node's pool to its share of DB_BUDGET for the current membership. */
  rebalance(): void;
  /** Jobs running on this node at once: each holds a connection for its whole transaction. */
  jobPermits: Semaphore;
  /** The jobs running on this node, so that a stop request can abort one. */
  activeJobs: Map<number, ActiveJob>;
  /** Where this process's boot is: the api answers health at once and readiness with this. */
  boot: BootStatus;
  /** The ports this process listens on (API, metrics, embedded database): never crawlable. */
  ownPorts(): number[];
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

export { DB_CONNECTIONS_RESOURCE, DB_RESOURCE };
// How long boot waits for Redis before running on the local fallback share.
const REDIS_BOOT_WAIT_MS = 5_000;
// A node may call another holder of slots gone from the cluster only after it has had time to
// hear from every node (one heartbeat): before that, an empty registry means nothing.
const DISCOVERY_GRACE_MS = 5_000;

/** What moleculer-web reads from ctx.meta to shape a response. */
export interface HttpMeta {
  $statusCode?: number;
  $responseHeaders?: Record<string, string>;
}

type ServiceFactory = (rt: Runtime) => ServiceSchema<any, any>;

// The api role also serves crawl and page records, so reads and crawl requests work while no
// worker runs (a crawl then stays "pending" until a crawler joins).
const ROLE_SERVICES: Record<Role, ServiceFactory[]> = {
  api: [apiService, crawlsService, pagesService, jobsService, insertsService, rowsService, idTasksService, usersService, jobControlService, throttleService, backlogService],
  crawler: [crawlerService, throttleService],
  ingestor: [ingestorService, jobRunnerService, jobControlService, throttleService],
  scheduler: [schedulerService, throttleService],
};

export interface Sluice {
  broker: ServiceBroker;
  config: Config;
  db: Sequelize;
  dbGate: Semaphore;
  limits: LimiterHub;
  /** The API's base URL when this process runs the api role. */
  apiUrl: string | null;
  metricsUrl: string | null;
  stop(): Promise<void>;
}

export async function startSluice(config: Config): Promise<Sluice> {
  let embedded: EmbeddedPostgres | null = null;
  let databaseUrl = config.databaseUrl;
  // PGlite is one Postgres session behind a socket server that interleaves its clients'
  // protocol messages one by one: two clients mid extended-query (Parse/Bind/Execute/Sync)
  // corrupt each other's exchange and one of them waits forever. So embedded mode keeps a
  // single pooled connection; PGlite runs one query at a time anyway.
  const poolMax = databaseUrl ? config.db.nodeConcurrency : 1;
  if (!databaseUrl) {
    // The pool's connection, plus the migration client (which is done before the pool opens).
    embedded = await startEmbeddedPostgres(path.join(config.dataDir, "pglite"), 2);
    databaseUrl = embedded.url;
  }
  const appName = applicationName(config.nodeId, crypto.randomBytes(3).toString("hex"));
  const db = openSequelize(databaseUrl, appName, poolMax);
  // As many permits as pooled connections: waiting happens in the bulkhead's bounded queue,
  // never in the pool's (which times out after 30 s).
  const dbGate = new Semaphore("db", poolMax, config.db.queueMax);
  // Resources outlive the services that use them and close once, after the broker stops, on
  // every path that stops it (including the REPL's quit, which calls broker.stop() directly).
  let closing: Promise<void> | null = null;
  const closeResources = () =>
    (closing ??= (async () => {
      // The pool first: each open connection holds a limiter slot, and the limiters stop only
      // once their slots are released.
      await db.close().catch(() => {});
      await embedded?.stop();
      await limits.stop().catch(() => {});
    })());
  const options = brokerOptions(config);
  // A stopping node hands its running jobs back (they roll back at their next batch and go to
  // another node) instead of holding the stop until they finish; the stop goes on once they have.
  const handBackJobs = {
    name: "HandBackJobs",
    stopping: async () => {
      await Promise.all(
        [...activeJobs.values()].map((job) => {
          job.abort("handed back");
          return job.finished;
        }),
      );
    },
  };
  const boot: BootStatus = { state: "starting services", since: new Date().toISOString() };
  const enter = (state: BootStatus["state"]) => Object.assign(boot, { state, since: new Date().toISOString() });
  let booted: Promise<void> = Promise.resolve();
  // The api starts at once, so /api/health answers and /api/ready says what boot waits for;
  // every other service starts once the schema is migrated.
  const bootGate = {
    name: "BootGate",
    serviceStarting: async (service: { name: string }) => {
      if (service.name !== "api" && !service.name.startsWith("$")) await booted;
    },
  };
  const broker = new ServiceBroker({
    ...options,
    // Other nodes tell this process's leases and connections from a replaced one's by this.
    metadata: { leaseHolder: appName },
    middlewares: [...(options.middlewares ?? []), handBackJobs, bootGate],
    stopped: () => closeResources(),
  });
  const startedAt = Date.now();
  // Looked up at each use: with PORT=0 and METRICS_PORT=0 they are known only once listening.
  type Listening = { server?: { address(): { port: number } | string | null } } | null | undefined;
  const portOf = (l: Listening): number[] => {
    const address = l?.server?.address();
    return address && typeof address === "object" ? [address.port] : [];
  };
  const apiPorts = () => portOf(broker.getLocalService("api") as unknown as Listening);
  const metricsPorts = () => portOf((broker.metrics as unknown as { reporter?: Listening[] }).reporter?.[0]);
  const ownPorts = () => [...apiPorts(), ...metricsPorts(), ...(embedded ? [Number(new URL(embedded.url).port)] : [])];
  // Whether the process named `holder` is no longer a member of the cluster.
  const holderAbsent = (holder: string) => {
    if (holder === appName || Date.now() - startedAt < DISCOVERY_GRACE_MS) return false;
    return !broker.registry.nodes.toArray().some((n) => n.available && (n.metadata as { leaseHolder?: string } | null)?.leaseHolder === holder);
  };
  // How many nodes share a resource's limits (for the local fallback share): the crawlers share
  // the per-host limits; every node shares the database's.
  const nodesSharing = (resource: string) => {
    const service = resource.startsWith("fetch:") ? "crawler" : "throttle";
    return nodesRunning(broker, service).length || 1;
  };
  const log = broker.getLogger("throttle");
  const limits = new LimiterHub(config.redisUrl, `sluice:${config.namespace}:`, nodesSharing, log, { holder: appName, leaseMs: config.throttleLeaseMs });
  // A connection slot whose holder stopped renewing comes back only once Postgres no longer
  // lists that holder's connections. A holder still in the cluster (cut off from Redis, not
  // from Postgres) keeps them; one that has left has its connections ended here.
  const connectionSlots: LimitSpec = {
    maxConcurrent: config.db.budget,
    rate: null,
    checked: {
      absent: holderAbsent,
      async gone(holders, own) {
        const check = async (query: (sql: string, params: unknown[]) => Promise<{ pid: number; name: string }[]>) => {
          const rows = await query("SELECT pid, application_name AS name FROM pg_stat_activity WHERE application_name = ANY($1)", [holders]);
          for (const r of rows.filter((r) => holderAbsent(r.name))) {
            log.warn(`Ending connection ${r.pid} of ${r.name}: its slots expired and it has left the cluster`);
            await query("SELECT pg_terminate_backend($1)", [r.pid]);
          }
          const open = new Set(rows.map((r) => r.name));
          return holders.filter((h) => !open.has(h));
        };
        if (!own) return check((sql, bind) => db.query<{ pid: number; name: string }>(sql, { bind, type: QueryTypes.SELECT }));
        const client = new pg.Client({ connectionString: databaseUrl, application_name: appName });
        await client.connect();
        try {
          return await check(async (sql, params) => (await client.query<{ pid: number; name: string }>(sql, params)).rows);
        } finally {
          await client.end();
        }
      },
    },
  };
  // With DB_RATE, each operation also takes a slot of the cluster-wide `db` limiter, whose rate
  // spaces operations across the cluster (one slot per operation: a batch is one operation).
  const dbRate = config.db.rate;
  gateConnections(db, {
    acquire: async () => {
      const permit = await dbGate.acquire();
      if (!dbRate) return permit;
      try {
        const slot = await limits.hold(DB_RESOURCE, { maxConcurrent: config.db.budget, rate: dbRate });
        return () => {
          slot();
          permit();
        };
      } catch (err) {
        permit();
        throw err;
      }
    },
  });
  // On a real server, every connection holds one of DB_BUDGET cluster-wide slots, and the pool
  // is sized to this node's share of the budget (recomputed as nodes join and leave).
  const pool = config.databaseUrl
    ? budgetConnections(db, dbGate, () => limits.hold(DB_CONNECTIONS_RESOURCE, connectionSlots))
    : null;
  // One connection stays free of job transactions (for heartbeats, progress and reads), where
  // there are two or more.
  const jobPermitsFor = (poolSize: number) => Math.max(1, Math.min(config.jobs.concurrency, poolSize - 1));
  const jobPermits = new Semaphore("jobs", jobPermitsFor(poolMax), Number.MAX_SAFE_INTEGER);
  const activeJobs = new Map<number, ActiveJob>();
  const rebalance = () => {
    if (!pool) return;
    const nodes = nodesRunning(broker, "throttle");
    // At least one: with more nodes than DB_BUDGET, the cluster-wide slots make the extra nodes wait.
    const size = Math.max(1, Math.min(config.db.nodeConcurrency, shareOf(config.db.budget, nodes, broker.nodeID)));
    pool.resize(size);
    jobPermits.setLimit(jobPermitsFor(size));
  };
  const stop = async () => {
    await broker.stop();
    await closeResources();
  };
  const migrateSchema = async () => {
    if (pool) {
      // The migration's own connection counts against the budget too.
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([limits.ready(), new Promise((r) => (waited = setTimeout(r, REDIS_BOOT_WAIT_MS)))]);
      // Left running, the timer would hold a process that stops quickly open for 5 s.
      clearTimeout(waited);
      enter("waiting for a database connection slot");
      const release = await limits.hold(DB_CONNECTIONS_RESOURCE, connectionSlots);
      try {
        enter("migrating");
        await migrate(databaseUrl, appName, (msg) => broker.logger.info(msg));
      } finally {
        setTimeout(release, CONNECTION_HANDOVER_DELAY_MS);
      }
    } else {
      enter("migrating");
      await migrate(databaseUrl, appName, (msg) => broker.logger.info(msg));
    }
    enter("starting services");
  };
  try {
    const created = new Set<ServiceFactory>();
    for (const role of config.roles) {
      for (const factory of ROLE_SERVICES[role]) {
        if (!created.has(factory)) broker.createService(factory({ config, db, dbGate, limits, rebalance, jobPermits, activeJobs, boot, ownPorts }));
        created.add(factory);
      }
    }
    booted = migrateSchema();
    // The gate's waiters see the failure; this keeps it from also counting as unhandled.
    booted.catch(() => enter("failed"));
    await broker.start();
    await booted;
    enter("ready");
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  // Both servers may sit on ephemeral ports (PORT=0, METRICS_PORT=0): report the real ones.
  const [apiPort] = apiPorts();
  const [metricsPort] = metricsPorts();
  return {
    broker,
    config,
    db,
    dbGate,
    limits,
    apiUrl: apiPort ? `http://127.0.0.1:${apiPort}` : null,
    metricsUrl: metricsPort ? `http://127.0.0.1:${metricsPort}/metrics` : null,
    stop,
  };
}
