import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { Sequelize } from "sequelize";
import { loadConfig, DEFAULT_PORT, DEFAULT_CRAWL_HOST_CONCURRENCY } from "../../lib/platform/config";
import { ConfigError } from "../../lib/platform/errors";

describe("loadConfig", () => {
  it("defaults to the embedded mode with every service", () => {
    const c = loadConfig({});
    expect(c.transporter).toBeNull();
    expect(c.databaseUrl).toBeNull();
    expect(c.redisUrl).toBeNull();
    expect(c.roles).toEqual(["api", "crawler", "ingestor", "scheduler"]);
    expect(c.port).toBe(DEFAULT_PORT);
    expect(c.metricsPort).toBe(3030);
    expect(c.apiToken).toBeNull();
    expect(c.crawl.hostConcurrency).toBe(DEFAULT_CRAWL_HOST_CONCURRENCY);
    expect(c.crawl.hostRate).toBeNull();
    expect(c.crawl.allowHosts).toEqual([]);
    expect(c.nodeId).toMatch(/-\d+$/);
  });

  it("reads the distributed settings", () => {
    const c = loadConfig({
      TRANSPORTER: "nats://a:4222,nats://b:4222",
      DATABASE_URL: "postgres://u@db:5432/x",
      REDIS_URL: "redis://r:6379",
      SERVICES: "crawler, ingestor",
      NODE_ID: "n1",
      CRAWL_ALLOW_HOSTS: "127.0.0.1, Intranet.Local",
      CRAWL_HOST_RATE: "20/s",
      LOG_LEVEL: "debug",
    });
    expect(c.transporter).toEqual(["nats://a:4222", "nats://b:4222"]);
    expect(c.roles).toEqual(["crawler", "ingestor"]);
    expect(c.nodeId).toBe("n1");
    expect(c.crawl.allowHosts).toEqual([
      { host: "127.0.0.1", port: null },
      { host: "intranet.local", port: null },
    ]);
    expect(c.crawl.hostRate).toEqual({ count: 20, perMs: 1000 });
    expect(c.logLevel).toBe("debug");
  });

  it.each([
    ["TRANSPORTER", "redis://x:6379"],
    ["DATABASE_URL", "mysql://x/y"],
    ["DATABASE_URL", "not a url"],
    ["REDIS_URL", "http://x"],
    ["SERVICES", "api,scheduler-typo"],
    ["PORT", "70000"],
    ["PORT", "abc"],
    ["METRICS_PORT", "-1"],
    ["LOG_LEVEL", "loud"],
    ["LOG_FORMAT", "yaml"],
    ["CRAWL_HOST_RATE", "fast"],
    ["CRAWL_HOST_CONCURRENCY", "0"],
    ["CRAWL_MAX_BYTES", "10000000"],
    ["API_TOKEN", "short"],
    ["NAMESPACE", "has.dot"],
  ])("%s=%s fails at boot naming the variable", (name, value) => {
    let err: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe(name);
    expect((err as Error).message).toContain(name);
  });

  it("treats empty values as unset", () => {
    expect(loadConfig({ DATABASE_URL: "", PORT: " " }).databaseUrl).toBeNull();
  });

  it("LOG_FORMAT: text on a terminal, json anywhere else, unless set", () => {
    expect(loadConfig({}, true).logFormat).toBe("text");
    expect(loadConfig({}, false).logFormat).toBe("json");
    expect(loadConfig({ LOG_FORMAT: "text" }, false).logFormat).toBe("text");
    expect(loadConfig({ LOG_FORMAT: "json" }, true).logFormat).toBe("json");
    expect(() => loadConfig({ LOG_FORMAT: "JSON" })).toThrow('LOG_FORMAT: expected one of json, text, got "JSON"');
  });
});

