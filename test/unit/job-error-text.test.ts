import { jobErrorText } from "../../lib/platform/errors";

describe("jobErrorText", () => {
  it("adds Postgres's detail to the message, from pg or from Sequelize's parent", () => {
    const pgError = Object.assign(new Error('duplicate key value violates unique constraint "tags_pkey"'), {
      detail: "Key (name)=(red) already exists.",
    });
    expect(jobErrorText(pgError)).toBe('duplicate key value violates unique constraint "tags_pkey": Key (name)=(red) already exists.');
    const wrapped = Object.assign(new Error("violates check constraint"), { parent: { detail: "Failing row contains (1)." } });
    expect(jobErrorText(wrapped)).toBe("violates check constraint: Failing row contains (1).");
  });

  it("keeps a message without detail as it is, and clips a long detail", () => {
    expect(jobErrorText(new Error("connection reset"))).toBe("connection reset");
    expect(jobErrorText("not an error")).toBe("not an error");
    const long = jobErrorText(Object.assign(new Error("m"), { detail: "x".repeat(1000) }));
    expect(long).toBe(`m: ${"x".repeat(300)}…`);
  });
});
