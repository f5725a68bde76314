/**
 * An independent suite for the observability issue (metrics, access log, trace context, request
 * id, stats), written from the text: real upstreams, real requests, no mocks.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import express from 'express';
import winston from 'winston';
import { Registry, register as globalRegister } from 'prom-client';
import { SpanKind, trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { createGateway, isConfigError, type GatewayConfig } from '@turnpike/gateway';
import { createMetrics } from '@turnpike/metrics';
import { listen, startGateway, waitFor, type GatewayHarness } from './helpers/servers';
import { eventually, parseScrape, scrape, type Scrape } from './helpers/prometheus';
import { closersAfterEach } from './helpers/outcomes';
import { rawGet } from './helpers/logs';
import { deadPort } from './helpers/upstreams';

const closers = closersAfterEach();

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** An upstream: POST → 201 "made", /fail → 500, else 200 "hello" (5 bytes). Records what it saw. */
async function upstream(): Promise<{ url: string; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const u = await listen((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers });
      if (req.url!.includes('/fail')) res.writeHead(500, { 'content-type': 'text/plain' }).end();
      else if (req.method === 'POST')
        res.writeHead(201, { 'content-type': 'text/plain' }).end('made');
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('hello');
    });
  });
  closers.push(() => u.close());
  return { url: u.url, port: u.port, seen };
}

async function gatewayOf(config: GatewayConfig): Promise<GatewayHarness> {
  const g = await startGateway(config);
  closers.push(() => g.close());
  return g;
}

async function send(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, init);
  const body = await res.text();
  return { status: res.status, body, headers: res.headers };
}

/** A winston logger writing JSON lines to memory. */
function memoryWinston(): { logger: winston.Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const logger = winston.createLogger({
    level: 'info',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines };
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function sum(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  return s.all(name, labels).reduce((a, x) => a + x.value, 0);
}

// ---------------------------------------------------------------------------------------------
// 1–3. Prometheus series in the gateway
// ---------------------------------------------------------------------------------------------

describe('gateway metrics after a known mix of requests', () => {
  let g: GatewayHarness;
  let up: Awaited<ReturnType<typeof upstream>>;
  let s: Scrape;

  beforeAll(async () => {
    up = await upstream();
    g = await startGateway({
      services: { users: { targets: [up.url], retries: false } },
      routes: [
        { name: 'users', path: '/users/**', service: 'users' },
        { path: '/items/:id', service: 'users' },
      ],
      metrics: { path: '/metrics' },
    });
    for (let i = 0; i < 3; i++) expect((await send(`${g.url}/users/${i}`)).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const r = await send(`${g.url}/users/new`, { method: 'POST', body: 'abcdefghijk' });
      expect(r.status).toBe(201);
    }
    expect((await send(`${g.url}/users/fail`)).status).toBe(500);
    expect((await send(`${g.url}/items/42`)).status).toBe(200);
    expect((await send(`${g.url}/nowhere/at/all`)).status).toBe(404);
    // The outcome is recorded after the response ends: poll until the last one is counted.
    await eventually(async () => {
      s = await scrape(`${g.url}/metrics`);
      return sum(s, 'gateway_requests_total') >= 8;
    });
  });
  afterAll(() => g.close());

  test('requests_total{method,route,service,status} counts exactly the requests sent', () => {
    expect(s.types.get('gateway_requests_total')).toBe('counter');
    expect(
      s.value('gateway_requests_total', {
        method: 'GET',
        route: 'users',
        service: 'users',
        status: '200',
      }),
    ).toBe(3);
    expect(
      s.value('gateway_requests_total', {
        method: 'POST',
        route: 'users',
        service: 'users',
        status: '201',
      }),
    ).toBe(2);
    expect(
      s.value('gateway_requests_total', {
        method: 'GET',
        route: 'users',
        service: 'users',
        status: '500',
      }),
    ).toBe(1);
    // The default route name is its path pattern.
    expect(
      s.value('gateway_requests_total', {
        method: 'GET',
        route: '/items/:id',
        service: 'users',
        status: '200',
      }),
    ).toBe(1);
    // An unrouted 404 has route "".
    expect(sum(s, 'gateway_requests_total', { route: '', status: '404' })).toBe(1);
    expect(sum(s, 'gateway_requests_total')).toBe(8);
  });

  test('no label value anywhere is a raw path', () => {
    for (const sample of s.samples) {
      for (const v of Object.values(sample.labels)) {
        expect(v).not.toMatch(/\/users\/|\/items\/42|nowhere/);
      }
    }
  });

  test('request_duration_seconds: buckets 1 ms … 60 s, cumulative, +Inf = _count = requests', () => {
    expect(s.types.get('gateway_request_duration_seconds')).toBe('histogram');
    const labels = { method: 'GET', route: 'users', service: 'users' };
    const buckets = s.all('gateway_request_duration_seconds_bucket', labels);
    const les = buckets.map((b) => b.labels.le);
    expect(les[0]).toBe('0.001');
    expect(les).toContain('60');
    expect(les[les.length - 1]).toBe('+Inf');
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    }
    const count = s.value('gateway_request_duration_seconds_count', labels);
    expect(count).toBe(4); // 3 × 200 and 1 × 500
    expect(buckets[buckets.length - 1]!.value).toBe(count);
    expect(s.value('gateway_request_duration_seconds_sum', labels)).toBeGreaterThan(0);
    // Across every label set, the histogram counts every request once.
    expect(sum(s, 'gateway_request_duration_seconds_count')).toBe(8);
  });

  test('upstream_duration_seconds{service,target}: one observation per upstream call', () => {
    expect(s.types.get('gateway_upstream_duration_seconds')).toBe('histogram');
    const rows = s.all('gateway_upstream_duration_seconds_count', { service: 'users' });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.labels.target).toContain(String(up.port));
    expect(rows[0]!.value).toBe(7); // every request but the 404
    const inf = s.value('gateway_upstream_duration_seconds_bucket', {
      service: 'users',
      target: rows[0]!.labels.target!,
      le: '+Inf',
    });
    expect(inf).toBe(7);
  });

  test('request_bytes / response_bytes: the bodies each way', () => {
    const reqSum = s.value('gateway_request_bytes_sum', { route: 'users', service: 'users' });
    const resSum = s.value('gateway_response_bytes_sum', { route: 'users', service: 'users' });
    expect(reqSum).toBe(2 * 11); // two POSTs of 11 bytes
    expect(resSum).toBe(3 * 5 + 2 * 4); // 3 × "hello", 2 × "made", the 500 empty
    expect(s.value('gateway_request_bytes_count', { route: 'users', service: 'users' })).toBe(6);
  });

  test('every series family the issue names exists, with the default prefix', () => {
    const names = [
      'requests_total',
      'request_duration_seconds',
      'upstream_duration_seconds',
      'request_bytes',
      'response_bytes',
      'upstream_health',
      'upstream_in_flight',
      'upstream_ejections_total',
      'retries_total',
      'hedges_total',
      'circuit_breaker_state',
      'circuit_breaker_transitions_total',
      'rate_limit_total',
      'auth_total',
      'cache_total',
      'upstream_errors_total',
    ];
    const families = [...s.types.keys()];
    const missing = names.filter(
      (n) =>
        !families.includes(`gateway_${n}`) &&
        !families.includes(`gateway_${n.replace(/_total$/, '')}`),
    );
    expect(missing).toEqual([]);
    // upstream_health of the one (unchecked, usable) target is 1.
    expect(s.value('gateway_upstream_health', { service: 'users' })).toBe(1);
  });
});

