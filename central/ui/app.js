// Office UI of central: tickets with their proof, delivery notes, stock,
// reports, devices and master data. Plain ES module, no framework, no build
// step: central serves these files as they are. Pages are hash routes
// (#/weighings?plate=OS), so reload and the back button work. Data only
// ever reaches the page as text (el(), textContent): plates and names come
// from the field.
import {
  t, lang, setLang, applyStatic, onLangChange, el,
  fmtNumber, fmtWeight, fmtKg, fmtDateTime, fmtDate, fmtAge, parseNumber,
} from '/ui/i18n.js';

const $ = (id) => document.getElementById(id);

const LOGIN_PATH = '/api/v1/auth/login';
const REQUEST_TIMEOUT_MS = 20_000;
const DEFAULT_LIMIT = 50;
const PAGE_SIZES = [25, 50, 100, 200];
// Select lists of partners, articles, ... are one page of the API's largest size.
const LOOKUP_LIMIT = 500;
const DEVICES_REFRESH_MS = 15_000;
const SUCCESS_SHOWN_MS = 10_000;

const state = {
  me: null, // GET /api/v1/auth/me
  lookups: new Map(), // master-data kind → Promise of its items
  renderSeq: 0, // the newest render; older ones must not mount
  timers: [], // intervals of the current page, stopped on navigation
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message, { silent = false } = {}) {
    super(message);
    this.status = status;
    // Already dealt with (the login page is shown): nothing to report.
    this.silent = silent;
  }
}

// An input the user has to fix; names the field to focus.
class InputError extends Error {
  constructor(message, field) { super(message); this.field = field; }
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return null;
}

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

// One call of central's API with the session cookie. Unsafe methods carry
// the CSRF token from the `valeo_csrf` cookie. A 401 means the session is
// gone: the login page is shown and the error is silent.
async function request(method, path, { body, ifMatch } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (UNSAFE_METHODS.has(method)) {
    const csrf = cookie('valeo_csrf');
    if (csrf) headers['x-csrf-token'] = csrf;
  }
  if (ifMatch) headers['if-match'] = ifMatch;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch {
    throw new ApiError(0, t('unreachable'));
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (res.ok) return { data, etag: res.headers.get('etag'), status: res.status };

  // problem+json: `detail` is written for the user, show it as it is.
  const detail = data && typeof data === 'object' ? (data.detail || data.title) : null;
  if (res.status === 401 && path !== LOGIN_PATH) {
    sessionEnded();
    throw new ApiError(401, t('signInAgain'), { silent: true });
  }
  let message = detail || `${res.status} ${res.statusText}`;
  if (res.status === 403) message = detail ? `${t('notPermitted')} (${detail})` : t('notPermitted');
  if (res.status === 412) message = t('conflict');
  if (res.status === 429) {
    const after = res.headers.get('retry-after');
    message = after ? t('tooManyWait', { s: after }) : (detail || t('tooMany'));
  }
  throw new ApiError(res.status, message);
}

const get = async (path) => (await request('GET', path)).data;

// Items of a master-data kind for select lists, once per session (and again
// after an edit). A failure gives an empty list: the filters still work.
function lookup(kind) {
  if (!state.lookups.has(kind)) {
    const p = get(`/api/v1/${kind}?limit=${LOOKUP_LIMIT}`)
      .then((page) => (page && Array.isArray(page.items) ? page.items : []))
      .catch(() => { state.lookups.delete(kind); return []; });
    state.lookups.set(kind, p);
  }
  return state.lookups.get(kind);
}

function can(permission) {
  const perms = (state.me && state.me.permissions) || [];
  return perms.includes(permission) || perms.includes('admin');
}

// ------------------------------------------------------------ banners

let successTimer = null;

function showError(message) {
  $('error-text').textContent = message;
  $('error').hidden = false;
  $('success').hidden = true;
}
function hideError() { $('error').hidden = true; }

function showSuccess(message) {
  hideError();
  $('success-text').textContent = message;
  $('success').hidden = false;
  clearTimeout(successTimer);
  successTimer = setTimeout(() => { $('success').hidden = true; }, SUCCESS_SHOWN_MS);
}

// A button's action: busy while it runs (no double submit), errors shown.
async function act(button, fn) {
  if (button && button.disabled) return;
  hideError();
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (e) {
    if (!e.silent) showError(e.message);
    if (e.field) e.field.focus();
  } finally {
    if (button) button.disabled = false;
  }
}

// ------------------------------------------------------- ask dialog

let askAction = null;
let askRequired = false;

// Asks for one text and runs `action(text)` with the dialog still open, so
// a refusal ("ticket is cancelled") is shown where the user typed.
function ask({ title, text, label, confirm, danger = false, required = false, action }) {
  askAction = action;
  askRequired = required;
  $('ask-title').textContent = title;
  $('ask-text').textContent = text || '';
  $('ask-text').hidden = !text;
  $('ask-label').textContent = label || '';
  // Nothing to type (a plain confirmation): no text field.
  $('ask-input').closest('.field').hidden = !label;
  $('ask-input').value = '';
  $('ask-input').required = required;
  $('ask-error').hidden = true;
  $('ask-confirm').textContent = confirm;
  $('ask-confirm').className = danger ? 'danger' : 'go';
  $('ask').showModal();
  (label ? $('ask-input') : $('ask-confirm')).focus();
}

function wireAsk() {
  $('ask-close').addEventListener('click', () => $('ask').close());
  $('ask-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = $('ask-input').value.trim();
    const error = $('ask-error');
    if (askRequired && !value) {
      error.textContent = t('required');
      error.hidden = false;
      $('ask-input').focus();
      return;
    }
    const button = $('ask-confirm');
    if (button.disabled) return;
    button.disabled = true;
    error.hidden = true;
    try {
      await askAction(value);
      $('ask').close();
    } catch (e) {
      if (e.silent) { $('ask').close(); return; }
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

// ----------------------------------------------------- session

function show(which) {
  $('booting').hidden = which !== 'booting';
  $('login').hidden = which !== 'login';
  $('app').hidden = which !== 'app';
}

function sessionEnded() {
  state.me = null;
  state.lookups.clear();
  state.renderSeq += 1; // a render still waiting must not mount
  stopTimers();
  if ($('ask').open) $('ask').close();
  $('view').replaceChildren();
  hideError();
  $('success').hidden = true;
  document.title = t('appTitle');
  show('login');
  $('login-user').focus();
}

async function loadMe() {
  try {
    const me = await get('/api/v1/auth/me');
    state.me = me;
    $('me-name').textContent = me.username;
    $('me-role').textContent = me.role ? t(`role_${me.role}`, {}, me.role) : '';
    show('app');
    render();
  } catch (e) {
    if (e.silent) return; // 401: the login page is up
    show('login');
    const error = $('login-error');
    error.textContent = e.message;
    error.hidden = false;
  }
}

async function login(ev) {
  ev.preventDefault();
  const user = $('login-user');
  const password = $('login-password');
  const error = $('login-error');
  const button = $('login-submit');
  error.hidden = true;
  if (!user.value.trim()) { user.focus(); error.textContent = t('needUser'); error.hidden = false; return; }
  if (!password.value) { password.focus(); error.textContent = t('needPassword'); error.hidden = false; return; }
  button.disabled = true;
  try {
    await request('POST', LOGIN_PATH, { body: { username: user.value.trim(), password: password.value } });
    password.value = '';
    await loadMe();
  } catch (e) {
    error.textContent = e.status === 401 ? t('badLogin') : e.message;
    error.hidden = false;
    password.select();
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await request('POST', '/api/v1/auth/logout');
  } catch { /* the session ends here either way */ }
  sessionEnded();
}

// ------------------------------------------------------------ router

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const [path, query = ''] = raw.split('?');
  return {
    parts: path.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } }),
    params: new URLSearchParams(query),
  };
}

