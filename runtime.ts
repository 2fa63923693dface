// Boots one Sluice process, in four steps: the database (embedded PGlite unless DATABASE_URL is
// set), the connection budget, the broker, and the services of the roles in SERVICES, which
// start once the schema is migrated. Each service is a factory that receives the Runtime.
import { ServiceBroker, type ServiceSchema } from "moleculer";
import type { Sequelize } from "sequelize";
import type { ActiveJob, Runtime } from "./lib/contracts";
import { Boot } from "./lib/platform/boot";
import type { Config, Role } from "./lib/platform/config";
import { budgetPool, connectionSlots, gateOperations, type PoolBudget } from "./lib/platform/connection-budget";
import { openDatabase, type Database } from "./lib/platform/database";
import { budgetMembers, holderAbsence, nodesSharing } from "./lib/platform/membership";
import { migrate } from "./lib/platform/migrate";
import { copyInFor } from "./lib/platform/bulk-copy";
import { LimiterHub } from "./lib/throttle";
import type { Semaphore } from "./lib/throttle/semaphore";
import { brokerOptions } from "./moleculer.config";
import apiService from "./services/api.service";
import backlogService from "./services/backlog.service";
import crawlerService from "./services/crawler.service";
import crawlsService from "./services/crawls.service";
import idTasksService from "./services/id-tasks.service";
import ingestorService from "./services/ingestor.service";
import insertsService from "./services/inserts.service";
import importsService from "./services/imports.service";
import jobControlService from "./services/job-control.service";
import jobRunnerService from "./services/job-runner.service";
import jobAdminService from "./services/job-admin.service";
import jobsService from "./services/jobs.service";
import { permitTimings, registerJobMetrics } from "./services/metrics";
import queuesService from "./services/queues.service";
import pagesService from "./services/pages.service";
import rowsService from "./services/rows.service";
import schedulerService from "./services/scheduler.service";
import schedulesService from "./services/schedules.service";
import throttleService from "./services/throttle.service";
import usersService from "./services/users.service";

// How long boot waits for Redis before running on the local fallback share.
const REDIS_BOOT_WAIT_MS = 5_000;

type ServiceFactory = (rt: Runtime) => ServiceSchema<any, any>;

// The api role also serves crawl and page records, so reads and crawl requests work while no
// worker runs (a crawl then stays "pending" until a crawler joins).
const ROLE_SERVICES: Record<Role, ServiceFactory[]> = {
  api: [
    apiService,
    crawlsService,
    pagesService,
    jobsService,
    jobAdminService,
    queuesService,
    insertsService,
    importsService,
    rowsService,
    idTasksService,
    usersService,
    jobControlService,
    throttleService,
    backlogService,
    schedulesService,
  ],
  crawler: [crawlerService, throttleService],
  ingestor: [ingestorService, jobRunnerService, jobControlService, throttleService],
  // schedulesService on both: its actions answer wherever it runs, its tick loop runs only where
  // the scheduler role does (it checks config.roles), so a node of both roles runs it once.
  scheduler: [schedulerService, schedulesService, throttleService],
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
  const database = await openDatabase(config);
  const activeJobs = new Map<number, ActiveJob>();
  const boot = new Boot();
  // Resources outlive the services that use them and close once, after the broker stops, on
  // every path that stops it (including the REPL's quit, which calls broker.stop() directly).
  let closing: Promise<void> | null = null;
  const closeResources = () =>
    (closing ??= (async () => {
      // The pool first: each open connection holds a limiter slot, and the limiters stop only
      // once their slots are released.
      await database.db.close().catch(() => {});
      await database.embedded?.stop();
      await limits.stop().catch(() => {});
    })());
  const broker = createBroker(config, database.holder, boot, activeJobs, closeResources);
  const limits: LimiterHub = new LimiterHub(
    config.redisUrl,
    `sluice:${config.namespace}:`,
    nodesSharing(broker),
    broker.getLogger("throttle"),
    {
      holder: database.holder,
      leaseMs: config.throttleLeaseMs,
    },
  );
  const slots = connectionSlots(config, database, holderAbsence(broker, database.holder), broker.getLogger("throttle"));
  gateOperations(config, database, limits, permitTimings(broker.metrics));
  registerJobMetrics(broker.metrics);
  const budget = budgetPool(config, database, limits, slots, budgetMembers(broker), broker.nodeID);
  const ports = listeningPorts(broker, database);
  // Idempotent: a second stop (a second signal, a test's finally) waits for the first.
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await broker.stop();
      await closeResources();
    })());
  try {
    createServices(broker, config.roles, {
      config,
      db: database.db,
      dbGate: database.gate,
      limits,
      rebalance: budget.rebalance,
      jobPermits: budget.jobPermits,
      activeJobs,
      boot: boot.status,
      ownPorts: ports.all,
      copyIn: copyInFor(database.embedded),
    });
    const migrated = boot.run(() => migrateSchema(config, database, limits, budget, boot, broker));
    await broker.start();
    await migrated;
    boot.enter("ready");
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  // Both servers may sit on ephemeral ports (PORT=0, METRICS_PORT=0): report the real ones.
  const [apiPort] = ports.api();
  const [metricsPort] = ports.metrics();
  return {
    broker,
    config,
    db: database.db,
    dbGate: database.gate,
    limits,
    apiUrl: apiPort ? `http://127.0.0.1:${apiPort}` : null,
    metricsUrl: metricsPort ? `http://127.0.0.1:${metricsPort}/metrics` : null,
    stop,
  };
}

