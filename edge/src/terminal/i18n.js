// Shared by the terminal (app.js) and the printable ticket (ticket.js):
// the German/English dictionary, t(key), number/date formatting and a tiny
// DOM helper. No dependencies: the scale house has a bad line, so nothing
// may come from outside the agent.

const DICT = {
  en: {
    appTitle: 'Valeo Edge – weighbridge',
    scale: 'Scale',
    noScale: 'no scale',
    connected: 'connected',
    noConnection: 'NO CONNECTION',
    stable: 'STABLE',
    motion: 'MOTION',
    overload: 'OVERLOAD',
    underload: 'UNDERLOAD',
    operator: 'Operator',
    operatorPlaceholder: 'your name',
    language: 'Language',
    entry: 'Entry',
    exit: 'Exit',
    light: 'light',
    red: 'red',
    green: 'green',
    unknown: 'unknown',
    barrierOpen: 'barrier open',
    barrierClosed: 'barrier closed',
    positioned: 'vehicle in position',
    notPositioned: 'not in position',
    site_free: 'free',
    site_occupied: 'occupied',
    site_weighing: 'weighing',
    site_released: 'released',
    newVehicle: 'New vehicle – first weighing',
    plate: 'Licence plate',
    direction: 'Direction',
    intake: 'Intake',
    outgoing: 'Outgoing',
    partner: 'Partner',
    article: 'Article',
    lot: 'Lot',
    location: 'Location',
    contract: 'Contract',
    none: '— none —',
    weighingMode: 'Weighing',
    modeScale: 'Scale',
    modeStoredTare: 'Stored tare',
    modeManual: 'Manual',
    storedTareInfo: 'Stored tare {w}, weighed {d}',
    manualWeight: 'Weight (kg)',
    manualReason: 'Reason (required)',
    notLegal: 'Manual entry – not legal for trade',
    firstWeighing: 'First weighing',
    weighStoredTare: 'Weigh with stored tare',
    onSite: 'Vehicles on site',
    recent: 'Recent tickets',
    colNo: 'No.',
    colPlate: 'Plate',
    colDirection: 'Direction',
    colNet: 'Net',
    colState: 'State',
    colTime: 'Time',
    colActions: 'Actions',
    secondWeighing: 'Second weighing',
    manualSecond: 'Manual weight…',
    cancel: 'Cancel',
    quality: 'Quality',
    print: 'Print',
    reprint: 'Reprint',
    back: 'Back',
    close: 'Close',
    dismiss: 'Dismiss',
    save: 'Save',
    state_open: 'open',
    state_complete: 'complete',
    state_cancelled: 'cancelled',
    noOpen: 'No vehicles on site.',
    noRecent: 'No tickets yet.',
    manualMark: 'manual',
    cancelTitle: 'Cancel ticket {n}',
    cancelReason: 'Reason for cancelling (required)',
    cancelConfirm: 'Cancel ticket',
    qualityTitle: 'Quality – ticket {n}',
    moisture: 'Moisture (%)',
    hectolitre: 'Hectolitre weight (kg/hl)',
    protein: 'Protein (%)',
    manualSecondTitle: 'Manual second weighing – ticket {n}',
    manualConfirm: 'Save manual weight',
    simulation: 'Simulation',
    simNote: 'Simulated scale – for training and tests only',
    simWeight: 'Truck weight (kg)',
    driveOn: 'Drive on',
    driveOff: 'Drive off',
    masterData: 'Master data v{v}',
    masterDataAge: 'received {age}',
    noMasterData: 'no master data received yet',
    masterDataRefused: 'Latest master data from central refused: {e}',
    pinFault: 'I/O FAULT – lights and barriers held safe',
    lastPinError: 'last I/O error',
    needOperator: 'Please enter your name (operator) first.',
    needPlate: 'Please enter the licence plate.',
    needWeight: 'Please enter a valid weight in kg.',
    needReason: 'A reason is required.',
    needQuality: 'Enter at least one value.',
    badNumber: 'Not a valid number: {v}',
    agentUnreachable: 'The agent does not answer. Check the connection and try again.',
    okFirst: 'Ticket {n}: first weighing saved ({w}).',
    okComplete: 'Ticket {n} complete – net {w}.',
    okCancel: 'Ticket {n} cancelled.',
    okQuality: 'Ticket {n}: quality saved.',
    okReprint: 'Ticket {n}: copy opened for printing.',
    readFromAnalyzer: 'Read from analyzer {id}',
    measuring: 'Measuring with {id}…',
    orManual: 'or enter the values by hand:',
    okQualityDevice: 'Ticket {n}: quality read from analyzer {id} ({v}).',
    vMoisture: 'moisture {v} %',
    vHectolitre: '{v} kg/hl',
    vProtein: 'protein {v} %',
    sensor: 'Sensor',
    sensorBlocked: 'blocked',
    sensorClear: 'clear',
    simSensors: 'Position sensors (tap to block or clear)',
    fieldDevices: 'Field devices',
    mbOk: 'OK',
    mbDegraded: 'degraded – skipped',
    mbFailing: 'no answer',
    mbRate: 'success {v} %',
    mbUnit: 'unit {u}',
    on: 'ON',
    off: 'OFF',
    switchOn: 'Switch on',
    switchOff: 'Switch off',
    drivenByInterlock: 'Driven by the site interlock',
    // cash desk
    cashDesk: 'Cash desk',
    tseReady: 'TSE ready',
    tseDown: 'TSE not available',
    tseOutageChip: 'TSE FAILED',
    tseStale: 'TSE status unknown (no answer)',
    tseOutage: 'TSE failed – receipts without signature',
    tseSince: 'since {d}: {cause}',
    tseSerial: 'TSE {s}',
    notCertified: 'not certified',
    counterSale: 'Counter sale',
    saleText: 'Article text',
    saleQty: 'Quantity',
    saleUnit: 'Unit',
    salePrice: 'Unit price (€)',
    saleVat: 'VAT',
    payment: 'Payment',
    payBar: 'Cash',
    payEc: 'Debit card (EC)',
    saleTotal: 'Total',
    sell: 'Sell and sign',
    printReceipt: 'Print receipt',
    receipts: 'Last receipts',
    receipt: 'Receipt',
    colTotal: 'Total',
    colTse: 'TSE',
    noReceipts: 'No receipts yet.',
    closeDay: 'Close day',
    signed: 'signed',
    unsigned: 'UNSIGNED',
    stornoOf: 'Storno of no. {n}',
    cancelledByReceipt: 'cancelled (no. {n})',
    aborted: 'aborted',
    storno: 'Storno',
    stornoTitle: 'Cancel receipt {n}?',
    stornoText: 'A storno receipt over {total} is issued and signed. This cannot be undone.',
    stornoConfirm: 'Issue storno',
    closeDayTitle: 'Daily closing',
    closeDayText: 'Closes every receipt since the last daily closing (Z report). This cannot be undone.',
    closeDayConfirm: 'Close the day',
    saleResult: 'Receipt no. {n} · {total}',
    saleResultUnsigned: 'Receipt no. {n} · {total} · without signature',
    okSale: 'Receipt {n} over {total} signed.',
    okSaleUnsigned: 'Receipt {n} over {total} issued WITHOUT signature (TSE failed).',
    okStorno: 'Receipt {n} cancelled by storno receipt {s}.',
    okClosing: 'Daily closing Z {z}: receipts {from}–{to}, total {total}.',
    okClosingEmpty: 'Daily closing Z {z}: no receipts since the last one.',
    needText: 'Please enter the article text.',
    needQty: 'Please enter a quantity greater than 0, e.g. 2,5.',
    needPrice: 'Please enter the unit price in euros, e.g. 3,20.',
    tooManyDecimals: '{v}: at most {d} decimal places.',
    tooLarge: '{v} is too large.',
    // printable ticket
    ticketNo: 'Ticket no.',
    device: 'Site / box',
    role: 'Role',
    step: 'Weighing',
    weight: 'Weight',
    dateTime: 'Date / time',
    date: 'Date',
    time: 'Time',
    alibi: 'Alibi no.',
    source: 'Source',
    src_scale: 'scale',
    'src_stored-tare': 'stored tare',
    src_device: 'device',
    weigher: 'Operator',
    alibiScale: 'Alibi no. / scale',
    net: 'Net',
    openNote: 'Open – second weighing pending',
    cancelledBy: 'Cancelled {d} by {op}',
    reasonLabel: 'Reason',
    takenAt: 'Taken',
    qMoisture: 'Moisture %',
    qHectolitre: 'kg/hl',
    qProtein: 'Protein %',
    legend: '1. / 2. = first / second weighing, G = gross, T = tare, PT = stored (preset) tare, N = net (G − T, calculated)',
    printedAt: 'Printed {d}',
    printCount: 'reprints: {n}',
    paper: 'Paper',
    loading: 'Loading…',
    noTicket: 'No ticket number in the address.',
  },
  de: {
    appTitle: 'Valeo Edge – Fahrzeugwaage',
    scale: 'Waage',
    noScale: 'keine Waage',
    connected: 'verbunden',
    noConnection: 'KEINE VERBINDUNG',
    stable: 'STILL',
    motion: 'BEWEGUNG',
    overload: 'ÜBERLAST',
    underload: 'UNTERLAST',
    operator: 'Bediener',
    operatorPlaceholder: 'Ihr Name',
    language: 'Sprache',
    entry: 'Einfahrt',
    exit: 'Ausfahrt',
    light: 'Ampel',
    red: 'rot',
    green: 'grün',
    unknown: 'unbekannt',
    barrierOpen: 'Schranke offen',
    barrierClosed: 'Schranke zu',
    positioned: 'Fahrzeug in Position',
    notPositioned: 'nicht in Position',
    site_free: 'frei',
    site_occupied: 'belegt',
    site_weighing: 'Wägung läuft',
    site_released: 'freigegeben',
    newVehicle: 'Neues Fahrzeug – Erstwägung',
    plate: 'Kennzeichen',
    direction: 'Richtung',
    intake: 'Anlieferung',
    outgoing: 'Auslieferung',
    partner: 'Partner',
    article: 'Artikel',
    lot: 'Partie',
    location: 'Lagerort',
    contract: 'Kontrakt',
    none: '— keine Angabe —',
    weighingMode: 'Wägung',
    modeScale: 'Waage',
    modeStoredTare: 'Festtara',
    modeManual: 'Handeingabe',
    storedTareInfo: 'Festtara {w}, gewogen am {d}',
    manualWeight: 'Gewicht (kg)',
    manualReason: 'Grund (Pflichtfeld)',
    notLegal: 'Handeingabe – nicht eichfähig',
    firstWeighing: 'Erstwägung',
    weighStoredTare: 'Wägung mit Festtara',
    onSite: 'Fahrzeuge auf dem Platz',
    recent: 'Letzte Wiegescheine',
    colNo: 'Nr.',
    colPlate: 'Kennzeichen',
    colDirection: 'Richtung',
    colNet: 'Netto',
    colState: 'Status',
    colTime: 'Zeit',
    colActions: 'Aktionen',
    secondWeighing: 'Zweitwägung',
    manualSecond: 'Handgewicht…',
    cancel: 'Storno',
    quality: 'Qualität',
    print: 'Drucken',
    reprint: 'Nachdruck',
    back: 'Zurück',
    close: 'Schließen',
    dismiss: 'Schließen',
    save: 'Speichern',
    state_open: 'offen',
    state_complete: 'abgeschlossen',
    state_cancelled: 'storniert',
    noOpen: 'Keine Fahrzeuge auf dem Platz.',
    noRecent: 'Noch keine Wiegescheine.',
    manualMark: 'Hand',
    cancelTitle: 'Wiegeschein {n} stornieren',
    cancelReason: 'Grund für das Storno (Pflichtfeld)',
    cancelConfirm: 'Stornieren',
    qualityTitle: 'Qualität – Wiegeschein {n}',
    moisture: 'Feuchte (%)',
    hectolitre: 'Hektolitergewicht (kg/hl)',
    protein: 'Protein (%)',
    manualSecondTitle: 'Zweitwägung per Handeingabe – Wiegeschein {n}',
    manualConfirm: 'Handgewicht speichern',
    simulation: 'Simulation',
    simNote: 'Simulierte Waage – nur für Schulung und Tests',
    simWeight: 'LKW-Gewicht (kg)',
    driveOn: 'Auffahren',
    driveOff: 'Abfahren',
    masterData: 'Stammdaten v{v}',
    masterDataAge: 'empfangen {age}',
    noMasterData: 'noch keine Stammdaten empfangen',
    masterDataRefused: 'Letzte Stammdaten der Zentrale abgelehnt: {e}',
    pinFault: 'E/A-STÖRUNG – Ampeln und Schranken sicher gehalten',
    lastPinError: 'letzter E/A-Fehler',
    needOperator: 'Bitte zuerst Ihren Namen (Bediener) eingeben.',
    needPlate: 'Bitte das Kennzeichen eingeben.',
    needWeight: 'Bitte ein gültiges Gewicht in kg eingeben.',
    needReason: 'Ein Grund ist erforderlich.',
    needQuality: 'Mindestens einen Wert eingeben.',
    badNumber: 'Keine gültige Zahl: {v}',
    agentUnreachable: 'Der Agent antwortet nicht. Verbindung prüfen und erneut versuchen.',
    okFirst: 'Wiegeschein {n}: Erstwägung gespeichert ({w}).',
    okComplete: 'Wiegeschein {n} abgeschlossen – netto {w}.',
    okCancel: 'Wiegeschein {n} storniert.',
    okQuality: 'Wiegeschein {n}: Qualität gespeichert.',
    okReprint: 'Wiegeschein {n}: Kopie zum Drucken geöffnet.',
    readFromAnalyzer: 'Vom Analysegerät {id} lesen',
    measuring: 'Messung mit {id} läuft…',
    orManual: 'oder die Werte von Hand eingeben:',
    okQualityDevice: 'Wiegeschein {n}: Qualität vom Analysegerät {id} gelesen ({v}).',
    vMoisture: 'Feuchte {v} %',
    vHectolitre: '{v} kg/hl',
    vProtein: 'Protein {v} %',
    sensor: 'Sensor',
    sensorBlocked: 'unterbrochen',
    sensorClear: 'frei',
    simSensors: 'Positionssensoren (antippen: unterbrechen / freigeben)',
    fieldDevices: 'Feldgeräte',
    mbOk: 'OK',
    mbDegraded: 'gestört – übersprungen',
    mbFailing: 'keine Antwort',
    mbRate: 'Erfolg {v} %',
    mbUnit: 'Adresse {u}',
    on: 'EIN',
    off: 'AUS',
    switchOn: 'Einschalten',
    switchOff: 'Ausschalten',
    drivenByInterlock: 'Von der Ampelsteuerung geschaltet',
    cashDesk: 'Kasse',
    tseReady: 'TSE bereit',
    tseDown: 'TSE nicht erreichbar',
    tseOutageChip: 'TSE AUSGEFALLEN',
    tseStale: 'TSE-Status unbekannt (keine Antwort)',
    tseOutage: 'TSE ausgefallen – Belege ohne Signatur',
    tseSince: 'seit {d}: {cause}',
    tseSerial: 'TSE {s}',
    notCertified: 'nicht zertifiziert',
    counterSale: 'Barverkauf',
    saleText: 'Artikeltext',
    saleQty: 'Menge',
    saleUnit: 'Einheit',
    salePrice: 'Einzelpreis (€)',
    saleVat: 'USt',
    payment: 'Zahlart',
    payBar: 'Bar',
    payEc: 'EC-Karte',
    saleTotal: 'Summe',
    sell: 'Verkaufen und signieren',
    printReceipt: 'Beleg drucken',
    receipts: 'Letzte Belege',
    receipt: 'Beleg',
    colTotal: 'Summe',
    colTse: 'TSE',
    noReceipts: 'Noch keine Belege.',
    closeDay: 'Tagesabschluss',
    signed: 'signiert',
    unsigned: 'OHNE SIGNATUR',
    stornoOf: 'Storno zu Nr. {n}',
    cancelledByReceipt: 'storniert (Nr. {n})',
    aborted: 'abgebrochen',
    storno: 'Storno',
    stornoTitle: 'Beleg {n} stornieren?',
    stornoText: 'Ein Stornobeleg über {total} wird erstellt und signiert. Das lässt sich nicht rückgängig machen.',
    stornoConfirm: 'Stornobeleg erstellen',
    closeDayTitle: 'Tagesabschluss',
    closeDayText: 'Schließt alle Belege seit dem letzten Tagesabschluss ab (Z-Bon). Das lässt sich nicht rückgängig machen.',
    closeDayConfirm: 'Tag abschließen',
    saleResult: 'Beleg Nr. {n} · {total}',
    saleResultUnsigned: 'Beleg Nr. {n} · {total} · ohne Signatur',
    okSale: 'Beleg {n} über {total} signiert.',
    okSaleUnsigned: 'Beleg {n} über {total} OHNE Signatur erstellt (TSE ausgefallen).',
    okStorno: 'Beleg {n} storniert durch Stornobeleg {s}.',
    okClosing: 'Tagesabschluss Z {z}: Belege {from}–{to}, Summe {total}.',
    okClosingEmpty: 'Tagesabschluss Z {z}: keine Belege seit dem letzten.',
    needText: 'Bitte den Artikeltext eingeben.',
    needQty: 'Bitte eine Menge größer 0 eingeben, z. B. 2,5.',
    needPrice: 'Bitte den Einzelpreis in Euro eingeben, z. B. 3,20.',
    tooManyDecimals: '{v}: höchstens {d} Nachkommastellen.',
    tooLarge: '{v} ist zu groß.',
    ticketNo: 'Schein-Nr.',
    device: 'Standort / Box',
    role: 'Art',
    step: 'Wägung',
    weight: 'Gewicht',
    dateTime: 'Datum / Zeit',
    date: 'Datum',
    time: 'Uhrzeit',
    alibi: 'Alibi-Nr.',
    source: 'Quelle',
    src_scale: 'Waage',
    'src_stored-tare': 'Festtara',
    src_device: 'Gerät',
    weigher: 'Wäger',
    alibiScale: 'Alibi-Nr. / Waage',
    net: 'Netto',
    openNote: 'Offen – Zweitwägung ausstehend',
    cancelledBy: 'Storniert am {d} von {op}',
    reasonLabel: 'Grund',
    takenAt: 'Entnommen',
    qMoisture: 'Feuchte %',
    qHectolitre: 'kg/hl',
    qProtein: 'Protein %',
    legend: '1. / 2. = Erst- / Zweitwägung, G = Brutto, T = Tara, PT = Festtara (gespeichert), N = Netto (G − T, berechnet)',
    printedAt: 'Gedruckt am {d}',
    printCount: 'Nachdrucke: {n}',
    paper: 'Papier',
    loading: 'Lade…',
    noTicket: 'Keine Wiegeschein-Nummer in der Adresse.',
  },
};

