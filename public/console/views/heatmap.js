// The id-task's plan as a calendar: one row per hour of scheduler minutes, one cell per minute,
// each cell filled to its share of the RPM and coloured by the state of its ids. Arrow keys
// move between cells; Enter opens the minute.
import { html } from "htm/preact";
import { get } from "../api.js";
import { href } from "../router.js";

export const SLOT_STATES = ["done", "running", "dispatched", "planned", "failed"];

/** Per minute (epoch ms), the task's ids counted by state, from GET /api/id-tasks/:id/minutes: { minutes: Map, rpm, minuteMs }. */
export async function loadPlan(taskId) {
  const { rpm, minuteMs, items } = await get(`/api/id-tasks/${taskId}/minutes`);
  const minutes = new Map();
  for (const { minute, counts } of items)
    minutes.set(new Date(minute).getTime(), Object.fromEntries(SLOT_STATES.map((s) => [s, counts[s] ?? 0])));
  // The server says how long its scheduler minute is (SCHEDULER_MINUTE_MS).
  return { minutes, rpm, minuteMs };
}

const total = (counts) => SLOT_STATES.reduce((n, s) => n + counts[s], 0);

function Cell({ taskId, t, counts, rpm, selected, row, col }) {
  const n = total(counts);
  const iso = new Date(t).toISOString();
  const parts = SLOT_STATES.filter((s) => counts[s] > 0).map((s) => `${s} ${counts[s]}`);
  const label = `${new Date(t).toLocaleTimeString(undefined, { hour12: false })}: ${n} of ${rpm}${parts.length ? ` (${parts.join(", ")})` : ""}`;
  return html`<a
    class=${`cell${selected ? " selected" : ""}`}
    href=${href(`/id-tasks/${taskId}`, { minute: iso })}
    data-minute=${iso}
    data-count=${n}
    data-row=${row}
    data-col=${col}
    aria-label=${label}
    title=${label}
    aria-current=${selected ? "true" : undefined}
  >
    ${SLOT_STATES.filter((s) => counts[s] > 0).map(
      (s) => html`<span class=${`fill state-${s}`} style=${`height:${Math.min(100, (100 * counts[s]) / rpm)}%`}></span>`,
    )}
  </a>`;
}

// Left and right go to the minute before or after, across the hour's edge into the next row
// (a plan may cross the hour); up and down go an hour back or on.
function moveFocus(ev) {
  const cell = ev.target.closest?.(".cell");
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -60, ArrowDown: 60 }[ev.key];
  if (!cell || !step) return;
  const at = Number(cell.dataset.row) * 60 + Number(cell.dataset.col) + step;
  const row = Math.floor(at / 60);
  const col = at - row * 60;
  const next = ev.currentTarget.querySelector(`.cell[data-row="${row}"][data-col="${col}"]`);
  if (next) {
    ev.preventDefault();
    next.focus();
  }
}

export function Heatmap({ taskId, plan, rpm, selected }) {
  const times = [...plan.minutes.keys()].sort((a, b) => a - b);
  if (times.length === 0) return html`<p class="empty">No ids planned.</p>`;
  const ms = plan.minuteMs;
  const index = (t) => Math.round(t / ms);
  const firstHour = Math.floor(index(times[0]) / 60);
  const lastHour = Math.floor(index(times[times.length - 1]) / 60);
  const rows = [];
  for (let h = firstHour; h <= lastHour; h++) rows.push(h);
  return html`<div class="heatmap-wrap">
    <div class="heatmap" id="heatmap" role="grid" aria-label="ids per minute against the RPM" onKeyDown=${moveFocus}>
      ${rows.map(
        (h, r) =>
          html`<div class="hour" role="row">
            <span class="hour-label" role="rowheader"
              >${new Date(h * 60 * ms).toLocaleTimeString(undefined, { hour12: false, hour: "2-digit", minute: "2-digit" })}</span
            >
            ${Array.from({ length: 60 }, (_, m) => {
              const t = (h * 60 + m) * ms;
              const counts = plan.minutes.get(t);
              return html`<span role="gridcell" class="slot">
                ${
                  counts
                    ? html`<${Cell} taskId=${taskId} t=${t} counts=${counts} rpm=${rpm} selected=${selected === t} row=${r} col=${m} />`
                    : html`<span class="cell empty-cell"></span>`
                }
              </span>`;
            })}
          </div>`,
      )}
    </div>
    <p class="legend">
      ${SLOT_STATES.map((s) => html`<span><i class=${`swatch state-${s}`}></i>${s}</span>`)} · a full cell holds ${rpm} ids (the RPM)
    </p>
  </div>`;
}
