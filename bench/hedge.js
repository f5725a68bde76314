'use strict';

/**
 * Hedging benchmark: tail latency with one slow target of three, at a fixed request rate,
 * round-robin, without and with `hedge: { afterMs }` on the route; reps interleaved.
 *
 *   npm run build && node bench/hedge.js
 *
 * The load is open-loop and paced in this process (one request every 1/BENCH_RATE s, latency
 * counted from the time the request was due, so a late send counts as latency); see
 * bench/README.md ("Balancing and hedging benchmarks") for why it is not autocannon's
 * overallRate, the knobs and the output. The helpers it shares are in bench/lib.js.
 */

const http = require('node:http');
const os = require('node:os');
const { performance } = require('node:perf_hooks');
const path = require('node:path');
const { URL } = require('node:url');
const lib = require('./lib');

const SELF = path.join(__dirname, 'hedge.js');

const SLOW = 'u1'; // the upstreams child delays u1's answers

function settings() {
  return {
    ...lib.commonSettings(),
    configs: lib.envNames(Object.keys(CONFIGS)),
    rate: lib.envNumber('BENCH_RATE', 500, { min: 1 }),
    slowMs: lib.envNumber('BENCH_SLOW_MS', 50, { min: 0 }),
    hedgeMs: lib.envNumber('BENCH_HEDGE_MS', 10, { min: 1 }),
  };
}

/** So that the retry budget cannot silently cap the hedges. */
const BUDGET = { ratio: 1, minPerSecond: 1000 };

const CONFIGS = {
  'no-hedge': {
    what: 'round-robin, no hedge',
    make: (urls) => lib.turnpikeUse({ targets: urls, balancer: 'round-robin' }),
  },
  hedge: {
    what: 'round-robin, hedge afterMs {ms}, budget ratio 1 / minPerSecond 1000',
    make: (urls, hedgeMs) =>
      lib.turnpikeUse(
        { targets: urls, balancer: 'round-robin', retries: { budget: BUDGET } },
        { hedge: { afterMs: hedgeMs } },
      ),
  },
};

/**
 * Open-loop load: `rate` GET /api/bench per second for `seconds`, paced by the clock (a tick
 * sends every request that is due), over at most `sockets` keep-alive connections. Latency is
 * from the time each request was due to its response's end.
 */
function paced(url, rate, seconds, sockets) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
  const { hostname, port } = new URL(url);
  const total = Math.max(1, Math.round(rate * seconds));
  const interval = 1000 / rate;
  const r = { sent: 0, completed: 0, non2xx: 0, errors: 0, mismatches: 0, latencies: [], by: {} };
  return new Promise((resolve) => {
    const t0 = performance.now();
    let tEnd = t0;
    const finish = () => {
      if (r.completed + r.errors + r.non2xx + r.mismatches < total) return;
      agent.destroy();
      r.wallS = (tEnd - t0) / 1000;
      resolve(r);
    };
    const send = (due) => {
      r.sent++;
      const req = http.get(
        { agent, hostname, port, path: '/api/bench', timeout: 10_000 },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            tEnd = performance.now();
            const name = res.headers[lib.NAME_HEADER] || '?';
            if (res.statusCode < 200 || res.statusCode > 299) r.non2xx++;
            else if (!lib.BODY.equals(Buffer.concat(chunks))) r.mismatches++;
            else {
              r.completed++;
              r.latencies.push(tEnd - due);
              r.by[name] = (r.by[name] || 0) + 1;
            }
            finish();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        r.errors++;
        finish();
      });
    };
    let i = 0;
    const tick = () => {
      const now = performance.now();
      while (i < total && t0 + i * interval <= now) send(t0 + i++ * interval);
      if (i < total) setTimeout(tick, Math.max(0, t0 + i * interval - performance.now()));
    };
    tick();
  });
}

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

const { problems } = lib;