function hashFor(path, params) {
  const q = params ? params.toString() : '';
  return `#${path}${q ? `?${q}` : ''}`;
}

// Navigates; the same hash again just reloads the page's data.
function go(path, params) {
  const hash = hashFor(path, params);
  if (location.hash === hash) render(); else location.hash = hash;
}

const ROUTES = {
  weighings: (ctx) => (ctx.parts[1] ? weighingView(ctx, ctx.parts[1]) : weighingsView(ctx)),
  'delivery-notes': (ctx) => (ctx.parts[1] ? noteView(ctx, ctx.parts[1]) : notesView(ctx)),
  stock: (ctx) => stockView(ctx),
  reports: (ctx) => reportsView(ctx),
  devices: (ctx) => devicesView(ctx),
  master: (ctx) => {
    const kind = ctx.parts[1];
    if (!kind) { location.replace('#/master/partners'); return null; }
    if (!KINDS[kind]) return notFoundView(ctx);
    return ctx.parts[2] ? entityView(ctx, kind, ctx.parts[2] === 'new' ? null : ctx.parts[2]) : entitiesView(ctx, kind);
  },
};

function stopTimers() {
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
}

async function render() {
  if (!state.me) return;
  stopTimers();
  hideError();
  const token = ++state.renderSeq;
  const { parts, params } = parseHash();
  if (!parts.length) { location.replace('#/weighings'); return; }
  for (const a of document.querySelectorAll('.nav a[data-route]')) {
    if (a.dataset.route === parts[0]) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const ctx = {
    parts,
    params,
    token,
    current: () => token === state.renderSeq && state.me !== null,
    // Replaces the page, unless the user has moved on meanwhile.
    mount(title, ...nodes) {
      if (!ctx.current()) return false;
      document.title = `${title} – ${t('appTitle')}`;
      $('view').replaceChildren(...nodes.flat().filter(Boolean));
      $('view').dataset.page = parts[0];
      return true;
    },
  };
  const view = ROUTES[parts[0]] || notFoundView;
  if ($('view').dataset.page !== parts[0]) {
    $('view').replaceChildren(el('p', { class: 'loading' }, t('loading')));
  }
  try {
    await view(ctx);
  } catch (e) {
    if (e.silent || !ctx.current()) return;
    ctx.mount(t('error'), el('section', { class: 'panel' },
      el('h1', {}, e.status === 403 ? t('notPermitted') : t('error')),
      el('p', { id: 'view-error', class: 'form-error' }, e.message),
      el('p', {}, el('button', { type: 'button', class: 'secondary', onclick: () => render() }, t('retry')))));
  }
}

function notFoundView(ctx) {
  ctx.mount(t('notFound'), el('section', { class: 'panel' }, el('h1', {}, t('notFound')),
    el('p', {}, el('a', { href: '#/weighings' }, t('navWeighings')))));
}

// ------------------------------------------------------- page parts

const dash = '—';
const named = (ref) => (ref ? ref.name || ref.id : dash);
const or = (x) => (x === null || x === undefined || x === '' ? dash : x);

function chip(kind, value) {
  return el('span', { class: `chip chip-${value}`, dataset: { value } }, t(`${kind}_${value}`, {}, value));
}

function pageHead(title, ...actions) {
  return el('div', { class: 'page-head' }, el('h1', {}, title), el('div', { class: 'page-actions' }, actions));
}

// A definition list of [label, value] pairs; values may be nodes.
function facts(pairs, attrs = {}) {
  return el('dl', { class: 'facts', ...attrs }, pairs.filter(Boolean).map(([label, value, id]) => [
    el('dt', {}, label),
    el('dd', { id }, value === null || value === undefined || value === '' ? dash : value),
  ]));
}

// columns: [{label, value(row) → text|node, cls}]; rowHref(row) makes the
// row a link (the first link in it stays keyboard-reachable).
function table(columns, rows, { id, rowHref, rowData, empty, foot } = {}) {
  const tbody = el('tbody', { id }, rows.map((r) => {
    const tr = el('tr', { dataset: rowData ? rowData(r) : undefined },
      columns.map((c) => el('td', { class: c.cls }, c.value(r))));
    if (rowHref) {
      tr.classList.add('link-row');
      tr.addEventListener('click', (ev) => {
        if (ev.target.closest('a, button, input, select')) return;
        location.hash = rowHref(r);
      });
    }
    return tr;
  }));
  const tableEl = el('table', { class: 'list' },
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col', class: c.cls }, c.label)))),
    tbody, foot);
  return el('div', { class: 'table-wrap' }, tableEl,
    rows.length ? null : el('p', { class: 'empty' }, empty || t('nothingFound')));
}

// Paging links for a {total, limit, offset} page; `param` names the offset
// parameter (a page with two lists keeps them apart).
function pager(page, path, params, { param = 'offset', count } = {}) {
  const total = Number(page.total) || 0;
  const limit = Number(page.limit) || DEFAULT_LIMIT;
  const offset = Number(page.offset) || 0;
  const shown = count ?? (page.items ? page.items.length : 0);
  const link = (off) => {
    const p = new URLSearchParams(params);
    if (off > 0) p.set(param, String(off)); else p.delete(param);
    return hashFor(path, p);
  };
  const range = total === 0 ? t('noneFound')
    : t('range', { from: fmtNumber(offset + 1), to: fmtNumber(offset + shown), total: fmtNumber(total) });
  const prev = offset > 0
    ? el('a', { class: 'button-link secondary', href: link(Math.max(0, offset - limit)), rel: 'prev', dataset: { pager: 'prev' } }, t('prev'))
    : el('span', { class: 'button-link disabled', 'aria-disabled': 'true' }, t('prev'));
  const next = offset + limit < total
    ? el('a', { class: 'button-link secondary', href: link(offset + limit), rel: 'next', dataset: { pager: 'next' } }, t('next'))
    : el('span', { class: 'button-link disabled', 'aria-disabled': 'true' }, t('next'));
  return el('nav', { class: 'pager', 'aria-label': t('paging') }, prev, el('span', { class: 'range' }, range), next);
}

function options(items, label = (i) => `${i.name} (${i.id})`) {
  return items.map((i) => [i.id, label(i)]);
}

// The filter form of a list page. fields: [{name, label, type: text|date|
// select, options: [[value, label]]}]; applying puts the values in the hash.
function filterForm(fields, params, apply, { keep = [] } = {}) {
  const form = el('form', { class: 'filters', id: 'filters', novalidate: true, autocomplete: 'off' });
  for (const f of fields) {
    const id = `f-${f.name}`;
    const current = params.get(f.name) || f.default || '';
    let input;
    if (f.type === 'select') {
      const opts = [...(f.options || [])];
      if (current && !opts.some(([v]) => v === current)) opts.push([current, current]);
      input = el('select', { id, name: f.name },
        f.noAll ? null : el('option', { value: '' }, f.all || t('all')),
        opts.map(([v, l]) => el('option', { value: v }, l)));
    } else {
      input = el('input', { id, name: f.name, type: f.type || 'text', spellcheck: 'false', maxlength: f.type ? null : '100' });
    }
    input.value = current;
    form.append(el('div', { class: `field field-${f.type || 'text'}` }, el('label', { for: id }, f.label), input));
  }
  form.append(el('div', { class: 'filter-buttons' },
    el('button', { type: 'submit', id: 'filter-apply' }, t('apply')),
    el('button', {
      type: 'button', class: 'secondary', id: 'filter-reset',
      onclick: () => apply(pick(params, keep)),
    }, t('reset'))));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = pick(params, keep);
    for (const f of fields) {
      let v = form.elements[f.name].value.trim();
      if (f.upper) v = v.toUpperCase();
      // Defaults stay out of the address: shorter links, same page.
      if (v && v !== f.default) next.set(f.name, v);
    }
    apply(next);
  });
  return form;
}

