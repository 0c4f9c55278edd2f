// Trove web UI: one page, hash routes, and the JSON API of Docs/api.md, nothing else.
// Invariant: data reaches the DOM only as text nodes or through h()'s attribute rules
// (no markup strings, no on* attributes, href only to '#...' or '/api/...'; a model or dataset card's
// links may also go to http(s) URLs, set by cardLink alone).
'use strict';

const API = '/api/v1';
const enc = encodeURIComponent;
const SVGNS = 'http://www.w3.org/2000/svg';
const PAGE = 100;     // runs per page of the runs table
const PARALLEL = 8;   // API requests one view keeps in flight

let session = null;   // {project, role, csrf} of the cookie session
let page = null;      // the current route: {abort, cleanups, alive()}

// ---------- DOM ----------

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'open']);
const safeHref = v => (typeof v === 'string' && (v.startsWith('#') || v.startsWith('/api/')) ? v : null);

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) { if (typeof v === 'function') el.addEventListener(k.slice(2), v); continue; }
    if (k === 'href') { const u = safeHref(v); if (u) el.setAttribute('href', u); continue; }
    if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}
function add(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) add(el, c);
    else el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}
/** h('a', {href: '#/'}, 'text', node, [more]): strings become text nodes, never markup. */
const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
const svg = (tag, attrs, ...children) => build(document.createElementNS(SVGNS, tag), attrs, children);

const section = (title, ...children) => h('section', null, h('h2', null, title), ...children);
const muted = text => h('p', { class: 'muted' }, text);
function table(heads, rows, attrs) {
  return h('table', attrs, h('thead', null, h('tr', null, heads.map(x => (x instanceof Node ? x : h('th', null, x))))),
    h('tbody', null, rows.map(r => (r instanceof Node ? r : h('tr', null, r.map(c => (c instanceof Node && c.tagName === 'TD' ? c : h('td', null, c))))))));
}
const tableOrNone = (heads, rows, attrs) => (rows.length ? table(heads, rows, attrs) : muted('none'));
function dl(pairs) {
  return h('dl', { class: 'meta' }, pairs.filter(([, v]) => v != null && v !== '').map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}
const kv = obj => Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b));

function setStatus(text, kind) {
  const el = document.getElementById('status');
  el.textContent = text || '';
  el.className = kind || '';
}
function show(ctx, ...nodes) {
  if (!ctx.alive()) throw new DOMException('route changed', 'AbortError');
  document.getElementById('app').replaceChildren(...nodes.flat().filter(Boolean));
}
const ready = name => { document.body.dataset.ready = name; };

// ---------- formatting ----------

