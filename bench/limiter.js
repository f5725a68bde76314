'use strict';

/**
 * Limiter benchmark: what a gateway-wide rate limit (@turnpike/limiter) costs on a route, in
 * memory and in Redis, for each of its three algorithms, against the bare route, in one run
 * with the settings of bench/proxy.js (closed loop, 50 connections, warm-up, interleaved reps,
 * medians, CPU µs per request of the proxy child). Then, for each Redis proxy, the Redis
 * commands it sends per request, counted with MONITOR.
 *
 *   npm run build && node bench/limiter.js
 *
 * The upstream runs in one child, each proxy in a child of its own; autocannon runs in this
 * process. bench/README.md ("Limiter benchmark") describes the proxies and the output.
 */

const http = require('node:http');
const path = require('node:path');
const os = require('node:os');
const net = require('node:net');
const crypto = require('node:crypto');
const { URL } = require('node:url');
const lib = require('./lib');

const { BODY, problems, round, cell } = lib;
const SELF = path.join(__dirname, 'limiter.js');
const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379';
/** A limit no load of this bench reaches: every response must be the upstream's 200. */
const HIGH = 1e9;

/** The limiter's own lines (a Redis outage, a limit that failed): its figures are then not valid. */
const LIMITER_LINE = /^rate limit/;

/** A logger counting the gateway's warnings and errors by message, with the first one's details. */
function countingLogger() {
  const log = {};
  const note = (level) => (message, meta) => {
    const key = `${level}: ${message}`;
    if (log[key]) log[key].count++;
    else log[key] = { count: 1, first: meta };
  };
  return { log, logger: { error: note('error'), warn: note('warn'), info() {}, debug() {} } };
}

/**
 * Express 5 with app.use('/api', gateway): one service `api` on one target, one route `/**`;
 * `top` keys added to the config (rateLimit, redis).
 */
async function gatewayUse(target, top = {}) {
  const express = require('express');
  const { log, logger } = countingLogger();
  const gateway = lib.gatewayModule().createGateway({
    services: { api: { targets: [target] } },
    routes: [{ path: '/**', service: 'api' }],
    logger,
    ...top,
  });
  const app = express();
  app.use('/api', gateway);
  return {
    servers: [await lib.listenLocal(http.createServer(app))],
    close: () => gateway.close(),
    stats: () => JSON.parse(JSON.stringify(log)),
  };
}

/** The limits of the proxies (one gateway-wide limit, keyed by the client's address). */
const FIXED = { limit: HIGH, windowMs: 60_000 };
const SLIDING = { algorithm: 'sliding-window', limit: HIGH, windowMs: 60_000 };
const BUCKET = { algorithm: 'token-bucket', limit: HIGH, refillPerSecond: HIGH };

/** The proxies, in the order they run and are reported; `make(url, prefix)` runs in the child. */
const PROXIES = {
  bare: {
    what: 'no rateLimit (the reference)',
    make: (url) => gatewayUse(url),
  },
  memory: {
    what: 'fixed window, memory',
    make: (url) => gatewayUse(url, { rateLimit: FIXED }),
  },
  'memory-sliding': {
    what: 'sliding window, memory',
    make: (url) => gatewayUse(url, { rateLimit: SLIDING }),
  },
  'memory-bucket': {
    what: 'token bucket, memory',
    make: (url) => gatewayUse(url, { rateLimit: BUCKET }),
  },
  redis: {
    what: 'fixed window, Redis',
    needsRedis: true,
    make: (url, prefix) => gatewayUse(url, { redis: REDIS_URL, rateLimit: { ...FIXED, prefix } }),
  },
  'redis-sliding': {
    what: 'sliding window, Redis',
    needsRedis: true,
    make: (url, prefix) => gatewayUse(url, { redis: REDIS_URL, rateLimit: { ...SLIDING, prefix } }),
  },
  'redis-bucket': {
    what: 'token bucket, Redis',
    needsRedis: true,
    make: (url, prefix) => gatewayUse(url, { redis: REDIS_URL, rateLimit: { ...BUCKET, prefix } }),
  },
};
const REFERENCE = 'bare';

/** The Redis key prefix of one proxy in this run: `base` is the run's, `bench:rl:<random>:`. */
const prefixOf = (base, name) => `${base}${name}:`;

function redisAddress() {
  const { hostname, port } = new URL(REDIS_URL);
  return { host: hostname, port: Number(port) || 6379 };
}