// The parameters of `params` named in `names`.
function pick(params, names) {
  const out = new URLSearchParams();
  for (const n of names) if (params.get(n)) out.set(n, params.get(n));
  return out;
}

// ---------------------------------------------------- weighing tickets

const WEIGHING_FILTERS = ['from', 'to', 'site_id', 'device_id', 'partner_id', 'article_id', 'lot_id',
  'contract_id', 'plate', 'status', 'direction', 'sort'];
const WEIGHING_SORTS = ['-weighed_at', 'weighed_at', '-net', 'net', '-ticket_no', 'ticket_no', 'plate'];

const weighedAt = (w) => (w.second ? w.second.weighed_at : w.first && w.first.weighed_at);

async function weighingsView(ctx) {
  const { params } = ctx;
  const q = pick(params, [...WEIGHING_FILTERS, 'limit', 'offset']);
  if (!q.has('limit')) q.set('limit', String(DEFAULT_LIMIT));
  const [page, partners, articles, sites] = await Promise.all([
    get(`/api/v1/weighings?${q}`), lookup('partners'), lookup('articles'), lookup('sites'),
  ]);
  const form = filterForm([
    { name: 'from', label: t('from'), type: 'date' },
    { name: 'to', label: t('to'), type: 'date' },
    { name: 'plate', label: t('plate'), upper: true },
    { name: 'partner_id', label: t('partner'), type: 'select', options: options(partners) },
    { name: 'article_id', label: t('article'), type: 'select', options: options(articles) },
    { name: 'site_id', label: t('site'), type: 'select', options: options(sites) },
    { name: 'status', label: t('status'), type: 'select', options: ['open', 'complete', 'cancelled'].map((s) => [s, t(`status_${s}`)]) },
    { name: 'direction', label: t('direction'), type: 'select', options: ['intake', 'outgoing'].map((d) => [d, t(`direction_${d}`)]) },
    { name: 'sort', label: t('sort'), type: 'select', noAll: true, default: '-weighed_at', options: WEIGHING_SORTS.map((s) => [s, t(`sort_${s}`)]) },
    { name: 'limit', label: t('pageSize'), type: 'select', noAll: true, default: String(DEFAULT_LIMIT), options: PAGE_SIZES.map((n) => [String(n), String(n)]) },
  ], params, (next) => go('/weighings', next), { keep: ['device_id', 'lot_id', 'contract_id'] });

  let csv = null;
  if (can('read')) {
    const c = pick(params, WEIGHING_FILTERS);
    c.set('lang', lang());
    csv = el('a', { id: 'csv-export', class: 'button-link', href: `/api/v1/weighings.csv?${c}`, download: '' }, t('csvExport'));
  }
  const items = page.items || [];
  const list = table([
    { label: t('colTicket'), cls: 'num', value: (w) => el('a', { href: `#/weighings/${w.id}` }, String(w.ticket_no)) },
    { label: t('colTime'), value: (w) => fmtDateTime(weighedAt(w)) },
    { label: t('plate'), cls: 'plate', value: (w) => w.plate },
    { label: t('direction'), value: (w) => t(`direction_${w.direction}`, {}, w.direction) },
    { label: t('partner'), value: (w) => named(w.partner) },
    { label: t('article'), value: (w) => named(w.article) },
    { label: t('net'), cls: 'num', value: (w) => fmtWeight(w.net, w.unit) },
    { label: t('status'), value: (w) => chip('status', w.status) },
    { label: t('colNote'), value: (w) => (w.delivery_note ? w.delivery_note.number : '') },
    { label: t('device'), value: (w) => w.device_id },
  ], items, {
    id: 'weighings',
    rowHref: (w) => `#/weighings/${w.id}`,
    rowData: (w) => ({ id: String(w.id), plate: w.plate, ticketNo: String(w.ticket_no) }),
  });
  const active = ['device_id', 'lot_id', 'contract_id'].filter((k) => params.get(k))
    .map((k) => el('span', { class: 'tag' }, `${t(`f_${k}`)}: ${params.get(k)}`));
  ctx.mount(t('navWeighings'),
    pageHead(t('navWeighings'), csv),
    form,
    active.length ? el('p', { class: 'active-filters' }, active) : null,
    list,
    pager(page, '/weighings', params));
}

function weightRow(label, step, unit, id) {
  if (!step) return el('tr', {}, el('th', { scope: 'row' }, label), el('td', { colspan: '4', class: 'muted' }, t('notYet')));
  return el('tr', { id },
    el('th', { scope: 'row' }, label),
    el('td', { class: 'num' }, fmtWeight(step.weight, unit)),
    el('td', { class: 'num' }, step.alibi_id ? step.alibi_id : el('span', { class: 'muted' }, t('noAlibi'))),
    el('td', {}, or(step.scale_id)),
    el('td', {}, fmtDateTime(step.weighed_at)));
}

function verdict(id, ok, yes, no) {
  return el('span', { id, class: `verdict ${ok ? 'verdict-ok' : 'verdict-bad'}`, dataset: { ok: String(Boolean(ok)) } },
    ok ? `✓ ${yes}` : `✗ ${no}`);
}

// Per record: its hash recomputed, its link to the one before.
function recordCheck(r) {
  const known = [r.hash_verified, r.linked].filter((x) => typeof x === 'boolean');
  if (!known.length) return '';
  const ok = known.every(Boolean);
  return el('span', { class: ok ? 'ok-mark' : 'bad-mark', title: ok ? t('recordOk') : t('recordBad') }, ok ? '✓' : '✗');
}

