'use strict';
// The bundled example gateway: `npm start` at the repository root (`npm install` builds the packages).
//
// It starts its own demo services on port 0 — "users" (two instances, balanced round-robin),
// "orders", and a WebSocket echo when the `ws` package can be resolved — and a gateway in
// front of them on a server of its own (gateway.listen(): no Express app, every request is
// the gateway's), listening on PORT (default 8080). Its routes are under /api.
//
//   PORT=8080 node examples/gateway/index.js
//   GATEWAY_SELF_TEST=1 node examples/gateway/index.js   # one request through the gateway, then exit

const http = require('node:http');
const { createGateway } = require('@turnpike/gateway');

const SELF_TEST = process.env.GATEWAY_SELF_TEST === '1';
// The self-test takes any free port unless PORT is set, so that it never clashes in CI.
const PORT = Number(process.env.PORT ?? (SELF_TEST ? 0 : 8080));

/** The `ws` package, when it can be resolved (a devDependency of this repository). */
function loadWs() {
  try {
    return require('ws');
  } catch {
    return undefined;
  }
}

/** A demo service that answers with what it received, and which instance answered. */
function startService(service, instance) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      // /orders/fail fails, to show the circuit breaker of "orders" open.
      if (service === 'orders' && req.url === '/orders/fail') res.statusCode = 503;
      res.end(
        JSON.stringify({
          service,
          instance,
          method: req.method,
          url: req.url, // the path as forwarded: after stripPrefix or rewrite
          body: Buffer.concat(chunks).toString('utf8') || undefined,
          requestId: req.headers['x-request-id'],
          forwardedFor: req.headers['x-forwarded-for'],
          // Identity headers sent by the client are removed: this stays null.
          userId: req.headers['x-user-id'] ?? null,
        }),
      );
    });
  });
  return listen(server, 0);
}

/** A WebSocket echo service on its own node:http server. */
async function startEcho(ws) {
  const server = http.createServer((_req, res) => {
    res.statusCode = 426;
    res.end('This service speaks WebSocket only.\n');
  });
  const wss = new ws.WebSocketServer({ server });
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  await listen(server, 0);
  return {
    server,
    close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      return closeServer(server);
    },
  };
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      server.off('error', reject);
      resolve(server);
    });
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

async function selfTest(base) {
  const url = `${base}/api/users/42`;
  const res = await globalThis.fetch(url, { signal: globalThis.AbortSignal.timeout(5000) });
  const text = await res.text();
  console.log(`GET ${url} → ${res.status} ${res.headers.get('content-type')}`);
  console.log(text);
  const body = JSON.parse(text);
  if (res.status !== 200 || body.service !== 'users' || body.url !== '/42') {
    throw new Error(`self-test: unexpected answer ${res.status} ${text}`);
  }
  const limit = res.headers.get('ratelimit');
  console.log(`RateLimit: ${limit}`);
  if (limit !== '"120-in-1min"; r=119; t=60') {
    throw new Error(`self-test: unexpected RateLimit header ${limit}`);
  }
  const scrape = await globalThis.fetch(`${base}/metrics`);
  const series = (await scrape.text())
    .split('\n')
    .find((l) => l.startsWith('gateway_requests_total{') && l.includes('route="users"'));
  console.log(`metrics: ${series}`);
  if (scrape.status !== 200 || series === undefined || !series.endsWith(' 1')) {
    throw new Error(`self-test: unexpected metrics ${scrape.status} ${series}`);
  }
  console.log('self-test passed');
}

