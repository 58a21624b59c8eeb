// Shared by the office app (app.js) and the API docs page (docs.js): the
// German/English dictionary, t(key), number and date formatting per
// language (Intl) and a tiny DOM builder that only ever creates text nodes.

const DICT = {
  en: {
    appTitle: 'Valeo Office',
    loading: 'Loading…',
    language: 'Language',
    navigation: 'Main navigation',
    dismiss: 'Dismiss',
    close: 'Close',
    username: 'User name',
    password: 'Password',
    signIn: 'Sign in',
    signOut: 'Sign out',
    needUser: 'Please enter your user name.',
    needPassword: 'Please enter your password.',
    badLogin: 'User name or password is wrong.',
    signInAgain: 'Please sign in again.',
    tooMany: 'Too many attempts. Please wait a moment.',
    tooManyWait: 'Too many attempts. Please try again in {s} s.',
    unreachable: 'Central cannot be reached. Check the network and try again.',
    notPermitted: 'Not permitted',
    conflict: 'Changed by someone else meanwhile. Reload to see the current state, then change it again.',
    error: 'Error',
    retry: 'Try again',
    notFound: 'Page not found',
    required: 'Please fill this in.',
    role_admin: 'Administrator',
    role_office: 'Office',
    role_viewer: 'Viewer',

    navWeighings: 'Tickets',
    navNotes: 'Delivery notes',
    navStock: 'Stock',
    navReports: 'Reports',
    navDevices: 'Devices',
    navMaster: 'Master data',
    navApiDocs: 'API',

    all: 'all',
    apply: 'Apply',
    reset: 'Reset',
    from: 'From',
    to: 'To',
    plate: 'Plate',
    partner: 'Partner',
    article: 'Article',
    site: 'Site',
    status: 'Status',
    direction: 'Direction',
    sort: 'Sort',
    pageSize: 'Per page',
    search: 'Search',
    prev: '‹ Previous',
    next: 'Next ›',
    paging: 'Pages',
    range: '{from}–{to} of {total}',
    noneFound: 'nothing found',
    nothingFound: 'Nothing found.',
    csvExport: 'CSV export',
    status_open: 'open',
    status_complete: 'complete',
    status_cancelled: 'cancelled',
    direction_intake: 'Intake',
    direction_outgoing: 'Outgoing',
    'sort_-weighed_at': 'Newest first',
    sort_weighed_at: 'Oldest first',
    'sort_-net': 'Largest net first',
    sort_net: 'Smallest net first',
    'sort_-ticket_no': 'Ticket no. descending',
    sort_ticket_no: 'Ticket no. ascending',
    sort_plate: 'Plate',
    colTicket: 'Ticket',
    colTime: 'Time',
    colNote: 'Delivery note',
    colNumber: 'Number',
    colDate: 'Date',
    colSeq: 'Seq',
    colKind: 'Record',
    colCreated: 'Created at the box',
    colReceived: 'Received',
    colHash: 'Hash',
    colPrevHash: 'Previous hash',
    colCheck: 'Check',
    recordOk: 'hash recomputed and linked to the record before',
    recordBad: 'hash or link to the record before does not check out',
    colWeighings: 'Weighings',
    device: 'Box',
    net: 'Net',
    gross: 'Gross',
    tare: 'Tare',
    tareStored: 'Tare (stored)',
    weight: 'Weight',
    alibi: 'Alibi no.',
    noAlibi: 'none',
    scale: 'Scale',
    weighings: 'Weighings',
    firstWeighing: 'First weighing',
    secondWeighing: 'Second weighing',
    notYet: 'not yet weighed',
    legal: 'Legal for trade',
    notLegal: 'Not legal for trade',
    ticketTitle: 'Ticket {no}',
    details: 'Details',
    lot: 'Lot',
    location: 'Location',
    contract: 'Contract',
    operator: 'Operator',
    tareSource: 'Tare',
    tare_weighed: 'weighed',
    tare_stored: 'stored tare',
    prints: 'Copies printed',
    records: 'Records',
    cancelled: 'Cancelled',
    at: 'At',
    reason: 'Reason',
    quality: 'Quality',
    moisture: 'Moisture',
    hectolitre: 'Hectolitre weight',
    protein: 'Protein',
    source: 'Source',
    source_manual: 'entered by hand',
    source_device: 'analyzer',
    proof: 'Proof',
    proofHint: 'Every record is hash-chained at the box and signed with its key; central checks both when it stores the record and again here.',
    noProof: 'No proof available.',
    noRecords: 'No records.',
    chainOk: 'hash chain verified',
    chainBad: 'hash chain NOT verified',
    signatureOk: 'signature verified',
    signatureBad: 'signature NOT verified',

    deliveryNote: 'Delivery note',
    noteStatus_issued: 'issued',
    noteStatus_cancelled: 'cancelled',
    createNote: 'Create delivery note',
    createNoteTitle: 'Delivery note for ticket {no} ({plate})',
    remarks: 'Remarks',
    remarksOptional: 'Remarks (optional)',
    noteCreated: 'Delivery note {number} created.',
    noNote: 'No delivery note.',
    earlierNotes: 'Earlier',
    noNoteYet: 'A delivery note needs a complete ticket.',
    print: 'Print',
    cancelNote: 'Cancel delivery note',
    cancelNoteTitle: 'Cancel delivery note {number}?',
    cancelNoteText: 'The note stays on record as cancelled; the ticket can get a new one.',
    noteCancelled: 'Delivery note {number} cancelled.',
    cancelledAt: 'Cancelled at',
    cancelledBy: 'Cancelled by',
    legalShort: 'Legal metrology',
    createdBy: 'By',

    stockLevels: 'Stock levels',
    movements: 'Movements',
    quantity: 'Quantity',
    quantityKg: 'Quantity (kg, negative to book out)',
    noLocation: 'no location',
    total: 'Total',
    note: 'Note',
    move_weighing: 'weighing',
    move_cancellation: 'cancellation',
    move_correction: 'correction',
    correction: 'Stock correction',
    correctionHint: 'Books a correction movement, e.g. after a stock count.',
    choose: '— choose —',
    book: 'Book',
    booked: 'Correction booked.',
    needArticle: 'Please choose an article.',
    needQuantity: 'Please enter a quantity other than 0.',
    needNote: 'Please say why (note).',

    groupBy: 'Group by',
    group_article: 'Article',
    group_partner: 'Partner',
    group_site: 'Site',
    group_day: 'Day',
    reportTitle: 'Weighings by {group}, {from} – {to}',
    netKg: 'Net (kg)',
    unassigned: 'not assigned',

    state: 'State',
    online: 'online',
    offline: 'offline',
    unknown: 'unknown',
    lastSeen: 'Last seen',
    version: 'Version',
    backlog: 'Backlog',
    headSeq: 'Last record',
    alarms: 'Alarms',
    noAlarms: 'none',
    gap: 'waiting for record {seq}',
    noDevices: 'No boxes registered.',
    refresh: 'Refresh',
    devicesHint: 'Refreshes every 15 seconds. Backlog: records waiting at the box.',

    kind_partners: 'Partners',
    kind_articles: 'Articles',
    kind_vehicles: 'Vehicles',
    kind_sites: 'Sites',
    kind_locations: 'Locations',
    kind_lots: 'Lots',
    kind_contracts: 'Contracts',
    kind1_partners: 'Partner',
    kind1_articles: 'Article',
    kind1_vehicles: 'Vehicle',
    kind1_sites: 'Site',
    kind1_locations: 'Location',
    kind1_lots: 'Lot',
    kind1_contracts: 'Contract',
    f_id: 'ID',
    f_name: 'Name',
    f_address: 'Address',
    f_roles: 'Roles',
    f_vat_id: 'VAT ID',
    f_plate: 'Plate',
    f_haulier_id: 'Haulier',
    f_site_id: 'Site',
    f_article_id: 'Article',
    f_partner_id: 'Partner',
    f_quantity_kg: 'Quantity (kg)',
    f_valid_from: 'Valid from',
    f_valid_to: 'Valid to',
    f_delivered_kg: 'Delivered (kg)',
    f_device_id: 'Box',
    f_lot_id: 'Lot',
    f_contract_id: 'Contract',
    roleP_customer: 'customer',
    roleP_supplier: 'supplier',
    roleP_haulier: 'haulier',
    new: 'New',
    newEntity: 'New {kind}',
    create: 'Create',
    save: 'Save',
    delete: 'Delete',
    reload: 'Reload',
    none: '— none —',
    saved: 'Saved.',
    created: 'Created.',
    deleted: '{id} deleted.',
    deleteTitle: 'Delete {kind} {id}?',
    deleteText: 'Refused while tickets, contracts or other master data still refer to it.',
    readOnly: 'You can view master data but not change it.',
    versionInfo: 'Version {version}',
    fieldRequired: '{field} is required.',
    fieldNumber: '{field} must be a number.',

    docsTitle: 'Valeo Central API',
    docsLoading: 'Loading the API description…',
    docsFailed: 'The API description could not be loaded: {detail}',
    docsSignIn: 'Sign in to the office first, then reload this page.',
    docsOpenOffice: 'Open the office',
    docsFilter: 'Filter operations',
    docsTags: 'Tags',
    docsParameters: 'Parameters',
    docsRequestBody: 'Request body',
    docsResponses: 'Responses',
    docsExample: 'Example',
    docsRequired: 'required',
    docsDeprecated: 'deprecated',
    docsNoOperations: 'No operation matches.',
    docsIn: 'In',
    docsName: 'Name',
    docsType: 'Type',
    docsOther: 'Other',
  },

  de: {
    appTitle: 'Valeo Büro',
    loading: 'Wird geladen…',
    language: 'Sprache',
    navigation: 'Hauptnavigation',
    dismiss: 'Schließen',
    close: 'Schließen',
    username: 'Benutzername',
    password: 'Passwort',
    signIn: 'Anmelden',
    signOut: 'Abmelden',
    needUser: 'Bitte den Benutzernamen eingeben.',
    needPassword: 'Bitte das Passwort eingeben.',
    badLogin: 'Benutzername oder Passwort ist falsch.',
    signInAgain: 'Bitte erneut anmelden.',
    tooMany: 'Zu viele Versuche. Bitte einen Moment warten.',
    tooManyWait: 'Zu viele Versuche. Bitte in {s} s erneut versuchen.',
    unreachable: 'Die Zentrale ist nicht erreichbar. Bitte Netzwerk prüfen und erneut versuchen.',
    notPermitted: 'Nicht erlaubt',
    conflict: 'Inzwischen von jemand anderem geändert. Bitte neu laden und die Änderung erneut vornehmen.',
    error: 'Fehler',
    retry: 'Erneut versuchen',
    notFound: 'Seite nicht gefunden',
    required: 'Bitte ausfüllen.',
    role_admin: 'Administrator',
    role_office: 'Büro',
    role_viewer: 'Nur lesen',

    navWeighings: 'Wiegescheine',
    navNotes: 'Lieferscheine',
    navStock: 'Bestand',
    navReports: 'Auswertungen',
    navDevices: 'Geräte',
    navMaster: 'Stammdaten',
    navApiDocs: 'API',

    all: 'alle',
    apply: 'Anwenden',
    reset: 'Zurücksetzen',
    from: 'Von',
    to: 'Bis',
    plate: 'Kennzeichen',
    partner: 'Partner',
    article: 'Artikel',
    site: 'Standort',
    status: 'Status',
    direction: 'Richtung',
    sort: 'Sortierung',
    pageSize: 'Pro Seite',
    search: 'Suche',
    prev: '‹ Zurück',
    next: 'Weiter ›',
    paging: 'Seiten',
    range: '{from}–{to} von {total}',
    noneFound: 'nichts gefunden',
    nothingFound: 'Nichts gefunden.',
    csvExport: 'CSV-Export',
    status_open: 'offen',
    status_complete: 'abgeschlossen',
    status_cancelled: 'storniert',
    direction_intake: 'Eingang',
    direction_outgoing: 'Ausgang',
    'sort_-weighed_at': 'Neueste zuerst',
    sort_weighed_at: 'Älteste zuerst',
    'sort_-net': 'Größtes Netto zuerst',
    sort_net: 'Kleinstes Netto zuerst',
    'sort_-ticket_no': 'Schein-Nr. absteigend',
    sort_ticket_no: 'Schein-Nr. aufsteigend',
    sort_plate: 'Kennzeichen',
    colTicket: 'Schein',
    colTime: 'Zeit',
    colNote: 'Lieferschein',
    colNumber: 'Nummer',
    colDate: 'Datum',
    colSeq: 'Nr.',
    colKind: 'Satz',
    colCreated: 'Erstellt am Gerät',
    colReceived: 'Empfangen',
    colHash: 'Hash',
    colPrevHash: 'Vorheriger Hash',
    colCheck: 'Prüfung',
    recordOk: 'Hash nachgerechnet und mit dem vorigen Satz verkettet',
    recordBad: 'Hash oder Verkettung mit dem vorigen Satz stimmt nicht',
    colWeighings: 'Wägungen',
    device: 'Gerät',
    net: 'Netto',
    gross: 'Brutto',
    tare: 'Tara',
    tareStored: 'Tara (gespeichert)',
    weight: 'Gewicht',
    alibi: 'Alibi-Nr.',
    noAlibi: 'keine',
    scale: 'Waage',
    weighings: 'Wägungen',
    firstWeighing: 'Erstwägung',
    secondWeighing: 'Zweitwägung',
    notYet: 'noch nicht gewogen',
    legal: 'Eichfähig',
    notLegal: 'Nicht eichfähig',
    ticketTitle: 'Wiegeschein {no}',
    details: 'Angaben',
    lot: 'Partie',
    location: 'Lagerort',
    contract: 'Kontrakt',
    operator: 'Wäger',
    tareSource: 'Tara',
    tare_weighed: 'gewogen',
    tare_stored: 'gespeicherte Tara',
    prints: 'Gedruckte Kopien',
    records: 'Datensätze',
    cancelled: 'Storniert',
    at: 'Am',
    reason: 'Grund',
    quality: 'Qualität',
    moisture: 'Feuchte',
    hectolitre: 'Hektolitergewicht',
    protein: 'Protein',
    source: 'Quelle',
    source_manual: 'von Hand',
    source_device: 'Analysegerät',
    proof: 'Nachweis',
    proofHint: 'Jeder Datensatz ist am Gerät per Hash verkettet und mit dessen Schlüssel signiert; die Zentrale prüft beides beim Speichern und hier erneut.',
    noProof: 'Kein Nachweis verfügbar.',
    noRecords: 'Keine Datensätze.',
    chainOk: 'Hash-Kette geprüft',
    chainBad: 'Hash-Kette NICHT bestätigt',
    signatureOk: 'Signatur geprüft',
    signatureBad: 'Signatur NICHT bestätigt',

    deliveryNote: 'Lieferschein',
    noteStatus_issued: 'ausgestellt',
    noteStatus_cancelled: 'storniert',
    createNote: 'Lieferschein erstellen',
    createNoteTitle: 'Lieferschein zu Wiegeschein {no} ({plate})',
    remarks: 'Bemerkungen',
    remarksOptional: 'Bemerkungen (optional)',
    noteCreated: 'Lieferschein {number} erstellt.',
    noNote: 'Kein Lieferschein.',
    earlierNotes: 'Frühere',
    noNoteYet: 'Ein Lieferschein braucht einen abgeschlossenen Wiegeschein.',
    print: 'Drucken',
    cancelNote: 'Lieferschein stornieren',
    cancelNoteTitle: 'Lieferschein {number} stornieren?',
    cancelNoteText: 'Der Lieferschein bleibt als storniert erhalten; der Wiegeschein kann einen neuen bekommen.',
    noteCancelled: 'Lieferschein {number} storniert.',
    cancelledAt: 'Storniert am',
    cancelledBy: 'Storniert von',
    legalShort: 'Eichrecht',
    createdBy: 'Von',

    stockLevels: 'Bestände',
    movements: 'Bewegungen',
    quantity: 'Menge',
    quantityKg: 'Menge (kg, negativ für Abgang)',
    noLocation: 'ohne Lagerort',
    total: 'Summe',
    note: 'Notiz',
    move_weighing: 'Wägung',
    move_cancellation: 'Storno',
    move_correction: 'Korrektur',
    correction: 'Bestandskorrektur',
    correctionHint: 'Bucht eine Korrekturbewegung, z. B. nach einer Inventur.',
    choose: '— bitte wählen —',
    book: 'Buchen',
    booked: 'Korrektur gebucht.',
    needArticle: 'Bitte einen Artikel wählen.',
    needQuantity: 'Bitte eine Menge ungleich 0 eingeben.',
    needNote: 'Bitte den Grund angeben (Notiz).',

    groupBy: 'Gruppiert nach',
    group_article: 'Artikel',
    group_partner: 'Partner',
    group_site: 'Standort',
    group_day: 'Tag',
    reportTitle: 'Wägungen nach {group}, {from} – {to}',
    netKg: 'Netto (kg)',
    unassigned: 'nicht zugeordnet',

    state: 'Zustand',
    online: 'online',
    offline: 'offline',
    unknown: 'unbekannt',
    lastSeen: 'Zuletzt gesehen',
    version: 'Version',
    backlog: 'Rückstand',
    headSeq: 'Letzter Satz',
    alarms: 'Alarme',
    noAlarms: 'keine',
    gap: 'wartet auf Satz {seq}',
    noDevices: 'Keine Geräte registriert.',
    refresh: 'Aktualisieren',
    devicesHint: 'Aktualisiert sich alle 15 Sekunden. Rückstand: Datensätze, die am Gerät warten.',

    kind_partners: 'Partner',
    kind_articles: 'Artikel',
    kind_vehicles: 'Fahrzeuge',
    kind_sites: 'Standorte',
    kind_locations: 'Lagerorte',
    kind_lots: 'Partien',
    kind_contracts: 'Kontrakte',
    kind1_partners: 'Partner',
    kind1_articles: 'Artikel',
    kind1_vehicles: 'Fahrzeug',
    kind1_sites: 'Standort',
    kind1_locations: 'Lagerort',
    kind1_lots: 'Partie',
    kind1_contracts: 'Kontrakt',
    f_id: 'ID',
    f_name: 'Name',
    f_address: 'Anschrift',
    f_roles: 'Rollen',
    f_vat_id: 'USt-IdNr.',
    f_plate: 'Kennzeichen',
    f_haulier_id: 'Spediteur',
    f_site_id: 'Standort',
    f_article_id: 'Artikel',
    f_partner_id: 'Partner',
    f_quantity_kg: 'Menge (kg)',
    f_valid_from: 'Gültig ab',
    f_valid_to: 'Gültig bis',
    f_delivered_kg: 'Geliefert (kg)',
    f_device_id: 'Gerät',
    f_lot_id: 'Partie',
    f_contract_id: 'Kontrakt',
    roleP_customer: 'Kunde',
    roleP_supplier: 'Lieferant',
    roleP_haulier: 'Spediteur',
    new: 'Neu',
    newEntity: 'Neu: {kind}',
    create: 'Anlegen',
    save: 'Speichern',
    delete: 'Löschen',
    reload: 'Neu laden',
    none: '— keine —',
    saved: 'Gespeichert.',
    created: 'Angelegt.',
    deleted: '{id} gelöscht.',
    deleteTitle: '{kind} {id} löschen?',
    deleteText: 'Wird abgelehnt, solange Wiegescheine, Kontrakte oder andere Stammdaten darauf verweisen.',
    readOnly: 'Sie können Stammdaten ansehen, aber nicht ändern.',
    versionInfo: 'Version {version}',
    fieldRequired: '{field} ist ein Pflichtfeld.',
    fieldNumber: '{field} muss eine Zahl sein.',

    docsTitle: 'Valeo Zentrale – API',
    docsLoading: 'API-Beschreibung wird geladen…',
    docsFailed: 'Die API-Beschreibung konnte nicht geladen werden: {detail}',
    docsSignIn: 'Bitte zuerst im Büro anmelden und diese Seite dann neu laden.',
    docsOpenOffice: 'Zum Büro',
    docsFilter: 'Operationen filtern',
    docsTags: 'Bereiche',
    docsParameters: 'Parameter',
    docsRequestBody: 'Anfrage',
    docsResponses: 'Antworten',
    docsExample: 'Beispiel',
    docsRequired: 'Pflicht',
    docsDeprecated: 'veraltet',
    docsNoOperations: 'Keine Operation passt.',
    docsIn: 'In',
    docsName: 'Name',
    docsType: 'Typ',
    docsOther: 'Sonstiges',
  },
};

