// End-to-end test of the /billing page in a real browser: Debian's chromium,
// driven headless by playwright-core (no browser is downloaded), against the
// app's production server (next build && next start), whose database holds
// e2e/data.sql's known data. test/scripts/app_e2e.sh sets it all up.
//
//   BASE_URL=http://127.0.0.1:PORT OUT_DIR=DIR [CHROMIUM=/usr/bin/chromium] node e2e/billing.e2e.mjs
//
// Connects to the same database with the usual PG* variables. Checks:
//  1. every number on the page equals the SQL result (billing.dashboard(),
//     billing.forecast(), the budgets' status and billing.alerts, read at the
//     payload's own now(), money rounded in SQL with round(x, 2)), and a few
//     figures worked out by hand in e2e/data.sql;
//  2. usage that crosses the budget, merged (what pg_cron's merge job does),
//     shows the alerts after a click on Refresh;
//  3. the customers table (billing.costs for the month, per customer, and
//     billing.statements), the statement's CSV download equal byte for byte
//     to psql's COPY (SELECT * FROM billing.export_statement_lines(...)) TO
//     STDOUT WITH CSV HEADER, and the printable statement page against
//     billing.statements / statement_lines, printed with page.pdf();
//  4. the loading and error states;
//  5. a screenshot of the page and the statement's PDF and CSV, saved in
//     OUT_DIR (the paths are printed).
// Prints "N passed, N failed"; exit status 1 on any failure.
import { chromium } from 'playwright-core';
import pg from 'pg';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const BASE_URL = process.env.BASE_URL ?? 'http://127.0.0.1:3000';
const OUT_DIR = path.resolve(process.env.OUT_DIR ?? 'test-output');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let passed = 0;
let failed = 0;
function check(what, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g === w) {
    passed++;
  } else {
    failed++;
    console.log(`FAIL: ${what}\n  got:  ${g}\n  want: ${w}`);
  }
}

// Money and counts as the page must show them, formatted by PostgreSQL.
const MONEY = (x) => `CASE WHEN ${x} IS NULL THEN 'n/a'
  ELSE CASE WHEN round(${x}, 2) < 0 THEN '-' ELSE '' END || '$' || to_char(abs(round(${x}, 2)), 'FM999,999,999,999,990.00') END`;
const COUNT = (x) => `to_char(round(${x}), 'FM999,999,999,999,999,990')`;

