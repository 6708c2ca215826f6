// The seed's route (route.js, steps 1-7) served over HTTP as the app would
// serve it: GET /api/billing on 127.0.0.1:PORT, a pg Pool of 5 connections
// opened on first use. For bench/app.sh, which times it beside the example
// app's one-query route.
//
//   PORT=3200 node bench/node/serve.js      (PG* variables name the database)
'use strict';

const http = require('http');
const { Pool } = require('pg');
const { seedRoute } = require('./route.js');

const pool = new Pool({ max: 5 });
const port = Number(process.env.PORT || 3200);

http.createServer(async (req, res) => {
  if (req.method !== 'GET' || req.url.split('?')[0] !== '/api/billing') {
    res.writeHead(404).end();
    return;
  }
  let client;
  try {
    client = await pool.connect();
    const { body } = await seedRoute(client, new Date());
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(err.message || err) }));
  } finally {
    if (client) client.release();
  }
}).listen(port, '127.0.0.1', () => process.stdout.write(`seed route on http://127.0.0.1:${port}/api/billing\n`));
