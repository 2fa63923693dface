// The embedded mode's bulk load: COPY ... FROM '/dev/blob' run by the PGlite worker (COPY FROM
// STDIN through the socket loses protocol synchronization). PGlite is one Postgres session, so
// the worker's COPY is part of the transaction the socket's client has open: these tests pin that
// down, and what a bad row looks like to the caller.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { startEmbeddedPostgres, type EmbeddedPgError, type EmbeddedPostgres } from "../../lib/platform/embedded-pg";

const COPY_CSV = "COPY t (n, s) FROM '/dev/blob' WITH (FORMAT csv)";
const csv = (...lines: string[]) => Buffer.from(lines.map((l) => `${l}\n`).join(""));

async function copyError(embedded: EmbeddedPostgres, sql: string, data: Uint8Array): Promise<EmbeddedPgError> {
  const err = await embedded.copyFromBlob(sql, data).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error(`COPY succeeded, expected an error: ${sql}`);
  return err;
}

// An Error's message is not enumerable: put it first, then the Postgres fields.
const shape = (err: EmbeddedPgError) => JSON.stringify(Object.assign({ message: err.message }, err));

describe("COPY FROM '/dev/blob' in the embedded PGlite worker", () => {
  // Not test/support/env's tempDir: that module loads the whole runtime, which this needs none of.
  const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-copy-"));
  let embedded: EmbeddedPostgres;
  let stopped = false;
  let client: pg.Client;
  const count = async () => (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM t")).rows[0]!.n;

  beforeAll(async () => {
    embedded = await startEmbeddedPostgres(path.join(dataRoot, "pglite"), 2);
    client = new pg.Client({ connectionString: embedded.url });
    await client.connect();
    await client.query("CREATE TABLE t (n int NOT NULL, s text)");
  });
  afterAll(async () => {
    if (!stopped) {
      await client?.end();
      await embedded?.stop();
    }
    fs.rmSync(dataRoot, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await client.query("TRUNCATE t");
  });

  it("outside a transaction commits on its own and answers the rows it loaded", async () => {
    expect(await embedded.copyFromBlob(COPY_CSV, csv("1,a", "2,b", '3,"c, with a comma"'))).toEqual({ rows: 3 });
    const { rows } = await client.query("SELECT n, s FROM t ORDER BY n");
    expect(rows).toEqual([
      { n: 1, s: "a" },
      { n: 2, s: "b" },
      { n: 3, s: "c, with a comma" },
    ]);
    // Nothing left open: the client is not in a transaction the COPY began.
    await client.query("ROLLBACK");
    expect(await count()).toBe(3);
  });

  it("joins the client's open transaction: ROLLBACK through the client drops the rows", async () => {
    await client.query("BEGIN");
    expect(await embedded.copyFromBlob(COPY_CSV, csv("1,a", "2,b"))).toEqual({ rows: 2 });
    expect(await count()).toBe(2);
    // Not just visible: the rows were written by the client's own transaction.
    const { rows } = await client.query<{ mine: number }>(
      "SELECT count(*) FILTER (WHERE xmin::text = pg_current_xact_id()::text)::int AS mine FROM t",
    );
    expect(rows[0]!.mine).toBe(2);
    await client.query("ROLLBACK");
    expect(await count()).toBe(0);
  });

  it("joins the client's open transaction: COMMIT through the client keeps the rows", async () => {
    await client.query("BEGIN");
    await client.query("INSERT INTO t VALUES (0, 'before')");
    expect(await embedded.copyFromBlob(COPY_CSV, csv("1,a", "2,b"))).toEqual({ rows: 2 });
    await client.query("INSERT INTO t VALUES (3, 'after')");
    await client.query("COMMIT");
    expect(await count()).toBe(4);
  });

  it("a bad value rejects with Postgres' message and fields, the line and column in `where`", async () => {
    const err = await copyError(embedded, COPY_CSV, csv("1,a", "abc,b", "3,c"));
    console.log("bad integer:", shape(err));
    expect(err.message).toBe('invalid input syntax for type integer: "abc"');
    expect(err.code).toBe("22P02");
    expect(err.severity).toBe("ERROR");
    expect(err.where).toBe('COPY t, line 2, column n: "abc"');
    // COPY is one statement: nothing of it stays.
    expect(await count()).toBe(0);
  });

  it("a constraint violation carries its table and column", async () => {
    const err = await copyError(embedded, COPY_CSV, csv("1,a", ",b"));
    console.log("not null:", shape(err));
    expect(err.code).toBe("23502");
    expect(err.table).toBe("t");
    expect(err.column).toBe("n");
    expect(err.where).toMatch(/^COPY t, line 2/);
  });

  it("an error aborts the client's transaction; ROLLBACK through the client recovers the session", async () => {
    await client.query("BEGIN");
    await client.query("INSERT INTO t VALUES (0, 'before')");
    expect(await embedded.copyFromBlob(COPY_CSV, csv("1,a"))).toEqual({ rows: 1 });
    const err = await copyError(embedded, COPY_CSV, csv("2,b", "abc,c"));
    expect(err.where).toBe('COPY t, line 2, column n: "abc"');
    await expect(client.query("SELECT 1")).rejects.toMatchObject({
      code: "25P02",
      message: "current transaction is aborted, commands ignored until end of transaction block",
    });
    // A COPY while the transaction is aborted is refused the same way.
    expect((await copyError(embedded, COPY_CSV, csv("5,e"))).code).toBe("25P02");
    await client.query("ROLLBACK");
    expect(await count()).toBe(0);
    // The session works again, for the client and for the worker.
    expect(await embedded.copyFromBlob(COPY_CSV, csv("1,a"))).toEqual({ rows: 1 });
    await client.query("BEGIN");
    await client.query("INSERT INTO t VALUES (2, 'b')");
    await client.query("COMMIT");
    expect(await count()).toBe(2);
  });

  it("invalid UTF-8 in a text column is an encoding error naming the line", async () => {
    const bytes = Buffer.concat([csv("1,a"), Buffer.from([0x32, 0x2c, 0xff, 0x0a])]);
    const err = await copyError(embedded, COPY_CSV, bytes);
    console.log("invalid UTF-8:", shape(err));
    expect(err.message).toBe('invalid byte sequence for encoding "UTF8": 0xff');
    expect(err.code).toBe("22021");
    expect(err.where).toBe("COPY t, line 2");
    expect(await count()).toBe(0);
  });

  it("answers each of several copies in flight with its own result", async () => {
    const results = await Promise.allSettled([
      embedded.copyFromBlob(COPY_CSV, csv("1,a", "2,b")),
      embedded.copyFromBlob(COPY_CSV, csv("3,c", "x,d")),
      embedded.copyFromBlob(COPY_CSV, csv("5,e", "6,f", "7,g")),
      embedded.copyFromBlob("COPY t (n) FROM '/dev/blob'", Buffer.from("8\n")),
    ]);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value.rows : (r.reason as EmbeddedPgError).where))).toEqual([
      2,
      'COPY t, line 2, column n: "x"',
      3,
      1,
    ]);
    expect(await count()).toBe(6);
  });

  it("moves a buffer it spans whole to the worker and copies a part of one", async () => {
    const whole = new Uint8Array(csv("1,a", "2,b"));
    expect(await embedded.copyFromBlob(COPY_CSV, whole)).toEqual({ rows: 2 });
    expect(whole.byteLength).toBe(0);
    const backing = csv("junk", "3,c", "junk");
    const part = backing.subarray(5, 9);
    expect(await embedded.copyFromBlob(COPY_CSV, part)).toEqual({ rows: 1 });
    expect(part.toString()).toBe("3,c\n");
    expect(await count()).toBe(3);
  });

  it("refuses a copy once the worker has stopped instead of waiting forever", async () => {
    await client.end();
    await embedded.stop();
    stopped = true;
    await expect(embedded.copyFromBlob(COPY_CSV, csv("1,a"))).rejects.toThrow(/PGlite worker exited/);
  });
});