test('a flood of distinct paths, routed or 404, adds no series', async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ name: 'user', path: '/users/:id', service: 'users' }],
    metrics: { path: '/metrics' },
  });
  await send(`${g.url}/users/first`);
  await send(`${g.url}/missing/first`);
  await eventually(
    async () => sum(await scrape(`${g.url}/metrics`), 'gateway_requests_total') >= 2,
  );
  const before = (await scrape(`${g.url}/metrics`)).samples.length;
  for (let i = 0; i < 150; i++) {
    await send(`${g.url}/users/u${i}`);
    await send(`${g.url}/missing/p${i}/x`);
  }
  let after!: Scrape;
  await eventually(async () => {
    after = await scrape(`${g.url}/metrics`);
    return sum(after, 'gateway_requests_total') >= 302;
  });
  expect(after.samples.length).toBe(before);
  expect(sum(after, 'gateway_requests_total', { route: '' })).toBe(151);
  expect(sum(after, 'gateway_requests_total', { route: 'user' })).toBe(151);
});

test('a custom prefix names every series; none keeps gateway_', async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics', prefix: 'edge_' },
  });
  await send(`${g.url}/users/1`);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'edge_requests_total') >= 1;
  });
  expect(s.samples.length).toBeGreaterThan(0);
  for (const sample of s.samples) expect(sample.name.startsWith('edge_')).toBe(true);
  expect(s.value('edge_requests_total', { route: '/users/**', service: 'users' })).toBe(1);
});

test('defaultMetrics adds process_* series with the prefix; they are absent without it', async () => {
  const up = await upstream();
  const on = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics', prefix: 'pm_', defaultMetrics: true },
  });
  const off = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics', prefix: 'pn_' },
  });
  // prom-client 15 writes NaN as `Nan` (Prometheus reads it, case-insensitively); the strict
  // helper parser wants `NaN`.
  const text = await (await fetch(`${on.url}/metrics`)).text();
  const a = parseScrape(text.replace(/ Nan$/gm, ' NaN'));
  const names = new Set(a.samples.map((x) => x.name));
  expect(names.has('pm_process_cpu_user_seconds_total')).toBe(true);
  expect(
    [...names].some(
      (n) => n.startsWith('pm_process_resident_memory') || n.startsWith('pm_nodejs_'),
    ),
  ).toBe(true);
  expect([...names].some((n) => n.startsWith('process_'))).toBe(false);
  const b = await scrape(`${off.url}/metrics`);
  expect(b.samples.some((x) => x.name.includes('process_'))).toBe(false);
});

test('two gateways in one process, both with the default registry, count apart', async () => {
  const up = await upstream();
  const config = (): GatewayConfig => ({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics' },
  });
  const g1 = await gatewayOf(config());
  const g2 = await gatewayOf(config());
  await send(`${g1.url}/users/1`);
  await send(`${g1.url}/users/2`);
  await send(`${g2.url}/users/3`);
  await eventually(
    async () => sum(await scrape(`${g1.url}/metrics`), 'gateway_requests_total') >= 2,
  );
  await eventually(
    async () => sum(await scrape(`${g2.url}/metrics`), 'gateway_requests_total') >= 1,
  );
  expect(sum(await scrape(`${g1.url}/metrics`), 'gateway_requests_total')).toBe(2);
  expect(sum(await scrape(`${g2.url}/metrics`), 'gateway_requests_total')).toBe(1);
  expect(g1.gateway.metrics!.registry).not.toBe(g2.gateway.metrics!.registry);
  // Never prom-client's global registry unless passed.
  expect(g1.gateway.metrics!.registry).not.toBe(globalRegister);
  expect(globalRegister.getSingleMetric('gateway_requests_total')).toBeUndefined();
});

test('a registry passed in holds the series', async () => {
  const up = await upstream();
  const registry = new Registry();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { registry },
  });
  await send(`${g.url}/users/1`);
  await eventually(
    async () => sum(parseScrape(await registry.metrics()), 'gateway_requests_total') === 1,
  );
  expect(g.gateway.metrics!.registry).toBe(registry);
});

test('the endpoint is off by default; the exported handler serves the text format elsewhere', async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: true,
  });
  expect((await send(`${g.url}/metrics`)).status).toBe(404);
  await send(`${g.url}/users/1`);
  const internal = express();
  internal.get('/metrics', g.gateway.metrics!.handler);
  const srv = await listen(http.createServer(internal));
  closers.push(() => srv.close());
  await eventually(
    async () =>
      (await scrape(`${srv.url}/metrics`)).value('gateway_requests_total', { status: '200' }) === 1,
  );
  // The 404 of /metrics was counted as unrouted, no route overlapped it.
  expect(sum(await scrape(`${srv.url}/metrics`), 'gateway_requests_total', { route: '' })).toBe(1);

  // Without metrics at all there is no `gateway.metrics`.
  const plain = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
  });
  expect(plain.gateway.metrics).toBeUndefined();
});

test('a route that overlaps the metrics path is refused at start-up', () => {
  const make = (path: string) => () =>
    createGateway({
      services: { users: { targets: ['http://127.0.0.1:1'] } },
      routes: [{ path, service: 'users' }],
      metrics: { path: '/metrics' },
    });
  for (const path of ['/metrics', '/**', '/:what', '/metrics/**']) {
    let err: unknown;
    try {
      make(path)();
    } catch (e) {
      err = e;
    }
    expect(isConfigError(err)).toBe(true);
  }
  // A route beside it is fine.
  const ok = make('/users/**')();
  closers.push(() => ok.close());
});

