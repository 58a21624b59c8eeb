// Operator terminal: live weight, first/second weighing, tickets on site.
// Plain ES module, no build step: the agent serves these files as they are.
import {
  t, lang, setLang, applyStatic, onLangChange, el,
  formatWeight, formatTime, formatDate, formatDateTime, formatAge, formatNumber, parseNumber,
} from '/terminal/i18n.js';

const $ = (id) => document.getElementById(id);
const OPERATOR_KEY = 'valeo.terminal.operator';
const SCALE_KEY = 'valeo.terminal.scale';

const state = {
  scales: [],
  scaleId: null,
  reading: null, // last SSE reading
  streamUp: false, // EventSource open and delivering
  md: null, // master data
  direction: 'intake',
  mode: 'scale', // scale | stored-tare | manual
  open: [],
  recent: [],
  site: null,
  dialogTicket: null,
  analyzers: [], // ids of the grain analyzers quality can be read from
  measuring: null, // analyzer id while a reading runs
  sensors: [], // names of simulated position sensors (pins sensor.<name>)
  sensorSet: {}, // name → {blocked, at}: what we last set, until the site status shows it
  modbus: [], // GET /api/v1/modbus: lines with their devices' health and points
  modbusReadOnly: new Set(), // device\npoint refused with 422: no toggle for it
  modbusSet: {}, // device\npoint → {value, at}: last write, until a poll shows it
  cash: false, // the agent has a cash desk (GET /api/v1/tse answered)
  tse: null, // GET /api/v1/tse: {available, info, outage, last_error}
  tseStale: false, // the last TSE poll got no answer
  receipts: [], // GET /api/v1/receipts?limit=20, newest first
  payment: 'Bar', // Bar | ECKarte
  lastSale: null,
  cashConfirm: null, // {kind: 'storno' | 'closing', n} while the dialog is open
};

// ---------------------------------------------------------------- API

// An error the operator caused (empty field…): shown like an agent error,
// but it can point at the field to fix.
class InputError extends Error {
  constructor(message, field) { super(message); this.field = field; }
}

