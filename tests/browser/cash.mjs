// Browser test of the terminal's cash desk against a running edge agent
// with a [cash] section and the software TSE:
//   EDGE_URL=http://127.0.0.1:18081 node tests/browser/cash.mjs
//
// Sells over the counter, opens the printed receipt, cancels it (and sees a
// second terminal refused when it tries the same), refuses a bad input
// without recording anything, shows a TSE outage (when the agent simulates
// the TSE: PUT /api/v1/simulation/tse) and closes the day. Each step logs a
// line; on failure a screenshot and the page HTML go to
// tests/browser/artifacts/. Prints the receipt numbers as a last line
// `RECEIPTS {"signed":[…],"unsigned":[…]}` for the Rust test to check at central.
import { BASE, WAIT_MS, assert, log, saveArtifacts, testRun } from './harness.mjs';

const t = testRun({ prefix: 'cash-', overallMs: 90_000 });
const { run } = t;
let page;
const signed = [];
const unsigned = [];

// ------------------------------------------------------------- helpers

const text = async (sel, p = page) => (await p.locator(sel).innerText()).trim();
const row = (n) => `#receipts [data-receipt="${n}"]`;

// Click and return the JSON of the API answer the click caused.
async function clickFor(selector, method, urlPart, expectStatus, p = page) {
  const [res] = await Promise.all([
    p.waitForResponse((r) => r.request().method() === method && new URL(r.url()).pathname.endsWith(urlPart), { timeout: 30_000 }),
    p.click(selector),
  ]);
  const body = await res.json().catch(() => null);
  if (expectStatus && res.status() !== expectStatus) {
    throw new Error(`${method} ${urlPart} answered ${res.status()}: ${JSON.stringify(body)}`);
  }
  return { status: res.status(), body };
}

async function receiptsAtAgent() {
  const res = await page.request.get(`${BASE}/api/v1/receipts?limit=500`);
  assert(res.ok(), `GET /api/v1/receipts answered ${res.status()}`);
  return res.json();
}

async function errorBanner(p, re, focused = null) {
  await p.locator('#error').waitFor({ state: 'visible', timeout: WAIT_MS });
  const msg = await text('#error-text', p);
  assert(re.test(msg), `error banner should match ${re}, says "${msg}"`);
  if (focused) {
    const id = await p.evaluate(() => document.activeElement?.id);
    assert(id === focused, `#${focused} should have the focus, #${id} has`);
  }
  await p.click('#error-dismiss');
  await p.locator('#error').waitFor({ state: 'hidden' });
  return msg;
}

async function waitSuccess(p, part) {
  await p.waitForFunction((s) => !document.querySelector('#success').hidden
    && document.querySelector('#success-text').textContent.includes(s), part, { timeout: WAIT_MS })
    .catch(async () => { throw new Error(`success banner should mention "${part}", says "${await text('#success', p)}"`); });
}

async function sell({ article, qty, price, vat, payment }) {
  await page.fill('#sale-text', article);
  await page.fill('#sale-qty', qty);
  // The unit keeps its default, kg.
  assert(await page.inputValue('#sale-unit') === 'kg', `unit is "${await page.inputValue('#sale-unit')}", expected the default kg`);
  await page.fill('#sale-price', price);
  await page.selectOption('#sale-vat', vat);
  await page.click(payment === 'ECKarte' ? '#pay-ec' : '#pay-bar');
  const { body } = await clickFor('#sale-submit', 'POST', '/api/v1/sales', 201);
  assert(body && Number.isInteger(body.receipt_no), `no receipt number in ${JSON.stringify(body)}`);
  await page.locator('#sale-result').waitFor({ state: 'visible' });
  assert((await text('#sale-result-text')).includes(String(body.receipt_no)), 'the result should name the receipt number');
  await page.locator(row(body.receipt_no)).waitFor({ state: 'visible' });
  return body;
}

// The printable receipt through the link the terminal shows, in its own tab.
async function withPrint(p, selector, n, fn) {
  const [view] = await Promise.all([p.waitForEvent('popup', { timeout: WAIT_MS }), p.click(selector)]);
  try {
    await view.waitForLoadState('domcontentloaded');
    assert(new URL(view.url()).pathname === `/api/v1/receipts/${n}/print`, `print link opened ${view.url()}`);
    await view.locator('#receipt-no').waitFor({ timeout: WAIT_MS });
    await fn(view);
  } catch (e) {
    await saveArtifacts(view, `receipt-${n}-${t.step}`);
    throw e;
  } finally {
    await view.close();
  }
}