function fmtSize(n) {
  if (n == null || !Number.isFinite(+n)) return '';
  let x = +n, i = 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i ? `${x.toFixed(x < 10 ? 1 : 0)} ${units[i]}` : `${x} B`;
}
function toDate(v) {
  if (v == null || v === '') return null;
  const d = typeof v === 'number' ? new Date(v < 1e11 ? v * 1000 : v) : new Date(v); // numbers: Unix seconds
  return isNaN(d) ? null : d;
}
function fmtTime(v) {
  const d = toDate(v);
  if (!d) return v == null ? '' : String(v);
  const p = x => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
function fmtDur(sec) {
  if (sec == null || !Number.isFinite(+sec)) return '';
  const s = Math.round(+sec), p = x => String(x).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${p(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${p(Math.floor((s % 3600) / 60))}m`;
}
function fmtNum(v) {
  if (v == null || v === '') return '';
  const n = +v;
  if (!Number.isFinite(n)) return String(v);
  if (Number.isInteger(n) && Math.abs(n) < 1e9) return String(n);
  const a = Math.abs(n);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? n.toExponential(3) : String(+n.toPrecision(4));
}
const shortId = id => String(id ?? '').slice(0, 12); // object ids (64 hex); run and sweep ids are shown whole
const statusBadge = (st, attrs) => h('span', { class: `status st-${st}`, ...attrs }, st || '');
const parseJSON = t => { try { return JSON.parse(t); } catch { return null; } };

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/** fetch under /api/v1 with the session cookie; state changes carry the CSRF header. A 401 sends to #/login. */
async function api(path, { method = 'GET', body, headers = {}, raw = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers }, signal: page?.abort.signal };
  if (method !== 'GET' && session) init.headers['X-CSRF-Token'] = session.csrf;
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const r = await fetch(API + path, init);
  if (r.status === 401 && !(method === 'POST' && path === '/session')) {
    session = null;
    go('#/login');
    throw new ApiError(401, 'unauthorized', 'please sign in');
  }
  if (!r.ok) {
    const e = (await r.json().catch(() => null))?.error || {};
    const msg = [e.message || `${r.status} ${r.statusText}`, e.hint].filter(Boolean).join(' — ');
    throw new ApiError(r.status, e.code || 'http', msg);
  }
  if (raw) return r;
  return r.status === 204 ? null : r.json();
}
const papi = (P, path, opts) => api(`/projects/${enc(P)}${path}`, opts);

/** Runs fn over items with at most n calls in flight; results in item order. */
async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i], i); } };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

function showError(e) {
  if (e?.name === 'AbortError' || e?.status === 401) return;
  setStatus(e?.message || String(e), 'error');
  console.error(e);
}

/** Server-Sent Events of project P for the current route; closed when the route changes. */
function events(ctx, P, handlers) {
  if (typeof EventSource !== 'function') return;
  const es = new EventSource(`${API}/projects/${enc(P)}/events`, { withCredentials: true });
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, ev => { const d = parseJSON(ev.data); if (d && ctx.alive()) fn(d); });
  }
  ctx.cleanups.push(() => es.close());
}

// ---------- routes ----------

const link = {
  project: P => `#/p/${enc(P)}`,
  tree: (P, rev, path = '') => `#/p/${enc(P)}/files/${enc(rev)}/${path.split('/').filter(Boolean).map(enc).join('/')}`,
  file: (P, rev, path) => `#/p/${enc(P)}/file/${enc(rev)}/${path.split('/').map(enc).join('/')}`,
  runs: (P, o = {}) => {
    const q = new URLSearchParams();
    for (const k of ['filter', 'q', 'sort']) if (o[k]) q.set(k, o[k]);
    const s = q.toString();
    return `#/p/${enc(P)}/runs${s ? `?${s}` : ''}`;
  },
  run: (P, id) => `#/p/${enc(P)}/runs/${enc(id)}`,
  compare: (P, ids) => `#/p/${enc(P)}/compare?runs=${ids.map(enc).join(',')}`,
  sweep: (P, id) => `#/p/${enc(P)}/sweeps/${enc(id)}`,
  members: P => `#/p/${enc(P)}/members`,
  registry: (P, kind, q) => `#/p/${enc(P)}/${kind}s${q ? `?q=${enc(q)}` : ''}`, // kind: 'model' | 'dataset'
  regName: (P, kind, name) => `#/p/${enc(P)}/${kind}s/${enc(name)}`,
  regVersion: (P, kind, name, n) => `#/p/${enc(P)}/${kind}s/${enc(name)}/v${n}`,
  download: (P, rev, path) => `${API}/projects/${enc(P)}/file/${enc(rev)}?path=${enc(path)}&download=1`,
};

function go(hash) {
  delete document.body.dataset.ready; // synchronously, so a waiting test never sees the previous page's flag
  if (location.hash === hash) route(); else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const qi = raw.indexOf('?');
  const parts = (qi < 0 ? raw : raw.slice(0, qi)).split('/').slice(1)
    .map(p => { try { return decodeURIComponent(p); } catch { return p; } });
  return { parts, query: new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1)) };
}

async function route() {
  if (page) { page.abort.abort(); for (const f of page.cleanups) { try { f(); } catch { /* closing */ } } }
  const ctx = { abort: new AbortController(), cleanups: [], alive: () => page === ctx };
  page = ctx;
  delete document.body.dataset.ready;
  setStatus('loading…');
  const { parts, query } = parseHash();
  try {
    if (parts[0] === 'login') { renderNav(null); await loginPage(ctx); }
    else {
      if (!session) session = await api('/session');
      const P = parts[0] === 'p' && parts[1] ? parts[1] : null;
      renderNav(P);
      await dispatch(ctx, parts, query);
    }
    if (ctx.alive() && document.getElementById('status').className !== 'error') setStatus('');
  } catch (e) {
    if (!ctx.alive() || e?.name === 'AbortError' || e?.status === 401) return;
    showError(e);
    document.getElementById('app').replaceChildren(h('p', { class: 'error' }, e.message || String(e)));
    ready('error');
  }
}

function dispatch(ctx, parts, query) {
  const [a, P, b, c, ...rest] = parts;
  if (!a) return projectsPage(ctx);
  if (a === 'p' && P) {
    if (!b) return projectPage(ctx, P);
    if (b === 'files') return treePage(ctx, P, c || 'HEAD', rest.filter(Boolean).join('/'));
    if (b === 'file' && c) return filePage(ctx, P, c, rest.join('/'));
    if (b === 'runs' && !c) return runsPage(ctx, P, query);
    if (b === 'runs') return runPage(ctx, P, c);
    if (b === 'compare') return comparePage(ctx, P, query);
    if (b === 'sweeps' && c) return sweepPage(ctx, P, c);
    if (b === 'members') return membersPage(ctx, P);
    if (b === 'models' || b === 'datasets') {
      const kind = b.slice(0, -1);
      if (!c) return registryPage(ctx, P, kind, query);
      if (!rest[0]) return registryNamePage(ctx, P, kind, c);
      return versionPage(ctx, P, kind, c, rest[0]);
    }
  }
  throw new ApiError(404, 'not_found', 'no such page');
}

function renderNav(P) {
  const nav = document.getElementById('nav'), who = document.getElementById('who');
  const p = P || session?.project;
  nav.replaceChildren(...(p && session ? [
    h('a', { class: 'project', href: link.project(p) }, p),
    h('a', { href: link.runs(p) }, 'Runs'),
    h('a', { href: link.tree(p, 'HEAD') }, 'Files'),
    h('a', { id: 'nav-models', href: link.registry(p, 'model') }, 'Models'),
    h('a', { id: 'nav-datasets', href: link.registry(p, 'dataset') }, 'Datasets'),
    session.role === 'admin' && session.project === p ? h('a', { id: 'nav-members', href: link.members(p) }, 'Members') : null,
  ].filter(Boolean) : []));
  who.replaceChildren(...(session ? [
    h('span', { class: 'muted' }, `${session.project} · ${session.role}`),
    h('a', { id: 'logout', href: '#/login', onclick: logout }, 'Log out'),
  ] : []));
}

async function logout(ev) {
  ev.preventDefault();
  try { await api('/session', { method: 'DELETE' }); } catch (e) { showError(e); }
  session = null;
  go('#/login');
}

// ---------- pages: session, projects, files ----------

async function loginPage(ctx) {
  const token = h('input', { id: 'login-token', type: 'password', autocomplete: 'current-password', placeholder: 'trv_…', required: true, size: 40 });
  const submit = h('button', { id: 'login-submit', type: 'submit' }, 'Sign in');
  const form = h('form', {
    class: 'login',
    onsubmit: async ev => {
      ev.preventDefault();
      submit.disabled = true;
      setStatus('signing in…');
      try {
        session = await api('/session', { method: 'POST', body: { token: token.value.trim() } });
        setStatus('');
        go(link.project(session.project));
      } catch (e) { if (e.name !== 'AbortError') setStatus(e.message, 'error'); } finally { submit.disabled = false; }
    },
  }, h('h1', null, 'Sign in'), h('label', { for: 'login-token' }, 'Access token'), token, submit,
  muted('A token made with `trove daemon token create`; it is exchanged for a session cookie.'));
  show(ctx, form);
  token.focus();
  ready('login');
}

async function projectsPage(ctx) {
  const d = await api('/projects');
  show(ctx, h('h1', null, 'Projects'), tableOrNone(['name', 'description', 'role'],
    (d.projects || []).map(p => [h('a', { href: link.project(p.name) }, p.name), p.description || '', p.role || ''])));
  ready('projects');
}

async function projectPage(ctx, P) {
  const d = await papi(P, '');
  const refName = n => n.replace(/^(heads|tags)\//, '');
  const refs = list => tableOrNone(['name', 'commit'], (list || []).map(r => [
    h('a', { href: link.tree(P, r.name) }, refName(r.name)),
    h('a', { class: 'mono', href: link.tree(P, r.commit), title: r.commit }, shortId(r.commit))]));
  const runs = d.runs || { count: 0, recent: [] };
  show(ctx,
    h('h1', null, d.name || P), d.description ? h('p', { class: 'desc' }, d.description) : null,
    h('div', { class: 'columns' }, section('Branches', refs(d.branches)), section('Tags', refs(d.tags))),
    section(`Recent runs (${runs.count} in all)`, runsMini(P, runs.recent || []), h('p', null, h('a', { href: link.runs(P) }, 'All runs →'))),
    section('Sweeps', sweepsTable(P, d.sweeps || [])));
  ready('project');
}

function runsMini(P, runs) {
  return tableOrNone(['id', 'name', 'status', 'start', 'time', 'launcher'], runs.map(r => [
    h('a', { class: 'run-link mono', href: link.run(P, r.id), title: r.id }, r.id),
    r.name || '', statusBadge(r.status), fmtTime(r.start), fmtDur(r.seconds), r.launcher || '']), { class: 'dense' });
}

function sweepsTable(P, sweeps) {
  return tableOrNone(['id', 'size', 'launcher', 'time', 'command', 'early stop', 'status'], sweeps.map(s => [
    h('a', { class: 'mono', href: link.sweep(P, s.id), title: s.id }, s.id), String(s.size ?? ''), s.launcher || '',
    fmtTime(s.time), h('code', null, s.command || ''), s.early_stop || '',
    kv(s.counts).map(([k, n]) => [statusBadge(k), ` ${n} `])]), { class: 'dense' });
}

function breadcrumb(P, rev, path, leafIsFile) {
  const parts = path.split('/').filter(Boolean), out = [h('a', { href: link.tree(P, rev) }, `${P} @ ${rev}`)];
  parts.forEach((name, i) => {
    const sub = parts.slice(0, i + 1).join('/');
    out.push(' / ', i === parts.length - 1 && leafIsFile ? h('strong', null, name) : h('a', { href: link.tree(P, rev, sub) }, name));
  });
  return h('nav', { class: 'crumbs' }, out);
}

async function treePage(ctx, P, rev, path) {
  const d = await papi(P, `/tree/${enc(rev)}${path ? `?path=${enc(path)}` : ''}`);
  const rows = (d.entries || []).map(e => h('tr', { class: `kind-${e.kind}` },
    h('td', null, h('a', { class: 'entry', href: e.kind === 'directory' ? link.tree(P, rev, e.path) : link.file(P, rev, e.path) },
      e.kind === 'directory' ? `${e.name}/` : e.name)),
    h('td', null, e.kind), h('td', { class: 'num', title: `${e.size} bytes` }, fmtSize(e.size)),
    h('td', { class: 'mono muted', title: e.id }, shortId(e.id))));
  if (path) rows.unshift(h('tr', null, h('td', null, h('a', { href: link.tree(P, rev, path.split('/').slice(0, -1).join('/')) }, '../')), h('td'), h('td'), h('td')));
  show(ctx, breadcrumb(P, rev, path, false),
    h('p', { class: 'muted' }, 'commit ', h('span', { class: 'mono' }, d.commit || '')),
    rows.length ? table(['name', 'kind', 'size', 'id'], rows, { id: 'files-table', class: 'dense' }) : muted('empty directory'));
  ready('files');
}

async function filePage(ctx, P, rev, path) {
  const dir = path.split('/').slice(0, -1).join('/'), name = path.split('/').pop();
  const [tree, hist] = await Promise.all([
    papi(P, `/tree/${enc(rev)}${dir ? `?path=${enc(dir)}` : ''}`),
    papi(P, `/commits?rev=${enc(rev)}&path=${enc(path)}&limit=50`).catch(e => { if (e.name === 'AbortError') throw e; return { commits: [], error: e.message }; }),
  ]);
  const entry = (tree.entries || []).find(e => e.name === name) || {};
  const preview = h('pre', { class: 'preview', id: 'file-preview' });
  show(ctx, breadcrumb(P, rev, path, true), h('h1', { id: 'file-name' }, name),
    dl([['size', entry.size != null ? `${fmtSize(entry.size)} (${entry.size} bytes)` : ''], ['kind', entry.kind], ['blob', entry.id], ['revision', rev]]),
    h('p', null, h('a', { id: 'file-download', class: 'button', href: link.download(P, rev, path) }, 'Download')),
    section('History', hist.error ? muted(hist.error) : tableOrNone(['commit', 'time', 'author', 'kind', 'message'], hist.commits.map(c => [
      h('a', { class: 'mono', href: link.file(P, c.id, path), title: c.id }, shortId(c.id)), fmtTime(c.time), c.author || '', c.kind || '',
      (c.message || '').split('\n')[0]]), { class: 'dense' })),
    section('Preview (first 64 KiB)', preview));
  ready('file');
  if (entry.kind === 'directory' || !entry.size) { preview.textContent = entry.size === 0 ? '(empty file)' : ''; return; }
  try { // a Range read of the head; shown only when it looks like text, always as text
    const r = await api(`/projects/${enc(P)}/file/${enc(rev)}?path=${enc(path)}`, { raw: true, headers: { Range: 'bytes=0-65535', Accept: '*/*' } });
    const bytes = new Uint8Array(await r.arrayBuffer()).subarray(0, 65536);
    preview.textContent = bytes.includes(0) ? '(binary file)' : new TextDecoder().decode(bytes);
  } catch (e) { if (e.name !== 'AbortError') preview.textContent = `(no preview: ${e.message})`; }
}

// ---------- runs table ----------

const runsColumns = new Map(); // P -> {cols: Set of 'params.x'/'metrics.y', touched}

/** 'params.lr < 0.01, status = ok and x>1' -> [{field, expr: 'params.lr<0.01'}, ...] */
function parseFilters(text) {
  return text.split(/\s*,\s*|\s+and\s+/i).map(x => x.trim()).filter(Boolean).map(x => {
    const m = /^(.+?)\s*(<=|>=|==|!=|<|>|=)\s*(.*)$/.exec(x);
    return m ? { field: m[1].trim(), expr: `${m[1].trim()}${m[2]}${m[3].trim()}` } : { field: '', expr: x };
  });
}
const splitKey = k => { const i = k.indexOf('.'); return [k.slice(0, i), k.slice(i + 1)]; };

async function runsPage(ctx, P, query) {
  const filterText = query.get('filter') || '', q = query.get('q') || '', sort = query.get('sort') || '';
  const filters = parseFilters(filterText);
  const sortKey = sort.replace(/^-/, '');
  const wanted = new Set([...filters.map(f => f.field), sortKey].filter(f => /^(params|metrics)\./.test(f)));
  if (!runsColumns.has(P)) runsColumns.set(P, { cols: new Set(), touched: false });
  const st = runsColumns.get(P);
  const rows = new Map(); // run id -> {tr, r}
  let data = { runs: [], total: 0, next_cursor: null, columns: { params: [], metrics: [] } }, cursor = null, shownCols = [];
  const cursors = []; // cursors of the pages before this one

  const filterIn = h('input', { id: 'runs-filter', type: 'text', value: filterText, size: 44, placeholder: 'params.lr < 0.01, status = succeeded',
    title: 'FIELD OP VALUE, several joined by "," or "and"; FIELD: params.NAME, metrics.NAME, status, name, id, start, seconds, launcher; OP: < <= > >= = !=' });
  const searchIn = h('input', { id: 'runs-q', type: 'search', value: q, placeholder: 'search id, name, command' });
  const apply = ev => { ev?.preventDefault(); go(link.runs(P, { filter: filterIn.value.trim(), q: searchIn.value.trim(), sort })); };
  const chooser = h('div', { class: 'chooser' });
  const thead = h('thead'), tbody = h('tbody');
  const total = h('span', { id: 'runs-total' }, '…');
  const range = h('span', { class: 'muted' });
  const prev = h('button', { id: 'runs-prev', type: 'button', disabled: true, onclick: () => load(cursors.pop() ?? null).catch(showError) }, '← Prev');
  const next = h('button', { id: 'runs-next', type: 'button', disabled: true, onclick: () => { cursors.push(cursor); load(data.next_cursor).catch(showError); } }, 'Next →');
  const compare = ids => (ids.length ? go(link.compare(P, ids)) : setStatus('select runs to compare first', 'error'));

  show(ctx, h('h1', null, 'Runs'),
    h('form', { class: 'toolbar', onsubmit: apply }, filterIn, searchIn, h('button', { id: 'runs-apply', type: 'submit' }, 'Apply'),
      filterText || q ? h('a', { href: link.runs(P, { sort }) }, 'clear') : null,
      h('details', { class: 'columns-menu' }, h('summary', null, 'Columns'), chooser)),
    h('div', { class: 'toolbar' },
      h('button', { id: 'compare-button', type: 'button', onclick: () => compare([...tbody.querySelectorAll('input.run-select:checked')].map(b => b.value)) }, 'Compare selected'),
      h('button', { id: 'compare-page', type: 'button', onclick: () => compare(data.runs.map(r => r.id)) }, 'Compare all on this page'),
      h('span', { class: 'spacer' }), range, h('span', null, total, ' runs'), prev, next),
    h('div', { class: 'scroll' }, h('table', { id: 'runs-table', class: 'dense runs' }, thead, tbody)));

  function visibleColumns() {
    const avail = [...data.columns.params.map(n => `params.${n}`), ...data.columns.metrics.map(n => `metrics.${n}`)];
    if (!st.touched) st.cols = new Set([...data.columns.params.slice(0, 4).map(n => `params.${n}`), ...data.columns.metrics.slice(0, 4).map(n => `metrics.${n}`)]);
    return avail.filter(k => st.cols.has(k) || wanted.has(k));
  }

  function renderChooser() {
    const group = (kind, names) => h('fieldset', null, h('legend', null, kind), names.map(n => {
      const key = `${kind}.${n}`;
      return h('label', null, h('input', { type: 'checkbox', class: 'col-choice', value: key, checked: st.cols.has(key) || wanted.has(key),
        onchange: ev => { st.touched = true; if (ev.target.checked) st.cols.add(key); else st.cols.delete(key); renderTable(); } }), ` ${n}`);
    }));
    chooser.replaceChildren(group('params', data.columns.params), group('metrics', data.columns.metrics));
  }

  function header(key, label, cls) {
    const cur = sort || '-start', dir = cur === key ? 'ascending' : cur === `-${key}` ? 'descending' : null;
    return h('th', { 'data-sort': key, class: `sortable ${cls || ''}`, title: `sort by ${key}`, 'aria-sort': dir,
      onclick: () => go(link.runs(P, { filter: filterText, q, sort: cur === key ? `-${key}` : key })) },
    label, dir ? (dir === 'ascending' ? ' ▲' : ' ▼') : '');
  }

  function cell(r, key) {
    const [kind, name] = splitKey(key), v = r[kind]?.[name];
    return h('td', { 'data-col': key, 'data-value': v, class: kind === 'metrics' ? 'num' : null }, kind === 'metrics' ? fmtNum(v) : v ?? '');
  }

  function row(r, checked) {
    const tr = h('tr', { 'data-run': r.id, class: r.live ? 'live' : null },
      h('td', { class: 'sel' }, h('input', { type: 'checkbox', class: 'run-select', value: r.id, checked, 'aria-label': `select ${r.id}` })),
      h('td', { class: 'mono' }, h('a', { class: 'run-link', href: link.run(P, r.id) }, r.id)),
      h('td', { class: 'name' }, r.name || ''),
      h('td', { 'data-col': 'status' }, statusBadge(r.status)),
      h('td', { 'data-col': 'launcher' }, r.launcher || ''),
      h('td', null, fmtTime(r.start)),
      h('td', { class: 'num', 'data-col': 'seconds' }, fmtDur(r.seconds)),
      shownCols.map(k => cell(r, k)));
    rows.set(r.id, { tr, r });
    return tr;
  }

  function renderTable() {
    shownCols = visibleColumns();
    const all = h('input', { type: 'checkbox', title: 'select all on this page',
      onchange: ev => tbody.querySelectorAll('input.run-select').forEach(b => { b.checked = ev.target.checked; }) });
    thead.replaceChildren(h('tr', null, h('th', { class: 'sel' }, all), header('id', 'id'), header('name', 'name'), header('status', 'status'),
      h('th', null, 'launcher'), header('start', 'start'), header('seconds', 'time', 'num'),
      shownCols.map(k => { const [kind, n] = splitKey(k); return header(k, n, kind === 'metrics' ? 'num metric' : 'param'); })));
    const frag = document.createDocumentFragment();
    rows.clear();
    for (const r of data.runs) frag.appendChild(row(r, false));
    tbody.replaceChildren(frag);
    if (!data.runs.length) tbody.appendChild(h('tr', null, h('td', { colspan: 7 + shownCols.length, class: 'muted' }, 'no runs match')));
  }

  async function load(c) {
    delete document.body.dataset.ready;
    setStatus('loading…');
    const params = new URLSearchParams();
    for (const f of filters) params.append('filter', f.expr);
    if (q) params.set('q', q);
    if (sort) params.set('sort', sort);
    params.set('limit', String(PAGE));
    if (c) params.set('cursor', c);
    const d = await papi(P, `/runs?${params}`);
    data = { ...d, columns: { params: d.columns?.params || [], metrics: d.columns?.metrics || [] } };
    cursor = c;
    renderChooser();
    renderTable();
    total.textContent = String(d.total ?? data.runs.length);
    const first = cursors.length * PAGE;
    range.textContent = data.runs.length ? `${first + 1}–${first + data.runs.length} of` : '';
    prev.disabled = !cursors.length;
    next.disabled = !data.next_cursor;
    setStatus('');
    ready('runs');
  }

  function update(id, change) { // a live change of one visible run: that row alone is rebuilt
    const cur = rows.get(id);
    if (!cur) return;
    const r = change(cur.r);
    const fresh = row(r, cur.tr.querySelector('input.run-select').checked);
    if (r.status !== cur.r.status) fresh.classList.add('flash');
    cur.tr.replaceWith(fresh);
  }
  events(ctx, P, {
    run: r => update(r.id, old => ({ ...old, ...r })),
    metrics: m => update(m.run, old => {
      const metrics = { ...old.metrics };
      for (const p of m.points || []) metrics[p.name] = p.value;
      return { ...old, metrics };
    }),
  });
  await load(null).catch(e => { // a bad filter: keep the page so that it can be corrected
    if (e.name === 'AbortError' || e.status === 401) throw e;
    showError(e);
    tbody.replaceChildren(h('tr', null, h('td', { class: 'error' }, e.message)));
    ready('error');
  });
}

// ---------- charts (SVG; coordinates are numbers only) ----------

function niceTicks(lo, hi, n = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** A scale maps a value to 0..1 (or null when missing) and lists its ticks. */
function linearScale(lo, hi) {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.05 || 1; lo -= d; hi += d; }
  return { pos: v => (v == null || v === '' || !Number.isFinite(+v) ? null : (+v - lo) / (hi - lo)),
    ticks: niceTicks(lo, hi).map(v => [(v - lo) / (hi - lo), fmtNum(v)]) };
}
function logScale(lo, hi) {
  const a = Math.log10(lo), b = Math.log10(hi), ticks = [];
  for (let e = Math.ceil(a); e <= Math.floor(b); e++) ticks.push([(e - a) / (b - a), fmtNum(10 ** e)]);
  return { log: true, pos: v => (v == null || v === '' || !(+v > 0) ? null : (Math.log10(+v) - a) / (b - a)), ticks };
}
function catScale(values) {
  const cats = [...new Set(values.map(String))].sort((x, y) => x.localeCompare(y, undefined, { numeric: true }));
  const at = new Map(cats.map((c, i) => [c, cats.length === 1 ? 0.5 : i / (cats.length - 1)]));
  const every = Math.ceil(cats.length / 12);
  return { cats, pos: v => (v == null ? null : at.get(String(v)) ?? null),
    ticks: cats.filter((_, i) => i % every === 0 || i === cats.length - 1).map(c => [at.get(c), c.length > 14 ? `${c.slice(0, 13)}…` : c]) };
}
/** Numeric when every present value is a number: log when all positive and max/min > 100; else categories. */
function autoScale(values) {
  const present = values.filter(v => v != null && v !== '');
  const nums = present.map(Number);
  if (!present.length) return linearScale(0, 1);
  if (!nums.every(Number.isFinite)) return catScale(present);
  let lo = Infinity, hi = -Infinity;
  for (const n of nums) { if (n < lo) lo = n; if (n > hi) hi = n; }
  return lo > 0 && hi / lo > 100 ? logScale(lo, hi) : linearScale(lo, hi);
}

/** An SVG with axes for x and y scales; returns {el, X, Y} mapping scale positions to pixels. */
function frame(width, height, xs, ys, xLabel, yLabel, inset = 0) {
  const m = { l: 58, r: 14, t: 12, b: 34 }, k = 1 - 2 * inset; // inset: room so edge points are not cut
  const X = t => m.l + (inset + t * k) * (width - m.l - m.r), Y = t => height - m.b - (inset + t * k) * (height - m.t - m.b);
  const el = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' });
  const g = svg('g', { class: 'axes' });
  for (const [t, label] of ys.ticks) {
    g.appendChild(svg('line', { class: 'grid', x1: m.l, x2: width - m.r, y1: Y(t), y2: Y(t) }));
    g.appendChild(svg('text', { x: m.l - 5, y: Y(t) + 3, 'text-anchor': 'end' }, label));
  }
  for (const [t, label] of xs.ticks) {
    g.appendChild(svg('line', { class: 'tick', x1: X(t), x2: X(t), y1: height - m.b, y2: height - m.b + 4 }));
    g.appendChild(svg('text', { x: X(t), y: height - m.b + 15, 'text-anchor': 'middle' }, label));
  }
  g.appendChild(svg('path', { class: 'axis', d: `M${m.l} ${m.t}V${height - m.b}H${width - m.r}` }));
  if (xLabel) g.appendChild(svg('text', { class: 'label', x: X(1), y: height - 3, 'text-anchor': 'end' }, xLabel));
  if (yLabel) g.appendChild(svg('text', { class: 'label', x: 4, y: m.t - 2 }, yLabel));
  el.appendChild(g);
  return { el, X, Y };
}

/** One path per series ({steps, values, color, label}); 200 series of 200 points stay cheap. */
function lineChart(series, { width = 520, height = 230, xLabel = 'step', yLabel = '' } = {}) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) {
    for (let i = 0; i < s.values.length; i++) {
      const x = s.steps[i], y = s.values[i];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
  }
  if (x0 > x1) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  const xs = linearScale(x0, x1), ys = linearScale(y0, y1);
  const f = frame(width, height, xs, ys, xLabel, yLabel);
  const lines = svg('g', { class: 'lines' });
  for (const s of series) {
    const d = [];
    let pen = false;
    for (let i = 0; i < s.values.length; i++) {
      const x = s.steps[i], y = s.values[i];
      if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
      d.push(pen ? 'L' : 'M', f.X(xs.pos(x)).toFixed(1), ' ', f.Y(ys.pos(y)).toFixed(1));
      pen = true;
    }
    if (d.length === 4) d.push('h0.5'); // a single point stays visible
    lines.appendChild(svg('path', { class: 'line', d: d.join(''), stroke: s.color || null }, s.label ? svg('title', null, s.label) : null));
  }
  f.el.appendChild(lines);
  if (!series.some(s => s.values.length)) f.el.appendChild(svg('text', { class: 'empty', x: width / 2, y: height / 2, 'text-anchor': 'middle' }, 'no points'));
  return f.el;
}

/** Parallel coordinates: axes [{name, scale, values}] (values per run), lines coloured by t in 0..1 (null: grey). */
function parallelChart(axes, runs, colorT, { width = 1180, height = 330 } = {}) {
  const m = { l: 40, r: 60, t: 28, b: 26 };
  const xAt = i => m.l + (axes.length === 1 ? 0.5 : i / (axes.length - 1)) * (width - m.l - m.r);
  const yAt = t => height - m.b - t * (height - m.t - m.b);
  const el = svg('svg', { class: 'chart parallel', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' });
  const lines = svg('g', { class: 'lines' });
  runs.forEach((r, j) => {
    const d = [];
    axes.forEach((a, i) => { const t = a.scale.pos(a.values[j]); if (t != null) d.push(d.length ? 'L' : 'M', xAt(i).toFixed(1), ' ', yAt(t).toFixed(1)); });
    const t = colorT[j];
    lines.appendChild(svg('path', { class: 'line', d: d.join(''), stroke: t == null ? '#bbb' : ramp(t) }, svg('title', null, r.name ? `${r.name} (${r.id})` : r.id)));
  });
  el.appendChild(lines);
  axes.forEach((a, i) => {
    const g = svg('g', { class: 'axes' });
    g.appendChild(svg('line', { class: 'axis', x1: xAt(i), x2: xAt(i), y1: yAt(0), y2: yAt(1) }));
    g.appendChild(svg('text', { class: 'label', x: xAt(i), y: m.t - 14, 'text-anchor': 'middle' }, a.name + (a.scale.log ? ' (log)' : '')));
    for (const [t, label] of a.scale.ticks) g.appendChild(svg('text', { x: xAt(i) + 4, y: yAt(t) + 3 }, label));
    el.appendChild(g);
  });
  return el;
}

/** Viridis-like ramp, t in 0..1 -> rgb(). */
function ramp(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
const runColor = i => `hsl(${Math.round(i * 137.508) % 360},70%,${i % 2 ? 38 : 48}%)`; // golden angle: neighbours differ

// ---------- run page ----------

async function runPage(ctx, P, id) {
  const r = await papi(P, `/runs/${enc(id)}`);
  const base = `/runs/${enc(id)}`;
  const canWrite = session && (session.role === 'write' || session.role === 'admin');
  const statusEl = statusBadge(r.status, { id: 'run-status' });
  const note = h('span', { class: 'muted', id: 'run-note' });
  const stop = r.status === 'running' && canWrite ? h('button', {
    id: 'stop-button', type: 'button', class: 'danger',
    onclick: async () => {
      stop.disabled = true;
      try {
        await papi(P, `${base}/cancel`, { method: 'POST', body: { reason: 'stopped from the web UI' } });
        stop.textContent = 'Stopping…';
        note.textContent = ' cancel requested; the run stops at its next live update';
      } catch (e) { stop.disabled = false; showError(e); if (e.status === 409) route(); }
    },
  }, 'Stop') : null;

  let diffBox = null;
  const code = r.git_commit ? [h('span', { class: 'mono' }, r.git_commit), r.code_dirty ? [' ', h('span', { class: 'badge warn' }, 'dirty'), ' ',
    h('button', { id: 'diff-toggle', type: 'button', class: 'small', onclick: async ev => {
      if (diffBox) { diffBox.hidden = !diffBox.hidden; ev.target.textContent = diffBox.hidden ? 'show diff' : 'hide diff'; return; }
      try {
        const text = await (await papi(P, `${base}/diff`, { raw: true, headers: { Accept: 'text/plain' } })).text();
        diffBox = h('pre', { class: 'diff', id: 'run-diff' }, text);
        ev.target.closest('dd').appendChild(diffBox);
        ev.target.textContent = 'hide diff';
      } catch (e) { showError(e); }
    } }, 'show diff')] : null] : null;

  const metricNames = r.metric_names || Object.keys(r.metrics || {});
  const charts = new Map(); // name -> {box, steps, values}
  const chartGrid = h('div', { class: 'charts' }, metricNames.map(name => {
    const c = { box: h('div', { class: 'chartbox' }, h('h3', null, name), h('div', { class: 'muted' }, 'loading…')), steps: [], values: [] };
    charts.set(name, c);
    return c.box;
  }));
  const drawChart = (name, c) => {
    let lo = Infinity, hi = -Infinity;
    for (const v of c.values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const last = c.values.length ? c.values[c.values.length - 1] : null;
    c.box.replaceChildren(h('h3', null, name, h('span', { class: 'muted' }, c.values.length ? `  last ${fmtNum(last)} · min ${fmtNum(lo)} · max ${fmtNum(hi)}` : '')),
      lineChart([{ steps: c.steps, values: c.values }], { yLabel: name }));
  };
  const loadCharts = (names = metricNames) => pool(names.map(n => [n, charts.get(n)]), PARALLEL, async ([name, c]) => {
    try {
      const d = await papi(P, `${base}/metrics/${enc(name)}?points=1000`);
      c.steps = d.steps || []; c.values = d.values || [];
      drawChart(name, c);
    } catch (e) { if (e.name === 'AbortError') throw e; c.box.replaceChildren(h('h3', null, name), muted(e.message)); }
  });

  const logs = ['stdout', 'stderr'].map(stream => ({ stream, size: 0, text: '', pre: h('pre', { class: 'log', id: `log-${stream}` }, '…') }));
  const loadLogs = follow => pool(logs, 2, async l => {
    try {
      const d = await papi(P, `${base}/logs?stream=${l.stream}&${follow ? `offset=${l.size}` : 'tail=65536'}`);
      const atEnd = l.pre.scrollTop + l.pre.clientHeight >= l.pre.scrollHeight - 4;
      const text = (follow ? l.text : '') + (d.text || '');
      l.text = text.length > 262144 ? text.slice(-262144) : text; // the page keeps the last 256 Ki characters
      l.pre.textContent = l.text || `(no ${l.stream})`;
      l.size = d.size ?? l.size;
      if (atEnd) l.pre.scrollTop = l.pre.scrollHeight;
    } catch (e) { if (e.name === 'AbortError') throw e; if (!follow) l.pre.textContent = `(no ${l.stream}: ${e.message})`; }
  });

  const dlink = path => h('a', { href: link.download(P, `runs/${r.id}`, path) }, 'download');
  show(ctx,
    h('h1', null, h('span', { id: 'run-name' }, r.name || r.id)),
    dl([['id', h('span', { class: 'mono', id: 'run-id' }, r.id)], ['status', [statusEl, ' ', stop, note]], ['start', fmtTime(r.start)],
      ['duration', h('span', { id: 'run-seconds' }, fmtDur(r.seconds))], ['command', r.command ? h('code', { id: 'run-command' }, r.command) : ''],
      ['launcher', r.launcher], ['sweep', r.sweep ? h('a', { href: link.sweep(P, r.sweep) }, r.sweep) : ''], ['host', r.host], ['user', r.user],
      ['exit code', r.exit_code == null ? '' : String(r.exit_code)], ['stopped by', r.stopped_by],
      ['commit', r.commit ? h('a', { class: 'mono', href: link.tree(P, `runs/${r.id}`), title: 'browse the run commit' }, r.commit) : ''],
      ['code', code], ['source', r.source === 'mlflow' ? 'MLflow' : '']]),
    section('Parameters', tableOrNone(['name', 'value'], kv(r.params).map(([k, v]) => [k, h('span', { class: 'mono' }, String(v))]), { class: 'dense kv', id: 'run-params' })),
    section('Metrics', metricNames.length ? chartGrid : muted('none')),
    section('Logs', logs.map(l => h('details', { open: true }, h('summary', null, l.stream), l.pre))),
    section('Inputs', tableOrNone(['name', 'source', 'commit', 'id'], (r.inputs || []).map(i => [i.name || '', i.source || '',
      h('span', { class: 'mono', title: i.commit }, shortId(i.commit)), h('span', { class: 'mono', title: i.id }, shortId(i.id))]), { class: 'dense' })),
    section('Outputs', tableOrNone(['path', 'size', ''], (r.outputs || []).map(o => [h('a', { href: link.file(P, `runs/${r.id}`, o.path) }, o.path),
      h('span', { class: 'num' }, fmtSize(o.size)), dlink(o.path)]), { class: 'dense', id: 'run-outputs' })),
    Object.keys(r.tags || {}).length ? section('Tags', table(['name', 'value'], kv(r.tags).map(([k, v]) => [k, String(v)]), { class: 'dense kv' })) : null,
    section('Environment', Object.keys(r.env || {}).length
      ? h('details', null, h('summary', null, `${Object.keys(r.env).length} variables`), table(['name', 'value'], kv(r.env).map(([k, v]) => [k, h('span', { class: 'mono' }, String(v))]), { class: 'dense kv' }))
      : muted('none')));
  ready('run');
  const first = Promise.all([loadCharts(), loadLogs(false)]);
  if (r.status === 'running') followRun(ctx, P, r, { statusEl, charts, drawChart, loadCharts, loadLogs });
  await first;
}

/** While a run is live: SSE updates it at once; a 2 s poll of GET run covers a missing event stream. */
function followRun(ctx, P, r, ui) {
  let busy = false;
  const changed = x => {
    if (!ctx.alive()) return false;
    if (x.status && x.status !== 'running') { route(); return false; } // ended: show the recorded run
    if ((x.metric_names || []).some(n => !ui.charts.has(n))) { route(); return false; } // a new metric
    const secs = document.getElementById('run-seconds');
    if (secs && x.seconds != null) secs.textContent = fmtDur(x.seconds);
    return true;
  };
  events(ctx, P, {
    run: x => { if (x.id === r.id) changed(x); },
    metrics: m => {
      if (m.run !== r.id) return;
      const touched = new Set();
      for (const p of m.points || []) {
        const c = ui.charts.get(p.name);
        if (c) c.eventAt = Date.now();
        if (c && Number.isFinite(p.step) && (!c.steps.length || p.step > c.steps[c.steps.length - 1])) { c.steps.push(p.step); c.values.push(p.value); touched.add(p.name); }
      }
      for (const name of touched) ui.drawChart(name, ui.charts.get(name));
    },
  });
  const timer = setInterval(async () => {
    if (busy || !ctx.alive()) return;
    busy = true;
    try {
      const x = await papi(P, `/runs/${enc(r.id)}`);
      if (changed(x)) {
        await ui.loadLogs(true);
        // a series that events did not keep up to date (its last value moved): fetched again
        const stale = Object.entries(x.metrics || {}).filter(([n, v]) => {
          const c = ui.charts.get(n);
          return c && !(Date.now() - (c.eventAt || 0) < 5000) && c.values[c.values.length - 1] !== v;
        }).map(([n]) => n);
        if (stale.length) await ui.loadCharts(stale);
      }
    } catch (e) { showError(e); } finally { busy = false; }
  }, 2000);
  ctx.cleanups.push(() => clearInterval(timer));
}

// ---------- compare ----------

async function comparePage(ctx, P, query) {
  const ids = [...new Set((query.get('runs') || '').split(',').map(x => x.trim()).filter(Boolean))];
  if (!ids.length) { show(ctx, h('h1', null, 'Compare'), muted('No runs given: select runs in the runs table.')); ready('compare'); return; }
  setStatus(`loading ${ids.length} runs…`);
  const missing = [];
  const runs = (await pool(ids, PARALLEL, id => papi(P, `/runs/${enc(id)}`).catch(e => {
    if (e.name === 'AbortError' || e.status === 401) throw e;
    missing.push(`${id}: ${e.message}`);
    return null;
  }))).filter(Boolean);
  const metricsOf = r => r.metric_names || Object.keys(r.metrics || {});
  const freq = new Map();
  for (const r of runs) for (const m of metricsOf(r)) freq.set(m, (freq.get(m) || 0) + 1);
  const lossFirst = n => (/loss/i.test(n) ? 0 : 1); // the usual thing to look at, when as common as the others
  const metricNames = [...freq.keys()].sort((a, b) => freq.get(b) - freq.get(a) || lossFirst(a) - lossFirst(b) || a.localeCompare(b));
  const paramNames = [...new Set(runs.flatMap(r => Object.keys(r.params || {})))].sort();
  const varies = n => new Set(runs.map(r => r.params?.[n])).size > 1;
  const scatterParams = [...paramNames.filter(varies), ...paramNames.filter(n => !varies(n))];
  const colors = runs.map((_, i) => runColor(i));

  const pick = (id, names, want) => h('select', { id }, names.map(n => h('option', { value: n, selected: n === want }, n)));
  const metricSel = pick('compare-metric', metricNames, query.get('metric'));
  const paramSel = pick('compare-param', scatterParams, query.get('param'));
  const caption = h('p', { class: 'muted' });
  const curvesBox = h('div', { id: 'compare-curves' }), parallelBox = h('div', { id: 'compare-parallel' }), scatterBox = h('div', { id: 'compare-scatter' });
  const legend = h('div', { class: 'legend' }, runs.map((r, i) => {
    const sw = h('span', { class: 'swatch' });
    sw.style.background = colors[i];
    return h('a', { href: link.run(P, r.id), title: r.id }, sw, r.name || r.id);
  }));
  show(ctx, h('h1', null, `Compare ${runs.length} runs`),
    missing.length ? h('p', { class: 'error' }, `not found: ${missing.join('; ')}`) : null,
    h('div', { class: 'toolbar' }, h('label', null, 'metric ', metricSel), h('label', null, 'parameter ', paramSel)),
    section('Learning curves', curvesBox, legend),
    section('Parameters → last value (parallel coordinates)', parallelBox, caption),
    section('Scatter', scatterBox));

  const cache = new Map(); // `${id}\n${metric}` -> {steps, values} | null
  const curve = (r, metric) => {
    const key = `${r.id}\n${metric}`;
    if (!cache.has(key)) {
      cache.set(key, papi(P, `/runs/${enc(r.id)}/metrics/${enc(metric)}?points=200`).catch(e => {
        if (e.name === 'AbortError') { cache.delete(key); throw e; }
        return null;
      }));
    }
    return cache.get(key);
  };
  let last = [];
  const lastValue = (r, c) => {
    const v = r.metrics?.[metricSel.value];
    if (Number.isFinite(v)) return v;
    return c?.values?.length ? c.values[c.values.length - 1] : null;
  };

  function drawScatter() {
    const metric = metricSel.value, param = paramSel.value;
    const xs = autoScale(runs.map(r => r.params?.[param])), ys = autoScale(last.filter(v => v != null));
    const f = frame(560, 300, xs, ys, param + (xs.log ? ' (log)' : ''), metric, 0.04);
    const dots = svg('g', { class: 'dots' });
    runs.forEach((r, i) => {
      const tx = xs.pos(r.params?.[param]), ty = ys.pos(last[i]);
      if (tx == null || ty == null) return;
      dots.appendChild(svg('circle', { cx: f.X(tx).toFixed(1), cy: f.Y(ty).toFixed(1), r: 3.5, fill: colors[i] },
        svg('title', null, `${r.name || r.id}: ${param}=${r.params?.[param]}, ${metric}=${fmtNum(last[i])}`)));
    });
    f.el.appendChild(dots);
    scatterBox.replaceChildren(f.el);
  }

  async function drawAll() {
    delete document.body.dataset.ready;
    const metric = metricSel.value;
    setStatus(`loading ${metric} of ${runs.length} runs…`);
    const curves = await pool(runs, PARALLEL, r => (metricsOf(r).includes(metric) ? curve(r, metric) : null));
    if (!ctx.alive() || metricSel.value !== metric) return;
    last = runs.map((r, i) => lastValue(r, curves[i]));
    curvesBox.replaceChildren(lineChart(runs.map((r, i) => ({ steps: curves[i]?.steps || [], values: curves[i]?.values || [], color: colors[i], label: r.name ? `${r.name} (${r.id})` : r.id })),
      { width: 1180, height: 340, yLabel: metric }));
    const axes = paramNames.map(n => { const values = runs.map(r => r.params?.[n]); return { name: n, values, scale: autoScale(values) }; });
    const mScale = autoScale(last.filter(v => v != null));
    axes.push({ name: metric, values: last, scale: mScale });
    caption.textContent = `Colour: the last ${metric}, dark purple = low, yellow = high; grey: no value. Hover a line for its run.`;
    parallelBox.replaceChildren(parallelChart(axes, runs, last.map(v => (v == null ? null : mScale.pos(v)))));
    drawScatter();
    setStatus(metric ? '' : 'these runs have no metrics');
    ready('compare');
  }
  metricSel.addEventListener('change', () => drawAll().catch(showError));
  paramSel.addEventListener('change', drawScatter);
  await drawAll();
}

// ---------- sweeps, members ----------

async function sweepPage(ctx, P, id) {
  const d = await papi(P, `/sweeps/${enc(id)}`);
  const members = d.members || [];
  const names = [...new Set(members.flatMap(m => Object.keys(m.params || {})))].sort();
  const firstMetric = /median:([^,\s]+)/.exec(d.early_stop || '')?.[1] || members.map(m => Object.keys(m.run?.metrics || {})[0]).find(Boolean) || 'metric';
  const status = m => m.run?.status || (m.stopped_by ? 'cancelled' : 'pending'); // no run: not started (yet)
  const early = m => status(m) === 'cancelled' && /early|median/i.test(m.stopped_by || '');
  const rows = members.map(m => h('tr', { class: early(m) ? 'early-stopped' : null, 'data-index': m.index },
    h('td', { class: 'num' }, String(m.index)), names.map(n => h('td', { class: 'mono' }, m.params?.[n] == null ? '' : String(m.params[n]))),
    h('td', null, m.run ? h('a', { class: 'run-link mono', href: link.run(P, m.run.id), title: m.run.id }, m.run.id) : h('span', { class: 'muted' }, 'no run yet')),
    h('td', null, statusBadge(status(m))),
    h('td', { class: 'num' }, fmtNum(m.run?.metrics?.[firstMetric])),
    h('td', { class: 'why' }, early(m) ? h('strong', null, 'early stop: ') : null, m.stopped_by || '')));
  const runIds = members.filter(m => m.run).map(m => m.run.id);
  show(ctx, h('h1', null, `Sweep ${d.id || id}`),
    dl([['size', String(d.size ?? '')], ['launcher', d.launcher], ['submitted', fmtTime(d.time)], ['command', d.command ? h('code', null, d.command) : ''],
      ['early stop', d.early_stop || 'off'], ['status', kv(d.counts).map(([k, n]) => [statusBadge(k), ` ${n}  `])]]),
    runIds.length ? h('p', null, h('a', { class: 'button', href: link.compare(P, runIds) }, `Compare the ${runIds.length} runs`)) : null,
    section('Members', table(['#', ...names, 'run', 'status', firstMetric, 'stopped by'], rows, { id: 'sweep-members', class: 'dense' })));
  ready('sweep');
}

async function membersPage(ctx, P) {
  if (session?.role !== 'admin' || session.project !== P) { show(ctx, h('h1', null, 'Members'), muted('Only an admin token of this project can manage its tokens.')); ready('members'); return; }
  const list = h('div'), created = h('div', { id: 'new-token-box' });
  const role = h('select', { id: 'member-role' }, ['read', 'write', 'admin'].map(r => h('option', { value: r }, r)));
  const expires = h('input', { id: 'member-expires', type: 'text', value: '30d', size: 6, pattern: '[0-9]+[smhdw]?', title: 'e.g. 12h, 30d; empty: no expiry' });
  const reload = async () => {
    const d = await papi(P, '/members');
    list.replaceChildren(tableOrNone(['id', 'role', 'created', 'expires', ''], (d.members || []).map(m => {
      const b = h('button', { type: 'button', class: 'small danger', onclick: async () => {
        if (!b.dataset.armed) { b.dataset.armed = '1'; b.textContent = 'Click again to revoke'; return; }
        b.disabled = true;
        try { await papi(P, `/members/${enc(m.id)}`, { method: 'DELETE' }); await reload(); } catch (e) { showError(e); b.disabled = false; }
      } }, 'Revoke');
      return [h('span', { class: 'mono' }, m.id), m.role, fmtTime(m.created), m.expires ? fmtTime(m.expires) : 'never', b];
    }), { id: 'members-table', class: 'dense' }));
  };
  const form = h('form', { class: 'toolbar', onsubmit: async ev => {
    ev.preventDefault();
    try {
      const body = { role: role.value };
      if (expires.value.trim()) body.expires_in = expires.value.trim();
      const t = await papi(P, '/members', { method: 'POST', body });
      created.replaceChildren(h('div', { class: 'notice' }, `New ${t.role} token ${t.id} (shown once; copy it now): `, h('code', { id: 'new-token' }, t.token)));
      await reload();
    } catch (e) { showError(e); }
  } }, h('label', null, 'role ', role), h('label', null, 'expires in ', expires), h('button', { type: 'submit', id: 'member-create' }, 'Create token'));
  await reload();
  show(ctx, h('h1', null, 'Members'), muted('Tokens of this project. A token is shown once, when it is made.'), section('Tokens', list), section('New token', form, created));
  ready('members');
}

// ---------- models and datasets (Docs/registry.md) ----------

const KINDS = { model: 'Models', dataset: 'Datasets' };
const aliasChip = (text, href, title) => h(href ? 'a' : 'span', { class: 'alias', href, title }, text);

function registryCrumbs(P, kind, name, n) {
  return h('nav', { class: 'crumbs' }, h('a', { href: link.registry(P, kind) }, KINDS[kind]), ' / ',
    n == null ? h('strong', null, name) : [h('a', { href: link.regName(P, kind, name) }, name), ' / ', h('strong', null, `v${n}`)]);
}

async function registryPage(ctx, P, kind, query) {
  const q = query.get('q') || '';
  const params = new URLSearchParams({ kind });
  if (q) params.set('q', q);
  const items = (await papi(P, `/registry?${params}`)).items || [];
  const searchIn = h('input', { id: 'registry-q', type: 'search', value: q, size: 32, placeholder: 'search names and descriptions' });
  const rows = items.map(it => h('tr', { 'data-name': it.name, 'data-latest': it.latest },
    h('td', null, h('a', { class: 'registry-link', href: link.regName(P, kind, it.name) }, it.name)),
    h('td', null, it.latest != null ? h('a', { class: 'mono', href: link.regVersion(P, kind, it.name, it.latest) }, `v${it.latest}`) : ''),
    h('td', { class: 'num' }, String(it.versions ?? '')),
    h('td', null, kv(it.aliases).map(([a, n]) => aliasChip(`${a} → v${n}`, link.regVersion(P, kind, it.name, n), `${it.name}@${a} is v${n}`))),
    h('td', { class: 'deprecated-list' }, (it.deprecated || []).map(n => `v${n}`).join(' ')),
    h('td', null, fmtTime(it.time)),
    h('td', { class: 'desc' }, it.description || '')));
  if (!rows.length) {
    rows.push(h('tr', null, h('td', { colspan: 7, class: 'muted' }, q ? `no ${kind}s match "${q}"` : `no ${kind}s yet: trove ${kind} publish NAME PATH…`)));
  }
  show(ctx, h('h1', null, KINDS[kind]),
    h('form', { class: 'toolbar', onsubmit: ev => { ev.preventDefault(); go(link.registry(P, kind, searchIn.value.trim())); } },
      searchIn, h('button', { id: 'registry-search', type: 'submit' }, 'Search'), q ? h('a', { href: link.registry(P, kind) }, 'clear') : null,
      h('span', { class: 'spacer' }), h('span', { id: 'registry-total', class: 'muted' }, `${items.length} ${kind}${items.length === 1 ? '' : 's'}`)),
    table(['name', 'latest', 'versions', 'aliases', 'deprecated', 'updated', 'description'], rows, { id: 'registry-table', class: 'dense' }));
  ready('registry');
}

async function registryNamePage(ctx, P, kind, name) {
  const d = await papi(P, `/registry/${enc(name)}?kind=${kind}`);
  const versions = d.versions || []; // newest first
  const rows = versions.map(v => h('tr', { 'data-version': v.version, class: v.deprecated != null ? 'deprecated' : null },
    h('td', null, h('a', { class: 'version-link mono', href: link.regVersion(P, kind, name, v.version) }, `v${v.version}`)),
    h('td', null, fmtTime(v.time)), h('td', null, v.author || ''), h('td', { class: 'why' }, v.message || ''),
    h('td', null, (v.aliases || []).map(a => aliasChip(a))),
    h('td', null, v.deprecated != null ? h('span', { class: 'deprecated-reason' }, v.deprecated || 'deprecated') : ''),
    h('td', null, v.run ? h('a', { class: 'run-link mono', href: link.run(P, v.run) }, v.run) : ''),
    h('td', { class: 'num' }, v.files == null ? '' : String(v.files)),
    h('td', { class: 'num', title: v.bytes == null ? null : `${v.bytes} bytes` }, fmtSize(v.bytes)),
    h('td', { class: 'mono muted', title: v.commit }, shortId(v.commit))));
  const deprecated = versions.filter(v => v.deprecated != null).length;
  show(ctx, registryCrumbs(P, kind, name), h('h1', { id: 'registry-title' }, name),
    dl([['kind', kind], ['latest', versions.length ? h('a', { href: link.regVersion(P, kind, name, versions[0].version) }, `v${versions[0].version}`) : ''],
      ['versions', `${versions.length}${deprecated ? ` (${deprecated} deprecated)` : ''}`],
      ['aliases', kv(d.aliases).map(([a, n]) => aliasChip(`${a} → v${n}`, link.regVersion(P, kind, name, n)))]]),
    section('Versions', table(['version', 'time', 'author', 'message', 'aliases', 'deprecated', 'run', 'files', 'size', 'commit'], rows,
      { id: 'versions-table', class: 'dense' })));
  ready('registry-name');
}

/** NAME@vN; an alias or 'latest' (…/NAME/prod) is resolved by the server and the address rewritten to vN. */
async function versionPage(ctx, P, kind, name, sel) {
  const d = await papi(P, `/registry/${enc(name)}/versions/${enc(sel)}?kind=${kind}`);
  const n = d.version, files = d.files || [], ref = `${name}@v${n}`;
  const bytes = files.reduce((s, f) => s + (+f.size || 0), 0);
  const served = d.served || [];
  // Where the version is served goes right of it in the graph: data → run → version → endpoint.
  const lineage = (d.lineage || []).concat(served.map(x => ({ kind: 'served', label: `served at ${x.url}`, depth: -1, url: x.url,
    detail: { host: x.host || '', workers: String(x.workers ?? ''), since: fmtTime(x.started), 'last seen': fmtTime(x.seen) } })));
  show(ctx, registryCrumbs(P, kind, name, n),
    h('h1', null, h('span', { id: 'version-title' }, ref), ' ', (d.aliases || []).map(a => aliasChip(a, null, `${name}@${a}`))),
    d.deprecated != null ? h('div', { id: 'deprecated-banner', class: 'deprecated-banner', role: 'alert' },
      h('strong', null, 'DEPRECATED'), d.deprecated ? `: ${d.deprecated}` : '') : null,
    dl([['kind', kind], ['published', fmtTime(d.time)], ['author', d.author], ['message', d.message],
      ['commit', d.commit ? h('a', { class: 'mono', href: link.tree(P, d.commit), title: 'browse the version commit' }, d.commit) : ''],
      ['run', d.run ? h('a', { class: 'run-link mono', href: link.run(P, d.run) }, d.run) : ''],
      ['files', `${files.length} · ${fmtSize(bytes)}`]]),
    section('Lineage', lineageGraph(P, lineage), lineage.length ? h('details', null, h('summary', null, 'details'), lineageTable(P, lineage)) : null),
    h('div', { class: 'version-grid' },
      section('Card', renderCard(d.card)),
      h('div', null, section('Use it', useIt(P, kind, name, n)),
        section('Metadata', tableOrNone(['key', 'value'], kv(d.metadata).map(([k, v]) => [k, h('span', { class: 'mono' }, String(v))]), { id: 'version-meta', class: 'dense kv' })))),
    section('Files', table(['path', 'size', ''], files.length ? files.map(f => [
      h('a', { href: link.file(P, d.commit, f.path) }, f.path), h('td', { class: 'num', title: `${f.size} bytes` }, fmtSize(f.size)),
      h('a', { class: 'download', href: link.download(P, d.commit, f.path) }, 'download')]) : [h('tr', null, h('td', { colspan: 3, class: 'muted' }, 'no files'))],
    { id: 'version-files', class: 'dense' })),
    served.length ? section('Served', table(['endpoint', 'host', 'workers', 'since', 'last seen'], served.map(x => [
      h('a', { class: 'mono', href: x.url }, x.url), x.host || '', String(x.workers ?? ''), fmtTime(x.started), fmtTime(x.seen)]),
    { id: 'version-served', class: 'dense' })) : null);
  if (sel !== `v${n}`) history.replaceState(null, '', link.regVersion(P, kind, name, n)); // no hashchange: no second route()
  ready('registry-version');
}

function useIt(P, kind, name, n) {
  const ref = `${name}@v${n}`, repoType = kind === 'dataset' ? ", repo_type='dataset'" : '';
  const snippets = [
    ['trove', 'use-trove', `trove ${kind} pull ${ref} --to ./${name}\ntrove restore ${ref} --to DIR`],
    ['git-style remote', 'use-git', `trove fetch origin '${kind}s/${name}/*'\ntrove restore ${ref} --to DIR`],
    ['Hugging Face client', 'use-hf', `HF_ENDPOINT=${location.origin}/hf HF_TOKEN=... python -c "from huggingface_hub import snapshot_download; snapshot_download('${P}/${name}', revision='v${n}'${repoType})"`],
  ];
  return h('div', { id: 'use-it' }, snippets.map(([title, id, text]) => h('div', { class: 'use' },
    h('h3', null, title, ' ', navigator.clipboard ? h('button', { type: 'button', class: 'small', onclick: ev => navigator.clipboard.writeText(text)
      .then(() => { ev.target.textContent = 'copied'; }, showError) }, 'copy') : null),
    h('pre', { id, class: 'snippet' }, text))));
}

// Lineage (GET …/versions/N: a depth-first list of {kind, label, commit, detail, depth}): one column per depth,
// the deepest (the data) on the left, the version on the right; a link's parent is the nearest link before it
// one level up, and an arrow goes from each link to its parent.
const LIN = { w: 240, h: 54, gx: 56, gy: 14, pad: 8 };
const LINEAGE_NAME = /\b(model|dataset) ([A-Za-z0-9][A-Za-z0-9._-]*)@v(\d+)\b/g; // 'dataset NAME@vN' in a label

function lineageTarget(P, l) {
  if (l.kind === 'served') return /^https?:\/\//.test(l.url || '') ? l.url : null;
  if (l.kind === 'run') { const id = /^run (\S+)$/.exec(l.label || '')?.[1]; return id ? link.run(P, id) : null; }
  const named = [...String(l.label || '').matchAll(LINEAGE_NAME)].pop();
  if (named) return link.regVersion(P, named[1], named[2], named[3]);
  return l.commit ? link.tree(P, l.commit) : null;
}

function lineageNode(P, l, x, y) {
  const kind = ['model', 'dataset', 'run', 'snapshot', 'served'].includes(l.kind) ? l.kind : 'other', label = String(l.label || '');
  const input = /^input ([^:]+): (.*)$/.exec(label); // 'input train: imagenet@v1:train = dataset imagenet@v1'
  let main = input ? input[2].split(' = ').pop() : label;
  if (l.kind === 'served' && l.url) main = l.url;
  else if (main.startsWith(`${l.kind} `)) main = main.slice(String(l.kind).length + 1);
  const cut = (s, k) => (s.length > k ? `${s.slice(0, k - 1)}…` : s);
  const tip = [label, l.commit ? `commit ${l.commit}` : null, ...kv(l.detail).map(([k, v]) => `${k}: ${v}`)].filter(Boolean).join('\n');
  const body = [svg('title', null, tip), svg('rect', { width: LIN.w, height: LIN.h, rx: 5 }),
    svg('text', { class: 'kind', x: 10, y: 16 }, cut(`${l.kind || ''}${input ? ` · input ${input[1]}` : ''}`, 40)),
    svg('text', { class: 'label', x: 10, y: 32 }, cut(main, 36)),
    svg('text', { class: 'commit', x: 10, y: 47 }, l.commit ? shortId(l.commit) : '')];
  const href = lineageTarget(P, l);
  return svg('g', { class: `lineage-node kind-${kind}`, transform: `translate(${x} ${y})`, 'data-depth': l.depth || 0 }, href ? svg('a', { href }, body) : body);
}

function lineageGraph(P, links) {
  if (!links.length) return h('div', { id: 'lineage' }, muted('no lineage recorded'));
  // depth -1: where the version (depth 0) is served, one column right of it.
  const depth = l => Math.max(-1, +l.depth || 0), maxD = Math.max(...links.map(depth)), minD = Math.min(0, ...links.map(depth));
  const count = new Map(), row = links.map(l => { const r = count.get(depth(l)) || 0; count.set(depth(l), r + 1); return r; });
  const rows = Math.max(...count.values()), cols = maxD - minD + 1;
  const width = 2 * LIN.pad + cols * LIN.w + (cols - 1) * LIN.gx, height = 2 * LIN.pad + rows * LIN.h + (rows - 1) * LIN.gy;
  const pos = links.map((l, i) => [LIN.pad + (maxD - depth(l)) * (LIN.w + LIN.gx), LIN.pad + (row[i] + (rows - count.get(depth(l))) / 2) * (LIN.h + LIN.gy)]);
  const el = svg('svg', { class: 'lineage', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'lineage' },
    svg('defs', null, svg('marker', { id: 'lineage-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
      svg('path', { d: 'M0 0L10 5L0 10z' }))));
  const edges = svg('g', { class: 'edges' });
  const arrow = (from, to) => {
    const x1 = pos[from][0] + LIN.w, y1 = pos[from][1] + LIN.h / 2, x2 = pos[to][0] - 1, y2 = pos[to][1] + LIN.h / 2, mx = (x1 + x2) / 2;
    edges.appendChild(svg('path', { class: 'edge', d: `M${x1} ${y1}C${mx} ${y1} ${mx} ${y2} ${x2} ${y2}`, 'marker-end': 'url(#lineage-arrow)' }));
  };
  const version = links.findIndex(l => depth(l) === 0);
  links.forEach((l, i) => {
    if (depth(l) < 0) { if (version >= 0) arrow(version, i); return; }
    let p = i - 1;
    while (p >= 0 && depth(links[p]) !== depth(l) - 1) p--;
    if (depth(l) && p >= 0) arrow(i, p);
  });
  el.appendChild(edges);
  links.forEach((l, i) => el.appendChild(lineageNode(P, l, pos[i][0], pos[i][1])));
  return h('div', { id: 'lineage', class: 'scroll' }, el);
}

const lineageTable = (P, links) => table(['depth', 'kind', 'label', 'commit', 'detail'], links.map(l => {
  const href = lineageTarget(P, l);
  return [String(l.depth ?? ''), l.kind || '', href ? h('a', { href }, l.label || '') : l.label || '', h('span', { class: 'mono', title: l.commit }, shortId(l.commit)),
    h('td', { class: 'why' }, kv(l.detail).map(([k, v]) => h('div', null, h('span', { class: 'muted' }, `${k}: `), String(v))))];
}), { id: 'lineage-table', class: 'dense' });

// Cards: a small Markdown → DOM renderer. Headings, paragraphs, lists, fenced code, `code`, **bold**, *italic*, and
// [links](…) to http(s):// or '#' only; everything else (HTML included) stays text. No markup string is ever parsed.
const MD_FENCE = /^\s{0,3}(`{3,}|~{3,})/;
const MD_HEAD = /^ {0,3}(#{1,6})[ \t]+(.*)$/;
const MD_RULE = /^\s{0,3}([-*_])(?:\s*\1){2,}\s*$/;
const MD_ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;
// (no part can scan past the next delimiter character: linear on hostile text)
const MD_INLINE = /`([^`]+)`|!?\[([^[\]]*)\]\(([^()\s]*)\)|\*\*([^*\s](?:[^*]*[^*\s])?)\*\*|__([^_\s](?:[^_]*[^_\s])?)__|\*([^*\s](?:[^*]*[^*\s])?)\*|(?<!\w)_([^_\s](?:[^_]*[^_\s])?)_(?!\w)/g;

function renderCard(text) {
  const box = h('div', { id: 'card', class: 'card' });
  add(box, [text == null || !String(text).trim() ? muted('No card (publish with --card FILE; kept as README.md).') : markdown(String(text))]);
  return box;
}

function markdown(text) {
  const lines = text.replace(/\r\n?/g, '\n').split('\n'), out = [];
  const starts = l => MD_FENCE.test(l) || MD_HEAD.test(l) || MD_RULE.test(l) || MD_ITEM.test(l);
  let i = 0, m;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) i++;
    else if ((m = MD_FENCE.exec(line))) {
      const fence = m[1], body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence); i++) body.push(lines[i]);
      i++; // the closing fence (or the end)
      out.push(h('pre', { class: 'code' }, h('code', null, body.join('\n'))));
    } else if ((m = MD_HEAD.exec(line))) { // '## Title ##': the closing #s go
      const t = m[2].trimEnd(), k = t.search(/(?:^|\s)#+$/);
      out.push(h(`h${m[1].length}`, null, mdInline((k < 0 ? t : t.slice(0, k)).trimEnd()))); i++;
    }
    else if (MD_RULE.test(line)) { out.push(h('hr')); i++; }
    else if ((m = MD_ITEM.exec(line))) {
      const ordered = /\d/.test(m[1]), first = parseInt(m[1], 10);
      const list = h(ordered ? 'ol' : 'ul', ordered && first !== 1 ? { start: first } : null);
      while (i < lines.length && (m = MD_ITEM.exec(lines[i])) && /\d/.test(m[1]) === ordered) {
        const parts = [m[2]];
        for (i++; i < lines.length && /^\s+\S/.test(lines[i]) && !starts(lines[i]); i++) parts.push(lines[i].trim()); // continuation
        list.appendChild(h('li', null, mdInline(parts.join(' '))));
      }
      out.push(list);
    } else {
      const parts = [line.trim()];
      for (i++; i < lines.length && lines[i].trim() && !starts(lines[i]); i++) parts.push(lines[i].trim());
      out.push(h('p', null, mdInline(parts.join(' '))));
    }
  }
  return out;
}

function mdInline(text) {
  const out = [], re = new RegExp(MD_INLINE.source, 'g');
  let last = 0, m;
  while ((m = re.exec(text))) {
    const [all, code, ltext, url, b1, b2, i1, i2] = m;
    out.push(text.slice(last, m.index));
    if (code != null) out.push(h('code', null, code));
    else if (ltext != null) out.push(cardLink(ltext || url, url, all)); // an image ![alt](url) too: a link, never an img
    else if (b1 != null || b2 != null) out.push(h('strong', null, mdInline(b1 ?? b2)));
    else out.push(h('em', null, mdInline(i1 ?? i2)));
    last = re.lastIndex;
  }
  out.push(text.slice(last));
  return out.filter(x => x !== '');
}

/** The one href that does not go through safeHref: http(s) URLs (a new tab, no referrer) and '#…' only; else the text as written. */
function cardLink(text, url, source) {
  if (!/^(https?:\/\/|#)/i.test(url)) return source;
  const external = !url.startsWith('#');
  const a = h('a', { class: 'card-link', title: url, rel: external ? 'noopener noreferrer nofollow' : null, target: external ? '_blank' : null }, mdInline(text));
  a.setAttribute('href', url);
  return a;
}

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', () => { if (!location.hash) history.replaceState(null, '', '#/'); route(); });
