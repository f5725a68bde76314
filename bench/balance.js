'use strict';

/**
 * Balancing benchmark: what Turnpike's balancers cost over a 1-target service, in one run with
 * the settings of bench/proxy.js (closed loop, 50 connections, warm-up, interleaved reps,
 * medians, CPU µs per request of the proxy child).
 *
 *   npm run build && node bench/balance.js
 *
 * The three upstreams (3 ports) run in one child, each proxy in a child of its own; autocannon
 * runs in this process. bench/README.md ("Balancing and hedging benchmarks") describes the
 * proxies, the knobs and the output. The helpers are exported for bench/hedge.js.
 */

const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { fork, execFileSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const SELF = path.join(__dirname, 'balance.js');

/** The upstreams' fixed answer: the 94 bytes of bench/proxy.js. */
const BODY = Buffer.from(
  JSON.stringify({ ok: true, from: 'upstream', note: 'turnpike bench fixed body' }).padEnd(94, ' '),
);
/** Every upstream names itself in this response header (u1, u2, u3). */
const NAME_HEADER = 'x-bench-upstream';
const START_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------

function listenLocal(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/**
 * `n` node:http upstreams in one process, on n ports, named u1..un. Each counts the requests
 * it receives (on arrival) and the health checks (GET /health, answered 200 "ok") apart.
 * `slowMs` > 0 delays every answer of u1 (not its health checks) by that much.
 */
async function upstreams({ n = 3, slowMs = 0 } = {}) {
  const counts = [];
  const servers = [];
  for (let i = 0; i < n; i++) {
    const name = `u${i + 1}`;
    const count = { name, requests: 0, health: 0 };
    const delay = i === 0 ? slowMs : 0;
    counts.push(count);
    const server = http.createServer({ keepAlive: true }, (req, res) => {
      if (req.url === '/health') {
        count.health++;
        req.resume();
        return res.writeHead(200, { 'content-length': 2 }).end('ok');
      }
      count.requests++;
      req.resume();
      const answer = () => {
        if (res.destroyed) return; // a hedge that lost: the gateway cancelled it
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': BODY.length,
          [NAME_HEADER]: name,
        });
        res.end(BODY);
      };
      req.on('end', () => (delay > 0 ? setTimeout(answer, delay) : answer()));
    });
    servers.push(await listenLocal(server));
  }
  return { servers, stats: () => counts.map((c) => ({ ...c })) };
}

function gatewayModule() {
  try {
    return require(path.join(ROOT, 'packages/gateway'));
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error(`${err.message.split('\n')[0]}: are the packages built? (npm run build)`, {
      cause: err,
    });
  }
}

/** Turnpike mounted in Express 5 with app.use('/api', gateway), one service `api`; counts hedges. */
async function turnpikeUse(service, route = {}) {
  const express = require('express');
  const gateway = gatewayModule().createGateway({
    services: { api: service },
    routes: [{ path: '/**', service: 'api', ...route }],
  });
  let hedges = 0;
  if (typeof gateway.onHedge === 'function') gateway.onHedge(() => hedges++);
  const app = express();
  app.use('/api', gateway);
  return {
    servers: [await listenLocal(http.createServer(app))],
    close: () => gateway.close(),
    stats: () => ({ hedges, onHedge: typeof gateway.onHedge === 'function' }),
  };
}

const HEALTH = { path: '/health', intervalMs: 1000 };

