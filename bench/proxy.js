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
 * (BENCH_* environment variables) and the output.
 */

const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { fork, execFileSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const SELF = path.join(__dirname, 'proxy.js');

/** The upstream's fixed answer: 94 bytes, as in the team's reference measurements. */
const BODY = Buffer.from(
  JSON.stringify({ ok: true, from: 'upstream', note: 'turnpike bench fixed body' }).padEnd(94, ' '),
);

/** Sent by the parent's probe only: the upstream then echoes the path it was asked for. */
const PROBE_HEADER = 'x-bench-probe';
const PATH_HEADER = 'x-upstream-path';

/** A child's start-up must finish within this, or the proxy counts as failed. */
const START_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------
// Children: the upstream and the six proxies
// ---------------------------------------------------------------------------------------

/** Thrown by a proxy's factory when this build lacks the API the proxy needs. */
function unavailable(why) {
  return Object.assign(new Error(why), { unavailable: true });
}

function listening(server) {
  return new Promise((resolve, reject) => {
    if (server.listening) return resolve(server);
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}

function listenLocal(server) {
  server.listen(0, '127.0.0.1');
  return listening(server);
}

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
  return listenLocal(server).then(() => ({ server }));
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
    require.resolve('undici', { paths: [path.join(ROOT, 'packages', 'router')] }),
  );
  const pool = new Pool(target);
  const app = express();
  app.use('/api', (req, res) => forward(pool, req, res));
  return { server: await listenLocal(http.createServer(app)), close: () => pool.close() };
}

function turnpikeModule() {
  try {
    return require('@turnpike/gateway');
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error(`${err.message.split('\n')[0]}: are the packages built? (npm run build)`, {
      cause: err,
    });
  }
}

function turnpike(target) {
  return turnpikeModule().createGateway({
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
  const { isConfigError } = turnpikeModule();
  const gateway = turnpike(target);
  const app = express();
  app.get('/health', (req, res) => res.send('ok')); // the host's own route, still Express's
  app.use('/api', gateway);
  const server = app.listen(0, '127.0.0.1');
  try {
    gateway.attach(server, { direct: true });
  } catch (err) {
    server.close();
    if (isConfigError(err)) throw unavailable(`attach(server, { direct: true }): ${err.message}`);
    throw err;
  }
  return { server: await listening(server), close: () => gateway.close() };
}

/** 5. The gateway on an http.Server of its own, no Express. */
async function turnpikeListen(target) {
  const gateway = turnpike(target);
  if (typeof gateway.listen !== 'function') throw unavailable('the gateway has no listen()');
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

/** Serves until the parent says stop; answers the parent's CPU-time questions. */
function serve({ server, close }) {
  // Idle keep-alive sockets survive while the other proxies are being measured.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  process.on('message', (msg) => {
    if (msg && msg.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send({ type: 'cpu', id: msg.id, micros: user + system });
    } else if (msg && msg.type === 'stop') {
      server.close();
      server.closeAllConnections();
      Promise.resolve()
        .then(close)
        .catch(() => {})
        .finally(() => process.exit(0));
    }
  });
  process.send({ type: 'ready', port: server.address().port });
}

async function runChild(role, target) {
  // Never outlive the parent (Ctrl-C, crash).
  process.on('disconnect', () => process.exit(0));
  let made;
  try {
    made = role === 'upstream' ? await upstream() : await PROXIES[role].make(target);
  } catch (err) {
    const type = err && err.unavailable ? 'unavailable' : 'failed';
    if (type === 'failed')
      console.error(
        `bench: ${role}: ${String(err && err.stack)
          .split('\n', 4)
          .join('\n')}`,
      );
    process.send({ type, why: String((err && err.message) || err) }, () => process.exit(0));
    return;
  }
  serve(made);
}

// ---------------------------------------------------------------------------------------
// Parent: settings, children, CPU pinning
// ---------------------------------------------------------------------------------------

function envNumber(name, fallback, { min = 0, integer = false } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    console.error(`bench: ${name}=${JSON.stringify(raw)} is not a valid value (min ${min}).`);
    process.exit(2);
  }
  return n;
}

function envProxies() {
  const raw = process.env.BENCH_PROXIES;
  if (!raw) return Object.keys(PROXIES);
  const wanted = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = wanted.filter((name) => !PROXIES[name]);
  if (unknown.length > 0 || wanted.length === 0) {
    console.error(
      `bench: BENCH_PROXIES=${JSON.stringify(raw)}: unknown ${unknown.join(', ') || '(empty list)'}; ` +
        `known: ${Object.keys(PROXIES).join(', ')}.`,
    );
    process.exit(2);
  }
  return Object.keys(PROXIES).filter((name) => wanted.includes(name)); // the table's order
}

function settings() {
  return {
    connections: envNumber('BENCH_CONNECTIONS', 50, { min: 1, integer: true }),
    warmupS: envNumber('BENCH_WARMUP_S', 8, { min: 0 }),
    durationS: envNumber('BENCH_DURATION_S', 10, { min: 1 }),
    reps: envNumber('BENCH_REPS', 5, { min: 1, integer: true }),
    proxies: envProxies(),
    json: process.env.BENCH_JSON || undefined,
  };
}

/** CPU pinning: the proxies on one CPU, the upstream + autocannon on another (Linux taskset). */
function pinPlan() {
  if (process.env.BENCH_PIN === '0') return { ok: false, why: 'disabled by BENCH_PIN=0' };
  if (process.platform !== 'linux') return { ok: false, why: 'not Linux' };
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
  } catch {
    return { ok: false, why: 'taskset not found' };
  }
  let cpus;
  try {
    const out = execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' });
    cpus = parseCpuList(out.slice(out.lastIndexOf(':') + 1).trim());
  } catch {
    return { ok: false, why: 'taskset could not read the affinity' };
  }
  if (cpus.length < 2) return { ok: false, why: `only ${cpus.length} CPU available` };
  return { ok: true, proxy: cpus[0], load: cpus[1] };
}