async function expected(db, at) {
  const q = async (sql, params = []) => (await db.query(sql, params)).rows;
  const [d] = await q(`SELECT billing.dashboard(6, 50, $1::timestamptz) AS d`, [at]);
  const j = `(SELECT billing.dashboard(6, 50, $1::timestamptz) AS d) AS x`;
  const [cards] = await q(`
    SELECT ${MONEY("(d -> 'openai' ->> 'cost')::numeric")} AS openai_cost,
           ${COUNT("(d -> 'openai' ->> 'tokens')::numeric")} AS openai_tokens,
           ${COUNT("(d -> 'openai' ->> 'messages')::numeric")} AS openai_messages,
           ${MONEY("(d -> 'aws' ->> 'cost')::numeric")} AS aws_cost,
           ${COUNT("(d -> 'aws' ->> 'emails')::numeric")} AS aws_emails,
           ${MONEY("(d ->> 'total_cost')::numeric")} AS total
      FROM ${j}`, [at]);
  const conversations = await q(`
    SELECT c.value ->> 'conversation_id' AS id, coalesce(t.title, 'Untitled') AS title,
           ${COUNT("(c.value ->> 'messages')::numeric")} AS messages,
           ${COUNT("(c.value ->> 'tokens')::numeric")} AS tokens,
           ${MONEY("(c.value ->> 'cost')::numeric")} AS cost
      FROM ${j} CROSS JOIN LATERAL jsonb_array_elements(x.d -> 'conversations') WITH ORDINALITY AS c(value, ord)
      LEFT JOIN public.conversations AS t ON t.id::text = c.value ->> 'conversation_id'
     ORDER BY c.ord`, [at]);
  const history = await q(`
    SELECT h ->> 'month' AS month, ${MONEY("(h ->> 'openai')::numeric")} AS openai,
           ${MONEY("(h ->> 'aws')::numeric")} AS aws, ${MONEY("(h ->> 'total')::numeric")} AS total
      FROM ${j} CROSS JOIN LATERAL jsonb_array_elements(x.d -> 'history') AS h ORDER BY 1`, [at]);
  const forecast = Object.fromEntries((await q(
    `SELECT source, ${MONEY('forecast')} AS forecast FROM billing.forecast($1::timestamptz)`, [at]))
    .map((r) => [r.source, r.forecast]));
  const budgets = await q(`
    SELECT budget, state, ${MONEY('spent')} AS spent, ${MONEY('amount')} AS amount,
           to_char(round(percent, 1), 'FM999999990.0') || '%' AS percent, ${MONEY('forecast')} AS forecast
      FROM billing._budget_status(billing.month_of($1::timestamptz), $1::timestamptz) ORDER BY budget`, [at]);
  const alerts = await q(`
    SELECT budget, round(threshold)::text || '%' AS threshold, ${MONEY('spent')} AS spent, ${MONEY('amount')} AS amount
      FROM billing.alerts ORDER BY fired_at DESC, id DESC LIMIT 20`);
  // Per customer, the month's costs (billing.costs over the month of `at`)
  // and its statements, newest first.
  const customers = await q(`
    SELECT c.customer, ${MONEY('c.openai')} AS openai, ${MONEY('c.aws')} AS aws, ${MONEY('c.total')} AS total,
           coalesce((SELECT string_agg(s.number || ' ' || ${MONEY('s.total')}, ', ' ORDER BY s.month DESC, s.id DESC)
                       FROM billing.statements AS s WHERE s.customer = c.customer), '') AS statements
      FROM (SELECT customer, sum(openai_cost) AS openai, sum(aws_cost) AS aws, sum(total_cost) AS total
              FROM billing.costs(billing.month_start(billing.month_of($1::timestamptz)),
                                 billing.month_end(billing.month_of($1::timestamptz)))
             WHERE customer IS NOT NULL GROUP BY customer) AS c
     ORDER BY c.total DESC, c.customer`, [at]);
  return { d: d.d, cards, conversations, history, forecast, budgets, alerts, customers };
}

async function shown(page) {
  return page.evaluate(() => {
    const t = (el, id) => el.querySelector(`[data-testid="${id}"]`)?.textContent?.trim() ?? null;
    const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
    const root = document.querySelector('[data-testid="billing-data"]');
    return {
      generatedAt: root.getAttribute('data-generated-at'),
      loads: Number(root.getAttribute('data-loads')),
      cards: {
        openai_cost: t(document, 'card-openai-cost'),
        openai_tokens: t(document, 'card-openai-tokens'),
        openai_messages: t(document, 'card-openai-messages'),
        aws_cost: t(document, 'card-aws-cost'),
        aws_emails: t(document, 'card-aws-emails'),
        total: t(document, 'card-total-cost'),
      },
      conversations: all('conversation-row').map((r) => ({
        id: r.getAttribute('data-conversation-id'),
        title: t(r, 'conversation-title'),
        messages: t(r, 'conversation-messages'),
        tokens: t(r, 'conversation-tokens'),
        cost: t(r, 'conversation-cost'),
      })),
      history: all('history-row').map((r) => ({
        month: r.getAttribute('data-month'),
        openai: t(r, 'history-openai'),
        aws: t(r, 'history-aws'),
        total: t(r, 'history-total'),
      })),
      forecast: {
        openai: t(document, 'forecast-openai'),
        aws: t(document, 'forecast-aws'),
        total: t(document, 'forecast-total'),
      },
      budgets: all('budgets').flatMap((b) => [...b.querySelectorAll('li')]).map((li) => ({
        budget: li.getAttribute('data-testid').replace(/^budget-/, ''),
        state: t(li, 'budget-state'),
        spent: t(li, 'budget-spent'),
        amount: t(li, 'budget-amount'),
        percent: t(li, 'budget-percent'),
        forecast: t(li, 'budget-forecast'),
      })),
      alerts: all('alert').map((a) => ({
        budget: a.querySelector('.font-medium')?.textContent?.trim() ?? null,
        threshold: t(a, 'alert-threshold'),
        spent: t(a, 'alert-spent'),
        amount: t(a, 'alert-amount'),
      })),
      customers: all('customer-row').map((r) => ({
        customer: r.getAttribute('data-customer'),
        openai: t(r, 'customer-openai'),
        aws: t(r, 'customer-aws'),
        total: t(r, 'customer-total'),
        statements: [...r.querySelectorAll('[data-testid="statement"]')]
          .map((s) => `${s.getAttribute('data-number')} ${t(s, 'statement-total')}`).join(', '),
      })),
      chartBars: document.querySelectorAll('[data-testid="history-chart"] .recharts-bar-rectangle').length,
    };
  });
}

