// One job: its parameters, progress, throughput, node and error, the timeline of its events,
// and stop, retry and delete, each confirmed first. Live through jobs.updated.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, get, remove } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { useEvent } from "../sse.js";
import { href, navigate } from "../router.js";
import { CanWrite, ConfirmButton, ErrorText, fmtNum, fmtTime, KeyValues, Progress, Status } from "../ui.js";

const ACTIVE = ["pending", "running"];

function Timeline({ id }) {
  const events = useLoad(() => get(`/api/jobs/${id}/events`, { limit: 500 }), [id]);
  useReloadOn("jobs.updated", events.reload, (job) => String(job.id) === String(id));
  return html`<section aria-labelledby="timeline-title">
    <h2 id="timeline-title">Timeline</h2>
    <${ErrorText} error=${events.error} />
    ${
      events.data &&
      html`<ol class="timeline" id="timeline">
        ${events.data.items.map(
          (e) =>
            html`<li class="event event-${e.type.replace(/ /g, "-")}" data-type=${e.type}>
              <time datetime=${e.at}>${fmtTime(e.at)}</time>
              <strong>${e.type}</strong>
              ${e.status && html`<${Status} status=${e.status} />`} ${e.attempt > 0 && html`<span>attempt ${e.attempt}</span>`}
              ${e.nodeId && html`<span>on ${e.nodeId}</span>`} ${e.error && html`<span class="error">${e.error}</span>`}
            </li>`,
        )}
      </ol>`
    }
    ${events.data?.items.length === 0 && html`<p class="empty">No events recorded.</p>`}
  </section>`;
}

function related(job) {
  if (job.kind === "crawl" && job.params?.crawlId)
    return html`<a href=${href(`/crawls/${job.params.crawlId}`)}>crawl #${job.params.crawlId}</a>`;
  if (job.kind === "id-task") return html`<a href=${href(`/id-tasks/${job.id}`)}>its plan</a>`;
  return null;
}

function Actions({ job, onChange }) {
  const act = (method, path) => async () => onChange(await api(method, path));
  return html`<div class="actions" id="job-actions">
    ${
      ACTIVE.includes(job.status) &&
      html`<${ConfirmButton}
        label="Stop"
        danger
        question=${`Stop job #${job.id}? A running insert job rolls back: none of its rows stay.`}
        onConfirm=${act("POST", `/api/jobs/${job.id}/stop`)}
      />`
    }
    ${
      ["failed", "cancelled"].includes(job.status) &&
      html`<${ConfirmButton} label="Retry" question=${`Run job #${job.id} again?`} onConfirm=${act("POST", `/api/jobs/${job.id}/retry`)} />`
    }
    ${
      !ACTIVE.includes(job.status) &&
      html`<${ConfirmButton}
        label="Delete"
        danger
        question=${`Delete job #${job.id} and its timeline?`}
        onConfirm=${async () => {
          await remove(`/api/jobs/${job.id}`);
          navigate("/jobs");
        }}
      />`
    }
  </div>`;
}

export function JobDetail({ id }) {
  const loaded = useLoad(() => get(`/api/jobs/${id}`), [id]);
  const [live, setLive] = useState(null);
  useEvent("jobs.updated", (job) => String(job.id) === String(id) && setLive(job));
  useReloadOn([], loaded.reload);
  // The newer of the last answer and the last event.
  const job = live && (!loaded.data || !(new Date(live.updatedAt) < new Date(loaded.data.updatedAt))) ? live : loaded.data;
  const changed = (j) => {
    setLive(null);
    if (j?.id) loaded.reload();
  };
  if (!job)
    return html`<section>
      <h1>Job #${id}</h1>
      <${ErrorText} error=${loaded.error} />
    </section>`;
  return html`<section aria-labelledby="job-title" class="job" data-status=${job.status}>
    <h1 id="job-title">Job #${job.id} <small>${job.kind}</small> <${Status} status=${job.status} /></h1>
    <p><a href=${href("/jobs")}>← all jobs</a> ${related(job)}</p>
    <${ErrorText} error=${loaded.error} />
    <${CanWrite}><${Actions} job=${job} onChange=${changed} /></${CanWrite}>
    <${Progress} done=${job.progress.done} total=${job.progress.total} label="job progress" />
    <${KeyValues}
      entries=${[
        ["throughput", job.throughput === null ? "–" : `${fmtNum(Math.round(job.throughput))} per second`],
        ["node", job.nodeId ?? "–"],
        ["attempts", job.attempts],
        // An import's phase (uploading, staged, loading) and the file behind it.
        ...(job.kind === "import" && job.progress.phase
          ? [
              ["phase", job.progress.phase],
              ["file", `${fmtNum(job.progress.bytes ?? 0)} bytes, ${fmtNum(job.progress.rowsStaged ?? 0)} rows staged`],
            ]
          : []),
        ["created", fmtTime(job.createdAt)],
        ["started", fmtTime(job.startedAt)],
        ["finished", fmtTime(job.finishedAt)],
        ["error", html`<span id="job-error">${job.error ?? "–"}</span>`],
      ]}
    />
    <h2>Parameters</h2>
    <pre id="job-params">${JSON.stringify(job.params, null, 2)}</pre>
    ${
      job.result &&
      html`<h2>Result</h2>
        <pre>${JSON.stringify(job.result, null, 2)}</pre>`
    }
    <${Timeline} id=${job.id} />
  </section>`;
}
