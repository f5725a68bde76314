'use strict';

/**
 * What bench/proxy.js, bench/balance.js and bench/hedge.js share: the children (forked from the
 * script with a role argument, each serving until the parent says stop and answering its CPU
 * questions), the knobs, CPU pinning, the closed-loop load and its figures, the interleaved
 * reps, medians, the markdown table and the end of a run. bench/README.md describes them.
 */

const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const { fork, execFileSync } = require('node:child_process');

const ROOT = path.join(__dirname, '..');

/** The upstreams' fixed answer: 94 bytes, as in the team's reference measurements. */
const BODY = Buffer.from(
  JSON.stringify({ ok: true, from: 'upstream', note: 'turnpike bench fixed body' }).padEnd(94, ' '),
);
/** Every upstream of upstreams() names itself in this response header (u1, u2, u3). */
const NAME_HEADER = 'x-bench-upstream';

/** A child's start-up must finish within this, or it counts as failed. */
const START_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------

/** Thrown by a child's factory when this build lacks the API it needs. */
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

/** The built @turnpike/gateway (packages/gateway/dist). */
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

/**
 * A child's life: make what the role says, then serve it. make() may throw, with
 * {@link unavailable} when this build lacks what it needs; `label` names the child in the log.
 */
async function runChild(make, label = 'child') {
  process.on('disconnect', () => process.exit(0)); // never outlive the parent (Ctrl-C, crash)
  let made;
  try {
    made = await make();
  } catch (err) {
    const type = err && err.unavailable ? 'unavailable' : 'failed';
    if (type === 'failed') {
      console.error(
        `bench: ${label}: ${String(err && err.stack)
          .split('\n', 4)
          .join('\n')}`,
      );
    }
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
    console.error(
      `bench: BENCH_PROXIES=${JSON.stringify(raw)}: unknown ${unknown.join(', ') || '(empty list)'}; ` +
        `known: ${known.join(', ')}.`,
    );
    process.exit(2);
  }
  return known.filter((n) => wanted.includes(n)); // the table's order
}

/** CPU pinning: the proxies on one CPU, the upstreams + load generator on another (Linux taskset). */
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

/**
 * Forks `script` with `args`; resolves to { status: 'ready', child, ports, url } (url: the first
 * port's) or { status: 'unavailable' | 'failed', why }, never rejects.
 */