test('circuit_breaker_state goes 0 → 1 and transitions and upstream errors are counted', async () => {
  const port = await deadPort();
  const g = await gatewayOf({
    services: {
      dead: {
        targets: [`http://127.0.0.1:${port}`],
        retries: false,
        outlier: false,
        breaker: { failureThreshold: 2, resetTimeoutMs: 60_000 },
      },
    },
    routes: [{ name: 'dead', path: '/dead/**', service: 'dead' }],
    metrics: { path: '/metrics' },
  });
  const before = await scrape(`${g.url}/metrics`);
  expect(
    before.value('gateway_circuit_breaker_state', { service: 'dead', route: '' }) ??
      before.value('gateway_circuit_breaker_state', { service: 'dead' }),
  ).toBe(0);
  for (let i = 0; i < 2; i++) expect((await send(`${g.url}/dead/${i}`)).status).toBe(502);
  await waitFor(() => g.gateway.breaker('dead')!.state.kind === 'open');
  const open = await send(`${g.url}/dead/again`);
  expect(open.status).toBe(503);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'gateway_requests_total') >= 3;
  });
  const state = s.all('gateway_circuit_breaker_state', { service: 'dead' });
  expect(state.map((x) => x.value)).toEqual([1]);
  expect(sum(s, 'gateway_circuit_breaker_transitions_total', { service: 'dead' })).toBe(1);
  expect(sum(s, 'gateway_upstream_errors_total', { service: 'dead' })).toBeGreaterThanOrEqual(2);
  for (const e of s.all('gateway_upstream_errors_total', { service: 'dead' })) {
    expect(e.labels.kind).toMatch(/^[a-z-]+$/);
  }
});

test('upstream_health is 0 for a target failing its health check, 1 for a passing one', async () => {
  const good = await listen((_req, res) => res.writeHead(200).end('ok'));
  closers.push(() => good.close());
  const bad = await listen((_req, res) => res.writeHead(503).end());
  closers.push(() => bad.close());
  const g = await gatewayOf({
    services: {
      pool: {
        targets: [good.url, bad.url],
        healthCheck: {
          path: '/healthz',
          intervalMs: 50,
          timeoutMs: 50,
          healthyThreshold: 1,
          unhealthyThreshold: 1,
        },
      },
    },
    routes: [{ path: '/pool/**', service: 'pool' }],
    metrics: { path: '/metrics' },
  });
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    const rows = s.all('gateway_upstream_health', { service: 'pool' });
    return rows.length === 2 && rows.some((r) => r.value === 0);
  });
  const rows = s.all('gateway_upstream_health', { service: 'pool' });
  const byPort = (p: number) => rows.find((r) => r.labels.target!.includes(`:${p}`))!.value;
  expect(byPort(good.port)).toBe(1);
  expect(byPort(bad.port)).toBe(0);
});

test('rate_limit_total{route,result} and retries_total{service,reason}', async () => {
  const up = await upstream();
  const port = await deadPort();
  const g = await gatewayOf({
    services: {
      users: { targets: [up.url] },
      flaky: {
        targets: [`http://127.0.0.1:${port}`, up.url],
        balancer: 'round-robin',
        outlier: false,
        retries: { attempts: 2 },
      },
    },
    routes: [
      {
        name: 'limited',
        path: '/limited/**',
        service: 'users',
        rateLimit: { limit: 2, windowMs: 60_000 },
      },
      { name: 'flaky', path: '/flaky/**', service: 'flaky' },
    ],
    metrics: { path: '/metrics' },
  });
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await send(`${g.url}/limited/${i}`)).status);
  expect(statuses).toEqual([200, 200, 429]);
  // Requests over round-robin: those that start on the dead target are retried.
  const retried: string[] = [];
  closers.push(g.gateway.onRetry(() => void retried.push('retry')));
  for (let i = 0; i < 4; i++) expect((await send(`${g.url}/flaky/${i}`)).status).toBe(200);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'gateway_requests_total') >= 7;
  });
  expect(s.value('gateway_rate_limit_total', { route: 'limited', result: 'allowed' })).toBe(2);
  expect(s.value('gateway_rate_limit_total', { route: 'limited', result: 'limited' })).toBe(1);
  expect(retried.length).toBeGreaterThanOrEqual(1);
  expect(sum(s, 'gateway_retries_total', { service: 'flaky' })).toBe(retried.length);
  for (const r of s.all('gateway_retries_total', { service: 'flaky' })) {
    expect(r.labels.reason).toMatch(/^[a-z0-9-]+$/);
  }
  expect(sum(s, 'gateway_upstream_errors_total', { service: 'flaky' })).toBe(retried.length);
});