const LANG_KEY = 'valeo.office.lang';
const LOCALES = { de: 'de-DE', en: 'en-GB' };

function initialLang() {
  let stored = null;
  try { stored = localStorage.getItem(LANG_KEY); } catch { /* storage blocked */ }
  if (stored && DICT[stored]) return stored;
  const nav = (navigator.language || '').toLowerCase();
  return nav.startsWith('de') ? 'de' : 'en';
}

let current = initialLang();
const listeners = [];

export function lang() { return current; }
export function locale() { return LOCALES[current]; }

export function setLang(l) {
  if (!DICT[l] || l === current) return;
  current = l;
  try { localStorage.setItem(LANG_KEY, l); } catch { /* not persisted, still switched */ }
  for (const fn of listeners) fn(l);
}

export function onLangChange(fn) { listeners.push(fn); }

// t('range', {from: 1}) → text with {placeholders} filled; a missing key
// gives `fallback` (raw values from the API, e.g. a new status) or the key.
export function t(key, params = {}, fallback = undefined) {
  let s = DICT[current][key] ?? DICT.en[key];
  if (s === undefined) return fallback !== undefined ? String(fallback) : key;
  for (const [k, v] of Object.entries(params)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

// Texts in the static HTML: data-i18n (text), data-i18n-aria (aria-label),
// data-i18n-placeholder; language buttons show which one is on.
export function applyStatic(root = document) {
  document.documentElement.lang = current;
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of root.querySelectorAll('[data-i18n-aria]')) e.setAttribute('aria-label', t(e.dataset.i18nAria));
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.setAttribute('placeholder', t(e.dataset.i18nPlaceholder));
  for (const b of root.querySelectorAll('button[data-lang]')) b.setAttribute('aria-pressed', String(b.dataset.lang === current));
}

// ---------------------------------------------------------- formatting

const empty = (x) => x === null || x === undefined || x === '' || Number.isNaN(Number(x));

export function fmtNumber(x, maxDecimals = 3, grouping = true) {
  if (empty(x)) return '—';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: maxDecimals, useGrouping: grouping }).format(Number(x));
}

