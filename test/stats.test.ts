import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGateway, type GatewayConfig, type GatewayStats } from '@turnpike/gateway';
import { configErrorOf } from './helpers/expectations';
import { listen, startGateway, type GatewayHarness, type Running } from './helpers/servers';
import { closersAfterEach } from './helpers/outcomes';
import { deadPort } from './helpers/upstreams';

const closers = closersAfterEach();

async function upstream(delayMs: number): Promise<Running> {
  const u = await listen((req: IncomingMessage, res: ServerResponse) => {
    const status = req.url!.includes('/fail') ? 500 : 200;
    setTimeout(() => res.writeHead(status).end('ok'), delayMs);
  });
  closers.push(() => u.close());
  return u;
}

async function gatewayOf(config: GatewayConfig): Promise<GatewayHarness> {
  const g = await startGateway(config);
  closers.push(() => g.close());
  return g;
}

test('stats(): requests, errors and latency percentiles per route and service, with health and breaker state', async () => {
  const slow = await upstream(30);
  const g = await gatewayOf({
    services: {
      slow: { targets: [slow.url], breaker: { failureThreshold: 50 } },
      down: { targets: [`http://127.0.0.1:${await deadPort()}`], retries: false },
    },
    routes: [
      { name: 'slow', path: '/slow/**', service: 'slow' },
      { name: 'down', path: '/down', service: 'down' },
      { name: 'quiet', path: '/quiet', service: 'slow' },
    ],
    metrics: true,
    health: { details: true },
  });
  for (let i = 0; i < 8; i++) expect((await fetch(`${g.url}/slow/ok`)).status).toBe(200);
  for (let i = 0; i < 2; i++) expect((await fetch(`${g.url}/slow/fail`)).status).toBe(500);
  expect((await fetch(`${g.url}/down`)).status).toBe(502);
  const stats = await g.gateway.stats();
  const slowRoute = stats.routes.slow!;
  expect(slowRoute).toMatchObject({ service: 'slow', requests: 10, errors: 2 });
  // Every request took at least the upstream's 30 ms: the estimates sit in the 25–50 ms bucket or above.
  expect(slowRoute.latencyMs!.p50).toBeGreaterThanOrEqual(25);
  expect(slowRoute.latencyMs!.p50).toBeLessThanOrEqual(slowRoute.latencyMs!.p99);
  expect(slowRoute.latencyMs!.p90).toBeLessThanOrEqual(slowRoute.latencyMs!.p99);
  expect(stats.routes.down).toMatchObject({ service: 'down', requests: 1, errors: 1 });
  expect(stats.routes.quiet).toEqual({ service: 'slow', requests: 0, errors: 0, latencyMs: null });
  expect(stats.services.slow).toMatchObject({
    requests: 10,
    errors: 2,
    ready: true,
    breaker: 'closed',
  });
  expect(stats.services.slow!.targets).toEqual([
    expect.objectContaining({ url: slow.url, state: 'healthy' }),
  ]);
  expect(stats.services.down).toMatchObject({ requests: 1, errors: 1, breaker: null });
  // The same JSON at {health.path}/stats.
  const served = await fetch(`${g.url}/health/stats`);
  expect(served.status).toBe(200);
  expect(served.headers.get('cache-control')).toBe('no-store');
  const body = (await served.json()) as GatewayStats;
  expect(body.routes.slow).toMatchObject({ requests: 10, errors: 2 });
  expect(body.services.down).toMatchObject({ requests: 1, ready: true });
});

test('stats() without metrics: health and breaker state, no counts; /stats only with health details', async () => {
  const up = await upstream(0);
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x', service: 'svc' }],
    health: true,
  });
  expect((await fetch(`${g.url}/x`)).status).toBe(200);
  const stats = await g.gateway.stats();
  expect(stats.routes['/x']).toEqual({ service: 'svc' });
  expect(stats.services.svc).toMatchObject({ ready: true, breaker: null });
  expect(stats.services.svc).not.toHaveProperty('requests');
  expect((await fetch(`${g.url}/health/stats`)).status).toBe(404);
});

test('a route that overlaps {health.path}/stats is refused at start-up', () => {
  const err = configErrorOf(() =>
    createGateway({
      services: { svc: { targets: ['http://127.0.0.1:1'] } },
      routes: [{ path: '/health/stats', service: 'svc' }],
      health: true,
    }),
  );
  expect(err.path).toBe('routes[0].path');
});
