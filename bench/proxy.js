'use strict';

/**
 * Proxy benchmark: six ways to proxy GET /api/* to one upstream, measured in one run with the
 * same settings, reps interleaved (rep 1: every proxy, rep 2: every proxy, ...).
 *
 *   npm run bench      (npm run build && node bench/proxy.js)
 *
 * Every server (the upstream, each proxy) runs in its own child process, forked from this file
 * with a role argument; the load generator (autocannon) runs in this process. The method is
 * the one of the team's PERFORMANCE.md notes; bench/README.md describes the proxies, the knobs
 * (BENCH_* environment variables) and the output. The helpers it shares with bench/balance.js
 * and bench/hedge.js are in bench/lib.js.
 */

const http = require('node:http');
const path = require('node:path');
const os = require('node:os');
const lib = require('./lib');

const { BODY, listening, listenLocal, round, cell } = lib;
const SELF = path.join(__dirname, 'proxy.js');

/** Sent by the parent's probe only: the upstream then echoes the path it was asked for. */
const PROBE_HEADER = 'x-bench-probe';
const PATH_HEADER = 'x-upstream-path';

// ---------------------------------------------------------------------------------------
// Children: the upstream and the six proxies
// ---------------------------------------------------------------------------------------

function upstream() {
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    req.resume();
    req.on('end', () => {
      const head = { 'content-type': 'application/json', 'content-length': BODY.length };
      if (req.headers[PROBE_HEADER] !== undefined) head[PATH_HEADER] = req.url;
      res.writeHead(200, head);
      res.end(BODY);
    });
  });
  return listenLocal(server).then(() => ({ servers: [server] }));
}

/** 1. express 5 + http-proxy-middleware 3 with a keep-alive agent. */
async function expressHpm(target) {
  const express = require('express');
  const { createProxyMiddleware } = require('http-proxy-middleware');
  const agent = new http.Agent({ keepAlive: true });
  const app = express();
  app.use('/api', createProxyMiddleware({ target, changeOrigin: true, agent }));
  return { server: await listenLocal(http.createServer(app)), close: () => agent.destroy() };
}

/** Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded, in either direction. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers, drop) {
  const out = {};
  for (const name of Object.keys(headers)) {
    if (!HOP_BY_HOP.has(name) && name !== drop) out[name] = headers[name];
  }
  return out;
}

/** The plain keep-alive proxy of the Express floor: undici Pool.stream() straight into res. */
function forward(pool, req, res) {
  const hasBody =
    req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.stream(
    {
      path: req.url,
      method: req.method,
      headers: endToEnd(req.headers, 'host'), // the pool's origin is the Host (changeOrigin)
      body: hasBody ? req : null,
    },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, endToEnd(headers));
      return res;
    },
    (err) => {
      if (!err) return;
      if (res.headersSent) res.destroy(err);
      else res.writeHead(502).end();
    },
  );
}

/** 2. express 5 + a plain undici keep-alive proxy: the Express floor. */
async function expressFloor(target) {
  const express = require('express');
  // The router's own undici (7), not whatever copy a dev dependency hoisted to the root.
  const { Pool } = require(
    require.resolve('undici', { paths: [path.join(lib.ROOT, 'packages', 'router')] }),
  );
  const pool = new Pool(target);
  const app = express();
  app.use('/api', (req, res) => forward(pool, req, res));
  return { server: await listenLocal(http.createServer(app)), close: () => pool.close() };
}

function turnpike(target) {
  return lib.gatewayModule().createGateway({
    services: { svc: { targets: [target] } },
    routes: [{ path: '/**', service: 'svc' }],
  });
}

/** 3. Turnpike mounted in express 5 with app.use('/api', gateway). */
async function turnpikeUse(target) {
  const express = require('express');
  const gateway = turnpike(target);
  const app = express();
  app.use('/api', gateway);
  return { server: await listenLocal(http.createServer(app)), close: () => gateway.close() };
}

/** 4. The direct lane: requests under the mount reach the gateway before Express sees them. */
async function turnpikeDirect(target) {
  const express = require('express');
  const { isConfigError } = lib.gatewayModule();
  const gateway = turnpike(target);
  const app = express();
  app.get('/health', (req, res) => res.send('ok')); // the host's own route, still Express's
  app.use('/api', gateway);
  const server = app.listen(0, '127.0.0.1');
  try {
    gateway.attach(server, { direct: true });
  } catch (err) {
    server.close();
    if (isConfigError(err))
      throw lib.unavailable(`attach(server, { direct: true }): ${err.message}`);
    throw err;
  }
  return { server: await listening(server), close: () => gateway.close() };
}

/** 5. The gateway on an http.Server of its own, no Express. */
async function turnpikeListen(target) {
  const gateway = turnpike(target);
  if (typeof gateway.listen !== 'function') throw lib.unavailable('the gateway has no listen()');
  const server = await gateway.listen(0, '127.0.0.1');
  if (!(server instanceof http.Server)) {
    throw new Error('gateway.listen() did not resolve to an http.Server');
  }
  return { server, close: () => gateway.close() };
}

