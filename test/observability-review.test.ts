/**
 * What the security review of the observability work found, each as a test: label
 * cardinality from client input, credentials in the query, an oversized path or tracestate,
 * a logger that rejects, and a registry shared with the application.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import { Counter, Registry } from 'prom-client';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import { createMetrics, MAX_LOGGED_PATH, validTracestate } from '@turnpike/metrics';
import {
  listen,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import { closersAfterEach } from './helpers/outcomes';
import { memoryLogger, rawGet } from './helpers/logs';
import { configErrorOf } from './helpers/expectations';
import { parseScrape, scrape } from './helpers/prometheus';

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

test("the standalone middleware's route label is the route's pattern: a parameterised or differently cased mount adds no series", async () => {
  const metrics = createMetrics();
  const app = express();
  app.use(metrics.middleware);
  const sub = express.Router();
  sub.get('/list', (_req, res) => void res.send('ok'));
  app.use('/users/:id', sub);
  app.use('/accounts', sub);
  app.get('/metrics', metrics.handler);
  const server = await listen(http.createServer(app));
  closers.push(() => server.close());
  for (let i = 0; i < 20; i++)
    expect(await rawGet(server.port, `/users/${i}-${Math.random()}/list`)).toBe(200);
  for (const mount of ['accounts', 'ACCOUNTS', 'Accounts', 'aCcOuNtS']) {
    expect(await rawGet(server.port, `/${mount}/list`)).toBe(200);
  }
  const s = await scrape(`${server.url}/metrics`);
  expect(s.all('gateway_requests_total')).toEqual([
    {
      name: 'gateway_requests_total',
      labels: { method: 'GET', route: '/list', service: '', status: '200' },
      value: 24,
    },
  ]);
});

test('a status outside 100–599 is counted as status "other": statuses stay a closed set', async () => {
  const metrics = createMetrics();
  for (const status of [799, 999, 600, 42, 200]) {
    metrics.observeRequest('GET', 'r', 's', status, 0.01, 0, 0);
  }
  const s = parseScrape(await metrics.scrape());
  expect(
    Object.fromEntries(s.all('gateway_requests_total').map((x) => [x.labels.status, x.value])),
  ).toEqual({ other: 4, '200': 1 });
});

describe('credentials in the query never reach the log (query: true)', () => {
  test.each([
    ['after a ;', 'a=1;api_key=S3CR3T'],
    ['an array suffix', 'api_key[]=S3CR3T'],
    ['an indexed array suffix', 'api_key[0]=S3CR3T'],
    ['a dot for the underscore', 'api.key=S3CR3T'],
    ['a dash, upper case', 'API-KEY=S3CR3T'],
    ['an encoded underscore', 'api%5Fkey=S3CR3T'],
    ['x-api-key', 'x-api-key=S3CR3T'],
    ['auth', 'auth=S3CR3T'],
    ['jwt', 'jwt=S3CR3T'],
    ['a session id', 'sessionid=S3CR3T'],
    ['a Google signature', 'X-Goog-Signature=S3CR3T'],
    ['a configured name, any spelling', 'Tenant.Secret=S3CR3T'],
  ])('%s', async (_why, query) => {
    const up = await upstream((_req, res) => void res.end('ok'));
    const { logger, lines } = memoryLogger();
    const g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      accessLog: { logger, query: true, redactQuery: ['tenant_secret'] },
    });
    expect(await rawGet(g.running.port, `/api/x?page=2&${query}`)).toBe(200);
    await waitFor(() => lines.length === 1);
    expect(lines[0]).not.toContain('S3CR3T');
    expect(lines[0]).toContain('page=2');
    expect(lines[0]).toContain('[REDACTED]');
  });
});

test('a very long path is logged cut at MAX_LOGGED_PATH characters', async () => {
  const up = await upstream((_req, res) => void res.end('ok'));
  const { logger, lines } = memoryLogger();
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x/**', service: 'svc' }],
    accessLog: { logger },
  });
  expect(await rawGet(g.running.port, `/api/x/${'a'.repeat(8000)}`)).toBe(200);
  await waitFor(() => lines.length === 1);
  const { path } = JSON.parse(lines[0]!) as { path: string };
  expect(path).toHaveLength(MAX_LOGGED_PATH + 1);
  expect(path.endsWith('…')).toBe(true);
});

test('a logger whose info() returns a rejected promise: the rejection is handled, the request answered', async () => {
  const up = await upstream((_req, res) => void res.end('ok'));
  const handled: boolean[] = [];
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x', service: 'svc' }],
    accessLog: {
      logger: {
        info: () => {
          const p = Promise.reject(new Error('transport down'));
          const then = p.then.bind(p);
          // Records whether the gateway attached a rejection handler.
          return Object.assign(p, {
            then: (a?: unknown, b?: unknown) => {
              handled.push(typeof b === 'function');
              return then(a as never, b as never);
            },
          }) as unknown as void;
        },
        warn() {},
        error() {},
        debug() {},
      },
    },
  });
  expect((await fetch(`${g.url}/x`)).status).toBe(200);
  await waitFor(() => handled.length === 1);
  expect(handled).toEqual([true]);
});

describe('tracestate passed upstream is bounded and well-formed', () => {
  test.each([
    ['a valid list', 'vendor=abc,other@tenant=1', 'vendor=abc,other@tenant=1'],
    ['spaces around members', 'a=1 , b=2', 'a=1,b=2'],
    ['longer than 512 characters', `v=${'x'.repeat(600)}`, undefined],
    ['33 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), undefined],
    ['not the grammar', 'not a tracestate at all!!!', undefined],
    ['an upper-case key', 'Vendor=1', undefined],
  ])('%s', async (_why, given, expected) => {
    expect(validTracestate(given)).toBe(expected);
    const seen: (string | undefined)[] = [];
    const up = await upstream((req, res) => {
      seen.push(req.headers.tracestate as string | undefined);
      res.end('ok');
    });
    const g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      tracing: { opentelemetry: false },
    });
    await fetch(`${g.url}/x`, {
      headers: {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        tracestate: given,
      },
    });
    expect(seen).toEqual([expected]);
  });
});

test('a shared registry: a name already taken is refused before anything is registered; close() gives the names back', async () => {
  const registry = new Registry();
  new Counter({
    name: 'gateway_hedges_total',
    help: 'the application’s own',
    registers: [registry],
  });
  const config: GatewayConfig = {
    services: { svc: { targets: ['http://127.0.0.1:1'] } },
    routes: [{ path: '/x', service: 'svc' }],
    metrics: { registry },
  };
  const err = configErrorOf(() => createGateway(config));
  expect(err.path).toBe('metrics.registry');
  expect(err.message).toContain('gateway_hedges_total');
  expect(registry.getMetricsAsArray().map((m) => m.name)).toEqual(['gateway_hedges_total']);
  registry.removeSingleMetric('gateway_hedges_total');
  const first = createGateway(config);
  expect(registry.getSingleMetric('gateway_requests_total')).toBeDefined();
  await first.close();
  expect(registry.getMetricsAsArray()).toEqual([]);
  const second = createGateway(config);
  closers.push(() => second.close());
  expect(registry.getSingleMetric('gateway_requests_total')).toBeDefined();
});