// timeoutMs: a weighing may wait a moment for the scale, reads should be
// quick; an analyzer measurement may take as long as its configured limit.
async function api(method, path, body, timeoutMs = method === 'GET' ? 10000 : 30000) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch {
    throw new Error(t('agentUnreachable'));
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    // problem+json: `detail` is written for the operator, show it verbatim.
    const err = new Error((data && (data.detail || data.title)) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
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
  $('success-text').textContent = message;
  $('success').hidden = false;
  clearTimeout(successTimer);
  // Errors stay until dismissed; success fades so the next one is noticed.
  successTimer = setTimeout(() => { $('success').hidden = true; }, 15000);
}

function operatorName() { return $('operator').value.trim(); }

// Every action that writes goes through here: one place for "who is the
// operator", the busy button (gloved double taps must not weigh twice),
// error display and refreshing the lists afterwards.
async function act(button, fn, { needsOperator = true, refresh = true } = {}) {
  if (button && button.disabled) return;
  hideError();
  if (needsOperator && !operatorName()) {
    showError(t('needOperator'));
    $('operator').focus();
    return;
  }
  if (button) button.disabled = true;
  try {
    const message = await fn();
    if (message) showSuccess(message);
  } catch (e) {
    showError(e.message);
    if (e.field) e.field.focus();
  } finally {
    if (button) button.disabled = false;
    if (refresh) loadTickets();
  }
}

// ------------------------------------------------------ live weight

let es = null;
let retryTimer = null;

function connectLive() {
  if (es) es.close();
  clearTimeout(retryTimer);
  state.streamUp = false;
  renderLive();
  if (!state.scaleId) return;
  es = new EventSource(`/api/v1/scales/${encodeURIComponent(state.scaleId)}/live`);
  es.addEventListener('reading', (ev) => {
    try { state.reading = JSON.parse(ev.data); } catch { return; }
    state.streamUp = true;
    renderLive();
  });
  es.addEventListener('error', () => {
    state.streamUp = false;
    renderLive();
    // EventSource retries by itself, except after a non-stream answer
    // (agent restarting, 404): then it is CLOSED and we retry ourselves.
    if (es.readyState === EventSource.CLOSED) retryTimer = setTimeout(connectLive, 3000);
  });
}

function renderLive() {
  const r = state.reading;
  const up = state.streamUp && r && r.connected;
  const w = $('live-weight');
  w.textContent = up ? (r.weight ? formatWeight(r.weight) : r.display || '----') : '----';
  w.dataset.stale = String(!up);

  const stable = !!(up && r.stable && !r.overload && !r.underload);
  const s = $('live-stable');
  s.dataset.stable = String(stable);
  s.dataset.connected = String(!!up);
  s.textContent = !up ? t('noConnection') : stable ? t('stable') : t('motion');

  const flags = $('live-flags');
  const flag = up && (r.overload ? t('overload') : r.underload ? t('underload') : '');
  flags.hidden = !flag;
  flags.textContent = flag || '';

  const c = $('live-conn');
  c.dataset.connected = String(!!up);
  c.textContent = up ? t('connected') : t('noConnection');
}

async function loadScales() {
  try {
    state.scales = await api('GET', '/api/v1/scales');
  } catch {
    // Agent still starting or line down: try again, the header says so.
    setTimeout(loadScales, 5000);
    renderLive();
    return;
  }
  const ids = state.scales.map((s) => s.id);
  let stored = null;
  try { stored = localStorage.getItem(SCALE_KEY); } catch { /* ignore */ }
  state.scaleId = ids.includes(stored) ? stored : ids[0] || null;
  const sel = $('scale-select');
  sel.replaceChildren(...ids.map((id) => el('option', { value: id }, id)));
  sel.value = state.scaleId || '';
  // A choice only makes sense with two or more bridges.
  sel.hidden = ids.length < 2;
  $('scale-name').hidden = ids.length >= 2;
  $('scale-name').textContent = state.scaleId || t('noScale');
  connectLive();
}

// ------------------------------------------------------ master data

async function loadMasterData() {
  try {
    const md = await api('GET', '/api/v1/master-data');
    const changed = !state.md || state.md.version !== md.version;
    state.md = md;
    if (changed) renderMasterData();
  } catch { /* keep what we have; the footer shows its age */ }
  renderFooter();
}

function fillSelect(sel, items, value, label) {
  const keep = sel.value;
  sel.replaceChildren(
    el('option', { value: '' }, t('none')),
    ...items.map((i) => el('option', { value: value(i) }, label(i))),
  );
  // Keep the operator's choice across refreshes if it still exists.
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

const named = (i) => (i.name && i.name !== i.id ? `${i.name} (${i.id})` : i.id);

function renderMasterData() {
  const md = state.md || {};
  fillSelect($('partner'), md.partners || [], (i) => i.id, named);
  fillSelect($('article'), md.articles || [], (i) => i.id, named);
  fillSelect($('location'), md.locations || [], (i) => i.id, named);
  renderLots();
  renderContracts();
  $('plates').replaceChildren(...(md.vehicles || []).map((v) => el('option', { value: v.plate })));
  renderMode();
}

// Lots belong to an article: offer only the chosen article's lots.
function renderLots() {
  const article = $('article').value;
  const lots = (state.md?.lots || []).filter((l) => !article || l.article_id === article);
  fillSelect($('lot'), lots, (i) => i.id, named);
}

// Contracts bind partner and article; narrow them by what is chosen.
function renderContracts() {
  const p = $('partner').value;
  const a = $('article').value;
  const list = (state.md?.contracts || []).filter((c) => (!p || c.partner_id === p) && (!a || c.article_id === a));
  fillSelect($('contract'), list, (c) => c.id, (c) => c.id);
}

function renderFooter() {
  const md = state.md;
  $('md-info').textContent = !md || !md.version
    ? t('noMasterData')
    : `${t('masterData', { v: md.version })}${md.received_at ? ` · ${t('masterDataAge', { age: formatAge(md.received_at) })}` : ''}`;
  // Present only when central's last document was refused: the terminal
  // keeps weighing with the older one, but the office must hear of it.
  const refused = md?.last_error || '';
  $('md-error').hidden = !refused;
  $('md-error').textContent = refused ? t('masterDataRefused', { e: refused }) : '';
}

// ------------------------------------------------- first weighing form

// Plates are compared without spaces and dashes: "OS-ST 9" = "OSST9".
const plateKey = (p) => p.toUpperCase().replace(/[\s-]/g, '');

function storedTareFor(plate) {
  const key = plateKey(plate);
  if (!key) return null;
  const v = (state.md?.vehicles || []).find((x) => plateKey(x.plate) === key);
  return v?.stored_tare || null;
}

function setDirection(d) {
  state.direction = d;
  for (const b of document.querySelectorAll('[data-direction]')) b.setAttribute('aria-pressed', String(b.dataset.direction === d));
}

function setMode(m) {
  state.mode = m;
  renderMode();
}

function renderMode() {
  const tare = storedTareFor($('plate').value);
  // Stored tare is only possible for a vehicle that has one.
  if (state.mode === 'stored-tare' && !tare) state.mode = 'scale';
  $('mode-stored-tare').disabled = !tare;
  for (const b of document.querySelectorAll('[data-mode]')) b.setAttribute('aria-pressed', String(b.dataset.mode === state.mode));
  const info = $('stored-tare-info');
  info.hidden = !tare;
  if (tare) info.textContent = t('storedTareInfo', { w: formatWeight(tare.weight), d: formatDate(tare.weighed_at) });
  $('manual-fields').hidden = state.mode !== 'manual';
  const btn = $('first-weighing');
  btn.dataset.i18n = state.mode === 'stored-tare' ? 'weighStoredTare' : 'firstWeighing';
  btn.textContent = t(btn.dataset.i18n);
}

function readManual(weightInput, reasonInput) {
  const kg = parseNumber(weightInput.value);
  if (kg === null || !Number.isFinite(kg) || kg <= 0) throw new InputError(t('needWeight'), weightInput);
  const reason = reasonInput.value.trim();
  if (!reason) throw new InputError(t('needReason'), reasonInput);
  return { manual_weight_kg: kg, manual_reason: reason };
}

function submitFirst(ev) {
  ev.preventDefault();
  act($('first-weighing'), async () => {
    const plate = $('plate').value.trim().toUpperCase().replace(/\s+/g, ' ');
    if (!plate) throw new InputError(t('needPlate'), $('plate'));
    const body = { plate, direction: state.direction, operator: operatorName(), weighing: state.mode };
    for (const k of ['partner', 'article', 'contract', 'lot', 'location']) {
      if ($(k).value) body[`${k}_id`] = $(k).value;
    }
    if (state.scaleId) body.scale_id = state.scaleId;
    if (state.mode === 'manual') Object.assign(body, readManual($('manual-weight'), $('manual-reason')));
    const tk = await api('POST', '/api/v1/tickets', body);
    resetForm();
    return tk.state === 'complete'
      ? t('okComplete', { n: tk.ticket_no, w: formatWeight(tk.net) })
      : t('okFirst', { n: tk.ticket_no, w: formatWeight(tk.first?.weight) });
  });
}

function resetForm() {
  $('first-form').reset();
  setDirection('intake');
  renderLots();
  renderContracts();
  // No focus() here: on a touch screen it would pop up the keyboard.
  setMode('scale');
}

// ------------------------------------------------------ ticket lists

// When did anything last happen to a ticket (for "recent" ordering)? A
// stored-tare step carries the date the tare was once weighed: skip it.
function lastEvent(tk) {
  const times = [tk.cancellation?.at, tk.first?.weighed_at, tk.second?.source === 'stored-tare' ? null : tk.second?.weighed_at]
    .map((x) => Date.parse(x || ''))
    .filter((x) => !Number.isNaN(x));
  return times.length ? Math.max(...times) : 0;
}

let loadingTickets = false;
let reloadTickets = false;
async function loadTickets() {
  // A refresh asked for while one is running (an action finished during a
  // poll) runs right after it, so the lists never miss that action.
  if (loadingTickets) { reloadTickets = true; return; }
  loadingTickets = true;
  try {
    const [open, complete, cancelled] = await Promise.all([
      api('GET', '/api/v1/tickets?state=open&limit=100'),
      api('GET', '/api/v1/tickets?state=complete&limit=20'),
      api('GET', '/api/v1/tickets?state=cancelled&limit=20'),
    ]);
    state.open = open;
    state.recent = [...complete, ...cancelled]
      .sort((a, b) => lastEvent(b) - lastEvent(a) || b.ticket_no - a.ticket_no)
      .slice(0, 20);
    renderTickets();
  } catch { /* lists keep their last state; the next poll retries */ }
  finally {
    loadingTickets = false;
    if (reloadTickets) { reloadTickets = false; loadTickets(); }
  }
}

const dirLabel = (d) => t(d === 'outgoing' ? 'outgoing' : 'intake');

function btn(cls, key, extra = '') {
  return el('button', { type: 'button', class: `${cls} ${extra}`.trim() }, t(key));
}

function renderTickets() {
  $('open-tickets').replaceChildren(...state.open.map((tk) => el('li', { class: 'card', dataset: { ticket: tk.ticket_no } },
    el('div', { class: 'card-info' },
      el('span', { class: 'card-no num' }, `${t('colNo')} ${tk.ticket_no}`),
      el('strong', { class: 'plate' }, tk.plate),
      el('span', {}, dirLabel(tk.direction)),
      el('span', { class: 'card-weight num' }, formatWeight(tk.first?.weight),
        tk.first?.source === 'manual' ? el('span', { class: 'tag tag-warn' }, t('manualMark')) : null),
      el('span', { class: 'sub' }, formatTime(tk.first?.weighed_at))),
    el('div', { class: 'row-actions' },
      btn('second-weighing', 'secondWeighing', 'go'),
      btn('manual-second', 'manualSecond', 'secondary'),
      btn('quality', 'quality', 'secondary'),
      btn('cancel', 'cancel', 'danger-outline')),
  )));
  $('open-empty').hidden = state.open.length > 0;
  $('open-count').textContent = state.open.length ? `(${state.open.length})` : '';

  $('recent-tickets').replaceChildren(...state.recent.map((tk) => el('tr', { dataset: { ticket: tk.ticket_no, state: tk.state } },
    el('td', { class: 'num' }, tk.ticket_no),
    el('td', { class: 'plate' }, tk.plate),
    el('td', {}, dirLabel(tk.direction)),
    el('td', { class: 'num' }, tk.net ? formatWeight(tk.net) : '—'),
    el('td', {}, el('span', { class: `tag tag-${tk.state}` }, t(`state_${tk.state}`))),
    el('td', {}, lastEvent(tk) ? formatTime(new Date(lastEvent(tk)).toISOString()) : '—'),
    el('td', {}, el('div', { class: 'row-actions' },
      btn('print', 'print', 'secondary'),
      btn('reprint', 'reprint', 'secondary'),
      // A cancelled ticket cannot be cancelled again.
      tk.state === 'complete' ? btn('cancel', 'cancel', 'danger-outline') : null)),
  )));
  $('recent-empty').hidden = state.recent.length > 0;
}

// One listener per table: rows are rebuilt on every refresh.
function onRowClick(ev) {
  const b = ev.target.closest('button');
  const row = b && b.closest('[data-ticket]');
  if (!row) return;
  const n = Number(row.dataset.ticket);
  if (b.classList.contains('second-weighing')) secondWeighing(b, n);
  else if (b.classList.contains('manual-second')) openDialog('manual-dialog', n, 'manualSecondTitle');
  else if (b.classList.contains('quality')) openDialog('quality-dialog', n, 'qualityTitle');
  else if (b.classList.contains('cancel')) openDialog('cancel-dialog', n, 'cancelTitle');
  else if (b.classList.contains('print')) openTicket(n);
  else if (b.classList.contains('reprint')) reprint(b, n);
}

function secondWeighing(button, n) {
  act(button, async () => {
    const body = { operator: operatorName(), weighing: 'scale' };
    if (state.scaleId) body.scale_id = state.scaleId;
    const tk = await api('POST', `/api/v1/tickets/${n}/second-weighing`, body);
    return t('okComplete', { n: tk.ticket_no, w: formatWeight(tk.net) });
  });
}

// The ticket opens in its own tab so the terminal (and its live stream)
// stays as it is; the ticket's Back button closes that tab again.
function openTicket(n, copy = false, win = null) {
  const url = `/tickets/${n}${copy ? '?copy=1' : ''}`;
  if (win) win.location.href = url;
  else window.open(url, '_blank');
}

function reprint(button, n) {
  if (button.disabled) return;
  // Open the tab now, while the tap still counts as a user gesture; after
  // the POST returns the popup blocker would refuse it.
  const win = operatorName() ? window.open('about:blank', '_blank') : null;
  act(button, async () => {
    try {
      const tk = await api('POST', `/api/v1/tickets/${n}/reprint`, { operator: operatorName() });
      openTicket(n, true, win);
      return t('okReprint', { n: tk.ticket_no });
    } catch (e) {
      if (win) win.close();
      throw e;
    }
  });
}

// ---------------------------------------------------------- dialogs

function openDialog(id, n, titleKey) {
  hideError();
  if (!operatorName()) {
    showError(t('needOperator'));
    $('operator').focus();
    return;
  }
  const d = $(id);
  state.dialogTicket = n;
  d.querySelector('form').reset();
  d.querySelector('.dlg-error').hidden = true;
  d.querySelector('h2').textContent = t(titleKey, { n });
  if (id === 'quality-dialog') {
    renderAnalyzers();
    loadAnalyzers(); // an analyzer may have been added or removed meanwhile
  }
  d.showModal();
  // The analyzer button first: focusing an input would pop up the touch
  // keyboard over it.
  const first = id === 'quality-dialog' && state.analyzers.length ? $('quality-from-device') : null;
  (first || d.querySelector('input')).focus();
}

// Confirm handlers: input mistakes are shown inside the dialog (the input
// stays); an agent refusal closes it and goes to the error banner, which
// a modal dialog would otherwise cover.
function dialogSubmit(id, handler) {
  const d = $(id);
  const form = d.querySelector('form');
  const confirm = form.querySelector('[type=submit]');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const n = state.dialogTicket;
    const errBox = d.querySelector('.dlg-error');
    let run;
    try {
      run = handler(n);
    } catch (e) {
      errBox.textContent = e.message;
      errBox.hidden = false;
      if (e.field) e.field.focus();
      return;
    }
    act(confirm, async () => {
      d.close();
      return run();
    });
  });
  d.querySelector('.dlg-close').addEventListener('click', () => d.close());
}