/** 6. fast-gateway 5 (restana + fast-proxy-lite), one route. */
async function fastGateway(target) {
  const gateway = require('fast-gateway');
  const service = gateway({ routes: [{ prefix: '/api', target }] });
  return { server: await service.start(0, '127.0.0.1'), close: () => service.close() };
}

/** The proxies, in the order they run and are reported. */
const PROXIES = {
  'express-hpm': {
    make: expressHpm,
    what: 'express 5 + http-proxy-middleware 3, keep-alive agent',
  },
  'express-floor': { make: expressFloor, what: 'express 5 + undici Pool.stream() (Express floor)' },
  'turnpike-use': { make: turnpikeUse, what: "express 5, app.use('/api', gateway)" },
  'turnpike-direct': {
    make: turnpikeDirect,
    what: 'express 5 + gateway.attach(server, { direct: true })',
    direct: true,
  },
  'turnpike-listen': { make: turnpikeListen, what: 'gateway.listen(), no Express' },
  'fast-gateway': { make: fastGateway, what: 'fast-gateway 5 (restana + fast-proxy-lite)' },
};
const BASELINE = 'express-hpm';
const RIVAL = 'fast-gateway';
const AGAINST_RIVAL = ['turnpike-direct', 'turnpike-listen'];

// ---------------------------------------------------------------------------------------
// Parent: settings, the probe (children, pinning, load and reps: bench/lib.js)
// ---------------------------------------------------------------------------------------

function settings() {
  return { ...lib.commonSettings(), proxies: lib.envNames(Object.keys(PROXIES)) };
}

/**
 * One request through a proxy before any load: it must answer the upstream's exact body.
 * Resolves to the path the upstream was asked for; throws with the reason otherwise.
 */
async function probe(name, url) {
  const r = await lib.get(`${url}/api/probe`, { [PROBE_HEADER]: '1' });
  if (r.status !== 200 || !r.body.equals(BODY)) {
    throw new Error(`GET /api/probe answered ${r.status} ${JSON.stringify(String(r.body))}`);
  }
  if (PROXIES[name].direct) {
    // Express's app.handle sets X-Powered-By on everything it sees: the direct lane must not.
    if (r.headers['x-powered-by'] === 'Express') {
      throw new Error(
        'attach(server, { direct: true }) was accepted but /api still went through Express',
      );
    }
    const host = await lib.get(`${url}/health`);
    if (host.status !== 200 || String(host.body) !== 'ok') {
      throw new Error(`the host's own route GET /health answered ${host.status}`);
    }
  }
  return r.headers[PATH_HEADER];
}

function repLine(rep, reps, name, m) {
  return (
    `  rep ${rep}/${reps} ${name.padEnd(15)} ${m.rps.toFixed(0).padStart(6)} req/s  ` +
    `p99 ${String(m.p99).padStart(4)} ms  ${m.cpuMicrosPerRequest.toFixed(0).padStart(4)} CPU µs/req  ` +
    `proxy CPU ${m.proxyCpuPercent.toFixed(0)} %  load CPU ${m.loadCpuPercent.toFixed(0)} %` +
    (lib.problems(m) > 0
      ? `  non-2xx ${m.non2xx} errors ${m.errors} mismatches ${m.mismatches}`
      : '')
  );
}

// ---------------------------------------------------------------------------------------
// Parent: results
// ---------------------------------------------------------------------------------------

function ratio(a, b) {
  return a && b ? round(a.rps / b.rps, 2) : null;
}

/** Adds the ratios to the measured results: × express-hpm for all, × fast-gateway for two. */
function addRatios(results) {
  const base = results[BASELINE] && results[BASELINE].rps ? results[BASELINE] : undefined;
  const rival = results[RIVAL] && results[RIVAL].rps ? results[RIVAL] : undefined;
  for (const [name, r] of Object.entries(results)) {
    if (r.status !== 'measured') continue;
    r.xExpressHpm = ratio(r, base);
    if (AGAINST_RIVAL.includes(name)) r.xFastGateway = ratio(r, rival);
  }
}

function table(results) {
  const head = [
    'proxy',
    'what',
    'requests/s',
    '× express-hpm',
    '× fast-gateway',
    'p99 ms',
    'CPU µs/req',
    'proxy CPU %',
    'non-2xx / errors / mismatches',
  ];
  const rows = Object.entries(results).map(([name, r]) => {
    if (r.status !== 'measured') {
      const said = r.status === 'unavailable' ? 'not available in this build' : 'FAILED';
      return [name, PROXIES[name].what, said, '—', '—', '—', '—', '—', '—'];
    }
    return [
      name,
      PROXIES[name].what,
      cell(r.rps),
      cell(r.xExpressHpm, 2, '×'),
      cell(r.xFastGateway, 2, '×'),
      cell(r.p99Ms, 1),
      cell(r.cpuMicrosPerRequest),
      cell(r.proxyCpuPercent),
      `${r.non2xx} / ${r.errors} / ${r.mismatches}`,
    ];
  });
  return lib.markdownTable([head, ...rows]);
}

