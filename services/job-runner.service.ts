// Runs bulk jobs (random-row inserts, imports) from the durable jobs channel (JetStream in distributed mode): each job
// on exactly one node (a claim in Postgres), at most JOB_CONCURRENCY at once per node. The
// message stays unacknowledged while the job runs and is kept alive on every heartbeat; a node
// killed mid-job stops doing that, and JetStream hands the job to another ingestor.
import type { ServiceSchema } from "moleculer";
import { CHANNEL_JOBS, EVENT_JOBS_UPDATED } from "../lib/platform/names";
import { runRegistered } from "./bulk-job";
import type { Runtime } from "../lib/contracts";
import { announce } from "./announce";
import { importDepsFor } from "./import-job";

// Messages a node may hold at once (JetStream's max_ack_pending): jobs waiting for a slot are
// held too, kept alive like running ones. JOB_CONCURRENCY, not this, bounds what runs.
const JOBS_HELD_MAX = 100;
// A job message dropped after this many failed deliveries; JOB_MAX_ATTEMPTS ends the job first.
const JOBS_CHANNEL_MAX_RETRIES = 100;

/** How long JetStream waits for a silent node before redelivering its job: a few missed heartbeats. */
export const jobAckWaitMs = (heartbeatMs: number) => Math.max(5 * heartbeatMs, 10_000);

interface JobMessage {
  id: number;
}
interface RawMessage {
  working?(): void;
}

export default function jobRunnerService({ db, config, jobPermits, activeJobs, copyIn, ownPorts }: Runtime): ServiceSchema {
  const imports = importDepsFor(config, ownPorts);
  return {
    name: "jobRunner",

    channels: {
      [CHANNEL_JOBS]: {
        group: "jobs",
        maxInFlight: JOBS_HELD_MAX,
        maxRetries: JOBS_CHANNEL_MAX_RETRIES,
        nats: { consumerOptions: { config: { ack_wait: jobAckWaitMs(config.jobs.heartbeatMs) * 1_000_000 } } },
        async handler(
          this: { broker: { stopping: boolean }; run(id: number, keepAlive: () => void): Promise<unknown> },
          msg: JobMessage,
          raw?: unknown,
        ) {
          const keepAlive = () => (raw as RawMessage | undefined)?.working?.();
          const waiting = setInterval(keepAlive, config.jobs.heartbeatMs);
          let release: () => void;
          try {
            release = await jobPermits.acquire();
          } finally {
            clearInterval(waiting);
          }
          // The node is stopping: hand the message back, for another node.
          if (this.broker.stopping) {
            release();
            throw new Error(`node stopping: job ${msg.id} handed back`);
          }
          try {
            await this.run(msg.id, keepAlive);
          } finally {
            release();
          }
        },
      },
    },

    // URL imports' connections (keep-alive) must not hold the process open after it stops.
    async stopped() {
      await imports.dispatcher.close();
    },

    methods: {
      run(id: number, keepAlive: () => void) {
        const deps = {
          db,
          nodeId: this.broker.nodeID,
          settings: config.jobs,
          copyIn,
          imports,
          keepAlive,
          canHandBack: true,
          logger: this.logger,
          metrics: this.broker.metrics,
        };
        return runRegistered(deps, id, activeJobs, (view) => announce(this.broker, EVENT_JOBS_UPDATED, view));
      },
    },
  };
}
