// Runs a browser plan for Omnigate's end-to-end tests and prints what it saw
// as JSON on stdout. The Rust test decides pass or fail from that.
//
// Plan (JSON on stdin):
// { "artifacts": "dir for screenshots", "hostRules": "MAP *.test 127.0.0.1",
//   "steps": [ {"goto": url}, {"fill": [selector, value]}, {"click": selector},
//              {"waitText": text}, {"screenshot": name}, {"observe": true} ] }
// Every step answers { url, status, title, text, lang, headings, screenshot? }.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const plan = JSON.parse(readFileSync(0, 'utf8'));
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=HttpsUpgrades', '--ignore-certificate-errors',
];
if (plan.hostRules) args.push(`--host-resolver-rules=${plan.hostRules}`);
mkdirSync(plan.artifacts, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), 'omnigate-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args,
  ignoreHTTPSErrors: true,
  viewport: plan.viewport || { width: 1280, height: 800 },
});
const page = context.pages()[0] || await context.newPage();
let lastStatus = null;
page.on('response', (r) => { if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastStatus = r.status(); });

async function observe(extra = {}) {
  return {
    url: page.url(),
    status: lastStatus,
    title: await page.title(),
    lang: await page.getAttribute('html', 'lang').catch(() => null),
    headings: await page.$$eval('h1', (hs) => hs.map((h) => h.textContent.trim())),
    text: (await page.innerText('body').catch(() => '')).slice(0, 4000),
    ...extra,
  };
}

const results = [];
let error = null;
try {
  for (const step of plan.steps) {
    // A step may combine actions; they run in this order.
    if (step.goto) await page.goto(step.goto, { waitUntil: 'load', timeout: 15000 });
    if (step.fill) await page.fill(step.fill[0], step.fill[1], { timeout: 10000 });
    if (step.click) {
      await page.click(step.click, { timeout: 10000 });
      await page.waitForLoadState('load');
    }
    if (step.waitText) await page.getByText(step.waitText).first().waitFor({ timeout: 15000 });
    let shot;
    if (step.screenshot) {
      shot = join(plan.artifacts, `${step.screenshot}.png`);
      await page.screenshot({ path: shot, fullPage: true });
    }
    const cookies = step.cookies ? await context.cookies() : undefined;
    results.push(await observe({ step, screenshot: shot, cookies }));
  }
} catch (e) {
  error = String(e && e.message || e);
  try { await page.screenshot({ path: join(plan.artifacts, 'failure.png'), fullPage: true }); } catch {}
  results.push(await observe({ error }).catch(() => ({ error })));
}
await context.close();
process.stdout.write(JSON.stringify({ ok: error === null, error, results }));
process.exit(0);
