// Overview: the nodes with their services, uptime and memory; a live chart per limit (running,
// queued, rate) and per queue (backlog), drawn from the throttle.stats and queues.stats the event
// stream brings every 2 s (stats.js); jobs counted by state.
import { html } from "htm/preact";
import { api, get, session } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { href } from "../router.js";
import { LineChart } from "../chart.js";
import { refresh, samples, useStats } from "../stats.js";
import { ConfirmButton, ErrorText, fmtBytes, fmtDuration, fmtNum } from "../ui.js";
import { JOB_STATUSES } from "./jobs.js";

const LIMIT_LINES = ["running", "queued", "rate"];

const jobCounts = async () =>
  Object.fromEntries(
    await Promise.all(
      JOB_STATUSES.map(async (s) => {
        const r = await get("/api/jobs", { status: s, limit: 1 });
        // A large table is counted only so far: "10,000+".
        return [s, `${fmtNum(r.total)}${r.totalIsLowerBound ? "+" : ""}`];
      }),
    ),
  );

function Nodes() {
  const nodes = useLoad(() => get("/api/nodes"), []);
  useReloadOn(["nodes.changed", "ping"], nodes.reload);
  return html`<section aria-labelledby="nodes-title">
    <h2 id="nodes-title">Nodes</h2>
    <${ErrorText} error=${nodes.error} />
    ${
      nodes.data &&
      html`<table class="list" id="nodes">
        <thead>
          <tr>
            <th>node</th>
            <th>services</th>
            <th>uptime</th>
            <th>RSS</th>
            <th>heap used</th>
            <th>available</th>
          </tr>
        </thead>
        <tbody>
          ${nodes.data.items.map(
            (n) =>
              html`<tr data-node=${n.nodeId} class=${n.available ? "" : "warn"}>
                <td>${n.nodeId}</td>
                <td>${n.services.join(", ")}</td>
                <td>${fmtDuration(n.uptimeSeconds)}</td>
                <td class="num">${fmtBytes(n.memory?.rss)}</td>
                <td class="num">${fmtBytes(n.memory?.heapUsed)}</td>
                <td>${n.available ? "yes" : "no"}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}

function JobCounts() {
  const counts = useLoad(jobCounts, []);
  useReloadOn("jobs.updated", counts.reload, () => true, 1000);
  return html`<section aria-labelledby="counts-title">
    <h2 id="counts-title">Jobs by state</h2>
    <${ErrorText} error=${counts.error} />
    ${
      counts.data &&
      html`<ul class="counts" id="job-counts">
        ${JOB_STATUSES.map(
          (s) =>
            html`<li>
              <a href=${href("/jobs", { status: s })} class="status-${s}"><strong data-status=${s}>${counts.data[s]}</strong> ${s}</a>
            </li>`,
        )}
      </ul>`
    }
  </section>`;
}

function Queue({ q }) {
  const toggle = async () => {
    await api("PATCH", `/api/queues/${q.name}`, { body: { paused: !q.paused } });
    await refresh("queues");
  };
  return html`<div class="chart-card" data-queue=${q.name}>
    <h3>${q.name} <small>backlog ${fmtNum(q.depth)}${q.paused ? " · paused" : ""}</small></h3>
    <${LineChart} title=${`${q.name} backlog`} labels=${["depth"]} data=${samples.columns(`queue:${q.name}`, ["depth"])} />
    ${
      session.role === "writer" &&
      html`<${ConfirmButton}
        label=${q.paused ? `Resume ${q.name} queue` : `Pause ${q.name} queue`}
        question=${q.paused ? `Resume taking work from the ${q.name} queue?` : `Pause the ${q.name} queue? Its work waits until it resumes.`}
        onConfirm=${toggle}
      />`
    }
  </div>`;
}

export function Overview() {
  const throttle = useStats("throttle");
  const queues = useStats("queues");
  return html`<section aria-labelledby="overview-title">
    <h1 id="overview-title">Overview</h1>
    <${Nodes} />
    <${JobCounts} />
    <h2>Limits</h2>
    <${ErrorText} error=${throttle.error} />
    <div class="charts" id="limit-charts">
      ${throttle.data?.resources.map(
        (r) =>
          html`<div class="chart-card" data-resource=${r.resource} key=${r.resource}>
            <h3>
              ${r.resource}
              <small
                >limit ${r.limit ?? "none"} · rate ${r.rate ?? "none"}${r.fallbackNodes ? ` · ${r.fallbackNodes} in fallback` : ""}</small
              >
            </h3>
            <${LineChart} title=${r.resource} labels=${LIMIT_LINES} data=${samples.columns(`limit:${r.resource}`, LIMIT_LINES)} />
          </div>`,
      )}
    </div>
    <h2>Queues</h2>
    <${ErrorText} error=${queues.error} />
    <div class="charts" id="queue-charts">${queues.data?.items.map((q) => html`<${Queue} q=${q} key=${q.name} />`)}</div>
  </section>`;
}
