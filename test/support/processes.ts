// Separate OS processes for what must hold across processes: each runs bin/sluice.ts with its
// own environment, over real NATS and Postgres.
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { connect } from "nats";

const ROOT = path.join(__dirname, "..", "..");

export interface NodeProcess {
  name: string;
  child: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function startNode(name: string, env: Record<string, string>, args: string[] = []): NodeProcess {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bin", "sluice.ts"), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", LOG_LEVEL: "warn", METRICS_PORT: "0", NODE_ID: name, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // A node that dies on its own (not killed by a test) would otherwise show only as a timeout.
  child.once("exit", (code, signal) => {
    if (code !== 0 && signal === null) console.error(`${name} exited with code ${code}:\n${out.slice(-4000)}`);
  });
  return {
    name,
    child,
    output: () => out,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A port for a child node to listen on. It is taken from below the kernel's ephemeral range
 * (32768-60999 here): a port from that range could be handed to some process's outgoing
 * connection between this check and the child's listen, and the child would fail to start.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export function uniqueNamespace(): string {
  return `t${process.pid}${Math.random().toString(36).slice(2, 7)}`;
}

/** Deletes the JetStream streams a test namespace created. */
export async function deleteStreams(natsUrl: string, namespace: string): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await nc.jetstreamManager();
    for await (const s of jsm.streams.list()) {
      if (s.config.name.startsWith(`${namespace}_`)) await jsm.streams.delete(s.config.name);
    }
  } finally {
    await nc.close();
  }
}
