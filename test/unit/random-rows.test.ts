import { batchSizes, randomRowBatch, randomRowsCopyText, ROW_NAME_LENGTH, ROW_VALUE_MAX } from "../../lib/loading/random-rows";

describe("batchSizes", () => {
  it.each([
    [10, 4, [4, 4, 2]],
    [8, 4, [4, 4]],
    [3, 5000, [3]],
    [1, 1, [1]],
  ])("splits %i rows in batches of %i", (total, batch, expected) => {
    expect([...batchSizes(total, batch)]).toEqual(expected);
  });

  it("is lazy: ten million rows are never held at once", () => {
    let sum = 0;
    let count = 0;
    for (const n of batchSizes(10_000_000, 5000)) {
      sum += n;
      count++;
    }
    expect(sum).toBe(10_000_000);
    expect(count).toBe(2000);
  });
});

describe("randomRowBatch", () => {
  it("makes n rows of a 12-letter name and a value below the maximum", () => {
    const b = randomRowBatch(500);
    expect(b.names).toHaveLength(500);
    expect(b.values).toHaveLength(500);
    for (const name of b.names) expect(name).toMatch(new RegExp(`^[a-z]{${ROW_NAME_LENGTH}}$`));
    for (const v of b.values) expect(Number.isInteger(v) && v >= 0 && v < ROW_VALUE_MAX).toBe(true);
  });

  it("is reproducible with the same random source", () => {
    const source = () => {
      let s = 7;
      return () => (s = (s * 48_271) % 2_147_483_647) / 2_147_483_647;
    };
    expect(randomRowBatch(20, source())).toEqual(randomRowBatch(20, source()));
  });
});

describe("randomRowsCopyText", () => {
  it("writes n lines of a 12-letter name, a tab and a value below the maximum", () => {
    const lines = randomRowsCopyText(2000).toString().split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(2000);
    for (const line of lines) {
      const [name, value, extra] = line.split("\t");
      expect(name).toMatch(new RegExp(`^[a-z]{${ROW_NAME_LENGTH}}$`));
      expect(String(Number(value))).toBe(value);
      expect(Number(value)).toBeLessThan(ROW_VALUE_MAX);
      expect(extra).toBeUndefined();
    }
  });

  it("writes the values a seeded generator gives, zero included", () => {
    // Twelve draws for the name (0: "a"), then one for the value.
    const draws = [0, 0.5, 0.999999].flatMap((v) => [...new Array<number>(12).fill(0), v]);
    const random = () => draws.shift()!;
    expect(randomRowsCopyText(3, random).toString()).toBe("aaaaaaaaaaaa\t0\naaaaaaaaaaaa\t500000\naaaaaaaaaaaa\t999999\n");
  });
});
