// One id-task: its counts, the plan as a calendar heatmap, one minute's ids, and pause, resume
// and a new RPM (confirmed). Live through jobs.updated and idTasks.quarter.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, get } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { href } from "../router.js";
import { CanWrite, ConfirmButton, ErrorText, fmtNum, fmtTime, KeyValues, Progress, Status } from "../ui.js";
import { Heatmap, loadPlan, SLOT_STATES } from "./heatmap.js";
import { finishedIds, plannedIds } from "./id-tasks.js";

function Minute({ taskId, minute }) {
  const slots = useLoad(() => get(`/api/id-tasks/${taskId}/slots`, { minute, limit: 500 }), [taskId, minute]);
  return html`<section aria-labelledby="minute-title" id="minute">
    <h2 id="minute-title">Minute ${fmtTime(minute)} <a href=${href(`/id-tasks/${taskId}`)}>close</a></h2>
    <${ErrorText} error=${slots.error} />
    ${
      slots.data &&
      html`<table class="list" id="minute-slots">
        <thead>
          <tr>
            <th>id</th>
            <th>state</th>
            <th>attempts</th>
            <th>error</th>
          </tr>
        </thead>
        <tbody>
          ${slots.data.items.map(
            (s) =>
              html`<tr>
                <td class="num">${s.id}</td>
                <td><${Status} status=${s.state} /></td>
                <td class="num">${s.attempts}</td>
                <td>${s.error ?? ""}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}

function Controls({ task, onChange }) {
  const [rpm, setRpm] = useState(String(task.rpm));
  const patch = (body) => async () => onChange(await api("PATCH", `/api/id-tasks/${task.id}`, { body }));
  return html`<div class="actions" id="task-actions">
    ${
      task.paused
        ? html`<${ConfirmButton} label="Resume" question="Resume dispatching this task's ids?" onConfirm=${patch({ paused: false })} />`
        : html`<${ConfirmButton}
            label="Pause"
            question="Pause this task? Its ids are not dispatched until it resumes."
            onConfirm=${patch({ paused: true })}
          />`
    }
    <label
      >New RPM <input name="rpm" type="number" min="1" max="1000000" value=${rpm} onInput=${(e) => setRpm(e.currentTarget.value)}
    /></label>
    <${ConfirmButton}
      label="Apply RPM"
      question=${`Plan the ids not yet dispatched again, ${rpm} a minute, from the next minute?`}
      onConfirm=${patch({ rpm: Number(rpm) })}
    />
  </div>`;
}

export function IdTaskDetail({ id, query }) {
  const task = useLoad(() => get(`/api/id-tasks/${id}`), [id]);
  const t = task.data;
  const total = t ? plannedIds(t.counts) : undefined;
  const version = t ? `${t.rpm}:${SLOT_STATES.map((s) => t.counts[s]).join(",")}` : "";
  const plan = useLoad(() => (t ? loadPlan(id) : Promise.resolve(undefined)), [id, version]);
  useReloadOn(["jobs.updated", "idTasks.quarter"], task.reload, (d, name) => name !== "jobs.updated" || String(d.id) === String(id), 1000);
  if (!t)
    return html`<section>
      <h1>Id-task #${id}</h1>
      <${ErrorText} error=${task.error} />
    </section>`;
  const selected = query.minute ? new Date(query.minute).getTime() : null;
  return html`<section aria-labelledby="task-title" class="id-task" data-status=${t.status}>
    <h1 id="task-title">Id-task #${t.id} <${Status} status=${t.status} /> ${t.paused && html`<span class="badge" id="paused">paused</span>`}</h1>
    <p><a href=${href("/id-tasks")}>← all id-tasks</a> <a href=${href(`/jobs/${t.id}`)}>job #${t.id}</a></p>
    <${ErrorText} error=${task.error} />
    <${CanWrite}><${Controls} task=${t} onChange=${task.reload} /></${CanWrite}>
    <${Progress} done=${finishedIds(t.counts)} total=${total} label="ids done" />
    <${KeyValues}
      entries=${[
        ["RPM", fmtNum(t.rpm)],
        ...SLOT_STATES.map((s) => [s, fmtNum(t.counts[s])]),
        ["first minute", fmtTime(t.firstMinuteAt)],
        ["last minute", fmtTime(t.lastMinuteAt)],
        ["error", t.error ?? "–"],
      ]}
    />
    <h2>Plan</h2>
    <${ErrorText} error=${plan.error} />
    ${plan.data && html`<${Heatmap} taskId=${t.id} plan=${plan.data} rpm=${plan.data.rpm} selected=${selected} />`}
    ${query.minute && html`<${Minute} taskId=${t.id} minute=${query.minute} />`}
  </section>`;
}
