// Jobs: a filterable, searchable, paginated list, kept current by jobs.updated events; a new
// insert job; retry of every failed job and deletion of finished ones, each confirmed first.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, get } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { useEvent } from "../sse.js";
import { href, navigate } from "../router.js";
import { CanWrite, ConfirmButton, ErrorText, fmtNum, fmtTime, Pager, Progress, SearchBox, Status } from "../ui.js";

export const JOB_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"];
export const JOB_KINDS = ["insert", "import", "crawl", "id-task"];
const FINISHED = ["succeeded", "failed", "cancelled"];
const SORTS = [
  ["-id", "newest first"],
  ["id", "oldest first"],
  ["-createdAt", "created, newest first"],
  ["createdAt", "created, oldest first"],
];
const LIMIT = 25;

function Select({ label, name, value, options, onChange }) {
  return html`<label
    >${label}
    <select name=${name} value=${value ?? ""} onChange=${(ev) => onChange(ev.currentTarget.value)}>
      ${options.map(([v, text]) => html`<option value=${v}>${text}</option>`)}
    </select></label
  >`;
}

function InsertForm() {
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    const rows = ev.currentTarget.elements.rows.value;
    setError(null);
    try {
      const job = await api("POST", "/api/inserts", { body: rows ? { rows: Number(rows) } : {} });
      navigate(`/jobs/${job.id}`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form id="insert" class="inline" onSubmit=${submit}>
    <label>Rows <input name="rows" type="number" min="1" max="10000000" placeholder="100000" /></label>
    <button class="primary">Start insert job</button>
    <${ErrorText} error=${error} />
  </form>`;
}

export function JobRows({ items }) {
  return html`<table class="list" id="jobs">
    <thead>
      <tr>
        <th>id</th>
        <th>kind</th>
        <th>status</th>
        <th>progress</th>
        <th>throughput</th>
        <th>attempts</th>
        <th>node</th>
        <th>created</th>
        <th>error</th>
      </tr>
    </thead>
    <tbody>
      ${items.map(
        (j) =>
          html`<tr data-job=${j.id}>
            <td><a href=${href(`/jobs/${j.id}`)}>#${j.id}</a></td>
            <td>${j.kind}</td>
            <td><${Status} status=${j.status} /></td>
            <td><${Progress} done=${j.progress.done} total=${j.progress.total} label=${`job ${j.id} progress`} /></td>
            <td class="num">${j.throughput === null ? "–" : `${fmtNum(Math.round(j.throughput))}/s`}</td>
            <td class="num">${j.attempts}</td>
            <td>${j.nodeId ?? "–"}</td>
            <td>${fmtTime(j.createdAt)}</td>
            <td class="clip" title=${j.error ?? ""}>${j.error ?? ""}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

export function JobsList({ query }) {
  const { status, kind, q, sort } = query;
  const offset = Number(query.offset ?? 0);
  const setQuery = (patch, opts) => navigate("/jobs", { ...query, offset: undefined, ...patch }, opts);
  const list = useLoad(() => get("/api/jobs", { status, kind, q, sort, limit: LIMIT, offset }), [status, kind, q, sort, offset]);
  const [live, setLive] = useState({});
  // A job on the page is updated in place; anything else may change the list: reload it.
  useEvent("jobs.updated", (job) => {
    if (list.data?.items.some((j) => j.id === job.id)) setLive((m) => ({ ...m, [job.id]: job }));
  });
  useReloadOn("jobs.updated", list.reload, (job) => !list.data?.items.some((j) => j.id === job.id), 1000);
  const items = (list.data?.items ?? []).map((j) => {
    const l = live[j.id];
    return l && new Date(l.updatedAt) >= new Date(j.updatedAt) ? l : j;
  });
  const bulk = async (method, path, opts) => {
    await api(method, path, opts);
    list.reload();
  };
  return html`<section aria-labelledby="jobs-title">
    <h1 id="jobs-title">Jobs</h1>
    <${CanWrite}><${InsertForm} /></${CanWrite}>
    <form class="filters" role="search" onSubmit=${(ev) => ev.preventDefault()}>
      <${Select}
        label="Status" name="status" value=${status}
        options=${[["", "any"], ...JOB_STATUSES.map((s) => [s, s])]}
        onChange=${(v) => setQuery({ status: v })}
      />
      <${Select} label="Kind" name="kind" value=${kind} options=${[["", "any"], ...JOB_KINDS.map((k) => [k, k])]} onChange=${(v) => setQuery({ kind: v })} />
      <${SearchBox} label="Search" value=${q} placeholder="id, URL or error" onChange=${(v) => setQuery({ q: v }, { replace: true })} />
      <${Select} label="Order" name="sort" value=${sort ?? "-id"} options=${SORTS} onChange=${(v) => setQuery({ sort: v === "-id" ? "" : v })} />
    </form>
    <${CanWrite}>
      <div class="bulk">
        <${ConfirmButton}
          label="Retry failed jobs"
          question=${`Retry every failed ${kind ? `${kind} ` : ""}job?`}
          onConfirm=${() => bulk("POST", "/api/jobs/retry", { body: { status: "failed", ...(kind ? { kind } : {}) } })}
        />
        ${
          FINISHED.includes(status) &&
          html`<${ConfirmButton}
            label=${`Delete ${status} jobs`}
            danger
            question=${`Delete every ${status} ${kind ? `${kind} ` : ""}job? Their records are gone for good.`}
            onConfirm=${() => bulk("DELETE", "/api/jobs", { query: { status, kind } })}
          />`
        }
      </div>
    </${CanWrite}>
    <${ErrorText} error=${list.error} />
    ${list.data && html`<${JobRows} items=${items} />`}
    ${list.data && items.length === 0 && html`<p class="empty">No jobs match.</p>`}
    ${list.data && html`<${Pager} total=${list.data.total} atLeast=${Boolean(list.data.totalIsLowerBound)} limit=${LIMIT} offset=${offset} onPage=${(o) => navigate("/jobs", { ...query, offset: o || undefined })} />`}
  </section>`;
}
