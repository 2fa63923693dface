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

parentPort.on("message", async (msg) => {
  if (msg !== "stop") return;
  await server.stop();
  await db.close();
  parentPort.postMessage({ stopped: true });
});
parentPort.postMessage({ port });