// A weight in its unit; the API sends plain numbers, the box's weight
// objects ({value, decimals, unit}) are understood too.
export function fmtWeight(x, unit = 'kg') {
  if (x && typeof x === 'object') {
    const d = Number(x.decimals) || 0;
    return fmtWeight(Number(x.value) / 10 ** d, x.unit || unit);
  }
  if (empty(x)) return '—';
  return `${fmtNumber(x)} ${unit || ''}`.trim();
}

export function fmtKg(x) { return fmtWeight(x, 'kg'); }

function toDate(iso) {
  if (!iso) return null;
  // A bare day is local midnight, not UTC midnight (which is the day before
  // west of Greenwich).
  const d = /^\d{4}-\d{2}-\d{2}$/.test(iso) ? new Date(`${iso}T00:00:00`) : new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtDateTime(iso) {
  const d = toDate(iso);
  if (!d) return iso || '—';
  return new Intl.DateTimeFormat(locale(), {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).format(d);
}

export function fmtDate(iso) {
  const d = toDate(iso);
  if (!d) return iso || '—';
  return new Intl.DateTimeFormat(locale(), { year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
}

export function fmtAge(iso) {
  const d = toDate(iso);
  if (!d) return '—';
  const s = Math.round((d.getTime() - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  const a = Math.abs(s);
  if (a < 60) return rtf.format(s, 'second');
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

// Users type "14,5" in German and "14.5" in English; both are accepted.
// Returns null for empty input and NaN for anything else.
export function parseNumber(text) {
  let s = String(text ?? '').trim().replace(/\s/g, '');
  if (s === '') return null;
  // German grouping dots (1.234,5) go; a lone comma is the decimal mark.
  if (s.includes(',')) s = s.replace(/\./g, '').replace(',', '.');
  return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
}

// el('td', {class: 'x', dataset: {id: 3}, onclick: fn}, 'text', child):
// strings become text nodes, never markup.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'checked' || k === 'disabled' || k === 'hidden') e[k] = Boolean(v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}
