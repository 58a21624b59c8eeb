// Browser test of the operator terminal against a running edge agent with a
// simulated scale:  EDGE_URL=http://127.0.0.1:18081 node tests/browser/terminal.mjs
//
// Drives the real pages in headless Chromium through one working day:
// language switch, a refused weighing, two-step tickets (with who weighed
// them on the ticket), cancel, stored tare, manual entry, quality by hand
// and from the grain analyzer, site lights, simulated position sensors, no
// field devices panel without Modbus lines. Each step logs a line; on
// failure a screenshot and the page HTML go to tests/browser/artifacts/.
import { BASE, WAIT_MS, assert, log, saveArtifacts, testRun } from './harness.mjs';

const t = testRun({ prefix: '', overallMs: 90_000 });
const { run } = t;
let page;


// ------------------------------------------------------------- helpers

const text = async (sel, p = page) => (await p.locator(sel).innerText()).trim();

async function waitText(sel, expected, p = page, timeout = WAIT_MS) {
  try {
    await p.waitForFunction(([s, e]) => {
      const el = document.querySelector(s);
      return el && el.textContent.trim() === e;
    }, [sel, expected], { timeout });
  } catch {
    const got = await p.locator(sel).first().textContent().catch(() => null);
    throw new Error(`${sel} should read "${expected}", has ${JSON.stringify(got)}`);
  }
}

// The live display and its stable flag must agree on the same reading.
async function waitStableWeight(kg) {
  const want = `${kg} kg`;
  try {
    await page.waitForFunction((w) => document.querySelector('#live-weight')?.textContent.trim() === w
      && document.querySelector('#live-stable')?.dataset.stable === 'true', want, { timeout: WAIT_MS });
  } catch {
    const got = await page.evaluate(() => [document.querySelector('#live-weight')?.textContent,
      document.querySelector('#live-stable')?.dataset.stable]);
    throw new Error(`live weight should be stable "${want}", is ${JSON.stringify(got)}`);
  }
}

// Empty and settled as far as the terminal can tell: stable 0 on the
// display and the site controller reporting a free platform.
const bridgeEmpty = () => page.evaluate(() => {
  const w = document.querySelector('#live-weight')?.textContent.trim() || '';
  return /^-?0([.,]0+)? \S+$/.test(w) && document.querySelector('#live-stable')?.dataset.stable === 'true'
    && document.querySelector('#site')?.dataset.state === 'free';
});

// Drive the truck off. The next vehicle may be weighed as soon as the site
// controller has seen the platform below its empty threshold (the interlock
// leaves "released"), so wait for that rather than for the bridge to settle:
// the simulated bridge takes ~3 s to ramp plus ~2.5 s to settle. An empty
// bridge is left alone; driving "off" it would start a ramp all the same.
async function driveOff() {
  if (await bridgeEmpty()) return;
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().endsWith('/api/v1/simulation/truck')),
    page.click('#sim-drive-off'),
  ]);
  try {
    await page.waitForFunction(() => {
      const site = document.querySelector('#site');
      return ['free', 'occupied'].includes(site?.dataset.state) && site.dataset.loaded === 'false';
    }, null, { timeout: WAIT_MS, polling: 100 });
  } catch {
    const got = await page.evaluate(() => [document.querySelector('#live-weight')?.textContent.trim(),
      document.querySelector('#site')?.dataset.state, document.querySelector('#site')?.dataset.loaded]);
    throw new Error(`platform not reported empty after drive off: weight, site state, loaded = ${JSON.stringify(got)}`);
  }
}

async function driveTo(kg) {
  await driveOff();
  await page.fill('#sim-weight', String(kg));
  await page.click('#sim-drive-on');
  await waitStableWeight(kg);
}

