// The deployment files, checked offline (no cluster, no Docker daemon here): every Kubernetes
// and KEDA object against the API schemas and, because those allow unknown keys, against the
// models' TypeScript types, so a misspelled key fails; and k8s/, k8s/keda/, docker-compose.yml
// and the Dockerfile against the code: each pod's environment must pass the config reader, every
// variable must be documented, the references between objects (selectors, autoscaler targets,
// probe ports, secret keys) must resolve, and the KEDA triggers must name the streams and
// consumers the channels really use. `npm run compose:check` runs the compose file for real.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import ts from "typescript";
import { parseAllDocuments, parse } from "yaml";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { loadConfig, ROLES, DEFAULT_CRAWL_FETCH_TIMEOUT_MS, DEFAULT_UPSTREAM_TIMEOUT_MS } from "../../lib/platform/config";
import { CHANNEL_IDS, CHANNEL_JOBS, CHANNEL_PAGES } from "../../lib/platform/names";
import { migrate } from "../../lib/platform/migrate";
import { withClient } from "../../fixtures/pg-client";
import { createTestDatabase, describeWithServers } from "../support/env";

const ROOT = path.join(__dirname, "..", "..");
const K8S = path.join(ROOT, "k8s");
const read = (...p: string[]) => fs.readFileSync(path.join(ROOT, ...p), "utf8");

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: any;
}

// apiVersion/kind -> the model that validates it and the module with its TypeScript type.
const MODELS: Record<string, { model: new (data: any) => { validate(): void }; module: string; type: string }> = {
  "v1/ConfigMap": { model: ConfigMap, module: "kubernetes-models/v1/ConfigMap", type: "IConfigMap" },
  "v1/Secret": { model: Secret, module: "kubernetes-models/v1/Secret", type: "ISecret" },
  "v1/Service": { model: Service, module: "kubernetes-models/v1/Service", type: "IService" },
  "apps/v1/Deployment": { model: Deployment, module: "kubernetes-models/apps/v1/Deployment", type: "IDeployment" },
  "policy/v1/PodDisruptionBudget": {
    model: PodDisruptionBudget,
    module: "kubernetes-models/policy/v1/PodDisruptionBudget",
    type: "IPodDisruptionBudget",
  },
  "autoscaling/v2/HorizontalPodAutoscaler": {
    model: HorizontalPodAutoscaler,
    module: "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler",
    type: "IHorizontalPodAutoscaler",
  },
  "keda.sh/v1alpha1/ScaledObject": {
    model: ScaledObject,
    module: "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
    type: "IScaledObject",
  },
  "keda.sh/v1alpha1/TriggerAuthentication": {
    model: TriggerAuthentication,
    module: "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
    type: "ITriggerAuthentication",
  },
};

function readYaml(file: string): any[] {
  return parseAllDocuments(fs.readFileSync(file, "utf8"), { merge: true }).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS();
  });
}

/**
 * The objects `kubectl kustomize dir` makes, for the features these kustomizations use: resources
 * (files and directories) and patches that delete an object. Anything else fails, so that this
 * stays true; the labels and images it adds are left out.
 */
function kustomize(dir: string): K8sObject[] {
  const k = parse(fs.readFileSync(path.join(dir, "kustomization.yaml"), "utf8")) as Record<string, any>;
  const unknown = Object.keys(k).filter((key) => !["apiVersion", "kind", "resources", "patches", "labels", "images"].includes(key));
  if (unknown.length) throw new Error(`${dir}: kustomization keys this test does not resolve: ${unknown.join(", ")}`);
  let objects: K8sObject[] = (k.resources as string[]).flatMap((r) => {
    const p = path.join(dir, r);
    return fs.statSync(p).isDirectory() ? kustomize(p) : readYaml(p);
  });
  for (const { patch, ...rest } of (k.patches ?? []) as { patch: string }[]) {
    const target = parse(patch) as K8sObject & { $patch?: string };
    if (Object.keys(rest).length || target.$patch !== "delete")
      throw new Error(`${dir}: only inline "$patch: delete" patches are resolved here`);
    const at = objects.findIndex(
      (o) => o.kind === target.kind && o.apiVersion === target.apiVersion && o.metadata.name === target.metadata.name,
    );
    if (at < 0) throw new Error(`${dir}: the patch deletes ${target.kind}/${target.metadata.name}, which is not there`);
    objects = objects.filter((_, i) => i !== at);
  }
  return objects;
}

