// The limits' and queues' figures. While a console is connected the server sends them on the
// event stream every 2 s: throttle.stats (what GET /api/throttle answers) and queues.stats (what
// GET /api/queues answers). The last of each is kept for the tab's life, with a rolling window of
// samples for the overview's charts; nothing polls. A view asks the server itself only when it
// opens without fresh figures, or right after it changed one.
import { useEffect, useState } from "preact/hooks";
import { get } from "./api.js";
import { subscribe } from "./sse.js";
import { Series } from "./chart.js";

// Figures older than this (the stream is down) are asked for when a view opens.
const STALE_MS = 5_000;
const SOURCES = {
  throttle: { event: "throttle.stats", path: "/api/throttle" },
  queues: { event: "queues.stats", path: "/api/queues" },
};
const PER_SECOND = { s: 1, m: 1 / 60, h: 1 / 3600 };

/** "20/s" → 20, "100/m" → 1.67 (per second); none → null. */
export function ratePerSecond(rate) {
  const m = /^(\d+(?:\.\d+)?)\/(s|m|h)$/.exec(rate ?? "");
  return m ? Number(m[1]) * PER_SECOND[m[2]] : null;
}

/** Per limit (`limit:<resource>`: running, queued, rate per second) and per queue (`queue:<name>`: depth). */
export const samples = new Series();
const latest = { throttle: null, queues: null };
const listeners = new Set();

function record(kind, data, at = Date.now()) {
  latest[kind] = { data, at };
  if (kind === "throttle") {
    for (const r of data.resources)
      samples.add(`limit:${r.resource}`, { running: r.running, queued: r.queued, rate: ratePerSecond(r.rate) }, at);
  } else {
    for (const q of data.items) samples.add(`queue:${q.name}`, { depth: q.depth }, at);
  }
  for (const fn of listeners) fn(kind);
}

for (const [kind, { event }] of Object.entries(SOURCES)) subscribe(event, (data) => record(kind, data));

/** Asks the server for the figures now; an answer overtaken by the stream is dropped. */
export async function refresh(kind) {
  const before = latest[kind];
  const data = await get(SOURCES[kind].path);
  if (latest[kind] === before) record(kind, data);
  return latest[kind].data;
}

/** The last figures of `kind` ("throttle" or "queues"): { data, error }; re-renders as they arrive. */
export function useStats(kind) {
  const [, setTick] = useState(0);
  const [error, setError] = useState(null);
  useEffect(() => {
    const changed = (k) => k === kind && (setError(null), setTick((n) => n + 1));
    listeners.add(changed);
    if (!latest[kind] || latest[kind].at < Date.now() - STALE_MS) refresh(kind).catch(setError);
    return () => listeners.delete(changed);
  }, [kind]);
  return { data: latest[kind]?.data, error };
}
