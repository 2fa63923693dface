// Data, the seed's admin: pages, rows and users as paginated, sortable, searchable tables, each
// record on a page of its own; users can be edited.
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, get, session } from "../api.js";
import { useLoad } from "../hooks.js";
import { href, navigate } from "../router.js";
import { ErrorText, fmtBytes, fmtTime, KeyValues, Pager, SearchBox } from "../ui.js";

const LIMIT = 50;
const asIs = (v) => (v === null || v === undefined ? "–" : String(v));

// Each table: its columns ([field, label, format]), which of them sort, the search parameter,
// and how the API pages (offset/limit lists, or moleculer-db's page/pageSize).
const TABLES = {
  pages: {
    path: "/api/pages",
    columns: [["id"], ["url"], ["status"], ["title"], ["depth"], ["bytes", "bytes", fmtBytes], ["fetchedAt", "fetched at", fmtTime]],
    sortable: ["id", "url", "status", "title", "depth", "bytes", "fetchedAt"],
    search: "q",
  },
  rows: {
    path: "/api/rows",
    columns: [["id"], ["name"], ["value"], ["createdAt", "created", fmtTime]],
    sortable: ["id", "name", "value"],
    search: "q",
  },
  users: {
    path: "/api/users",
    columns: [
      ["id"],
      ["externalId", "external id"],
      ["name"],
      ["email"],
      ["createdAt", "created", fmtTime],
      ["updatedAt", "updated", fmtTime],
    ],
    sortable: ["id", "externalId", "name", "email", "createdAt", "updatedAt"],
    search: "search",
    moleculerDb: true,
  },
};

async function fetchTable(t, { sort, q, offset }) {
  const search = q ? { [t.search]: q } : {};
  if (!t.moleculerDb) return get(t.path, { limit: LIMIT, offset, sort, ...search });
  const r = await get(t.path, { page: Math.floor(offset / LIMIT) + 1, pageSize: LIMIT, sort, ...search });
  return { items: r.rows, total: r.total };
}

function SortHeader({ field, label, sort, sortable, onSort }) {
  if (!sortable.includes(field)) return html`<th>${label}</th>`;
  const dir = sort === field ? "ascending" : sort === `-${field}` ? "descending" : "none";
  const next = dir === "ascending" ? `-${field}` : field;
  return html`<th aria-sort=${dir}>
    <button type="button" class="sort" onClick=${() => onSort(next)}>
      ${label} ${dir === "ascending" ? "▲" : dir === "descending" ? "▼" : ""}
    </button>
  </th>`;
}

export function DataTable({ table, query }) {
  const t = TABLES[table];
  const { sort, q } = query;
  const offset = Number(query.offset ?? 0);
  const list = useLoad(() => (t ? fetchTable(t, { sort, q, offset }) : Promise.resolve(null)), [table, sort, q, offset]);
  const setQuery = (patch, opts) => navigate(`/data/${table}`, { ...query, offset: undefined, ...patch }, opts);
  return html`<section aria-labelledby="data-title">
    <h1 id="data-title">Data</h1>
    <nav class="tabs" aria-label="tables">
      ${Object.keys(TABLES).map((name) => html`<a href=${href(`/data/${name}`)} aria-current=${name === table ? "page" : undefined}>${name}</a>`)}
    </nav>
    ${!t && html`<p class="error" role="alert">No table named ${table}.</p>`}
    ${
      t &&
      html`<form class="filters" role="search" onSubmit=${(ev) => ev.preventDefault()}>
        <${SearchBox} label=${`Search ${table}`} value=${q} onChange=${(v) => setQuery({ q: v }, { replace: true })} />
      </form>`
    }
    <${ErrorText} error=${list.error} />
    ${
      t &&
      list.data &&
      html`<table class="list" id="data-table" data-table=${table}>
        <thead>
          <tr>
            ${t.columns.map(([f, label]) => html`<${SortHeader} field=${f} label=${label ?? f} sort=${sort} sortable=${t.sortable} onSort=${(s) => setQuery({ sort: s })} />`)}
          </tr>
        </thead>
        <tbody>
          ${list.data.items.map(
            (item) =>
              html`<tr>
                ${t.columns.map(([f, , format = asIs], i) =>
                  i === 0
                    ? html`<td><a href=${href(`/data/${table}/${item.id}`)}>${format(item[f])}</a></td>`
                    : html`<td class="clip">${format(item[f])}</td>`,
                )}
              </tr>`,
          )}
        </tbody>
      </table>`
    }
    ${list.data?.items.length === 0 && html`<p class="empty">Nothing here.</p>`}
    ${list.data && html`<${Pager} total=${list.data.total} atLeast=${Boolean(list.data.totalIsLowerBound)} limit=${LIMIT} offset=${offset} onPage=${(o) => navigate(`/data/${table}`, { ...query, offset: o || undefined })} />`}
  </section>`;
}

function UserForm({ user, onSaved }) {
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget.elements;
    setError(null);
    setSaved(false);
    try {
      onSaved(await api("PATCH", `/api/users/${user.id}`, { body: { name: f.name.value || null, email: f.email.value || null } }));
      setSaved(true);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form id="user-form" class="stacked" onSubmit=${submit}>
    <h2>Edit</h2>
    <label>Name <input name="name" value=${user.name ?? ""} maxlength="500" /></label>
    <label>E-mail <input name="email" type="email" value=${user.email ?? ""} maxlength="254" /></label>
    <button class="primary">Save</button>
    ${saved && html`<span role="status">Saved.</span>`}
    <${ErrorText} error=${error} />
  </form>`;
}

export function DataRecord({ table, id }) {
  const t = TABLES[table];
  const record = useLoad(() => get(`${t?.path ?? "/api/" + table}/${id}`), [table, id]);
  const [edited, setEdited] = useState(null);
  const r = edited ?? record.data;
  const { body, profile, ...fields } = r ?? {};
  return html`<section aria-labelledby="record-title">
    <h1 id="record-title">${table} #${id}</h1>
    <p><a href=${href(`/data/${table}`)}>← all ${table}</a></p>
    <${ErrorText} error=${record.error} />
    ${r && html`<${KeyValues} entries=${Object.entries(fields).map(([k, v]) => [k, /At$/.test(k) ? fmtTime(v) : asIs(v)])} />`}
    ${r && table === "users" && session.role === "writer" && html`<${UserForm} user=${r} onSaved=${setEdited} />`}
    ${
      profile !== undefined &&
      html`<h2>Profile</h2>
        <pre>${JSON.stringify(profile, null, 2)}</pre>`
    }
    ${
      body !== undefined &&
      html`<h2>Body</h2>
        <pre class="body">${body}</pre>`
    }
  </section>`;
}
