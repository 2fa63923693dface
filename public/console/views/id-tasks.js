// Id-tasks: schedule ids (a list or ranges, and an RPM) and the list of tasks with their counts.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, get } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { href, navigate } from "../router.js";
import { CanWrite, ErrorText, fmtNum, fmtTime, Pager, Progress, Status } from "../ui.js";

const LIMIT = 25;

/** "1001-1005, 2000" → [1001, …, 1005, 2000]; throws on anything else. */
export function parseIds(text) {
  const ids = [];
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`"${part}" is not an id or a range like 1001-1100`);
    const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (to < from || to - from > 1_000_000) throw new Error(`"${part}" is not a range the API takes`);
    for (let id = from; id <= to; id++) ids.push(id);
  }
  return ids;
}

export const finishedIds = (c) => c.done + c.failed;
export const plannedIds = (c) => c.planned + c.dispatched + c.running + c.done + c.failed;

function ScheduleForm() {
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget.elements;
    setError(null);
    try {
      const body = { ids: parseIds(f.ids.value) };
      if (f.rpm.value) body.rpm = Number(f.rpm.value);
      const task = await api("POST", "/api/id-tasks", { body });
      navigate(`/id-tasks/${task.id}`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form id="schedule" class="inline" onSubmit=${submit}>
    <label class="grow">Ids <input name="ids" required placeholder="1001-1100, 2001" /></label>
    <label>RPM <input name="rpm" type="number" min="1" max="1000000" placeholder="default" /></label>
    <button class="primary">Schedule</button>
    <${ErrorText} error=${error} />
  </form>`;
}

export function IdTasksList({ query }) {
  const offset = Number(query.offset ?? 0);
  const list = useLoad(() => get("/api/id-tasks", { limit: LIMIT, offset }), [offset]);
  useReloadOn(["jobs.updated", "idTasks.quarter"], list.reload, (d, name) => name !== "jobs.updated" || d.kind === "id-task", 1000);
  return html`<section aria-labelledby="tasks-title">
    <h1 id="tasks-title">Id-tasks</h1>
    <${CanWrite}><${ScheduleForm} /></${CanWrite}>
    <${ErrorText} error=${list.error} />
    ${
      list.data &&
      html`<table class="list" id="id-tasks">
        <thead>
          <tr>
            <th>id</th>
            <th>status</th>
            <th>RPM</th>
            <th>progress</th>
            <th>planned</th>
            <th>failed</th>
            <th>first minute</th>
            <th>last minute</th>
          </tr>
        </thead>
        <tbody>
          ${list.data.items.map(
            (t) =>
              html`<tr data-task=${t.id}>
                <td><a href=${href(`/id-tasks/${t.id}`)}>#${t.id}</a></td>
                <td><${Status} status=${t.status} />${t.paused ? " (paused)" : ""}</td>
                <td class="num">${fmtNum(t.rpm)}</td>
                <td><${Progress} done=${finishedIds(t.counts)} total=${plannedIds(t.counts)} label=${`task ${t.id} progress`} /></td>
                <td class="num">${fmtNum(t.counts.planned)}</td>
                <td class="num">${fmtNum(t.counts.failed)}</td>
                <td>${fmtTime(t.firstMinuteAt)}</td>
                <td>${fmtTime(t.lastMinuteAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
    ${list.data?.items.length === 0 && html`<p class="empty">No id-tasks yet.</p>`}
    ${list.data && html`<${Pager} total=${list.data.total} limit=${LIMIT} offset=${offset} onPage=${(o) => navigate("/id-tasks", { offset: o || undefined })} />`}
  </section>`;
}