/** Whether the proxy, as meant, was the bottleneck; a note when the CPU figures say otherwise. */
function saturationNote(r) {
  if (r.loadCpuPercent >= 90) {
    return (
      `the load side (upstream + autocannon) used ${r.loadCpuPercent} % of its CPU: it may have ` +
      'been the bottleneck, not the proxy; requests/s is a lower bound, compare CPU µs/req.'
    );
  }
  if (r.proxyCpuPercent < 85) {
    return (
      `the proxy got only ${r.proxyCpuPercent} % of its CPU, the load side ${r.loadCpuPercent} %: ` +
      'other processes probably shared its CPU; requests/s is noisier, compare CPU µs/req.'
    );
  }
  return undefined;
}

function notes(results, warmupProblems) {
  const out = [];
  for (const [name, r] of Object.entries(results)) {
    if (r.status === 'unavailable') out.push(`${name}: not available in this build (${r.why}).`);
    if (r.status === 'failed') out.push(`${name}: FAILED: ${r.why}.`);
    if (r.status !== 'measured') continue;
    if (lib.problems(r) > 0) {
      out.push(
        `${name}: ${r.non2xx} non-2xx, ${r.errors} errors/timeouts, ${r.mismatches} wrong bodies ` +
          `(status codes ${JSON.stringify(r.statusCodes)}): these figures are NOT valid.`,
      );
    }
    const saturation = saturationNote(r);
    if (saturation) out.push(`${name}: ${saturation}`);
    if (warmupProblems[name] > 0) {
      out.push(
        `${name}: ${warmupProblems[name]} non-2xx/errors/mismatches during warm-up (not measured).`,
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Parent: the run
// ---------------------------------------------------------------------------------------

function printHeader(s, plan, cpuCount) {
  console.log(
    `bench: ${s.connections} connections, warm-up ${s.warmupS} s then measure ${s.durationS} s, ` +
      `${s.reps} rep(s) interleaved over ${s.proxies.join(', ')}; ${BODY.length}-byte body; ` +
      `node ${process.version}, ${cpuCount} CPU(s)`,
  );
  console.log(
    plan.ok
      ? `bench: pinned with taskset: proxies on CPU ${plan.proxy}, upstream + autocannon on CPU ${plan.load}`
      : `bench: not pinned to CPUs (${plan.why}); figures are noisier`,
  );
}

async function main() {
  const s = settings();
  const cpuCount = os.availableParallelism(); // before pinning narrows it
  const plan = lib.pinPlan();
  printHeader(s, plan, cpuCount);

  const up = await lib.startUpstreams(SELF, plan);
  const results = {};
  const started = await lib.startAll(SELF, s.proxies, [up.urls[0]], plan, results);
  const ready = await lib.probeAll(started, results, async (proxy) => {
    proxy.forwardedPath = await probe(proxy.name, proxy.url);
  });
  const paths = ready.map((p) => `${p.name} ${p.forwardedPath}`).join(', ');
  if (paths) console.log(`bench: GET /api/probe reached the upstream as: ${paths}`);

  const { runs, warmupProblems } = await lib.closedLoopReps(ready, up.child, s, repLine);
  for (const proxy of ready) {
    results[proxy.name] = {
      status: 'measured',
      forwardedPath: proxy.forwardedPath,
      ...lib.closedLoopResult(runs[proxy.name], { statusCodes: true }),
    };
  }
  const ordered = Object.fromEntries(s.proxies.map((name) => [name, results[name]]));
  addRatios(ordered);

  const ok = Object.values(ordered).every(
    (r) => r.status === 'unavailable' || (r.status === 'measured' && lib.problems(r) === 0),
  );
  const lines = notes(ordered, warmupProblems);
  const md = table(ordered);
  if (s.json) {
    lib.writeJson(s.json, 'proxy', {
      cpus: cpuCount,
      pinned: plan.ok,
      settings: { ...s, json: undefined },
      ok,
      proxies: ordered,
      notes: lines,
      table: md,
    });
  }
  const about = `Medians of ${s.reps} rep(s); counts are totals over all measured reps.`;
  return lib.finish(lines, about, md, ok);
}

const [role, arg] = process.argv.slice(2);
if (role === 'upstreams') {
  lib.runChild(upstream, role);
} else if (Object.prototype.hasOwnProperty.call(PROXIES, role)) {
  lib.runChild(async () => {
    const { server, close } = await PROXIES[role].make(arg);
    return { servers: [server], close };
  }, role);
} else {
  lib.runParent(main);
}