function proofSection(proof) {
  if (!proof) return el('section', { class: 'panel', id: 'proof' }, el('h2', {}, t('proof')), el('p', { class: 'muted' }, t('noProof')));
  const problems = proof.problems || [];
  return el('section', { class: 'panel', id: 'proof' },
    el('h2', {}, t('proof')),
    el('p', { class: 'verdicts' },
      verdict('proof-chain', proof.chain_verified, t('chainOk'), t('chainBad')),
      verdict('proof-signature', proof.signature_verified, t('signatureOk'), t('signatureBad'))),
    problems.length ? el('ul', { class: 'problems', id: 'proof-problems' }, problems.map((p) => el('li', {}, p))) : null,
    table([
      { label: t('colSeq'), cls: 'num', value: (r) => String(r.seq) },
      { label: t('colKind'), value: (r) => r.kind },
      { label: t('colCheck'), value: (r) => recordCheck(r) },
      { label: t('colCreated'), value: (r) => fmtDateTime(r.created_at) },
      { label: t('colReceived'), value: (r) => fmtDateTime(r.received_at) },
      { label: t('colHash'), cls: 'hash', value: (r) => el('code', { title: r.hash }, r.hash) },
      { label: t('colPrevHash'), cls: 'hash', value: (r) => el('code', { title: r.prev_hash }, r.prev_hash) },
    ], proof.records || [], { id: 'proof-records', empty: t('noRecords') }),
    el('p', { class: 'hint' }, t('proofHint')));
}

function qualitySection(quality) {
  if (!quality || !quality.length) return null;
  const pct = (x) => (x === null || x === undefined ? dash : `${fmtNumber(x, 2)} %`);
  return el('section', { class: 'panel', id: 'quality' },
    el('h2', {}, t('quality')),
    table([
      { label: t('colTime'), value: (q) => fmtDateTime(q.taken_at) },
      { label: t('moisture'), cls: 'num', value: (q) => pct(q.moisture_percent) },
      { label: t('hectolitre'), cls: 'num', value: (q) => (q.hectolitre_kg === null || q.hectolitre_kg === undefined ? dash : `${fmtNumber(q.hectolitre_kg, 2)} kg/hl`) },
      { label: t('protein'), cls: 'num', value: (q) => pct(q.protein_percent) },
      { label: t('source'), value: (q) => (q.device_id ? `${t(`source_${q.source}`, {}, q.source)} (${q.device_id})` : t(`source_${q.source}`, {}, q.source)) },
      { label: t('operator'), value: (q) => or(q.operator) },
    ], quality));
}

// The ticket's delivery notes: the issued one, and cancelled ones before it.
function noteBox(w, notes) {
  const dn = w.delivery_note;
  const box = el('div', { class: 'note-box', id: 'dn-box' });
  if (dn) {
    box.append(el('span', {}, `${t('deliveryNote')}: `),
      el('a', { id: 'dn-link', href: `#/delivery-notes/${dn.id}` }, dn.number), ' ', chip('noteStatus', dn.status));
  }
  const earlier = notes.filter((n) => !dn || n.id !== dn.id);
  if (earlier.length) {
    box.append(el('span', { class: 'earlier-notes' }, `${t('earlierNotes')}: `, earlier.map((n, i) => [
      i ? ', ' : '', el('a', { class: 'dn-old', href: `#/delivery-notes/${n.id}` }, n.number), ` (${t(`noteStatus_${n.status}`, {}, n.status)})`])));
  }
  const possible = w.status === 'complete' && (!dn || dn.status === 'cancelled');
  if (possible && can('delivery_notes')) {
    box.append(el('button', { type: 'button', id: 'create-dn', class: 'go', onclick: () => createNote(w) }, t('createNote')));
  } else if (!dn) {
    box.append(el('span', { class: 'muted' }, w.status === 'complete' ? t('noNote') : t('noNoteYet')));
  }
  return box;
}

function createNote(w) {
  ask({
    title: t('createNoteTitle', { no: w.ticket_no, plate: w.plate }),
    text: `${fmtWeight(w.net, w.unit)} · ${named(w.partner)} · ${named(w.article)}`,
    label: t('remarksOptional'),
    confirm: t('createNote'),
    action: async (remarks) => {
      const body = { weighing_id: w.id };
      if (remarks) body.remarks = remarks;
      const { data } = await request('POST', '/api/v1/delivery-notes', { body });
      showSuccess(t('noteCreated', { number: data.number }));
      render();
    },
  });
}

async function weighingView(ctx, id) {
  const [w, notes] = await Promise.all([
    get(`/api/v1/weighings/${encodeURIComponent(id)}`),
    // Only for the history; the ticket page works without it.
    get(`/api/v1/delivery-notes?weighing_id=${encodeURIComponent(id)}&limit=${LOOKUP_LIMIT}`)
      .then((page) => (page && page.items) || []).catch((e) => { if (e.silent) throw e; return []; }),
  ]);
  const unit = w.unit;
  const legal = el('span', { id: 'legal', class: `tag ${w.legal_for_trade ? 'tag-ok' : 'tag-warn'}`, dataset: { legal: String(w.legal_for_trade) } },
    w.legal_for_trade ? t('legal') : t('notLegal'));
  const title = t('ticketTitle', { no: w.ticket_no });
  const weights = el('section', { class: 'panel', id: 'weights' },
    el('h2', {}, t('weighings')),
    el('div', { class: 'table-wrap' }, el('table', { class: 'list weights' },
      el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', { class: 'num' }, t('weight')), el('th', { class: 'num' }, t('alibi')),
        el('th', {}, t('scale')), el('th', {}, t('colTime')))),
      el('tbody', {}, weightRow(t('firstWeighing'), w.first, unit, 'w-first'), weightRow(t('secondWeighing'), w.second, unit, 'w-second')))),
    el('div', { class: 'totals' },
      el('div', {}, el('span', { class: 'label' }, t('gross')), el('strong', { id: 'w-gross', class: 'num' }, fmtWeight(w.gross, unit))),
      el('div', {}, el('span', { class: 'label' }, w.tare_source === 'stored' ? t('tareStored') : t('tare')), el('strong', { id: 'w-tare', class: 'num' }, fmtWeight(w.tare, unit))),
      el('div', { class: 'net' }, el('span', { class: 'label' }, t('net')), el('strong', { id: 'w-net', class: 'num', dataset: { value: w.net === null ? '' : String(w.net) } }, fmtWeight(w.net, unit)))));
  const cancellation = w.cancellation ? el('section', { class: 'panel panel-warn', id: 'cancellation' },
    el('h2', {}, t('cancelled')),
    facts([[t('at'), fmtDateTime(w.cancellation.at)], [t('operator'), w.cancellation.operator], [t('reason'), w.cancellation.reason]])) : null;
  const details = el('section', { class: 'panel', id: 'details' },
    el('h2', {}, t('details')),
    facts([
      [t('plate'), el('span', { class: 'plate' }, w.plate), 'd-plate'],
      [t('direction'), t(`direction_${w.direction}`, {}, w.direction)],
      [t('partner'), named(w.partner), 'd-partner'],
      [t('article'), named(w.article), 'd-article'],
      [t('lot'), named(w.lot)],
      [t('location'), named(w.location)],
      [t('contract'), w.contract_id ? el('a', { href: `#/master/contracts/${encodeURIComponent(w.contract_id)}` }, w.contract_id) : null],
      [t('operator'), w.operator],
      [t('device'), el('a', { href: hashFor('/weighings', new URLSearchParams({ device_id: w.device_id })) }, w.device_id)],
      [t('site'), w.site_id],
      [t('tareSource'), w.tare_source ? t(`tare_${w.tare_source}`, {}, w.tare_source) : null],
      [t('prints'), fmtNumber(w.prints)],
      [t('records'), `${w.epoch ? `${w.epoch} · ` : ''}#${w.first_record_seq}${w.second_record_seq ? ` / #${w.second_record_seq}` : ''}`],
    ]));
  ctx.mount(title,
    el('p', { class: 'crumbs' }, el('a', { href: '#/weighings', id: 'back' }, `← ${t('navWeighings')}`)),
    pageHead(el('span', {}, title, ' ', chip('status', w.status), ' ', legal), noteBox(w, notes)),
    cancellation,
    el('div', { class: 'two-col' }, weights, details),
    qualitySection(w.quality),
    proofSection(w.proof));
}