function start(script, args = []) {
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
      if (msg && msg.type === 'ready') {
        const url = `http://127.0.0.1:${msg.ports[0]}`;
        settle({ status: 'ready', child, ports: msg.ports, url });
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

let seq = 0;
/** The child's CPU time so far ({ micros }, NaN when gone) and its stats. */
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

/** Starts the upstreams child (`script upstreams ...args`), pinned to the load CPU with this process. */
async function startUpstreams(script, plan, args = []) {
  const up = await start(script, ['upstreams', ...args]);
  if (up.status !== 'ready') throw new Error(`bench: the upstreams did not start: ${up.why}`);
  if (plan.ok) {
    pin(process.pid, plan.load);
    pin(up.child.pid, plan.load);
  }
  return { child: up.child, urls: up.ports.map((p) => `http://127.0.0.1:${p}`) };
}

/**
 * Starts a child per name (`script name ...args`), each pinned to the proxy CPU; resolves to
 * the ready ones ({ name, child, url }). The others are said and put in `results`.
 */
async function startAll(script, names, args, plan, results) {
  const ready = [];
  for (const name of names) {
    const started = await start(script, [name, ...args]);
    if (started.status !== 'ready') {
      results[name] = { status: started.status, why: started.why };
      const said =
        started.status === 'unavailable' ? 'not available in this build' : 'FAILED to start';
      console.log(`bench: ${name}: ${said} (${started.why})`);
      continue;
    }
    if (plan.ok) pin(started.child.pid, plan.proxy);
    ready.push({ name, child: started.child, url: started.url });
  }
  return ready;
}

/**
 * Runs `check(proxy)` on every ready proxy before any load; one that throws is stopped, said
 * and put in `results` as failed. Resolves to those that passed.
 */
async function probeAll(ready, results, check) {
  const passed = [];
  for (const proxy of ready) {
    try {
      await check(proxy);
      passed.push(proxy);
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
  return passed;
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
// Parent: probes, load, reps
// ---------------------------------------------------------------------------------------

function ownCpu() {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers }, (res) => {
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

/** GET /api/probe through the proxy must answer {@link BODY}; tried `tries` times, 100 ms apart. */
async function probeBody(url, tries = 1) {
  let last;
  for (let t = 0; t < tries; t++) {
    if (t > 0) await sleep(100);
    last = await get(`${url}/api/probe`).catch((err) => ({ status: err.code, body: '' }));
    if (last.status === 200 && BODY.equals(last.body)) return;
  }
  throw new Error(`GET /api/probe answered ${last.status} ${JSON.stringify(String(last.body))}`);
}

/** The closed loop: `connections` keep-alive connections sending GET /api/bench, body checked. */
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
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    mismatches: r.mismatches,
    statusCodes: Object.fromEntries(
      Object.entries(r.statusCodeStats || {}).map(([code, s]) => [code, s.count]),
    ),
  };
}

const problems = (m) => m.non2xx + m.errors + m.mismatches;

/** One measured closed-loop window: load, plus the CPU time of the proxy and of the load side (µs). */
async function measure(proxy, upChild, s) {
  const before = { proxy: await cpuOf(proxy.child), up: await cpuOf(upChild), me: ownCpu() };
  const t0 = process.hrtime.bigint();
  const m = summarize(await load(proxy.url, s.connections, s.durationS));
  const wallMicros = Number(process.hrtime.bigint() - t0) / 1000;
  const proxyCpu = (await cpuOf(proxy.child)).micros - before.proxy.micros;
  const loadCpu = (await cpuOf(upChild)).micros - before.up.micros + (ownCpu() - before.me);
  m.cpuMicrosPerRequest = m.requests > 0 ? proxyCpu / m.requests : NaN;
  m.proxyCpuPercent = (100 * proxyCpu) / wallMicros;
  m.loadCpuPercent = (100 * loadCpu) / wallMicros;
  return m;
}

/**
 * The reps, interleaved: each rep runs every proxy, starting one further along each time; each
 * measurement (`measure(proxy)`) preceded by `warmup(proxy)` when given (its problems counted,
 * not its figures), and said with `line(rep, reps, name, m)`.
 */
async function runReps(ready, reps, { warmup, measure: measureOne, line }) {
  const runs = Object.fromEntries(ready.map((p) => [p.name, []]));
  const warmupProblems = {};
  for (let rep = 1; rep <= reps; rep++) {
    const k = (rep - 1) % ready.length;
    for (const proxy of [...ready.slice(k), ...ready.slice(0, k)]) {
      if (warmup) {
        const w = await warmup(proxy);
        warmupProblems[proxy.name] = (warmupProblems[proxy.name] || 0) + problems(w);
      }
      const m = await measureOne(proxy);
      runs[proxy.name].push(m);
      console.log(line(rep, reps, proxy.name, m));
    }
  }
  return { runs, warmupProblems };
}

/** {@link runReps} with the closed loop: autocannon warm-up (BENCH_WARMUP_S), then {@link measure}. */
function closedLoopReps(ready, upChild, s, line) {
  return runReps(ready, s.reps, {
    warmup:
      s.warmupS > 0
        ? async (proxy) => summarize(await load(proxy.url, s.connections, s.warmupS))
        : undefined,
    measure: (proxy) => measure(proxy, upChild, s),
    line,
  });
}

// ---------------------------------------------------------------------------------------
// Parent: results
// ---------------------------------------------------------------------------------------

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

/**
 * A proxy's result over its closed-loop reps: medians, totals and every rep's figures. With
 * `p50`, also the p50 latency (balance.js); with `statusCodes`, the status codes' totals (proxy.js).
 */
function closedLoopResult(rs, { p50 = false, statusCodes = false } = {}) {
  const med = (k, digits = 0) => round(median(rs.map((r) => r[k])), digits);
  const tot = (k) => sum(rs.map((r) => r[k]));
  const codes = {};
  for (const r of rs) {
    for (const [c, n] of Object.entries(r.statusCodes)) codes[c] = (codes[c] || 0) + n;
  }
  return {
    rps: med('rps'),
    ...(p50 && { p50Ms: med('p50', 1) }),
    p99Ms: med('p99', 1),
    cpuMicrosPerRequest: med('cpuMicrosPerRequest'),
    proxyCpuPercent: med('proxyCpuPercent'),
    loadCpuPercent: med('loadCpuPercent'),
    requests: tot('requests'),
    non2xx: tot('non2xx'),
    errors: tot('errors'),
    mismatches: tot('mismatches'),
    ...(statusCodes && { statusCodes: codes }),
    reps: rs.map((r) => ({
      rps: round(r.rps),
      ...(p50 && { p50Ms: r.p50 }),
      p99Ms: r.p99,
      cpuMicrosPerRequest: round(r.cpuMicrosPerRequest),
    })),
  };
}

/** The notes of balance.js and hedge.js on one config: failed, figures not valid, warm-up problems. */
function configNotes(name, r, warmupProblems) {
  const out = [];
  if (r.status === 'failed') out.push(`${name}: FAILED: ${r.why}.`);
  if (r.status !== 'measured') return out;
  if (problems(r) > 0) {
    out.push(
      `${name}: ${r.non2xx} non-2xx, ${r.errors} errors/timeouts, ${r.mismatches} wrong bodies: NOT valid.`,
    );
  }
  if (warmupProblems[name] > 0)
    out.push(`${name}: ${warmupProblems[name]} problems during warm-up.`);
  return out;
}

/** With BENCH_JSON: the run's results as JSON, `fields` after the bench's name, date and node. */
function writeJson(file, bench, fields) {
  const doc = { bench, date: new Date().toISOString(), node: process.version, ...fields };
  fs.writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
}

/** The end of a run: the notes, a line on the figures, the markdown table last; the exit code. */
/**
 * The results in `names` order, each measured one with its ratios to `reference` within the
 * run: `xBareRps`, `xBareCpu` (of the medians), and `pairedRps`, `pairedCpu` (each rep against
 * the reference's in the same rep, then the median: the machine's drift between reps cancels
 * out of these).
 */
function againstReference(results, names, reference) {
  const ordered = Object.fromEntries(names.filter((n) => results[n]).map((n) => [n, results[n]]));
  const ref =
    ordered[reference] && ordered[reference].status === 'measured' ? ordered[reference] : null;
  for (const r of Object.values(ordered)) {
    if (r.status !== 'measured' || !ref) continue;
    r.xBareRps = round(r.rps / ref.rps, 3);
    r.xBareCpu = round(r.cpuMicrosPerRequest / ref.cpuMicrosPerRequest, 3);
    const pairs = r.reps.map((x, i) => ref.reps[i] && [x, ref.reps[i]]).filter(Boolean);
    r.pairedRps = round(median(pairs.map(([x, b]) => x.rps / b.rps)), 3);
    r.pairedCpu = round(
      median(pairs.map(([x, b]) => x.cpuMicrosPerRequest / b.cpuMicrosPerRequest)),
      3,
    );
  }
  return ordered;
}

/**
 * A closed-loop bench of proxies against a reference, in one run: the upstream in a child,
 * each proxy in a child of its own (`proxies[name].make(upstreamUrl)` runs there), interleaved
 * reps, medians and paired ratios, a markdown table (and `BENCH_JSON`). `skip(names)` may
 * return `{ name: why }` for proxies that cannot run here (no Redis, …). Returns the exit status.
 */
async function featureBench({ bench, self, proxies, reference, skip }) {
  const s = { ...commonSettings(), proxies: envNames(Object.keys(proxies)) };
  const results = {};
  const skipped = skip === undefined ? {} : await skip(s.proxies);
  for (const [n, why] of Object.entries(skipped)) results[n] = { status: 'skipped', why };
  s.proxies = s.proxies.filter((n) => skipped[n] === undefined);
  const cpuCount = require('node:os').availableParallelism();
  const plan = pinPlan();
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
  const up = await startUpstreams(self, plan);
  const ready = await startAll(self, s.proxies, [JSON.stringify(up.urls[0])], plan, results);
  const measured = await probeAll(ready, results, (proxy) => probeBody(proxy.url, 5));
  const { runs, warmupProblems } = await closedLoopReps(measured, up.child, s, repLine);
  for (const p of measured) {
    results[p.name] = {
      ...results[p.name],
      status: 'measured',
      ...closedLoopResult(runs[p.name], { p50: true }),
    };
  }
  const ordered = againstReference(results, Object.keys(proxies), reference);
  const notes = [];
  for (const [name, r] of Object.entries(ordered)) {
    if (r.status === 'skipped') {
      notes.push(`${name}: skipped (${r.why}).`);
      continue;
    }
    notes.push(...configNotes(name, r, warmupProblems));
  }
  if (ordered[reference]?.status !== 'measured')
    notes.push(`${reference} was not measured: no ratios.`);
  const ok = Object.values(ordered).every(
    (r) => r.status === 'skipped' || (r.status === 'measured' && problems(r) === 0),
  );
  const md = featureTable(ordered, proxies);
  if (s.json) {
    writeJson(s.json, bench, {
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
    `Medians of ${s.reps} rep(s); ratios to ${reference} within this run; "paired": the median of ` +
    `each rep against ${reference} in the same rep.`;
  return finish(notes, about, md, ok);
}

/** Whether a Redis answers a PING at `url` (benches skip their Redis proxies otherwise). */
function redisAnswers(url) {
  const { hostname, port } = new (require('node:url').URL)(url);
  return new Promise((resolve) => {
    const s = require('node:net').connect(Number(port) || 6379, hostname);
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

/**
 * The table of {@link featureBench}; `extra` adds columns before the problem counts:
 * `{ head: [...], cells: (result) => [...] }`.
 */
function featureTable(results, proxies, extra = { head: [], cells: () => [] }) {
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
    ...extra.head,
    'non-2xx / errors / mismatches',
  ];
  const rows = Object.entries(results).map(([name, r]) => {
    const none = Array(9 + extra.head.length).fill('—');
    if (r.status === 'skipped') return [name, proxies[name].what, r.why, ...none];
    if (r.status !== 'measured') return [name, proxies[name].what, 'FAILED', ...none];
    return [
      name,
      proxies[name].what,
      cell(r.rps),
      cell(r.xBareRps, 3, '×'),
      cell(r.pairedRps, 3, '×'),
      cell(r.cpuMicrosPerRequest),
      cell(r.xBareCpu, 3, '×'),
      cell(r.pairedCpu, 3, '×'),
      cell(r.p50Ms, 1),
      cell(r.p99Ms, 1),
      cell(r.proxyCpuPercent),
      ...extra.cells(r),
      `${r.non2xx} / ${r.errors} / ${r.mismatches}`,
    ];
  });
  return markdownTable([head, ...rows]);
}

/** The child side of {@link featureBench}: `node bench/x.js <role> <arg>`, else the parent. */
function featureMain(proxies, main) {
  const [role, arg] = process.argv.slice(2);
  if (role === 'upstreams') runChild(() => upstreams({ n: 1 }));
  else if (Object.prototype.hasOwnProperty.call(proxies, role)) {
    runChild(() => proxies[role].make(JSON.parse(arg)));
  } else runParent(main);
}

/** One measured rep as the closed-loop benches print it; `width` pads the proxy's name. */
function repLine(rep, reps, name, m, width = 14) {
  return (
    `  rep ${rep}/${reps} ${name.padEnd(width)} ${m.rps.toFixed(0).padStart(6)} req/s  ` +
    `p50 ${String(m.p50).padStart(3)} ms  p99 ${String(m.p99).padStart(4)} ms  ` +
    `${m.cpuMicrosPerRequest.toFixed(0).padStart(4)} CPU µs/req  ` +
    `proxy CPU ${m.proxyCpuPercent.toFixed(0)} %  load CPU ${m.loadCpuPercent.toFixed(0)} %` +
    (problems(m) > 0 ? `  non-2xx ${m.non2xx} errors ${m.errors} mismatches ${m.mismatches}` : '')
  );
}

function finish(notes, about, md, ok) {
  console.log(`\n${notes.map((l) => `- ${l}`).join('\n')}${notes.length ? '\n' : ''}`);
  console.log(`${about}\n`);
  console.log(md);
  if (!ok) console.error('\nbench: some figures are missing or NOT valid (see above).');
  return ok ? 0 : 1;
}

module.exports = {
  featureBench,
  featureTable,
  redisAnswers,
  featureMain,
  againstReference,
  repLine,
  ROOT,
  BODY,
  NAME_HEADER,
  unavailable,
  listening,
  listenLocal,
  upstreams,
  gatewayModule,
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
  startUpstreams,
  startAll,
  probeAll,
  upstreamCounts,
  countsDelta,
  ownCpu,
  get,
  sleep,
  probeBody,
  load,
  summarize,
  problems,
  measure,
  runReps,
  closedLoopReps,
  median,
  sum,
  round,
  cell,
  markdownTable,
  closedLoopResult,
  configNotes,
  writeJson,
  finish,
};
