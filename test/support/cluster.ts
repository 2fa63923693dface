// The e2e cluster harness: Sluice nodes as separate OS processes over real NATS and Postgres (and
// Redis when asked), each cluster with a fresh database, a namespace of its own and, if asked, a
// generated site. cleanup() stops the nodes and removes everything the cluster left behind.
//
//   const cluster = await createCluster({ redis: true, site: { pages: 500 }, env: { DB_BUDGET: "6" } });
//   await cluster.start("api", { services: "api" });
//   await cluster.start("crawler", { services: "crawler" });
//   const id = await cluster.startCrawl({ url: cluster.site.entryUrl, maxDepth: 10 });
//   const crawl = await cluster.waitForCrawl(id);
//   await cluster.cleanup();
import type pg from "pg";
import { http, startCrawlWhenReady, waitForNodes, waitForReady, waitUntilFinished } from "../../fixtures/api-client";
import { deleteRedisKeys, deleteStreams, namespaceKeys } from "../../fixtures/namespace-cleanup";
import { freePort, isRunning, startNode, uniqueNamespace, type NodeProcess } from "../../fixtures/node-process";
import { withClient } from "../../fixtures/pg-client";
import type { ScratchDatabase } from "../../fixtures/scratch-db";
import { serveGeneratedSite, type GeneratedSiteOptions, type GeneratedSiteServer } from "../../fixtures/site-server";
import { connectionsByName, sampleConnections, type ConnectionSampler } from "./connections";
import { createTestDatabase, NATS_URL, tempDir } from "./env";

const REDIS_URL = process.env.REDIS_URL;
const NODES_JOIN_MS = 60_000;
const CRAWL_FINISH_MS = 120_000;
const JOB_FINISH_MS = 120_000;

export interface ClusterOptions {
  /** Environment every node gets, on top of the cluster's own (TRANSPORTER, DATABASE_URL, NAMESPACE…). */
  env?: Record<string, string>;
  /** Nodes get REDIS_URL (cluster-wide limits); cleanup() deletes the namespace's keys. */
  redis?: boolean;
  /** A generated site for the cluster to crawl, closed by cleanup(). */
  site?: GeneratedSiteOptions;
  /** No servers at all: no transporter, an embedded database in a temporary directory. */
  embedded?: boolean;
  /** How cleanup() stops the nodes still running. Default SIGKILL. */
  stopSignal?: NodeJS.Signals;
}

export interface NodeOptions {
  /** SERVICES of the node; unset: every role. A node with the api role gets a port of its own. */
  services?: string;
  env?: Record<string, string>;
  args?: string[];
}

export interface ClusterNode extends NodeProcess {
  /** The node's name without the namespace, as given to start(). */
  shortName: string;
  /** Base URL of its API, or "" when the node has no api role. */
  api: string;
  /** How its leases are named in Redis: `sluice:<node id>:`. */
  holderPrefix: string;
  /** SIGKILL, now, without waiting for the exit. */
  kill(): void;
}

export class Cluster {
  readonly nodes: ClusterNode[] = [];
  private readonly samplers: ConnectionSampler[] = [];
  private readonly cleanups: (() => Promise<unknown>)[] = [];
  private readonly sites: GeneratedSiteServer[] = [];

  constructor(
    readonly namespace: string,
    /** The environment every node starts with. */
    readonly env: Record<string, string>,
    private readonly options: ClusterOptions,
    private readonly database: ScratchDatabase | undefined,
  ) {}

  get db(): ScratchDatabase {
    if (!this.database) throw new Error("an embedded cluster has no scratch database");
    return this.database;
  }

  /** The first site served for the cluster (ClusterOptions.site, or serveSite()). */
  get site(): GeneratedSiteServer {
    const site = this.sites[0];
    if (!site) throw new Error("the cluster was created without a site");
    return site;
  }

  /** Serves a generated site, closed by cleanup(). */
  async serveSite(options: GeneratedSiteOptions): Promise<GeneratedSiteServer> {
    const site = await serveGeneratedSite(options);
    this.sites.push(site);
    return site;
  }

  /** The API of the first node started with the api role. */
  get api(): string {
    const node = this.nodes.find((n) => n.api !== "");
    if (!node) throw new Error("no node of the cluster has the api role");
    return node.api;
  }

  async start(name: string, options: NodeOptions = {}): Promise<ClusterNode> {
    const hasApi = options.services === undefined || options.services.split(",").includes("api");
    const port = hasApi ? await freePort() : 0;
    const env = {
      ...this.env,
      ...(options.services === undefined ? {} : { SERVICES: options.services }),
      PORT: String(port),
      ...options.env,
    };
    const id = `${this.namespace}-${name}`;
    const proc = startNode(id, env, options.args);
    const node: ClusterNode = {
      ...proc,
      shortName: name,
      api: hasApi ? `http://127.0.0.1:${port}` : "",
      holderPrefix: `sluice:${id}:`,
      kill: () => void proc.child.kill("SIGKILL"),
    };
    this.nodes.push(node);
    return node;
  }

