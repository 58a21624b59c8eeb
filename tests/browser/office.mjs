// Browser test of central's office UI against a running central with at
// least one complete ticket:
//   CENTRAL_URL=http://127.0.0.1:8080 ADMIN_USER=admin ADMIN_PASSWORD=... \
//   PLATE='OS-AB 123' node tests/browser/office.mjs
// Optional: VIEWER_USER / VIEWER_PASSWORD (a read-only user: sees no edit
// buttons), DEVICE_ID (the box that must show on the devices page).
//
// Drives the real pages in headless Chromium: login (a wrong password
// first), the ticket found by its plate through the filter, its weights and
// proof, its delivery note created, printed and cancelled, the CSV export of the
// filtered list, the language switch (kept over a reload), stock, reports,
// devices, master data with an edit conflict, the API docs page, and
// logout, after which the pages ask for the login again. Prints an
// `OFFICE {...}` line with what it created. Each step logs a line; on
// failure a screenshot and the page HTML go to tests/browser/artifacts/.
import { readFile } from 'node:fs/promises';

// The shared harness reads the address from EDGE_URL when it is loaded.
const CENTRAL_URL = process.env.CENTRAL_URL || 'http://127.0.0.1:8080';
process.env.EDGE_URL = CENTRAL_URL;
const { BASE, WAIT_MS, assert, log, saveArtifacts, testRun } = await import('./harness.mjs');

const ADMIN_USER = process.env.ADMIN_USER || 'admin';
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD || '';
const PLATE = process.env.PLATE || '';
const VIEWER_USER = process.env.VIEWER_USER || '';
const VIEWER_PASSWORD = process.env.VIEWER_PASSWORD || '';
const DEVICE_ID = process.env.DEVICE_ID || '';
const ARTICLE_ID = `T-OFFICE-${Date.now() % 100000}`;
const CANCEL_REASON = 'Falscher Kunde (Test)';

const t = testRun({ prefix: 'office-', overallMs: 150_000 });
const { run } = t;
let page;
let context;

// ------------------------------------------------------------- helpers

const text = async (sel, p = page) => (await p.locator(sel).first().innerText()).trim();

async function waitText(sel, expected, p = page) {
  try {
    await p.waitForFunction(([s, e]) => {
      const el = document.querySelector(s);
      return el && el.textContent.trim() === e;
    }, [sel, expected], { timeout: WAIT_MS });
  } catch {
    const got = await p.locator(sel).first().textContent({ timeout: 500 }).catch(() => null);
    throw new Error(`${sel} should read "${expected}", has ${JSON.stringify(got)}`);
  }
}

async function waitHash(re, p = page) {
  try {
    await p.waitForFunction((src) => new RegExp(src).test(decodeURIComponent(location.hash)), re.source, { timeout: WAIT_MS });
  } catch {
    throw new Error(`the address should match ${re}, is ${p.url()}`);
  }
}

// Click and return the answer of the API call the click caused.
async function clickFor(selector, method, pathRe, expectStatus, p = page) {
  const [res] = await Promise.all([
    p.waitForResponse((r) => r.request().method() === method && pathRe.test(new URL(r.url()).pathname), { timeout: WAIT_MS }),
    p.click(selector),
  ]);
  const body = await res.json().catch(() => null);
  if (expectStatus && res.status() !== expectStatus) {
    throw new Error(`${method} ${pathRe} answered ${res.status()}: ${JSON.stringify(body)}`);
  }
  return { status: res.status(), body, headers: res.headers() };
}

// The API as the signed-in browser sees it (same cookies).
async function apiGet(path, p = page) {
  const res = await p.request.get(`${BASE}${path}`);
  assert(res.ok(), `GET ${path}: ${res.status()} ${await res.text()}`);
  return res.json();
}

async function csrf(p = page) {
  const cookies = await p.context().cookies(BASE);
  const c = cookies.find((x) => x.name === 'valeo_csrf');
  assert(c, `no valeo_csrf cookie after login: ${cookies.map((x) => x.name).join(', ')}`);
  return c.value;
}