function createBroker(
  config: Config,
  holder: string,
  boot: Boot,
  activeJobs: Map<number, ActiveJob>,
  closeResources: () => Promise<void>,
): ServiceBroker {
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
  return new ServiceBroker({
    ...options,
    // Other nodes tell this process's leases and connections from a replaced one's by this.
    metadata: { leaseHolder: holder },
    middlewares: [...(options.middlewares ?? []), handBackJobs, boot.gate()],
    stopped: () => closeResources(),
  });
}

function createServices(broker: ServiceBroker, roles: readonly Role[], rt: Runtime): void {
  const created = new Set<ServiceFactory>();
  for (const factory of roles.flatMap((role) => ROLE_SERVICES[role])) {
    if (!created.has(factory)) broker.createService(factory(rt));
    created.add(factory);
  }
}

/** The migration, under a connection slot of its own where there is a budget. */
async function migrateSchema(
  config: Config,
  database: Database,
  limits: LimiterHub,
  budget: PoolBudget,
  boot: Boot,
  broker: ServiceBroker,
): Promise<void> {
  const run = async () => {
    boot.enter("migrating");
    await migrate(database.url, database.holder, (msg) => broker.logger.info(msg));
  };
  if (config.databaseUrl) {
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([limits.ready(), new Promise((r) => (waited = setTimeout(r, REDIS_BOOT_WAIT_MS)))]);
    // Left running, the timer would hold a process that stops quickly open for 5 s.
    clearTimeout(waited);
    boot.enter("waiting for a database connection slot");
    await budget.withSlot(run);
  } else {
    await run();
  }
  boot.enter("starting services");
}

/** The ports this process listens on, looked up at each use: with PORT=0 and METRICS_PORT=0 they are known only once listening. */
function listeningPorts(broker: ServiceBroker, database: Database) {
  type Listening = { server?: { address(): { port: number } | string | null } } | null | undefined;
  const portOf = (l: Listening): number[] => {
    const address = l?.server?.address();
    return address && typeof address === "object" ? [address.port] : [];
  };
  const api = () => portOf(broker.getLocalService("api") as unknown as Listening);
  const metrics = () => portOf((broker.metrics as unknown as { reporter?: Listening[] }).reporter?.[0]);
  const embedded = database.embedded ? [Number(new URL(database.embedded.url).port)] : [];
  return { api, metrics, all: () => [...api(), ...metrics(), ...embedded] };
}
