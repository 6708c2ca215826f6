// A local stand-in for a Slack incoming webhook, for test/scripts/alert_delivery.sh.
//
//   node webhook_server.js PORT LOG [DELAY_MS]
//
// Listens on 127.0.0.1:PORT (0: any free port), answers every POST with
// 200 "ok" after DELAY_MS (default 0), and appends one JSON line per request
// to LOG: {"key": <Idempotency-Key header>, "text": <the body's text>}.
// Prints "listening PORT" once it accepts connections.
'use strict';
const fs = require('node:fs');
const http = require('node:http');

const [port, logFile, delay = '0'] = process.argv.slice(2);
const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
        let text = null;
        try { text = JSON.parse(body).text; } catch { /* recorded as null */ }
        fs.appendFileSync(logFile, JSON.stringify({ key: req.headers['idempotency-key'] ?? null, text }) + '\n');
        setTimeout(() => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); }, Number(delay));
    });
});
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