// ---------------------------------------------------------------- main

async function main() {
  ({ page } = await t.open('de-DE'));
  page.on('console', (m) => { if (m.type() === 'error') log(`console error: ${m.text()}`); });

  let tse;
  let sale;
  let storno;

  await run('1 open terminal: cash desk and TSE status shown', async () => {
    const tseRes = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/tse');
    const res = await page.goto(`${BASE}/`);
    assert(res && res.ok(), `GET / answered ${res && res.status()}`);
    const answer = await tseRes;
    assert(answer.status() === 200, `GET /api/v1/tse answered ${answer.status()}: is there a [cash] section?`);
    tse = await answer.json();
    assert(tse.info && tse.info.serial_hex, `the TSE does not describe itself: ${JSON.stringify(tse)}`);
    await page.locator('#cash').waitFor({ state: 'visible' });
    await page.click('#lang-de');
    assert(await text('#cash-h') === 'Kasse', `panel heading reads "${await text('#cash-h')}"`);
    await page.waitForFunction(() => document.querySelector('#tse-state')?.dataset.status === 'ok');
    assert(await text('#tse-state') === 'TSE bereit', `TSE status reads "${await text('#tse-state')}"`);
    const serial = await text('#tse-serial');
    assert(serial.includes(tse.info.serial_hex.slice(0, 8)) && serial.length < tse.info.serial_hex.length,
      `the serial should be shown shortened, reads "${serial}"`);
    // The software TSE is not certified, and the terminal says so.
    assert(tse.info.certified === false, 'the software TSE should say it is not certified');
    assert(await text('#tse-uncertified') === 'nicht zertifiziert', 'no "nicht zertifiziert" badge');
    assert(await page.locator('#tse-outage').isHidden(), 'outage banner shown although the TSE works');
    await page.click('#lang-en');
    assert(await text('#cash-h') === 'Cash desk', 'English heading');
    assert(await text('#tse-uncertified') === 'not certified', 'English badge');
    await page.click('#lang-de');
    await page.fill('#operator', 'Anna');
  });

  await run('2 sell 2,5 kg at 3,20 € with 7 % in cash', async () => {
    await page.fill('#sale-qty', '2,5');
    await page.fill('#sale-price', '3,20');
    await page.fill('#sale-text', 'Legehennenfutter lose');
    assert(await text('#sale-total') === '8,00 €', `the total preview reads "${await text('#sale-total')}"`);
    sale = await sell({ article: 'Legehennenfutter lose', qty: '2,5', price: '3,20', vat: '2', payment: 'Bar' });
    const line = sale.lines[0];
    assert(line.quantity_milli === 2500 && line.unit_price_cents === 320 && line.gross_cents === 800
      && line.vat_key === 2 && line.unit === 'kg', `the line sent was ${JSON.stringify(line)}`);
    assert(JSON.stringify(sale.payments) === JSON.stringify([{ type: 'Bar', amount_cents: 800 }]),
      `payments ${JSON.stringify(sale.payments)}`);
    assert(sale.tse && sale.tse.qr_code.startsWith('V0;'), `the sale is not signed: ${JSON.stringify(sale.tse_error)}`);
    signed.push(sale.receipt_no);
    await waitSuccess(page, `Beleg ${sale.receipt_no}`);
    const r = row(sale.receipt_no);
    assert(await page.getAttribute(r, 'data-signed') === 'true', 'the list should mark the receipt signed');
    const cells = await text(r);
    assert(cells.includes('8,00 €') && cells.includes('signiert'), `the receipt row reads "${cells}"`);
    log(`     receipt ${sale.receipt_no}, TSE transaction ${sale.tse.transaction_number}`);
  });

  await run('3 the printed receipt carries the TSE data and the QR code', async () => {
    await withPrint(page, '#sale-print', sale.receipt_no, async (v) => {
      const tseText = await text('#tse', v);
      assert(tseText.includes(tse.info.serial_hex), `#tse lacks the serial ${tse.info.serial_hex}: "${tseText}"`);
      assert(sale.tse.serial_hex === tse.info.serial_hex, 'the sale was signed by another TSE');
      assert(new RegExp(`TSE-Transaktion ${sale.tse.transaction_number}\\b`).test(tseText),
        `#tse lacks transaction ${sale.tse.transaction_number}: "${tseText}"`);
      assert(await v.locator('#qr svg').count() === 1, 'no QR <svg> in #qr');
      const qr = await v.getAttribute('#qr', 'data-qr');
      assert(qr && qr.startsWith('V0;'), `data-qr is ${JSON.stringify(qr)}`);
      assert(qr === sale.tse.qr_code, 'data-qr differs from the sale\'s QR code');
      assert(await text('#total', v) === '8,00', `total reads "${await text('#total', v)}"`);
      assert(await v.locator('#storno').count() === 0 && await v.locator('#tse-outage').count() === 0,
        'a signed sale shows neither storno nor outage marks');
    });
    // The list's own print link leads to the same page.
    assert(await page.getAttribute(`${row(sale.receipt_no)} .r-print`, 'href') === `/api/v1/receipts/${sale.receipt_no}/print`,
      'the row\'s print link');
  });

  await run('4 storno; a second terminal cannot cancel it again', async () => {
    // Terminal 2 (same browser profile, so the same operator) opens the
    // storno dialog for the same receipt before terminal 1 confirms.
    const other = await page.context().newPage();
    other.on('pageerror', (e) => t.pageErrors.push(`terminal 2: ${e.message}`));
    await other.goto(`${BASE}/`);
    await other.locator(`${row(sale.receipt_no)} .storno`).waitFor({ state: 'visible' });
    await other.click(`${row(sale.receipt_no)} .storno`);
    await other.locator('#cash-dialog').waitFor({ state: 'visible' });

    await page.click(`${row(sale.receipt_no)} .storno`);
    await page.locator('#cash-dialog').waitFor({ state: 'visible' });
    const title = await text('#cash-dialog-title');
    assert(title.includes(String(sale.receipt_no)), `dialog title reads "${title}"`);
    assert((await text('#cash-dialog-text')).includes('-8,00 €'), `dialog text reads "${await text('#cash-dialog-text')}"`);
    ({ body: storno } = await clickFor('#cash-confirm', 'POST', `/receipts/${sale.receipt_no}/storno`, 201));
    assert(storno.cancels_receipt_no === sale.receipt_no, `storno refers to ${storno.cancels_receipt_no}`);
    assert(storno.lines[0].gross_cents === -800 && storno.tse, `storno receipt ${JSON.stringify(storno)}`);
    signed.push(storno.receipt_no);
    await page.locator('#cash-dialog').waitFor({ state: 'hidden' });
    await waitSuccess(page, `Stornobeleg ${storno.receipt_no}`);
    await page.locator(row(storno.receipt_no)).waitFor({ state: 'visible' });
    const stornoRow = await text(row(storno.receipt_no));
    assert(stornoRow.includes(`Storno zu Nr. ${sale.receipt_no}`) && stornoRow.includes('-8,00 €'),
      `storno row reads "${stornoRow}"`);
    assert(await page.locator(`${row(storno.receipt_no)} .storno`).isHidden(), 'a storno cannot be cancelled');
    await page.waitForFunction((s) => document.querySelector(s)?.dataset.cancelled === 'true', row(sale.receipt_no));
    assert(await page.locator(`${row(sale.receipt_no)} .storno`).isHidden(), 'the cancelled receipt still offers Storno');
    assert((await text(row(sale.receipt_no))).includes(`storniert (Nr. ${storno.receipt_no})`), 'original row has no cancelled mark');

    const { status } = await clickFor('#cash-confirm', 'POST', `/receipts/${sale.receipt_no}/storno`, null, other);
    assert(status === 409, `a second storno answered ${status}, expected 409`);
    await errorBanner(other, /already cancelled/i);
    await other.close();

    await withPrint(page, `${row(storno.receipt_no)} .r-print`, storno.receipt_no, async (v) => {
      assert((await text('#storno', v)).includes(`Beleg Nr. ${sale.receipt_no}`), 'the storno print lacks its STORNO mark');
      assert((await v.getAttribute('#qr', 'data-qr')).startsWith('V0;'), 'the storno is signed');
    });
    const all = await receiptsAtAgent();
    assert(all.filter((r) => r.cancels_receipt_no === sale.receipt_no).length === 1, 'exactly one storno of the sale');
  });

  await run('5 a bad input (no unit price) is refused and records nothing', async () => {
    const before = (await receiptsAtAgent()).length;
    const posts = [];
    const onRequest = (r) => { if (r.method() === 'POST') posts.push(r.url()); };
    page.on('request', onRequest);
    await page.fill('#sale-text', 'Mineralfutter');
    await page.fill('#sale-qty', '1');
    await page.fill('#sale-price', '');
    assert(await text('#sale-total') === '—', 'no total without a price');
    await page.click('#sale-submit');
    await errorBanner(page, /Einzelpreis/, 'sale-price');
    // A price with more than two decimals is refused the same way.
    await page.fill('#sale-price', '3,205');
    await page.click('#sale-submit');
    await errorBanner(page, /Nachkommastellen/, 'sale-price');
    await page.waitForTimeout(300);
    page.off('request', onRequest);
    assert(posts.length === 0, `requests sent for a bad input: ${posts.join(', ')}`);
    const after = (await receiptsAtAgent()).length;
    assert(after === before, `receipts went from ${before} to ${after}`);
    await page.fill('#sale-text', '');
    await page.fill('#sale-qty', '');
    await page.fill('#sale-price', '');
  });

  await run('6 TSE outage: banner, unsigned receipt, recovery', async () => {
    const fault = await page.request.put(`${BASE}/api/v1/simulation/tse`, { data: { failing: 'USB-Stick gezogen' } });
    if (fault.status() === 404) {
      log('     the agent does not simulate the TSE: no outage to show');
      return;
    }
    assert(fault.status() === 204, `PUT /api/v1/simulation/tse answered ${fault.status()}`);
    try {
      const down = await sell({ article: 'Katzenstreu', qty: '3', price: '1,99', vat: '1', payment: 'ECKarte' });
      assert(!down.tse && down.tse_error, `a sale during the outage came back signed: ${JSON.stringify(down)}`);
      assert(down.lines[0].gross_cents === 597 && down.payments[0].type === 'ECKarte', `sale ${JSON.stringify(down)}`);
      unsigned.push(down.receipt_no);
      await waitSuccess(page, 'OHNE Signatur');
      const banner = page.locator('#tse-outage');
      await banner.waitFor({ state: 'visible' });
      assert(await banner.getAttribute('role') === 'alert', 'the outage banner should be role="alert"');
      const said = await text('#tse-outage');
      assert(said.includes('TSE ausgefallen – Belege ohne Signatur') && said.includes('USB-Stick gezogen') && said.includes('seit'),
        `outage banner reads "${said}"`);
      assert(await page.getAttribute(row(down.receipt_no), 'data-signed') === 'false', 'the list should mark the receipt unsigned');
      assert((await text(row(down.receipt_no))).includes('OHNE SIGNATUR'), 'no unsigned mark in the row');
      assert(await page.getAttribute('#tse-state', 'data-status') === 'outage', 'the TSE status should say outage');
      await withPrint(page, '#sale-print', down.receipt_no, async (v) => {
        assert((await text('#tse-outage', v)).includes('USB-Stick gezogen'), 'the print lacks its outage mark');
        assert(await v.locator('#qr').count() === 0, 'an unsigned receipt has no QR code');
      });
    } finally {
      await page.request.put(`${BASE}/api/v1/simulation/tse`, { data: { failing: null } });
    }
    // The next sale reaches the TSE again, which ends the outage.
    const back = await sell({ article: 'Katzenstreu', qty: '1', price: '1,99', vat: '1', payment: 'Bar' });
    assert(back.tse, `the sale after the outage is not signed: ${back.tse_error}`);
    signed.push(back.receipt_no);
    await page.locator('#tse-outage').waitFor({ state: 'hidden' });
    assert(await page.getAttribute('#tse-state', 'data-status') === 'ok', 'the TSE status should be ok again');
  });

  await run('7 close the day', async () => {
    await page.click('#close-day');
    await page.locator('#cash-dialog').waitFor({ state: 'visible' });
    assert(await text('#cash-dialog-title') === 'Tagesabschluss', `dialog title reads "${await text('#cash-dialog-title')}"`);
    const { body } = await clickFor('#cash-confirm', 'POST', '/api/v1/cash/closing', 201);
    assert(Number.isInteger(body.z_nr) && body.last_receipt_no === Math.max(...signed, ...unsigned),
      `closing ${JSON.stringify(body)}`);
    await waitSuccess(page, `Tagesabschluss Z ${body.z_nr}`);
  });

  await t.checkClean();

  await t.finish();
  console.log(`RECEIPTS ${JSON.stringify({ signed, unsigned })}`);
  console.log(`${t.steps} passed, 0 failed`);
}

main().catch((e) => t.fail(e && e.message ? e.message : String(e)));
