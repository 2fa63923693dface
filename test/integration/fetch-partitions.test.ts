// The fetch history's month partitions (issue 13), with explicit dates: made ahead, strays in the
// default partition moved into their month, months past the retention dropped, and a query for
// a time range reading only its partitions. On PostgreSQL and on the embedded default (PGlite).
import { QueryTypes } from "sequelize";
import { fetchPartitions, maintainFetchPartitions, recordHistory, type FetchHistoryRecord } from "../../models/page-fetches";
import type { Sluice } from "../../runtime";
import { startOnStore } from "../support/env";

const fetchAt = (iso: string): FetchHistoryRecord => ({
  url: `http://site.test/${iso}`,
  crawlId: 1,
  outcome: "fetched",
  status: 200,
  bytes: 10,
  durationMs: 1,
  etag: null,
  lastModified: null,
  contentHash: null,
  fetchedAt: iso,
});

const modes: [string, boolean][] = [
  ["PostgreSQL", false],
  ["the embedded default (PGlite)", true],
];

describe.each(modes)("page_fetches partitions on %s", (_mode, embedded) => {
  let sluice: Sluice;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    // The crawler role alone: no api node, so no maintenance of its own runs on the real clock.
    ({ sluice, stop } = await startOnStore(embedded, { SERVICES: "crawler" }));
  });
  afterAll(() => stop?.());

  const sql = <T extends object>(query: string, bind: unknown[] = []) => sluice.db.query<T>(query, { bind, type: QueryTypes.SELECT });
  const placement = async () =>
    new Map(
      (await sql<{ at: Date; part: string }>(`SELECT fetched_at AS at, tableoid::regclass::text AS part FROM page_fetches`)).map((r) => [
        new Date(r.at).toISOString(),
        r.part,
      ]),
    );
  const names = async () => (await fetchPartitions(sluice.db)).map((p) => p.name);

  it("makes the months ahead, moving rows that waited in the default partition", async () => {
    expect(await names()).toEqual([]);
    await recordHistory(sluice.db, [fetchAt("2026-03-15T12:00:00.000Z")]);
    expect((await placement()).get("2026-03-15T12:00:00.000Z")).toBe("page_fetches_default");

    const made = await maintainFetchPartitions(sluice.db, new Date("2026-03-10T00:00:00Z"), 12);
    expect(made).toEqual({
      created: ["page_fetches_p202603", "page_fetches_p202604", "page_fetches_p202605", "page_fetches_p202606"],
      dropped: [],
    });
    expect((await placement()).get("2026-03-15T12:00:00.000Z")).toBe("page_fetches_p202603");
    // Once is enough: a second run changes nothing.
    expect(await maintainFetchPartitions(sluice.db, new Date("2026-03-20T00:00:00Z"), 12)).toEqual({ created: [], dropped: [] });
  });

  it("routes rows to their month, and a time range reads only its partitions", async () => {
    await recordHistory(sluice.db, ["2026-04-30T23:59:59.999Z", "2026-05-01T00:00:00.000Z", "2026-06-30T10:00:00.000Z"].map(fetchAt));
    const where = await placement();
    expect(where.get("2026-04-30T23:59:59.999Z")).toBe("page_fetches_p202604");
    expect(where.get("2026-05-01T00:00:00.000Z")).toBe("page_fetches_p202605");
    expect(where.get("2026-06-30T10:00:00.000Z")).toBe("page_fetches_p202606");

    const scanned = async (from: string, to: string) => {
      const [row] = await sql<{ "QUERY PLAN": unknown }>(
        `EXPLAIN (FORMAT JSON) SELECT * FROM page_fetches WHERE fetched_at >= '${from}' AND fetched_at < '${to}'`,
      );
      const relations = new Set<string>();
      const walk = (node: unknown): void => {
        if (node === null || typeof node !== "object") return;
        const rel = (node as Record<string, unknown>)["Relation Name"];
        if (typeof rel === "string") relations.add(rel);
        Object.values(node).forEach(walk);
      };
      const plan = row!["QUERY PLAN"];
      walk(typeof plan === "string" ? JSON.parse(plan) : plan);
      return [...relations].sort();
    };
    expect(await scanned("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z")).toEqual(["page_fetches_p202605"]);
    expect(await scanned("2026-04-15T00:00:00Z", "2026-05-15T00:00:00Z")).toEqual(["page_fetches_p202604", "page_fetches_p202605"]);
  });

  it("drops the months past the retention, and the default partition's old strays", async () => {
    await recordHistory(sluice.db, [fetchAt("2025-01-01T00:00:00.000Z")]);
    expect((await placement()).get("2025-01-01T00:00:00.000Z")).toBe("page_fetches_default");

    // 12 months before 2027-05-02 is 2026-05-02: March and April 2026 ended before it.
    const done = await maintainFetchPartitions(sluice.db, new Date("2027-05-02T00:00:00Z"), 12);
    expect(done).toEqual({
      created: ["page_fetches_p202705", "page_fetches_p202706", "page_fetches_p202707", "page_fetches_p202708"],
      dropped: ["page_fetches_p202603", "page_fetches_p202604"],
    });
    expect(await names()).toEqual([
      "page_fetches_p202605",
      "page_fetches_p202606",
      "page_fetches_p202705",
      "page_fetches_p202706",
      "page_fetches_p202707",
      "page_fetches_p202708",
    ]);
    expect([...(await placement()).keys()].sort()).toEqual(["2026-05-01T00:00:00.000Z", "2026-06-30T10:00:00.000Z"]);
  });
});