function parseCpuList(list) {
  const cpus = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b === undefined ? a : b); c++) cpus.push(c);
  }
  return cpus;
}

function pin(pid, cpu) {
  // -a: every thread of the process (libuv pool, V8 helpers), not just the main one.
  execFileSync('taskset', ['-a', '-c', '-p', String(cpu), String(pid)], { stdio: 'ignore' });
}

const children = new Set();

/** Forks a role; resolves to { status: 'ready' | 'unavailable' | 'failed', ... }, never rejects. */
function start(role, args = []) {
  return new Promise((resolve) => {
    const child = fork(SELF, [role, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.add(child);
    let settled = false;
    const settle = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle({ status: 'failed', why: `did not start within ${START_TIMEOUT_MS / 1000} s` });
    }, START_TIMEOUT_MS);
    child.on('message', (msg) => {
      if (msg && msg.type === 'ready') {
        settle({ status: 'ready', child, url: `http://127.0.0.1:${msg.port}` });
      } else if (msg && (msg.type === 'unavailable' || msg.type === 'failed')) {
        settle({ status: msg.type, why: msg.why });
      }
    });
    child.once('exit', (code, signal) => {
      children.delete(child);
      settle({ status: 'failed', why: `exited during start-up (${signal || `code ${code}`})` });
    });
  });
}

let cpuSeq = 0;
/** The child's CPU time so far in µs; NaN when the child is gone. */
function cpuOf(child) {
  return new Promise((resolve) => {
    const id = ++cpuSeq;
    const done = (micros) => {
      child.off('message', onMsg);
      child.off('exit', onExit);
      resolve(micros);
    };
    const onMsg = (msg) => msg && msg.type === 'cpu' && msg.id === id && done(msg.micros);
    const onExit = () => done(NaN);
    child.on('message', onMsg);
    child.once('exit', onExit);
    try {
      child.send({ type: 'cpu', id });
    } catch {
      done(NaN);
    }
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      child.send({ type: 'stop' });
    } catch {
      child.kill('SIGKILL');
    }
  });
}

function stopAll() {
  return Promise.all([...children].map(stop));
}

// ---------------------------------------------------------------------------------------
// Parent: probes and load
// ---------------------------------------------------------------------------------------

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      })
      .on('error', reject);
  });
}

/**
 * One request through a proxy before any load: it must answer the upstream's exact body.
 * Resolves to the path the upstream was asked for; throws with the reason otherwise.
 */
async function probe(name, url) {
  const r = await get(`${url}/api/probe`, { [PROBE_HEADER]: '1' });
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
    const host = await get(`${url}/health`);
    if (host.status !== 200 || String(host.body) !== 'ok') {
      throw new Error(`the host's own route GET /health answered ${host.status}`);
    }
  }
  return r.headers[PATH_HEADER];
}

