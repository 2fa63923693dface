// The API client. Every call sends the tab's token (kept in sessionStorage only); a refusal becomes
// an ApiError carrying the server's { error: { code, message, details } }. A 401 asks for a token,
// a 403 on a write marks the token read-only.
const TOKEN_KEY = "sluice.token";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// The console's session: whether the server wants a (better) token, and what ours may do.
// role: "unknown" until GET /api/whoami answers, then "writer" or "reader" (its canWrite).
export const session = { needToken: false, authError: null, role: "unknown", roleError: null };
const listeners = new Set();

export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function setSession(patch) {
  Object.assign(session, patch);
  for (const fn of listeners) fn({ ...session });
}

export const token = () => sessionStorage.getItem(TOKEN_KEY);

export function keepToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  setSession({ needToken: false, authError: null, role: "unknown", roleError: null });
  void detectRole();
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  setSession({ role: "unknown", roleError: null });
  void detectRole();
}

const compact = (query) => Object.entries(query ?? {}).filter(([, v]) => v !== undefined && v !== null && v !== "");

export function withQuery(path, query) {
  const qs = new URLSearchParams(compact(query)).toString();
  return qs ? `${path}?${qs}` : path;
}

export function authHeaders() {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

// Reads in flight, and resources being deleted: a read that raced a DELETE would answer 404
// (correct, but an error the operator did not cause), so remove() lets them settle first and
// answers later reads of the deleted resource with nothing (the view is about to go).
const reading = new Map();
const deleting = new Set();
const under = (path, prefix) => path === prefix || path.startsWith(`${prefix}/`);

export async function api(method, path, { query, body } = {}) {
  if (method !== "GET") return request(method, path, { query, body });
  if ([...deleting].some((prefix) => under(path, prefix))) return new Promise(() => {});
  const pending = request(method, path, { query });
  reading.set(pending, path);
  return pending.finally(() => reading.delete(pending));
}

/** DELETE path, once no read of path or below it is in flight; then such reads are not sent. */
export async function remove(path, query) {
  deleting.add(path);
  try {
    await Promise.allSettled([...reading].filter(([, p]) => under(p, path)).map(([pending]) => pending));
    return await request("DELETE", path, { query });
  } catch (err) {
    deleting.delete(path);
    throw err;
  }
}

async function request(method, path, { query, body } = {}) {
  const headers = { accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(withQuery(path, query), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): the text is the message.
  }
  if (res.ok) return json;
  const e = json?.error ?? { code: `HTTP_${res.status}`, message: text.slice(0, 200) || res.statusText };
  const err = new ApiError(res.status, e.code, e.message, e.details);
  if (res.status === 401) setSession({ needToken: true, authError: `${err.code}: ${err.message}` });
  if (res.status === 403 && method !== "GET") setSession({ role: "reader" });
  throw err;
}

export const get = (path, query) => api("GET", path, { query });

/** What this token may do: GET /api/whoami (a 401 asks for a token, see api()). */
export async function detectRole() {
  try {
    const who = await get("/api/whoami");
    setSession({ role: who.canWrite ? "writer" : "reader" });
  } catch (err) {
    // 401: the token prompt shows. Anything else: the writes stay hidden, and the reason shows.
    if (!(err instanceof ApiError && err.status === 401)) setSession({ roleError: err });
  }
}