test('standalone createMetrics() counts a plain Express app, by route pattern, in its own registry', async () => {
  const registry = new Registry();
  const metrics = createMetrics({ prefix: 'app_', registry, buckets: [0.5, 5] });
  const app = express();
  app.use(metrics.middleware);
  app.get('/items/:id', (_req, res) => {
    res.send('item!');
  });
  app.get('/metrics', metrics.handler);
  const srv = await listen(http.createServer(app));
  closers.push(() => srv.close());
  for (const id of ['a', 'b', 'c']) expect((await send(`${srv.url}/items/${id}`)).status).toBe(200);
  expect((await send(`${srv.url}/nope/x`)).status).toBe(404);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${srv.url}/metrics`);
    return (
      sum(s, 'app_requests_total', { method: 'GET', status: '200' }) >= 3 &&
      sum(s, 'app_requests_total', { status: '404' }) >= 1
    );
  });
  const ok = s.all('app_requests_total', { method: 'GET', status: '200' });
  expect(ok).toHaveLength(1);
  expect(ok[0]!.value).toBe(3);
  expect(ok[0]!.labels.route).not.toMatch(/\/items\/[abc]/);
  expect(ok[0]!.labels.route).toContain(':id');
  expect(s.value('app_requests_total', { status: '404' })).toBe(1);
  for (const sample of s.samples) {
    for (const v of Object.values(sample.labels)) expect(v).not.toMatch(/\/nope\/x/);
  }
  const les = s
    .all('app_request_duration_seconds_bucket', { method: 'GET', route: ok[0]!.labels.route! })
    .map((b) => b.labels.le);
  expect(les).toEqual(['0.5', '5', '+Inf']);
  // Its own registry, no collision with a second instance in another registry.
  expect(() => createMetrics({ prefix: 'app_' })).not.toThrow();
  expect(globalRegister.getSingleMetric('app_requests_total')).toBeUndefined();
});

// ---------------------------------------------------------------------------------------------
// 4. Access log
// ---------------------------------------------------------------------------------------------

describe('access log with a winston logger', () => {
  test('one line per request with every field, and no credential anywhere', async () => {
    const up = await upstream();
    const mem = memoryWinston();
    const g = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ name: 'users', path: '/users/**', service: 'users' }],
      auth: { apiKeys: { keys: [{ key: 'k-very-secret-api-key', consumer: 'alice' }] } },
      accessLog: { logger: mem.logger, query: true, redactQuery: ['mysecret'] },
      tracing: true,
    });
    const res = await send(
      `${g.url}/users/7?page=2&token=tok-in-query&mysecret=hush-hush&ApiKey=qkey-value`,
      {
        method: 'POST',
        body: 'abcdefghijk',
        headers: {
          'x-api-key': 'k-very-secret-api-key',
          authorization: 'Bearer bearer-should-not-appear',
          cookie: 'sid=cookie-should-not-appear',
          traceparent: `00-${TRACE}-${PARENT}-01`,
          'x-request-id': 'req-abc-123',
        },
      },
    );
    expect(res.status).toBe(201);
    await waitFor(() => mem.lines().length >= 1);
    const lines = mem.lines();
    expect(lines).toHaveLength(1);
    const e = lines[0]!;
    expect(typeof e.time).toBe('string');
    expect(new Date(e.time as string).toISOString()).toBe(e.time);
    expect(e.requestId).toBe('req-abc-123');
    expect(e.traceId).toBe(TRACE);
    expect(e.method).toBe('POST');
    expect(e.path).toMatch(/^\/api\/users\/7\?/);
    expect(e.path).toContain('page=2');
    expect(e.route).toBe('users');
    expect(e.service).toBe('users');
    expect(e.target).toContain(String(up.port));
    expect(e.status).toBe(201);
    expect(typeof e.outcome).toBe('string');
    expect(typeof e.durationMs).toBe('number');
    expect(typeof e.upstreamMs).toBe('number');
    expect(e.upstreamMs as number).toBeLessThanOrEqual(e.durationMs as number);
    expect(e.bytesIn).toBe(11);
    expect(e.bytesOut).toBe(4);
    expect(String(e.client)).toMatch(/127\.0\.0\.1/);
    expect(e.subject).toBe('alice');
    const text = JSON.stringify(e);
    for (const secret of [
      'k-very-secret-api-key',
      'bearer-should-not-appear',
      'cookie-should-not-appear',
      'tok-in-query',
      'hush-hush',
      'qkey-value',
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  test('by default the path is logged without its query', async () => {
    const up = await upstream();
    const mem = memoryWinston();
    const g = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ path: '/users/**', service: 'users' }],
      accessLog: { logger: mem.logger },
    });
    await send(`${g.url}/users/9?q=visible-or-not&x=1`);
    await waitFor(() => mem.lines().length >= 1);
    const e = mem.lines()[0]!;
    expect(e.path).toBe('/api/users/9');
    expect(e.route).toBe('/users/**');
    expect(JSON.stringify(e)).not.toContain('visible-or-not');
  });

  test('a 404 and a refused path are logged too, with route ""', async () => {
    const up = await upstream();
    const mem = memoryWinston();
    const g = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ path: '/users/**', service: 'users' }],
      accessLog: { logger: mem.logger },
    });
    expect((await send(`${g.url}/not/here`)).status).toBe(404);
    const bad = await rawGet(g.running.port, '/api/users/%2e%2e/etc');
    expect(bad).toBeGreaterThanOrEqual(400);
    expect(bad).toBeLessThan(500);
    await waitFor(() => mem.lines().length >= 2);
    const lines = mem.lines();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ status: 404, route: '', path: '/api/not/here' });
    expect(lines[1]).toMatchObject({ status: bad, route: '' });
    expect(up.seen).toHaveLength(0);
  });

  test('sampleRate 0 logs no success but still logs a 5xx; sampleRate 1 logs every request', async () => {
    const up = await upstream();
    const mem0 = memoryWinston();
    const mem1 = memoryWinston();
    const base = {
      services: { users: { targets: [up.url], retries: false as const } },
      routes: [{ path: '/users/**', service: 'users' }],
    };
    const g0 = await gatewayOf({ ...base, accessLog: { logger: mem0.logger, sampleRate: 0 } });
    const g1 = await gatewayOf({ ...base, accessLog: { logger: mem1.logger, sampleRate: 1 } });
    for (let i = 0; i < 5; i++) {
      await send(`${g0.url}/users/${i}`);
      await send(`${g1.url}/users/${i}`);
    }
    await send(`${g0.url}/users/fail`);
    await waitFor(() => mem0.lines().length >= 1 && mem1.lines().length >= 5);
    // The 5xx is the last request; once it is logged, the successes before it would be too.
    expect(mem0.lines().map((l) => l.status)).toEqual([500]);
    expect(mem1.lines()).toHaveLength(5);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Trace context
// ---------------------------------------------------------------------------------------------

describe('W3C trace context', () => {
  let up: Awaited<ReturnType<typeof upstream>>;
  let g: GatewayHarness;
  beforeEach(async () => {
    up = await upstream();
    g = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ path: '/users/**', service: 'users' }],
      tracing: { opentelemetry: false },
    });
  });

  test('a valid traceparent keeps its trace; upstream gets a new span id; tracestate is passed on', async () => {
    await send(`${g.url}/users/1`, {
      headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=abc,other=x' },
    });
    const h = up.seen[0]!.headers;
    const m = TRACEPARENT_RE.exec(String(h.traceparent));
    expect(m).not.toBeNull();
    expect(m![1]).toBe(TRACE);
    expect(m![2]).not.toBe(PARENT);
    expect(m![2]).not.toBe('0000000000000000');
    expect(m![3]).toBe('01');
    expect(h.tracestate).toBe('vendor=abc,other=x');
  });

  test.each([
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['upper-case hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['too short', `00-${TRACE.slice(1)}-${PARENT}-01`],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['garbage', 'not-a-traceparent'],
  ])('an invalid traceparent (%s) is replaced by a new trace', async (_name, value) => {
    await send(`${g.url}/users/1`, { headers: { traceparent: value, tracestate: 'vendor=abc' } });
    const h = up.seen[0]!.headers;
    const m = TRACEPARENT_RE.exec(String(h.traceparent));
    expect(m).not.toBeNull();
    expect(m![1]).not.toBe(TRACE);
    expect(m![1]).not.toBe('0'.repeat(32));
    expect(h.traceparent).not.toBe(value);
    // W3C: with an invalid traceparent the tracestate is discarded.
    expect(h.tracestate).toBeUndefined();
  });

  test('without a traceparent each request starts its own trace', async () => {
    await send(`${g.url}/users/1`);
    await send(`${g.url}/users/2`);
    const ids = up.seen.map((x) => TRACEPARENT_RE.exec(String(x.headers.traceparent))?.[1]);
    expect(ids[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(ids[1]).toMatch(/^[0-9a-f]{32}$/);
    expect(ids[0]).not.toBe(ids[1]);
  });

  test('problem bodies (application/problem+json) carry the trace id, the same as in the log', async () => {
    const port = await deadPort();
    const mem = memoryWinston();
    const gd = await gatewayOf({
      services: { dead: { targets: [`http://127.0.0.1:${port}`], retries: false } },
      routes: [{ path: '/dead/**', service: 'dead' }],
      tracing: true,
      accessLog: { logger: mem.logger },
    });
    const r = await send(`${gd.url}/dead/x`, {
      headers: { traceparent: `00-${TRACE}-${PARENT}-01` },
    });
    expect(r.status).toBe(502);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(r.body)).toMatchObject({ traceId: TRACE });
    const nf = await send(`${gd.url}/nothing`);
    expect(nf.status).toBe(404);
    expect(nf.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const nfTrace = (JSON.parse(nf.body) as { traceId?: string }).traceId;
    expect(nfTrace).toMatch(/^[0-9a-f]{32}$/);
    await waitFor(() => mem.lines().length >= 2);
    expect(mem.lines().map((l) => l.traceId)).toEqual([TRACE, nfTrace]);
  });

  test("OpenTelemetry spans: one server span and one client span in the caller's trace", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    expect(trace.setGlobalTracerProvider(provider)).toBe(true);
    closers.push(() => trace.disable());
    const go = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ path: '/users/**', service: 'users' }],
      tracing: true,
    });
    await send(`${go.url}/users/1`, { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } });
    await waitFor(() => exporter.getFinishedSpans().length >= 2);
    const spans = exporter.getFinishedSpans();
    const server = spans.filter((x) => x.kind === SpanKind.SERVER);
    const client = spans.filter((x) => x.kind === SpanKind.CLIENT);
    expect(server).toHaveLength(1);
    expect(client).toHaveLength(1);
    expect(server[0]!.spanContext().traceId).toBe(TRACE);
    expect(client[0]!.spanContext().traceId).toBe(TRACE);
    // The upstream saw the client span as its parent.
    const sent = TRACEPARENT_RE.exec(String(up.seen[0]!.headers.traceparent))!;
    expect(sent[2]).toBe(client[0]!.spanContext().spanId);
  });
});

