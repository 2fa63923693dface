import { shareOf } from "../../lib/throttle/budget";

describe("shareOf", () => {
  it("splits the budget so that the shares of any membership add up to at most the budget", () => {
    for (let budget = 1; budget <= 12; budget++) {
      for (let n = 1; n <= 8; n++) {
        const nodes = Array.from({ length: n }, (_, i) => `node-${i}`);
        const shares = nodes.map((me) => shareOf(budget, nodes, me));
        expect(shares.reduce((a, b) => a + b, 0)).toBe(budget);
        expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
      }
    }
  });

  it("counts the asking node even if the membership list has not caught up", () => {
    expect(shareOf(6, [], "a")).toBe(6);
    expect(shareOf(6, ["b"], "a")).toBe(3);
    expect(shareOf(6, ["a", "b", "c", "d"], "a")).toBe(2);
    expect(shareOf(6, ["a", "b", "c", "d"], "d")).toBe(1);
    expect(shareOf(3, ["a", "b", "c", "d"], "d")).toBe(0);
  });
});
