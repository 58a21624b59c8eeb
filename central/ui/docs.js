// The API docs page: reads /api/v1/openapi.json (OpenAPI 3.1) and lists
// its operations by tag with parameters, request and response schemas and
// examples, local $refs resolved. Everything is built as text nodes; the
// description comes from our own server but is data all the same.
import { t, setLang, applyStatic, onLangChange, el } from '/ui/i18n.js';

const $ = (id) => document.getElementById(id);
const METHODS = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'];
// Nested schemas deeper than this are cut off: a page, not a proof.
const MAX_SCHEMA_DEPTH = 6;
const REQUEST_TIMEOUT_MS = 20_000;

let spec = null;
let failure = null; // {status, detail} when the description could not be read

// ---------------------------------------------------------------- $ref

// The object a local "#/components/..." pointer names, or null.
function pointer(ref) {
  if (typeof ref !== 'string' || !ref.startsWith('#/')) return null;
  let node = spec;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (!node || typeof node !== 'object' || !(key in node)) return null;
    node = node[key];
  }
  return node;
}

// Follows $refs (at most a few hops); returns [object, name of the last ref].
function deref(x) {
  let name = null;
  for (let hops = 0; x && typeof x === 'object' && x.$ref && hops < 10; hops += 1) {
    name = x.$ref.split('/').pop();
    const target = pointer(x.$ref);
    if (!target) return [{ description: `unresolved ${x.$ref}` }, name];
    x = target;
  }
  return [x || {}, name];
}

// ------------------------------------------------------------- schemas

function typeLabel(schema, name) {
  const [s, refName] = deref(schema);
  const label = name || refName;
  let type = Array.isArray(s.type) ? s.type.join(' | ') : s.type;
  if (!type && s.properties) type = 'object';
  if (type === 'array' || (Array.isArray(s.type) && s.type.includes('array'))) {
    type = type.replace('array', `array of ${typeLabel(s.items || {})}`);
  }
  if (s.format) type = `${type || ''} (${s.format})`;
  if (s.enum) type = `${type ? `${type}: ` : ''}${s.enum.map((v) => JSON.stringify(v)).join(' | ')}`;
  if (s.const !== undefined) type = `= ${JSON.stringify(s.const)}`;
  for (const k of ['oneOf', 'anyOf']) {
    if (s[k]) type = s[k].map((alt) => typeLabel(alt)).join(' | ');
  }
  if (!type && s.allOf) type = s.allOf.map((part) => typeLabel(part)).join(' & ');
  if (!type && s.additionalProperties) type = `map of ${typeLabel(s.additionalProperties === true ? {} : s.additionalProperties)}`;
  const base = type || 'any';
  return label && label !== base ? `${label} (${base})` : base;
}

// Properties of an object schema, allOf parts merged.
function properties(s) {
  const props = { ...(s.properties || {}) };
  const required = new Set(s.required || []);
  for (const part of s.allOf || []) {
    const [p] = deref(part);
    Object.assign(props, p.properties || {});
    for (const r of p.required || []) required.add(r);
  }
  return [props, required];
}

// A schema as a nested list: name, type, required, description. `stack`
// holds the refs being shown, so a recursive type is named, not expanded.
function schemaTree(schema, depth = 0, stack = []) {
  if (depth >= MAX_SCHEMA_DEPTH) return null;
  const [s, refName] = deref(schema);
  if (refName && stack.includes(refName)) return null;
  const inner = refName ? [...stack, refName] : stack;
  const isArray = s.type === 'array' || (Array.isArray(s.type) && s.type.includes('array'));
  if (isArray && s.items) return schemaTree(s.items, depth, inner);
  const choice = s.oneOf || s.anyOf;
  if (choice) {
    // "X or null" shows X's fields: the type line already says "| null".
    const alts = choice.filter((alt) => deref(alt)[0].type !== 'null');
    if (alts.length === 1) return schemaTree(alts[0], depth, inner);
    return el('ul', { class: 'schema' }, alts.map((alt, i) => el('li', {},
      el('span', { class: 'schema-type' }, `${i === 0 ? '' : 'or '}${typeLabel(alt)}`),
      schemaTree(alt, depth + 1, inner))));
  }
  const [props, required] = properties(s);
  const names = Object.keys(props);
  if (!names.length) return null;
  return el('ul', { class: 'schema' }, names.map((n) => {
    const [p] = deref(props[n]);
    return el('li', {},
      el('span', { class: 'schema-name' }, n), ' ',
      el('span', { class: 'schema-type' }, typeLabel(props[n])),
      required.has(n) ? el('span', { class: 'tag tag-warn' }, t('docsRequired')) : null,
      p.deprecated ? el('span', { class: 'tag' }, t('docsDeprecated')) : null,
      p.description ? el('span', { class: 'muted' }, ` – ${p.description}`) : null,
      schemaTree(props[n], depth + 1, inner));
  }));
}