  node(name: string): ClusterNode {
    const node = this.nodes.find((n) => n.shortName === name);
    if (!node) throw new Error(`no node ${name} in the cluster`);
    return node;
  }

  /** The nodes whose process is still running. */
  running(): ClusterNode[] {
    return this.nodes.filter(isRunning);
  }

  /** Waits until `expected` nodes report their limits, or until every named node does. */
  waitForNodes(expected: number | string[], timeoutMs = NODES_JOIN_MS): Promise<true> {
    const ids = typeof expected === "number" ? expected : expected.map((n) => `${this.namespace}-${n}`);
    return this.printOnFailure(waitForNodes(this.api, ids, timeoutMs));
  }

  /** Waits until the node answers /api/ready with 200. */
  ready(node: ClusterNode, timeoutMs = 60_000): Promise<true> {
    return this.printOnFailure(waitForReady(node.api, timeoutMs, `${node.name} ready`));
  }

  /** Posts the crawl until the cluster accepts it; answers its id. */
  startCrawl(crawl: { url: string; maxDepth: number; maxPages?: number }, timeoutMs = 60_000): Promise<number> {
    return this.printOnFailure(startCrawlWhenReady(this.api, crawl, timeoutMs));
  }

  async crawl(id: number): Promise<any> {
    return (await http(this.api, "GET", `/api/crawls/${id}`)).body;
  }

  waitForCrawl(id: number, timeoutMs = CRAWL_FINISH_MS): Promise<any> {
    return this.printOnFailure(waitUntilFinished(this.api, `/api/crawls/${id}`, timeoutMs, `crawl ${id} to finish`));
  }

  async job(id: number): Promise<any> {
    return (await http(this.api, "GET", `/api/jobs/${id}`)).body;
  }

  waitForJob(id: number, timeoutMs = JOB_FINISH_MS): Promise<any> {
    return this.printOnFailure(waitUntilFinished(this.api, `/api/jobs/${id}`, timeoutMs, `job ${id} to finish`));
  }

  waitForIdTask(id: number, timeoutMs = JOB_FINISH_MS): Promise<any> {
    return this.printOnFailure(waitUntilFinished(this.api, `/api/id-tasks/${id}`, timeoutMs, `id-task ${id} to finish`));
  }

  /** Samples Sluice's connections to the cluster's database every 20 ms; cleanup() stops it. */
  sampleConnections(): ConnectionSampler {
    const sampler = sampleConnections(this.db.name);
    this.samplers.push(sampler);
    return sampler;
  }

  connectionsByName(): Promise<Map<string, number>> {
    return connectionsByName(this.db.name);
  }

  /** Runs `fn` with a client of its own on the cluster's database. */
  withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return withClient(this.db.url, fn);
  }

  /** Something else the test started (a server, a client) that cleanup() is to close. */
  onCleanup(fn: () => Promise<unknown>): void {
    this.cleanups.push(fn);
  }

  /** The tail of every node's output, with how it exited. */
  printOutputs(): void {
    for (const n of this.nodes) console.log(`${n.name} exit=${n.child.exitCode} signal=${n.child.signalCode}\n${n.output().slice(-3000)}`);
  }

  /** Stops the nodes and samplers, then removes the database, the site, the streams and the keys. */
  async cleanup(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop(this.options.stopSignal ?? "SIGKILL")));
    for (const sampler of this.samplers) await sampler.stop();
    for (const fn of this.cleanups.splice(0)) await fn();
    for (const site of this.sites) await site.close();
    await this.database?.drop();
    if (this.options.embedded) return;
    await deleteStreams(NATS_URL!, this.namespace).catch(() => {});
    if (this.options.redis) await deleteRedisKeys(REDIS_URL!, namespaceKeys(this.namespace));
  }

  private async printOnFailure<T>(wait: Promise<T>): Promise<T> {
    try {
      return await wait;
    } catch (err) {
      this.printOutputs();
      throw err;
    }
  }
}

/** A crawl's page counts when it stored every page of `site` exactly once and nothing failed. */
export function everyPageStored(site: GeneratedSiteServer): {
  discovered: number;
  fetched: number;
  stored: number;
  unchanged: 0;
  failed: 0;
  skipped: 0;
} {
  const n = site.expectedPages;
  return { discovered: n, fetched: n, stored: n, unchanged: 0, failed: 0, skipped: 0 };
}

export async function createCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const namespace = uniqueNamespace();
  const database = options.embedded ? undefined : await createTestDatabase();
  const servers: Record<string, string> = options.embedded
    ? { DATA_DIR: tempDir() }
    : { TRANSPORTER: NATS_URL!, DATABASE_URL: database!.url, NAMESPACE: namespace, ...(options.redis ? { REDIS_URL: REDIS_URL! } : {}) };
  const env = { ...servers, CRAWL_ALLOW_HOSTS: "127.0.0.1", ...options.env };
  const cluster = new Cluster(namespace, env, options, database);
  if (options.site) await cluster.serveSite(options.site);
  return cluster;
}
