// The console's shell: navigation, the token prompt, the live-update indicator, and the view
// the URL names.
import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { detectRole, forgetToken, keepToken, onSession, session, token } from "./api.js";
import { startEvents, useLiveStatus } from "./sse.js";
import { href, useRoute } from "./router.js";
import { Overview } from "./views/overview.js";
import { JobsList } from "./views/jobs.js";
import { JobDetail } from "./views/job.js";
import { CrawlsList } from "./views/crawls.js";
import { CrawlDetail } from "./views/crawl.js";
import { IdTasksList } from "./views/id-tasks.js";
import { IdTaskDetail } from "./views/id-task.js";
import { DataTable, DataRecord } from "./views/data.js";
import { ThrottleView } from "./views/throttle.js";

const SECTIONS = [
  ["", "Overview"],
  ["jobs", "Jobs"],
  ["crawls", "Crawls"],
  ["id-tasks", "Id-tasks"],
  ["data", "Data"],
  ["throttle", "Throttle"],
];

function view({ parts, query }) {
  const [section, id, more] = parts;
  switch (section) {
    case undefined:
      return html`<${Overview} />`;
    case "jobs":
      return id ? html`<${JobDetail} id=${id} />` : html`<${JobsList} query=${query} />`;
    case "crawls":
      return id ? html`<${CrawlDetail} id=${id} query=${query} />` : html`<${CrawlsList} query=${query} />`;
    case "id-tasks":
      return id ? html`<${IdTaskDetail} id=${id} query=${query} />` : html`<${IdTasksList} query=${query} />`;
    case "data":
      return more ? html`<${DataRecord} table=${id} id=${more} />` : html`<${DataTable} table=${id ?? "pages"} query=${query} />`;
    case "throttle":
      return html`<${ThrottleView} />`;
    default:
      return html`<p class="error" role="alert">No such view: ${parts.join("/")}</p>`;
  }
}

function Login({ error }) {
  const submit = (ev) => {
    ev.preventDefault();
    const input = ev.currentTarget.elements.token;
    keepToken(input.value);
    input.value = "";
  };
  return html`<form id="login" class="login" onSubmit=${submit}>
    <h2>This Sluice needs a token</h2>
    <p>Use API_TOKEN to operate it, or API_READ_TOKEN to only look. It is kept for this tab only.</p>
    ${error && html`<p id="auth-error" class="error" role="alert">${error}</p>`}
    <label>API token <input name="token" type="password" autocomplete="off" required autofocus /></label>
    <button class="primary">Use token</button>
  </form>`;
}

function LiveStatus() {
  const status = useLiveStatus();
  return html`<span id="live" class="live live-${status.replace(/ /g, "-")}" role="status" title="live updates from /api/events"
    >${status === "live" ? "● live" : `○ ${status}`}</span
  >`;
}

function App() {
  const route = useRoute();
  const [s, setS] = useState({ ...session });
  useEffect(() => onSession(setS), []);
  const section = route.parts[0] ?? "";
  return html`<header class="top">
      <a class="brand" href="#/">Sluice</a>
      <nav aria-label="sections">
        ${SECTIONS.map(
          ([path, label]) => html`<a href=${href(`/${path}`)} aria-current=${section === path ? "page" : undefined}>${label}</a>`,
        )}
      </nav>
      <span class="session">
        <${LiveStatus} />
        ${s.role === "reader" && html`<span id="read-only" class="badge">read-only</span>`}
        ${s.roleError && html`<span id="role-error" class="error" role="alert">cannot tell what this token may do: ${s.roleError.message}</span>`}
        ${
          token() &&
          html`<span id="session"
            >token kept for this tab <button id="forget" type="button" onClick=${forgetToken}>Forget it</button></span
          >`
        }
      </span>
    </header>
    <main id="main">${s.needToken ? html`<${Login} error=${s.authError} />` : view(route)}</main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the "Loading…" placeholder
render(html`<${App} />`, root);
startEvents();
void detectRole();
