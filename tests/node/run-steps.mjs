// Runs a browser plan for Omnigate's end-to-end tests and prints what it saw
// as JSON on stdout. The Rust test decides pass or fail from that.
//
// Plan (JSON on stdin):
// { "artifacts": "dir for screenshots", "hostRules": "MAP *.test 127.0.0.1",
//   "steps": [ {"goto": url}, {"fill": [selector, value]}, {"click": selector},
//              {"waitText": text}, {"screenshot": name}, {"observe": true},
//              {"mailLink": {"dir": sink dir, "to": address, "path": "/_auth/verify"}},
//              {"axe": true} ] }
// axe runs the axe-core accessibility engine (WCAG 2 A and AA rules) on the
// page and reports its violations as `axe: [{id, impact, help, nodes}]`.
// mailLink waits (15 s) for a mail to `to` in the SMTP sink's folder holding
// a link with that path, and opens the link of the newest such mail.
// Every step answers { url, status, title, text, lang, headings, checked,
// images, screenshot? }.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
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
  // The gateway's pages forbid scripts (CSP); axe is injected by the test only.
  bypassCSP: true,
  acceptDownloads: true,
  viewport: plan.viewport?.width
    ? { width: plan.viewport.width, height: plan.viewport.height }
    : { width: 1280, height: 800 },
  // `{"locale": "de-DE"}` in the viewport: the browser's language (Accept-Language).
  locale: plan.viewport?.locale || 'en-US',
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
    // Wider than the viewport: the page would scroll sideways on a phone.
    overflow: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth).catch(() => null),
    // Ticked boxes (by id, else value) and whether each image loaded.
    checked: await page.$$eval('input[type=checkbox]:checked', (els) => els.map((e) => e.id || e.value)).catch(() => []),
    images: await page.$$eval('img', (els) => els.map((i) => ({ alt: i.alt, loaded: i.complete && i.naturalWidth > 0 }))).catch(() => []),
    ...extra,
  };
}

// Quoted-printable soft breaks and escapes undone (what mail clients do).
function unQuote(raw) {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

async function mailLink({ dir, to, path }) {
  const deadline = Date.now() + 15000;
  const pattern = new RegExp(`https?://[^\\s"<>]*${path.replace(/[/.?]/g, '\\$&')}[^\\s"<>]*`);
  while (Date.now() < deadline) {
    const files = readdirSync(dir).filter((f) => f.endsWith('.eml'))
      .sort((a, b) => parseInt(b) - parseInt(a));
    for (const f of files) {
      const text = unQuote(readFileSync(join(dir, f), 'utf8'));
      if (!text.startsWith(`X-Envelope-To: ${to}`)) continue;
      const m = text.match(pattern);
      if (m) return m[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail to ${to} with a ${path} link within 15 s`);
}

const results = [];
let error = null;
try {
  for (const step of plan.steps) {
    // A step may combine actions; they run in this order.
    if (step.mailLink) step.goto = await mailLink(step.mailLink);
    if (step.goto) await page.goto(step.goto, { waitUntil: 'load', timeout: 15000 });
    if (step.fill) await page.fill(step.fill[0], step.fill[1], { timeout: 10000 });
    if (step.click) {
      await page.click(step.click, { timeout: 10000 });
      await page.waitForLoadState('load');
    }
    if (step.sleep) await new Promise((r) => setTimeout(r, step.sleep));
    if (step.reloadUntil) {
      // A page that changes on the server's time (an export being gathered).
      const deadline = Date.now() + 20000;
      while (!(await page.getByText(step.reloadUntil).count())) {
        if (Date.now() > deadline) throw new Error(`"${step.reloadUntil}" did not appear within 20 s`);
        await new Promise((r) => setTimeout(r, 300));
        await page.reload({ waitUntil: 'load' });
      }
    }
    let download;
    if (step.download) {
      const [d] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), page.click(step.download)]);
      const path = join(plan.artifacts, d.suggestedFilename());
      await d.saveAs(path);
      const text = readFileSync(path, 'utf8');
      download = { name: d.suggestedFilename(), size: text.length, text: text.slice(0, 1 << 20) };
    }
    if (step.waitText) await page.getByText(step.waitText).first().waitFor({ timeout: 15000 });
    let shot;
    if (step.screenshot) {
      shot = join(plan.artifacts, `${step.screenshot}.png`);
      await page.screenshot({ path: shot, fullPage: true });
    }
    const cookies = step.cookies ? await context.cookies() : undefined;
    let axe;
    if (step.axe) {
      await page.addScriptTag({ path: join(import.meta.dirname, 'node_modules/axe-core/axe.min.js') });
      axe = await page.evaluate(async () => {
        const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
      });
    }
    results.push(await observe({ step, screenshot: shot, cookies, axe, download }));
  }
} catch (e) {
  error = String(e && e.message || e);
  try { await page.screenshot({ path: join(plan.artifacts, 'failure.png'), fullPage: true }); } catch {}
  results.push(await observe({ error }).catch(() => ({ error })));
}
await context.close();
process.stdout.write(JSON.stringify({ ok: error === null, error, results }));
process.exit(0);
