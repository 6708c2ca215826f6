// The seed's GET /api/billing (billing-system-architecture.md, "API Layer",
// steps 1-7) ported to plain Node.js with the `pg` package, as the app would
// run it without the billing extension. Used by bench/dashboard.sh.
//
//   node bench/node/route.js [--at ISO-TIME] [--payload FILE]
//
// Connects with the usual PG* environment variables. Prints one JSON line:
//   { elapsed_ms, max_rss_kb, heap_used_kb, rows, openai_cost, payload_bytes, ... }
// elapsed_ms runs from just before the query to the serialised response (the
// connection is opened before, as a route handler's pool would have it);
// max_rss_kb is the process's peak resident set size (getrusage ru_maxrss).
//
// What it does, step by step, as the seed describes its route:
//  1. fetch the messages of the last 6 months (the current UTC month and the
//     5 before it), every column (`SELECT *`), and the owner profile;
//  2. token usage of each message: the reply's actual data.prompt_tokens /
//     data.completion_tokens, or, for an assistant reply stored without them,
//     an estimate from its text (the estimate billing documents, so that the
//     two compare: completion = ceil(chars / 4), prompt = ceil(chars / 4)
//     summed over the earlier messages of its conversation that were fetched);
//  3. OpenAI cost with the seed's PRICING constants, in floating point:
//     cost = prompt * input / 1M + completion * output / 1M. Only the two
//     names of the seed's table are known; any other name (dated snapshots
//     such as gpt-4o-2024-08-06, unknown models such as gpt-9, replies with
//     no model) is priced as gpt-4o-mini, the model the seed's app stores
//     (`model: 'gpt-4o-mini'` in "Message Storage"): the usual
//     `PRICING[model] ?? PRICING[DEFAULT_MODEL]` fallback. No effective
//     dates, no cached-input price;
//  4. AWS from the owner profile's counter: emails_sent_this_month x
//     $0.10 / 1,000 (SES; the seed has no S3 or Lambda figures to read);
//  5. group the current month's messages by conversation, top 50 by cost;
//  6. the 6-month history: OpenAI cost per month, AWS in the current month;
//  7. the JSON response (JSON.stringify, as Response.json would).
'use strict';

const { Client } = require('pg');

// The seed's table: USD per 1M tokens.
const PRICING = {
  'gpt-4o': { input: 2.5, output: 10.0 },
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
};
const DEFAULT_MODEL = 'gpt-4o-mini';
const SES_PER_1000 = 0.1;
const HISTORY_MONTHS = 6;
const TOP_CONVERSATIONS = 50;

function parseArgs(argv) {
  const args = { at: null, payload: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--at') args.at = new Date(argv[++i]);
    else if (argv[i] === '--payload') args.payload = argv[++i];
    else throw new Error(`route.js: unknown argument ${argv[i]}`);
  }
  return args;
}

// "YYYY-MM" of a time, in UTC.
function monthKey(d) {
  const m = d.getUTCMonth() + 1;
  return `${d.getUTCFullYear()}-${m < 10 ? '0' : ''}${m}`;
}

function hasUsage(data) {
  return data != null && typeof data === 'object' &&
    (data.prompt_tokens != null || data.completion_tokens != null || data.tokens != null);
}

