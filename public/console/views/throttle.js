// Throttle: every limit across the cluster, which nodes run on their local fallback, and a
// confirmed change of maxConcurrent and rate (PATCH /api/throttle). Live through the
// throttle.stats the event stream brings every 2 s (stats.js).
import { Fragment } from "preact";
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, session } from "../api.js";
import { refresh, useStats } from "../stats.js";
import { ConfirmButton, ErrorText, fmtNum } from "../ui.js";

/** The resource a row's limits are changed under; null when it cannot be changed at runtime. */
export function editableResource(resource) {
  if (resource === "db (bulkheads)") return "db";
  if (resource === "db" || /^(fetch|upstream):/.test(resource)) return resource;
  return null;
}

/** The PATCH body from the form's text: blank fields are left as they are. */
function change(resource, maxConcurrent, rate) {
  const body = { resource };
  if (maxConcurrent !== "") body.maxConcurrent = Number(maxConcurrent);
  if (rate.trim() !== "") body.rate = rate.trim();
  return body;
}

function LimitForm({ resource, limit, rate, onSaved, id }) {
  const [max, setMax] = useState(limit === null || limit === undefined ? "" : String(limit));
  const [r, setR] = useState(rate ?? "");
  const [name, setName] = useState(resource ?? "");
  const target = resource ?? name;
  return html`<form class="limit-form inline" id=${id} onSubmit=${(ev) => ev.preventDefault()}>
    ${
      resource === undefined &&
      html`<label
        >Resource
        <input name="resource" value=${name} onInput=${(e) => setName(e.currentTarget.value)} placeholder="fetch:example.org" required
      /></label>`
    }
    <label
      >Max concurrent
      <input name="maxConcurrent" type="number" min="1" max="10000" value=${max} onInput=${(e) => setMax(e.currentTarget.value)}
    /></label>
    <label>Rate <input name="rate" value=${r} onInput=${(e) => setR(e.currentTarget.value)} placeholder="20/s, 100/m or none" /></label>
    <${ConfirmButton}
      label="Save"
      confirmLabel="Change the limit"
      question=${`Change ${target} for the whole cluster to max concurrent ${max || "(unchanged)"}, rate ${r || "(unchanged)"}?`}
      onConfirm=${async () => onSaved(await api("PATCH", "/api/throttle", { body: change(target, max, r) }))}
    />
  </form>`;
}

function Limits({ resources, onSaved }) {
  const [editing, setEditing] = useState(null);
  const saved = (c) => {
    setEditing(null);
    onSaved(c);
  };
  return html`<table class="list" id="limits">
    <thead>
      <tr>
        <th>resource</th>
        <th>max concurrent</th>
        <th>rate</th>
        <th>running</th>
        <th>queued</th>
        <th>rejected</th>
        <th>reclaimed</th>
        <th>nodes</th>
        <th>in fallback</th>
        <th></th>
      </tr>
    </thead>
    <tbody>
      ${resources.map((row) => {
        const target = editableResource(row.resource);
        // Keyed: an open form stays with its row when the figures bring new rows.
        return html`<${Fragment} key=${row.resource}>
          <tr data-resource=${row.resource} class=${row.fallbackNodes > 0 ? "warn" : ""}>
            <td>${row.resource}</td>
            <td class="num" data-field="limit">${row.limit ?? "none"}</td>
            <td data-field="rate">${row.rate ?? "none"}</td>
            <td class="num">${fmtNum(row.running)}</td>
            <td class="num">${fmtNum(row.queued)}</td>
            <td class="num">${fmtNum(row.rejected)}</td>
            <td class="num">${row.reclaimed === undefined ? "–" : fmtNum(row.reclaimed)}</td>
            <td class="num">${row.nodes}</td>
            <td class="num">${row.fallbackNodes}</td>
            <td>
              ${
                target &&
                session.role === "writer" &&
                html`<button
                  type="button"
                  aria-expanded=${editing === row.resource}
                  onClick=${() => setEditing(editing === row.resource ? null : row.resource)}
                >
                  Edit<span class="sr-only"> ${row.resource}</span>
                </button>`
              }
            </td>
          </tr>
          ${
            editing === row.resource &&
            html`<tr class="editing">
              <td colspan="10"><${LimitForm} id="edit-limit" resource=${target} limit=${row.limit} rate=${row.rate} onSaved=${saved} /></td>
            </tr>`
          }
        </${Fragment}>`;
      })}
    </tbody>
  </table>`;
}

function Nodes({ nodes }) {
  return html`<table class="list" id="throttle-nodes">
    <thead>
      <tr>
        <th>node</th>
        <th>Redis</th>
        <th>DB budget</th>
        <th>bulkhead</th>
        <th>running</th>
        <th>queued</th>
        <th>limiters in fallback</th>
      </tr>
    </thead>
    <tbody>
      ${nodes.map((n) => {
        const fallback = n.limiters.filter((l) => l.fallback).map((l) => l.resource);
        return html`<tr data-node=${n.nodeId} class=${n.redis.startsWith("down") ? "warn" : ""}>
          <td>${n.nodeId}</td>
          <td>${n.redis}</td>
          <td class="num">${n.db.budget}</td>
          <td class="num">${n.db.limit}</td>
          <td class="num">${n.db.running}</td>
          <td class="num">${n.db.queued}</td>
          <td>${fallback.length ? fallback.join(", ") : "none"}</td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

export function ThrottleView() {
  const throttle = useStats("throttle");
  const [note, setNote] = useState(null);
  const saved = (c) => {
    setNote(`Changed ${c.resource}.`);
    // Shown now, not at the next figures.
    refresh("throttle").catch(() => {});
  };
  const d = throttle.data;
  const inFallback = d ? d.nodes.filter((n) => n.redis.startsWith("down")).map((n) => n.nodeId) : [];
  return html`<section aria-labelledby="throttle-title">
    <h1 id="throttle-title">Throttle</h1>
    <${ErrorText} error=${throttle.error} />
    ${note && html`<p class="note" role="status">${note}</p>`}
    ${
      d &&
      html`<p id="fallback" class=${inFallback.length ? "warn" : ""}>
        ${inFallback.length ? `In local fallback (Redis down): ${inFallback.join(", ")}` : "No node is in fallback."}
      </p>`
    }
    ${d && html`<${Limits} resources=${d.resources} onSaved=${saved} />`}
    ${
      session.role === "writer" &&
      html`<h2>Set a limit</h2>
        <p>For a resource not listed yet (db, fetch:host[:port], upstream:host[:port]).</p>
        <${LimitForm} id="new-limit" onSaved=${saved} />`
    }
    <h2>Nodes</h2>
    ${d && html`<${Nodes} nodes=${d.nodes} />`}
  </section>`;
}
