// Live updates: GET /api/events read with fetch() (EventSource cannot send the token), parsed
// into named events and handed to subscribers. Reconnects with back-off; "open" is emitted on
// every (re)connection so views reload what they may have missed, "ping" on every keep-alive.
import { useEffect, useRef, useState } from "preact/hooks";
import { authHeaders, onSession } from "./api.js";

const MIN_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

const handlers = new Map();
const statusListeners = new Set();
let status = "connecting";
let controller = null;
let lastToken = null;

function emit(name, data) {
  for (const fn of handlers.get(name) ?? []) fn(data);
}

function setStatus(s) {
  status = s;
  for (const fn of statusListeners) fn(s);
}

/** Feeds text chunks; calls dispatch(event, data) for each complete event (the SSE wire format). */
export function sseParser(dispatch) {
  let buffer = "";
  let event = "message";
  let data = [];
  const line = (l) => {
    if (l === "") {
      if (data.length > 0) dispatch(event, data.join("\n"));
      event = "message";
      data = [];
    } else if (l.startsWith(":")) {
      dispatch("ping", null);
    } else {
      const colon = l.indexOf(":");
      const field = colon === -1 ? l : l.slice(0, colon);
      const value = colon === -1 ? "" : l.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
  };
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    lines.forEach(line);
  };
}

function dispatch(event, raw) {
  if (event === "ping") return emit("ping", null);
  let data = raw;
  try {
    data = JSON.parse(raw);
  } catch {
    // Plain text data is passed on as it is.
  }
  emit(event, data);
}

async function readOnce(signal) {
  const res = await fetch("/api/events", { headers: { accept: "text/event-stream", ...authHeaders() }, signal });
  if (res.status === 401) return "needs token";
  if (!res.ok || !res.body) return "reconnecting";
  setStatus("live");
  emit("open", null);
  const feed = sseParser(dispatch);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return "reconnecting";
    feed(value);
  }
}

const pause = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

async function run(signal) {
  let delay = MIN_DELAY_MS;
  while (!signal.aborted) {
    let next;
    try {
      next = await readOnce(signal);
    } catch {
      next = "reconnecting";
    }
    if (signal.aborted) return;
    // A token is needed: wait for one (a new session restarts the stream).
    if (next === "needs token") return setStatus(next);
    if (status === "live") delay = MIN_DELAY_MS;
    setStatus(next);
    await pause(delay, signal);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }
}

export function startEvents() {
  lastToken = authHeaders().authorization ?? "";
  controller?.abort();
  controller = new AbortController();
  setStatus("connecting");
  void run(controller.signal);
}

// A new token (or none) opens a new stream.
onSession(() => {
  const now = authHeaders().authorization ?? "";
  if (now !== lastToken) {
    lastToken = now;
    startEvents();
  }
});

export function subscribe(name, fn) {
  if (!handlers.has(name)) handlers.set(name, new Set());
  handlers.get(name).add(fn);
  return () => handlers.get(name).delete(fn);
}

/** Calls fn(data) on each of the named events while the component is mounted. */
export function useEvent(names, fn) {
  const ref = useRef(fn);
  ref.current = fn;
  const key = [].concat(names).join(" ");
  useEffect(() => {
    const offs = key.split(" ").map((n) => subscribe(n, (d) => ref.current(d, n)));
    return () => offs.forEach((off) => off());
  }, [key]);
}

export function useLiveStatus() {
  const [s, set] = useState(status);
  useEffect(() => {
    statusListeners.add(set);
    set(status); // it may have changed since the first render
    return () => statusListeners.delete(set);
  }, []);
  return s;
}