/** The proxies, in the order they run and are reported; `make(urls)` runs in the child. */
const PROXIES = {
  single: {
    what: '1 target (the reference)',
    targets: 1,
    make: (urls) => turnpikeUse({ targets: urls.slice(0, 1) }),
  },
  rr3: {
    what: "3 targets, 'round-robin'",
    targets: 3,
    make: (urls) => turnpikeUse({ targets: urls, balancer: 'round-robin' }),
  },
  p2c3: {
    what: "3 targets, 'p2c'",
    targets: 3,
    make: (urls) => turnpikeUse({ targets: urls, balancer: 'p2c' }),
  },
  iphash3: {
    what: "3 targets, 'ip-hash' (one client IP)",
    targets: 3,
    make: (urls) => turnpikeUse({ targets: urls, balancer: 'ip-hash' }),
  },
  'rr3-health': {
    what: "3 targets, 'round-robin', healthCheck 1 s",
    targets: 3,
    health: true,
    make: (urls) => turnpikeUse({ targets: urls, balancer: 'round-robin', healthCheck: HEALTH }),
  },
};
const REFERENCE = 'single';

/** Serves until the parent says stop; answers the parent's CPU/stats questions. */
function serve({ servers, close, stats }) {
  for (const s of servers) {
    s.keepAliveTimeout = 120_000; // idle sockets survive while the others are measured
    s.headersTimeout = 121_000;
  }
  process.on('message', (msg) => {
    if (msg && msg.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send({ type: 'cpu', id: msg.id, micros: user + system, stats: stats && stats() });
    } else if (msg && msg.type === 'stop') {
      for (const s of servers) {
        s.close();
        s.closeAllConnections();
      }
      Promise.resolve()
        .then(close)
        .catch(() => {})
        .finally(() => process.exit(0));
    }
  });
  process.send({ type: 'ready', ports: servers.map((s) => s.address().port) });
}

/** A child's life: make what the role says (make() may throw), then serve it. */
async function runChild(make) {
  process.on('disconnect', () => process.exit(0)); // never outlive the parent
  let made;
  try {
    made = await make();
  } catch (err) {
    console.error(
      `bench: child: ${String(err && err.stack)
        .split('\n', 4)
        .join('\n')}`,
    );
    process.send({ type: 'failed', why: String((err && err.message) || err) }, () =>
      process.exit(0),
    );
    return;
  }
  serve(made);
}

// ---------------------------------------------------------------------------------------
// Parent: settings, children, pinning (as in bench/proxy.js)
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

/** The knobs every run shares, with bench/proxy.js's defaults. */
function commonSettings() {
  return {
    connections: envNumber('BENCH_CONNECTIONS', 50, { min: 1, integer: true }),
    warmupS: envNumber('BENCH_WARMUP_S', 8, { min: 0 }),
    durationS: envNumber('BENCH_DURATION_S', 10, { min: 1 }),
    reps: envNumber('BENCH_REPS', 5, { min: 1, integer: true }),
    json: process.env.BENCH_JSON || undefined,
  };
}

/** BENCH_PROXIES (comma-separated) among `known`, in `known`'s order; all by default. */
function envNames(known) {
  const raw = process.env.BENCH_PROXIES;
  if (!raw) return known;
  const wanted = raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const unknown = wanted.filter((n) => !known.includes(n));
  if (unknown.length > 0 || wanted.length === 0) {
    console.error(`bench: BENCH_PROXIES=${JSON.stringify(raw)}: known: ${known.join(', ')}.`);
    process.exit(2);
  }
  return known.filter((n) => wanted.includes(n));
}

/** Proxies on the first CPU, upstreams + load generator on the second (Linux taskset). */
function pinPlan() {
  if (process.env.BENCH_PIN === '0') return { ok: false, why: 'disabled by BENCH_PIN=0' };
  if (process.platform !== 'linux') return { ok: false, why: 'not Linux' };
  let out;
  try {
    out = execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' });
  } catch {
    return { ok: false, why: 'taskset not found or failed' };
  }
  const cpus = [];
  for (const part of out
    .slice(out.lastIndexOf(':') + 1)
    .trim()
    .split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b === undefined ? a : b); c++) cpus.push(c);
  }
  if (cpus.length < 2) return { ok: false, why: `only ${cpus.length} CPU available` };
  return { ok: true, proxy: cpus[0], load: cpus[1] };
}

function pin(pid, cpu) {
  execFileSync('taskset', ['-a', '-c', '-p', String(cpu), String(pid)], { stdio: 'ignore' });
}