// ---------------------------------------------------- delivery notes

const NOTE_FILTERS = ['from', 'to', 'partner_id', 'status'];

async function notesView(ctx) {
  const { params } = ctx;
  const q = pick(params, [...NOTE_FILTERS, 'limit', 'offset']);
  if (!q.has('limit')) q.set('limit', String(DEFAULT_LIMIT));
  const [page, partners] = await Promise.all([get(`/api/v1/delivery-notes?${q}`), lookup('partners')]);
  const form = filterForm([
    { name: 'from', label: t('from'), type: 'date' },
    { name: 'to', label: t('to'), type: 'date' },
    { name: 'partner_id', label: t('partner'), type: 'select', options: options(partners) },
    { name: 'status', label: t('status'), type: 'select', options: ['issued', 'cancelled'].map((s) => [s, t(`noteStatus_${s}`)]) },
  ], params, (next) => go('/delivery-notes', next));
  ctx.mount(t('navNotes'),
    pageHead(t('navNotes')),
    form,
    table([
      { label: t('colNumber'), value: (n) => el('a', { href: `#/delivery-notes/${n.id}` }, n.number) },
      { label: t('colDate'), value: (n) => fmtDateTime(n.created_at) },
      { label: t('colTicket'), cls: 'num', value: (n) => String(n.ticket_no) },
      { label: t('plate'), cls: 'plate', value: (n) => n.plate },
      { label: t('partner'), value: (n) => named(n.partner) },
      { label: t('article'), value: (n) => named(n.article) },
      { label: t('net'), cls: 'num', value: (n) => fmtWeight(n.net, n.unit) },
      { label: t('status'), value: (n) => chip('noteStatus', n.status) },
    ], page.items || [], {
      id: 'notes',
      rowHref: (n) => `#/delivery-notes/${n.id}`,
      rowData: (n) => ({ id: String(n.id), number: n.number }),
    }),
    pager(page, '/delivery-notes', params));
}

async function noteView(ctx, id) {
  const n = await get(`/api/v1/delivery-notes/${encodeURIComponent(id)}`);
  const title = `${t('deliveryNote')} ${n.number}`;
  const print = el('a', {
    id: 'dn-print', class: 'button-link', target: '_blank', rel: 'noopener',
    href: `/api/v1/delivery-notes/${encodeURIComponent(n.id)}/document?lang=${lang()}`,
  }, t('print'));
  const cancel = n.status === 'issued' && can('delivery_notes')
    ? el('button', {
      type: 'button', id: 'dn-cancel', class: 'danger-outline',
      onclick: () => ask({
        title: t('cancelNoteTitle', { number: n.number }),
        text: t('cancelNoteText'),
        label: t('reason'),
        confirm: t('cancelNote'),
        danger: true,
        required: true,
        action: async (reason) => {
          await request('POST', `/api/v1/delivery-notes/${encodeURIComponent(n.id)}/cancel`, { body: { reason } });
          showSuccess(t('noteCancelled', { number: n.number }));
          render();
        },
      }),
    }, t('cancelNote'))
    : null;
  ctx.mount(title,
    el('p', { class: 'crumbs' }, el('a', { href: '#/delivery-notes' }, `← ${t('navNotes')}`)),
    pageHead(el('span', { id: 'dn-number' }, title, ' ', chip('noteStatus', n.status)), print, cancel),
    el('section', { class: 'panel', id: 'note' },
      facts([
        [t('colNumber'), n.number],
        [t('colDate'), fmtDateTime(n.created_at)],
        [t('createdBy'), n.created_by],
        [t('colTicket'), el('a', { href: `#/weighings/${n.weighing_id}`, id: 'dn-ticket' }, `${n.ticket_no} (${n.device_id})`)],
        [t('colTime'), n.weighed_at ? fmtDateTime(n.weighed_at) : null],
        [t('plate'), el('span', { class: 'plate' }, n.plate)],
        n.direction ? [t('direction'), t(`direction_${n.direction}`, {}, n.direction)] : null,
        [t('partner'), named(n.partner)],
        [t('article'), named(n.article)],
        [t('lot'), named(n.lot)],
        n.location ? [t('location'), named(n.location)] : null,
        n.contract_id ? [t('contract'), n.contract_id] : null,
        n.gross !== undefined ? [t('gross'), fmtWeight(n.gross, n.unit)] : null,
        n.tare !== undefined ? [t('tare'), fmtWeight(n.tare, n.unit)] : null,
        [t('net'), el('strong', { class: 'num', id: 'dn-net' }, fmtWeight(n.net, n.unit))],
        n.alibi_ids && n.alibi_ids.length ? [t('alibi'), n.alibi_ids.join(', ')] : null,
        n.legal_for_trade !== undefined ? [t('legalShort'), n.legal_for_trade ? t('legal') : t('notLegal')] : null,
        [t('remarks'), n.remarks],
        n.status === 'cancelled' ? [t('cancelledAt'), fmtDateTime(n.cancelled_at)] : null,
        n.status === 'cancelled' && n.cancelled_by ? [t('cancelledBy'), n.cancelled_by] : null,
        n.status === 'cancelled' ? [t('reason'), n.cancel_reason] : null,
      ])));
}

// ------------------------------------------------------------- stock

