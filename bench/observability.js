'use strict';

/**
 * Observability benchmark: what metrics, the access log and tracing cost on a route, against
 * the bare route, in one run with the settings of bench/proxy.js (closed loop, 50 connections,
 * warm-up, interleaved reps, medians, CPU µs per request of the proxy child): metrics alone,
 * and metrics + an access log line per request written to a file by winston + W3C trace
 * context (with @opentelemetry/api installed and no SDK registered: its no-op tracer).
 *
 *   npm run build && node bench/observability.js
 *   node bench/observability.js scrape     # scrape time with 10 000 series (no server)
 *
 * bench/README.md ("Observability benchmark") describes the proxies and the output.
 */

const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const lib = require('./lib');

const SELF = path.join(__dirname, 'observability.js');

/** Express 5 with app.use('/api', gateway), the gateway's telemetry as given. */
async function gatewayUse(target, telemetry) {
  const express = require('express');
  const gateway = lib.gatewayModule().createGateway({
    services: { api: { targets: [target] } },
    routes: [{ name: 'api', path: '/**', service: 'api' }],
    ...telemetry,
  });
  const app = express();
  app.use('/api', gateway);
  return {
    servers: [await lib.listenLocal(http.createServer(app))],
    close: () => gateway.close(),
  };
}

/** A temp file for a proxy's access log (removed at exit). */
function tempLog(name) {
  const file = path.join(os.tmpdir(), `turnpike-bench-${name}-${process.pid}.log`);
  process.on('exit', () => fs.rmSync(file, { force: true }));
  return file;
}

/** The access log's file logger: winston, one JSON line per request, the lines of 100 ms written together. */
function fileLogger() {
  const { jsonLogger } = require(path.join(lib.ROOT, 'packages/metrics'));
  return jsonLogger(tempLog('access'));
}

/** winston's own File transport with its json format, for comparison: a write per line. */
function winstonFileLogger() {
  const winston = require(
    require.resolve('winston', { paths: [path.join(lib.ROOT, 'packages/metrics')] }),
  );
  return winston.createLogger({
    format: winston.format.json(),
    transports: [new winston.transports.File({ filename: tempLog('winston-file') })],
  });
}

/** The proxies, in the order they run and are reported; `make(url)` runs in the child. */
const PROXIES = {
  bare: {
    what: 'no metrics, no access log, no tracing (the reference)',
    make: (url) => gatewayUse(url, {}),
  },
  metrics: {
    what: 'metrics: true (every series; endpoint not scraped)',
    make: (url) => gatewayUse(url, { metrics: true }),
  },
  tracing: {
    what: 'tracing: true (trace context in and out; the OpenTelemetry API, no SDK)',
    make: (url) => gatewayUse(url, { tracing: true }),
  },
  'access-log': {
    what: 'accessLog with jsonLogger(file) (a line per request)',
    make: (url) => gatewayUse(url, { accessLog: { logger: fileLogger() } }),
  },
  all: {
    what: 'metrics + access log (jsonLogger(file): winston, a write per 100 ms) + tracing',
    make: (url) =>
      gatewayUse(url, { metrics: true, accessLog: { logger: fileLogger() }, tracing: true }),
  },
  'all-winston-file': {
    what: "the same with winston's File transport and json format (a write per line)",
    make: (url) =>
      gatewayUse(url, { metrics: true, accessLog: { logger: winstonFileLogger() }, tracing: true }),
  },
};

/** Runs `scrapeOnce` while a 1 ms interval timer watches the event loop: wall time and the longest gap between ticks. */
async function timed(scrapeOnce) {
  let last = performance.now();
  let gap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  const text = await scrapeOnce();
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 5)); // the tick after the scrape closes its gap
  clearInterval(timer);
  return { ms, gap, text };
}

/**
 * Scrape time with 10 000 series: a registry filled through the gateway's own path
 * (Metrics.observeRequest), then scraped by the gateway's endpoint (Metrics.scrape, sliced)
 * and by prom-client's registry.metrics() for comparison; reports the text size, the wall
 * time and the longest the event loop was blocked while each ran (medians of 5 after a warm-up).
 */
async function scrapeBench() {
  const { Metrics } = require(path.join(lib.ROOT, 'packages/metrics'));
  const cases = [
    // 2 000 routes × 5 statuses: 10 000 requests_total series, 2 000 of each histogram.
    { what: '10 000 requests_total series (2 000 routes × 5 statuses)', routes: 2000, statuses: 5 },
    // The worst case: 10 000 routes, each a series of every per-route family (3 histograms).
    { what: '10 000 routes (10 000 series of every family)', routes: 10000, statuses: 1 },
  ];
  const STATUSES = [200, 201, 404, 500, 503];
  const rows = [];
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const c of cases) {
    const m = new Metrics({});
    for (let r = 0; r < c.routes; r++) {
      for (let s = 0; s < c.statuses; s++) {
        m.observeRequest('GET', `route-${r}`, 'svc', STATUSES[s], 0.012, 100, 1000);
      }
    }
    for (const [how, once] of [
      [
        'gateway endpoint (slices, as written to the socket)',
        async () => {
          const pieces = [];
          for await (const piece of m.slices()) pieces.push(piece);
          return pieces;
        },
      ],
      ["prom-client's registry.metrics()", () => m.registry.metrics()],
    ]) {
      const runs = [];
      for (let i = 0; i < 6; i++) runs.push(await timed(once));
      runs.shift(); // the first warms the code up
      const text = Array.isArray(runs[0].text) ? runs[0].text.join('') : runs[0].text;
      const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
      rows.push([
        c.what,
        how,
        String(lines),
        `${(Buffer.byteLength(text) / 1024 / 1024).toFixed(1)} MiB`,
        `${median(runs.map((r) => r.ms)).toFixed(0)} ms`,
        `${median(runs.map((r) => r.gap)).toFixed(0)} ms`,
      ]);
    }
  }
  const head = ['series', 'writer', 'sample lines', 'text', 'scrape', 'longest event-loop block'];
  const table = [head, head.map(() => '---'), ...rows]
    .map((r) => `| ${r.join(' | ')} |`)
    .join('\n');
  console.log(`node ${process.version}; medians of 5\n\n${table}`);
  return 0;
}

function main() {
  return lib.featureBench({
    bench: 'observability',
    self: SELF,
    proxies: PROXIES,
    reference: 'bare',
  });
}

if (process.argv[2] === 'scrape') {
  scrapeBench().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
} else lib.featureMain(PROXIES, main);
