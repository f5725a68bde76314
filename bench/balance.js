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
 * proxies, the knobs and the output. The helpers it shares are in bench/lib.js.
 */

const path = require('node:path');
const os = require('node:os');
const lib = require('./lib');

const { BODY, turnpikeUse, upstreamCounts, countsDelta, problems, round, cell } = lib;
const SELF = path.join(__dirname, 'balance.js');

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

/** 30 sequential requests through the proxy; how many each upstream received. */
async function spread(proxy, upChild) {
  const before = await upstreamCounts(upChild);
  for (let i = 0; i < 30; i++) {
    const r = await lib.get(`${proxy.url}/api/spread`);
    if (r.status !== 200) throw new Error(`GET /api/spread answered ${r.status}`);
  }
  await lib.sleep(50);
  return countsDelta(await upstreamCounts(upChild), before).map((c) => c.requests);
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
  return lib.markdownTable([head, ...rows]);
}

async function main() {
  const s = { ...lib.commonSettings(), proxies: lib.envNames(Object.keys(PROXIES)) };
  const cpuCount = os.availableParallelism();
  const plan = lib.pinPlan();
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
  const up = await lib.startUpstreams(SELF, plan);
  const results = {};
  const ready = await lib.startAll(SELF, s.proxies, [JSON.stringify(up.urls)], plan, results);

  // Probes: the body, then where 30 sequential requests went; rr3 must reach all three.
  const measured = await lib.probeAll(ready, results, async (proxy) => {
    await lib.probeBody(proxy.url, 30); // health checks may start unhealthy
    const counts = await spread(proxy, up.child);
    results[proxy.name] = { spread: counts };
    console.log(`bench: ${proxy.name}: 30 probe requests reached u1/u2/u3: ${counts.join('/')}`);
    if (proxy.name === 'rr3' && counts.some((c) => c === 0)) {
      throw new Error(`round-robin did not reach every upstream (${counts.join('/')})`);
    }
  });
  let healthSeen;
  if (measured.some((p) => PROXIES[p.name].health)) {
    const before = await upstreamCounts(up.child);
    await lib.sleep(2500);
    healthSeen = countsDelta(await upstreamCounts(up.child), before).map((c) => c.health);
    console.log(`bench: health checks seen by u1/u2/u3 in 2.5 s: ${healthSeen.join('/')}`);
  }

  const upBefore = await upstreamCounts(up.child);
  const { runs, warmupProblems } = await lib.closedLoopReps(
    measured,
    up.child,
    s,
    (rep, reps, name, m) => lib.repLine(rep, reps, name, m, 11),
  );
  const upTotals = countsDelta(await upstreamCounts(up.child), upBefore);

  for (const p of measured)
    results[p.name] = {
      ...results[p.name],
      status: 'measured',
      ...lib.closedLoopResult(runs[p.name], { p50: true }),
    };
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
    notes.push(...lib.configNotes(name, r, warmupProblems));
    if (r.status !== 'measured') continue;
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
    lib.writeJson(s.json, 'balance', {
      cpus: cpuCount,
      pinned: plan.ok,
      settings: { ...s, json: undefined },
      ok,
      proxies: ordered,
      healthChecksSeen: healthSeen,
      upstreamTotals: upTotals,
      notes,
      table: md,
    });
  }
  const about = `Medians of ${s.reps} rep(s); ratios to single within this run; spread: 30 probe requests.`;
  return lib.finish(notes, about, md, ok);
}

const [role, arg] = process.argv.slice(2);
if (role === 'upstreams') lib.runChild(() => lib.upstreams({ n: 3 }));
else if (Object.prototype.hasOwnProperty.call(PROXIES, role)) {
  lib.runChild(() => PROXIES[role].make(JSON.parse(arg)));
} else lib.runParent(main);