// ---------------------------------------------------------------------------------------------
// 6. Request id unchanged
// ---------------------------------------------------------------------------------------------

test('X-Request-ID: a safe one is kept and sent upstream; an unsafe or missing one is generated', async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: true,
    accessLog: { logger: memoryWinston().logger },
    tracing: { opentelemetry: false },
  });
  const kept = await send(`${g.url}/users/1`, { headers: { 'x-request-id': 'abc.DEF_123-x' } });
  expect(kept.headers.get('x-request-id')).toBe('abc.DEF_123-x');
  expect(up.seen[0]!.headers['x-request-id']).toBe('abc.DEF_123-x');
  const unsafe = await send(`${g.url}/users/2`, { headers: { 'x-request-id': 'bad id<script>' } });
  const generated = unsafe.headers.get('x-request-id');
  expect(generated).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
  expect(generated).not.toBe('bad id<script>');
  expect(up.seen[1]!.headers['x-request-id']).toBe(generated);
  const none = await send(`${g.url}/users/3`);
  expect(none.headers.get('x-request-id')).toMatch(/^[A-Za-z0-9._-]{1,128}$/);
  expect(none.headers.get('x-request-id')).not.toBe(generated);
  // The problem body carries it too.
  const nf = await send(`${g.url}/missing`, { headers: { 'x-request-id': 'rid-404' } });
  expect(nf.headers.get('x-request-id')).toBe('rid-404');
  expect(nf.body).toContain('rid-404');
});

// ---------------------------------------------------------------------------------------------
// 7. stats()
// ---------------------------------------------------------------------------------------------

describe('gateway.stats() and {health.path}/stats', () => {
  test('numbers match the requests sent; health and breaker state per service', async () => {
    const up = await upstream();
    const g = await gatewayOf({
      services: {
        users: {
          targets: [up.url],
          retries: false,
          breaker: { failureThreshold: 50, resetTimeoutMs: 1000 },
        },
        other: { targets: [up.url] },
      },
      routes: [
        { name: 'users', path: '/users/**', service: 'users' },
        { name: 'other', path: '/other/**', service: 'other' },
      ],
      metrics: true,
      health: { details: true },
    });
    for (let i = 0; i < 3; i++) await send(`${g.url}/users/${i}`);
    await send(`${g.url}/users/fail`);
    for (let i = 0; i < 2; i++) await send(`${g.url}/other/${i}`);
    await eventually(async () => {
      const st = await g.gateway.stats();
      return st.routes.users?.requests === 4 && st.routes.other?.requests === 2;
    });
    const st = await g.gateway.stats();
    expect(JSON.parse(JSON.stringify(st))).toEqual(st);
    expect(st.routes.users).toMatchObject({ service: 'users', requests: 4, errors: 1 });
    expect(st.routes.other).toMatchObject({ service: 'other', requests: 2, errors: 0 });
    const lat = st.routes.users!.latencyMs!;
    expect(lat).not.toBeNull();
    expect(lat.p50).toBeGreaterThan(0);
    expect(lat.p50).toBeLessThanOrEqual(lat.p90);
    expect(lat.p90).toBeLessThanOrEqual(lat.p99);
    expect(st.services.users).toMatchObject({
      requests: 4,
      errors: 1,
      ready: true,
      breaker: 'closed',
    });
    expect(st.services.other).toMatchObject({ requests: 2, errors: 0, ready: true, breaker: null });
    expect(st.services.users!.targets).toHaveLength(1);

    const served = await send(`${g.url}/health/stats`);
    expect(served.status).toBe(200);
    expect(served.headers.get('content-type')).toMatch(/json/);
    const body = JSON.parse(served.body) as typeof st;
    expect(body.routes.users).toMatchObject({ requests: 4, errors: 1 });
    expect(body.services.other).toMatchObject({ requests: 2, ready: true });
  });

  test('a route with no traffic yet: zero requests and null latency', async () => {
    const up = await upstream();
    const g = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ name: 'idle', path: '/idle/**', service: 'users' }],
      metrics: true,
    });
    const st = await g.gateway.stats();
    expect(st.routes.idle).toMatchObject({
      service: 'users',
      requests: 0,
      errors: 0,
      latencyMs: null,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Second batch: units, in-flight, auth, half-open, sampling, any Logger
// ---------------------------------------------------------------------------------------------

/** An upstream that answers 200 "slow" after `ms` (a timer in the upstream, not in the test). */
async function slowUpstream(ms: number): Promise<{ url: string; port: number }> {
  const u = await listen((req, res) => {
    req.resume();
    setTimeout(() => res.writeHead(200).end('slow'), ms);
  });
  closers.push(() => u.close());
  return u;
}

test('durations are in seconds: a 150 ms upstream lands between le=0.1 and le=0.25; stats in ms', async () => {
  const up = await slowUpstream(150);
  const g = await gatewayOf({
    services: { slow: { targets: [up.url] } },
    routes: [{ name: 'slow', path: '/slow/**', service: 'slow' }],
    metrics: { path: '/metrics' },
  });
  for (let i = 0; i < 3; i++) expect((await send(`${g.url}/slow/${i}`)).status).toBe(200);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'gateway_requests_total') >= 3;
  });
  const req = { method: 'GET', route: 'slow', service: 'slow' };
  expect(s.value('gateway_request_duration_seconds_bucket', { ...req, le: '0.1' })).toBe(0);
  expect(s.value('gateway_request_duration_seconds_bucket', { ...req, le: '0.25' })).toBe(3);
  const sumSec = s.value('gateway_request_duration_seconds_sum', req)!;
  expect(sumSec).toBeGreaterThanOrEqual(0.45);
  expect(sumSec).toBeLessThan(0.75);
  const ups = s.all('gateway_upstream_duration_seconds_bucket', { service: 'slow', le: '0.1' });
  expect(ups.map((x) => x.value)).toEqual([0]);
  const up25 = s.all('gateway_upstream_duration_seconds_bucket', { service: 'slow', le: '0.25' });
  expect(up25.map((x) => x.value)).toEqual([3]);
  const st = await g.gateway.stats();
  const lat = st.routes.slow!.latencyMs!;
  expect(lat.p50).toBeGreaterThanOrEqual(100);
  expect(lat.p99).toBeLessThanOrEqual(250);
});