function example(media, schema) {
  let value;
  if (media && media.example !== undefined) value = media.example;
  else if (media && media.examples) {
    const first = Object.values(media.examples)[0];
    value = first ? deref(first)[0].value : undefined;
  } else if (schema) {
    const [s] = deref(schema);
    value = s.example !== undefined ? s.example : (s.examples && s.examples[0]);
  }
  if (value === undefined) return null;
  return el('div', {},
    el('strong', {}, t('docsExample')),
    el('pre', { class: 'example' }, typeof value === 'string' ? value : JSON.stringify(value, null, 2)));
}

function content(c) {
  return Object.entries(c || {}).map(([type, media]) => el('div', { class: 'media' },
    el('p', {}, el('code', {}, type), media.schema ? el('span', { class: 'schema-type' }, ` ${typeLabel(media.schema)}`) : null),
    media.schema ? schemaTree(media.schema) : null,
    example(media, media.schema)));
}

// ----------------------------------------------------------- operations

function operations() {
  const ops = [];
  for (const [path, item] of Object.entries(spec.paths || {})) {
    const shared = item.parameters || [];
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      ops.push({ path, method, op, parameters: [...shared, ...(op.parameters || [])].map((p) => deref(p)[0]) });
    }
  }
  return ops;
}

function operationId(o) {
  return `op-${o.op.operationId || `${o.method}-${o.path}`}`.replace(/[^\w-]+/g, '-');
}

