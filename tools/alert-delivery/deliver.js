#!/usr/bin/env node
// Delivers billing's budget alerts (README "Delivering alerts"): LISTENs on
// billing_alert, and at start, on every notification, on every reconnect and
// every --poll seconds claims the alerts that are due with
// billing.claim_alerts() (so that nothing fired while it was down is
// missed, and two programs never deliver one alert at the same time), posts
// each to a Slack incoming webhook and/or pipes it to an e-mail command,
// and marks it with billing.alert_delivered(), or with billing.alert_failed()
// and a retry time (exponential backoff) when a channel failed.
//
// Delivery is at least once: a program that delivered an alert and died
// before marking it (or whose lease ran out during a slow delivery) leaves
// it to be delivered again. The alert's id is the idempotency key: it is in
// the webhook's Idempotency-Key header and the command's ALERT_ID.
//
//   node tools/alert-delivery/deliver.js [options]
//
// Options (each also an environment variable; the option wins):
//   --webhook-url URL        ALERT_WEBHOOK_URL      Slack incoming-webhook URL
//   --email-command CMD      ALERT_EMAIL_COMMAND    run by /bin/sh with the message on stdin and
//                                                   ALERT_ID, ALERT_SUBJECT, ALERT_JSON in its environment
//   --worker NAME            ALERT_WORKER           this program's name in billing.alerts.claimed_by
//                                                   (default host:pid)
//   --batch N                ALERT_BATCH            alerts claimed at a time (default 10)
//   --lease SECONDS          ALERT_LEASE_SECONDS    how long a claim is this program's (default 60)
//   --timeout-ms MS          ALERT_TIMEOUT_MS       one webhook post or command (default 10000)
//   --retry-base-ms MS       ALERT_RETRY_BASE_MS    first retry delay (default 1000), doubled per attempt
//   --retry-max-ms MS        ALERT_RETRY_MAX_MS     longest retry delay (default 300000)
//   --poll SECONDS           ALERT_POLL_SECONDS     claim due alerts at least this often (default 30)
//   --once                                          deliver what is due now, then exit (status 1 if
//                                                   an alert failed)
// The database: DATABASE_URL, else the usual PG* variables (PGHOST, PGPORT,
// PGUSER, PGDATABASE, PGPASSWORD).
'use strict';

const os = require('node:os');
const { spawn } = require('node:child_process');
const pg = require('pg');

const OPTIONS = {
    'webhook-url': ['ALERT_WEBHOOK_URL', 'string', ''],
    'email-command': ['ALERT_EMAIL_COMMAND', 'string', ''],
    worker: ['ALERT_WORKER', 'string', `${os.hostname()}:${process.pid}`],
    batch: ['ALERT_BATCH', 'int', 10],
    lease: ['ALERT_LEASE_SECONDS', 'int', 60],
    'timeout-ms': ['ALERT_TIMEOUT_MS', 'int', 10000],
    'retry-base-ms': ['ALERT_RETRY_BASE_MS', 'int', 1000],
    'retry-max-ms': ['ALERT_RETRY_MAX_MS', 'int', 300000],
    poll: ['ALERT_POLL_SECONDS', 'int', 30],
};

function usage(message) {
    if (message) console.error(`deliver.js: ${message}`);
    console.error('usage: node deliver.js [--webhook-url URL] [--email-command CMD] [--worker NAME] [--batch N]\n' +
                  '       [--lease SECONDS] [--timeout-ms MS] [--retry-base-ms MS] [--retry-max-ms MS]\n' +
                  '       [--poll SECONDS] [--once]   (see the head of this file)');
    process.exit(2);
}

