// retryOnConflict on a real PostgreSQL: two transactions that lock two rows in opposite orders
// deadlock; Postgres ends one of them (40P01), which runs again and succeeds.
import { Sequelize } from "sequelize";
import { retryOnConflict } from "../../models/query";
import { createTestDatabase, describeWithServers } from "../support/env";
import type { ScratchDatabase } from "../../fixtures/scratch-db";

describeWithServers(["DATABASE_URL"], "retryOnConflict", () => {
  let scratch: ScratchDatabase;
  let db: Sequelize;

  beforeAll(async () => {
    scratch = await createTestDatabase();
    db = new Sequelize(scratch.url, { logging: false, pool: { max: 4 } });
    await db.query("CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)");
    await db.query("INSERT INTO pair VALUES (1, 0), (2, 0)");
  });
  afterAll(async () => {
    await db?.close();
    await scratch?.drop();
  });

  it("runs the transaction Postgres ended to break a deadlock again, and both commit", async () => {
    let runs = 0;
    // Each locks its first row, waits until the other has too, then asks for the other's row.
    let locked = 0;
    const bothLocked = () =>
      new Promise<void>((resolve) =>
        (function wait() {
          if (locked >= 2) resolve();
          else setTimeout(wait, 10);
        })(),
      );
    const crosswise = (first: number, second: number) =>
      retryOnConflict(() =>
        db.transaction(async (t) => {
          runs++;
          await db.query("UPDATE pair SET n = n + 1 WHERE id = $1", { bind: [first], transaction: t });
          locked++;
          await bothLocked();
          await db.query("UPDATE pair SET n = n + 1 WHERE id = $1", { bind: [second], transaction: t });
        }),
      );
    await Promise.all([crosswise(1, 2), crosswise(2, 1)]);
    // One of them ran twice: its first run was the deadlock's victim, rolled back.
    expect(runs).toBe(3);
    const [rows] = await db.query("SELECT id, n FROM pair ORDER BY id");
    expect(rows).toEqual([
      { id: 1, n: 2 },
      { id: 2, n: 2 },
    ]);
  }, 30_000);

  it("does not run again for any other failure", async () => {
    let runs = 0;
    await expect(
      retryOnConflict(async () => {
        runs++;
        await db.query("INSERT INTO pair VALUES (1, 0)");
      }),
    ).rejects.toThrow();
    expect(runs).toBe(1);
  });
});