test('upstream_in_flight counts a call held at the upstream, and drops back to 0', async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let arrived = 0;
  const up = await listen((req, res) => {
    arrived++;
    req.resume();
    void held.then(() => res.writeHead(200).end('ok'));
  });
  closers.push(() => up.close());
  closers.push(() => release());
  const g = await gatewayOf({
    services: { held: { targets: [up.url] } },
    routes: [{ path: '/held/**', service: 'held' }],
    metrics: { path: '/metrics' },
  });
  const pending = [send(`${g.url}/held/1`), send(`${g.url}/held/2`)];
  await waitFor(() => arrived === 2);
  const during = await scrape(`${g.url}/metrics`);
  expect(during.all('gateway_upstream_in_flight', { service: 'held' }).map((x) => x.value)).toEqual(
    [2],
  );
  release();
  await Promise.all(pending);
  await eventually(async () => {
    const after = await scrape(`${g.url}/metrics`);
    return after.value('gateway_upstream_in_flight', { service: 'held' }) === 0;
  });
});

test('auth_total{route,method,result}: allowed, missing and refused API keys', async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ name: 'users', path: '/users/**', service: 'users' }],
    auth: { apiKeys: { keys: [{ key: 'good-key-1234567890', consumer: 'bob' }] } },
    metrics: { path: '/metrics' },
  });
  expect(
    (await send(`${g.url}/users/1`, { headers: { 'x-api-key': 'good-key-1234567890' } })).status,
  ).toBe(200);
  expect((await send(`${g.url}/users/2`)).status).toBe(401);
  expect(
    (await send(`${g.url}/users/3`, { headers: { 'x-api-key': 'wrong-key-1234567890' } })).status,
  ).toBe(401);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'gateway_requests_total') >= 3;
  });
  const rows = s.all('gateway_auth_total', { route: 'users' });
  const by = (result: string) =>
    rows.filter((r) => r.labels.result === result).reduce((a, r) => a + r.value, 0);
  expect(by('allowed')).toBe(1);
  expect(by('missing')).toBe(1);
  expect(by('refused')).toBe(1);
  expect(rows.find((r) => r.labels.result === 'allowed')!.labels.method).toBe('api-key');
  expect(s.value('gateway_requests_total', { route: 'users', status: '401' })).toBe(2);
});

test('circuit_breaker_state reads 2 while half-open (a probe in flight), then 0 once closed', async () => {
  let failing = true;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let probes = 0;
  const up = await listen((req, res) => {
    req.resume();
    if (failing) return void res.writeHead(503).end();
    probes++;
    void held.then(() => res.writeHead(200).end('ok'));
  });
  closers.push(() => up.close());
  closers.push(() => release());
  const g = await gatewayOf({
    services: {
      svc: {
        targets: [up.url],
        retries: false,
        outlier: false,
        breaker: { failureThreshold: 2, resetTimeoutMs: 100 },
      },
    },
    routes: [{ path: '/svc/**', service: 'svc' }],
    metrics: { path: '/metrics' },
  });
  const transitions: string[] = [];
  closers.push(g.gateway.onBreakerStateChange((e) => void transitions.push(e.state.kind)));
  for (let i = 0; i < 2; i++) await send(`${g.url}/svc/${i}`);
  await waitFor(() => g.gateway.breaker('svc')!.state.kind === 'open');
  expect(
    (await scrape(`${g.url}/metrics`))
      .all('gateway_circuit_breaker_state', { service: 'svc' })
      .map((x) => x.value),
  ).toEqual([1]);
  failing = false;
  // After the reset time a request is let through as the probe.
  let probe: Promise<unknown> | undefined;
  const deadline = Date.now() + 5000;
  while (probes === 0) {
    if (Date.now() > deadline) throw new Error('no probe reached the upstream');
    const r = send(`${g.url}/svc/probe`);
    await Promise.race([r, new Promise((res) => setTimeout(res, 20))]);
    if (probes > 0) probe = r;
  }
  const half = await scrape(`${g.url}/metrics`);
  expect(half.all('gateway_circuit_breaker_state', { service: 'svc' }).map((x) => x.value)).toEqual(
    [2],
  );
  release();
  await probe;
  await waitFor(() => g.gateway.breaker('svc')!.state.kind === 'closed');
  const closed = await scrape(`${g.url}/metrics`);
  expect(
    closed.all('gateway_circuit_breaker_state', { service: 'svc' }).map((x) => x.value),
  ).toEqual([0]);
  expect(sum(closed, 'gateway_circuit_breaker_transitions_total', { service: 'svc' })).toBe(
    transitions.length,
  );
  expect(transitions).toEqual(['open', 'half-open', 'closed']);
});