async function stockView(ctx) {
  const { params } = ctx;
  const sq = pick(params, ['article_id', 'location_id']);
  const mq = pick(params, ['article_id', 'location_id', 'from', 'to']);
  mq.set('limit', String(DEFAULT_LIMIT));
  if (params.get('mo')) mq.set('offset', params.get('mo'));
  const [stock, moves, articles, locations] = await Promise.all([
    get(`/api/v1/stock?${sq}`), get(`/api/v1/stock-movements?${mq}`), lookup('articles'), lookup('locations'),
  ]);
  const form = filterForm([
    { name: 'article_id', label: t('article'), type: 'select', options: options(articles) },
    { name: 'location_id', label: t('location'), type: 'select', options: options(locations) },
    { name: 'from', label: t('from'), type: 'date' },
    { name: 'to', label: t('to'), type: 'date' },
  ], params, (next) => go('/stock', next));
  const items = stock.items || [];
  const total = items.reduce((s, i) => s + (Number(i.quantity_kg) || 0), 0);
  const stockTable = table([
    { label: t('article'), value: (i) => named(i.article) },
    { label: t('location'), value: (i) => (i.location ? named(i.location) : t('noLocation')) },
    { label: t('quantity'), cls: 'num', value: (i) => fmtKg(i.quantity_kg) },
  ], items, {
    id: 'stock',
    foot: items.length > 1 ? el('tfoot', {}, el('tr', {}, el('th', { scope: 'row', colspan: '2' }, t('total')), el('td', { class: 'num' }, fmtKg(total)))) : null,
  });
  const movesTable = table([
    { label: t('colTime'), value: (m) => fmtDateTime(m.at) },
    { label: t('article'), value: (m) => named(m.article) },
    { label: t('location'), value: (m) => (m.location ? named(m.location) : t('noLocation')) },
    { label: t('quantity'), cls: 'num', value: (m) => el('span', { class: Number(m.quantity_kg) < 0 ? 'neg' : '' }, fmtKg(m.quantity_kg)) },
    { label: t('reason'), value: (m) => t(`move_${m.reason}`, {}, m.reason) },
    { label: t('colTicket'), value: (m) => (m.weighing_id ? el('a', { href: `#/weighings/${m.weighing_id}` }, `#${m.weighing_id}`) : '') },
    { label: t('note'), value: (m) => or(m.note) },
    { label: t('createdBy'), value: (m) => or(m.created_by) },
  ], moves.items || [], { id: 'movements' });
  ctx.mount(t('navStock'),
    pageHead(t('navStock')),
    form,
    el('section', { class: 'panel' }, el('h2', {}, t('stockLevels')), stockTable),
    can('master_data') ? correctionForm(articles, locations) : null,
    el('section', { class: 'panel' }, el('h2', {}, t('movements')), movesTable,
      pager(moves, '/stock', params, { param: 'mo' })));
}

function correctionForm(articles, locations) {
  const article = el('select', { id: 'corr-article', required: true },
    el('option', { value: '' }, t('choose')), options(articles).map(([v, l]) => el('option', { value: v }, l)));
  const location = el('select', { id: 'corr-location' },
    el('option', { value: '' }, t('noLocation')), options(locations).map(([v, l]) => el('option', { value: v }, l)));
  const qty = el('input', { id: 'corr-qty', inputmode: 'decimal', autocomplete: 'off' });
  const note = el('input', { id: 'corr-note', autocomplete: 'off', maxlength: '200' });
  const button = el('button', { type: 'submit', id: 'corr-submit' }, t('book'));
  const form = el('form', { class: 'panel correction', id: 'correction', novalidate: true },
    el('h2', {}, t('correction')),
    el('p', { class: 'hint' }, t('correctionHint')),
    el('div', { class: 'grid4' },
      el('div', { class: 'field' }, el('label', { for: 'corr-article' }, t('article')), article),
      el('div', { class: 'field' }, el('label', { for: 'corr-location' }, t('location')), location),
      el('div', { class: 'field' }, el('label', { for: 'corr-qty' }, t('quantityKg')), qty),
      el('div', { class: 'field' }, el('label', { for: 'corr-note' }, t('note')), note)),
    button);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(button, async () => {
      if (!article.value) throw new InputError(t('needArticle'), article);
      const kg = parseNumber(qty.value);
      if (kg === null || Number.isNaN(kg) || kg === 0) throw new InputError(t('needQuantity'), qty);
      if (!note.value.trim()) throw new InputError(t('needNote'), note);
      await request('POST', '/api/v1/stock-movements', {
        body: { article_id: article.value, location_id: location.value || null, quantity_kg: kg, note: note.value.trim() },
      });
      showSuccess(t('booked'));
      render();
    });
  });
  return form;
}

// ----------------------------------------------------------- reports

const GROUPS = ['article', 'partner', 'site', 'day'];

