// What the browser tests share: the agent's address, logging, launching
// headless Chromium with a context that records page errors and requests
// outside the agent, steps that log and count, and on failure (or the
// overall timeout) a screenshot and the HTML of every page in
// tests/browser/artifacts/.
import { chromium } from 'playwright-core';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BASE = (process.env.EDGE_URL || 'http://127.0.0.1:18081').replace(/\/$/, '');
export const WAIT_MS = 15_000;
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');

export function log(msg) { console.log(`[${new Date().toISOString().slice(11, 23)}] ${msg}`); }

export function assert(cond, message) { if (!cond) throw new Error(message); }

export const text = async (sel, p) => (await p.locator(sel).innerText()).trim();

export async function saveArtifacts(p, name) {
  try {
    await mkdir(ARTIFACTS, { recursive: true });
    const safe = name.replace(/[^\w.-]+/g, '_').slice(0, 60);
    await p.screenshot({ path: join(ARTIFACTS, `${safe}.png`), fullPage: true });
    await writeFile(join(ARTIFACTS, `${safe}.html`), await p.content());
    log(`artifacts saved to ${ARTIFACTS}/${safe}.{png,html}`);
  } catch (e) {
    log(`could not save artifacts: ${e.message}`);
  }
}

// A test run: `run(name, fn)` steps, `fail` on the first error or after
// `overallMs`, `finish()` when every step passed.
export function testRun({ prefix, overallMs }) {
  const t = { browser: null, step: 'start', steps: 0, pageErrors: [], foreignRequests: [] };

  t.fail = async (message) => {
    console.error(`FAILED in step "${t.step}": ${message}`);
    if (t.browser) {
      for (const ctx of t.browser.contexts()) {
        for (const [i, p] of ctx.pages().entries()) await saveArtifacts(p, `${prefix}failure-${i}-${t.step}`);
      }
      await t.browser.close().catch(() => {});
    }
    console.log(`${t.steps} passed, 1 failed`);
    process.exit(1);
  };

  const overall = setTimeout(() => t.fail(`overall timeout of ${overallMs / 1000} s exceeded`), overallMs);

  t.run = async (name, fn) => {
    t.step = name;
    log(`step: ${name}`);
    await fn();
    t.steps += 1;
    log(`ok:   ${name}`);
  };

  // Headless Chromium and a page on the agent. The scale house line is bad:
  // the terminal must load nothing from outside, so such requests are noted.
  t.open = async (locale) => {
    log(`EDGE_URL=${BASE}`);
    t.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await t.browser.newContext({ viewport: { width: 1280, height: 900 }, locale });
    context.setDefaultTimeout(WAIT_MS);
    const origin = new URL(BASE).origin;
    context.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('about:')) t.foreignRequests.push(u);
    });
    const page = await context.newPage();
    page.on('pageerror', (e) => t.pageErrors.push(e.message));
    return { context, page };
  };

  t.checkClean = () => t.run('no script errors, nothing loaded from outside', async () => {
    assert(t.pageErrors.length === 0, `uncaught errors in the page: ${t.pageErrors.join(' | ')}`);
    assert(t.foreignRequests.length === 0, `requests outside the agent: ${t.foreignRequests.join(', ')}`);
  });

  t.finish = async () => {
    await t.browser.close();
    clearTimeout(overall);
    log(`all ${t.steps} steps passed`);
  };

  return t;
}