function operationView(o) {
  const { op } = o;
  const params = o.parameters.length ? el('section', {},
    el('h3', {}, t('docsParameters')),
    el('div', { class: 'table-wrap' }, el('table', { class: 'list' },
      el('thead', {}, el('tr', {}, [t('docsName'), t('docsIn'), t('docsType'), '', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, o.parameters.map((p) => el('tr', {},
        el('td', {}, el('code', {}, p.name)),
        el('td', {}, p.in),
        el('td', { class: 'schema-type' }, p.schema ? typeLabel(p.schema) : ''),
        el('td', {}, p.required ? el('span', { class: 'tag tag-warn' }, t('docsRequired')) : ''),
        el('td', {}, p.description || ''))))))) : null;
  const [body] = op.requestBody ? deref(op.requestBody) : [null];
  const requestBody = body ? el('section', {},
    el('h3', {}, t('docsRequestBody'), body.required ? el('span', { class: 'tag tag-warn' }, t('docsRequired')) : null),
    body.description ? el('p', {}, body.description) : null,
    content(body.content)) : null;
  const responses = el('section', {},
    el('h3', {}, t('docsResponses')),
    Object.entries(op.responses || {}).map(([status, r]) => {
      const [res] = deref(r);
      return el('div', { class: 'response', dataset: { status } },
        el('p', {}, el('strong', { class: `status status-${status[0]}` }, status), ' ', res.description || ''),
        content(res.content));
    }));
  return el('details', { class: 'op', id: operationId(o), dataset: { method: o.method, path: o.path } },
    el('summary', {},
      el('span', { class: `method method-${o.method}` }, o.method.toUpperCase()),
      el('span', { class: 'op-path' }, o.path),
      el('span', { class: 'op-summary' }, op.summary || ''),
      op.deprecated ? el('span', { class: 'tag' }, t('docsDeprecated')) : null),
    el('div', { class: 'op-body' },
      op.description ? el('p', {}, op.description) : null,
      params, requestBody, responses));
}

// ----------------------------------------------------------------- page

function render() {
  applyStatic();
  const status = $('docs-status');
  if (failure) {
    status.className = 'form-error';
    status.replaceChildren(failure.status === 401
      ? el('span', {}, t('docsSignIn'), ' ', el('a', { href: '/' }, t('docsOpenOffice')))
      : t('docsFailed', { detail: failure.detail }));
    status.hidden = false;
    return;
  }
  if (!spec) return;
  status.hidden = true;
  const info = spec.info || {};
  document.title = `${info.title || t('docsTitle')} ${info.version || ''}`.trim();
  $('api-version').textContent = [info.version, spec.openapi ? `OpenAPI ${spec.openapi}` : null].filter(Boolean).join(' · ');
  $('docs-info').replaceChildren(
    el('h1', {}, info.title || t('docsTitle')),
    info.description ? el('p', {}, info.description) : null);

  const ops = operations();
  const declared = (spec.tags || []).map((tag) => tag.name);
  const used = ops.flatMap((o) => (o.op.tags && o.op.tags.length ? o.op.tags : [null]));
  const tags = [...new Set([...declared.filter((n) => used.includes(n)), ...used])];
  const tagInfo = (name) => (spec.tags || []).find((tag) => tag.name === name) || {};
  const tagId = (name) => `tag-${name === null ? 'other' : name}`.replace(/[^\w-]+/g, '-');

  $('docs-tags').replaceChildren(...tags.map((name) => el('li', {},
    el('a', { href: `#${tagId(name)}` }, name === null ? t('docsOther') : name))));
  $('docs-ops').replaceChildren(...tags.map((name) => el('section', { class: 'tag-section', id: tagId(name) },
    el('h2', {}, name === null ? t('docsOther') : name),
    tagInfo(name).description ? el('p', { class: 'hint' }, tagInfo(name).description) : null,
    ops.filter((o) => (name === null ? !(o.op.tags && o.op.tags.length) : (o.op.tags || []).includes(name)))
      .map(operationView))));
  $('docs-ops').append(el('p', { id: 'docs-none', class: 'empty', hidden: true }, t('docsNoOperations')));
  filter();
  openFromHash();
}

function filter() {
  const words = $('docs-filter').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const section of document.querySelectorAll('.tag-section')) {
    let any = false;
    for (const op of section.querySelectorAll('.op')) {
      const hay = `${op.dataset.method} ${op.dataset.path} ${op.querySelector('.op-summary').textContent}`.toLowerCase();
      const match = words.every((w) => hay.includes(w));
      op.hidden = !match;
      any ||= match;
      if (match) shown += 1;
    }
    section.hidden = !any;
  }
  const none = $('docs-none');
  if (none) none.hidden = shown > 0;
}

// #op-... opens that operation: links to one operation can be shared.
function openFromHash() {
  const id = location.hash.slice(1);
  const target = id ? document.getElementById(id) : null;
  if (target && target.tagName === 'DETAILS') {
    target.open = true;
    target.scrollIntoView();
  }
}

async function load() {
  let res;
  try {
    res = await fetch('/api/v1/openapi.json', {
      headers: { accept: 'application/json' }, credentials: 'same-origin', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (e) {
    failure = { status: 0, detail: e.message };
    render();
    return;
  }
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok || !data || typeof data !== 'object') {
    failure = { status: res.status, detail: (data && (data.detail || data.title)) || `${res.status} ${res.statusText}` };
  } else {
    spec = data;
  }
  render();
}

for (const b of document.querySelectorAll('button[data-lang]')) b.addEventListener('click', () => setLang(b.dataset.lang));
$('docs-filter').addEventListener('input', filter);
window.addEventListener('hashchange', openFromHash);
onLangChange(render);
applyStatic();
load();