function isoDay(d) {
  const z = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${z(d.getMonth() + 1)}-${z(d.getDate())}`;
}

async function reportsView(ctx) {
  const { params } = ctx;
  const now = new Date();
  const p = new URLSearchParams({
    group_by: params.get('group_by') || 'article',
    from: params.get('from') || isoDay(new Date(now.getFullYear(), now.getMonth(), 1)),
    to: params.get('to') || isoDay(now),
  });
  const report = await get(`/api/v1/reports/weighings?${p}`);
  const form = filterForm([
    { name: 'group_by', label: t('groupBy'), type: 'select', noAll: true, options: GROUPS.map((g) => [g, t(`group_${g}`)]) },
    { name: 'from', label: t('from'), type: 'date' },
    { name: 'to', label: t('to'), type: 'date' },
  ], p, (next) => go('/reports', next));
  const rows = report.rows || [];
  const totals = report.total || {};
  const group = report.group_by || p.get('group_by');
  ctx.mount(t('navReports'),
    pageHead(t('navReports')),
    form,
    el('section', { class: 'panel' },
      el('h2', {}, t('reportTitle', { group: t(`group_${group}`, {}, group), from: fmtDate(p.get('from')), to: fmtDate(p.get('to')) })),
      table([
        { label: t(`group_${group}`, {}, group), value: (r) => (group === 'day' ? fmtDate(r.key) : r.name || r.key || t('unassigned')) },
        { label: t('colWeighings'), cls: 'num', value: (r) => fmtNumber(r.weighings) },
        { label: t('netKg'), cls: 'num', value: (r) => fmtKg(r.net_kg) },
      ], rows, {
        id: 'report',
        foot: el('tfoot', {}, el('tr', {},
          el('th', { scope: 'row' }, t('total')),
          el('td', { class: 'num', id: 'report-total-count' }, fmtNumber(totals.weighings ?? 0)),
          el('td', { class: 'num', id: 'report-total-net' }, fmtKg(totals.net_kg ?? 0)))),
      })));
}

// ----------------------------------------------------------- devices

async function devicesView(ctx) {
  const devices = await get('/api/v1/devices');
  const list = Array.isArray(devices) ? devices : (devices && devices.items) || [];
  const online = (d) => {
    if (d.online === true) return el('span', { class: 'chip chip-online', dataset: { value: 'online' } }, t('online'));
    if (d.online === false) return el('span', { class: 'chip chip-offline', dataset: { value: 'offline' } }, t('offline'));
    return el('span', { class: 'chip', dataset: { value: 'unknown' } }, t('unknown'));
  };
  const mounted = ctx.mount(t('navDevices'),
    pageHead(t('navDevices'), el('button', { type: 'button', class: 'secondary', id: 'devices-refresh', onclick: () => render() }, t('refresh'))),
    table([
      { label: t('device'), value: (d) => el('a', { href: hashFor('/weighings', new URLSearchParams({ device_id: d.device_id })) }, d.device_id) },
      { label: t('site'), value: (d) => or(d.site_id) },
      { label: t('state'), value: online },
      { label: t('lastSeen'), value: (d) => (d.last_seen_at ? el('span', { title: fmtDateTime(d.last_seen_at) }, fmtAge(d.last_seen_at)) : dash) },
      { label: t('version'), value: (d) => or(d.version) },
      { label: t('backlog'), cls: 'num', value: (d) => (d.backlog_records === null || d.backlog_records === undefined ? dash : fmtNumber(d.backlog_records)) },
      { label: t('headSeq'), cls: 'num', value: (d) => [
        d.head_seq === null || d.head_seq === undefined ? dash : String(d.head_seq),
        d.gap_expected_seq === null || d.gap_expected_seq === undefined ? null
          : el('div', {}, el('span', { class: 'tag tag-warn' }, t('gap', { seq: d.gap_expected_seq }))),
      ] },
      { label: t('alarms'), value: (d) => (d.alarms && d.alarms.length
        ? el('ul', { class: 'alarms' }, d.alarms.map((a) => el('li', {}, a)))
        : el('span', { class: 'muted' }, t('noAlarms'))) },
    ], list, { id: 'devices', rowData: (d) => ({ device: d.device_id }), empty: t('noDevices') }),
    el('p', { class: 'hint' }, t('devicesHint')));
  if (mounted) {
    state.timers.push(setInterval(() => {
      // Not while the user is busy in a dialog.
      if (!$('ask').open && parseHash().parts[0] === 'devices') render();
    }, DEVICES_REFRESH_MS));
  }
}

// ------------------------------------------------------- master data

const F = {
  id: { name: 'id', required: true, key: true, maxlength: 64 },
  name: { name: 'name', required: true, maxlength: 200 },
  address: { name: 'address', type: 'textarea', maxlength: 200 },
};

// The generic editor's field lists. key: the entity's id (fixed once
// created); ref: a select of another kind; readonly: shown, never sent.
const KINDS = {
  partners: {
    fields: [F.id, F.name, { name: 'roles', type: 'roles', options: ['customer', 'supplier', 'haulier'] }, F.address, { name: 'vat_id', maxlength: 20 }],
    columns: ['id', 'name', 'roles', 'vat_id'],
  },
  articles: { fields: [F.id, F.name], columns: ['id', 'name'] },
  vehicles: {
    fields: [{ name: 'plate', required: true, key: true, upper: true, maxlength: 20 }, { name: 'haulier_id', type: 'ref', ref: 'partners' }],
    columns: ['plate', 'haulier_id'],
  },
  sites: { fields: [F.id, F.name, F.address], columns: ['id', 'name', 'address'] },
  locations: { fields: [F.id, F.name, { name: 'site_id', type: 'ref', ref: 'sites' }], columns: ['id', 'name', 'site_id'] },
  lots: { fields: [F.id, F.name, { name: 'article_id', type: 'ref', ref: 'articles', required: true }], columns: ['id', 'name', 'article_id'] },
  contracts: {
    fields: [
      F.id,
      { name: 'partner_id', type: 'ref', ref: 'partners', required: true },
      { name: 'article_id', type: 'ref', ref: 'articles', required: true },
      { name: 'quantity_kg', type: 'number' },
      { name: 'valid_from', type: 'date' },
      { name: 'valid_to', type: 'date' },
      { name: 'delivered_kg', type: 'number', readonly: true },
    ],
    columns: ['id', 'partner_id', 'article_id', 'quantity_kg', 'delivered_kg', 'valid_to'],
  },
};
const KIND_ORDER = ['partners', 'articles', 'vehicles', 'sites', 'locations', 'lots', 'contracts'];

// Vehicles are addressed by their normalised plate, which central sets as id.
const keyOf = (kind, e) => e.id || e.plate;

function kindTabs(current) {
  return el('nav', { class: 'tabs', 'aria-label': t('navMaster') }, KIND_ORDER.map((k) => el('a', {
    href: `#/master/${k}`, 'aria-current': k === current ? 'page' : null, dataset: { kind: k },
  }, t(`kind_${k}`))));
}

// Shows a field's value in a list: references by name, numbers by locale.
function cellValue(field, value, refs) {
  if (value === null || value === undefined || value === '') return dash;
  if (field && field.type === 'ref') {
    const hit = (refs[field.ref] || []).find((i) => i.id === value);
    return hit ? `${hit.name} (${value})` : value;
  }
  if (field && field.type === 'roles') return (value || []).map((r) => t(`roleP_${r}`, {}, r)).join(', ');
  if (field && field.type === 'number') return fmtKg(value);
  if (field && field.type === 'date') return fmtDate(value);
  return String(value);
}

async function refsFor(kind) {
  const refs = {};
  await Promise.all(KINDS[kind].fields.filter((f) => f.type === 'ref').map(async (f) => { refs[f.ref] = await lookup(f.ref); }));
  return refs;
}

async function entitiesView(ctx, kind) {
  const { params } = ctx;
  const spec = KINDS[kind];
  const q = pick(params, ['q', 'limit', 'offset']);
  if (!q.has('limit')) q.set('limit', String(DEFAULT_LIMIT));
  const [page, refs] = await Promise.all([get(`/api/v1/${kind}?${q}`), refsFor(kind)]);
  const field = (name) => spec.fields.find((f) => f.name === name);
  const form = filterForm([{ name: 'q', label: t('search') }], params, (next) => go(`/master/${kind}`, next));
  const create = can('master_data')
    ? el('a', { class: 'button-link', id: 'md-new', href: `#/master/${kind}/new` }, t('new'))
    : null;
  ctx.mount(`${t('navMaster')}: ${t(`kind_${kind}`)}`,
    pageHead(t('navMaster'), create),
    kindTabs(kind),
    form,
    table(spec.columns.map((c) => ({
      label: t(`f_${c}`),
      cls: field(c) && field(c).type === 'number' ? 'num' : '',
      value: (e) => (c === spec.columns[0]
        ? el('a', { href: `#/master/${kind}/${encodeURIComponent(keyOf(kind, e))}` }, String(e[c] ?? keyOf(kind, e)))
        : cellValue(field(c), e[c], refs)),
    })), page.items || [], {
      id: 'entities',
      rowHref: (e) => `#/master/${kind}/${encodeURIComponent(keyOf(kind, e))}`,
      rowData: (e) => ({ id: String(keyOf(kind, e)) }),
    }),
    pager(page, `/master/${kind}`, params));
}

