// Throttle slots as leases, on real Redis: a holder that stops renewing gives its slots back,
// a checked resource (database connections) only after the check, and a renewal repairs what
// Redis lost or never heard. A "dead" holder is a lease granted through the store that nobody
// renews, as a SIGKILLed process leaves it (the e2e suite kills real processes).
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import IORedis from "ioredis";
import { LEASE_SCRIPTS, LeaseStore, LUA_DIR } from "../../lib/throttle/lease-store";
import { describeWithServers, waitFor } from "../support/env";
import { LimiterHub, type LimitSpec } from "../../lib/throttle";

const REDIS_URL = process.env.REDIS_URL!;
const LEASE_MS = 1_000;
const quiet = { warn: () => {}, info: () => {} };

describe("lease scripts", () => {
  // A changed script is a changed protocol between nodes of different versions: say so in review.
  it.each([
    ["acquire-leases-4", "e7d8d69d562a1b0c7bbecfe825a5aaa59b6cf564"],
    ["renew-leases-2", "467216a8915b24411c482ff7094103ca0819e5a0"],
    ["release-leases-2", "20f7fc1667473abb3d801a7e5191ec40821a6598"],
    ["reclaim-leases-3", "17f266c98ba258e019df904205e2a44267ac8b06"],
  ])("%s.lua is pinned", (name, sha) => {
    const actual = crypto
      .createHash("sha1")
      .update(fs.readFileSync(path.join(LUA_DIR, `${name}.lua`)))
      .digest("hex");
    expect(LEASE_SCRIPTS).toContain(name);
    expect(actual).toBe(sha);
  });
});