function qualityValue(id) {
  const v = parseNumber($(id).value);
  if (Number.isNaN(v) || (v !== null && v < 0)) throw new InputError(t('badNumber', { v: $(id).value }), $(id));
  return v;
}

// ---------------------------------------------------------- analyzers

async function loadAnalyzers() {
  let list;
  try { list = await api('GET', '/api/v1/analyzers'); } catch { return; } // 404: older agent, keep none
  const ids = (Array.isArray(list) ? list : []).map((a) => a.id).filter(Boolean);
  if (ids.join('\n') === state.analyzers.join('\n')) return;
  state.analyzers = ids;
  renderAnalyzers();
}

// One big button per analyzer. The first has the id quality-from-device
// (usually there is one); all carry data-device.
function renderAnalyzers() {
  const ids = state.analyzers;
  $('quality-devices').hidden = ids.length === 0;
  $('quality-device-buttons').replaceChildren(...ids.map((id, i) => el('button', {
    type: 'button',
    id: i === 0 ? 'quality-from-device' : `quality-from-device-${i + 1}`,
    class: 'quality-from-device device-read',
    dataset: { device: id },
    disabled: !!state.measuring,
    'aria-busy': state.measuring === id ? 'true' : null,
  }, state.measuring === id ? t('measuring', { id }) : t('readFromAnalyzer', { id }))));
  // No manual save while the analyzer measures: one sample, one entry.
  $('quality-confirm').disabled = !!state.measuring;
}

