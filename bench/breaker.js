'use strict';

/**
 * Breaker benchmark: what a closed circuit breaker (and a bulkhead) costs on a route, against
 * the bare route, in one run with the settings of bench/proxy.js (closed loop, 50 connections,
 * warm-up, interleaved reps, medians, CPU µs per request of the proxy child).
 *
 *   npm run build && node bench/breaker.js
 *
 * The upstream runs in one child, each proxy in a child of its own; autocannon runs in this
 * process. bench/README.md ("Breaker benchmark") describes the proxies and the output.
 */

const http = require('node:http');
const path = require('node:path');
const lib = require('./lib');

const SELF = path.join(__dirname, 'breaker.js');
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';

/** Express 5 with app.use('/api', gateway): one service `api` on one target; `service` keys added. */
async function gatewayUse(target, service, top = {}) {
  const express = require('express');
  const gateway = lib.gatewayModule().createGateway({
    services: { api: { targets: [target], ...service } },
    routes: [{ path: '/**', service: 'api' }],
    ...top,
  });
  const app = express();
  app.use('/api', gateway);
  return {
    servers: [await lib.listenLocal(http.createServer(app))],
    close: () => gateway.close(),
    stats: () => {
      const b = gateway.breaker && gateway.breaker('api');
      return { state: b ? b.state.kind : undefined };
    },
  };
}

/** The proxies, in the order they run and are reported; `make(url)` runs in the child. */
const PROXIES = {
  bare: {
    what: 'no breaker (the reference)',
    make: (url) => gatewayUse(url, {}),
  },
  breaker: {
    what: 'breaker { failureThreshold: 5 }, closed',
    make: (url) => gatewayUse(url, { breaker: { failureThreshold: 5 } }),
  },
  'breaker-rate': {
    what: 'breaker { failureRate: 0.5, windowMs: 10000 }, closed',
    make: (url) => gatewayUse(url, { breaker: { failureRate: 0.5, windowMs: 10_000 } }),
  },
  'breaker-shared': {
    what: `breaker shared through Redis (${REDIS_URL}), closed`,
    needsRedis: true,
    make: (url) => gatewayUse(url, { breaker: { failureThreshold: 5 } }, { redis: REDIS_URL }),
  },
  bulkhead: {
    what: 'bulkhead { maxConcurrent: 1000 }',
    make: (url) => gatewayUse(url, { bulkhead: { maxConcurrent: 1000 } }),
  },
};
const REFERENCE = 'bare';

async function main() {
  return lib.featureBench({
    bench: 'breaker',
    self: SELF,
    proxies: PROXIES,
    reference: REFERENCE,
    skip: async (names) => {
      const need = names.filter((n) => PROXIES[n].needsRedis);
      if (need.length === 0 || (await lib.redisAnswers(REDIS_URL))) return {};
      return Object.fromEntries(need.map((n) => [n, `no Redis at ${REDIS_URL}`]));
    },
  });
}

lib.featureMain(PROXIES, main);