// Steps 1-7 on a connected client, for the time `now`: the payload, its
// JSON text (the response body) and the number of messages fetched. Also
// served over HTTP by serve.js (bench/app.sh).
async function seedRoute(client, now) {
  const currentMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const historyFrom = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - (HISTORY_MONTHS - 1), 1));
  const nextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  const currentKey = monthKey(currentMonth);

  // 1. Fetch messages (last 6 months) and the owner profile.
  const { rows: messages } = await client.query(
    'SELECT * FROM messages WHERE created_at >= $1 AND created_at < $2', [historyFrom, nextMonth]);
  const { rows: profiles } = await client.query("SELECT * FROM profiles WHERE type = 'owner' LIMIT 1");

  // 2. Token usage, actual or estimated. The prompt estimate needs each
  // conversation's earlier messages, in order.
  const byConversation = new Map();
  for (const m of messages) {
    let list = byConversation.get(m.conversation_id);
    if (list === undefined) byConversation.set(m.conversation_id, (list = []));
    list.push(m);
  }
  for (const list of byConversation.values()) {
    if (!list.some((m) => m.role === 'assistant' && !hasUsage(m.data))) continue;
    list.sort((a, b) => a.created_at - b.created_at || Number(a.id) - Number(b.id));
    let chars = 0;
    for (const m of list) {
      const tokens = Math.ceil(m.content.length / 4);
      if (m.role === 'assistant' && !hasUsage(m.data)) {
        m.estimated = { prompt_tokens: chars, completion_tokens: tokens };
      }
      chars += tokens;
    }
  }

  // 3. OpenAI cost per message; per month, per conversation (current month).
  const months = new Map();
  for (let i = 0; i < HISTORY_MONTHS; i++) {
    months.set(monthKey(new Date(Date.UTC(historyFrom.getUTCFullYear(), historyFrom.getUTCMonth() + i, 1))),
      { openai: 0 });
  }
  const current = { cost: 0, tokens: 0, prompt_tokens: 0, completion_tokens: 0, messages: 0, estimated_tokens: 0 };
  const conversations = new Map();
  for (const m of messages) {
    const data = m.data ?? {};
    let prompt = 0;
    let completion = 0;
    let estimated = 0;
    if (hasUsage(data)) {
      prompt = Number(data.prompt_tokens ?? 0);
      completion = Number(data.completion_tokens ?? 0);
    } else if (m.estimated) {
      prompt = m.estimated.prompt_tokens;
      completion = m.estimated.completion_tokens;
      estimated = prompt + completion;
    }
    const pricing = PRICING[data.model] ?? PRICING[DEFAULT_MODEL];
    const cost = (prompt * pricing.input) / 1_000_000 + (completion * pricing.output) / 1_000_000;
    const key = monthKey(m.created_at);
    const month = months.get(key);
    if (month !== undefined) month.openai += cost;
    if (key !== currentKey) continue;
    const tokens = hasUsage(data) ? Number(data.tokens ?? prompt + completion) : 0;
    current.cost += cost;
    current.tokens += tokens;
    current.prompt_tokens += hasUsage(data) ? prompt : 0;
    current.completion_tokens += hasUsage(data) ? completion : 0;
    current.estimated_tokens += estimated;
    current.messages += 1;
    // 5. Group by conversation.
    let c = conversations.get(m.conversation_id);
    if (c === undefined) {
      c = { conversation_id: m.conversation_id, cost: 0, tokens: 0, messages: 0 };
      conversations.set(m.conversation_id, c);
    }
    c.cost += cost;
    c.tokens += tokens;
    c.messages += 1;
  }

  // 4. AWS from the profile's counter.
  const emails = Number(profiles[0]?.data?.emails_sent_this_month ?? 0);
  const aws = {
    cost: (emails / 1000) * SES_PER_1000,
    emails,
    breakdown: { ses: { quantity: emails, cost: (emails / 1000) * SES_PER_1000 } },
    source: 'estimate',
  };

  // 5. Top 50 conversations.
  const top = [...conversations.values()]
    .sort((a, b) => b.cost - a.cost || (a.conversation_id < b.conversation_id ? -1 : 1))
    .slice(0, TOP_CONVERSATIONS);

  // 6. History (6 months).
  const history = [...months.entries()].map(([month, v]) => {
    const awsCost = month === currentKey ? aws.cost : 0;
    return { month, openai: v.openai, aws: awsCost, total: v.openai + awsCost };
  });

  // 7. The response.
  const payload = {
    period: { start: currentMonth.toISOString(), end: nextMonth.toISOString() },
    openai: current,
    aws,
    total_cost: current.cost + aws.cost,
    conversations: top,
    history,
  };
  return { payload, body: JSON.stringify(payload), rows: messages.length, messages };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new Client();
  await client.connect();

  const start = process.hrtime.bigint();
  // (messages kept alive to the end, so heap_used_kb counts them as before)
  const { payload, body, rows, messages } = await seedRoute(client, args.at ?? new Date());
  const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
  const { openai: current, aws, conversations: top, history } = payload;

  await client.end();
  if (args.payload) require('fs').writeFileSync(args.payload, body);
  const usage = process.resourceUsage();
  process.stdout.write(JSON.stringify({
    elapsed_ms: Math.round(elapsedMs * 10) / 10,
    max_rss_kb: usage.maxRSS,
    heap_used_kb: Math.round(process.memoryUsage().heapUsed / 1024),
    rows: messages.length === rows ? rows : -1,
    payload_bytes: Buffer.byteLength(body),
    openai_cost: current.cost,
    total_cost: payload.total_cost,
    aws_cost: aws.cost,
    history: history.map((h) => [h.month, h.openai]),
    top_conversations: top.slice(0, 3).map((c) => [c.conversation_id, c.cost]),
  }) + '\n');
}

module.exports = { seedRoute };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`route.js: ${err.stack || err}\n`);
    process.exit(1);
  });
}
