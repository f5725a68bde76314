'use strict';

/**
 * Proxy benchmark: Turnpike (createGateway mounted in Express 5) against a bare
 * Express 5 + http-proxy-middleware 3 proxy, in the same run, with the same settings.
 *
 *   npm run bench      (npm run build && node bench/proxy.js)
 *
 * Each server (upstream, bare proxy, Turnpike) runs in its own child process, forked from
 * this file with a role argument; the load generator (autocannon) runs in this process.
 * See bench/README.md for the knobs (BENCH_* environment variables).
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

const PROXIES = ['bare', 'turnpike'];
const LABELS = {
  bare: 'express 5 + http-proxy-middleware 3',
  turnpike: 'express 5 + turnpike createGateway',
};

// ---------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------

function listen(server, onClose) {
  // Idle keep-alive sockets survive while the other proxy is being measured.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    process.send({ type: 'ready', port, pid: process.pid });
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    Promise.resolve(onClose && onClose()).finally(() => process.exit(0));
  };
  process.on('message', (msg) => {
    if (msg && msg.type === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send({ type: 'cpu', id: msg.id, micros: user + system });
    } else if (msg && msg.type === 'stop') {
      stop();
    }
  });
  // Never outlive the parent (Ctrl-C, crash).
  process.on('disconnect', () => process.exit(0));
}

function runUpstream() {
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
      res.end(BODY);
    });
  });
  listen(server);
}

function runBare(upstreamUrl) {
  const express = require('express');
  let hpmPath;
  try {
    hpmPath = require.resolve('http-proxy-middleware');
  } catch {
    hpmPath = require.resolve('http-proxy-middleware', {
      paths: [path.join(ROOT, 'packages', 'router')],
    });
  }
  const { createProxyMiddleware } = require(hpmPath);
  const agent = new http.Agent({ keepAlive: true });
  const app = express();
  app.use('/api', createProxyMiddleware({ target: upstreamUrl, changeOrigin: true, agent }));
  listen(http.createServer(app), () => agent.destroy());
}

function runTurnpike(upstreamUrl) {
  const express = require('express');
  const { createGateway } = require('@turnpike/gateway');
  const gateway = createGateway({
    services: { svc: { targets: [upstreamUrl] } },
    routes: [{ path: '/**', service: 'svc' }],
  });
  const app = express();
  app.use('/api', gateway);
  listen(http.createServer(app), () => gateway.close());
}

// ---------------------------------------------------------------------------------------
// Parent: orchestration and load
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

function checkBuilt() {
  const dist = path.join(ROOT, 'packages', 'gateway', 'dist', 'index.js');
  let resolved;
  try {
    resolved = require.resolve('@turnpike/gateway');
  } catch {
    resolved = undefined;
  }
  if (!resolved || !fs.existsSync(dist)) {
    console.error(
      'bench: @turnpike/gateway is not built (packages/gateway/dist is missing).\n' +
        '       Run `npm run build` first (`npm run bench` builds, then runs).',
    );
    process.exit(2);
  }
}

/** CPU pinning: proxies on one CPU, upstream + autocannon on another (taskset, Linux). */
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
  return { ok: true, load: cpus[0], proxy: cpus[1] };
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

function start(role, args = []) {
  return new Promise((resolve, reject) => {
    const child = fork(SELF, [role, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.add(child);
    const onExit = (code) => {
      children.delete(child);
      reject(new Error(`bench: the ${role} child exited early (code ${code})`));
    };
    child.once('exit', onExit);
    child.once('message', (msg) => {
      if (msg && msg.type === 'ready') {
        child.off('exit', onExit);
        child.once('exit', () => children.delete(child));
        resolve({ role, child, port: msg.port, url: `http://127.0.0.1:${msg.port}` });
      }
    });
  });
}

let cpuSeq = 0;
function cpuOf(server) {
  return new Promise((resolve) => {
    const id = ++cpuSeq;
    const onMsg = (msg) => {
      if (msg && msg.type === 'cpu' && msg.id === id) {
        server.child.off('message', onMsg);
        resolve(msg.micros);
      }
    };
    server.child.on('message', onMsg);
    server.child.send({ type: 'cpu', id });
  });
}

function stopAll() {
  const waits = [];
  for (const child of children) {
    waits.push(
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve();
        }, 3000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        try {
          child.send({ type: 'stop' });
        } catch {
          child.kill('SIGKILL');
        }
      }),
    );
  }
  return Promise.all(waits);
}