function load(url, connections, seconds) {
  const autocannon = require('autocannon');
  return autocannon({
    url: `${url}/api/bench`,
    connections,
    duration: seconds,
    timeout: 10,
    expectBody: BODY.toString(), // a different body counts as a mismatch
  });
}

function summarize(r) {
  return {
    rps: r.duration > 0 ? r.requests.total / r.duration : 0,
    p99: r.latency.p99,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    mismatches: r.mismatches,
    statusCodes: Object.fromEntries(
      Object.entries(r.statusCodeStats).map(([code, s]) => [code, s.count]),
    ),
  };
}

function problems(m) {
  return m.non2xx + m.errors + m.mismatches;
}

function ownCpu() {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** One measured window: load, plus the CPU time of the proxy and of the load side (µs). */
async function measure(proxy, upstreamChild, s) {
  const before = { proxy: await cpuOf(proxy.child), up: await cpuOf(upstreamChild), me: ownCpu() };
  const t0 = process.hrtime.bigint();
  const m = summarize(await load(proxy.url, s.connections, s.durationS));
  const wallMicros = Number(process.hrtime.bigint() - t0) / 1000;
  const proxyCpu = (await cpuOf(proxy.child)) - before.proxy;
  const loadCpu = (await cpuOf(upstreamChild)) - before.up + (ownCpu() - before.me);
  m.cpuMicrosPerRequest = m.requests > 0 ? proxyCpu / m.requests : NaN;
  m.proxyCpuPercent = (100 * proxyCpu) / wallMicros;
  m.loadCpuPercent = (100 * loadCpu) / wallMicros;
  return m;
}

function median(values) {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

function repLine(rep, reps, name, m) {
  return (
    `  rep ${rep}/${reps} ${name.padEnd(15)} ${m.rps.toFixed(0).padStart(6)} req/s  ` +
    `p99 ${String(m.p99).padStart(4)} ms  ${m.cpuMicrosPerRequest.toFixed(0).padStart(4)} CPU µs/req  ` +
    `proxy CPU ${m.proxyCpuPercent.toFixed(0)} %  load CPU ${m.loadCpuPercent.toFixed(0)} %` +
    (problems(m) > 0 ? `  non-2xx ${m.non2xx} errors ${m.errors} mismatches ${m.mismatches}` : '')
  );
}

/** The reps, interleaved: each rep runs every proxy, starting one further along each time. */
async function runReps(ready, upstreamChild, s) {
  const runs = Object.fromEntries(ready.map((p) => [p.name, []]));
  const warmupProblems = {};
  for (let rep = 1; rep <= s.reps; rep++) {
    const k = (rep - 1) % ready.length;
    for (const proxy of [...ready.slice(k), ...ready.slice(0, k)]) {
      if (s.warmupS > 0) {
        const w = summarize(await load(proxy.url, s.connections, s.warmupS));
        warmupProblems[proxy.name] = (warmupProblems[proxy.name] || 0) + problems(w);
      }
      const m = await measure(proxy, upstreamChild, s);
      runs[proxy.name].push(m);
      console.log(repLine(rep, s.reps, proxy.name, m));
    }
  }
  return { runs, warmupProblems };
}

// ---------------------------------------------------------------------------------------
// Parent: results
// ---------------------------------------------------------------------------------------

function round(n, digits = 0) {
  return Number.isFinite(n) ? Number(n.toFixed(digits)) : null;
}

function resultOf(rs) {
  const statusCodes = {};
  for (const r of rs) {
    for (const [c, n] of Object.entries(r.statusCodes)) statusCodes[c] = (statusCodes[c] || 0) + n;
  }
  return {
    rps: round(median(rs.map((r) => r.rps))),
    p99Ms: round(median(rs.map((r) => r.p99)), 1),
    cpuMicrosPerRequest: round(median(rs.map((r) => r.cpuMicrosPerRequest))),
    proxyCpuPercent: round(median(rs.map((r) => r.proxyCpuPercent))),
    loadCpuPercent: round(median(rs.map((r) => r.loadCpuPercent))),
    requests: sum(rs.map((r) => r.requests)),
    non2xx: sum(rs.map((r) => r.non2xx)),
    errors: sum(rs.map((r) => r.errors)),
    mismatches: sum(rs.map((r) => r.mismatches)),
    statusCodes,
    reps: rs.map((r) => ({
      rps: round(r.rps),
      p99Ms: r.p99,
      cpuMicrosPerRequest: round(r.cpuMicrosPerRequest),
    })),
  };
}

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

function cell(v, digits = 0, suffix = '') {
  return v === null || v === undefined ? '—' : `${v.toFixed(digits)}${suffix}`;
}

/** A markdown table, padded so that it also reads as plain text; numbers right-aligned. */
function markdownTable(rows, textColumns = 2) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const pad = (c, i) =>
    i < textColumns ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]);
  const line = (r) => `| ${r.map(pad).join(' | ')} |`;
  const dashes = widths.map((w, i) => (i < textColumns ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`));
  return [line(rows[0]), line(dashes), ...rows.slice(1).map(line)].join('\n');
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
  return markdownTable([head, ...rows]);
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
    if (problems(r) > 0) {
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

async function startProxies(names, upstreamUrl) {
  const results = {};
  const ready = [];
  for (const name of names) {
    const started = await start(name, [upstreamUrl]);
    if (started.status !== 'ready') {
      results[name] = { status: started.status, why: started.why };
      console.log(
        `bench: ${name}: ${started.status === 'unavailable' ? 'not available in this build' : 'FAILED to start'} (${started.why})`,
      );
      continue;
    }
    ready.push({ name, child: started.child, url: started.url });
  }
  return { results, ready };
}

/** Probes every started proxy; a proxy that fails its probe is stopped and reported. */
async function probeAll(ready, results) {
  const passed = [];
  for (const proxy of ready) {
    try {
      proxy.forwardedPath = await probe(proxy.name, proxy.url);
      passed.push(proxy);
    } catch (err) {
      results[proxy.name] = { status: 'failed', why: `probe: ${err.message}` };
      console.log(`bench: ${proxy.name}: FAILED the probe (${err.message})`);
      await stop(proxy.child);
    }
  }
  const paths = passed.map((p) => `${p.name} ${p.forwardedPath}`).join(', ');
  if (paths) console.log(`bench: GET /api/probe reached the upstream as: ${paths}`);
  return passed;
}

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
  const plan = pinPlan();
  printHeader(s, plan, cpuCount);

  const up = await start('upstream');
  if (up.status !== 'ready') throw new Error(`bench: the upstream did not start: ${up.why}`);
  const { results, ready: started } = await startProxies(s.proxies, up.url);
  if (plan.ok) {
    pin(process.pid, plan.load);
    pin(up.child.pid, plan.load);
    for (const proxy of started) pin(proxy.child.pid, plan.proxy);
  }
  const ready = await probeAll(started, results);

  const { runs, warmupProblems } = await runReps(ready, up.child, s);
  for (const proxy of ready) {
    results[proxy.name] = {
      status: 'measured',
      forwardedPath: proxy.forwardedPath,
      ...resultOf(runs[proxy.name]),
    };
  }
  const ordered = Object.fromEntries(s.proxies.map((name) => [name, results[name]]));
  addRatios(ordered);

  const ok = Object.values(ordered).every(
    (r) => r.status === 'unavailable' || (r.status === 'measured' && problems(r) === 0),
  );
  const lines = notes(ordered, warmupProblems);
  const md = table(ordered);
  if (s.json) {
    const doc = {
      bench: 'proxy',
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpuCount,
      pinned: plan.ok,
      settings: { ...s, json: undefined },
      ok,
      proxies: ordered,
      notes: lines,
      table: md,
    };
    fs.writeFileSync(s.json, `${JSON.stringify(doc, null, 2)}\n`);
  }
  console.log(`\n${lines.map((l) => `- ${l}`).join('\n')}${lines.length ? '\n' : ''}`);
  console.log(`Medians of ${s.reps} rep(s); counts are totals over all measured reps.\n`);
  console.log(md);
  if (!ok) console.error('\nbench: some figures are missing or NOT valid (see above).');
  return ok ? 0 : 1;
}

const [role, arg] = process.argv.slice(2);
if (role === 'upstream' || Object.prototype.hasOwnProperty.call(PROXIES, role)) {
  runChild(role, arg);
} else {
  let exiting = false;
  const bail = (code) => {
    if (exiting) return;
    exiting = true;
    stopAll().finally(() => process.exit(code));
  };
  process.on('SIGINT', () => bail(130));
  process.on('SIGTERM', () => bail(143));
  main().then(bail, (err) => {
    console.error(err && err.stack ? err.stack : err);
    bail(1);
  });
}