// Click and return the JSON of the API answer the click caused.
async function clickFor(selector, method, urlPart, expectStatus) {
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === method && new URL(r.url()).pathname.endsWith(urlPart), { timeout: 30_000 }),
    page.click(selector),
  ]);
  const body = await res.json().catch(() => null);
  if (expectStatus && res.status() !== expectStatus) {
    throw new Error(`${method} ${urlPart} answered ${res.status()}: ${JSON.stringify(body)}`);
  }
  return { status: res.status(), body };
}

const openRow = (n) => `#open-tickets [data-ticket="${n}"]`;
const recentRow = (n) => `#recent-tickets [data-ticket="${n}"]`;

async function firstWeighing({ plate, direction, partner, article, lot, mode }) {
  await page.fill('#plate', plate);
  await page.click(direction === 'outgoing' ? '#dir-outgoing' : '#dir-intake');
  if (partner) await page.selectOption('#partner', partner);
  if (article) await page.selectOption('#article', article);
  if (lot) await page.selectOption('#lot', lot);
  if (mode) await page.click(mode);
  const { body } = await clickFor('#first-weighing', 'POST', '/api/v1/tickets', 201);
  assert(body && Number.isInteger(body.ticket_no), `no ticket number in ${JSON.stringify(body)}`);
  await page.locator('#success').waitFor({ state: 'visible', timeout: WAIT_MS });
  assert((await text('#success')).includes(String(body.ticket_no)), 'success banner should name the ticket number');
  return body;
}

async function secondWeighing(n) {
  const { body } = await clickFor(`${openRow(n)} .second-weighing`, 'POST', `/tickets/${n}/second-weighing`, 200);
  await page.locator(openRow(n)).waitFor({ state: 'detached', timeout: WAIT_MS });
  await page.locator(recentRow(n)).waitFor({ state: 'visible', timeout: WAIT_MS });
  return body;
}

// The print view in its own tab, as the operator would open it.
async function ticketView(n, { viaButton = false } = {}) {
  let view;
  if (viaButton) {
    [view] = await Promise.all([page.waitForEvent('popup', { timeout: WAIT_MS }), page.click(`${recentRow(n)} .print`)]);
    await view.waitForLoadState('domcontentloaded');
    assert(new URL(view.url()).pathname === `/tickets/${n}`, `print opened ${view.url()}`);
  } else {
    view = await page.context().newPage();
    await view.goto(`${BASE}/tickets/${n}`);
  }
  view.on('pageerror', (e) => t.pageErrors.push(`ticket ${n}: ${e.message}`));
  await view.locator('#ticket #net').waitFor({ timeout: WAIT_MS });
  return view;
}

async function withTicketView(n, fn, opts) {
  const view = await ticketView(n, opts);
  try {
    await fn(view);
  } catch (e) {
    await saveArtifacts(view, `ticket-${n}-${t.step}`);
    throw e;
  } finally {
    await view.close();
  }
}

// ---------------------------------------------------------------- main

