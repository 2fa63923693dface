// One crawl: counts and progress, its pages, its failures with their reasons, its host's limiter,
// and pause, resume and cancel (confirmed). Live through jobs.updated and crawls.finished, the
// limiter through throttle.stats.
import { html } from "htm/preact";
import { api, get } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { href, navigate } from "../router.js";
import { useStats } from "../stats.js";
import { CanWrite, ConfirmButton, ErrorText, fmtBytes, fmtNum, fmtTime, KeyValues, Pager, Progress, Status } from "../ui.js";
import { settled } from "./crawls.js";

const LIMIT = 20;
const ACTIVE = ["pending", "running"];

function Pages({ crawlId, offset, onPage, version }) {
  const pages = useLoad(() => get("/api/pages", { crawl: crawlId, limit: LIMIT, offset }), [crawlId, offset, version]);
  return html`<section aria-labelledby="pages-title">
    <h2 id="pages-title">Pages</h2>
    <${ErrorText} error=${pages.error} />
    ${
      pages.data &&
      html`<table class="list" id="crawl-pages">
        <thead>
          <tr>
            <th>URL</th>
            <th>status</th>
            <th>title</th>
            <th>depth</th>
            <th>bytes</th>
            <th>fetched at</th>
          </tr>
        </thead>
        <tbody>
          ${pages.data.items.map(
            (p) =>
              html`<tr>
                <td class="clip"><a href=${href(`/data/pages/${p.id}`)} title=${p.url}>${p.url}</a></td>
                <td class="num">${p.status}</td>
                <td class="clip">${p.title ?? ""}</td>
                <td class="num">${p.depth}</td>
                <td class="num">${fmtBytes(p.bytes)}</td>
                <td>${fmtTime(p.fetchedAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
    ${pages.data && html`<${Pager} total=${pages.data.total} limit=${LIMIT} offset=${offset} onPage=${onPage} />`}
  </section>`;
}

function Failures({ crawlId, version }) {
  const failures = useLoad(() => get(`/api/crawls/${crawlId}/failures`, { limit: 100 }), [crawlId, version]);
  return html`<section aria-labelledby="failures-title">
    <h2 id="failures-title">Failed and skipped URLs</h2>
    <${ErrorText} error=${failures.error} />
    ${failures.data?.items.length === 0 && html`<p class="empty">None.</p>`}
    ${
      failures.data?.items.length > 0 &&
      html`<table class="list" id="crawl-failures">
        <thead>
          <tr>
            <th>URL</th>
            <th>state</th>
            <th>reason</th>
            <th>HTTP</th>
            <th>depth</th>
            <th>when</th>
          </tr>
        </thead>
        <tbody>
          ${failures.data.items.map(
            (f) =>
              html`<tr>
                <td class="clip" title=${f.url}>${f.url}</td>
                <td><${Status} status=${f.state} /></td>
                <td>${f.reason}</td>
                <td class="num">${f.httpStatus ?? "–"}</td>
                <td class="num">${f.depth}</td>
                <td>${fmtTime(f.updatedAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}

function HostLimiter({ url }) {
  const host = new URL(url).host;
  const throttle = useStats("throttle");
  const row = throttle.data?.resources.find((r) => r.resource === `fetch:${host}`);
  return html`<section aria-labelledby="limiter-title">
    <h2 id="limiter-title">Limiter of ${host}</h2>
    <${ErrorText} error=${throttle.error} />
    ${throttle.data && !row && html`<p class="empty">No limiter for fetch:${host} yet (it appears with the first fetch).</p>`}
    ${
      row &&
      html`<${KeyValues}
          entries=${[
            ["max concurrent", row.limit ?? "none"],
            ["rate", row.rate ?? "none"],
            ["running", row.running],
            ["queued", row.queued],
            ["rejected", row.rejected],
            ["nodes in fallback", `${row.fallbackNodes} of ${row.nodes}`],
          ]}
        />
        <p><a href=${href("/throttle")}>Edit limits</a></p>`
    }
  </section>`;
}

export function CrawlDetail({ id, query }) {
  const crawl = useLoad(() => get(`/api/crawls/${id}`), [id]);
  const c = crawl.data;
  useReloadOn(
    ["jobs.updated", "crawls.finished"],
    crawl.reload,
    (d, name) => (name === "crawls.finished" ? String(d.id) === String(id) : c && d.id === c.jobId),
    500,
  );
  const offset = Number(query.offset ?? 0);
  // Counts change as pages are stored: the lists follow them.
  const version = c ? `${c.status}:${c.paused}:${settled(c.pages)}` : "";
  if (!c)
    return html`<section>
      <h1>Crawl #${id}</h1>
      <${ErrorText} error=${crawl.error} />
    </section>`;
  const change = (method, body) => async () => {
    await api(method, `/api/crawls/${c.id}`, body ? { body } : {});
    crawl.reload();
  };
  return html`<section aria-labelledby="crawl-title" class="crawl" data-status=${c.status} data-paused=${String(Boolean(c.paused))}>
    <h1 id="crawl-title">Crawl #${c.id} <${Status} status=${c.status} /> ${c.paused && html`<span class="badge" id="paused">paused</span>`}</h1>
    <p><a href=${href("/crawls")}>← all crawls</a> ${c.jobId && html`<a href=${href(`/jobs/${c.jobId}`)}>job #${c.jobId}</a>`}</p>
    <${ErrorText} error=${crawl.error} />
    <${CanWrite}>
      ${
        ACTIVE.includes(c.status) &&
        html`<div class="actions" id="crawl-actions">
          ${
            c.paused
              ? html`<${ConfirmButton}
                  label="Resume"
                  question="Resume fetching this crawl's URLs?"
                  onConfirm=${change("PATCH", { paused: false })}
                />`
              : html`<${ConfirmButton}
                  label="Pause"
                  question="Pause this crawl? No more of its URLs are fetched until it resumes."
                  onConfirm=${change("PATCH", { paused: true })}
                />`
          }
          <${ConfirmButton} label="Cancel crawl" danger question="Cancel this crawl? It cannot be resumed." onConfirm=${change("DELETE")} />
        </div>`
      }
    </${CanWrite}>
    <p class="url"><a href=${c.url} rel="noreferrer noopener" target="_blank">${c.url}</a></p>
    <${Progress} done=${settled(c.pages)} total=${c.pages.discovered} label="crawl progress" />
    <${KeyValues}
      entries=${[
        ["discovered", html`<span id="count-discovered">${fmtNum(c.pages.discovered)}</span>`],
        ["fetched", fmtNum(c.pages.fetched)],
        ["stored", html`<span id="count-stored">${fmtNum(c.pages.stored)}</span>`],
        ["unchanged", fmtNum(c.pages.unchanged ?? 0)],
        ["failed", fmtNum(c.pages.failed)],
        ["skipped", fmtNum(c.pages.skipped)],
        ["max pages", fmtNum(c.maxPages)],
        ["max depth", fmtNum(c.maxDepth)],
        ["created", fmtTime(c.createdAt)],
        ["started", fmtTime(c.startedAt)],
        ["finished", fmtTime(c.finishedAt)],
        ["error", c.error ?? "–"],
      ]}
    />
    <${HostLimiter} url=${c.url} />
    <${Pages} crawlId=${c.id} offset=${offset} version=${version} onPage=${(o) => navigate(`/crawls/${c.id}`, { offset: o || undefined })} />
    <${Failures} crawlId=${c.id} version=${version} />
  </section>`;
}
