import { ValidationError } from "../../lib/platform/errors";
import { formatRate, minIntervalMs, parseRate, startSpacingMs } from "../../lib/throttle/rate";

describe("parseRate", () => {
  it.each([
    ["10/s", { count: 10, perMs: 1_000 }],
    ["100/m", { count: 100, perMs: 60_000 }],
    ["1000/h", { count: 1000, perMs: 3_600_000 }],
    ["0.5/s", { count: 0.5, perMs: 1_000 }],
    [".5/m", { count: 0.5, perMs: 60_000 }],
    ["10", { count: 10, perMs: 1_000 }],
    [" 20 / m ", { count: 20, perMs: 60_000 }],
  ])("parses %j", (text, expected) => {
    expect(parseRate(text)).toEqual(expected);
  });

  it.each(["abc", "10/x", "-1/s", "0/s", "0", "/s", "", "10/", "10/S", "1e3/s", "10/s/s", "Infinity/s", "NaN"])("rejects %j", (text) => {
    expect(() => parseRate(text)).toThrow(ValidationError);
  });

  it("names the variable and quotes the bad text with an example", () => {
    let err: unknown;
    try {
      parseRate("10/x", "FETCH_RATE");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).data).toMatchObject({ field: "FETCH_RATE" });
    expect((err as ValidationError).message).toContain('"10/x"');
    expect((err as ValidationError).message).toContain('"10/s"');
  });

  it("defaults the field name to rate", () => {
    expect(() => parseRate("abc")).toThrow(expect.objectContaining({ data: expect.objectContaining({ field: "rate" }) }));
  });
});

describe("formatRate", () => {
  it.each(["10/s", "100/m", "1000/h", "0.5/s"])("round-trips %s", (text) => {
    expect(formatRate(parseRate(text))).toBe(text);
  });

  it("formats a bare count as per second", () => {
    expect(formatRate(parseRate("7"))).toBe("7/s");
  });

  it("falls back to per second for an unusual window", () => {
    expect(formatRate({ count: 5, perMs: 500 })).toBe("10/s");
  });
});

describe("minIntervalMs", () => {
  it("spreads the window evenly over the count", () => {
    expect(minIntervalMs(parseRate("10/s"))).toBe(100);
    expect(minIntervalMs(parseRate("0.5/s"))).toBe(2_000);
    expect(minIntervalMs(parseRate("120/m"))).toBe(500);
    expect(minIntervalMs(parseRate("3600/h"))).toBe(1_000);
  });
});

describe("startSpacingMs", () => {
  it("spaces starts 10% wider than the rate, exactly (no floating-point remainder to round up)", () => {
    expect(startSpacingMs(parseRate("5/s"))).toBe(220);
    expect(startSpacingMs(parseRate("20/s"))).toBe(55);
    expect(startSpacingMs(parseRate("100/s"))).toBe(11);
    expect(startSpacingMs(parseRate("60/m"))).toBe(1_100);
  });
  it("keeps a probed rate exact", () => {
    expect(startSpacingMs(parseRate("5/s"), true)).toBe(200);
  });
});
