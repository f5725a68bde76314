import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import jwt from 'jsonwebtoken';
import { Registry } from 'prom-client';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import { createMetrics } from '@turnpike/metrics';
import {
  listen,
  startEcho,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import { closersAfterEach } from './helpers/outcomes';
import { configErrorOf } from './helpers/expectations';
import { deadPort } from './helpers/upstreams';
import { eventually, parseScrape, scrape, type Scrape } from './helpers/prometheus';

const closers = closersAfterEach();

async function upstream(
  answer: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Running> {
  const u = await listen(answer);
  closers.push(() => u.close());
  return u;
}

async function gatewayOf(config: GatewayConfig): Promise<GatewayHarness> {
  const g = await startGateway(config);
  closers.push(() => g.close());
  return g;
}

async function send(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init);
  await res.arrayBuffer();
  return res.status;
}

/** An upstream answering 201 to POST, 500 on /fail, 200 with a 5-byte body otherwise. */
function mixed(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  req.on('end', () => {
    if (req.url!.includes('/fail')) res.writeHead(500).end();
    else if (req.method === 'POST') res.writeHead(201).end('made');
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('hello');
  });
}

const ON = { path: '/metrics' } as const;

describe('the metrics endpoint, scraped and parsed after a known mix of requests', () => {
  let g: GatewayHarness;
  let up: Running;
  let s: Scrape;

  beforeEach(async () => {
    up = await upstream(mixed);
    g = await gatewayOf({
      services: { users: { targets: [up.url] }, orders: { targets: [up.url] } },
      routes: [
        { name: 'users', path: '/users/**', service: 'users' },
        { name: 'orders', path: '/orders/**', service: 'orders' },
      ],
      metrics: ON,
    });
    for (let i = 0; i < 3; i++) expect(await send(`${g.url}/users/${i}`)).toBe(200);
    for (let i = 0; i < 2; i++) {
      expect(await send(`${g.url}/users/new`, { method: 'POST', body: 'x'.repeat(100) })).toBe(201);
    }
    expect(await send(`${g.url}/orders/fail`)).toBe(500);
    expect(await send(`${g.url}/nowhere`)).toBe(404);
    s = await scrape(`${g.url}/metrics`);
  });

  test('requests_total counts by method, route, service and status; a 404 has route ""', () => {
    expect(s.types.get('gateway_requests_total')).toBe('counter');
    const count = (labels: Record<string, string>) => s.value('gateway_requests_total', labels);
    expect(count({ method: 'GET', route: 'users', service: 'users', status: '200' })).toBe(3);
    expect(count({ method: 'POST', route: 'users', service: 'users', status: '201' })).toBe(2);
    expect(count({ method: 'GET', route: 'orders', service: 'orders', status: '500' })).toBe(1);
    expect(count({ method: 'GET', route: '', service: '', status: '404' })).toBe(1);
    const total = s.all('gateway_requests_total').reduce((n, x) => n + x.value, 0);
    expect(total).toBe(7);
  });

  test('request_duration_seconds: a histogram per method, route and service, its buckets cumulative to +Inf = count', () => {
    expect(s.types.get('gateway_request_duration_seconds')).toBe('histogram');
    const labels = { method: 'GET', route: 'users', service: 'users' };
    const buckets = s.all('gateway_request_duration_seconds_bucket', labels);
    expect(buckets.map((b) => b.labels.le)).toEqual([
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '30',
      '60',
      '+Inf',
    ]);
    for (let i = 1; i < buckets.length; i++)
      expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    expect(buckets.at(-1)!.value).toBe(3);
    expect(s.value('gateway_request_duration_seconds_count', labels)).toBe(3);
    expect(s.value('gateway_request_duration_seconds_sum', labels)).toBeGreaterThan(0);
  });

  test('upstream_duration_seconds: one observation per upstream call, by service and target', () => {
    expect(s.types.get('gateway_upstream_duration_seconds')).toBe('histogram');
    const target = up.url;
    expect(s.value('gateway_upstream_duration_seconds_count', { service: 'users', target })).toBe(
      5,
    );
    expect(s.value('gateway_upstream_duration_seconds_count', { service: 'orders', target })).toBe(
      1,
    );
  });

  test('request_bytes and response_bytes: the bodies each way', () => {
    const users = { route: 'users', service: 'users' };
    expect(s.value('gateway_request_bytes_sum', users)).toBe(200);
    expect(s.value('gateway_response_bytes_sum', users)).toBe(3 * 5 + 2 * 4);
    expect(s.value('gateway_response_bytes_count', users)).toBe(5);
  });

  test('every series named in the issue is exported, with the prefix', () => {
    for (const name of [
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
    ]) {
      expect([name, s.types.get(`gateway_${name}`)]).toEqual([name, expect.any(String)]);
    }
  });

  test('the endpoint answers HEAD without a body, and refuses other methods with 405 Allow', async () => {
    const head = await fetch(`${g.url}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(`${g.url}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect(post.headers.get('content-type')).toBe('application/problem+json');
  });
});

test('1 000 distinct paths, routed or not, add no series', async () => {
  const up = await upstream(mixed);
  const g = await gatewayOf({
    services: { files: { targets: [up.url] } },
    routes: [{ name: 'files', path: '/files/**', service: 'files' }],
    metrics: ON,
  });
  expect(await send(`${g.url}/files/first`)).toBe(200);
  expect(await send(`${g.url}/missing/first`)).toBe(404);
  const before = await scrape(`${g.url}/metrics`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
  closers.push(() => agent.destroy());
  const get = (path: string) =>
    new Promise<number>((resolve, reject) => {
      http
        .get(`${g.url}${path}`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        })
        .on('error', reject);
    });
  const statuses = await Promise.all(
    Array.from({ length: 1000 }, (_, i) =>
      get(i % 2 === 0 ? `/files/${i}-${Math.random()}` : `/x${i}/${i}`),
    ),
  );
  expect(statuses.filter((x) => x === 200)).toHaveLength(500);
  expect(statuses.filter((x) => x === 404)).toHaveLength(500);
  const after = await scrape(`${g.url}/metrics`);
  const series = (x: Scrape) => x.samples.map((m) => `${m.name}${JSON.stringify(m.labels)}`).sort();
  expect(series(after)).toEqual(series(before));
  expect(after.value('gateway_requests_total', { route: 'files', status: '200' })).toBe(501);
  expect(after.value('gateway_requests_total', { route: '', status: '404' })).toBe(501);
});

test('upstream_health drops when a target fails its health check and rises when it passes', async () => {
  let healthy = true;
  const up = await upstream((req, res) => {
    if (req.url === '/health') res.writeHead(healthy ? 200 : 500).end();
    else res.writeHead(200).end('ok');
  });
  const g = await gatewayOf({
    services: {
      svc: {
        targets: [up.url],
        healthCheck: {
          path: '/health',
          intervalMs: 50,
          timeoutMs: 50,
          unhealthyThreshold: 1,
          healthyThreshold: 1,
        },
      },
    },
    routes: [{ path: '/s/**', service: 'svc' }],
    metrics: { path: '/_metrics' },
  });
  const health = async () =>
    (await scrape(`${g.url}/_metrics`)).value('gateway_upstream_health', {
      service: 'svc',
      target: up.url,
    });
  expect(await health()).toBe(1);
  healthy = false;
  await eventually(async () => (await health()) === 0);
  healthy = true;
  await eventually(async () => (await health()) === 1);
});

test('upstream_in_flight counts calls waiting on a target', async () => {
  const held: ServerResponse[] = [];
  const up = await upstream((_req, res) => void held.push(res));
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/s/**', service: 'svc' }],
    metrics: { path: '/_metrics' },
  });
  const pending = [send(`${g.url}/s/a`), send(`${g.url}/s/b`)];
  const inFlight = async () =>
    (await scrape(`${g.url}/_metrics`)).value('gateway_upstream_in_flight', { service: 'svc' });
  await eventually(async () => (await inFlight()) === 2);
  await waitFor(() => held.length === 2);
  for (const res of held) res.end('done');
  expect(await Promise.all(pending)).toEqual([200, 200]);
  await eventually(async () => (await inFlight()) === 0);
});

test('the breaker state changes 0 → 1 → 0, and each transition is counted', async () => {
  const g = await gatewayOf({
    services: {
      down: {
        targets: [`http://127.0.0.1:${await deadPort()}`],
        breaker: { failureThreshold: 2, resetTimeoutMs: 60_000 },
      },
    },
    routes: [{ path: '/s/**', service: 'down' }],
    metrics: { path: '/_metrics' },
  });
  const state = async () =>
    (await scrape(`${g.url}/_metrics`)).value('gateway_circuit_breaker_state', {
      service: 'down',
      route: '',
    });
  expect(await state()).toBe(0);
  expect(await send(`${g.url}/s/a`)).toBe(502);
  expect(await send(`${g.url}/s/a`)).toBe(502);
  expect(await state()).toBe(1);
  expect(await send(`${g.url}/s/a`)).toBe(503);
  g.gateway.breaker('down')!.close();
  const s = await scrape(`${g.url}/_metrics`);
  expect(s.value('gateway_circuit_breaker_state', { service: 'down' })).toBe(0);
  expect(
    s.value('gateway_circuit_breaker_transitions_total', {
      service: 'down',
      from: 'closed',
      to: 'open',
    }),
  ).toBe(1);
  expect(
    s.value('gateway_circuit_breaker_transitions_total', {
      service: 'down',
      from: 'open',
      to: 'closed',
    }),
  ).toBe(1);
  // Each of the two requests' tries failed: the first and its retry (the default retries).
  const retries = s.value('gateway_retries_total', { service: 'down', reason: 'refused' }) ?? 0;
  expect(s.value('gateway_upstream_errors_total', { service: 'down', kind: 'refused' })).toBe(
    2 + retries,
  );
  expect(s.value('gateway_requests_total', { status: '503' })).toBe(1);
});

test('retries and upstream errors by kind: a dead target retried onto a live one', async () => {
  const up = await upstream(mixed);
  const g = await gatewayOf({
    services: {
      svc: {
        targets: [`http://127.0.0.1:${await deadPort()}`, up.url],
        outlier: false,
        retries: { attempts: 1 },
      },
    },
    routes: [{ path: '/s/**', service: 'svc' }],
    metrics: ON,
  });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push(await send(`${g.url}/s/x`));
  expect(statuses).toEqual([200, 200, 200, 200]);
  const s = await scrape(`${g.url}/metrics`);
  // Every refused try was retried once, onto the live target, which answered every request.
  const retries = s.value('gateway_retries_total', { service: 'svc', reason: 'refused' })!;
  expect(retries).toBeGreaterThanOrEqual(1);
  expect(s.value('gateway_upstream_errors_total', { service: 'svc', kind: 'refused' })).toBe(
    retries,
  );
  expect(s.value('gateway_requests_total', { service: 'svc', status: '200' })).toBe(4);
  expect(
    s.value('gateway_upstream_duration_seconds_count', { service: 'svc', target: up.url }),
  ).toBe(4);
});

test('rate limit decisions: allowed and limited, by route', async () => {
  const up = await startEcho();
  closers.push(() => up.close());
  const g = await gatewayOf({
    services: { echo: { targets: [up.url] } },
    routes: [
      {
        name: 'limited',
        path: '/a/**',
        service: 'echo',
        rateLimit: { limit: 2, windowMs: 60_000 },
      },
    ],
    metrics: ON,
  });
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push(await send(`${g.url}/a/x`));
  expect(statuses).toEqual([200, 200, 429]);
  const s = await scrape(`${g.url}/metrics`);
  expect(s.value('gateway_rate_limit_total', { route: 'limited', result: 'allowed' })).toBe(2);
  expect(s.value('gateway_rate_limit_total', { route: 'limited', result: 'limited' })).toBe(1);
  expect(s.value('gateway_requests_total', { route: 'limited', status: '429' })).toBe(1);
});

test('auth decisions: allowed, forbidden, refused and missing, by route and method', async () => {
  const up = await startEcho();
  closers.push(() => up.close());
  const secret = 'a-secret-of-at-least-thirty-two-bytes!!';
  const g = await gatewayOf({
    services: { echo: { targets: [up.url] } },
    routes: [
      { name: 'open', path: '/open/**', service: 'echo' },
      { name: 'admin', path: '/admin/**', service: 'echo', auth: { roles: ['admin'] } },
    ],
    auth: { jwt: { algorithms: ['HS256'], secret, issuer: false, audience: false } },
    metrics: ON,
  });
  const token = (roles: string[]) =>
    jwt.sign({ sub: 'u1', roles }, secret, { algorithm: 'HS256', expiresIn: 60 });
  const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
  expect(await send(`${g.url}/open/x`, bearer(token([])))).toBe(200);
  expect(await send(`${g.url}/admin/x`, bearer(token(['admin'])))).toBe(200);
  expect(await send(`${g.url}/admin/x`, bearer(token(['user'])))).toBe(403);
  expect(
    await send(
      `${g.url}/admin/x`,
      bearer(jwt.sign({ sub: 'u' }, 'another-secret-of-thirty-two-bytes!!!')),
    ),
  ).toBe(401);
  expect(await send(`${g.url}/admin/x`)).toBe(401);
  const s = await scrape(`${g.url}/metrics`);
  const auth = (labels: Record<string, string>) => s.value('gateway_auth_total', labels);
  expect(auth({ route: 'open', method: 'jwt', result: 'allowed' })).toBe(1);
  expect(auth({ route: 'admin', method: 'jwt', result: 'allowed' })).toBe(1);
  expect(auth({ route: 'admin', method: 'jwt', result: 'forbidden' })).toBe(1);
  expect(auth({ route: 'admin', method: 'jwt', result: 'refused' })).toBe(1);
  expect(auth({ route: 'admin', method: 'none', result: 'missing' })).toBe(1);
  expect(s.all('gateway_auth_total').reduce((n, x) => n + x.value, 0)).toBe(5);
});

test('a custom prefix names every series; none has the default one', async () => {
  const up = await upstream(mixed);
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x/**', service: 'svc' }],
    metrics: { path: '/metrics', prefix: 'edge_' },
  });
  expect(await send(`${g.url}/x/1`)).toBe(200);
  const s = await scrape(`${g.url}/metrics`);
  expect(s.value('edge_requests_total', { route: '/x/**', status: '200' })).toBe(1);
  expect(s.samples.length).toBeGreaterThan(0);
  expect(s.samples.filter((x) => !x.name.startsWith('edge_'))).toEqual([]);
});

test('no endpoint and no series when metrics are off; a path is required to serve it under the mount', async () => {
  const up = await upstream(mixed);
  const off = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x', service: 'svc' }],
  });
  expect(off.gateway.metrics).toBeUndefined();
  expect(await send(`${off.url}/metrics`)).toBe(404);
  const noPath = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x', service: 'svc' }],
    metrics: true,
  });
  expect(await send(`${noPath.url}/metrics`)).toBe(404);
  expect(await send(`${noPath.url}/x`)).toBe(200);
  const text = await noPath.gateway.metrics!.registry.metrics();
  expect(parseScrape(text).value('gateway_requests_total', { route: '/x' })).toBe(1);
});

test('the exported handler serves the series on an internal port of the host', async () => {
  const up = await upstream(mixed);
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/**', service: 'svc' }],
    metrics: true,
  });
  const internal = express();
  internal.get('/metrics', g.gateway.metrics!.handler);
  const admin = await listen(http.createServer(internal));
  closers.push(() => admin.close());
  expect(await send(`${g.url}/anything`)).toBe(200);
  expect(await send(`${g.url}/metrics`)).toBe(200); // proxied: the route owns it
  const s = await scrape(`${admin.url}/metrics`);
  expect(s.value('gateway_requests_total', { route: '/**', status: '200' })).toBe(2);
});

test('two gateways in one process count apart, each in its own registry', async () => {
  const up = await upstream(mixed);
  const config = (): GatewayConfig => ({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x', service: 'svc' }],
    metrics: ON,
  });
  const a = await gatewayOf(config());
  const b = await gatewayOf(config());
  expect(a.gateway.metrics!.registry).not.toBe(b.gateway.metrics!.registry);
  for (let i = 0; i < 3; i++) expect(await send(`${a.url}/x`)).toBe(200);
  expect(await send(`${b.url}/x`)).toBe(200);
  expect((await scrape(`${a.url}/metrics`)).value('gateway_requests_total', { route: '/x' })).toBe(
    3,
  );
  expect((await scrape(`${b.url}/metrics`)).value('gateway_requests_total', { route: '/x' })).toBe(
    1,
  );
});

test('a registry that already holds the series is refused, naming the field; another prefix in it works', () => {
  const registry = new Registry();
  const config: GatewayConfig = {
    services: { svc: { targets: ['http://127.0.0.1:1'] } },
    routes: [{ path: '/x', service: 'svc' }],
    metrics: { registry },
  };
  const first = createGateway(config);
  closers.push(() => first.close());
  const err = configErrorOf(() => createGateway(config));
  expect(err.path).toBe('metrics.registry');
  const second = createGateway({ ...config, metrics: { registry, prefix: 'second_' } });
  closers.push(() => second.close());
  expect(registry.getSingleMetric('second_requests_total')).toBeDefined();
  expect(registry.getSingleMetric('gateway_requests_total')).toBeDefined();
});

describe('config errors name the field', () => {
  const base = (extra: Partial<GatewayConfig>): GatewayConfig => ({
    services: { svc: { targets: ['http://127.0.0.1:1'] } },
    routes: [{ path: '/api/**', service: 'svc' }],
    ...extra,
  });
  test.each([
    [{ metrics: { path: 'metrics' } }, 'metrics.path'],
    [{ metrics: { prefix: 'bad-prefix' } }, 'metrics.prefix'],
    [{ metrics: { buckets: [0.1, 0.05] } }, 'metrics.buckets[1]'],
    [{ metrics: { registry: {} } }, 'metrics.registry'],
    [{ metrics: { pathh: '/m' } }, 'metrics.pathh'],
    [{ metrics: 'yes' }, 'metrics'],
    [{ accessLog: { sampleRate: 2 } }, 'accessLog.sampleRate'],
    [{ accessLog: { logger: {} } }, 'accessLog.logger'],
    [{ tracing: { opentelemetry: 'yes' } }, 'tracing.opentelemetry'],
    [{ tracing: { sampled: true } }, 'tracing.sampled'],
  ])('%j → %s', (extra, path) => {
    expect(configErrorOf(() => createGateway(base(extra as Partial<GatewayConfig>))).path).toBe(
      path,
    );
  });

  test('a route that overlaps the metrics endpoint is refused', () => {
    const err = configErrorOf(() =>
      createGateway({
        ...base({ metrics: { path: '/metrics' } }),
        routes: [{ path: '/**', service: 'svc' }],
      }),
    );
    expect(err.path).toBe('routes[0].path');
    expect(err.message).toContain('metrics');
  });

  test('a metrics path inside the health endpoints is refused', () => {
    const err = configErrorOf(() =>
      createGateway(base({ metrics: { path: '/health/metrics' }, health: true })),
    );
    expect(err.path).toBe('metrics.path');
  });
});

test('the standalone middleware counts a plain Express app by route pattern, never raw path', async () => {
  const metrics = createMetrics({ prefix: 'app_' });
  const app = express();
  app.use(metrics.middleware);
  app.get('/users/:id', (req, res) => {
    res.json({ id: req.params.id });
  });
  app.get('/metrics', metrics.handler);
  const server = await listen(http.createServer(app));
  closers.push(() => server.close());
  for (const id of ['1', '2', '3']) expect(await send(`${server.url}/users/${id}`)).toBe(200);
  expect(await send(`${server.url}/nope/${Math.random()}`)).toBe(404);
  const s = await scrape(`${server.url}/metrics`);
  expect(s.value('app_requests_total', { method: 'GET', route: '/users/:id', status: '200' })).toBe(
    3,
  );
  expect(s.value('app_requests_total', { route: '', status: '404' })).toBe(1);
  expect(s.value('app_request_duration_seconds_count', { route: '/users/:id' })).toBe(3);
});
