// Loading data for a view, and reloading it when live events say it changed.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { subscribe } from "./sse.js";

/**
 * Runs load() when deps change; { data, error, loading, reload }. Answers that arrive after a
 * newer load started are dropped; a reload keeps the data on screen while it runs.
 */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const seq = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = useCallback(() => {
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    loadRef.current().then(
      (data) => mine === seq.current && setState({ data, error: null, loading: false }),
      (error) => mine === seq.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
  }, []);
  useEffect(reload, deps);
  return { ...state, reload };
}

/** fn, called at most once per waitMs however often it is asked (the last ask always runs). */
export function useThrottled(fn, waitMs) {
  const ref = useRef(fn);
  ref.current = fn;
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      ref.current();
    }, waitMs);
  }, [waitMs]);
}

/**
 * Reloads when one of the named events arrives and matches(data) (default: any), at most about
 * every waitMs; and whenever the event stream (re)connects, since events may have been missed.
 */
export function useReloadOn(names, reload, matches = () => true, waitMs = 300) {
  const matchRef = useRef(matches);
  matchRef.current = matches;
  const later = useThrottled(reload, waitMs);
  const key = ["open", ...[].concat(names)].join(" ");
  useEffect(() => {
    const offs = key.split(" ").map((n) => subscribe(n, (d) => (n === "open" || matchRef.current(d, n)) && later()));
    return () => offs.forEach((off) => off());
  }, [key, later]);
}
