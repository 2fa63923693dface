import fs from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";

const WORKER = path.join(__dirname, "embedded-pg.worker.mjs");

export interface EmbeddedPostgres {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts PGlite in a worker thread and serves it on an ephemeral loopback port, so `pg` and
 * sequelize talk to it exactly as they talk to a real server. `maxConnections` must cover the
 * process's pool: the socket server resets any client past it.
 */
export async function startEmbeddedPostgres(dataDir: string, maxConnections: number): Promise<EmbeddedPostgres> {
  fs.mkdirSync(dataDir, { recursive: true });
  const unlock = lockDataDir(dataDir);
  try {
    // initdb leaves about 500 MB in the WASM memory of the thread that ran it: a new data
    // directory is created by a worker of its own, which exits and takes that memory with it.
    if (!fs.existsSync(path.join(dataDir, "PG_VERSION"))) await initDataDir(dataDir);
  } catch (err) {
    unlock();
    throw err;
  }
  const worker = new Worker(WORKER, { workerData: { dataDir, maxConnections } });
  return new Promise((resolve, reject) => {
    const failedToStart = (err: unknown) => {
      unlock();
      reject(err instanceof Error ? err : new Error(`PGlite worker exited with code ${String(err)} before it was ready`));
    };
    worker.once("error", failedToStart);
    worker.once("exit", failedToStart);
    worker.once("message", (msg: { port: number }) => {
      worker.off("error", failedToStart);
      worker.off("exit", failedToStart);
      // After start, a crash of the database is fatal for this process: say so instead of
      // dying on an unhandled 'error' event.
      worker.on("error", (err) => {
        console.error("Embedded PGlite crashed", err);
        process.exitCode = 1;
      });
      resolve({
        url: `postgres://postgres@127.0.0.1:${msg.port}/postgres`,
        stop: async () => {
          await stopWorker(worker);
          unlock();
        },
      });
    });
  });
}

function initDataDir(dataDir: string): Promise<void> {
  const worker = new Worker(WORKER, { workerData: { dataDir, maxConnections: 1, initOnly: true } });
  return new Promise((resolve, reject) => {
    let initialized = false;
    worker.once("message", () => (initialized = true));
    worker.once("error", reject);
    worker.once("exit", (code) =>
      initialized ? resolve() : reject(new Error(`PGlite could not create ${dataDir} (worker exit code ${code})`)),
    );
  });
}

/**
 * PGlite takes no lock on its directory, and two processes writing one directory corrupt it.
 * A lock file with the owner's pid refuses the second; a stale one (its pid is gone) is taken over.
 */
function lockDataDir(dataDir: string): () => void {
  const lockFile = path.join(dataDir, "sluice.lock");
  for (;;) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: "wx" });
      return () => fs.rmSync(lockFile, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // The lock file exists: the error that matters is who holds it, not the EEXIST.
      const owner = Number(fs.readFileSync(lockFile, "utf8"));
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new Error(`${dataDir} is in use by process ${owner} (embedded PGlite allows one process per data directory; set DATA_DIR)`, {
          cause: err,
        });
      }
      fs.rmSync(lockFile, { force: true });
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function stopWorker(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    const done = () => resolve();
    worker.once("exit", done);
    worker.once("message", () => void worker.terminate());
    worker.postMessage("stop");
    // A wedged worker must not hold the process open.
    setTimeout(() => void worker.terminate(), 5000).unref();
  });
}
