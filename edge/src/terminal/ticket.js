// Printable weigh ticket for /tickets/{n}. Labels follow the chosen
// language; the legally relevant marks (title, STORNO, copy, manual entry,
// stored tare) are printed in both languages because the driver who takes
// the paper may read either.
import {
  t, setLang, applyStatic, onLangChange, el,
  formatWeight, formatDateTime, formatDate, formatClock, formatNumber, sameWeight,
} from '/terminal/i18n.js';

const $ = (id) => document.getElementById(id);
const PAPER_KEY = 'valeo.terminal.paper';
const ticketNo = (location.pathname.match(/\/tickets\/(\d+)/) || [])[1];
const isCopy = new URLSearchParams(location.search).get('copy') === '1';
let ticket = null;

function showError(message) {
  $('error-text').textContent = message;
  $('error').hidden = false;
}

async function load() {
  if (!ticketNo) { showError(t('noTicket')); return; }
  try {
    const res = await fetch(`/api/v1/tickets/${ticketNo}`, { headers: { accept: 'application/json' } });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Error((data && (data.detail || data.title)) || `${res.status} ${res.statusText}`);
    ticket = data;
    render();
  } catch (e) {
    showError(e instanceof TypeError ? t('agentUnreachable') : e.message);
    $('ticket').replaceChildren();
  }
}

// G or T: the heavier weighing is gross. While the ticket is open there is
// no gross yet, so go by direction (intake arrives loaded, outgoing empty).
function role(step, isFirst, tk) {
  if (step.source === 'stored-tare') return 'PT';
  if (tk.gross && tk.tare && !sameWeight(tk.gross, tk.tare)) {
    if (sameWeight(step.weight, tk.gross)) return 'G';
    if (sameWeight(step.weight, tk.tare)) return 'T';
  }
  return isFirst === (tk.direction === 'intake') ? 'G' : 'T';
}

// Who took a weighing. Older tickets carry the operator only on the
// ticket, which is who took the first weighing. A stored tare was weighed
// long ago by someone else: no name then.
function weigher(step, isFirst, tk) {
  if (step.operator) return step.operator;
  return isFirst && step.source !== 'stored-tare' && tk.operator ? tk.operator : '—';
}

// Two values stacked in one cell, each kept whole: an A5 sheet has no
// room for eight columns side by side.
const stacked = (a, b) => [el('span', { class: 'nowrap' }, a), el('br'), el('span', { class: 'nowrap' }, b)];

// A manual row gets a full-width note under it: the legal mark must be
// readable, and a narrow A5 column would chop it into single words.
const STEP_COLUMNS = 6;
function stepRows(step, isFirst, tk) {
  const manual = step.source === 'manual';
  const rows = [el('tr', { class: manual ? 'row-manual' : null, dataset: { step: isFirst ? 1 : 2 } },
    el('th', { scope: 'row', class: 'nowrap' }, `${isFirst ? 1 : 2}. ${role(step, isFirst, tk)}`),
    el('td', { class: 'num' }, formatWeight(step.weight)),
    el('td', {}, stacked(formatDate(step.weighed_at), formatClock(step.weighed_at))),
    el('td', {}, stacked(step.alibi_id || '—', step.scale_id || '—')),
    el('td', {}, manual ? `${t('manualMark')} *` : t(`src_${step.source}`)),
    el('td', { class: 'weigher' }, weigher(step, isFirst, tk)))];
  if (manual) {
    rows.push(el('tr', { class: 'row-manual-note' }, el('td', { colspan: STEP_COLUMNS },
      '* Handeingabe – nicht eichfähig / manual entry – not legal for trade',
      step.manual_reason ? ` · ${t('reasonLabel')}: ${step.manual_reason}` : '')));
  }
  return rows;
}

// Quality values are measurands too: where they come from is printed in
// both languages, the analyzer by its id, with its result line as read.
function qualityRows(q) {
  const device = q.source === 'device';
  const rows = [el('tr', { class: device ? 'q-device' : 'q-manual', dataset: { source: q.source || 'manual' } },
    el('td', {}, formatDateTime(q.taken_at)),
    el('td', { class: 'num' }, formatNumber(q.moisture_percent)),
    el('td', { class: 'num' }, formatNumber(q.hectolitre_kg)),
    el('td', { class: 'num' }, formatNumber(q.protein_percent)),
    el('td', { class: 'q-source' }, device
      ? [el('span', { class: 'small' }, 'Analysegerät / analyzer'), el('br'), el('strong', { class: 'device-id' }, q.device_id || '?')]
      : 'Handeingabe / manual entry'),
    el('td', {}, q.operator || '—'))];
  if (device && q.raw) {
    rows.push(el('tr', { class: 'q-raw' }, el('td', { colspan: 6, class: 'small' },
      'Ergebniszeile des Geräts / analyzer result line: ',
      el('code', {}, q.raw))));
  }
  return rows;
}

const named = (x) => (x ? (x.name && x.name !== x.id ? `${x.name} (${x.id})` : x.id) : '—');

function fact(key, value, cls) {
  return [el('dt', {}, t(key)), el('dd', { class: cls }, value ?? '—')];
}