/** A RESP array of bulk strings. */
function resp(args) {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** One MONITOR line: `+<time> [<db> <client address, or "lua">] "<COMMAND>" ...`. */
const MONITOR_LINE = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"/;

/**
 * The Redis commands `proxy` sends for `n` sequential GET /api/bench: a MONITOR connection is
 * opened, the requests sent, then `ECHO <marker>` on another connection; every MONITOR line up
 * to the marker is read. Lines of a script's own calls (`[0 lua]`) are left out; a client
 * address belongs to the proxy when one of its commands names the proxy's key prefix. Other
 * clients' commands are counted apart (another proxy's connection, another user of Redis).
 */
async function redisCommands(proxy, n, prefix) {
  const { host, port } = redisAddress();
  const marker = `bench-limiter-marker-${crypto.randomBytes(6).toString('hex')}`;
  const lines = [];
  const mon = net.connect(port, host);
  let onLine = () => {};
  let rest = '';
  mon.setEncoding('utf8');
  mon.on('data', (chunk) => {
    rest += chunk;
    let i;
    while ((i = rest.indexOf('\r\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 2);
      onLine(line);
    }
  });
  const expect = (test, what, ms = 10_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`MONITOR: no ${what} within ${ms} ms`)), ms);
      mon.once('error', reject);
      onLine = (line) => {
        if (!test(line)) return;
        clearTimeout(timer);
        onLine = () => {};
        resolve();
      };
    });
  try {
    const ok = expect((l) => l === '+OK', 'OK to MONITOR');
    mon.write(resp(['MONITOR']));
    await ok;
    const statusCodes = {};
    onLine = (line) => lines.push(line);
    for (let i = 0; i < n; i++) {
      const r = await lib.get(`${proxy.url}/api/bench`);
      statusCodes[r.status] = (statusCodes[r.status] || 0) + 1;
    }
    const end = expect((l) => {
      if (l.includes(marker)) return true;
      lines.push(l);
      return false;
    }, 'marker');
    await echo(host, port, marker);
    await end;
    return tally(lines, n, prefix, statusCodes);
  } finally {
    mon.destroy();
  }
}

/** Sends `ECHO marker` on a connection of its own; resolves on the reply. */
function echo(host, port, marker) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error('ECHO: no reply within 5 s'));
    });
    s.once('error', reject);
    s.once('connect', () => s.write(resp(['ECHO', marker])));
    s.once('data', () => {
      s.destroy();
      resolve();
    });
  });
}

function tally(lines, n, prefix, statusCodes) {
  const parsed = lines
    .map((l) => ({ l, m: MONITOR_LINE.exec(l) }))
    .filter((x) => x.m && x.m[1] !== 'lua')
    .map(({ l, m }) => ({ addr: m[1], command: m[2].toUpperCase(), names: l.includes(prefix) }));
  const mine = new Set(parsed.filter((p) => p.names).map((p) => p.addr));
  const seen = {};
  const others = {};
  let commands = 0;
  for (const p of parsed) {
    const into = mine.has(p.addr) ? seen : others;
    into[p.command] = (into[p.command] || 0) + 1;
    if (mine.has(p.addr)) commands++;
  }
  return {
    requests: n,
    statusCodes,
    commands,
    perRequest: round(commands / n, 3),
    seen,
    connections: mine.size,
    otherClients: others,
    scriptCalls: lines.filter((l) => / lua\] /.test(l)).length,
  };
}

/** "EVALSHA ×200" for the table. */
const seenCell = (seen) =>
  Object.entries(seen)
    .map(([c, k]) => `${c} ×${k}`)
    .join(', ') || 'none';

/** The probe: the upstream's body, and RateLimit-Policy present exactly when a limit is set. */
async function probe(proxy) {
  let last;
  for (let t = 0; t < 5; t++) {
    if (t > 0) await lib.sleep(100);
    last = await lib.get(`${proxy.url}/api/probe`).catch((err) => ({
      status: err.code,
      headers: {},
      body: '',
    }));
    if (last.status === 200 && BODY.equals(last.body)) break;
  }
  if (last.status !== 200 || !BODY.equals(last.body)) {
    throw new Error(`GET /api/probe answered ${last.status} ${JSON.stringify(String(last.body))}`);
  }
  const policy = last.headers['ratelimit-policy'];
  const limited = proxy.name !== REFERENCE;
  if (limited && policy === undefined) throw new Error('no RateLimit-Policy header: no limit ran');
  if (!limited && policy !== undefined) throw new Error(`RateLimit-Policy ${policy} on bare`);
  proxy.policy = policy;
}

function table(results) {
  return lib.featureTable(results, PROXIES, {
    head: ['Redis cmds/req', 'Redis commands seen'],
    cells: (r) => {
      const rc = r.redisCommands;
      if (!rc) return ['—', '—'];
      return rc.perRequest === null
        ? ['FAILED', rc.why]
        : [cell(rc.perRequest, 2), seenCell(rc.seen)];
    },
  });
}

