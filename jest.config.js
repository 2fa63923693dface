/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  transform: { "^.+\\.ts$": "ts-jest" },
  testMatch: ["<rootDir>/test/**/*.test.ts"],
  testTimeout: 60000,
  // One file at a time: the e2e suites share the machine's Postgres, NATS and Redis, and one of
  // them restarts Redis.
  maxWorkers: 1,
};
