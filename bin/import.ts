// `npm run import -- <file> --table t`: streams a local CSV or NDJSON file to POST /api/imports
// and prints the upload's and the load's progress (lib/api/import-client.ts); exits 0 once the
// import succeeded, 1 with the reason otherwise.
import { parseArgs } from "node:util";
import { importOptionsOf, runImport } from "../lib/api/import-client";
import { loadConfig } from "../lib/platform/config";
import { ConfigError } from "../lib/platform/errors";

const USAGE = `usage: npm run import -- <file> --table <table> [options]

  <file>                 .csv or .ndjson/.jsonl, optionally .gz (sent as is, with Content-Encoding: gzip)
  --table <table>        the table to import into (one of the server's IMPORT_TABLES)
  --format csv|ndjson    default: from the file's extension
  --header true|false    CSV: whether the first line is a header (default true)
  --delimiter <char>     CSV: the field separator (default ,)
  --columns a,b,c        the file's columns, in order (CSV without a header), or the keys taken (NDJSON)
  --api <url>            default http://127.0.0.1:$PORT (PORT default 3000)
  --token <token>        default $API_TOKEN`;

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      table: { type: "string" },
      format: { type: "string" },
      header: { type: "string" },
      delimiter: { type: "string" },
      columns: { type: "string" },
      api: { type: "string" },
      token: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "name the file to import" : "name one file to import");
  const options = importOptionsOf(positionals[0]!, values, loadConfig());
  await runImport(options, process.stdout);
}

class UsageError extends Error {}

// exitCode rather than exit(): the last lines still reach a pipe before the process ends.
main(process.argv.slice(2)).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ConfigError) console.error(`Configuration error: ${message}`);
  else if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS"))
    console.error(`${message}\n\n${USAGE}`);
  else console.error(`import failed: ${message}`);
  process.exitCode = 1;
});