async function main() {
  const ws = loadWs();
  const upstreams = [
    await startService('users', 'a'),
    await startService('users', 'b'),
    await startService('orders', '1'),
  ];
  const [usersA, usersB, orders] = upstreams;
  const echo = ws ? await startEcho(ws) : undefined;

  // The gateway sees every path as the client sent it (no mount): the routes say /api.
  const routes = [
    // /api/users/42 → users sees /42 (GET, HEAD and POST; others get 405 with Allow).
    {
      name: 'users',
      path: '/api/users/**',
      service: 'users',
      methods: ['GET', 'POST'],
      stripPrefix: '/api/users',
    },
    // A :param beats ** : /api/users/42/orders → orders sees /orders/by-user/42.
    {
      name: 'user-orders',
      path: '/api/users/:id/orders',
      service: 'orders',
      methods: ['GET'],
      rewrite: '/orders/by-user/:id',
      // On top of the gateway-wide limit: bursts of 5, then one a second, per client.
      rateLimit: {
        name: 'user-orders',
        algorithm: 'token-bucket',
        limit: 5,
        refillPerSecond: 1,
      },
    },
    // /api/orders and /api/orders/7 → orders sees /orders and /orders/7.
    { name: 'orders', path: '/api/orders/**', service: 'orders', stripPrefix: '/api' },
  ];
  const services = {
    users: { targets: [urlOf(usersA), urlOf(usersB)], balancer: 'round-robin' },
    orders: {
      targets: [urlOf(orders)],
      timeoutMs: 10000,
      // 5 failures in a row open the circuit for 10 s: the fallback answers, orders is not called.
      breaker: {
        failureThreshold: 5,
        resetTimeoutMs: 10000,
        fallback: { status: 200, body: { orders: [], fallback: true } },
      },
    },
  };
  if (echo) {
    routes.push({
      name: 'echo',
      path: '/api/ws/echo',
      service: 'echo',
      websocket: true,
      stripPrefix: '/api',
    });
    services.echo = { targets: [urlOf(echo.server)] };
  }

  const gateway = createGateway({
    services,
    routes,
    bodyLimit: 1024 * 1024,
    // Every route: 120 requests a minute per client address, counted in memory (with
    // `redis: 'redis://…'` the instances of a deployment would share one count).
    rateLimit: { limit: 120, windowMs: 60000 },
    // Prometheus series at /metrics (outside /api, so no route overlaps it) and a W3C
    // traceparent on every upstream call. On a public server, serve gateway.metrics.handler
    // on an internal port instead.
    metrics: { path: '/metrics' },
    tracing: true,
  });
  // A node:http server of the gateway's own, WebSocket upgrades included; gateway.close()
  // closes it. (Inside an existing Express app, see examples/embed.)
  const server = await gateway.listen(PORT);

  const port = server.address().port;
  const base = `http://localhost:${port}`;

  let closing = false;
  async function shutdown() {
    if (closing) return;
    closing = true;
    await gateway.close(); // its server too, with its connections
    await Promise.all([...upstreams.map(closeServer), echo ? echo.close() : undefined]);
  }

  if (SELF_TEST) {
    try {
      await selfTest(base);
    } catch (err) {
      console.error(err);
      process.exitCode = 1;
    }
    await shutdown();
    return;
  }

  const api = `${base}/api`;
  console.log(`Turnpike example gateway on ${api}`);
  console.log(`  users:  ${urlOf(usersA)}, ${urlOf(usersB)} (round-robin)`);
  console.log(`  orders: ${urlOf(orders)}`);
  if (echo) console.log(`  echo:   ${urlOf(echo.server)} (WebSocket)`);
  console.log('Try:');
  console.log(
    `  curl ${api}/users/42                  # again and again: instances a and b take turns`,
  );
  console.log(
    `  curl ${api}/users/42/orders           # :param route, rewritten to /orders/by-user/42`,
  );
  console.log(
    `  curl -i ${api}/users/42/orders        # 6 times within a second: 429 rate-limited, Retry-After: 1`,
  );
  console.log(`  curl ${api}/orders/7`);
  console.log(
    `  curl -i ${api}/orders/fail            # 503 from orders; the 6th opens the circuit: the fallback answers`,
  );
  console.log(`  curl -H 'content-type: application/json' -d '{"name":"Ada"}' ${api}/users`);
  console.log(
    `  curl -H 'X-User-Id: admin' ${api}/users/me   # identity header removed: userId null`,
  );
  console.log(
    `  curl -i ${api}/nothing-here           # 404 application/problem+json, with its traceId`,
  );
  console.log(
    `  curl ${base}/metrics                  # Prometheus series: requests by route, latency, health`,
  );
  console.log(`  curl -i -X DELETE ${api}/users/42     # 405 with Allow`);
  console.log(`  curl -i --path-as-is '${api}/users/../admin'   # 400: path policy`);
  if (echo) {
    const wsUrl = `ws://localhost:${port}/api/ws/echo`;
    console.log(
      `  node -e "const W=require('ws');const s=new W('${wsUrl}');` +
        `s.on('open',()=>s.send('hello'));s.on('message',(m)=>{console.log(String(m));s.close()})"`,
    );
  } else {
    console.log('  (the WebSocket demo is skipped: the ws package cannot be resolved)');
  }
  console.log('Ctrl+C stops it.');

  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      console.log(`${signal}: closing`);
      shutdown().catch((err) => {
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