function fieldInput(kind, f, value, { editable, existing, refs }) {
  const id = `md-${f.name}`;
  const disabled = !editable || f.readonly || (f.key && existing);
  if (f.type === 'roles') {
    const chosen = new Set(value || []);
    return el('fieldset', { class: 'field roles', id },
      el('legend', {}, t(`f_${f.name}`)),
      f.options.map((r) => el('label', { class: 'check' },
        el('input', { type: 'checkbox', name: 'roles', value: r, checked: chosen.has(r), disabled }), ' ', t(`roleP_${r}`, {}, r))));
  }
  let input;
  if (f.type === 'ref') {
    const items = refs[f.ref] || [];
    const opts = options(items);
    if (value && !opts.some(([v]) => v === value)) opts.push([value, value]);
    input = el('select', { id, name: f.name, disabled },
      el('option', { value: '' }, f.required ? t('choose') : t('none')),
      opts.map(([v, l]) => el('option', { value: v }, l)));
    input.value = value || '';
  } else if (f.type === 'textarea') {
    input = el('textarea', { id, name: f.name, rows: '3', maxlength: String(f.maxlength), disabled });
    input.value = value || '';
  } else {
    input = el('input', {
      id, name: f.name, disabled, autocomplete: 'off', spellcheck: 'false',
      type: f.type === 'date' ? 'date' : 'text',
      inputmode: f.type === 'number' ? 'decimal' : null,
      maxlength: f.maxlength ? String(f.maxlength) : null,
      class: f.upper ? 'upper' : null,
    });
    if (f.type === 'number') input.value = value === null || value === undefined ? '' : fmtNumber(value, 3, false);
    else if (f.type === 'date') input.value = value ? String(value).slice(0, 10) : '';
    else input.value = value ?? '';
  }
  return el('div', { class: 'field' },
    el('label', { for: id }, t(`f_${f.name}`), f.required && !disabled ? el('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    input);
}

// Kept by central, never sent back: the entity bodies refuse unknown fields.
const SERVER_FIELDS = ['version', 'updated_at', 'updated_by', 'delivered_kg'];

// The request body: the entity as loaded (so fields this form does not
// show, like a vehicle's stored tare, survive) with the form's values over
// it; empty optional fields are null.
function formBody(kind, form, loaded) {
  const body = { ...loaded };
  for (const f of SERVER_FIELDS) delete body[f];
  for (const f of KINDS[kind].fields) {
    if (f.readonly) continue;
    if (f.type === 'roles') {
      body.roles = [...form.querySelectorAll('input[name="roles"]:checked')].map((c) => c.value);
      continue;
    }
    const input = form.elements[f.name];
    let value = input.value.trim();
    if (f.upper) value = value.toUpperCase();
    if (!value) {
      if (f.required) throw new InputError(t('fieldRequired', { field: t(`f_${f.name}`) }), input);
      body[f.name] = null;
      continue;
    }
    if (f.type === 'number') {
      const n = parseNumber(value);
      if (n === null || Number.isNaN(n)) throw new InputError(t('fieldNumber', { field: t(`f_${f.name}`) }), input);
      body[f.name] = n;
    } else {
      body[f.name] = value;
    }
  }
  return body;
}

async function entityView(ctx, kind, id) {
  const existing = id !== null;
  const [loaded, refs] = await Promise.all([
    existing ? request('GET', `/api/v1/${kind}/${encodeURIComponent(id)}`) : Promise.resolve({ data: {}, etag: null }),
    refsFor(kind),
  ]);
  const entity = loaded.data || {};
  let etag = loaded.etag || (entity.version !== undefined ? `"${entity.version}"` : null);
  const editable = can('master_data');
  const spec = KINDS[kind];
  const formError = el('div', { class: 'form-error', id: 'md-error', role: 'alert', hidden: true });
  const save = editable ? el('button', { type: 'submit', id: 'md-save', class: 'go' }, existing ? t('save') : t('create')) : null;
  const remove = editable && existing ? el('button', { type: 'button', id: 'md-delete', class: 'danger-outline' }, t('delete')) : null;
  const form = el('form', { class: 'panel entity', id: 'entity', novalidate: true, autocomplete: 'off' },
    el('div', { class: 'grid2' }, spec.fields.map((f) => fieldInput(kind, f, entity[f.name], { editable, existing, refs }))),
    existing && entity.version !== undefined ? el('p', { class: 'hint' }, t('versionInfo', { version: entity.version })) : null,
    editable ? null : el('p', { class: 'hint' }, t('readOnly')),
    formError,
    el('div', { class: 'form-buttons' }, save, remove));

  // A refusal stays next to the form; a conflict offers to reload.
  const fail = (e) => {
    if (e.silent) return;
    formError.replaceChildren(el('span', {}, e.message));
    if (e.status === 412) {
      formError.append(' ', el('button', { type: 'button', id: 'md-reload', class: 'secondary', onclick: () => render() }, t('reload')));
    }
    formError.hidden = false;
    if (e.field) e.field.focus();
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!save || save.disabled) return;
    formError.hidden = true;
    save.disabled = true;
    try {
      const body = formBody(kind, form, entity);
      if (existing) {
        const res = await request('PUT', `/api/v1/${kind}/${encodeURIComponent(id)}`, { body, ifMatch: etag });
        etag = res.etag || (res.data && res.data.version !== undefined ? `"${res.data.version}"` : etag);
        state.lookups.delete(kind);
        showSuccess(t('saved'));
        render();
      } else {
        const res = await request('POST', `/api/v1/${kind}`, { body });
        state.lookups.delete(kind);
        showSuccess(t('created'));
        go(`/master/${kind}/${encodeURIComponent(keyOf(kind, res.data || body))}`);
      }
    } catch (e) {
      fail(e);
    } finally {
      save.disabled = false;
    }
  });
  if (remove) {
    remove.addEventListener('click', () => ask({
      title: t('deleteTitle', { kind: t(`kind1_${kind}`), id }),
      text: t('deleteText'),
      label: '',
      confirm: t('delete'),
      danger: true,
      action: async () => {
        await request('DELETE', `/api/v1/${kind}/${encodeURIComponent(id)}`, { ifMatch: etag });
        state.lookups.delete(kind);
        showSuccess(t('deleted', { id }));
        go(`/master/${kind}`);
      },
    }));
  }
  const title = existing ? `${t(`kind1_${kind}`)} ${id}` : t('newEntity', { kind: t(`kind1_${kind}`) });
  ctx.mount(title,
    pageHead(t('navMaster')),
    kindTabs(kind),
    el('p', { class: 'crumbs' }, el('a', { href: `#/master/${kind}` }, `← ${t(`kind_${kind}`)}`)),
    el('h2', { id: 'entity-title' }, title),
    form);
}

// --------------------------------------------------------------- boot

function wire() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('error-dismiss').addEventListener('click', hideError);
  $('success-dismiss').addEventListener('click', () => { $('success').hidden = true; });
  for (const b of document.querySelectorAll('[data-lang]')) b.addEventListener('click', () => setLang(b.dataset.lang));
  wireAsk();
  window.addEventListener('hashchange', render);
  onLangChange(() => {
    applyStatic();
    if (state.me) {
      $('me-role').textContent = state.me.role ? t(`role_${state.me.role}`, {}, state.me.role) : '';
      render();
    } else {
      document.title = t('appTitle');
    }
  });
}

wire();
applyStatic();
document.title = t('appTitle');
loadMe();
