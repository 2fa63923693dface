// Whether a holder of slots counts as gone from the cluster: the reclaim takes a dead holder's
// slot for its Postgres check only then, so a holder must count as gone as soon as its
// heartbeats stop for heartbeatTimeout, not only once the registry's own periodic check drops it.
import type { ServiceBroker } from "moleculer";
import { holderAbsence } from "../../lib/platform/membership";

interface FakeNode {
  id: string;
  local: boolean;
  available: boolean;
  lastHeartbeatTime: number;
  metadata: { leaseHolder?: string };
}

const HEARTBEAT_TIMEOUT_S = 15;
const brokerWith = (nodes: FakeNode[]) =>
  ({ options: { heartbeatTimeout: HEARTBEAT_TIMEOUT_S }, registry: { nodes: { toArray: () => nodes } } }) as unknown as ServiceBroker;
const node = (id: string, silentForS: number, extra: Partial<FakeNode> = {}): FakeNode => ({
  id,
  local: false,
  available: true,
  lastHeartbeatTime: process.uptime() - silentForS,
  metadata: { leaseHolder: `holder-${id}` },
  ...extra,
});

describe("holderAbsence", () => {
  afterEach(() => jest.restoreAllMocks());
  const afterGrace = () => {
    const now = Date.now();
    jest.spyOn(Date, "now").mockReturnValue(now + 60_000);
  };

  it("counts a holder present while its node sends heartbeats, and gone once they stop for heartbeatTimeout", () => {
    const nodes = [node("a", 1), node("b", HEARTBEAT_TIMEOUT_S + 2), node("c", 3, { available: false })];
    const absent = holderAbsence(brokerWith(nodes), "holder-me");
    afterGrace();
    expect(["holder-a", "holder-b", "holder-c", "holder-unknown"].map(absent)).toEqual([false, true, true, true]);
  });

  it("never calls its own holder, or its own node, gone", () => {
    const nodes = [node("me", HEARTBEAT_TIMEOUT_S + 100, { local: true, metadata: { leaseHolder: "holder-local" } })];
    const absent = holderAbsence(brokerWith(nodes), "holder-me");
    afterGrace();
    expect([absent("holder-me"), absent("holder-local")]).toEqual([false, false]);
  });

  it("calls no one gone in its first seconds, before it can have heard every node", () => {
    const absent = holderAbsence(brokerWith([]), "holder-me");
    expect(absent("holder-anyone")).toBe(false);
  });
});