async function main() {
  ({ page } = await t.open('en-GB'));
  page.on('console', (m) => { if (m.type() === 'error') log(`console error: ${m.text()}`); });

  let t1; let t2; let t3; let t4;

  await run('1 open terminal, switch language, set operator', async () => {
    const modbus = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/modbus');
    const res = await page.goto(`${BASE}/`);
    assert(res && res.ok(), `GET / answered ${res && res.status()}`);
    // No Modbus lines on this agent: the field devices panel stays hidden.
    const lines = await (await modbus).json();
    assert(Array.isArray(lines) && lines.length === 0, `GET /api/v1/modbus answered ${JSON.stringify(lines)}, expected []`);
    await page.waitForFunction(() => document.querySelector('#modbus')?.dataset.polled === 'true');
    assert(await page.locator('#modbus').isHidden(), 'field devices panel shown although the agent has no Modbus lines');
    await page.locator('#sim').waitFor({ state: 'visible', timeout: WAIT_MS })
      .catch(() => { throw new Error('simulation panel not shown: does the agent simulate a scale (GET /api/v1/simulation)?'); });
    await page.click('#lang-en');
    assert((await text('#first-weighing')).includes('First weighing'), `EN button reads "${await text('#first-weighing')}"`);
    await page.click('#lang-de');
    assert((await text('#first-weighing')).includes('Erstwägung'), `DE button reads "${await text('#first-weighing')}"`);
    assert((await text('#dir-intake')).includes('Anlieferung'), 'German direction label');
    await page.click('#lang-en');
    assert((await text('#first-weighing')).includes('First weighing'), 'back to English');
    await page.fill('#operator', 'Anna');
  });

  await run('2 weighing below minimum load is refused', async () => {
    await driveOff();
    await waitStableWeight(0);
    const before = await page.locator('#open-tickets [data-ticket]').count();
    await page.fill('#plate', 'OS-X 1');
    const { status } = await clickFor('#first-weighing', 'POST', '/api/v1/tickets');
    assert(status >= 400, `first weighing at 0 kg answered ${status}, expected an error`);
    await page.locator('#error').waitFor({ state: 'visible', timeout: WAIT_MS });
    const msg = await text('#error');
    assert(/minimum load/i.test(msg), `error banner should mention the minimum load, says "${msg}"`);
    await page.waitForTimeout(500); // let the list refresh after the refusal
    const after = await page.locator('#open-tickets [data-ticket]').count();
    assert(after === before, `open tickets went from ${before} to ${after}`);
    await page.click('#error-dismiss');
    await page.locator('#error').waitFor({ state: 'hidden' });
  });

  await run('3 first weighing OS-T 1 at 40000 kg', async () => {
    await driveTo(40000);
    t1 = await firstWeighing({ plate: 'OS-T 1', direction: 'intake', partner: 'P-100', article: 'A-WHEAT', lot: 'L-44' });
    assert(t1.state === 'open', `ticket ${t1.ticket_no} is ${t1.state}`);
    await page.locator(openRow(t1.ticket_no)).waitFor({ state: 'visible' });
    const row = await text(openRow(t1.ticket_no));
    assert(row.includes('OS-T 1') && row.includes('40000 kg'), `open row reads "${row}"`);
    log(`     ticket ${t1.ticket_no}`);
  });

  await run('4 second weighing OS-T 1 at 15000 kg', async () => {
    await driveTo(15000);
    const done = await secondWeighing(t1.ticket_no);
    assert(done.state === 'complete', `ticket is ${done.state}`);
  });

  await run('5 print view of OS-T 1', async () => {
    await withTicketView(t1.ticket_no, async (v) => {
      await waitText('#net', '25000 kg', v);
      const body = await v.locator('body').innerText();
      for (const s of ['OS-T 1', 'Weizen', 'sim-bridge-1']) assert(body.includes(s), `ticket page lacks "${s}"`);
      // Who took each weighing: a column of its own, one name per step.
      const heads = await v.locator('table.weighings thead th').allInnerTexts();
      assert(heads.some((h) => /operator/i.test(h)), `weighings table has no operator column: ${JSON.stringify(heads)}`);
      for (const n of [1, 2]) {
        const who = (await v.locator(`table.weighings tr[data-step="${n}"] td.weigher`).innerText()).trim();
        assert(who === 'Anna', `weighing ${n} should name operator Anna, names ${JSON.stringify(who)}`);
      }
      assert(await v.locator('#print').isVisible(), '#print should be visible on screen');
      assert(await v.locator('#storno').count() === 0, 'a complete ticket shows no STORNO');
      await v.emulateMedia({ media: 'print' });
      assert(!(await v.locator('#print').isVisible()), '#print must be hidden in print');
    }, { viaButton: true });
  });

  await run('6 OS-T 2 outgoing 16000 → 41000, then cancel', async () => {
    await driveTo(16000);
    t2 = await firstWeighing({ plate: 'OS-T 2', direction: 'outgoing' });
    assert(t2.direction === 'outgoing', `direction is ${t2.direction}`);
    await page.locator(openRow(t2.ticket_no)).waitFor({ state: 'visible' });
    await driveTo(41000);
    await secondWeighing(t2.ticket_no);
    await withTicketView(t2.ticket_no, (v) => waitText('#net', '25000 kg', v));

    await page.click(`${recentRow(t2.ticket_no)} .cancel`);
    await page.locator('#cancel-reason').waitFor({ state: 'visible' });
    await page.fill('#cancel-reason', 'wrong partner');
    const { body } = await clickFor('#cancel-confirm', 'POST', `/tickets/${t2.ticket_no}/cancel`, 200);
    assert(body.state === 'cancelled', `ticket is ${body.state}`);
    await page.locator('#cancel-reason').waitFor({ state: 'hidden' });
    await page.waitForFunction((s) => !document.querySelector(`${s} .cancel`), recentRow(t2.ticket_no));
    await withTicketView(t2.ticket_no, async (v) => {
      await v.locator('#storno').waitFor({ state: 'visible' });
      assert((await text('#storno', v)).includes('wrong partner'), 'STORNO block should give the reason');
    });
  });

  await run('7 stored tare OS-ST 9 at 38000 kg', async () => {
    await driveTo(38000);
    await page.fill('#plate', 'OS-ST 9');
    await page.waitForFunction(() => !document.querySelector('#mode-stored-tare').disabled);
    await page.click('#mode-stored-tare');
    assert(/stored tare/i.test(await text('#first-weighing')), 'button should say "Weigh with stored tare"');
    const { body } = await clickFor('#first-weighing', 'POST', '/api/v1/tickets', 201);
    t3 = body;
    assert(t3.state === 'complete', `stored-tare ticket is ${t3.state}, expected complete`);
    await page.locator(recentRow(t3.ticket_no)).waitFor({ state: 'visible' });
    await withTicketView(t3.ticket_no, async (v) => {
      await waitText('#net', '24000 kg', v);
      const body2 = await v.locator('body').innerText();
      assert(/stored tare/i.test(body2), 'ticket should mention the stored tare');
      assert(body2.includes('PT'), 'stored tare row should be marked PT');
    });
  });

  await run('8 manual first weighing OS-M 5', async () => {
    await driveOff();
    await page.fill('#plate', 'OS-M 5');
    await page.click('#mode-manual');
    await page.locator('#manual-weight').waitFor({ state: 'visible' });
    await page.fill('#manual-weight', '30000');
    await page.fill('#manual-reason', 'scale defect');
    const { body } = await clickFor('#first-weighing', 'POST', '/api/v1/tickets', 201);
    t4 = body;
    assert(t4.state === 'open', `manual ticket is ${t4.state}`);
    await page.locator(openRow(t4.ticket_no)).waitFor({ state: 'visible' });
    await withTicketView(t4.ticket_no, async (v) => {
      const body2 = await v.locator('body').innerText();
      assert(body2.includes('not legal for trade'), 'manual ticket should say "not legal for trade"');
      assert(body2.includes('30000 kg'), 'manual weight shown');
    });
  });

  await run('9 quality on the manual ticket', async () => {
    await page.click(`${openRow(t4.ticket_no)} .quality`);
    await page.locator('#q-moisture').waitFor({ state: 'visible' });
    await page.fill('#q-moisture', '14.5');
    const { body } = await clickFor('#quality-confirm', 'POST', `/tickets/${t4.ticket_no}/quality`, 200);
    assert((body.quality || []).some((q) => q.moisture_percent === 14.5), 'agent did not store moisture 14.5');
    await withTicketView(t4.ticket_no, async (v) => {
      assert((await v.locator('#ticket').innerText()).includes('14.5'), 'print view should show 14.5');
    });
  });

  await run('10 quality from the grain analyzer', async () => {
    await page.click(`${openRow(t4.ticket_no)} .quality`);
    const read = page.locator('#quality-from-device');
    await read.waitFor({ state: 'visible' })
      .catch(() => { throw new Error('no #quality-from-device button: does the agent list an analyzer (GET /api/v1/analyzers)?'); });
    assert(await read.getAttribute('data-device') === 'sim-analyzer-1', `data-device is ${await read.getAttribute('data-device')}`);
    assert((await read.innerText()).includes('Read from analyzer sim-analyzer-1'), `button reads "${await read.innerText()}"`);
    const { body } = await clickFor('#quality-from-device', 'POST', `/tickets/${t4.ticket_no}/quality`, 200);
    const q = (body.quality || []).find((x) => x.source === 'device');
    assert(q && q.device_id === 'sim-analyzer-1' && q.moisture_percent === 14.2,
      `agent stored no analyzer reading: ${JSON.stringify(body.quality)}`);
    await page.locator('#quality-dialog').waitFor({ state: 'hidden' });
    await page.waitForFunction(() => !document.querySelector('#success').hidden
      && document.querySelector('#success-text').textContent.includes('sim-analyzer-1'))
      .catch(async () => { throw new Error(`success banner says "${await text('#success')}"`); });
    await withTicketView(t4.ticket_no, async (v) => {
      const row = v.locator('.quality tr[data-source="device"]');
      await row.waitFor();
      const cells = await row.innerText();
      for (const s of ['14.2', '76.5', '12.1', 'sim-analyzer-1']) assert(cells.includes(s), `device quality row lacks "${s}": "${cells}"`);
      const manual = await v.locator('.quality tr[data-source="manual"]').innerText();
      assert(manual.includes('14.5') && /manual/i.test(manual), `manual quality row reads "${manual}"`);
    });
  });

  await run('11 site lights', async () => {
    for (const id of ['#entry-light', '#exit-light']) {
      await page.waitForFunction((s) => ['red', 'green'].includes(document.querySelector(s)?.dataset.colour), id, { timeout: WAIT_MS })
        .catch(async () => {
          throw new Error(`${id} data-colour is ${JSON.stringify(await page.getAttribute(id, 'data-colour'))}`);
        });
    }
  });

  await run('12 simulated position sensors', async () => {
    const sim = await (await page.request.get(`${BASE}/api/v1/simulation`)).json();
    const sensors = (sim.pins || []).filter((p) => p.startsWith('sensor.')).map((p) => p.slice(7));
    const buttons = page.locator('#sim .sim-sensor');
    if (!sensors.length) {
      assert(await buttons.count() === 0, 'sensor buttons shown although the agent has no sensors');
      log('     no simulated sensors on this agent: nothing to toggle');
      return;
    }
    await buttons.first().waitFor();
    const shown = await buttons.evaluateAll((bs) => bs.map((b) => b.dataset.sensor));
    assert(JSON.stringify(shown) === JSON.stringify(sensors), `sensor buttons ${JSON.stringify(shown)}, pins ${JSON.stringify(sensors)}`);
    const name = sensors[0];
    const b = `#sim .sim-sensor[data-sensor="${name}"]`;
    const blockedOnSite = () => page.waitForFunction((n) => document.querySelector('#site-positioned')?.textContent.includes(n), name);
    for (const blocked of [true, false]) {
      const res = await clickFor(b, 'PUT', `/simulation/sensors/${name}`);
      assert(res.status === 204, `PUT sensor ${name} answered ${res.status}`);
      await page.waitForFunction(([s, want]) => document.querySelector(s)?.getAttribute('aria-pressed') === want, [b, String(blocked)]);
      if (blocked) await blockedOnSite();
    }
  });

  await t.checkClean();

  await driveOff().catch(() => {}); // leave the simulated bridge empty
  await t.finish();
  console.log(`${t.steps} passed, 0 failed`);
}

main().catch((e) => t.fail(e && e.message ? e.message : String(e)));