function parseConfig(argv, env) {
    const config = { once: false };
    const given = {};
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === '--once') { config.once = true; continue; }
        if (arg === '-h' || arg === '--help') usage();
        const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
        if (!m || !(m[1] in OPTIONS)) usage(`unknown option ${arg}`);
        if (m[2] !== undefined) given[m[1]] = m[2];
        else if (i + 1 < argv.length) given[m[1]] = argv[++i];
        else usage(`${arg} needs a value`);
    }
    for (const [name, [variable, type, fallback]] of Object.entries(OPTIONS)) {
        const raw = given[name] ?? env[variable];
        const key = name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
        if (raw === undefined || raw === '') { config[key] = fallback; continue; }
        if (type === 'int') {
            if (!/^[0-9]+$/.test(raw) || Number(raw) < 1) usage(`--${name} (${variable}) must be a whole number above 0, got "${raw}"`);
            config[key] = Number(raw);
        } else {
            config[key] = raw;
        }
    }
    if (!config.webhookUrl && !config.emailCommand) {
        usage('nothing to deliver to: give --webhook-url (ALERT_WEBHOOK_URL) and/or --email-command (ALERT_EMAIL_COMMAND)');
    }
    if (config.webhookUrl) {
        try { new URL(config.webhookUrl); } catch { usage(`--webhook-url is not a URL: "${config.webhookUrl}"`); }
    }
    if (config.batch > 1000) usage('--batch must be at most 1000');
    if (config.lease > 86400) usage('--lease must be at most 86400 seconds');
    if (config.lease * 1000 <= 2 * config.timeoutMs) {
        usage('--lease must be longer than twice --timeout-ms (an alert must be delivered within its lease)');
    }
    return config;
}

function log(message) {
    console.log(`${new Date().toISOString()} ${message}`);
}

// The message: Slack's incoming-webhook format (text, with a plain-text
// fallback in the same field), and the subject line of the e-mail.
function describe(alert) {
    const dollars = (x) => `$${Number(x).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 6 })}`;
    const month = String(alert.period).slice(0, 7);
    const subject = `Budget "${alert.budget}" reached ${Number(alert.threshold)}% in ${month}`;
    const text = `${subject}: ${dollars(alert.spent)} spent of ${dollars(alert.amount)}` +
                 ` (scope ${alert.scope ?? 'deleted budget'}; alert ${alert.id})`;
    return { subject, text };
}

function alertJson(alert) {
    return JSON.stringify({
        id: Number(alert.id), budget: alert.budget, scope: alert.scope, threshold: Number(alert.threshold),
        period: alert.period, spent: Number(alert.spent), amount: Number(alert.amount), fired_at: alert.fired_at,
    });
}

async function postWebhook(config, alert, message) {
    let response;
    try {
        response = await fetch(config.webhookUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': `billing-alert-${alert.id}` },
            body: JSON.stringify({ text: message.text }),
            signal: AbortSignal.timeout(config.timeoutMs),
        });
    } catch (err) {
        throw new Error(`webhook: ${err.cause?.code ?? err.name}: ${err.cause?.message ?? err.message}`);
    }
    const body = await response.text().catch(() => '');
    if (!response.ok) throw new Error(`webhook: HTTP ${response.status} ${body.slice(0, 200)}`);
}

function runEmailCommand(config, alert, message) {
    return new Promise((resolve, reject) => {
        const child = spawn('/bin/sh', ['-c', config.emailCommand], {
            stdio: ['pipe', 'ignore', 'pipe'],
            env: { ...process.env, ALERT_ID: String(alert.id), ALERT_SUBJECT: message.subject, ALERT_JSON: alertJson(alert) },
            timeout: config.timeoutMs,
        });
        let stderr = '';
        child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-500); });
        child.stdin.on('error', () => {});  // a command that does not read its input
        child.on('error', (err) => reject(new Error(`e-mail command: ${err.message}`)));
        child.on('close', (code, signal) => {
            if (code === 0) resolve();
            else reject(new Error(`e-mail command: ${signal ? `killed by ${signal}` : `exit ${code}`} ${stderr.trim()}`));
        });
        child.stdin.end(`${message.text}\n`);
    });
}

class Deliverer {
    constructor(config) {
        this.config = config;
        this.pool = new pg.Pool({ max: 1, connectionString: process.env.DATABASE_URL || undefined });
        this.pool.on('error', (err) => log(`database: ${err.message}`));
        this.listener = null;
        this.running = null;     // the drain in progress
        this.again = false;      // a wake-up arrived during it
        this.stopping = false;
        this.retryTimer = null;
        this.retryAt = Infinity;
        this.pollTimer = null;
        this.failed = 0;
    }

    retryDelay(attempts) {
        const { retryBaseMs, retryMaxMs } = this.config;
        const delay = Math.min(retryBaseMs * 2 ** Math.min(attempts - 1, 30), retryMaxMs);
        return Math.round(delay * (0.9 + Math.random() * 0.2));  // +-10%: programs do not retry in step
    }