async function measure(gw, upChild, s) {
  const before = {
    gw: await lib.cpuOf(gw.child),
    up: await lib.upstreamCounts(upChild),
  };
  const r = await paced(gw.url, s.rate, s.durationS, s.connections);
  await lib.sleep(Math.max(100, s.slowMs + 50)); // the last legs reach the upstreams
  const after = { gw: await lib.cpuOf(gw.child), up: await lib.upstreamCounts(upChild) };
  const lat = r.latencies.sort((x, y) => x - y);
  const upstream = lib.countsDelta(after.up, before.up).map((c) => c.requests);
  const cpu = after.gw.micros - before.gw.micros;
  return {
    rps: r.completed / r.wallS,
    p50: quantile(lat, 0.5),
    p90: quantile(lat, 0.9),
    p99: quantile(lat, 0.99),
    max: lat[lat.length - 1],
    sent: r.sent,
    completed: r.completed,
    non2xx: r.non2xx,
    errors: r.errors,
    mismatches: r.mismatches,
    cpuMicrosPerRequest: r.completed > 0 ? cpu / r.completed : NaN,
    gatewayCpuPercent: (100 * cpu) / (r.wallS * 1e6),
    slowShare: r.completed > 0 ? (r.by[SLOW] || 0) / r.completed : NaN,
    answeredBy: r.by,
    upstreamRequests: upstream,
    upstreamExtra: lib.sum(upstream) - r.sent,
    hedgeEvents: after.gw.stats.hedges - before.gw.stats.hedges,
  };
}

function repLine(rep, reps, name, m) {
  const f = (v) => v.toFixed(1).padStart(6);
  return (
    `  rep ${rep}/${reps} ${name.padEnd(8)} ${m.rps.toFixed(0).padStart(5)} req/s  ` +
    `p50 ${f(m.p50)}  p90 ${f(m.p90)}  p99 ${f(m.p99)}  max ${f(m.max)} ms  ` +
    `${m.cpuMicrosPerRequest.toFixed(0).padStart(4)} CPU µs/req (${m.gatewayCpuPercent.toFixed(0)} %)  ` +
    `slow ${(100 * m.slowShare).toFixed(1)} %  upstream ${m.upstreamRequests.join('/')}  ` +
    `extra ${m.upstreamExtra}  onHedge ${m.hedgeEvents}` +
    (problems(m) > 0 ? `  non-2xx ${m.non2xx} errors ${m.errors} mismatches ${m.mismatches}` : '')
  );
}

function resultOf(rs) {
  const med = (k, d = 1) => lib.round(lib.median(rs.map((r) => r[k])), d);
  const tot = (k) => lib.sum(rs.map((r) => r[k]));
  const sent = tot('sent');
  return {
    rps: med('rps', 0),
    p50Ms: med('p50'),
    p90Ms: med('p90'),
    p99Ms: med('p99'),
    maxMs: med('max'),
    cpuMicrosPerRequest: med('cpuMicrosPerRequest', 0),
    gatewayCpuPercent: med('gatewayCpuPercent', 0),
    slowSharePercent: lib.round(100 * lib.median(rs.map((r) => r.slowShare)), 1),
    sent,
    completed: tot('completed'),
    non2xx: tot('non2xx'),
    errors: tot('errors'),
    mismatches: tot('mismatches'),
    upstreamExtra: tot('upstreamExtra'),
    upstreamExtraPercent: lib.round((100 * tot('upstreamExtra')) / sent, 1),
    hedgeEvents: tot('hedgeEvents'),
    reps: rs.map((r) => {
      const { answeredBy, upstreamRequests, ...rest } = r;
      return { ...rest, answeredBy, upstreamRequests };
    }),
  };
}

function hedgeTable(results, s) {
  const head = [
    'config',
    'what',
    'rate req/s',
    'achieved req/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    'CPU µs/req',
    'gateway CPU %',
    'answered by slow u1',
    'hedges (upstream extra / onHedge)',
    'non-2xx / errors / mismatches',
  ];
  const rows = Object.entries(results).map(([name, r]) => {
    const what = CONFIGS[name].what.replace('{ms}', String(s.hedgeMs));
    if (r.status !== 'measured')
      return [name, what, String(s.rate), 'FAILED', ...Array(9).fill('—')];
    return [
      name,
      what,
      String(s.rate),
      lib.cell(r.rps),
      lib.cell(r.p50Ms, 1),
      lib.cell(r.p90Ms, 1),
      lib.cell(r.p99Ms, 1),
      lib.cell(r.maxMs, 1),
      lib.cell(r.cpuMicrosPerRequest),
      lib.cell(r.gatewayCpuPercent),
      lib.cell(r.slowSharePercent, 1, ' %'),
      `${r.upstreamExtra} (${lib.cell(r.upstreamExtraPercent, 1, ' %')}) / ${r.hedgeEvents}`,
      `${r.non2xx} / ${r.errors} / ${r.mismatches}`,
    ];
  });
  return lib.markdownTable([head, ...rows]);
}