/** Type errors of `objects`, each assigned to its model's interface as an object literal. */
function typeErrors(objects: K8sObject[]): string[] {
  const file = path.join(K8S, "__manifests.ts");
  const source = objects
    .map((o, i) => {
      const { module, type } = MODELS[`${o.apiVersion}/${o.kind}`]!;
      return `import type { ${type} as T${i} } from "${module}";\nexport const m${i}: T${i} = ${JSON.stringify(o)};`;
    })
    .join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
}

/** The variables the README's configuration table documents. */
function documentedVariables(): Set<string> {
  return new Set([...read("README.md").matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!));
}

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

const kubectl = (() => {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

// How long Sluice's stop may take (k8s/README.md, "Stopping pods"): fetches and upstream calls in
// flight end within their timeouts, a job's hand-back within a batch; the grace period covers
// several times the longest of them.
const STOP_SECONDS = 40;
const longestInFlightSeconds = Math.max(DEFAULT_CRAWL_FETCH_TIMEOUT_MS, DEFAULT_UPSTREAM_TIMEOUT_MS) / 1000;

describe.each([
  ["k8s/", K8S],
  ["k8s/keda/", path.join(K8S, "keda")],
])("%s", (name, dir) => {
  const objects = kustomize(dir);

  it("holds only objects of known kinds, each valid against the API schema", () => {
    expect(objects.length).toBeGreaterThan(0);
    for (const o of objects) {
      const entry = MODELS[`${o.apiVersion}/${o.kind}`];
      expect(entry).toBeDefined();
      expect(() => new entry!.model(o).validate()).not.toThrow();
    }
  });

  it("has no key the API types do not know (a misspelling would be ignored by the cluster)", () => {
    expect(typeErrors(objects)).toEqual([]);
  });

  (kubectl ? it : it.skip)("is what kubectl kustomize makes of it", () => {
    const built = parseAllDocuments(execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" })).map((d) => d.toJS() as K8sObject);
    const ids = (list: K8sObject[]) => list.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(ids(built)).toEqual(ids(objects));
    for (const o of built) expect(o.metadata.labels?.["app.kubernetes.io/part-of"]).toBe("sluice");
  });

  it(`gives every Deployment exactly one autoscaler${name === "k8s/" ? " (an HPA)" : ""}, and each autoscaler a Deployment`, () => {
    const deployments = objects.filter((o) => o.kind === "Deployment").map((d) => d.metadata.name);
    const targets = objects
      .filter((o) => o.kind === "HorizontalPodAutoscaler" || o.kind === "ScaledObject")
      .map((o) => ({ kind: o.spec.scaleTargetRef.kind ?? "Deployment", name: o.spec.scaleTargetRef.name as string }));
    expect(targets.every((t) => t.kind === "Deployment")).toBe(true);
    expect(targets.map((t) => t.name).sort()).toEqual([...deployments].sort());
  });
});

describe("k8s/ base", () => {
  const objects = kustomize(K8S);
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const deployments = ofKind("Deployment");

  it("catches a misspelled key with the type check", () => {
    const misspelled = structuredClone(deployments[0]!);
    misspelled.spec.template.spec.containers[0].livenesProbe = misspelled.spec.template.spec.containers[0].livenessProbe;
    expect(typeErrors([misspelled]).join("\n")).toMatch(/livenesProbe/);
  });

  it("runs every role, each pod with an environment the config reader accepts", () => {
    const config = ofKind("ConfigMap")[0]!.data as Record<string, string>;
    const secret = ofKind("Secret")[0]!.stringData as Record<string, string>;
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual(ROLES.map((r) => `sluice-${r}`).sort());
    for (const d of deployments) {
      const container = d.spec.template.spec.containers[0];
      const own: Record<string, string> = Object.fromEntries(
        container.env.map((e: { name: string; value?: string }) => [e.name, e.value ?? `${d.metadata.name}-pod`]),
      );
      const parsed = loadConfig({ ...config, ...secret, ...own });
      expect(parsed.roles).toEqual([d.metadata.name.replace("sluice-", "")]);
      expect(parsed.transporter).not.toBeNull();
      expect(parsed.databaseUrl).toMatch(/^postgres:\/\//);
      // The pod name is the node ID: Moleculer needs them unique.
      expect(container.env.find((e: { name: string }) => e.name === "NODE_ID").valueFrom.fieldRef.fieldPath).toBe("metadata.name");
    }
  });

  it("documents every variable it sets", () => {
    const documented = documentedVariables();
    const names = [
      ...Object.keys(ofKind("ConfigMap")[0]!.data),
      ...Object.keys(ofKind("Secret")[0]!.stringData),
      ...deployments.flatMap((d) => d.spec.template.spec.containers[0].env.map((e: { name: string }) => e.name)),
    ];
    expect(names.filter((n) => !documented.has(n))).toEqual([]);
  });

  it("points probes at ports the container names and paths Sluice serves", () => {
    for (const d of deployments) {
      const c = d.spec.template.spec.containers[0];
      const ports = new Set(c.ports.map((p: { name: string }) => p.name));
      for (const probe of [c.readinessProbe, c.livenessProbe]) expect(ports.has(probe.httpGet.port)).toBe(true);
      const paths = [c.readinessProbe.httpGet.path, c.livenessProbe.httpGet.path];
      expect(paths).toEqual(d.metadata.name === "sluice-api" ? ["/api/ready", "/api/health"] : ["/metrics", "/metrics"]);
      // The HPAs' CPU target is a share of the request.
      expect(c.resources.requests.cpu).toBeDefined();
    }
  });

  it("gives each Deployment a PDB and a CPU HPA that select it, and the Service reaches the api pods", () => {
    for (const d of deployments) {
      const labels = d.spec.template.metadata.labels;
      expect(ofKind("PodDisruptionBudget").filter((p) => matches(p.spec.selector.matchLabels, labels))).toHaveLength(1);
      const hpa = ofKind("HorizontalPodAutoscaler").find((h) => h.spec.scaleTargetRef.name === d.metadata.name)!;
      expect(hpa.spec.metrics.some((m: any) => m.type === "Resource" && m.resource.name === "cpu")).toBe(true);
    }
    const [service] = ofKind("Service");
    const targets = deployments.filter((d) => matches(service!.spec.selector, d.spec.template.metadata.labels));
    expect(targets.map((d) => d.metadata.name)).toEqual(["sluice-api"]);
    expect(targets[0]!.spec.template.spec.containers[0].ports.map((p: { name: string }) => p.name)).toContain(
      service!.spec.ports[0].targetPort,
    );
  });

  it("scales crawlers and ingestors on the queues Sluice reports", () => {
    const lag = (name: string) =>
      ofKind("HorizontalPodAutoscaler")
        .find((h) => h.spec.scaleTargetRef.name === name)!
        .spec.metrics.filter((m: any) => m.type === "External")
        .map((m: any) => `${m.external.metric.name}/${m.external.metric.selector.matchLabels.queue}`);
    // The gauge and its queue labels as services/backlog.service.ts sets them.
    const service = read("services", "backlog.service.ts");
    expect(service).toMatch(/METRIC_BACKLOG = "sluice\.backlog"/);
    expect(service).toMatch(/crawlUrls: "crawl_urls", insertJobs: "insert_jobs"/);
    expect(lag("sluice-crawler")).toEqual(["sluice_backlog/crawl_urls"]);
    expect(lag("sluice-ingestor")).toEqual(["sluice_backlog/insert_jobs"]);
  });

  it("gives a stopping pod time to hand its work back, and the api's endpoints time to drop it first", () => {
    expect(STOP_SECONDS).toBeGreaterThanOrEqual(3 * longestInFlightSeconds);
    for (const d of deployments) {
      const spec = d.spec.template.spec;
      const preStop = spec.containers[0].lifecycle?.preStop;
      const pause = preStop ? Number(preStop.exec.command[1]) : 0;
      if (d.metadata.name === "sluice-api") {
        expect(preStop.exec.command).toEqual(["sleep", "5"]);
      } else {
        // Nothing routes to a worker: it hands its work back at once.
        expect(preStop).toBeUndefined();
      }
      expect(spec.terminationGracePeriodSeconds).toBe(pause + STOP_SECONDS);
    }
  });
});

describe("k8s/keda/", () => {
  const base = kustomize(K8S);
  const objects = kustomize(path.join(K8S, "keda"));
  const scaled = (name: string) => objects.find((o) => o.kind === "ScaledObject" && o.spec.scaleTargetRef.name === name)!;
  const triggers = (name: string, type: string) => scaled(name).spec.triggers.filter((t: { type: string }) => t.type === type);

  it("is the base with the workers' HPAs replaced by ScaledObjects; the api keeps its HPA and minimum", () => {
    const ids = (list: K8sObject[]) => list.filter((o) => o.kind !== "HorizontalPodAutoscaler").map((o) => `${o.kind}/${o.metadata.name}`);
    expect(ids(objects).filter((id) => !id.startsWith("ScaledObject/") && !id.startsWith("TriggerAuthentication/"))).toEqual(ids(base));
    const hpas = objects.filter((o) => o.kind === "HorizontalPodAutoscaler");
    expect(hpas.map((h) => h.spec.scaleTargetRef.name)).toEqual(["sluice-api"]);
    expect(hpas[0]!.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(scaled("sluice-api")).toBeUndefined();
  });

  it("scales crawlers and ingestors to zero, never the scheduler (it fires the schedules and queues the ids)", () => {
    expect(scaled("sluice-crawler").spec.minReplicaCount).toBe(0);
    expect(scaled("sluice-ingestor").spec.minReplicaCount).toBe(0);
    expect(scaled("sluice-scheduler").spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    // As the base HPAs: at most the same pods, and the same slow scale-down.
    for (const name of ["sluice-crawler", "sluice-ingestor", "sluice-scheduler"]) {
      const hpa = base.find((o) => o.kind === "HorizontalPodAutoscaler" && o.spec.scaleTargetRef.name === name)!;
      expect(scaled(name).spec.maxReplicaCount).toBe(hpa.spec.maxReplicas);
      expect(scaled(name).spec.advanced.horizontalPodAutoscalerConfig.behavior).toEqual(hpa.spec.behavior);
    }
  });

  it("watches the JetStream streams and consumers the channels use", () => {
    // @moleculer/channels' NATS adapter: a stream per channel (dots as underscores), a durable
    // consumer per group; NAMESPACE is unset in the ConfigMap, so no prefix.
    const adapter = read("node_modules", "@moleculer", "channels", "src", "adapters", "nats.js");
    expect(adapter).toContain('const streamName = chan.name.split(".").join("_");');
    expect(adapter).toContain('consumerOpts.config.durable_name = chan.group.split(".").join("_");');
    expect(base.find((o) => o.kind === "ConfigMap")!.data.NAMESPACE).toBeUndefined();
    const group = (file: string, channel: string) =>
      new RegExp(`\\[${channel}\\]: \\{\\s*group: "([a-z]+)"`).exec(read("services", file))![1]!;
    const watched = (name: string) => triggers(name, "nats-jetstream").map((t: any) => `${t.metadata.stream}/${t.metadata.consumer}`);
    const stream = (channel: string) => channel.split(".").join("_");
    expect(watched("sluice-ingestor")).toEqual([
      `${stream(CHANNEL_PAGES)}/${group("ingestor.service.ts", "CHANNEL_PAGES")}`,
      `${stream(CHANNEL_JOBS)}/${group("job-runner.service.ts", "CHANNEL_JOBS")}`,
    ]);
    expect(watched("sluice-scheduler")).toEqual([`${stream(CHANNEL_IDS)}/${group("scheduler.service.ts", "CHANNEL_IDS")}`]);
    for (const t of [...triggers("sluice-ingestor", "nats-jetstream"), ...triggers("sluice-scheduler", "nats-jetstream")]) {
      expect(t.metadata.account).toBe("$G");
      expect(t.metadata.natsServerMonitoringEndpoint).toMatch(/^nats\.[a-z0-9-]+\.svc\.cluster\.local:8222$/);
    }
    // One ingestor per JOB_CONCURRENCY jobs, as the base HPA.
    const jobs = triggers("sluice-ingestor", "nats-jetstream").find((t: any) => t.metadata.stream === stream(CHANNEL_JOBS));
    expect(jobs.metadata.lagThreshold).toBe(base.find((o) => o.kind === "ConfigMap")!.data.JOB_CONCURRENCY);
  });

  it("counts the crawlers' work in Postgres with the pods' own DATABASE_URL", () => {
    const [pgTrigger] = triggers("sluice-crawler", "postgresql");
    expect(pgTrigger.metadata.query).toMatch(/FROM crawl_urls/);
    const auth = objects.find((o) => o.kind === "TriggerAuthentication" && o.metadata.name === pgTrigger.authenticationRef.name)!;
    const [ref] = auth.spec.secretTargetRef;
    expect(ref.parameter).toBe("connection");
    const secret = objects.find((o) => o.kind === "Secret" && o.metadata.name === ref.name)!;
    expect(Object.keys(secret.stringData)).toContain(ref.key);
  });
});

describeWithServers(["DATABASE_URL"], "k8s/keda/ crawler query", () => {
  it("runs on the migrated schema, counting queued URLs, expired leases and running crawls", async () => {
    const [trigger] = kustomize(path.join(K8S, "keda"))
      .find((o) => o.kind === "ScaledObject" && o.metadata.name === "sluice-crawler")!
      .spec.triggers.filter((t: { type: string }) => t.type === "postgresql");
    const db = await createTestDatabase();
    try {
      await migrate(db.url, "deploy-test");
      await withClient(db.url, async (client) => {
        const count = async () => Number(Object.values((await client.query(trigger.metadata.query)).rows[0] as object)[0]);
        expect(await count()).toBe(0);
        const { rows } = await client.query<{ id: number }>(
          `INSERT INTO crawls (url, status, max_pages, max_depth) VALUES ('http://a.example/', 'running', 10, 1) RETURNING id`,
        );
        await client.query(
          `INSERT INTO crawl_urls (crawl_id, url, depth, state, lease_until) VALUES
             ($1, 'http://a.example/1', 1, 'queued', NULL),
             ($1, 'http://a.example/2', 1, 'fetching', now() - interval '1 minute'),
             ($1, 'http://a.example/3', 1, 'fetching', now() + interval '1 minute'),
             ($1, 'http://a.example/4', 1, 'stored', NULL)`,
          [rows[0]!.id],
        );
        // The queued URL, the expired lease, and the running crawl.
        expect(await count()).toBe(3);
        await client.query(`UPDATE crawls SET paused = true`);
        expect(await count()).toBe(0);
      });
    } finally {
      await db.drop();
    }
  }, 60_000);
});

/** The compose file as docker-compose reads it: ${VAR}, ${VAR:-default} and ${VAR:?error} from `env`. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_, name: string, op: string | undefined, arg: string) => {
    const value = env[name];
    const unset = op?.startsWith(":") ? !value : value === undefined;
    if (!unset) return value!;
    if (op?.endsWith("?")) throw new Error(`${name}: ${arg}`);
    return op ? arg : "";
  });
}

/** KEY=value lines of .env.example (commented ones are optional). */
function envExample(): Record<string, string> {
  return Object.fromEntries([...read(".env.example").matchAll(/^([A-Z_][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** The major version of Node every production dependency's engines.node accepts (lowest bound). */
function requiredNodeMajor(): number {
  const lock = JSON.parse(read("package-lock.json")) as { packages: Record<string, { dev?: boolean; engines?: { node?: string } }> };
  const majors = Object.values(lock.packages)
    .filter((p) => !p.dev && p.engines?.node && p.engines.node !== "*")
    .map((p) => Math.min(...p.engines!.node!.split("||").map((alt) => Number(/\d+/.exec(alt)![0]))));
  return Math.max(...majors);
}

describe("docker-compose.yml", () => {
  const raw = read("docker-compose.yml");
  const example = envExample();
  // What an operator's .env holds: .env.example with its blanks filled in.
  const env = Object.fromEntries(Object.entries(example).map(([k, v]) => [k, v || "t".repeat(32)]));
  const compose = parse(interpolate(raw, env), { merge: true }) as { services: Record<string, any>; secrets: Record<string, any> };
  const sluice = Object.entries(compose.services).filter(([, s]) => s.build);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-deploy-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  /** The service's environment, with each secret it reads at /run/secrets/<name> written to a file of its own. */
  const environment = (s: any): Record<string, string> =>
    Object.fromEntries(
      Object.entries(s.environment as Record<string, string>).map(([k, v]) => {
        const secret = /^\/run\/secrets\/(.+)$/.exec(v)?.[1];
        if (!secret) return [k, v];
        expect(s.secrets).toContain(secret);
        const file = path.join(dir, secret);
        fs.writeFileSync(file, "pw\n");
        return [k, file];
      }),
    );

  it("needs nothing from .env that .env.example does not name", () => {
    expect(() => interpolate(raw, {})).toThrow(/API_TOKEN/);
    const used = [...raw.matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!);
    const named = new Set([...read(".env.example").matchAll(/^#? ?([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    expect(used.filter((v) => !named.has(v))).toEqual([]);
  });

  it("runs every role, each with an environment the config reader accepts, all documented", () => {
    expect(sluice.map(([name]) => name).sort()).toEqual([...ROLES].sort());
    const documented = documentedVariables();
    for (const [name, s] of sluice) {
      const config = loadConfig(environment(s));
      expect(config.roles).toEqual([name]);
      expect(new URL(config.databaseUrl!).password).toBe("pw");
      expect(Object.keys(s.environment).filter((n) => !documented.has(n))).toEqual([]);
    }
  });

  it("holds no password: Postgres and Sluice read theirs from a Docker secret, the API token comes from .env", () => {
    for (const [, s] of Object.entries(compose.services)) {
      for (const [k, v] of Object.entries((s.environment ?? {}) as Record<string, string>)) {
        expect(/PASSWORD$/.test(k)).toBe(false);
        if (/^[a-z]+:\/\//.test(v)) expect(new URL(v).password).toBe("");
      }
    }
    expect(compose.services.postgres.environment.POSTGRES_PASSWORD_FILE).toBe("/run/secrets/postgres_password");
    const file = compose.secrets.postgres_password.file as string;
    expect(raw).toMatch(/API_TOKEN: \$\{API_TOKEN:\?/);
    for (const [name, s] of sluice) expect([name, s.environment.API_TOKEN !== undefined]).toEqual([name, name === "api"]);
    // The secret and the .env stay out of git and out of the image.
    const ignored = (list: string) => list.split("\n").map((l) => l.trim().replace(/\/$/, ""));
    for (const p of [".env", path.dirname(file).replace(/^\.\//, "")]) {
      expect(ignored(read(".gitignore"))).toContain(p);
      expect(ignored(read(".dockerignore"))).toContain(p);
    }
  });

  it("publishes ports on the loopback interface only", () => {
    const ports = Object.values(compose.services).flatMap((s) => (s.ports ?? []) as string[]);
    expect(ports.length).toBeGreaterThan(0);
    for (const p of ports) expect(p).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
  });

  it("runs no container as root: the servers as their images' own users, Sluice as the image's node user", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.build) continue;
      expect([name, typeof s.user === "string" && !["root", "0"].includes(s.user.split(":")[0])]).toEqual([name, true]);
    }
    const users = [...read("Dockerfile").matchAll(/^USER (\S+)/gm)].map((m) => m[1]);
    expect(users.at(-1)).toBe("node");
  });

  it("sets CRAWL_ALLOW_HOSTS on every role that checks a target, and says so", () => {
    for (const role of ["api", "crawler", "ingestor"]) expect(compose.services[role].environment).toHaveProperty("CRAWL_ALLOW_HOSTS");
    expect(raw).toMatch(/the api checks each crawl and import target/);
    const section = read("README.md").split("### Docker Compose and Kubernetes")[1]!.split("\n## ")[0]!;
    expect(section).toMatch(/CRAWL_ALLOW_HOSTS/);
  });

  it("starts Sluice only after the servers it depends on pass their health checks; every container has one", () => {
    for (const [, s] of sluice) {
      expect(Object.keys(s.depends_on).sort()).toEqual(["nats", "postgres", "redis"]);
      for (const [dep, cond] of Object.entries(s.depends_on)) {
        expect(cond).toEqual({ condition: "service_healthy" });
        expect(compose.services[dep].healthcheck.test).toBeDefined();
      }
    }
    for (const s of Object.values(compose.services)) expect(s.healthcheck.test).toBeDefined();
    // JetStream is on: the durable channels need it.
    expect(compose.services.nats.command).toContain("-js");
  });

  it("gives a stopping container as long as a Kubernetes worker pod", () => {
    for (const [, s] of sluice) expect(s.stop_grace_period).toBe(`${STOP_SECONDS}s`);
  });
});

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");

  it("starts from the Node major every production dependency needs", () => {
    const major = Number(/^FROM node:(\d+)-/m.exec(dockerfile)![1]);
    // moleculer 0.15, moleculer-web, moleculer-db and moleculer-repl say node >= 22.
    expect(requiredNodeMajor()).toBe(22);
    expect(major).toBeGreaterThanOrEqual(requiredNodeMajor());
  });

  it("runs bin/sluice.ts with tsx, which the production install (no dev dependencies) keeps", () => {
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/CMD \["node", "--import", "tsx", "bin\/sluice.ts"\]/);
    const pkg = JSON.parse(read("package.json"));
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(pkg.scripts["compose:check"]).toBe("tsx bin/compose-check.ts");
  });
});