test('sampleRate 0.5 logs roughly half of 200 successes; any Logger object works', async () => {
  const up = await upstream();
  const entries: { message: string; meta?: Record<string, unknown> }[] = [];
  const logger = {
    error: () => {},
    warn: () => {},
    debug: () => {},
    info: (message: string, meta?: Record<string, unknown>) => void entries.push({ message, meta }),
  };
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    accessLog: { logger, sampleRate: 0.5 },
  });
  for (let i = 0; i < 200; i++) await send(`${g.url}/users/${i}`);
  // A last 5xx is always logged: once it is there, every sampled success before it is too.
  await send(`${g.url}/users/fail`);
  await waitFor(() => entries.some((e) => e.meta?.status === 500));
  const ok = entries.filter((e) => e.meta?.status === 200);
  expect(ok.length).toBeGreaterThan(55);
  expect(ok.length).toBeLessThan(145);
  expect(entries[0]!.meta).toMatchObject({ route: '/users/**', service: 'users' });
});

test('a client that leaves mid-request is logged (always) and counted as an error in stats', async () => {
  let arrived = 0;
  const up = await listen((req) => {
    arrived++;
    req.resume(); // never answers
  });
  closers.push(() => up.close());
  const mem = memoryWinston();
  const g = await gatewayOf({
    services: { hang: { targets: [up.url], retries: false } },
    routes: [{ name: 'hang', path: '/hang/**', service: 'hang' }],
    metrics: true,
    accessLog: { logger: mem.logger, sampleRate: 0 },
  });
  const req = http.request(`${g.url}/hang/1`, { agent: false });
  req.on('error', () => {});
  req.end();
  await waitFor(() => arrived === 1);
  req.destroy();
  await waitFor(() => mem.lines().length === 1);
  expect(mem.lines()[0]).toMatchObject({ route: 'hang', service: 'hang' });
  await eventually(async () => (await g.gateway.stats()).routes.hang?.requests === 1);
  expect((await g.gateway.stats()).routes.hang).toMatchObject({ requests: 1, errors: 1 });
});

test('each upstream call of a retried request gets its own span id, in the same trace', async () => {
  let calls = 0;
  const parents: string[] = [];
  const up = await listen((req, res) => {
    req.resume();
    parents.push(String(req.headers.traceparent));
    if (calls++ === 0) res.writeHead(503).end();
    else res.writeHead(200).end('ok');
  });
  closers.push(() => up.close());
  const g = await gatewayOf({
    services: { svc: { targets: [up.url], retries: { attempts: 2 }, outlier: false } },
    routes: [{ path: '/svc/**', service: 'svc' }],
    tracing: { opentelemetry: false },
  });
  expect(
    (await send(`${g.url}/svc/1`, { headers: { traceparent: `00-${TRACE}-${PARENT}-00` } })).status,
  ).toBe(200);
  expect(parents).toHaveLength(2);
  const parsed = parents.map((p) => TRACEPARENT_RE.exec(p)!);
  expect(parsed.map((m) => m[1])).toEqual([TRACE, TRACE]);
  expect(parsed.map((m) => m[3])).toEqual(['00', '00']);
  expect(parsed[0]![2]).not.toBe(parsed[1]![2]);
  expect(parsed.map((m) => m[2])).not.toContain(PARENT);
});

test('chunked request bodies are counted by their bytes in request_bytes and the access log', async () => {
  const up = await upstream();
  const mem = memoryWinston();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ name: 'users', path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics' },
    accessLog: { logger: mem.logger },
  });
  await new Promise<void>((resolve, reject) => {
    const req = http.request(`${g.url}/users/new`, { method: 'POST', agent: false }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.write('a'.repeat(300));
    req.write('b'.repeat(200));
    req.end();
  });
  await waitFor(() => mem.lines().length === 1);
  expect(mem.lines()[0]).toMatchObject({ bytesIn: 500, bytesOut: 4, status: 201 });
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return s.value('gateway_request_bytes_count', { route: 'users' }) === 1;
  });
  expect(s.value('gateway_request_bytes_sum', { route: 'users' })).toBe(500);
  expect(s.value('gateway_response_bytes_sum', { route: 'users' })).toBe(4);
});

test("problem bodies of the gateway's own refusals (429, 401) carry the trace id", async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [
      {
        path: '/limited/**',
        service: 'users',
        rateLimit: { limit: 1, windowMs: 60_000 },
        auth: false,
      },
      { path: '/secure/**', service: 'users' },
    ],
    auth: { apiKeys: { keys: [{ key: 'good-key-1234567890', consumer: 'bob' }] } },
    tracing: { opentelemetry: false },
  });
  const tp = { traceparent: `00-${TRACE}-${PARENT}-01` };
  await send(`${g.url}/limited/1`, { headers: tp });
  const limited = await send(`${g.url}/limited/2`, { headers: tp });
  expect(limited.status).toBe(429);
  expect(limited.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(limited.body)).toMatchObject({ traceId: TRACE });
  const unauth = await send(`${g.url}/secure/1`, { headers: tp });
  expect(unauth.status).toBe(401);
  expect(unauth.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(unauth.body)).toMatchObject({ traceId: TRACE });
});

test('upstream_ejections_total counts a target ejected by passive health', async () => {
  const bad = await listen((req, res) => {
    req.resume();
    res.writeHead(503).end();
  });
  closers.push(() => bad.close());
  const good = await upstream();
  const g = await gatewayOf({
    services: {
      pool: {
        targets: [bad.url, good.url],
        retries: false,
        outlier: { consecutiveFailures: 2 },
      },
    },
    routes: [{ path: '/pool/**', service: 'pool' }],
    metrics: { path: '/metrics' },
  });
  const ejected: string[] = [];
  closers.push(g.gateway.onEject((e) => void ejected.push(e.service)));
  for (let i = 0; i < 10 && ejected.length === 0; i++) await send(`${g.url}/pool/${i}`);
  expect(ejected).toHaveLength(1);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'gateway_upstream_ejections_total') >= 1;
  });
  const rows = s
    .all('gateway_upstream_ejections_total', { service: 'pool' })
    .filter((r) => r.value > 0);
  expect(rows).toHaveLength(1);
  expect(rows[0]!.labels.target).toContain(String(bad.port));
  expect(rows[0]!.value).toBe(1);
});

// ---------------------------------------------------------------------------------------------
// Third batch: what the gateway answers itself, proxies, hedges, spans, stats without metrics
// ---------------------------------------------------------------------------------------------

test('an unrouted 404 has a real duration, in the access log and in request_duration_seconds', async () => {
  const up = await upstream();
  const mem = memoryWinston();
  const g = await gatewayOf({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics' },
    accessLog: { logger: mem.logger },
  });
  for (let i = 0; i < 3; i++) expect((await send(`${g.url}/nowhere/${i}`)).status).toBe(404);
  await waitFor(() => mem.lines().length === 3);
  const s = await scrape(`${g.url}/metrics`);
  expect(s.value('gateway_request_duration_seconds_count', { route: '' })).toBe(3);
  expect({
    loggedDurationsPositive: mem.lines().map((l) => (l.durationMs as number) > 0),
    histogramSumPositive: s.value('gateway_request_duration_seconds_sum', { route: '' })! > 0,
  }).toEqual({ loggedDurationsPositive: [true, true, true], histogramSumPositive: true });
});

