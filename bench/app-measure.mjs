// bench/app.sh's measurements: time to the page's data (the /api/billing
// payload, fetched and read in full) on a first load and on a refresh.
//
//   node bench/app-measure.mjs http URL RUNS          one JSON line: first_ms, refresh_ms[]
//   node bench/app-measure.mjs browser PAGE_URL RUNS  the same, in chromium: the page's own
//                                                      figure (fetch + parse, data-ms) and
//                                                      navigation start to data shown
//
// "http": the first request is the first the server answers since it
// started (its pool connects, the query is planned); refreshes are the next
// RUNS requests, one at a time. "browser": a new page load (first), then RUNS
// clicks on Refresh, each waited for until the new data is shown.
import { createRequire } from 'node:module';

const [mode, url, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);

async function timed(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

if (mode === 'http') {
  const get = async () => {
    const res = await fetch(url, { cache: 'no-store' });
    const body = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${body.slice(0, 200)}`);
    return body.length;
  };
  let bytes = 0;
  const first = await timed(async () => { bytes = await get(); });
  const refresh = [];
  for (let i = 0; i < runs; i++) refresh.push(await timed(get));
  console.log(JSON.stringify({ first_ms: first, refresh_ms: refresh, bytes }));
} else if (mode === 'browser') {
  const require = createRequire(process.env.APP_DIR + '/package.json');
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const shown = async (n) => {
      await page.waitForSelector(`[data-testid="billing-data"][data-loads="${n}"]`, { timeout: 600_000 });
      return Number(await page.getAttribute('[data-testid="billing-data"]', 'data-ms'));
    };
    let firstFetch = 0;
    const firstShown = await timed(async () => { await page.goto(url); firstFetch = await shown(1); });
    const refreshFetch = [];
    const refreshShown = [];
    for (let i = 0; i < runs; i++) {
      refreshShown.push(await timed(async () => {
        await page.click('[data-testid="refresh"]');
        refreshFetch.push(await shown(i + 2));
      }));
    }
    console.log(JSON.stringify({ first_fetch_ms: firstFetch, first_shown_ms: firstShown,
                                 refresh_fetch_ms: refreshFetch, refresh_shown_ms: refreshShown }));
  } finally {
    await browser.close();
  }
} else {
  console.error('usage: node bench/app-measure.mjs http|browser URL RUNS');
  process.exit(2);
}