describeWithServers(["REDIS_URL"], "leases on Redis", () => {
  const prefix = `sluice:lease${process.pid}${Math.random().toString(36).slice(2, 6)}:`;
  let redis: IORedis;
  let store: LeaseStore;
  const hubs: LimiterHub[] = [];
  const hub = async (holder: string) => {
    const h = new LimiterHub(REDIS_URL, prefix, () => 2, quiet, { holder, leaseMs: LEASE_MS });
    hubs.push(h);
    await h.ready();
    return h;
  };
  /** Leases granted to `holder`, which then never renews: a process killed while holding them. */
  const dead = async (resource: string, holder: string, n: number, limit: number) => {
    const members = Array.from({ length: n }, (_, i) => `${holder}#${i + 1}`);
    const { granted } = await store.acquire(resource, members, { leaseMs: LEASE_MS, limit, reclaimExpired: true });
    expect(granted).toBe(n);
  };
  const count = async (resource: string) => (await store.snapshot(resource)).leases.length;

  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
    store = new LeaseStore(redis, prefix);
  });
  afterAll(async () => {
    await Promise.all(hubs.map((h) => h.stop()));
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it("grants no more than the limit, and a slot freed on one node wakes a waiter on another", async () => {
    const [a, b] = [await hub("sluice:a:000001"), await hub("sluice:b:000001")];
    const spec: LimitSpec = { maxConcurrent: 2, rate: null };
    const held = [await a.hold("plain", spec), await b.hold("plain", spec)];
    let third = false;
    const pending = a.hold("plain", spec).then((r) => ((third = true), r));
    await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
    // Renewed all along: still held, so the third waits.
    expect(third).toBe(false);
    expect(await count("plain")).toBe(2);
    const freedAt = Date.now();
    held[1]!();
    (await pending)();
    // The pub/sub message, not the poll, woke it.
    expect(Date.now() - freedAt).toBeLessThan(400);
    held[0]!();
    await waitFor(async () => ((await count("plain")) === 0 ? true : undefined), 5_000, "every slot released");
  });

  it("returns the slots of a holder that stopped renewing, within the lease and one sweep", async () => {
    const a = await hub("sluice:a:000002");
    await dead("fetch:x", "sluice:dead:000002", 3, 3);
    const asked = Date.now();
    const release = await a.hold("fetch:x", { maxConcurrent: 3, rate: null });
    const waitedMs = Date.now() - asked;
    expect(waitedMs).toBeLessThan(LEASE_MS * 1.25 + 1_000);
    release();
    const snap = await store.snapshot("fetch:x");
    expect(snap.reclaimed).toBe(3);
    expect(a.stats().find((s) => s.resource === "fetch:x")!.reclaimed).toBe(3);
  });

  it("returns slots nobody waits for too (the sweep), so the cluster's count is right", async () => {
    const a = await hub("sluice:a:000003");
    a.limiter("idle", { maxConcurrent: 2, rate: null });
    await dead("idle", "sluice:dead:000003", 2, 2);
    await waitFor(async () => ((await count("idle")) === 0 ? true : undefined), LEASE_MS * 3, "the sweep to return them");
  });

  it("a checked resource returns a dead holder's slots only once the check says its connections are gone", async () => {
    let connectionsOpen = true;
    const checks: string[][] = [];
    const spec: LimitSpec = {
      maxConcurrent: 2,
      rate: null,
      checked: {
        absent: () => false,
        gone: async (holders) => (checks.push(holders), connectionsOpen ? [] : holders),
      },
    };
    const a = await hub("sluice:a:000004");
    const mine = await a.hold("conn4", spec);
    await dead("conn4", "sluice:dead:000004", 1, 2);
    let granted = false;
    const pending = a.hold("conn4", spec).then((r) => ((granted = true), r));
    await waitFor(() => (checks.length >= 3 ? true : undefined), LEASE_MS * 6, "three checks");
    expect(granted).toBe(false);
    expect(checks.every((c) => c.length === 1 && c[0] === "sluice:dead:000004")).toBe(true);
    expect((await store.snapshot("conn4")).reclaimed).toBe(0);
    connectionsOpen = false;
    (await pending)();
    mine();
    expect((await store.snapshot("conn4")).reclaimed).toBe(1);
  });

  it("when every slot is held by the dead, the check takes over one of them for a connection of its own", async () => {
    const checks: boolean[] = [];
    const spec: LimitSpec = {
      maxConcurrent: 2,
      rate: null,
      checked: { absent: (h) => h === "sluice:gone:000005", gone: async (holders, own) => (checks.push(own), holders) },
    };
    const a = await hub("sluice:a:000005");
    await dead("conn5", "sluice:gone:000005", 2, 2);
    const release = await a.hold("conn5", spec);
    // The first check ran on a slot taken over from the dead holder; then its slots came back.
    expect(checks[0]).toBe(true);
    // The check's own slot goes back a moment after its connection closed.
    const snap = await waitFor(
      async () => {
        const s = await store.snapshot("conn5");
        return s.leases.length === 1 ? s : undefined;
      },
      2_000,
      "the check's slot to go back",
    );
    expect(snap.leases.map((l) => l.holder)).toEqual(["sluice:a:000005"]);
    expect(snap.reclaimed).toBe(2);
    release();
  });

  it("a holder still in the cluster is checked through a pooled connection, never taken over", async () => {
    const checks: boolean[] = [];
    const spec: LimitSpec = {
      maxConcurrent: 2,
      rate: null,
      checked: { absent: () => false, gone: async (_h, own) => (checks.push(own), []) },
    };
    const a = await hub("sluice:a:000008");
    const mine = await a.hold("conn8", spec);
    await dead("conn8", "sluice:cut:000008", 1, 2);
    let granted = false;
    const pending = a.hold("conn8", spec).then((r) => ((granted = true), r));
    await waitFor(() => (checks.length >= 2 ? true : undefined), LEASE_MS * 4, "two checks");
    expect(checks.every((own) => own === false)).toBe(true);
    expect(granted).toBe(false);
    expect((await store.snapshot("conn8")).leases.map((l) => l.holder).sort()).toEqual(["sluice:a:000008", "sluice:cut:000008"]);
    await store.reclaim("conn8", "sluice:cut:000008");
    (await pending)();
    mine();
  });

  it("renewal counts again what Redis lost, and drops what was released while Redis could not hear it", async () => {
    const a = await hub("sluice:a:000006");
    const spec: LimitSpec = { maxConcurrent: 3, rate: null };
    const held = [await a.hold("lost", spec), await a.hold("lost", spec)];
    await redis.del(`${prefix}lease:lost`, `${prefix}lease:lost:since`);
    await waitFor(async () => ((await count("lost")) === 2 ? true : undefined), LEASE_MS, "the renewal to re-add both");
    // A release that never reached Redis leaves a member the holder no longer lists.
    await redis.zadd(`${prefix}lease:lost`, Date.now() + 60_000, "sluice:a:000006#999");
    await waitFor(async () => ((await count("lost")) === 2 ? true : undefined), LEASE_MS, "the renewal to drop it");
    for (const r of held) r();
  });

  it("a runtime limit change holds for every node, through the leases", async () => {
    const [a, b] = [await hub("sluice:a:000007"), await hub("sluice:b:000007")];
    const spec: LimitSpec = { maxConcurrent: 3, rate: null };
    await a.hold("changed", spec).then((r) => r());
    for (const h of [a, b]) await h.update("changed", { maxConcurrent: 1 });
    const one = await a.hold("changed", spec);
    let two = false;
    const next = b.hold("changed", spec).then((r) => ((two = true), r));
    await new Promise((r) => setTimeout(r, 300));
    expect(two).toBe(false);
    one();
    (await next)();
  });

  it("drops a per-host limiter left idle, and builds it again with the cluster's settings", async () => {
    const a = new LimiterHub(REDIS_URL, prefix, () => 1, quiet, { holder: "sluice:a:000009", leaseMs: LEASE_MS, idleLimiterMs: 200 });
    hubs.push(a);
    await a.ready();
    const spec: LimitSpec = { maxConcurrent: 3, rate: null };
    await a.limiter("fetch:idle.example", spec).schedule(async () => {});
    await a.limiter("db:connections", spec).schedule(async () => {});
    await a.update("fetch:idle.example", { maxConcurrent: 1 });
    await waitFor(() => (a.hasLimiter("fetch:idle.example") ? undefined : true), 5_000, "the idle per-host limiter to go");
    // Only per-host limiters are dropped.
    expect(a.hasLimiter("db:connections")).toBe(true);
    // Built again on demand: the limit changed at runtime still holds (from Redis).
    const one = await a.hold("fetch:idle.example", spec);
    let two = false;
    const next = a.hold("fetch:idle.example", spec).then((r) => ((two = true), r));
    await new Promise((r) => setTimeout(r, 300));
    expect(two).toBe(false);
    one();
    (await next)();
  });
});
