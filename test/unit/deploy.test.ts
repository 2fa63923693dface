// The deployment files, checked offline (no cluster, no Docker daemon here): every Kubernetes
// object against the API schemas and, because those allow unknown keys, against the models'
// TypeScript types, so a misspelled key fails; and both k8s/ and docker-compose.yml against the
// code: each pod's environment must pass the config reader, every variable must be documented,
// and the references between objects (selectors, HPA targets, probe ports) must resolve.
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { parseAllDocuments, parse } from "yaml";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { loadConfig, ROLES } from "../../lib/platform/config";

const ROOT = path.join(__dirname, "..", "..");
const K8S = path.join(ROOT, "k8s");

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
};

function readYaml(file: string): any[] {
  return parseAllDocuments(fs.readFileSync(file, "utf8"), { merge: true }).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS();
  });
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
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  return new Set([...readme.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!));
}

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("k8s/", () => {
  const kustomization = parse(fs.readFileSync(path.join(K8S, "kustomization.yaml"), "utf8")) as { resources: string[] };
  const objects: K8sObject[] = kustomization.resources.flatMap((f) => readYaml(path.join(K8S, f)));
  const ofKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const deployments = ofKind("Deployment");

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
    // The check itself catches one.
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

  it("gives each Deployment a PDB and an HPA that select it, and the Service reaches the api pods", () => {
    for (const d of deployments) {
      const labels = d.spec.template.metadata.labels;
      expect(ofKind("PodDisruptionBudget").filter((p) => matches(p.spec.selector.matchLabels, labels))).toHaveLength(1);
      const hpas = ofKind("HorizontalPodAutoscaler").filter(
        (h) => h.spec.scaleTargetRef.kind === "Deployment" && h.spec.scaleTargetRef.name === d.metadata.name,
      );
      expect(hpas).toHaveLength(1);
      expect(hpas[0]!.spec.metrics.some((m: any) => m.type === "Resource" && m.resource.name === "cpu")).toBe(true);
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
    const service = fs.readFileSync(path.join(ROOT, "services", "backlog.service.ts"), "utf8");
    expect(service).toMatch(/METRIC_BACKLOG = "sluice\.backlog"/);
    expect(service).toMatch(/crawlUrls: "crawl_urls", insertJobs: "insert_jobs"/);
    expect(lag("sluice-crawler")).toEqual(["sluice_backlog/crawl_urls"]);
    expect(lag("sluice-ingestor")).toEqual(["sluice_backlog/insert_jobs"]);
  });
});

describe("docker-compose.yml", () => {
  const compose = readYaml(path.join(ROOT, "docker-compose.yml"))[0] as { services: Record<string, any> };
  const sluice = Object.entries(compose.services).filter(([, s]) => s.build);

  it("runs every role, each with an environment the config reader accepts, all documented", () => {
    expect(sluice.map(([name]) => name).sort()).toEqual([...ROLES].sort());
    const documented = documentedVariables();
    for (const [name, s] of sluice) {
      expect(loadConfig(s.environment).roles).toEqual([name]);
      expect(Object.keys(s.environment).filter((n) => !documented.has(n))).toEqual([]);
    }
  });

  it("starts Sluice only after the servers it depends on pass their health checks", () => {
    for (const [, s] of sluice) {
      expect(Object.keys(s.depends_on).sort()).toEqual(["nats", "postgres", "redis"]);
      for (const [dep, cond] of Object.entries(s.depends_on)) {
        expect(cond).toEqual({ condition: "service_healthy" });
        expect(compose.services[dep].healthcheck.test).toBeDefined();
      }
    }
    // JetStream is on: the durable channels need it.
    expect(compose.services.nats.command).toContain("-js");
  });
});

describe("Dockerfile", () => {
  it("runs bin/sluice.ts with tsx, which the production install (no dev dependencies) keeps", () => {
    const dockerfile = fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/CMD \["node", "--import", "tsx", "bin\/sluice.ts"\]/);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
    expect(pkg.dependencies.tsx).toBeDefined();
  });
});
