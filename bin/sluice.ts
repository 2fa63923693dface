// `npm start`: the long-lived server (`--repl` opens the REPL on top of it).
import { loadConfig } from "../lib/platform/config";
import { ConfigError } from "../lib/platform/errors";
import { startSluice } from "../runtime";

async function main(): Promise<void> {
  const config = loadConfig();
  const sluice = await startSluice(config);
  const mode = config.transporter ? `distributed over ${config.transporter.join(",")}` : "embedded";
  // Through the logger, so that with LOG_FORMAT=json every line on stdout is JSON.
  const log = sluice.broker.getLogger("sluice");
  log.info(`Sluice ${mode}; node ${config.nodeId} runs ${config.roles.join(", ")}`);
  if (sluice.apiUrl) log.info(`API and dashboard: ${sluice.apiUrl.replace("127.0.0.1", "localhost")}/`);
  if (sluice.metricsUrl) log.info(`Prometheus metrics: ${sluice.metricsUrl}`);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    // npm and a process group can deliver one SIGTERM twice: the second must not cut the
    // shutdown short. A second Ctrl-C from a person still forces the exit.
    if (stopping) {
      if (signal === "SIGINT") process.exit(130);
      return;
    }
    stopping = true;
    // A signal handler cannot be awaited: the exit code comes from the stop's outcome.
    void sluice.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error("Shutdown failed", err);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  // repl() starts the prompt and returns; the prompt keeps the process alive until quit.
  if (process.argv.includes("--repl")) sluice.broker.repl();
}

main().catch((err: unknown) => {
  console.error(err instanceof ConfigError ? `Configuration error: ${err.message}` : err);
  process.exit(1);
});