const children = new Set();

/** Forks `script` with `args`; resolves to { status: 'ready', child, ports } or { status: 'failed', why }. */
function start(script, args) {
  return new Promise((resolve) => {
    const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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
      if (msg && msg.type === 'ready') settle({ status: 'ready', child, ports: msg.ports });
      else if (msg && msg.type === 'failed') settle({ status: 'failed', why: msg.why });
    });
    child.once('exit', (code, signal) => {
      children.delete(child);
      settle({ status: 'failed', why: `exited during start-up (${signal || `code ${code}`})` });
    });
  });
}

let seq = 0;
/** The child's CPU time so far (µs, NaN when gone) and its stats. */
function cpuOf(child) {
  return new Promise((resolve) => {
    const id = ++seq;
    const done = (v) => {
      child.off('message', onMsg);
      child.off('exit', onExit);
      resolve(v);
    };
    const onMsg = (m) => m && m.type === 'cpu' && m.id === id && done(m);
    const onExit = () => done({ micros: NaN, stats: undefined });
    child.on('message', onMsg);
    child.once('exit', onExit);
    try {
      child.send({ type: 'cpu', id });
    } catch {
      onExit();
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

/** Runs main(), stops every child on the way out (also on Ctrl-C), exits with main's code. */
function runParent(main) {
  let exiting = false;
  const bail = (code) => {
    if (exiting) return;
    exiting = true;
    Promise.all([...children].map(stop)).finally(() => process.exit(code));
  };
  process.on('SIGINT', () => bail(130));
  process.on('SIGTERM', () => bail(143));
  main().then(bail, (err) => {
    console.error(err && err.stack ? err.stack : err);
    bail(1);
  });
}

function ownCpu() {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function get(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      })
      .on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function median(values) {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const sum = (values) => values.reduce((a, b) => a + b, 0);

function round(n, digits = 0) {
  return Number.isFinite(n) ? Number(n.toFixed(digits)) : null;
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

/** Starts the upstreams child (role `upstreams`), pinned to the load CPU; returns { child, urls }. */
async function startUpstreams(script, plan, args = []) {
  const up = await start(script, ['upstreams', ...args]);
  if (up.status !== 'ready') throw new Error(`bench: the upstreams did not start: ${up.why}`);
  if (plan.ok) {
    pin(process.pid, plan.load);
    pin(up.child.pid, plan.load);
  }
  return { child: up.child, urls: up.ports.map((p) => `http://127.0.0.1:${p}`) };
}

/** Per-upstream request counts now. */
async function upstreamCounts(child) {
  return (await cpuOf(child)).stats;
}

function countsDelta(after, before) {
  return after.map((c, i) => ({
    name: c.name,
    requests: c.requests - before[i].requests,
    health: c.health - before[i].health,
  }));
}

// ---------------------------------------------------------------------------------------
// Parent: balance.js's run
// ---------------------------------------------------------------------------------------

function load(url, connections, seconds) {
  const autocannon = require('autocannon');
  return autocannon({
    url: `${url}/api/bench`,
    connections,
    duration: seconds,
    timeout: 10,
    expectBody: BODY.toString(),
  });
}

function summarize(r) {
  return {
    rps: r.duration > 0 ? r.requests.total / r.duration : 0,
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    mismatches: r.mismatches,
  };
}

const problems = (m) => m.non2xx + m.errors + m.mismatches;

async function measure(proxy, upChild, s) {
  const before = { proxy: await cpuOf(proxy.child), up: await cpuOf(upChild), me: ownCpu() };
  const t0 = process.hrtime.bigint();
  const m = summarize(await load(proxy.url, s.connections, s.durationS));
  const wall = Number(process.hrtime.bigint() - t0) / 1000;
  const proxyCpu = (await cpuOf(proxy.child)).micros - before.proxy.micros;
  const loadCpu = (await cpuOf(upChild)).micros - before.up.micros + (ownCpu() - before.me);
  m.cpuMicrosPerRequest = m.requests > 0 ? proxyCpu / m.requests : NaN;
  m.proxyCpuPercent = (100 * proxyCpu) / wall;
  m.loadCpuPercent = (100 * loadCpu) / wall;
  return m;
}

/** One request through the proxy must answer the upstreams' body (retried for 3 s: health checks may start unhealthy). */
async function probe(url) {
  let last;
  for (let t = 0; t < 30; t++) {
    last = await get(`${url}/api/probe`).catch((err) => ({ status: err.code, body: '' }));
    if (last.status === 200 && BODY.equals(last.body)) return;
    await sleep(100);
  }
  throw new Error(`GET /api/probe answered ${last.status} ${JSON.stringify(String(last.body))}`);
}

/** 30 sequential requests through the proxy; how many each upstream received. */
async function spread(proxy, upChild) {
  const before = await upstreamCounts(upChild);
  for (let i = 0; i < 30; i++) {
    const r = await get(`${proxy.url}/api/spread`);
    if (r.status !== 200) throw new Error(`GET /api/spread answered ${r.status}`);
  }
  await sleep(50);
  return countsDelta(await upstreamCounts(upChild), before).map((c) => c.requests);
}

function repLine(rep, reps, name, m) {
  return (
    `  rep ${rep}/${reps} ${name.padEnd(11)} ${m.rps.toFixed(0).padStart(6)} req/s  ` +
    `p50 ${String(m.p50).padStart(3)} ms  p99 ${String(m.p99).padStart(4)} ms  ` +
    `${m.cpuMicrosPerRequest.toFixed(0).padStart(4)} CPU µs/req  ` +
    `proxy CPU ${m.proxyCpuPercent.toFixed(0)} %  load CPU ${m.loadCpuPercent.toFixed(0)} %` +
    (problems(m) > 0 ? `  non-2xx ${m.non2xx} errors ${m.errors} mismatches ${m.mismatches}` : '')
  );
}

function resultOf(rs) {
  return {
    rps: round(median(rs.map((r) => r.rps))),
    p50Ms: round(median(rs.map((r) => r.p50)), 1),
    p99Ms: round(median(rs.map((r) => r.p99)), 1),
    cpuMicrosPerRequest: round(median(rs.map((r) => r.cpuMicrosPerRequest))),
    proxyCpuPercent: round(median(rs.map((r) => r.proxyCpuPercent))),
    loadCpuPercent: round(median(rs.map((r) => r.loadCpuPercent))),
    requests: sum(rs.map((r) => r.requests)),
    non2xx: sum(rs.map((r) => r.non2xx)),
    errors: sum(rs.map((r) => r.errors)),
    mismatches: sum(rs.map((r) => r.mismatches)),
    reps: rs.map((r) => ({
      rps: round(r.rps),
      p50Ms: r.p50,
      p99Ms: r.p99,
      cpuMicrosPerRequest: round(r.cpuMicrosPerRequest),
    })),
  };
}

function balanceTable(results) {
  const head = [
    'proxy',
    'what',
    'requests/s',
    '× single rps',
    'CPU µs/req',
    '× single CPU',
    'p50 ms',
    'p99 ms',
    'proxy CPU %',
    'spread u1/u2/u3',
    'non-2xx / errors / mismatches',
  ];
  const rows = Object.entries(results).map(([name, r]) => {
    const sp = r.spread ? r.spread.join('/') : '—';
    if (r.status !== 'measured') {
      return [name, PROXIES[name].what, 'FAILED', '—', '—', '—', '—', '—', '—', sp, '—'];
    }
    return [
      name,
      PROXIES[name].what,
      cell(r.rps),
      cell(r.xSingleRps, 2, '×'),
      cell(r.cpuMicrosPerRequest),
      cell(r.xSingleCpu, 2, '×'),
      cell(r.p50Ms, 1),
      cell(r.p99Ms, 1),
      cell(r.proxyCpuPercent),
      sp,
      `${r.non2xx} / ${r.errors} / ${r.mismatches}`,
    ];
  });
  return markdownTable([head, ...rows]);
}

async function balanceMain() {
  const s = { ...commonSettings(), proxies: envNames(Object.keys(PROXIES)) };
  const cpuCount = os.availableParallelism();
  const plan = pinPlan();
  console.log(
    `bench: ${s.connections} connections, warm-up ${s.warmupS} s then measure ${s.durationS} s, ` +
      `${s.reps} rep(s) interleaved over ${s.proxies.join(', ')}; 3 upstreams, ${BODY.length}-byte body; ` +
      `node ${process.version}, ${cpuCount} CPU(s)`,
  );
  console.log(
    plan.ok
      ? `bench: pinned: proxies on CPU ${plan.proxy}, upstreams + autocannon on CPU ${plan.load}`
      : `bench: not pinned (${plan.why}); figures are noisier`,
  );
  const up = await startUpstreams(SELF, plan);
  const results = {};
  const ready = [];
  for (const name of s.proxies) {
    const started = await start(SELF, [name, JSON.stringify(up.urls)]);
    if (started.status !== 'ready') {
      results[name] = { status: 'failed', why: started.why };
      console.log(`bench: ${name}: FAILED to start (${started.why})`);
      continue;
    }
    if (plan.ok) pin(started.child.pid, plan.proxy);
    ready.push({ name, child: started.child, url: `http://127.0.0.1:${started.ports[0]}` });
  }

  // Probes: the body, then where 30 sequential requests went; rr3 must reach all three.
  const measured = [];
  for (const proxy of ready) {
    try {
      await probe(proxy.url);
      const counts = await spread(proxy, up.child);
      results[proxy.name] = { spread: counts };
      console.log(`bench: ${proxy.name}: 30 probe requests reached u1/u2/u3: ${counts.join('/')}`);
      if (proxy.name === 'rr3' && counts.some((c) => c === 0)) {
        throw new Error(`round-robin did not reach every upstream (${counts.join('/')})`);
      }
      measured.push(proxy);
    } catch (err) {
      results[proxy.name] = {
        ...results[proxy.name],
        status: 'failed',
        why: `probe: ${err.message}`,
      };
      console.log(`bench: ${proxy.name}: FAILED the probe (${err.message})`);
      await stop(proxy.child);
    }
  }
  let healthSeen;
  if (measured.some((p) => PROXIES[p.name].health)) {
    const before = await upstreamCounts(up.child);
    await sleep(2500);
    healthSeen = countsDelta(await upstreamCounts(up.child), before).map((c) => c.health);
    console.log(`bench: health checks seen by u1/u2/u3 in 2.5 s: ${healthSeen.join('/')}`);
  }

  const runs = Object.fromEntries(measured.map((p) => [p.name, []]));
  const warmupProblems = {};
  const upBefore = await upstreamCounts(up.child);
  for (let rep = 1; rep <= s.reps; rep++) {
    const k = (rep - 1) % measured.length;
    for (const proxy of [...measured.slice(k), ...measured.slice(0, k)]) {
      if (s.warmupS > 0) {
        const w = summarize(await load(proxy.url, s.connections, s.warmupS));
        warmupProblems[proxy.name] = (warmupProblems[proxy.name] || 0) + problems(w);
      }
      const m = await measure(proxy, up.child, s);
      runs[proxy.name].push(m);
      console.log(repLine(rep, s.reps, proxy.name, m));
    }
  }
  const upTotals = countsDelta(await upstreamCounts(up.child), upBefore);

  for (const p of measured)
    results[p.name] = { ...results[p.name], status: 'measured', ...resultOf(runs[p.name]) };
  const ordered = Object.fromEntries(s.proxies.map((n) => [n, results[n]]));
  const ref =
    ordered[REFERENCE] && ordered[REFERENCE].status === 'measured' ? ordered[REFERENCE] : null;
  for (const r of Object.values(ordered)) {
    if (r.status !== 'measured' || !ref) continue;
    r.xSingleRps = round(r.rps / ref.rps, 2);
    r.xSingleCpu = round(r.cpuMicrosPerRequest / ref.cpuMicrosPerRequest, 2);
  }

  const notes = [];
  for (const [name, r] of Object.entries(ordered)) {
    if (r.status === 'failed') notes.push(`${name}: FAILED: ${r.why}.`);
    if (r.status !== 'measured') continue;
    if (problems(r) > 0) {
      notes.push(
        `${name}: ${r.non2xx} non-2xx, ${r.errors} errors/timeouts, ${r.mismatches} wrong bodies: NOT valid.`,
      );
    }
    if (warmupProblems[name] > 0)
      notes.push(`${name}: ${warmupProblems[name]} problems during warm-up.`);
    if (r.loadCpuPercent >= 90) {
      notes.push(
        `${name}: load side at ${r.loadCpuPercent} % CPU: rps is a lower bound; compare CPU µs/req.`,
      );
    } else if (r.proxyCpuPercent < 85) {
      notes.push(
        `${name}: proxy got only ${r.proxyCpuPercent} % of its CPU: something else shared it; compare CPU µs/req.`,
      );
    }
  }
  if (!ref) notes.push('single was not measured: no ratios.');
  if (ordered.iphash3) {
    notes.push(
      'iphash3: all load comes from 127.0.0.1, so every request hashes to the same upstream: ' +
        'it measures the hashing cost, not the spread.',
    );
  }
  if (healthSeen) {
    notes.push(
      `rr3-health: health checks seen by u1/u2/u3 in 2.5 s before the load: ${healthSeen.join('/')}` +
        (healthSeen.some((h) => h === 0) ? ' (NOT all checked: is healthCheck wired?)' : '') +
        '.',
    );
  }
  notes.push(
    `Upstream requests over all measured windows and warm-ups, u1/u2/u3: ` +
      `${upTotals.map((c) => c.requests).join('/')}; health checks: ${upTotals.map((c) => c.health).join('/')}.`,
  );

  const ok =
    Object.values(ordered).every((r) => r.status === 'measured' && problems(r) === 0) &&
    !(healthSeen && healthSeen.some((h) => h === 0));
  const md = balanceTable(ordered);
  if (s.json) {
    const doc = {
      bench: 'balance',
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpuCount,
      pinned: plan.ok,
      settings: { ...s, json: undefined },
      ok,
      proxies: ordered,
      healthChecksSeen: healthSeen,
      upstreamTotals: upTotals,
      notes,
      table: md,
    };
    fs.writeFileSync(s.json, `${JSON.stringify(doc, null, 2)}\n`);
  }
  console.log(`\n${notes.map((l) => `- ${l}`).join('\n')}\n`);
  console.log(
    `Medians of ${s.reps} rep(s); ratios to single within this run; spread: 30 probe requests.\n`,
  );
  console.log(md);
  if (!ok) console.error('\nbench: some figures are missing or NOT valid (see above).');
  return ok ? 0 : 1;
}

module.exports = {
  BODY,
  NAME_HEADER,
  upstreams,
  turnpikeUse,
  serve,
  runChild,
  envNumber,
  commonSettings,
  envNames,
  pinPlan,
  pin,
  start,
  stop,
  cpuOf,
  runParent,
  ownCpu,
  get,
  sleep,
  median,
  sum,
  round,
  cell,
  markdownTable,
  startUpstreams,
  upstreamCounts,
  countsDelta,
};

if (require.main === module) {
  const [role, arg] = process.argv.slice(2);
  if (role === 'upstreams') runChild(() => upstreams({ n: 3 }));
  else if (Object.prototype.hasOwnProperty.call(PROXIES, role)) {
    runChild(() => PROXIES[role].make(JSON.parse(arg)));
  } else runParent(balanceMain);
}