/** One request through a proxy before any load: it must answer the upstream's body. */
function probe(url) {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/api/probe`, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          if (res.statusCode === 200 && body.equals(BODY)) resolve();
          else reject(new Error(`probe of ${url}: status ${res.statusCode}, body ${body}`));
        });
      })
      .on('error', reject);
  });
}

function load(url, connections, seconds) {
  const autocannon = require('autocannon');
  return autocannon({ url: `${url}/api/bench`, connections, duration: seconds, timeout: 10 });
}

function summarize(r) {
  const total = r.requests.total;
  return {
    rps: r.duration > 0 ? total / r.duration : 0,
    p99: r.latency.p99,
    requests: total,
    ok2xx: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: Object.fromEntries(
      Object.entries(r.statusCodeStats).map(([code, s]) => [code, s.count]),
    ),
  };
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows
    .map((r, ri) => {
      const line = r
        .map((cell, i) =>
          i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]),
        )
        .join('  ');
      return ri === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

async function main() {
  checkBuilt();
  const connections = envNumber('BENCH_CONNECTIONS', 50, { min: 1, integer: true });
  const warmup = envNumber('BENCH_WARMUP_S', 10, { min: 0 });
  const duration = envNumber('BENCH_DURATION_S', 10, { min: 1 });
  const reps = envNumber('BENCH_REPS', 3, { min: 1, integer: true });

  const cpuCount = os.availableParallelism(); // before pinning narrows it
  const plan = pinPlan();
  const upstream = await start('upstream');
  const servers = {};
  servers.bare = await start('bare', [upstream.url]);
  servers.turnpike = await start('turnpike', [upstream.url]);
  if (plan.ok) {
    pin(process.pid, plan.load);
    pin(upstream.child.pid, plan.load);
    for (const name of PROXIES) pin(servers[name].child.pid, plan.proxy);
  }

  console.log(
    `bench: ${connections} connections, warm-up ${warmup} s then measure ${duration} s, ` +
      `${reps} rep(s) alternating ${PROXIES.join('/')}; ${BODY.length}-byte upstream body; ` +
      `node ${process.version}, ${cpuCount} CPU(s)`,
  );
  console.log(
    plan.ok
      ? `bench: pinned with taskset: proxies on CPU ${plan.proxy}, upstream + autocannon on CPU ${plan.load}`
      : `bench: not pinned to CPUs (${plan.why}); figures are noisier`,
  );

  for (const name of PROXIES) await probe(servers[name].url);

  const runs = { bare: [], turnpike: [] };
  let warmupProblems = 0;
  for (let rep = 1; rep <= reps; rep++) {
    // Alternate which proxy goes first, so neither always runs on a "fresher" machine.
    const order = rep % 2 ? PROXIES : [...PROXIES].reverse();
    for (const name of order) {
      const server = servers[name];
      if (warmup > 0) {
        const w = summarize(await load(server.url, connections, warmup));
        warmupProblems += w.non2xx + w.errors + w.timeouts;
      }
      const cpu0 = await cpuOf(server);
      const m = summarize(await load(server.url, connections, duration));
      const cpu1 = await cpuOf(server);
      m.cpuMicrosPerRequest = m.requests > 0 ? (cpu1 - cpu0) / m.requests : 0;
      runs[name].push(m);
      console.log(
        `  rep ${rep} ${name.padEnd(8)} ${m.rps.toFixed(0).padStart(6)} req/s  ` +
          `p99 ${String(m.p99).padStart(4)} ms  ${m.cpuMicrosPerRequest.toFixed(0)} CPU µs/req  ` +
          `non-2xx ${m.non2xx}  errors ${m.errors + m.timeouts}`,
      );
    }
  }

  const result = {};
  for (const name of PROXIES) {
    const rs = runs[name];
    result[name] = {
      rps: Math.round(median(rs.map((r) => r.rps))),
      p99Ms: median(rs.map((r) => r.p99)),
      cpuMicrosPerRequest: Math.round(median(rs.map((r) => r.cpuMicrosPerRequest))),
      non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
      errors: rs.reduce((a, r) => a + r.errors + r.timeouts, 0),
      requests: rs.reduce((a, r) => a + r.requests, 0),
      statusCodes: rs.reduce((acc, r) => {
        for (const [c, n] of Object.entries(r.statusCodes)) acc[c] = (acc[c] || 0) + n;
        return acc;
      }, {}),
      reps: rs.map((r) => ({ rps: Math.round(r.rps), p99Ms: r.p99 })),
    };
  }
  const ratio = result.bare.rps > 0 ? result.turnpike.rps / result.bare.rps : 0;

  console.log('');
  console.log(
    table([
      ['proxy', 'requests/s', 'p99 ms', 'CPU µs/req', 'non-2xx', 'errors'],
      ...PROXIES.map((name) => [
        `${name} (${LABELS[name]})`,
        result[name].rps,
        result[name].p99Ms,
        result[name].cpuMicrosPerRequest,
        result[name].non2xx,
        result[name].errors,
      ]),
    ]),
  );
  console.log(`\n(medians of ${reps} rep(s); counts are totals over all measured reps)`);
  console.log(`turnpike / bare requests/s: ${ratio.toFixed(2)}`);

  const bad = PROXIES.filter((name) => result[name].non2xx > 0 || result[name].errors > 0);
  for (const name of bad) {
    console.error(
      `\n!!! bench: ${name}: ${result[name].non2xx} non-2xx response(s) and ${result[name].errors} ` +
        `error(s)/timeout(s) during measurement; status codes ${JSON.stringify(result[name].statusCodes)}. ` +
        'These figures are NOT valid.',
    );
  }
  if (warmupProblems > 0) {
    console.error(`bench: note: ${warmupProblems} non-2xx/errors during warm-up (not measured).`);
  }

  console.log(
    JSON.stringify({
      bench: 'proxy',
      settings: { connections, warmupS: warmup, durationS: duration, reps, pinned: plan.ok },
      node: process.version,
      bare: result.bare,
      turnpike: result.turnpike,
      ratio: Number(ratio.toFixed(3)),
      ok: bad.length === 0,
    }),
  );
  return bad.length === 0 ? 0 : 1;
}

const [role, arg] = process.argv.slice(2);
if (role === 'upstream') runUpstream();
else if (role === 'bare') runBare(arg);
else if (role === 'turnpike') runTurnpike(arg);
else {
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