function qualitySummary(q) {
  if (!q) return '';
  return [
    q.moisture_percent != null ? t('vMoisture', { v: formatNumber(q.moisture_percent) }) : null,
    q.hectolitre_kg != null ? t('vHectolitre', { v: formatNumber(q.hectolitre_kg) }) : null,
    q.protein_percent != null ? t('vProtein', { v: formatNumber(q.protein_percent) }) : null,
  ].filter(Boolean).join(', ');
}

// The values come from the device, never from the form. While it measures
// the dialog stays open; a refusal ("cannot measure", no result) is shown
// in the dialog so the operator can retry or type the values instead.
function readFromAnalyzer(deviceId) {
  const d = $('quality-dialog');
  const errBox = d.querySelector('.dlg-error');
  const n = state.dialogTicket;
  if (state.measuring || n === null) return;
  errBox.hidden = true;
  act(null, async () => {
    state.measuring = deviceId;
    renderAnalyzers();
    const stillOpen = () => d.open && state.dialogTicket === n;
    try {
      const tk = await api('POST', `/api/v1/tickets/${n}/quality`,
        { operator: operatorName(), source: 'device', device_id: deviceId }, 130000);
      if (stillOpen()) d.close();
      const q = [...(tk.quality || [])].reverse().find((x) => x.source === 'device' && x.device_id === deviceId);
      return t('okQualityDevice', { n: tk.ticket_no, id: deviceId, v: qualitySummary(q) });
    } catch (e) {
      if (!stillOpen()) throw e; // dialog gone: the banner tells
      errBox.textContent = e.message;
      errBox.hidden = false;
      return null;
    } finally {
      state.measuring = null;
      renderAnalyzers();
    }
  });
}

function setupDialogs() {
  dialogSubmit('cancel-dialog', (n) => {
    const reason = $('cancel-reason').value.trim();
    if (!reason) throw new InputError(t('needReason'), $('cancel-reason'));
    return async () => {
      const tk = await api('POST', `/api/v1/tickets/${n}/cancel`, { operator: operatorName(), reason });
      return t('okCancel', { n: tk.ticket_no });
    };
  });
  dialogSubmit('quality-dialog', (n) => {
    const body = { operator: operatorName(), source: 'manual' };
    const values = {
      moisture_percent: qualityValue('q-moisture'),
      hectolitre_kg: qualityValue('q-hectolitre'),
      protein_percent: qualityValue('q-protein'),
    };
    for (const [k, v] of Object.entries(values)) if (v !== null) body[k] = v;
    if (Object.keys(body).length === 2) throw new InputError(t('needQuality'), $('q-moisture'));
    return async () => {
      const tk = await api('POST', `/api/v1/tickets/${n}/quality`, body);
      return t('okQuality', { n: tk.ticket_no });
    };
  });
  $('quality-device-buttons').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-device]');
    if (b && !b.disabled) readFromAnalyzer(b.dataset.device);
  });
  dialogSubmit('manual-dialog', (n) => {
    const body = { operator: operatorName(), weighing: 'manual', ...readManual($('m2-weight'), $('m2-reason')) };
    if (state.scaleId) body.scale_id = state.scaleId;
    return async () => {
      const tk = await api('POST', `/api/v1/tickets/${n}/second-weighing`, body);
      return t('okComplete', { n: tk.ticket_no, w: formatWeight(tk.net) });
    };
  });
}

// -------------------------------------------------------------- site

async function pollSite() {
  let next = 1000;
  try {
    state.site = await api('GET', '/api/v1/site');
  } catch (e) {
    state.site = null;
    // No site controller on this agent: hide the lamps, look again rarely.
    if (e.status === 404) { $('site').hidden = true; next = 30000; }
  }
  if (next === 1000) renderSite();
  // setTimeout, not setInterval: on a slow line requests must not pile up.
  setTimeout(pollSite, next);
}

function renderSite() {
  const s = state.site;
  $('site').hidden = false;
  for (const side of ['entry', 'exit']) {
    const colour = s ? s[`${side}_light`] : 'unknown';
    const lamp = $(`${side}-light`);
    lamp.dataset.colour = colour || 'unknown';
    lamp.setAttribute('aria-label', `${t(side)} ${t('light')}: ${t(colour || 'unknown')}`);
    const barrier = s?.[`${side}_barrier`];
    $(`${side}-barrier`).textContent = barrier ? t(barrier === 'open' ? 'barrierOpen' : 'barrierClosed') : '';
  }
  // data-* for styling and tests; the texts follow the language.
  $('site').dataset.state = s?.state || 'unknown';
  $('site').dataset.loaded = String(!!s?.platform_loaded);
  $('site-state').textContent = s ? t(`site_${s.state}`) : t('noConnection');
  const blocked = (s?.sensors || []).filter((x) => x.blocked).map((x) => x.name);
  $('site-positioned').textContent = !s ? ''
    : s.positioned ? t('positioned') : `${t('notPositioned')}${blocked.length ? `: ${blocked.join(', ')}` : ''}`;
  if (state.sensors.length) renderSensors();
  // The agent keeps the last pin error after recovery: show it as a fault
  // only while the outputs are held safe, else as a quiet note.
  const pinError = s?.last_pin_error || '';
  const err = $('site-error');
  err.hidden = !s?.pin_fault && !pinError;
  err.dataset.fault = String(!!s?.pin_fault);
  err.textContent = s?.pin_fault
    ? `${t('pinFault')}${pinError ? `: ${pinError}` : ''}`
    : pinError ? `${t('lastPinError')}: ${pinError}` : '';
}