function compareAll(label, page, sql) {
  check(`${label}: cards`, page.cards, sql.cards);
  check(`${label}: conversations (order, titles, figures)`, page.conversations, sql.conversations);
  check(`${label}: history`, page.history, sql.history);
  check(`${label}: forecast`, page.forecast, { openai: sql.forecast.openai, aws: sql.forecast.aws, total: sql.forecast.total });
  check(`${label}: budgets`, page.budgets, sql.budgets);
  check(`${label}: alerts`, page.alerts, sql.alerts);
  check(`${label}: customers (order, costs, statements)`, page.customers, sql.customers);
}

// psql's own CSV export of a query (the bytes COPY writes).
const copyCsv = (sql) =>
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `COPY (${sql}) TO STDOUT WITH CSV HEADER`]);

const db = new pg.Client();
await db.connect();
fs.mkdirSync(OUT_DIR, { recursive: true });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) consoleErrors.push(`${r.status()} ${r.url()}`); });

  // 1. First load: every number equals SQL's.
  await page.goto(`${BASE_URL}/billing`);
  await page.waitForSelector('[data-testid="billing-data"][data-loads="1"]', { timeout: 60_000 });
  let got = await shown(page);
  let want = await expected(db, got.generatedAt);
  compareAll('first load', got, want);
  // By hand (e2e/data.sql): 1.005 shows as $1.01 (a double's toFixed(2) says $1.00).
  check('by hand: OpenAI card 1.896747523084 -> $1.90', got.cards.openai_cost, '$1.90');
  check('by hand: tokens 1000 + 10 + 7 x 1,001,000', got.cards.openai_tokens, '7,008,010');
  check('by hand: AWS 1234 e-mails x 0.0001 = 0.1234', [got.cards.aws_cost, got.cards.aws_emails], ['$0.12', '1,234']);
  check('by hand: total 2.020147523084 -> $2.02', got.cards.total, '$2.02');
  check('by hand: conversations by cost, titles from public.conversations',
        got.conversations.map((c) => [c.title, c.cost]),
        [['Quarterly report', '$1.01'], ['Travel plans', '$0.88'], ['Untitled', '$0.01']]);
  check('by hand: 5 earlier months of 2000 x 1005 / 1e6 = 2.01', got.history.slice(0, 5).map((h) => h.openai),
        ['$2.01', '$2.01', '$2.01', '$2.01', '$2.01']);
  check('by hand: budget monthly ok, 2.02 of 5.00 (40.4%)',
        [got.budgets[0]?.state, got.budgets[0]?.spent, got.budgets[0]?.amount, got.budgets[0]?.percent],
        ['ok', '$2.02', '$5.00', '40.4%']);
  check('no alert yet', got.alerts.length, 0);
  // Last month's statement (e2e/data.sql): acme, 2000 x 1005 / 1e6 + 500 x 0.0001 = 2.06.
  const [{ last_month: lastMonth, number }] = (await db.query(
    `SELECT to_char(billing.month_of(now()) - interval '1 month', 'YYYYMM') AS last_month,
            to_char(billing.month_of(now()) - interval '1 month', 'YYYYMM') || '-000001' AS number`)).rows;
  check('by hand: customers by total, per customer OpenAI, AWS, total (1.005 -> $1.01 twice)', got.customers, [
    { customer: 'globex', openai: '$0.88', aws: '$0.12', total: '$1.01', statements: '' },
    { customer: 'acme', openai: '$1.01', aws: '$0.00', total: '$1.01', statements: `${number} $2.06` },
  ]);
  check('the chart draws 6 months x 2 stacked bars (zero-height ones left out)', got.chartBars >= 6, true);

  // 2. Usage that crosses the budget: 4 replies of 1000 e2e-tie prompt tokens,
  // 4 x 1.005 = 4.02 USD: spent 2.020147523084 + 4.02 = 6.040147523084 >= 5
  // (both thresholds, 80 % = 4 and 100 % = 5). billing.merge() is what the
  // pg_cron job (or, without pg_cron, the app) runs every minute.
  await db.query(`INSERT INTO public.messages (conversation_id, role, content, data)
                  SELECT '00000000-0000-0000-0000-000000000001', 'assistant', 'more ' || k,
                         '{"model": "e2e-tie", "prompt_tokens": 1000, "completion_tokens": 0}'
                    FROM generate_series(1, 4) AS k`);
  await db.query('SELECT billing.merge()');
  await page.click('[data-testid="refresh"]');
  await page.waitForSelector('[data-testid="billing-data"][data-loads="2"]', { timeout: 60_000 });
  got = await shown(page);
  want = await expected(db, got.generatedAt);
  compareAll('after refresh', got, want);
  check('by hand: the alerts after refresh (100 % then 80 %, both at $6.04 of $5.00)', got.alerts, [
    { budget: 'monthly', threshold: '100%', spent: '$6.04', amount: '$5.00' },
    { budget: 'monthly', threshold: '80%', spent: '$6.04', amount: '$5.00' },
  ]);
  check('by hand: the budget is exceeded', got.budgets[0]?.state, 'exceeded');
  check('the alert banner is shown', await page.isVisible('[data-testid="alerts"]'), true);
  check('by hand: acme after the 4 replies: 1.005 + 4.02 = 5.025 -> $5.03, first',
        got.customers.map((c) => [c.customer, c.total]), [['acme', '$5.03'], ['globex', '$1.01']]);

  // 3. The statement: its CSV download is the SQL export, byte for byte.
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 30_000 }),
    page.click(`[data-testid="statement"][data-number="${number}"] [data-testid="statement-csv"]`),
  ]);
  const csvPath = path.join(OUT_DIR, `statement-${number}.csv`);
  await download.saveAs(csvPath);
  const csv = fs.readFileSync(csvPath);
  const sqlCsv = copyCsv(`SELECT * FROM billing.export_statement_lines('${lastMonth.slice(0, 4)}-${lastMonth.slice(4)}-01') ` +
                         `WHERE number = '${number}'`);
  check('the CSV download equals the SQL export byte for byte', csv.equals(sqlCsv), true);
  if (!csv.equals(sqlCsv)) console.log(`  download:\n${csv}\n  SQL export:\n${sqlCsv}`);
  check('its file name', download.suggestedFilename(), `statement-${number}.csv`);
  check('by hand: the CSV has a header and 2 lines (ses 500 x 0.0001 = 0.05, e2e-tie 2000 x 0.001005 = 2.01)',
        csv.toString().trim().split('\n').slice(1).map((l) => l.split(',').slice(8, 11).concat(l.split(',').at(-1))),
        [['ses', 'email', '500', '0.05'], ['e2e-tie', 'input tokens', '2000', '2.01']]);
  console.log(`statement CSV: ${csvPath}`);
  const missing = await fetch(`${BASE_URL}/api/billing/statements/209901-999999`);
  check('no such statement: 404', missing.status, 404);

  // The printable statement page, against billing.statements and its lines.
  const sheet = await context.newPage();
  await sheet.goto(`${BASE_URL}/billing/statements/${number}`);
  await sheet.waitForSelector('[data-testid="statement-page"]', { timeout: 60_000 });
  const onSheet = await sheet.evaluate(() => {
    const t = (id) => document.querySelector(`[data-testid="${id}"]`)?.textContent?.trim() ?? null;
    return {
      title: document.querySelector('h1')?.textContent?.trim(),
      customer: t('statement-customer'),
      usage: t('statement-usage-total'),
      adjustments: t('statement-adjustments-total'),
      total: t('statement-total'),
      lines: [...document.querySelectorAll('[data-testid="statement-line"]')].map((l) => [
        l.getAttribute('data-line'),
        l.querySelector('[data-testid="line-quantity"]').textContent.trim(),
        l.querySelector('[data-testid="line-unit-price"]').textContent.trim(),
        l.querySelector('[data-testid="line-price"]').textContent.trim(),
        l.querySelector('[data-testid="line-amount"]').textContent.trim(),
      ]),
    };
  });
  const [sqlStatement] = (await db.query(`
    SELECT 'Statement ' || s.number AS title, s.customer, ${MONEY('s.usage_total')} AS usage,
           ${MONEY('s.adjustments_total')} AS adjustments, ${MONEY('s.total')} AS total,
           (SELECT json_agg(json_build_array(l.line::text, l.quantity::text, coalesce(l.unit_price::text, 'unpriced'),
                                             coalesce(l.price_name || ' from ' || l.price_effective_from::text, '—'),
                                             ${MONEY('l.amount')}) ORDER BY l.line)
              FROM billing.statement_lines AS l WHERE l.statement_id = s.id) AS lines
      FROM billing.statements AS s WHERE s.number = $1`, [number])).rows;
  check('the statement page equals billing.statements and its lines', onSheet, sqlStatement);
  check('by hand: acme, $2.06', [onSheet.customer, onSheet.total], ['acme', '$2.06']);
  await sheet.emulateMedia({ media: 'print' });
  check('printed, the page hides its buttons', await sheet.isVisible('[data-testid="print"]'), false);
  await sheet.screenshot({ path: path.join(OUT_DIR, `statement-${number}.png`), fullPage: true });
  const pdfPath = path.join(OUT_DIR, `statement-${number}.pdf`);
  await sheet.pdf({ path: pdfPath, format: 'A4', printBackground: true, margin: { top: '15mm', bottom: '15mm', left: '12mm', right: '12mm' } });
  check('the statement printed as a PDF', fs.readFileSync(pdfPath).subarray(0, 5).toString(), '%PDF-');
  console.log(`statement PDF: ${pdfPath}`);
  await sheet.close();

  const shot = path.join(OUT_DIR, 'billing.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  check('no error in the browser console', consoleErrors, []);

  // 4. Loading and error states (the API answered slowly, then with an error).
  const slow = await context.newPage();
  let release;
  const held = new Promise((r) => { release = r; });
  await slow.route('**/api/billing', async (route) => { await held; await route.continue(); });
  await slow.goto(`${BASE_URL}/billing`);
  check('loading state while /api/billing is pending', await slow.isVisible('[data-testid="loading"]'), true);
  release();
  await slow.waitForSelector('[data-testid="billing-data"]', { timeout: 60_000 });
  await slow.unroute('**/api/billing');
  await slow.route('**/api/billing', (route) =>
    route.fulfill({ status: 500, contentType: 'application/json', body: '{"error": "relation \\"messages\\" does not exist"}' }));
  await slow.click('[data-testid="refresh"]');
  await slow.waitForSelector('[data-testid="error"]', { timeout: 30_000 });
  check('error state names the error', (await slow.textContent('[data-testid="error"]'))?.includes('relation "messages" does not exist'), true);
  await slow.screenshot({ path: path.join(OUT_DIR, 'billing-error.png') });
} finally {
  await browser.close();
  await db.end();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
