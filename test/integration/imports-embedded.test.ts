// Imports and the insert job on the embedded default (one process, PGlite): PGlite's socket
// carries no COPY FROM STDIN, so the rows go to its COPY from a blob, a few MiB per statement,
// inside the job's transaction. A file larger than one blob still lands whole, and a bad line
// near its end is named by its line in the file, not in its blob.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Sluice } from "../../runtime";
import { waitUntilFinished } from "../../fixtures/api-client";
import { http, startEmbedded } from "../support/env";

const ROWS = 200_000; // about 5 MiB: more than one blob

function rows(n: number): string {
  let s = "";
  for (let i = 1; i <= n; i++) s += `name-${i},${i}\n`;
  return s;
}

describe("imports on the embedded PGlite", () => {
  let sluice: Sluice;
  let api = "";
  const count = async () => (await http(api, "GET", "/api/rows/count")).body.count as number;
  const upload = async (body: string, query = "table=rows&header=false&columns=name,value", type = "text/csv") => {
    const res = await fetch(`${api}/api/imports?${query}`, { method: "POST", headers: { "content-type": type }, body });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    sluice = await startEmbedded({ JOB_HEARTBEAT_MS: "200" });
    api = sluice.apiUrl!;
  }, 60_000);
  afterAll(() => sluice?.stop());

  it("a CSV larger than one blob lands whole", async () => {
    const res = await upload(rows(ROWS));
    expect(res).toMatchObject({ status: 202, body: { rows: ROWS } });
    expect(await waitUntilFinished(api, `/api/imports/${res.body.id}`, 120_000, "the import")).toMatchObject({
      status: "succeeded",
      result: { rows: ROWS },
    });
    expect(await count()).toBe(ROWS);
  }, 150_000);

  it("a bad value past the first blob is named by its line in the file, and nothing lands", async () => {
    const before = await count();
    const res = await upload(rows(ROWS - 10) + "bad,notanumber\n" + rows(9));
    expect(res.status).toBe(422);
    expect(res.body.error.details).toMatchObject({ field: "body", line: ROWS - 9, column: "value" });
    expect(await count()).toBe(before);
  }, 120_000);

  it("NDJSON and the random-row insert job go through the same COPY", async () => {
    const before = await count();
    const nd = await upload('{"name":"a","value":1}\n{"name":"b","value":2}\n', "table=rows", "application/x-ndjson");
    expect(nd.status).toBe(202);
    expect(await waitUntilFinished(api, `/api/imports/${nd.body.id}`, 60_000, "the import")).toMatchObject({ status: "succeeded" });
    const job = await http(api, "POST", "/api/inserts", { rows: 30_000 });
    expect(await waitUntilFinished(api, `/api/jobs/${job.body.id}`, 60_000, "the insert")).toMatchObject({
      status: "succeeded",
      progress: { done: 30_000, total: 30_000 },
    });
    expect(await count()).toBe(before + 30_002);
  }, 120_000);

  it("a URL import reads the file and lands it (its catalog read on the job's own connection, PGlite's only one)", async () => {
    const before = await count();
    const server = createServer((_req, res) => res.writeHead(200, { "content-type": "text/csv" }).end("name,value\nfrom-url,7\n"));
    await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
    try {
      const { port } = server.address() as AddressInfo;
      const created = await http(api, "POST", "/api/imports", { url: `http://127.0.0.1:${port}/rows.csv`, table: "rows" });
      expect(created.status).toBe(202);
      expect(await waitUntilFinished(api, `/api/imports/${created.body.id}`, 60_000, "the URL import")).toMatchObject({
        status: "succeeded",
        result: { rows: 1 },
      });
      expect(await count()).toBe(before + 1);
    } finally {
      server.close();
    }
  }, 90_000);
});