test('access log client: the X-Forwarded-For address only when the proxy is trusted', async () => {
  const up = await upstream();
  const trusted = memoryWinston();
  const untrusted = memoryWinston();
  const base = {
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
  };
  const g1 = await gatewayOf({ ...base, trustProxy: 1, accessLog: { logger: trusted.logger } });
  const g2 = await gatewayOf({ ...base, accessLog: { logger: untrusted.logger } });
  const xff = { 'x-forwarded-for': '203.0.113.7' };
  await send(`${g1.url}/users/1`, { headers: xff });
  await send(`${g2.url}/users/1`, { headers: xff });
  await waitFor(() => trusted.lines().length === 1 && untrusted.lines().length === 1);
  expect(trusted.lines()[0]!.client).toBe('203.0.113.7');
  expect(String(untrusted.lines()[0]!.client)).toMatch(/127\.0\.0\.1/);
});

test('a retried request is logged once, with the target that answered and its retries', async () => {
  const up = await upstream();
  const port = await deadPort();
  const dead = `http://127.0.0.1:${port}`;
  const mem = memoryWinston();
  const g = await gatewayOf({
    services: {
      svc: { targets: [dead, up.url], outlier: false, retries: { attempts: 2 } },
    },
    routes: [{ path: '/svc/**', service: 'svc' }],
    accessLog: { logger: mem.logger },
  });
  const retried: number[] = [];
  closers.push(g.gateway.onRetry(() => void retried.push(1)));
  for (let i = 0; i < 4; i++) expect((await send(`${g.url}/svc/${i}`)).status).toBe(200);
  await waitFor(() => mem.lines().length === 4);
  const lines = mem.lines();
  for (const l of lines) expect(String(l.target)).toContain(String(up.port));
  expect(lines.reduce((a, l) => a + (l.retries as number), 0)).toBe(retried.length);
  expect(retried.length).toBeGreaterThanOrEqual(1);
});

test('hedges_total counts a hedge sent to a second target', async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const slow = await listen((req, res) => {
    req.resume();
    void held.then(() => res.writeHead(200).end('slow'));
  });
  closers.push(() => slow.close());
  closers.push(() => release());
  const fast = await upstream();
  const g = await gatewayOf({
    services: { svc: { targets: [slow.url, fast.url], balancer: 'round-robin' } },
    routes: [{ name: 'h', path: '/h/**', service: 'svc', hedge: { afterMs: 30 } }],
    metrics: { path: '/metrics' },
  });
  const hedged: number[] = [];
  closers.push(g.gateway.onHedge(() => void hedged.push(1)));
  // Round-robin: the requests that start on the slow target are hedged onto the fast one.
  const r1 = await send(`${g.url}/h/1`);
  const r2 = await send(`${g.url}/h/2`);
  expect([r1.status, r2.status]).toEqual([200, 200]);
  expect(hedged.length).toBeGreaterThanOrEqual(1);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${g.url}/metrics`);
    return sum(s, 'gateway_requests_total') >= 2;
  });
  expect(s.value('gateway_hedges_total', { service: 'svc' })).toBe(hedged.length);
  release();
});

test('two gateways with defaultMetrics in one process both serve process metrics', async () => {
  const up = await upstream();
  const config = (): GatewayConfig => ({
    services: { users: { targets: [up.url] } },
    routes: [{ path: '/users/**', service: 'users' }],
    metrics: { path: '/metrics', defaultMetrics: true },
  });
  const g1 = await gatewayOf(config());
  const g2 = await gatewayOf(config());
  for (const g of [g1, g2]) {
    const text = await (await fetch(`${g.url}/metrics`)).text();
    const s = parseScrape(text.replace(/ Nan$/gm, ' NaN'));
    expect(s.value('gateway_process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
  }
});

test('OpenTelemetry: the server span is a child of the caller, a failed call is an error', async () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  expect(trace.setGlobalTracerProvider(provider)).toBe(true);
  closers.push(() => trace.disable());
  const port = await deadPort();
  const g = await gatewayOf({
    services: { dead: { targets: [`http://127.0.0.1:${port}`], retries: false } },
    routes: [{ path: '/dead/**', service: 'dead' }],
    tracing: true,
  });
  const r = await send(`${g.url}/dead/1`, { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } });
  expect(r.status).toBe(502);
  await waitFor(() => exporter.getFinishedSpans().some((x) => x.kind === SpanKind.SERVER));
  const server = exporter.getFinishedSpans().find((x) => x.kind === SpanKind.SERVER)!;
  expect(server.spanContext().traceId).toBe(TRACE);
  expect(server.parentSpanContext?.spanId).toBe(PARENT);
  expect(server.status.code).toBe(2); // SpanStatusCode.ERROR
});

test('stats() without metrics: routes and services with health and breaker, no counts', async () => {
  const up = await upstream();
  const g = await gatewayOf({
    services: {
      users: { targets: [up.url], breaker: { failureThreshold: 5, resetTimeoutMs: 1000 } },
    },
    routes: [{ name: 'users', path: '/users/**', service: 'users' }],
    health: true,
  });
  await send(`${g.url}/users/1`);
  const st = await g.gateway.stats();
  expect(st.routes.users).toEqual({ service: 'users' });
  expect(st.services.users).toMatchObject({ ready: true, breaker: 'closed' });
  expect(st.services.users!.requests).toBeUndefined();
  // Without health details, {health.path}/stats is not served.
  expect((await send(`${g.url}/health/stats`)).status).toBe(404);
});

test("standalone middleware: a nested router's route is labelled by its own pattern (the mount's path is the client's)", async () => {
  const metrics = createMetrics();
  const app = express();
  app.use(metrics.middleware);
  const v1 = express.Router();
  v1.get('/items/:id', (_req, res) => {
    res.json({ ok: true });
  });
  app.use('/v1', v1);
  app.get('/metrics', metrics.handler);
  const srv = await listen(http.createServer(app));
  closers.push(() => srv.close());
  await send(`${srv.url}/v1/items/1`);
  await send(`${srv.url}/v1/items/2`);
  let s!: Scrape;
  await eventually(async () => {
    s = await scrape(`${srv.url}/metrics`);
    return sum(s, 'gateway_requests_total', { status: '200' }) >= 2;
  });
  expect(s.value('gateway_requests_total', { route: '/items/:id', status: '200' })).toBe(2);
});
