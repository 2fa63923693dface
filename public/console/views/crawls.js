// Crawls: start one (URL, maxPages, maxDepth) and the list with each crawl's counts and progress.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, get } from "../api.js";
import { useLoad, useReloadOn } from "../hooks.js";
import { href, navigate } from "../router.js";
import { CanWrite, ErrorText, fmtNum, fmtTime, Pager, Progress, Status } from "../ui.js";

const LIMIT = 25;

/** URLs settled (stored, unchanged, failed or skipped) out of those discovered. */
export const settled = (p) => p.stored + (p.unchanged ?? 0) + p.failed + p.skipped;

function StartForm() {
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget.elements;
    const body = { url: f.url.value };
    if (f.maxPages.value) body.maxPages = Number(f.maxPages.value);
    if (f.maxDepth.value) body.maxDepth = Number(f.maxDepth.value);
    setError(null);
    try {
      const crawl = await api("POST", "/api/crawls", { body });
      navigate(`/crawls/${crawl.id}`);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form id="start-crawl" class="inline" onSubmit=${submit}>
    <label class="grow">URL <input name="url" type="url" required placeholder="https://example.org/" /></label>
    <label>Max pages <input name="maxPages" type="number" min="1" max="100000" placeholder="1000" /></label>
    <label>Max depth <input name="maxDepth" type="number" min="0" max="100" placeholder="10" /></label>
    <button class="primary">Start crawl</button>
    <${ErrorText} error=${error} />
  </form>`;
}

export function CrawlsList({ query }) {
  const offset = Number(query.offset ?? 0);
  const list = useLoad(() => get("/api/crawls", { limit: LIMIT, offset }), [offset]);
  useReloadOn(
    ["jobs.updated", "crawls.created", "crawls.finished"],
    list.reload,
    (d, name) => name !== "jobs.updated" || d.kind === "crawl",
    1000,
  );
  return html`<section aria-labelledby="crawls-title">
    <h1 id="crawls-title">Crawls</h1>
    <${CanWrite}><${StartForm} /></${CanWrite}>
    <${ErrorText} error=${list.error} />
    ${
      list.data &&
      html`<table class="list" id="crawls">
        <thead>
          <tr>
            <th>id</th>
            <th>URL</th>
            <th>status</th>
            <th>progress</th>
            <th>discovered</th>
            <th>stored</th>
            <th>unchanged</th>
            <th>failed</th>
            <th>skipped</th>
            <th>created</th>
          </tr>
        </thead>
        <tbody>
          ${list.data.items.map(
            (c) =>
              html`<tr data-crawl=${c.id}>
                <td><a href=${href(`/crawls/${c.id}`)}>#${c.id}</a></td>
                <td class="clip" title=${c.url}>${c.url}</td>
                <td><${Status} status=${c.status} />${c.paused ? " (paused)" : ""}</td>
                <td><${Progress} done=${settled(c.pages)} total=${c.pages.discovered} label=${`crawl ${c.id} progress`} /></td>
                <td class="num">${fmtNum(c.pages.discovered)}</td>
                <td class="num">${fmtNum(c.pages.stored)}</td>
                <td class="num">${fmtNum(c.pages.unchanged ?? 0)}</td>
                <td class="num">${fmtNum(c.pages.failed)}</td>
                <td class="num">${fmtNum(c.pages.skipped)}</td>
                <td>${fmtTime(c.createdAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>`
    }
    ${list.data?.items.length === 0 && html`<p class="empty">No crawls yet.</p>`}
    ${list.data && html`<${Pager} total=${list.data.total} limit=${LIMIT} offset=${offset} onPage=${(o) => navigate("/crawls", { offset: o || undefined })} />`}
  </section>`;
}