    // Claims and delivers until nothing is due; concurrent wake-ups fold
    // into one more round.
    wake() {
        if (this.stopping) return Promise.resolve();
        if (this.running) { this.again = true; return this.running; }
        this.running = (async () => {
            try {
                do {
                    this.again = false;
                    while (!this.stopping && (await this.deliverBatch()) === this.config.batch) { /* more due */ }
                } while (this.again && !this.stopping);
            } catch (err) {
                this.failed++;
                log(`claiming alerts failed: ${err.message} (retrying)`);
                this.scheduleRetry(Date.now() + this.config.retryBaseMs);
            } finally {
                this.running = null;
            }
        })();
        return this.running;
    }

    async deliverBatch() {
        const { rows } = await this.pool.query(
            `SELECT id::text, budget, scope, threshold::text, period::text, spent::text, amount::text, fired_at, attempts
               FROM billing.claim_alerts($1, $2, make_interval(secs => $3))`,
                                               [this.config.worker, this.config.batch, this.config.lease]);
        for (const alert of rows) {
            await this.deliverOne(alert);
        }
        return rows.length;
    }

    async deliverOne(alert) {
        const message = describe(alert);
        try {
            if (this.config.webhookUrl) await postWebhook(this.config, alert, message);
            if (this.config.emailCommand) await runEmailCommand(this.config, alert, message);
        } catch (err) {
            this.failed++;
            const delay = this.retryDelay(alert.attempts);
            log(`alert ${alert.id} attempt ${alert.attempts} failed: ${err.message}; next try in ${delay} ms`);
            await this.pool.query('SELECT billing.alert_failed($1, $2, $3, make_interval(secs => $4))',
                                  [alert.id, this.config.worker, err.message, delay / 1000]);
            this.scheduleRetry(Date.now() + delay);
            return;
        }
        const { rows: [{ marked }] } = await this.pool.query('SELECT billing.alert_delivered($1, $2) AS marked',
                                                              [alert.id, this.config.worker]);
        log(`alert ${alert.id} delivered (${message.subject})${marked ? '' : ', already marked delivered by another program'}`);
    }

    scheduleRetry(at) {
        if (this.config.once || this.stopping || at >= this.retryAt) return;
        clearTimeout(this.retryTimer);
        this.retryAt = at;
        this.retryTimer = setTimeout(() => { this.retryAt = Infinity; this.wake(); }, Math.max(at - Date.now(), 0));
    }

    async listen() {
        let backoff = 500;
        while (!this.stopping) {
            const client = new pg.Client({ connectionString: process.env.DATABASE_URL || undefined });
            try {
                await client.connect();
                await client.query('LISTEN billing_alert');
                this.listener = client;
                backoff = 500;
                log(`listening on billing_alert as ${this.config.worker}`);
                const closed = new Promise((resolve) => {
                    client.on('error', (err) => { log(`listening connection: ${err.message}`); resolve(); });
                    client.on('end', resolve);
                });
                client.on('notification', () => { this.wake(); });
                this.wake();  // what fired while we were not listening
                await closed;
            } catch (err) {
                log(`cannot listen: ${err.message}; again in ${backoff} ms`);
            }
            this.listener = null;
            client.end().catch(() => {});
            if (this.stopping) break;
            await new Promise((resolve) => setTimeout(resolve, backoff));
            backoff = Math.min(backoff * 2, 30000);
        }
    }

    async stop() {
        this.stopping = true;
        clearTimeout(this.retryTimer);
        clearInterval(this.pollTimer);
        if (this.running) await this.running;  // the batch in hand is finished, not abandoned
        if (this.listener) await this.listener.end().catch(() => {});
        await this.pool.end().catch(() => {});
    }

    async run() {
        if (this.config.once) {
            await this.wake();
            await this.pool.end();
            return this.failed ? 1 : 0;
        }
        this.pollTimer = setInterval(() => this.wake(), this.config.poll * 1000);
        await this.listen();
        return 0;
    }
}

async function main() {
    const config = parseConfig(process.argv.slice(2), process.env);
    const deliverer = new Deliverer(config);
    let stopping = null;
    for (const signal of ['SIGINT', 'SIGTERM']) {
        process.on(signal, () => {
            if (stopping) return;
            log(`${signal}: finishing the alerts in hand`);
            stopping = deliverer.stop().then(() => process.exit(0));
        });
    }
    process.exitCode = await deliverer.run();
}

if (require.main === module) {
    main().catch((err) => { console.error(`deliver.js: ${err.stack ?? err}`); process.exit(1); });
}

module.exports = { parseConfig, describe, Deliverer };