describe("loadConfig: CRAWL_ALLOW_HOSTS", () => {
  const allow = (value: string) => loadConfig({ CRAWL_ALLOW_HOSTS: value }).crawl.allowHosts;

  it("reads hosts with and without a port; a bare host means every port (null)", () => {
    expect(allow("127.0.0.1:8080, [::1]:8080, Intranet.Local:8443, localhost")).toEqual([
      { host: "127.0.0.1", port: 8080 },
      { host: "[::1]", port: 8080 },
      { host: "intranet.local", port: 8443 },
      { host: "localhost", port: null },
    ]);
  });

  it("spells hosts as a URL does, so entries compare with URL hostnames", () => {
    expect(allow("::1, [0:0::1], fd00::1, 0x7f.1:80, bücher.de")).toEqual([
      { host: "[::1]", port: null },
      { host: "[::1]", port: null },
      { host: "[fd00::1]", port: null },
      { host: "127.0.0.1", port: 80 },
      { host: "xn--bcher-kva.de", port: null },
    ]);
  });

  it.each([
    "127.0.0.1:",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "127.0.0.1:80a",
    "intranet.local:80:81",
    ":8080",
    "[::1",
    "[::1]x",
    "[1.2.3.4]:80",
    "http://intranet.local",
    "intranet.local/path",
    "user@intranet.local",
    "*.intranet.local",
    "intra net",
  ])("a malformed entry (%s) fails at boot naming CRAWL_ALLOW_HOSTS", (entry) => {
    expect(() => allow(`localhost,${entry}`)).toThrow(
      new RegExp(`^CRAWL_ALLOW_HOSTS: .*"${entry.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"`),
    );
  });
});

describe("loadConfig: the scheduler's settings", () => {
  it("reads the minute, the upstream and its rate", () => {
    const c = loadConfig({ SCHEDULER_MINUTE_MS: "200", UPSTREAM_URL: "http://127.0.0.1:9/users/{id}", UPSTREAM_RATE: "5/s" });
    expect(c.scheduler).toMatchObject({
      minuteMs: 200,
      upstreamUrl: "http://127.0.0.1:9/users/{id}",
      upstreamRate: { count: 5, perMs: 1000 },
    });
    expect(loadConfig({ UPSTREAM_RATE: "auto" }).scheduler.upstreamRate).toBe("auto");
    expect(loadConfig({}).scheduler).toMatchObject({ minuteMs: 60_000, upstreamUrl: null, upstreamRate: null });
  });

  it.each([
    ["UPSTREAM_URL", "http://host/users/"],
    ["UPSTREAM_URL", "ftp://host/{id}"],
    ["UPSTREAM_RATE", "fast"],
    ["SCHEDULER_MINUTE_MS", "10"],
  ])("names %s when it is bad (%s)", (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(new RegExp(`^${variable}:`));
  });
});

describe("loadConfig: DATABASE_PASSWORD_FILE", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-config-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const secret = (name: string, content: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, content);
    return file;
  };
  const failure = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      return err as ConfigError;
    }
    throw new Error("loadConfig accepted it");
  };

  it("puts the file's password into DATABASE_URL, any character intact and the file's last newline dropped", () => {
    const password = "p@ss:w/rd%41 #?";
    const url = loadConfig({
      DATABASE_URL: "postgres://sluice@postgres:5432/sluice",
      DATABASE_PASSWORD_FILE: secret("pw", `${password}\n`),
    }).databaseUrl!;
    // As pg (the migration, the slot checks) and Sequelize (the pool) read it; neither connects here.
    const client = new pg.Client({ connectionString: url });
    expect([client.user, client.password, client.host, client.port, client.database]).toEqual([
      "sluice",
      password,
      "postgres",
      5432,
      "sluice",
    ]);
    const { username, password: poolPassword, host, database } = new Sequelize(url, { logging: false }).config;
    expect([username, poolPassword, host, database]).toEqual(["sluice", password, "postgres", "sluice"]);
  });

  it("leaves DATABASE_URL as it is when unset", () => {
    expect(loadConfig({ DATABASE_URL: "postgres://u:p@db/x" }).databaseUrl).toBe("postgres://u:p@db/x");
  });

  it.each([
    ["without DATABASE_URL", { DATABASE_PASSWORD_FILE: "/run/secrets/x" }, /needs DATABASE_URL/],
    ["with a password in DATABASE_URL too", { DATABASE_URL: "postgres://u:p@db/x", DATABASE_PASSWORD_FILE: "/x" }, /one place/],
    ["naming a file that is not there", { DATABASE_URL: "postgres://u@db/x", DATABASE_PASSWORD_FILE: "/nonexistent/pw" }, /ENOENT/],
  ])("fails at boot %s", (_, env, message) => {
    const err = failure(env);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.variable).toBe("DATABASE_PASSWORD_FILE");
    expect(err.message).toMatch(message);
  });

  it("fails at boot on an empty file", () => {
    expect(failure({ DATABASE_URL: "postgres://u@db/x", DATABASE_PASSWORD_FILE: secret("empty", "\n") }).message).toMatch(/is empty/);
  });
});