const LANG_KEY = 'valeo.terminal.lang';
const listeners = [];
let current = initialLang();

function initialLang() {
  let stored = null;
  try { stored = localStorage.getItem(LANG_KEY); } catch { /* private mode: fall back */ }
  if (stored in DICT) return stored;
  return (navigator.language || 'en').toLowerCase().startsWith('de') ? 'de' : 'en';
}

export function lang() { return current; }

// Locale for Intl: en-GB gives day-first dates and a 24 h clock, which is
// what a European scale house expects even in English.
export function locale() { return current === 'de' ? 'de-DE' : 'en-GB'; }

export function t(key, vars = {}) {
  const s = DICT[current][key] ?? DICT.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

export function setLang(l) {
  if (!(l in DICT)) return;
  current = l;
  try { localStorage.setItem(LANG_KEY, l); } catch { /* not persisted, still switched */ }
  applyStatic(document);
  for (const fn of listeners) fn(l);
}

export function onLangChange(fn) { listeners.push(fn); }

// Static texts live in the HTML as data-i18n keys, so switching language
// never needs a page reload (the live stream would reconnect otherwise).
export function applyStatic(root) {
  document.documentElement.lang = current;
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
  for (const e of root.querySelectorAll('[data-i18n-aria]')) e.setAttribute('aria-label', t(e.dataset.i18nAria));
  for (const e of root.querySelectorAll('[data-lang]')) e.setAttribute('aria-pressed', String(e.dataset.lang === current));
}

// Weight {value, decimals, unit}: the value is an integer count of the last
// digit, so format it as a string instead of dividing floats (no 0.1+0.2
// surprises on a legal document). No thousands separators on purpose.
export function formatWeight(w) {
  if (!w || typeof w.value !== 'number' || !Number.isFinite(w.value)) return '—';
  const d = Math.max(0, Math.trunc(w.decimals || 0));
  const digits = String(Math.abs(Math.round(w.value))).padStart(d + 1, '0');
  const sign = w.value < 0 ? '-' : '';
  const num = d ? `${digits.slice(0, -d)}${current === 'de' ? ',' : '.'}${digits.slice(-d)}` : digits;
  return `${sign}${num} ${w.unit || ''}`.trim();
}

// Compare on a common integer scale; 1234 (1 decimal) equals 12340 (2).
export function sameWeight(a, b) {
  if (!a || !b || a.unit !== b.unit) return false;
  const d = Math.max(a.decimals || 0, b.decimals || 0);
  return a.value * 10 ** (d - (a.decimals || 0)) === b.value * 10 ** (d - (b.decimals || 0));
}

export function formatNumber(x) {
  if (x === null || x === undefined || x === '') return '—';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: 3, useGrouping: false }).format(x);
}

