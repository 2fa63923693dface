import fs from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";

const WORKER = path.join(__dirname, "embedded-pg.worker.mjs");

export interface EmbeddedPostgres {
  url: string;
  /**
   * Runs `COPY table (cols) FROM '/dev/blob' WITH (...)` in the worker, with `data` as the file
   * it reads, and answers the rows it loaded. This is the embedded mode's bulk load: COPY FROM
   * STDIN through the socket loses protocol synchronization.
   *
   * PGlite is one Postgres session, so the COPY is part of whatever transaction the socket's
   * client has open (test/integration/embedded-copy.test.ts): rolled back and committed with it,
   * and an error in it aborts that transaction. So call it while holding the pool's connection,
   * with none of that connection's queries in flight: it runs between the socket's protocol
   * messages, and in the middle of a client's extended query it would break that exchange.
   *
   * `data`'s ArrayBuffer moves to the worker when `data` spans all of it (the caller's view is
   * then empty); a view of part of a buffer is copied. A Postgres error rejects with an
   * {@link EmbeddedPgError}.
   */
  copyFromBlob(sql: string, data: Uint8Array): Promise<{ rows: number }>;
  stop(): Promise<void>;
}

/**
 * A Postgres error from the worker: Postgres' message, and the fields of its ErrorResponse as
 * PGlite reports them. For COPY, `where` names the data's line and column
 * (`COPY t, line 2, column n: "abc"`); `line` is the line of Postgres' C source.
 */
export interface EmbeddedPgError extends Error {
  severity?: string;
  code?: string;
  detail?: string;
  hint?: string;
  position?: string;
  internalPosition?: string;
  internalQuery?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  dataType?: string;
  constraint?: string;
  file?: string;
  line?: string;
  routine?: string;
}

type WorkerReply = { id: number; rows: number } | { id: number; error: { message: string; fields: Record<string, string> } };

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
      const calls = workerCalls(worker);
      resolve({
        url: `postgres://postgres@127.0.0.1:${msg.port}/postgres`,
        copyFromBlob: calls.copyFromBlob,
        stop: async () => {
          await stopWorker(worker);
          unlock();
        },
      });
    });
  });
}

/**
 * Requests to the running worker. Each carries an id that its reply repeats: several copies may
 * be in flight (the worker runs them one after another).
 */
function workerCalls(worker: Worker): Pick<EmbeddedPostgres, "copyFromBlob"> {
  let nextId = 1;
  let exited: Error | null = null;
  const pending = new Map<number, { resolve: (rows: number) => void; reject: (err: Error) => void }>();
  worker.on("message", (msg: WorkerReply | { stopped: true }) => {
    if (!("id" in msg)) return;
    const call = pending.get(msg.id);
    if (!call) return;
    pending.delete(msg.id);
    if ("error" in msg) {
      const err: EmbeddedPgError = Object.assign(new Error(msg.error.message), msg.error.fields);
      call.reject(err);
    } else call.resolve(msg.rows);
  });
  // A worker that is gone answers nothing: its callers must not wait forever.
  worker.once("exit", (code) => {
    exited = new Error(`PGlite worker exited with code ${code}`);
    for (const call of pending.values()) call.reject(exited);
    pending.clear();
  });
  return {
    copyFromBlob: (sql, data) =>
      new Promise((resolve, reject) => {
        if (exited) return reject(exited);
        const id = nextId++;
        pending.set(id, { resolve: (rows) => resolve({ rows }), reject });
        const post = (bytes: Uint8Array<ArrayBuffer>) => worker.postMessage({ type: "copyFromBlob", id, sql, data: bytes }, [bytes.buffer]);
        try {
          // A part of a larger buffer (Node's Buffer pool, say) or of shared memory is copied,
          // so the rest stays the caller's; a view of a whole buffer hands it over uncopied.
          if (!spansOwnBuffer(data)) post(data.slice());
          else {
            try {
              post(data);
            } catch {
              // Node 20 copies a buffer marked untransferable; later versions may refuse it.
              post(data.slice());
            }
          }
        } catch (err) {
          pending.delete(id);
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      }),
  };
}

/** A view of the whole of an ArrayBuffer (not a SharedArrayBuffer), which can be transferred. */
function spansOwnBuffer(data: Uint8Array): data is Uint8Array<ArrayBuffer> {
  return data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
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
    // Only the answer to "stop": a copy's reply may arrive first.
    worker.on("message", (msg: { stopped?: true }) => msg.stopped && void worker.terminate());
    worker.postMessage("stop");
    // A wedged worker must not hold the process open.
    setTimeout(() => void worker.terminate(), 5000).unref();
  });
}
