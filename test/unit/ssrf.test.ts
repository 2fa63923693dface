import { TargetNotAllowedError, ValidationError } from "../../lib/errors";
import { assertPublicTarget, guardedLookup, isAllowedHost, isPrivateAddress } from "../../lib/ssrf";

describe("isPrivateAddress", () => {
  it.each([
    "0.0.0.0",
    "0.255.1.2",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.8.9.10",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "[::1]",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "febf::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "0:0:0:0:0:ffff:7f00:1",
    "::FFFF:A9FE:A9FE",
    "::ffff:10.1.2.3",
  ])("%s is private", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each([
    "::127.0.0.1", // IPv4-compatible
    "::2",
    "::ffff:0:7f00:1", // IPv4-translated
    "64:ff9b::7f00:1", // NAT64
    "64:ff9b:1::a00:1",
    "2002:7f00:1::1", // 6to4
    "2001:0:4136:e378::1", // Teredo
    "fec0::1", // deprecated site-local
    "100::1", // discard prefix
  ])("%s (an IPv6 form that embeds or reaches IPv4, or is reserved) is refused", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "192.169.0.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "::ffff:101:101",
  ])("%s is public", (ip) => {
    expect(isPrivateAddress(ip)).toBe(false);
  });

  it.each(["", "example.com", "256.1.1.1", "1.2.3", "::g", "::ffff:999.1.1.1"])(
    "refuses invalid input %j",
    (ip) => {
      expect(isPrivateAddress(ip)).toBe(true);
    },
  );
});

describe("isAllowedHost", () => {
  it("matches case-insensitively and exactly", () => {
    expect(isAllowedHost("Intranet.Local", ["intranet.local"])).toBe(true);
    expect(isAllowedHost("intranet.local", ["INTRANET.LOCAL"])).toBe(true);
    expect(isAllowedHost("a.intranet.local", ["intranet.local"])).toBe(false);
    expect(isAllowedHost("intranet.local", [])).toBe(false);
  });

  it("ignores IPv6 brackets on either side", () => {
    expect(isAllowedHost("[::1]", ["::1"])).toBe(true);
    expect(isAllowedHost("[::1]", ["[::1]"])).toBe(true);
    expect(isAllowedHost("::1", ["[::1]"])).toBe(true);
    expect(isAllowedHost("[::2]", ["::1"])).toBe(false);
  });
});

describe("assertPublicTarget", () => {
  const resolving =
    (table: Record<string, string[]>) =>
    async (host: string): Promise<{ address: string }[]> => {
      const addrs = table[host];
      if (!addrs) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
      return addrs.map((address) => ({ address }));
    };

  it("passes when every address is public", async () => {
    const lookup = resolving({ "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"] });
    await expect(assertPublicTarget("https://example.com/x", [], lookup)).resolves.toBeUndefined();
  });

  it("refuses on the first private address among mixed results", async () => {
    const lookup = resolving({ "mixed.example": ["8.8.8.8", "10.0.0.5", "127.0.0.1"] });
    const err = await assertPublicTarget("http://mixed.example/", [], lookup).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetNotAllowedError);
    expect((err as TargetNotAllowedError).data).toEqual({ field: "url", host: "mixed.example", address: "10.0.0.5" });
  });

  it("skips all checks for an allow-listed host", async () => {
    const lookup = jest.fn(resolving({}));
    await expect(assertPublicTarget("http://Intranet.Local:8080/", ["intranet.local"], lookup)).resolves.toBeUndefined();
    await expect(assertPublicTarget("http://[::1]:3000/", ["::1"], lookup)).resolves.toBeUndefined();
    await expect(assertPublicTarget("http://127.0.0.1/", ["127.0.0.1"], lookup)).resolves.toBeUndefined();
    expect(lookup).not.toHaveBeenCalled();
  });

  it("refuses IP literals without a lookup", async () => {
    const lookup = jest.fn(resolving({}));
    await expect(assertPublicTarget("http://127.0.0.1:3000/", [], lookup)).rejects.toMatchObject({
      name: "TargetNotAllowedError",
      data: { host: "127.0.0.1", address: "127.0.0.1" },
    });
    await expect(assertPublicTarget("http://[::1]/", [], lookup)).rejects.toMatchObject({
      name: "TargetNotAllowedError",
      data: { host: "::1", address: "::1" },
    });
    await expect(assertPublicTarget("http://[::ffff:127.0.0.1]/", [], lookup)).rejects.toBeInstanceOf(
      TargetNotAllowedError,
    );
    // WHATWG URL turns the decimal form into 127.0.0.1 before we see it.
    await expect(assertPublicTarget("http://2130706433/", [], lookup)).rejects.toMatchObject({
      data: { address: "127.0.0.1" },
    });
    await expect(assertPublicTarget("http://8.8.8.8/", [], lookup)).resolves.toBeUndefined();
    expect(lookup).not.toHaveBeenCalled();
  });

  it("turns a DNS failure into a ValidationError on url", async () => {
    const err = await assertPublicTarget("https://nowhere.invalid/", [], resolving({})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toBe('cannot resolve host "nowhere.invalid"');
    expect((err as ValidationError).data).toMatchObject({ field: "url", host: "nowhere.invalid", code: "ENOTFOUND" });
  });

  it("treats an empty lookup result as unresolvable", async () => {
    await expect(assertPublicTarget("https://empty.example/", [], async () => [])).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  it("rejects an unparsable URL", async () => {
    await expect(assertPublicTarget("not a url", [], resolving({}))).rejects.toMatchObject({
      name: "ValidationError",
      data: { field: "url" },
    });
  });
});

describe("guardedLookup (connect-time check against DNS rebinding)", () => {
  const resolve = (allow: string[], host: string, all = false) =>
    new Promise<{ err: unknown; address: unknown }>((done) =>
      guardedLookup(allow)(host, { all }, (err, address) => done({ err, address })),
    );

  it("refuses a name that resolves to loopback unless the host is allowed", async () => {
    const refused = await resolve([], "localhost");
    expect(refused.err).toBeInstanceOf(TargetNotAllowedError);
    const allowed = await resolve(["localhost"], "localhost");
    expect(allowed.err).toBeNull();
    expect(String(allowed.address)).toMatch(/^(127\.0\.0\.1|::1)$/);
    const all = await resolve(["localhost"], "localhost", true);
    expect(Array.isArray(all.address)).toBe(true);
  });
});