// -------------------------------------------------------- simulation

async function setupSimulation() {
  let sim;
  try { sim = await api('GET', '/api/v1/simulation'); } catch { return; } // 404: a real scale
  if (!sim || !sim.enabled) return;
  $('sim').hidden = false;
  $('sim-weight').value = sim.weight_kg || 40000;
  $('sim-drive-on').addEventListener('click', (ev) => act(ev.currentTarget, async () => {
    const kg = parseNumber($('sim-weight').value);
    if (kg === null || !Number.isFinite(kg) || kg < 0) throw new InputError(t('needWeight'), $('sim-weight'));
    await api('POST', '/api/v1/simulation/truck', { weight_kg: kg });
  }, { needsOperator: false, refresh: false }));
  $('sim-drive-off').addEventListener('click', (ev) => act(ev.currentTarget,
    () => api('DELETE', '/api/v1/simulation/truck').then(() => null),
    { needsOperator: false, refresh: false }));

  // Simulated position sensors are pins named sensor.<name>.
  state.sensors = (Array.isArray(sim.pins) ? sim.pins : [])
    .filter((p) => typeof p === 'string' && p.startsWith('sensor.'))
    .map((p) => p.slice('sensor.'.length))
    .filter(Boolean);
  $('sim-sensors').hidden = state.sensors.length === 0;
  $('sim-sensor-buttons').replaceChildren(...state.sensors.map((name) => el('button', {
    type: 'button', class: 'sim-sensor', dataset: { sensor: name }, 'aria-pressed': 'false',
  })));
  renderSensors();
  $('sim-sensor-buttons').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.sim-sensor');
    if (!b) return;
    const name = b.dataset.sensor;
    const blocked = !sensorBlocked(name);
    act(b, async () => {
      await api('PUT', `/api/v1/simulation/sensors/${encodeURIComponent(name)}`, { blocked });
      state.sensorSet[name] = { blocked, at: Date.now() };
      renderSensors();
    }, { needsOperator: false, refresh: false });
  });
}

// The site status is the truth (it reads the pins); what we last set only
// bridges the moment until a poll shows it (or a few seconds have passed).
function sensorBlocked(name) {
  const s = (state.site?.sensors || []).find((x) => x.name === name);
  const set = state.sensorSet[name];
  if (set && (!s || (!!s.blocked !== set.blocked && Date.now() - set.at < 3000))) return set.blocked;
  delete state.sensorSet[name];
  return s ? !!s.blocked : false;
}

function renderSensors() {
  for (const b of document.querySelectorAll('#sim-sensor-buttons .sim-sensor')) {
    const blocked = sensorBlocked(b.dataset.sensor);
    b.setAttribute('aria-pressed', String(blocked));
    b.dataset.blocked = String(blocked);
    b.textContent = `${t('sensor')} ${b.dataset.sensor}: ${t(blocked ? 'sensorBlocked' : 'sensorClear')}`;
  }
}

// ------------------------------------------------- Modbus field devices

async function pollModbus() {
  let next = 2000;
  try {
    const lines = await api('GET', '/api/v1/modbus');
    state.modbus = Array.isArray(lines) ? lines : [];
    $('modbus').dataset.stale = 'false';
  } catch (e) {
    // 404: an agent without the Modbus API; look again rarely.
    if (e.status === 404) { state.modbus = []; next = 30000; }
    $('modbus').dataset.stale = 'true';
  }
  $('modbus').dataset.polled = 'true';
  renderModbus();
  setTimeout(pollModbus, next);
}

const mbKey = (device, point) => `${device}\n${point}`;

// The poll is the truth; what we last wrote bridges the moment until the
// device has been read again (or a few seconds have passed).
function mbValue(device, point, reading) {
  const key = mbKey(device, point);
  const set = state.modbusSet[key];
  if (set && reading?.value !== set.value && Date.now() - set.at < 3000) return set.value;
  delete state.modbusSet[key];
  return reading?.value;
}

function mbFormat(v) {
  if (typeof v === 'boolean') return t(v ? 'on' : 'off');
  if (typeof v === 'number') return formatNumber(v);
  return v === null || v === undefined || v === '' ? '—' : String(v);
}