function toDate(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

export function formatDateTime(iso) {
  const d = toDate(iso);
  if (!d) return iso || '—';
  return new Intl.DateTimeFormat(locale(), {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).format(d);
}

// Clock time with seconds, for the weighing rows of a ticket.
export function formatClock(iso) {
  const d = toDate(iso);
  if (!d) return iso || '—';
  return new Intl.DateTimeFormat(locale(), { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(d);
}

export function formatDate(iso) {
  const d = toDate(iso);
  if (!d) return iso || '—';
  return new Intl.DateTimeFormat(locale(), { year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
}

// Short time for lists: today only the clock, older entries with the date.
export function formatTime(iso) {
  const d = toDate(iso);
  if (!d) return iso || '—';
  const today = new Date().toDateString() === d.toDateString();
  const opts = today ? { hour: '2-digit', minute: '2-digit' } : { day: '2-digit', month: '2-digit', hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(locale(), opts).format(d);
}

export function formatAge(iso) {
  const d = toDate(iso);
  if (!d) return '—';
  const s = Math.round((d.getTime() - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  const a = Math.abs(s);
  if (a < 60) return rtf.format(Math.round(s), 'second');
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

// Operators type "14,5" in German and "14.5" in English; accept both.
// Returns null for empty input and NaN for garbage.
export function parseNumber(text) {
  const s = String(text ?? '').trim().replace(/\s/g, '').replace(',', '.');
  if (s === '') return null;
  return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
}

// el('td', {class: 'x', dataset: {ticket: 3}}, 'text', child) – enough DOM
// building for two small pages without a framework; text is never parsed
// as HTML, so plates or reasons cannot inject markup.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}