async function main() {
  const s = {
    ...lib.commonSettings(),
    proxies: lib.envNames(Object.keys(PROXIES)),
    monitorRequests: lib.envNumber('BENCH_MONITOR_N', 200, { min: 1, integer: true }),
  };
  const prefix = `bench:rl:${crypto.randomBytes(4).toString('hex')}:`;
  const results = {};
  if (s.proxies.some((n) => PROXIES[n].needsRedis) && !(await lib.redisAnswers(REDIS_URL))) {
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
      `node ${process.version}, ${cpuCount} CPU(s); Redis ${REDIS_URL}, key prefix ${prefix}`,
  );
  console.log(
    plan.ok
      ? `bench: pinned: proxies on CPU ${plan.proxy}, upstream + autocannon on CPU ${plan.load}`
      : `bench: not pinned (${plan.why}); figures are noisier`,
  );
  const up = await lib.startUpstreams(SELF, plan);
  // Each child is told the upstream and the run's key prefix; it adds its own name to the latter.
  const ready = await lib.startAll(
    SELF,
    s.proxies,
    [JSON.stringify(up.urls[0]), prefix],
    plan,
    results,
  );
  const measured = await lib.probeAll(ready, results, probe);
  for (const p of measured)
    console.log(`bench: ${p.name}: RateLimit-Policy ${p.policy || '(none)'}`);
  const { runs, warmupProblems } = await lib.closedLoopReps(measured, up.child, s, lib.repLine);
  for (const p of measured) {
    results[p.name] = {
      ...results[p.name],
      status: 'measured',
      policy: p.policy,
      ...lib.closedLoopResult(runs[p.name], { p50: true, statusCodes: true }),
      log: (await lib.cpuOf(p.child)).stats,
    };
  }
  // After every measured rep, so that MONITOR (which slows Redis) never overlaps the load.
  for (const p of measured.filter((x) => PROXIES[x.name].needsRedis)) {
    try {
      const rc = await redisCommands(p, s.monitorRequests, prefixOf(prefix, p.name));
      results[p.name].redisCommands = rc;
      console.log(
        `bench: ${p.name}: ${rc.commands} Redis commands for ${rc.requests} requests ` +
          `(${seenCell(rc.seen)}; statuses ${JSON.stringify(rc.statusCodes)}; ` +
          `${rc.scriptCalls} script calls; other clients ${JSON.stringify(rc.otherClients)})`,
      );
    } catch (err) {
      results[p.name].redisCommands = { perRequest: null, why: err.message };
      console.log(`bench: ${p.name}: counting Redis commands FAILED (${err.message})`);
    }
  }
  const ordered = lib.againstReference(results, Object.keys(PROXIES), REFERENCE);
  const notes = [];
  let ok = true;
  for (const [name, r] of Object.entries(ordered)) {
    if (r.status === 'skipped') {
      notes.push(`${name}: skipped (${r.why}).`);
      continue;
    }
    notes.push(...lib.configNotes(name, r, warmupProblems));
    if (r.status !== 'measured') {
      ok = false;
      continue;
    }
    if (problems(r) > 0) ok = false;
    for (const [line, { count, first }] of Object.entries(r.log || {})) {
      // The limiter's own warnings: Redis was unavailable (the limits counted locally, by
      // onStoreError 'local') or a limit failed. Anything else is said, and does not void them.
      const limiters = LIMITER_LINE.test(line.replace(/^\w+: /, ''));
      if (limiters) ok = false;
      notes.push(
        `${name}: the gateway logged "${line}" ${count}× (first: ${JSON.stringify(first)})` +
          (limiters ? ': NOT valid.' : '.'),
      );
    }
    const rc = r.redisCommands;
    if (rc && rc.perRequest === null) {
      ok = false;
      notes.push(`${name}: Redis commands not counted: ${rc.why}.`);
    } else if (rc) {
      const codes = Object.keys(rc.statusCodes).filter((c) => c !== '200');
      if (codes.length > 0) {
        ok = false;
        notes.push(`${name}: statuses while counting ${JSON.stringify(rc.statusCodes)}.`);
      }
      if (rc.perRequest !== 1) {
        notes.push(`${name}: ${rc.perRequest} Redis commands per request, not the expected 1.`);
      }
      if (Object.keys(rc.otherClients).length > 0) {
        notes.push(
          `${name}: while counting, other clients sent ${seenCell(rc.otherClients)} (not counted).`,
        );
      }
    }
  }
  if (ordered[REFERENCE]?.status !== 'measured') notes.push('bare was not measured: no ratios.');
  const md = table(ordered);
  if (s.json) {
    lib.writeJson(s.json, 'limiter', {
      cpus: cpuCount,
      pinned: plan.ok,
      redis: REDIS_URL,
      prefix,
      settings: { ...s, json: undefined },
      ok,
      proxies: ordered,
      notes,
      table: md,
    });
  }
  const about =
    `Medians of ${s.reps} rep(s); ratios to bare within this run; "paired": the median of ` +
    `each rep against bare in the same rep. Redis cmds/req: MONITOR over ${s.monitorRequests} ` +
    'sequential requests after the reps, script-internal calls left out.';
  return lib.finish(notes, about, md, ok);
}

const [role, arg, runPrefix] = process.argv.slice(2);
if (role === 'upstreams') lib.runChild(() => lib.upstreams({ n: 1 }));
else if (Object.prototype.hasOwnProperty.call(PROXIES, role)) {
  lib.runChild(() => PROXIES[role].make(JSON.parse(arg), prefixOf(runPrefix, role)), role);
} else lib.runParent(main);