// Update in place, keyed by data-<attr>: the list is polled every 2 s and
// a rebuild would swallow a tap that lands during it.
function syncChildren(parent, attr, keys, make, update) {
  const old = new Map([...parent.children].map((c) => [c.dataset[attr], c]));
  keys.forEach((key, i) => {
    const node = old.get(key) || make(key);
    old.delete(key);
    update(node, key);
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
  for (const node of old.values()) node.remove();
}

function renderModbus() {
  const devices = state.modbus.flatMap((line) => (line.devices || [])
    .filter((d) => d?.health?.device_id)
    .map((d) => ({ line: line.line_id, ...d })));
  $('modbus').hidden = devices.length === 0;
  const byId = new Map(devices.map((d) => [d.health.device_id, d]));
  syncChildren($('modbus-devices'), 'device', [...byId.keys()],
    (id) => el('li', { class: 'card modbus-device', dataset: { device: id } },
      el('div', { class: 'card-info' },
        el('strong', { class: 'mb-id' }, id),
        el('span', { class: 'chip mb-status' }),
        el('span', { class: 'mb-stats num' }),
        el('span', { class: 'sub mb-where' })),
      el('ul', { class: 'mb-points' })),
    (li, id) => renderDevice(li, byId.get(id)));
}

function renderDevice(li, d) {
  const h = d.health;
  const failing = !h.degraded && h.consecutive_failures > 0;
  const chip = li.querySelector('.mb-status');
  chip.dataset.status = h.degraded ? 'degraded' : failing ? 'error' : 'ok';
  chip.textContent = h.degraded ? t('mbDegraded') : failing ? h.last_error || t('mbFailing') : t('mbOk');
  chip.title = h.last_error || '';
  const rate = typeof h.success_rate === 'number' ? t('mbRate', { v: formatNumber(Math.round(h.success_rate * 1000) / 10) }) : '';
  const lat = h.last_latency_ms;
  const ms = typeof lat !== 'number' ? '' : lat < 0.1 ? `< ${formatNumber(0.1)} ms` : `${formatNumber(Math.round(lat * 10) / 10)} ms`;
  li.querySelector('.mb-stats').textContent = [rate, ms].filter(Boolean).join(' · ');
  li.querySelector('.mb-where').textContent = `${d.line} · ${t('mbUnit', { u: h.unit })}`;

  const points = d.points || {};
  syncChildren(li.querySelector('.mb-points'), 'point', Object.keys(points),
    (name) => el('li', { class: 'modbus-point', dataset: { point: name } },
      el('span', { class: 'mp-name' }, name), ' = ', el('strong', { class: 'mp-value num' })),
    (item, name) => renderPoint(item, h.device_id, name, points[name]));
}

function renderPoint(item, device, name, reading) {
  const good = reading?.quality === 'good';
  const value = mbValue(device, name, reading);
  item.dataset.quality = good ? 'good' : 'bad';
  item.title = good ? '' : reading?.error || '';
  const v = item.querySelector('.mp-value');
  v.textContent = mbFormat(value);
  if (typeof value === 'boolean') v.dataset.on = String(value); else delete v.dataset.on;

  let b = item.querySelector('.modbus-toggle');
  // Points the site interlock drives come as not writable, with the field that drives them.
  const want = typeof value === 'boolean' && reading?.writable !== false
    && !state.modbusReadOnly.has(mbKey(device, name));
  if (reading?.driven_by) item.title = `${t('drivenByInterlock')}: ${reading.driven_by}`;
  if (!want) { b?.remove(); return; }
  if (!b) {
    b = el('button', { type: 'button', class: 'modbus-toggle secondary', dataset: { device, point: name } });
    item.append(b);
  }
  const label = t(value ? 'switchOff' : 'switchOn');
  b.textContent = label;
  b.setAttribute('aria-label', `${name}: ${label}`);
  b.dataset.value = String(value);
  // No write on a bad reading: the device is not answering anyway.
  if (b.getAttribute('aria-busy') !== 'true') b.disabled = !good;
}

function toggleModbus(b) {
  const { device, point } = b.dataset;
  const value = b.dataset.value !== 'true';
  act(b, async () => {
    b.setAttribute('aria-busy', 'true');
    try {
      await api('POST', `/api/v1/modbus/${encodeURIComponent(device)}/${encodeURIComponent(point)}`,
        { value, by: `terminal:${operatorName()}` });
      state.modbusSet[mbKey(device, point)] = { value, at: Date.now() };
    } catch (e) {
      // A point that turned out read-only (422) or interlocked (409) loses its toggle.
      if (e.status === 422 || e.status === 409) state.modbusReadOnly.add(mbKey(device, point));
      throw e;
    } finally {
      b.removeAttribute('aria-busy');
      renderModbus();
    }
    return null;
  }, { refresh: false });
}

// ------------------------------------------------------------ cash desk

// Decimal text ("2,5", "3.20", "1 000") → integer count of 10^-places, as a
// BigInt, with no floating point on the way: money and legal quantities.
// null for empty input; an InputError for anything else that is not a
// positive amount with at most `places` decimals.
function parseDecimal(input, places, emptyKey) {
  const raw = input.value.replace(/\s/g, '');
  if (raw === '') throw new InputError(t(emptyKey), input);
  const m = /^(\d*)(?:[.,](\d*))?$/.exec(raw);
  if (!m || (m[1] + (m[2] || '')) === '') throw new InputError(t('badNumber', { v: input.value.trim() }), input);
  const frac = (m[2] || '').replace(/0+$/, '');
  if (frac.length > places) throw new InputError(t('tooManyDecimals', { v: input.value.trim(), d: places }), input);
  if (m[1].replace(/^0+/, '').length > 9) throw new InputError(t('tooLarge', { v: input.value.trim() }), input);
  const value = BigInt(m[1] || '0') * 10n ** BigInt(places) + BigInt((frac || '0').padEnd(places, '0'));
  if (value <= 0n) throw new InputError(t(emptyKey), input);
  return value;
}

// Largest amount of one line the agent accepts (MAX_AMOUNT_CENTS).
const MAX_CENTS = 1000000000n;

// The line as the agent checks it: gross = quantity × unit price, rounded
// half away from zero (all positive here, so +500 and truncate).
function readSaleLine() {
  const text = $('sale-text').value.trim();
  if (!text) throw new InputError(t('needText'), $('sale-text'));
  const qty = parseDecimal($('sale-qty'), 3, 'needQty');
  const price = parseDecimal($('sale-price'), 2, 'needPrice');
  const gross = (qty * price + 500n) / 1000n;
  for (const [v, input] of [[qty, $('sale-qty')], [price, $('sale-price')], [gross, $('sale-price')]]) {
    if (v > MAX_CENTS) throw new InputError(t('tooLarge', { v: input.value.trim() }), input);
  }
  return {
    text,
    quantity_milli: Number(qty),
    unit: $('sale-unit').value.trim() || 'kg',
    unit_price_cents: Number(price),
    gross_cents: Number(gross),
    vat_key: Number($('sale-vat').value),
  };
}

// Cents (a safe integer) as "8,00 €" / "8.00 €", by integer arithmetic.
function formatCents(cents) {
  if (typeof cents !== 'number' || !Number.isFinite(cents)) return '—';
  const abs = Math.abs(Math.trunc(cents));
  const sep = lang() === 'de' ? ',' : '.';
  return `${cents < 0 ? '-' : ''}${Math.trunc(abs / 100)}${sep}${String(abs % 100).padStart(2, '0')} €`;
}

const saleTotal = (s) => (s.lines || []).reduce((sum, l) => sum + (l.gross_cents || 0), 0);

function renderSalePreview() {
  let text = '—';
  try { text = formatCents(readSaleLine().gross_cents); } catch { /* incomplete: no total yet */ }
  $('sale-total').textContent = text;
}

// A poll loop on setTimeout (requests never pile up on a slow line) that can
// also be run at once, never twice at the same time. `fn` returns the delay
// until the next run, or false to stop for good.
function poller(fn) {
  let busy = false;
  let again = false;
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    if (busy) { again = true; return; }
    clearTimeout(timer);
    busy = true;
    let next;
    try { next = await fn(); } finally { busy = false; }
    if (next === false) { stopped = true; return; }
    if (again) { again = false; next = 0; }
    timer = setTimeout(run, next);
  };
  return run;
}

const pollTse = poller(async () => {
  try {
    state.tse = await api('GET', '/api/v1/tse');
    state.tseStale = false;
  } catch (e) {
    // 404: this box has no cash desk. It will not grow one while the page
    // is open, so the panel stays hidden and nobody asks again.
    if (e.status === 404) {
      state.cash = false;
      $('cash').hidden = true;
      $('tse-outage').hidden = true;
      return false;
    }
    state.tseStale = true;
  }
  if (state.tse && !state.cash) {
    state.cash = true;
    loadReceipts();
  }
  renderTse();
  return 5000;
});

const loadReceipts = poller(async () => {
  try {
    const list = await api('GET', '/api/v1/receipts?limit=20');
    state.receipts = Array.isArray(list) ? list : [];
    renderReceipts();
  } catch { /* keep the last list; the next poll retries */ }
  return 10000;
});

function shortSerial(s) {
  return s && s.length > 16 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s || '';
}

function renderTse() {
  if (!state.cash) return;
  const s = state.tse || {};
  $('cash').hidden = false;
  $('cash').dataset.stale = String(!!state.tseStale);
  const outage = s.outage || null;
  const chip = $('tse-state');
  const status = state.tseStale ? 'stale' : outage ? 'outage' : s.available ? 'ok' : 'down';
  chip.dataset.status = status;
  chip.textContent = t({ stale: 'tseStale', outage: 'tseOutageChip', ok: 'tseReady', down: 'tseDown' }[status]);
  const serial = s.info?.serial_hex || '';
  $('tse-serial').textContent = serial ? t('tseSerial', { s: shortSerial(serial) }) : '';
  $('tse-serial').title = serial;
  $('tse-uncertified').hidden = !s.info || s.info.certified !== false;
  const lastError = !outage && !s.available ? s.last_error || '' : '';
  $('tse-last-error').hidden = !lastError;
  $('tse-last-error').textContent = lastError;

  // The banner stays while the agent reports the outage, also when a poll
  // fails: "no answer" is no reason to believe the TSE is back.
  const banner = $('tse-outage');
  banner.hidden = !outage;
  $('tse-outage-detail').textContent = outage
    ? t('tseSince', { d: formatDateTime(outage.started_at), cause: outage.cause || '—' }) : '';
  if (outage) banner.dataset.since = outage.started_at || ''; else delete banner.dataset.since;
}

function renderReceipts() {
  // Receipts cancelled by a storno in the list (the storno is always newer).
  const cancelledBy = new Map(state.receipts
    .filter((r) => r.cancels_receipt_no != null)
    .map((r) => [r.cancels_receipt_no, r.receipt_no]));
  syncChildren($('receipts'), 'receipt', state.receipts.map((r) => String(r.receipt_no)),
    (n) => el('tr', { dataset: { receipt: n } },
      el('td', { class: 'num r-no' }, n),
      el('td', { class: 'r-time' }),
      el('td', { class: 'num r-total' }),
      el('td', { class: 'r-tse' }),
      el('td', {}, el('div', { class: 'row-actions' },
        el('a', { class: 'button-link secondary r-print', href: `/api/v1/receipts/${n}/print`, target: '_blank', rel: 'noopener' }),
        el('button', { type: 'button', class: 'storno danger-outline' })))),
    (tr, n) => {
      const r = state.receipts.find((x) => String(x.receipt_no) === n);
      const by = cancelledBy.get(r.receipt_no);
      tr.dataset.signed = String(!!r.tse);
      tr.dataset.storno = String(r.cancels_receipt_no != null);
      tr.dataset.cancelled = String(by != null);
      tr.querySelector('.r-time').textContent = formatTime(r.finished_at);
      tr.querySelector('.r-total').textContent = formatCents(saleTotal(r));
      const tags = [r.tse
        ? el('span', { class: 'tag tag-signed', title: `TSE ${r.tse.serial_hex} · ${r.tse.transaction_number}` }, t('signed'))
        : el('span', { class: 'tag tag-unsigned', title: r.tse_error || '' }, t('unsigned'))];
      if (r.cancels_receipt_no != null) tags.push(el('span', { class: 'tag tag-storno' }, t('stornoOf', { n: r.cancels_receipt_no })));
      if (by != null) tags.push(el('span', { class: 'tag tag-cancelled' }, t('cancelledByReceipt', { n: by })));
      if (r.receipt_type === 'AVBelegabbruch') tags.push(el('span', { class: 'tag tag-warn' }, t('aborted')));
      tr.querySelector('.r-tse').replaceChildren(...tags);
      const print = tr.querySelector('.r-print');
      print.textContent = t('receipt');
      print.setAttribute('aria-label', `${t('printReceipt')} ${n}`);
      // Only a sale that is no storno and not cancelled yet can be cancelled.
      const storno = tr.querySelector('.storno');
      storno.textContent = t('storno');
      storno.hidden = r.receipt_type !== 'Beleg' || r.cancels_receipt_no != null || by != null;
    });
  $('receipts-empty').hidden = state.receipts.length > 0;
}

function setPayment(p) {
  state.payment = p;
  for (const b of document.querySelectorAll('[data-payment]')) b.setAttribute('aria-pressed', String(b.dataset.payment === p));
}

function showSaleResult(sale) {
  const total = formatCents(saleTotal(sale));
  $('sale-result-text').textContent = t(sale.tse ? 'saleResult' : 'saleResultUnsigned', { n: sale.receipt_no, total });
  $('sale-print').href = `/api/v1/receipts/${sale.receipt_no}/print`;
  $('sale-result').dataset.receipt = String(sale.receipt_no);
  $('sale-result').dataset.signed = String(!!sale.tse);
  $('sale-result').hidden = false;
}

function submitSale(ev) {
  ev.preventDefault();
  act($('sale-submit'), async () => {
    $('sale-result').hidden = true;
    const line = readSaleLine();
    try {
      const sale = await api('POST', '/api/v1/sales', {
        operator: operatorName(),
        lines: [line],
        payments: [{ type: state.payment, amount_cents: line.gross_cents }],
      });
      state.lastSale = sale;
      showSaleResult(sale);
      for (const id of ['sale-text', 'sale-qty', 'sale-price']) $(id).value = '';
      renderSalePreview();
      const total = formatCents(saleTotal(sale));
      return t(sale.tse ? 'okSale' : 'okSaleUnsigned', { n: sale.receipt_no, total });
    } finally {
      // Also after a refusal: the TSE may have failed meanwhile.
      loadReceipts();
      pollTse();
    }
  }, { refresh: false });
}

function openCashDialog(kind, n) {
  hideError();
  if (kind === 'storno' && !operatorName()) {
    showError(t('needOperator'));
    $('operator').focus();
    return;
  }
  const d = $('cash-dialog');
  state.cashConfirm = { kind, n };
  d.querySelector('.dlg-error').hidden = true;
  const r = state.receipts.find((x) => x.receipt_no === n);
  $('cash-dialog-title').textContent = kind === 'storno' ? t('stornoTitle', { n }) : t('closeDayTitle');
  $('cash-dialog-text').textContent = kind === 'storno'
    ? t('stornoText', { total: formatCents(-saleTotal(r || {})) }) : t('closeDayText');
  const confirm = $('cash-confirm');
  confirm.textContent = t(kind === 'storno' ? 'stornoConfirm' : 'closeDayConfirm');
  confirm.className = kind === 'storno' ? 'danger' : 'primary-sm';
  confirm.dataset.kind = kind;
  d.showModal();
  // No input to type into: start on Close, the harmless button.
  d.querySelector('.dlg-close').focus();
}

function setupCash() {
  $('sale-form').addEventListener('submit', submitSale);
  $('sale-form').addEventListener('input', renderSalePreview);
  $('sale-vat').addEventListener('change', renderSalePreview);
  for (const b of document.querySelectorAll('[data-payment]')) b.addEventListener('click', () => setPayment(b.dataset.payment));
  $('receipts').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.storno');
    const row = b && b.closest('[data-receipt]');
    if (row && !b.disabled) openCashDialog('storno', Number(row.dataset.receipt));
  });
  $('close-day').addEventListener('click', () => openCashDialog('closing'));

  const d = $('cash-dialog');
  d.querySelector('.dlg-close').addEventListener('click', () => d.close());
  d.querySelector('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const { kind, n } = state.cashConfirm || {};
    if (!kind) return;
    // An agent refusal (already cancelled, …) goes to the error banner,
    // which the modal dialog would otherwise cover.
    act($('cash-confirm'), async () => {
      d.close();
      try {
        if (kind === 'storno') {
          const s = await api('POST', `/api/v1/receipts/${n}/storno`, { operator: operatorName() });
          return t('okStorno', { n, s: s.receipt_no });
        }
        const z = await api('POST', '/api/v1/cash/closing');
        return z.last_receipt_no != null
          ? t('okClosing', { z: z.z_nr, from: z.first_receipt_no, to: z.last_receipt_no, total: formatCents(z.total_gross_cents) })
          : t('okClosingEmpty', { z: z.z_nr });
      } finally {
        loadReceipts();
        pollTse();
      }
    }, { needsOperator: kind === 'storno', refresh: false });
  });
  renderSalePreview();
  pollTse();
}