function render() {
  const tk = ticket;
  document.title = `Wiegeschein / Weigh ticket ${tk.ticket_no}`;
  const steps = [tk.first, tk.second].filter(Boolean);
  const storedStep = steps.find((s) => s.source === 'stored-tare');

  const rows = steps.flatMap((s) => stepRows(s, s === tk.first, tk));
  // A stored tare that is not carried as a step still has to be shown.
  if (tk.tare_source === 'stored' && !storedStep && tk.tare) {
    rows.push(el('tr', {}, el('th', { scope: 'row' }, 'PT'), el('td', { class: 'num' }, formatWeight(tk.tare)),
      el('td', {}, '—'), el('td', {}, '—'), el('td', {}, t('src_stored-tare')), el('td', {}, '—')));
  }
  rows.push(el('tr', { class: 'net-row' },
    el('th', { scope: 'row' }, 'N'),
    el('td', { class: 'num', id: 'net' }, tk.net ? formatWeight(tk.net) : '—'),
    el('td', { colspan: STEP_COLUMNS - 2 }, t('net'))));

  const quality = (tk.quality || []).flatMap(qualityRows);

  const copy = isCopy || tk.prints > 0;
  const c = tk.cancellation;

  // Optional parts are null; replaceChildren would print them as "null".
  $('ticket').replaceChildren(...[
    el('header', { class: 'ticket-head' },
      el('h1', {}, 'Wiegeschein / Weigh ticket'),
      el('div', { class: 'ticket-no' }, el('span', { class: 'small' }, t('ticketNo')), ' ', el('strong', {}, tk.ticket_no))),
    copy ? el('p', { class: 'mark mark-copy', id: 'copy' }, 'KOPIE / DUPLIKAT – COPY') : null,
    tk.state === 'cancelled' ? el('div', { class: 'storno', id: 'storno' },
      el('div', { class: 'storno-word' }, 'STORNO'),
      el('div', { class: 'small' }, 'storniert / cancelled'),
      c ? el('p', {}, t('cancelledBy', { d: formatDateTime(c.at), op: c.operator })) : null,
      c ? el('p', {}, `${t('reasonLabel')}: ${c.reason}`) : null) : null,
    tk.legal_for_trade === false ? el('p', { class: 'mark mark-legal', id: 'not-legal' }, 'Nicht eichfähig / not legal for trade') : null,
    tk.state === 'open' ? el('p', { class: 'mark mark-open' }, t('openNote')) : null,
    el('dl', { class: 'facts' },
      fact('device', tk.device_id),
      fact('plate', tk.plate, 'plate'),
      fact('direction', t(tk.direction === 'outgoing' ? 'outgoing' : 'intake')),
      fact('partner', named(tk.partner)),
      fact('article', named(tk.article)),
      fact('lot', named(tk.lot)),
      fact('location', named(tk.location)),
      fact('contract', tk.contract_id),
      fact('operator', tk.operator)),
    el('table', { class: 'weighings' },
      el('thead', {}, el('tr', {}, ...['step', 'weight', 'dateTime', 'alibiScale', 'source', 'weigher'].map((k) => el('th', {}, t(k))))),
      el('tbody', {}, ...rows)),
    tk.tare_source === 'stored'
      ? el('p', { class: 'stored-tare-note', id: 'stored-tare-note' },
        storedStep
          ? `Festtara (gespeichert am ${formatDateTime(storedStep.weighed_at)}) / stored tare (weighed on ${formatDateTime(storedStep.weighed_at)})`
          : 'Festtara / stored tare')
      : null,
    el('p', { class: 'legend small' }, t('legend')),
    quality.length ? el('section', { class: 'quality' },
      el('h2', {}, t('quality')),
      el('table', {},
        el('thead', {}, el('tr', {}, ...['takenAt', 'qMoisture', 'qHectolitre', 'qProtein', 'source', 'operator'].map((k) => el('th', {}, t(k))))),
        el('tbody', {}, ...quality))) : null,
    el('footer', { class: 'ticket-foot small' },
      t('printedAt', { d: formatDateTime(new Date().toISOString()) }),
      tk.prints > 0 ? ` · ${t('printCount', { n: tk.prints })}` : ''),
  ].filter(Boolean));
  $('ticket').setAttribute('aria-busy', 'false');
}

function setPaper(p) {
  // A5 is the default @page; body.a4 switches to the named A4 page.
  document.body.classList.toggle('a4', p === 'a4');
  for (const b of document.querySelectorAll('[data-paper]')) b.setAttribute('aria-pressed', String(b.dataset.paper === p));
  try { localStorage.setItem(PAPER_KEY, p); } catch { /* ignore */ }
}

applyStatic(document);
let paper = 'a5';
try { paper = localStorage.getItem(PAPER_KEY) || 'a5'; } catch { /* ignore */ }
setPaper(paper);
$('print').addEventListener('click', () => window.print());
$('back').addEventListener('click', () => {
  // Opened from the terminal as its own tab: close it. Opened directly:
  // go to the terminal.
  if (window.opener) window.close();
  location.href = '/';
});
for (const b of document.querySelectorAll('[data-paper]')) b.addEventListener('click', () => setPaper(b.dataset.paper));
$('lang-de').addEventListener('click', () => setLang('de'));
$('lang-en').addEventListener('click', () => setLang('en'));
onLangChange(() => { if (ticket) render(); });
load();
