// Hash routes: every view and item has its own URL (#/jobs/12, #/jobs?kind=crawl&q=example),
// served by the one static index.html.
import { useEffect, useState } from "preact/hooks";
import { withQuery } from "./api.js";

export function currentRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, qs = ""] = hash.split("?");
  return { path, parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: Object.fromEntries(new URLSearchParams(qs)) };
}

/** The href of a view: href("/jobs", { kind: "crawl" }) is "#/jobs?kind=crawl". */
export const href = (path, query) => `#${withQuery(path, query)}`;

/** Goes to a view; `replace` rewrites the current history entry (typing in a search box). */
export function navigate(path, query, { replace = false } = {}) {
  const url = href(path, query);
  if (replace) {
    history.replaceState(null, "", url);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = url;
  }
}

export function useRoute() {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}