// -------------------------------------------------------------- start

function setup() {
  applyStatic(document);
  document.title = t('appTitle');

  const op = $('operator');
  try { op.value = localStorage.getItem(OPERATOR_KEY) || ''; } catch { /* ignore */ }
  op.addEventListener('input', () => {
    try { localStorage.setItem(OPERATOR_KEY, op.value.trim()); } catch { /* ignore */ }
  });

  $('lang-de').addEventListener('click', () => setLang('de'));
  $('lang-en').addEventListener('click', () => setLang('en'));
  onLangChange(() => {
    document.title = t('appTitle');
    renderLive();
    renderMasterData();
    renderTickets();
    renderFooter();
    if (state.site) renderSite();
    renderAnalyzers();
    renderSensors();
    renderModbus();
    renderTse();
    renderReceipts();
    renderSalePreview();
    if (state.lastSale && !$('sale-result').hidden) showSaleResult(state.lastSale);
  });

  $('error-dismiss').addEventListener('click', hideError);
  $('success-dismiss').addEventListener('click', () => { $('success').hidden = true; });

  $('scale-select').addEventListener('change', (ev) => {
    state.scaleId = ev.target.value;
    try { localStorage.setItem(SCALE_KEY, state.scaleId); } catch { /* ignore */ }
    connectLive();
  });

  const plate = $('plate');
  plate.addEventListener('input', () => {
    // Upper-case as typed, keeping the caret where the operator is.
    const pos = plate.selectionStart;
    plate.value = plate.value.toUpperCase();
    plate.setSelectionRange(pos, pos);
    renderMode();
  });
  // Enter in the plate field (or picking a datalist entry) must not
  // trigger a weighing before direction and partner are chosen.
  plate.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') ev.preventDefault(); });

  for (const b of document.querySelectorAll('[data-direction]')) b.addEventListener('click', () => setDirection(b.dataset.direction));
  for (const b of document.querySelectorAll('[data-mode]')) b.addEventListener('click', () => setMode(b.dataset.mode));

  $('article').addEventListener('change', () => { renderLots(); renderContracts(); });
  $('partner').addEventListener('change', renderContracts);
  // Picking a lot or contract implies its article/partner: fill them in.
  $('lot').addEventListener('change', () => {
    const lot = state.md?.lots.find((l) => l.id === $('lot').value);
    if (lot && !$('article').value) { $('article').value = lot.article_id; renderLots(); $('lot').value = lot.id; renderContracts(); }
  });
  $('contract').addEventListener('change', () => {
    const c = state.md?.contracts.find((x) => x.id === $('contract').value);
    if (!c) return;
    $('partner').value = c.partner_id;
    $('article').value = c.article_id;
    renderLots();
    renderContracts();
    $('contract').value = c.id;
  });

  $('first-form').addEventListener('submit', submitFirst);
  $('open-tickets').addEventListener('click', onRowClick);
  $('recent-tickets').addEventListener('click', onRowClick);
  setupDialogs();
  $('modbus-devices').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.modbus-toggle');
    if (b && !b.disabled) toggleModbus(b);
  });

  renderLive();
  renderMasterData();
  renderTickets();
  renderFooter();

  loadScales();
  loadMasterData();
  loadTickets();
  pollSite();
  setupSimulation();
  loadAnalyzers();
  pollModbus();
  setupCash();
  // Other terminals or the uplink may change tickets and master data.
  setInterval(loadTickets, 10000);
  setInterval(loadMasterData, 60000);
  setInterval(renderFooter, 30000);
}

setup();
