// What Postgres itself says about Sluice's connections: the e2e suites' witness for the budget.
import pg from "pg";

const SAMPLE_EVERY_MS = 20;

export interface ConnectionSampler {
  /** The most Sluice connections seen at once so far. */
  readonly peak: number;
  readonly samples: number;
  stop(): Promise<{ peak: number; samples: number }>;
}

/** Counts Sluice's connections to `database` every 20 ms until stopped. */
export function sampleConnections(database: string): ConnectionSampler {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: "budget-sampler" });
  let peak = 0;
  let samples = 0;
  let running = true;
  const loop = (async () => {
    await client.connect();
    while (running) {
      const started = Date.now();
      const { rows } = await client.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'sluice:%'",
        [database],
      );
      peak = Math.max(peak, rows[0]!.n);
      samples++;
      await new Promise((r) => setTimeout(r, Math.max(0, SAMPLE_EVERY_MS - (Date.now() - started))));
    }
    await client.end();
  })();
  return {
    get peak() {
      return peak;
    },
    get samples() {
      return samples;
    },
    async stop() {
      running = false;
      await loop;
      return { peak, samples };
    },
  };
}

/** Sluice's connections to `database` now, per application_name (`sluice:<node>:<instance>`). */
export async function connectionsByName(database: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: "budget-witness" });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string; n: number }>(
      "SELECT application_name AS name, count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'sluice:%' GROUP BY 1",
      [database],
    );
    return new Map(rows.map((r) => [r.name, r.n]));
  } finally {
    await client.end();
  }
}
