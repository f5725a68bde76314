'use strict';

/**
 * Breaker A/B in one process: what a closed circuit breaker costs per request, measured so
 * that a noisy machine cannot hide a few per cent.
 *
 *   npm run build && node bench/breaker-ab.js
 *
 * bench/breaker.js runs each gateway in a child of its own, one after another; on a shared
 * machine, throughput swings by ±25 % from one 5-s window to the next, far more than the 3 %
 * the breaker may cost. Here ONE child (pinned to the first CPU) hosts every gateway, each on
 * its own port and the same upstream, and the load alternates between them in short windows
 * (`BENCH_AB_WINDOW_S`, default 1 s), in ABBA order, for `BENCH_AB_ROUNDS` rounds (default 30):
 * the gateways share the process, the JIT, the heap and the minute's conditions. Each round
 * gives each guarded gateway's CPU µs per request and requests/s as a ratio to bare's in the
 * same round; the figures are the medians of those ratios, with their quartiles.
 */

const http = require('node:http');
const path = require('node:path');
const lib = require('./lib');

const SELF = path.join(__dirname, 'breaker-ab.js');

/** The gateways, by name: the service keys added to `{ targets: [upstream] }`. */
const CONFIGS = {
  bare: {},
  breaker: { breaker: { failureThreshold: 5 } },
  'breaker-rate': { breaker: { failureRate: 0.5, windowMs: 10_000 } },
  bulkhead: { bulkhead: { maxConcurrent: 1000 } },
};

/** The child: every gateway of CONFIGS on a port of its own, in this one process. */
async function makeAll(target) {
  const express = require('express');
  const { createGateway } = lib.gatewayModule();
  const gateways = [];
  const servers = [];
  for (const service of Object.values(CONFIGS)) {
    const gateway = createGateway({
      services: { api: { targets: [target], ...service } },
      routes: [{ path: '/**', service: 'api' }],
    });
    const app = express();
    app.use('/api', gateway);
    gateways.push(gateway);
    servers.push(await lib.listenLocal(http.createServer(app)));
  }
  return { servers, close: () => Promise.all(gateways.map((g) => g.close())) };
}

function quantile(values, q) {
  const v = [...values].sort((a, b) => a - b);
  const at = (v.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return v[lo] + (v[hi] - v[lo]) * (at - lo);
}

async function window(child, url, connections, seconds) {
  const before = (await lib.cpuOf(child)).micros;
  const t0 = process.hrtime.bigint();
  const r = await lib.load(url, connections, seconds);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const micros = (await lib.cpuOf(child)).micros - before;
  const m = lib.summarize(r);
  return { ...m, cpuMicrosPerRequest: m.requests > 0 ? micros / m.requests : NaN, elapsed };
}

async function main() {
  const s = lib.commonSettings();
  const rounds = lib.envNumber('BENCH_AB_ROUNDS', 30, { min: 2, integer: true });
  const windowS = lib.envNumber('BENCH_AB_WINDOW_S', 1, { min: 1, integer: true });
  const names = Object.keys(CONFIGS);
  const plan = lib.pinPlan();
  console.log(
    `bench: A/B in one process over ${names.join(', ')}: ${rounds} rounds of ${windowS} s ` +
      `windows (ABBA order), ${s.connections} connections, warm-up ${s.warmupS} s each; ` +
      `node ${process.version}`,
  );
  const up = await lib.startUpstreams(SELF, plan);
  const started = await lib.start(SELF, ['gateways', JSON.stringify(up.urls[0])]);
  if (started.status !== 'ready') throw new Error(`the gateways did not start: ${started.why}`);
  if (plan.ok) lib.pin(started.child.pid, plan.proxy);
  const urls = Object.fromEntries(names.map((n, i) => [n, `http://127.0.0.1:${started.ports[i]}`]));
  for (const n of names) await lib.probeBody(urls[n], 5);
  for (const n of names) await lib.load(urls[n], s.connections, s.warmupS);

  const per = Object.fromEntries(names.map((n) => [n, []]));
  let problems = 0;
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const n of order) {
      const m = await window(started.child, urls[n], s.connections, windowS);
      problems += lib.problems(m);
      per[n].push(m);
    }
  }
  await lib.stop(started.child);

  const rows = [
    [
      'gateway',
      'CPU µs/req (median)',
      '× bare CPU (median, q1–q3)',
      'req/s (median)',
      '× bare req/s (median, q1–q3)',
    ],
  ];
  const result = {};
  for (const n of names) {
    const cpu = per[n].map((m) => m.cpuMicrosPerRequest);
    const rps = per[n].map((m) => m.rps);
    const xCpu = per[n].map((m, i) => m.cpuMicrosPerRequest / per.bare[i].cpuMicrosPerRequest);
    const xRps = per[n].map((m, i) => m.rps / per.bare[i].rps);
    result[n] = {
      cpuMicrosPerRequest: lib.round(lib.median(cpu), 1),
      rps: lib.round(lib.median(rps)),
      xBareCpu: [0.25, 0.5, 0.75].map((q) => lib.round(quantile(xCpu, q), 3)),
      xBareRps: [0.25, 0.5, 0.75].map((q) => lib.round(quantile(xRps, q), 3)),
    };
    const r = result[n];
    rows.push([
      n,
      lib.cell(r.cpuMicrosPerRequest, 1),
      `${r.xBareCpu[1].toFixed(3)}× (${r.xBareCpu[0].toFixed(3)}–${r.xBareCpu[2].toFixed(3)})`,
      lib.cell(r.rps),
      `${r.xBareRps[1].toFixed(3)}× (${r.xBareRps[0].toFixed(3)}–${r.xBareRps[2].toFixed(3)})`,
    ]);
  }
  const md = lib.markdownTable(rows, 1);
  if (s.json)
    lib.writeJson(s.json, 'breaker-ab', {
      rounds,
      windowS,
      settings: { ...s, json: undefined },
      result,
      problems,
      table: md,
    });
  const notes = problems > 0 ? [`${problems} non-2xx, errors or wrong bodies: NOT valid.`] : [];
  return lib.finish(
    notes,
    `Medians over ${rounds} rounds; each ratio is against bare in the same round.`,
    md,
    problems === 0,
  );
}

const [role, arg] = process.argv.slice(2);
if (role === 'upstreams') lib.runChild(() => lib.upstreams({ n: 1 }));
else if (role === 'gateways') lib.runChild(() => makeAll(JSON.parse(arg)));
else lib.runParent(main);