async function login(p, user, password) {
  await p.locator('#login').waitFor({ state: 'visible' });
  await p.fill('#login-user', user);
  await p.fill('#login-password', password);
  await clickFor('#login-submit', 'POST', /\/api\/v1\/auth\/login$/, 200, p);
  await p.locator('#app').waitFor({ state: 'visible' });
  await waitText('#me-name', user, p);
}

const fmt = (n, locale) => new Intl.NumberFormat(locale, { maximumFractionDigits: 3 }).format(n);
const rowOf = (plate) => `#weighings tr[data-plate="${plate.replace(/["\\]/g, '\\$&')}"]`;

// ---------------------------------------------------------------- main

let ticket; // the API's view of the ticket with PLATE
let noteNumber;

async function main() {
  assert(ADMIN_PASSWORD, 'ADMIN_PASSWORD is not set');
  assert(PLATE, 'PLATE is not set');
  ({ context, page } = await t.open('de-DE'));
  // The policy forbids inline script and style: a violation is a bug.
  const watchConsole = (p) => p.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) t.pageErrors.push(`CSP: ${m.text()}`);
  });
  watchConsole(page);
  context.on('page', watchConsole);

  await run('a protected page asks for the login, in German by default', async () => {
    await page.goto(`${BASE}/#/weighings`);
    await page.locator('#login').waitFor({ state: 'visible' });
    assert(await page.locator('#app').isHidden(), 'the app must stay hidden before login');
    await waitText('#login-submit', 'Anmelden');
    const headers = (await page.request.get(`${BASE}/`)).headers();
    assert(/default-src 'self'/.test(headers['content-security-policy'] || ''), `CSP of the page: ${headers['content-security-policy']}`);
  });

  await run('a wrong password is refused with a message', async () => {
    await page.fill('#login-user', ADMIN_USER);
    await page.fill('#login-password', `${ADMIN_PASSWORD}-wrong`);
    const { status } = await clickFor('#login-submit', 'POST', /\/api\/v1\/auth\/login$/);
    assert(status === 401, `wrong password answered ${status}`);
    await page.locator('#login-error').waitFor({ state: 'visible' });
    assert(await page.locator('#app').isHidden(), 'still not signed in');
  });

  await run('log in through the form', async () => {
    await login(page, ADMIN_USER, ADMIN_PASSWORD);
    await waitHash(/^#\/weighings/);
    await page.locator('#weighings').waitFor();
  });

  await run('find the ticket by its plate with the filter', async () => {
    await page.fill('#f-plate', PLATE);
    await page.click('#filter-apply');
    await page.waitForFunction((plate) => new URLSearchParams(location.hash.split('?')[1] || '').get('plate') === plate, PLATE);
    await page.locator(rowOf(PLATE)).first().waitFor();
    const plates = await page.locator('#weighings tr').evaluateAll((rows) => rows.map((r) => r.dataset.plate));
    assert(plates.every((p) => p.startsWith(PLATE)), `the filter shows only ${PLATE}: ${plates}`);
  });

  await run('the ticket shows its net weight, alibi numbers and legal-for-trade mark', async () => {
    const id = await page.locator(rowOf(PLATE)).first().getAttribute('data-id');
    await page.locator(`${rowOf(PLATE)} a`).first().click();
    await waitHash(new RegExp(`^#/weighings/${id}$`));
    ticket = await apiGet(`/api/v1/weighings/${id}`);
    assert(ticket.status === 'complete', `the test needs a complete ticket, got ${ticket.status}`);
    await waitText('#w-net', `${fmt(ticket.net, 'de-DE')} ${ticket.unit}`);
    await waitText('#d-plate', ticket.plate);
    if (ticket.second && ticket.second.alibi_id) {
      assert((await text('#w-second')).includes(ticket.second.alibi_id), 'the alibi number of the second weighing shows');
    }
    const legal = await page.locator('#legal').getAttribute('data-legal');
    assert(legal === String(ticket.legal_for_trade), `legal-for-trade mark ${legal}, API ${ticket.legal_for_trade}`);
  });

  await run('the proof shows the records, their hashes and the verification', async () => {
    const proof = ticket.proof;
    assert(proof && Array.isArray(proof.records), `the ticket has a proof: ${JSON.stringify(proof)}`);
    assert(await page.locator('#proof-chain').getAttribute('data-ok') === String(proof.chain_verified), 'chain state as the API says');
    assert(await page.locator('#proof-signature').getAttribute('data-ok') === String(proof.signature_verified), 'signature state as the API says');
    assert(proof.chain_verified && proof.signature_verified, `a ticket from a real box verifies: ${JSON.stringify(proof)}`);
    const rows = page.locator('#proof-records tr');
    assert(await rows.count() === proof.records.length && proof.records.length >= 2, `${await rows.count()} record rows for ${proof.records.length} records`);
    assert((await rows.first().innerText()).includes(proof.records[0].hash), 'the record hash is shown in full');
  });

  if (VIEWER_USER) {
    await run('a viewer sees the ticket but no button to create a delivery note', async () => {
      const viewerContext = await t.browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'de-DE' });
      viewerContext.setDefaultTimeout(WAIT_MS);
      const v = await viewerContext.newPage();
      v.on('pageerror', (e) => t.pageErrors.push(`viewer: ${e.message}`));
      try {
        await v.goto(`${BASE}/#/weighings/${ticket.id}`);
        await login(v, VIEWER_USER, VIEWER_PASSWORD);
        await waitText('#w-net', `${fmt(ticket.net, 'de-DE')} ${ticket.unit}`, v);
        assert(await v.locator('#create-dn').count() === 0, 'no create button for the viewer');
        await v.goto(`${BASE}/#/master/articles`);
        await v.locator('#entities').waitFor();
        assert(await v.locator('#md-new').count() === 0, 'no "new" button in master data for the viewer');
        await v.goto(`${BASE}/#/stock`);
        await v.locator('#stock').waitFor();
        assert(await v.locator('#correction').count() === 0, 'no stock correction for the viewer');
      } catch (e) {
        await saveArtifacts(v, `office-viewer-${t.step}`);
        throw e;
      } finally {
        await viewerContext.close();
      }
    });
  }

  await run('create the delivery note of the ticket', async () => {
    await page.click('#create-dn');
    await page.locator('#ask').waitFor({ state: 'visible' });
    await page.fill('#ask-input', 'Office test');
    const { body } = await clickFor('#ask-confirm', 'POST', /\/api\/v1\/delivery-notes$/, 201);
    assert(/^LS-\d{4}-\d{6}$/.test(body.number), `note number ${body.number}`);
    noteNumber = body.number;
    await page.locator('#ask').waitFor({ state: 'hidden' });
    await waitText('#dn-link', noteNumber);
    assert((await text('#success')).includes(noteNumber), 'the success message names the note');
    assert(await page.locator('#create-dn').count() === 0, 'no second note while one is issued');
  });

  await run('the note has its page and a printable document', async () => {
    await page.click('#dn-link');
    await waitHash(/^#\/delivery-notes\/\d+$/);
    assert((await text('#dn-number')).includes(noteNumber), 'the note page shows its number');
    await waitText('#dn-net', `${fmt(ticket.net, 'de-DE')} ${ticket.unit}`);
    const href = await page.locator('#dn-print').getAttribute('href');
    assert(/\/document\?lang=de$/.test(href), `print link ${href}`);
    const doc = await page.request.get(`${BASE}${href}`);
    assert(doc.ok() && (await doc.text()).includes(noteNumber), `the document ${href}: ${doc.status()}`);
    await page.goto(`${BASE}/#/delivery-notes`);
    await page.locator(`#notes tr[data-number="${noteNumber}"]`).waitFor();
  });

  await run('cancel the note: a reason is required, then the ticket may get a new one', async () => {
    await page.click(`#notes tr[data-number="${noteNumber}"] a`);
    await page.locator('#dn-cancel').waitFor();
    await page.click('#dn-cancel');
    await page.locator('#ask').waitFor({ state: 'visible' });
    await page.click('#ask-confirm');
    await waitText('#ask-error', 'Bitte ausfüllen.');
    await page.fill('#ask-input', CANCEL_REASON);
    const { body } = await clickFor('#ask-confirm', 'POST', /\/api\/v1\/delivery-notes\/\d+\/cancel$/, 200);
    assert(body.status === 'cancelled', `cancel answered ${JSON.stringify(body)}`);
    await page.locator('#ask').waitFor({ state: 'hidden' });
    await page.locator('#dn-number .chip[data-value="cancelled"]').waitFor();
    assert(await page.locator('#dn-cancel').count() === 0, 'a cancelled note cannot be cancelled again');
    await page.click('#dn-ticket');
    await page.locator('#create-dn').waitFor();
    await waitText('#dn-box .dn-old', noteNumber);
  });

  await run('the CSV export carries the filter and holds the ticket', async () => {
    await page.goto(`${BASE}/#/weighings?plate=${encodeURIComponent(PLATE)}`);
    await page.locator(rowOf(PLATE)).first().waitFor();
    const href = await page.locator('#csv-export').getAttribute('href');
    const params = new URL(href, BASE).searchParams;
    assert(params.get('plate') === PLATE && params.get('lang') === 'de', `CSV link ${href}`);
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT_MS }), page.click('#csv-export')]);
    const csv = await readFile(await download.path(), 'utf8');
    assert(csv.includes(PLATE), `the CSV holds ${PLATE}: ${csv.slice(0, 300)}`);
    assert(csv.split('\n')[0].includes(';'), `German CSV is separated by ";": ${csv.split('\n')[0]}`);
    log(`CSV ${download.suggestedFilename()}: ${csv.split('\n').length} lines`);
  });

  await run('switch to English, kept over a reload, and back to German', async () => {
    await page.click('#lang-en');
    await waitText('.nav a[data-route="weighings"]', 'Tickets');
    await waitText('#view h1', 'Tickets');
    await page.reload();
    await waitText('.nav a[data-route="weighings"]', 'Tickets');
    assert(await page.evaluate(() => document.documentElement.lang) === 'en', 'page language en');
    assert(new URL(await page.locator('#csv-export').getAttribute('href'), BASE).searchParams.get('lang') === 'en', 'the export follows the language');
    await page.goto(`${BASE}/#/weighings/${ticket.id}`);
    await waitText('#w-net', `${fmt(ticket.net, 'en-GB')} ${ticket.unit}`);
    await page.click('#lang-de');
    await waitText('.nav a[data-route="weighings"]', 'Wiegescheine');
    await waitText('#w-net', `${fmt(ticket.net, 'de-DE')} ${ticket.unit}`);
  });

  await run('stock, reports and devices pages show their data', async () => {
    await page.goto(`${BASE}/#/stock`);
    await page.locator('#stock').waitFor();
    await page.locator('#movements').waitFor();
    await page.goto(`${BASE}/#/reports`);
    await page.locator('#report').waitFor();
    const count = Number((await text('#report-total-count')).replace(/\D/g, ''));
    assert(count >= 1, `this month's report counts the ticket: ${count}`);
    await page.goto(`${BASE}/#/devices`);
    await page.locator(DEVICE_ID ? `#devices tr[data-device="${DEVICE_ID}"]` : '#devices tr').first().waitFor();
  });

  await run('master data: create, edit, a conflicting edit, delete', async () => {
    await page.goto(`${BASE}/#/master/articles/new`);
    await page.fill('#md-id', ARTICLE_ID);
    await page.fill('#md-name', 'Testweizen');
    await clickFor('#md-save', 'POST', /\/api\/v1\/articles$/, 201);
    await waitHash(new RegExp(`^#/master/articles/${ARTICLE_ID}$`));
    await page.locator('#md-name').waitFor();
    assert(await page.inputValue('#md-name') === 'Testweizen', 'the new article is shown');

    await page.fill('#md-name', 'Testweizen B');
    await clickFor('#md-save', 'PUT', new RegExp(`/api/v1/articles/${ARTICLE_ID}$`), 200);
    await page.locator('#success').waitFor({ state: 'visible' });

    // Someone else saves meanwhile: this form's version is stale.
    await page.waitForFunction(() => document.querySelector('#md-name')?.value === 'Testweizen B');
    const res = await page.request.get(`${BASE}/api/v1/articles/${ARTICLE_ID}`);
    const other = await page.request.put(`${BASE}/api/v1/articles/${ARTICLE_ID}`, {
      headers: { 'if-match': res.headers().etag, 'x-csrf-token': await csrf(), 'content-type': 'application/json' },
      data: { id: ARTICLE_ID, name: 'Weizen vom Kollegen' },
    });
    assert(other.ok(), `the other edit: ${other.status()} ${await other.text()}`);
    await page.fill('#md-name', 'Testweizen C');
    await clickFor('#md-save', 'PUT', new RegExp(`/api/v1/articles/${ARTICLE_ID}$`), 412);
    await page.locator('#md-error').waitFor({ state: 'visible' });
    await page.click('#md-reload');
    await page.waitForFunction(() => document.querySelector('#md-name')?.value === 'Weizen vom Kollegen');

    await page.click('#md-delete');
    await page.locator('#ask').waitFor({ state: 'visible' });
    const { status } = await clickFor('#ask-confirm', 'DELETE', new RegExp(`/api/v1/articles/${ARTICLE_ID}$`));
    assert(status === 204 || status === 200, `delete answered ${status}`);
    await waitHash(/^#\/master\/articles$/);
    await page.locator('#entities').waitFor();
    assert(await page.locator(`#entities tr[data-id="${ARTICLE_ID}"]`).count() === 0, 'the deleted article is gone');
  });

  await run('the API docs page lists the operations', async () => {
    const docs = await context.newPage();
    docs.on('pageerror', (e) => t.pageErrors.push(`docs: ${e.message}`));
    try {
      await docs.goto(`${BASE}/api/v1/docs`);
      await docs.locator('.op[data-path="/api/v1/weighings"][data-method="get"]').waitFor();
      await docs.locator('.op[data-path="/api/v1/weighings"][data-method="get"] summary').click();
      await docs.locator('.op[data-path="/api/v1/weighings"][data-method="get"] .op-body').waitFor({ state: 'visible' });
      const n = await docs.locator('.op').count();
      assert(n >= 10, `${n} operations listed`);
    } catch (e) {
      await saveArtifacts(docs, `office-docs-${t.step}`);
      throw e;
    } finally {
      await docs.close();
    }
  });

  await run('log out; a protected page asks for the login again', async () => {
    await page.goto(`${BASE}/#/weighings`);
    await page.locator('#weighings').waitFor();
    await clickFor('#logout', 'POST', /\/api\/v1\/auth\/logout$/);
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.goto(`${BASE}/#/delivery-notes`);
    await page.reload();
    await page.locator('#login').waitFor({ state: 'visible' });
    assert(await page.locator('#app').isHidden(), 'the app is hidden after logout');
    const me = await page.request.get(`${BASE}/api/v1/auth/me`);
    assert(me.status() === 401, `/auth/me after logout: ${me.status()}`);
  });

  await t.checkClean();
  console.log(`OFFICE ${JSON.stringify({ weighing_id: ticket.id, delivery_note: noteNumber, article: ARTICLE_ID })}`);
  await t.finish();
}

main().catch((e) => t.fail(e.stack || e.message));
