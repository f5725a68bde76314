'use strict';
// An existing Express 5 app that embeds Turnpike under /api.
//
// The app keeps its own routes (GET /, GET /health); everything under /api goes through the
// gateway to two small services that this file starts itself on port 0, so the example needs
// nothing but Node and the built packages (`npm install` at the repository root builds them).
//
//   node examples/embed/index.js        (PORT=3000 by default)

const http = require('node:http');
const express = require('express');
const { createGateway } = require('@turnpike/gateway');

const PORT = Number(process.env.PORT ?? 3000);

/** A tiny upstream service that answers with what it received, as JSON. */
function startService(name) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          service: name,
          method: req.method,
          url: req.url, // the path as forwarded: after stripPrefix or rewrite
          requestId: req.headers['x-request-id'],
          forwardedFor: req.headers['x-forwarded-for'],
        }),
      );
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function urlOf(server) {
  return `http://127.0.0.1:${server.address().port}`;
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function main() {
  const catalog = await startService('catalog');
  const accounts = await startService('accounts');

  // The host app as it was before the gateway: its own routes stay where they are.
  const app = express();
  app.get('/', (_req, res) => {
    res.type('text').send('The host app. The gateway is mounted at /api.\n');
  });
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });

  // The gateway: routes are relative to where it is mounted (/api).
  const gateway = createGateway({
    services: {
      catalog: { targets: [urlOf(catalog)] },
      accounts: { targets: [urlOf(accounts)], timeoutMs: 10000 },
    },
    routes: [
      // /api/catalog/books/1 → catalog sees /books/1
      { path: '/catalog/**', service: 'catalog', methods: ['GET'], stripPrefix: '/catalog' },
      // /api/accounts/42/orders → accounts sees /v2/users/42/orders
      {
        path: '/accounts/:id/orders',
        service: 'accounts',
        methods: ['GET'],
        rewrite: '/v2/users/:id/orders',
      },
    ],
  });
  app.use('/api', gateway);

  const server = http.createServer(app);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(PORT, resolve);
  });
  const base = `http://localhost:${server.address().port}`;
  console.log(`Host app with the gateway at ${base}/api. Try:`);
  console.log(`  curl ${base}/                         # the host app's own route`);
  console.log(`  curl ${base}/health                   # the host app's own route`);
  console.log(`  curl ${base}/api/catalog/books/1      # stripPrefix: catalog sees /books/1`);
  console.log(
    `  curl ${base}/api/accounts/42/orders   # rewrite: accounts sees /v2/users/42/orders`,
  );
  console.log(`  curl -i ${base}/api/nothing-here      # 404 application/problem+json`);

  let closing = false;
  async function shutdown(signal) {
    if (closing) return;
    closing = true;
    console.log(`${signal}: closing`);
    await gateway.close();
    await Promise.all([closeServer(server), closeServer(catalog), closeServer(accounts)]);
  }
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      shutdown(signal).catch((err) => {
        console.error(err);
        process.exitCode = 1;
      });
    });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
