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
const os = require('node:os');
const net = require('node:net');
const { URL } = require('node:url');
const lib = require('./lib');

const { BODY, problems, cell } = lib;
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

/** Whether Redis answers a PING at REDIS_URL (the shared proxy is skipped otherwise). */
function redisAnswers() {
  const { hostname, port } = new URL(REDIS_URL);
  return new Promise((resolve) => {
    const s = net.connect(Number(port) || 6379, hostname);
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => done(String(d).startsWith('+PONG')));
  });
}

function table(results) {
  const head = [
    'proxy',
    'what',
    'requests/s',
    '× bare rps',
    'paired × bare rps',
    'CPU µs/req',
    '× bare CPU',
    'paired × bare CPU',
    'p50 ms',
    'p99 ms',
    'proxy CPU %',
    'non-2xx / errors / mismatches',
  ];
  const rows = Object.entries(results).map(([name, r]) => {
    const none = ['—', '—', '—', '—', '—', '—', '—', '—', '—'];
    if (r.status === 'skipped') return [name, PROXIES[name].what, r.why, ...none];
    if (r.status !== 'measured') return [name, PROXIES[name].what, 'FAILED', ...none];
    return [
      name,
      PROXIES[name].what,
      cell(r.rps),
      cell(r.xBareRps, 3, '×'),
      cell(r.pairedRps, 3, '×'),
      cell(r.cpuMicrosPerRequest),
      cell(r.xBareCpu, 3, '×'),
      cell(r.pairedCpu, 3, '×'),
      cell(r.p50Ms, 1),
      cell(r.p99Ms, 1),
      cell(r.proxyCpuPercent),
      `${r.non2xx} / ${r.errors} / ${r.mismatches}`,
    ];
  });
  return lib.markdownTable([head, ...rows]);
}

async function main() {
  const s = { ...lib.commonSettings(), proxies: lib.envNames(Object.keys(PROXIES)) };
  const results = {};
  if (s.proxies.some((n) => PROXIES[n].needsRedis) && !(await redisAnswers())) {
    for (const n of s.proxies.filter((p) => PROXIES[p].needsRedis)) {
      results[n] = { status: 'skipped', why: `no Redis at ${REDIS_URL}` };
    }
    s.proxies = s.proxies.filter((n) => !PROXIES[n].needsRedis);
  }
  const cpuCount = os.availableParallelism();
  const plan = lib.pinPlan();
  console.log(
    `bench: ${s.connections} connections, warm-up ${s.warmupS} s then measure ${s.durationS} s, ` +
      `${s.reps} rep(s) interleaved over ${s.proxies.join(', ')}; 1 upstream, ${BODY.length}-byte body; ` +
      `node ${process.version}, ${cpuCount} CPU(s)`,
  );
  console.log(
    plan.ok
      ? `bench: pinned: proxies on CPU ${plan.proxy}, upstream + autocannon on CPU ${plan.load}`
      : `bench: not pinned (${plan.why}); figures are noisier`,
  );
  const up = await lib.startUpstreams(SELF, plan);
  const ready = await lib.startAll(SELF, s.proxies, [JSON.stringify(up.urls[0])], plan, results);
  const measured = await lib.probeAll(ready, results, (proxy) => lib.probeBody(proxy.url, 5));
  const { runs, warmupProblems } = await lib.closedLoopReps(measured, up.child, s, lib.repLine);
  for (const p of measured) {
    results[p.name] = {
      ...results[p.name],
      status: 'measured',
      ...lib.closedLoopResult(runs[p.name], { p50: true }),
    };
  }
  const ordered = lib.againstReference(results, Object.keys(PROXIES), REFERENCE);
  const notes = [];
  for (const [name, r] of Object.entries(ordered)) {
    if (r.status === 'skipped') {
      notes.push(`${name}: skipped (${r.why}).`);
      continue;
    }
    notes.push(...lib.configNotes(name, r, warmupProblems));
  }
  if (ordered[REFERENCE]?.status !== 'measured') notes.push('bare was not measured: no ratios.');
  const ok = Object.values(ordered).every(
    (r) => r.status === 'skipped' || (r.status === 'measured' && problems(r) === 0),
  );
  const md = table(ordered);
  if (s.json) {
    lib.writeJson(s.json, 'breaker', {
      cpus: cpuCount,
      pinned: plan.ok,
      settings: { ...s, json: undefined },
      ok,
      proxies: ordered,
      notes,
      table: md,
    });
  }
  const about =
    `Medians of ${s.reps} rep(s); ratios to bare within this run; "paired": the median of ` +
    'each rep against bare in the same rep.';
  return lib.finish(notes, about, md, ok);
}

const [role, arg] = process.argv.slice(2);
if (role === 'upstreams') lib.runChild(() => lib.upstreams({ n: 1 }));
else if (Object.prototype.hasOwnProperty.call(PROXIES, role)) {
  lib.runChild(() => PROXIES[role].make(JSON.parse(arg)));
} else lib.runParent(main);
