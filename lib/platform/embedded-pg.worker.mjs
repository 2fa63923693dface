// Runs PGlite (Postgres compiled to WASM) and its wire-protocol socket server off the main
// thread: PGlite executes queries synchronously, so on the main thread one slow query would
// stall the broker, the HTTP gateway and every timer (STACK.md measured a 1.3 s stall).
// Plain JS so that it loads the same way under tsx, ts-jest and node.
import { parentPort, workerData } from "node:worker_threads";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { dataDir, maxConnections, initOnly } = workerData;
// 32 MB of shared buffers instead of Postgres' 128 MB: WASM memory never shrinks, and the
// embedded mode is for one process on a laptop, not for a large working set.
const db = await PGlite.create(dataDir, { postgresqlconf: ["shared_buffers=32MB"] });
if (initOnly) {
  // A new data directory: initdb ran above, in this thread's memory, which goes when it exits.
  await db.close();
  parentPort.postMessage({ initialized: true });
  process.exit(0);
}
const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections });
await server.start();
const port = Number(server.getServerConn().split(":").pop());

// The fields of a Postgres ErrorResponse as PGlite's DatabaseError carries them. Structured
// cloning keeps only an Error's message and stack, so they cross to the main thread as a plain
// object. `line` is the line of Postgres' C source; the line of the data is in `where`.
const ERROR_FIELDS = [
  "severity",
  "code",
  "detail",
  "hint",
  "position",
  "internalPosition",
  "internalQuery",
  "where",
  "schema",
  "table",
  "column",
  "dataType",
  "constraint",
  "file",
  "line",
  "routine",
];

function errorReply(err) {
  const fields = {};
  for (const name of ERROR_FIELDS) if (typeof err?.[name] === "string") fields[name] = err[name];
  return { message: err instanceof Error ? err.message : String(err), fields };
}

// COPY FROM '/dev/blob' runs in PGlite's one Postgres session, the same session the socket's
// client uses: so it is part of whatever transaction that client has open. COPY FROM STDIN
// through the socket loses protocol synchronization, which is why bulk loads come this way.
async function copyFromBlob({ id, sql, data }) {
  try {
    const result = await db.query(sql, [], { blob: new Blob([data]) });
    parentPort.postMessage({ id, rows: result.rowCount ?? result.affectedRows ?? 0 });
  } catch (err) {
    parentPort.postMessage({ id, error: errorReply(err) });
  }
}

parentPort.on("message", async (msg) => {
  if (msg?.type === "copyFromBlob") return copyFromBlob(msg);
  if (msg !== "stop") return;
  await server.stop();
  // close() waits for the queries in flight, copies included.
  await db.close();
  parentPort.postMessage({ stopped: true });
});
parentPort.postMessage({ port });