async function main() {
  const s = settings();
  const cpuCount = os.availableParallelism();
  const plan = lib.pinPlan();
  console.log(
    `bench: fixed rate ${s.rate} req/s (open loop, ≤ ${s.connections} connections), warm-up ${s.warmupS} s ` +
      `then measure ${s.durationS} s, ${s.reps} rep(s) interleaved over ${s.configs.join(', ')}; ` +
      `3 upstreams, u1 answers after ${s.slowMs} ms; hedge afterMs ${s.hedgeMs}; ` +
      `node ${process.version}, ${cpuCount} CPU(s)`,
  );
  console.log(
    `bench: the hedge config's service has retries: { budget: ${JSON.stringify(BUDGET)} } ` +
      'so that the retry budget does not cap the hedges',
  );
  console.log(
    plan.ok
      ? `bench: pinned: gateways on CPU ${plan.proxy}, upstreams + load on CPU ${plan.load}`
      : `bench: not pinned (${plan.why}); figures are noisier`,
  );
  const up = await lib.startUpstreams(SELF, plan, [String(s.slowMs)]);
  const results = {};
  const args = [JSON.stringify(up.urls), String(s.hedgeMs)];
  const started = await lib.startAll(SELF, s.configs, args, plan, results);
  const ready = await lib.probeAll(started, results, (gw) => lib.probeBody(gw.url));

  const { runs, warmupProblems } = await lib.runReps(ready, s.reps, {
    warmup: s.warmupS > 0 ? (gw) => paced(gw.url, s.rate, s.warmupS, s.connections) : undefined,
    measure: (gw) => measure(gw, up.child, s),
    line: repLine,
  });
  for (const g of ready) results[g.name] = { status: 'measured', ...resultOf(runs[g.name]) };
  const ordered = Object.fromEntries(s.configs.map((n) => [n, results[n]]));

  const notes = [];
  for (const [name, r] of Object.entries(ordered)) {
    notes.push(...lib.configNotes(name, r, warmupProblems));
    if (r.status !== 'measured') continue;
    if (r.rps < 0.95 * s.rate) {
      notes.push(
        `${name}: achieved ${r.rps} req/s, under 95 % of the ${s.rate} asked: the gateway or the load fell behind.`,
      );
    }
  }
  const h = ordered.hedge;
  if (h && h.status === 'measured') {
    notes.push(
      `hedge: ${h.upstreamExtra} upstream requests beyond the client's ${h.sent} ` +
        `(${h.upstreamExtraPercent} %: hedges, counted at the upstreams), ${h.hedgeEvents} onHedge events; ` +
        `with round-robin about 1/3 of first tries go to the slow u1, so up to ~33 % are expected.`,
    );
    if (h.hedgeEvents === 0 && h.upstreamExtra <= 0) {
      notes.push("hedge: NO hedge was sent: is the route's hedge option wired in this build?");
    }
  }
  notes.push(
    'Latency is from the time each request was due (open loop), p50/p90/p99/max the medians over reps; ' +
      '"answered by slow u1" is the share of responses carrying u1\'s name header.',
  );

  const ok =
    Object.values(ordered).every((r) => r.status === 'measured' && problems(r) === 0) &&
    !(h && h.status === 'measured' && h.hedgeEvents === 0 && h.upstreamExtra <= 0);
  const md = hedgeTable(ordered, s);
  if (s.json) {
    lib.writeJson(s.json, 'hedge', {
      cpus: cpuCount,
      pinned: plan.ok,
      settings: { ...s, json: undefined, budget: BUDGET },
      ok,
      configs: ordered,
      notes,
      table: md,
    });
  }
  const about = `Medians of ${s.reps} rep(s); hedge counts are totals over the measured reps.`;
  return lib.finish(notes, about, md, ok);
}

const [role, arg, extra] = process.argv.slice(2);
if (role === 'upstreams') lib.runChild(() => lib.upstreams({ n: 3, slowMs: Number(arg) }));
else if (Object.prototype.hasOwnProperty.call(CONFIGS, role)) {
  lib.runChild(() => CONFIGS[role].make(JSON.parse(arg), Number(extra)));
} else lib.runParent(main);
