// Small shared pieces: formatting, status badges, progress, pagination, errors, confirmations.
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { session } from "./api.js";

export const fmtTime = (t) => (t ? new Date(t).toLocaleString(undefined, { hour12: false }) : "–");
export const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) ((n /= 1024), i++);
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export const Status = ({ status }) => html`<span class="status status-${status}">${status}</span>`;

export function Progress({ done, total, label = "progress" }) {
  const known = total !== null && total !== undefined && total > 0;
  const pct = known ? Math.min(100, Math.round((100 * done) / total)) : null;
  return html`<span class="progress">
    <progress aria-label=${label} max=${known ? total : undefined} value=${known ? done : undefined}></progress>
    <span>${fmtNum(done)}${known ? ` / ${fmtNum(total)} (${pct} %)` : ""}</span>
  </span>`;
}

/** An error as the user should read it: the server's code and message. */
export function ErrorText({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.code ? `${error.code}: ` : ""}${error.message}</p>`;
}

/** Previous/next over a list; `atLeast`: the server counted only so far (a large filtered list). */
export function Pager({ total, limit, offset, onPage, atLeast = false }) {
  if (total === undefined || total === null) return null;
  const first = total === 0 ? 0 : offset + 1;
  const last = Math.min(offset + limit, total);
  return html`<nav class="pager" aria-label="pages">
    <button type="button" disabled=${offset === 0} onClick=${() => onPage(Math.max(0, offset - limit))}>Previous</button>
    <span>${fmtNum(first)}–${fmtNum(last)} of ${atLeast ? "at least " : ""}${fmtNum(total)}</span>
    <button type="button" disabled=${last >= total && !atLeast} onClick=${() => onPage(offset + limit)}>Next</button>
  </nav>`;
}

/** Write controls exist only for a token that may write (the server refuses the others anyway). */
export const CanWrite = ({ children }) => (session.role === "writer" ? children : null);

/**
 * A button whose action runs only after a modal confirmation (a native <dialog>: focus stays
 * inside, Escape cancels). The action's error is shown beside the button.
 */
export function ConfirmButton({ label, question, confirmLabel = label, onConfirm, danger = false, disabled = false }) {
  const dialog = useRef(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const open = () => {
    setError(null);
    dialog.current.showModal();
  };
  const confirm = async () => {
    dialog.current.close();
    setBusy(true);
    try {
      await onConfirm();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="confirm">
    <button type="button" class=${danger ? "danger" : ""} disabled=${disabled || busy} onClick=${open}>${label}</button>
    <dialog ref=${dialog} aria-label=${label}>
      <p>${question}</p>
      <div class="actions">
        <button type="button" class=${danger ? "danger" : "primary"} onClick=${confirm}>${confirmLabel}</button>
        <button type="button" onClick=${() => dialog.current.close()}>Cancel</button>
      </div>
    </dialog>
    <${ErrorText} error=${error} />
  </span>`;
}

/** A text input whose value reaches onChange after the user pauses typing. */
export function SearchBox({ label, value, onChange, placeholder }) {
  const [text, setText] = useState(value ?? "");
  useEffect(() => setText(value ?? ""), [value]);
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  const input = (ev) => {
    const v = ev.currentTarget.value;
    setText(v);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => onChange(v), 250);
  };
  return html`<label>${label} <input type="search" value=${text} onInput=${input} placeholder=${placeholder} /></label>`;
}

export const KeyValues = ({ entries }) =>
  html`<dl class="kv">
    ${entries.map(
      ([k, v]) =>
        html`<div>
          <dt>${k}</dt>
          <dd>${v}</dd>
        </div>`,
    )}
  </dl>`;
