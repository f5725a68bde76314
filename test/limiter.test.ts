import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import {
  listen,
  startEcho,
  startGateway,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import { configErrorOf } from './helpers/expectations';

const harnesses: GatewayHarness[] = [];
const upstreams: Running[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

async function gatewayWith(config: Omit<GatewayConfig, 'services'>): Promise<GatewayHarness> {
  const echo = await startEcho();
  upstreams.push(echo);
  const h = await startGateway({ services: { echo: { targets: [echo.url] } }, ...config });
  harnesses.push(h);
  return h;
}

/** A GET from a chosen source address (all of 127/8 is the loopback), with headers. */
function get(
  url: string,
  options: { from?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      url,
      { localAddress: options.from, headers: options.headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
  });
}

async function statuses(url: string, n: number, options?: Parameters<typeof get>[1]) {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await get(url, options)).status);
  return out;
}

describe('rate limits through the gateway (memory)', () => {
  it('answers 429 problems after the route limit, with Retry-After and the RateLimit headers', async () => {
    const h = await gatewayWith({
      routes: [{ path: '/a/**', service: 'echo', rateLimit: { limit: 2, windowMs: 60_000 } }],
    });
    const first = await get(`${h.url}/a/x`);
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"2-in-1min"; q=2; w=60');
    expect(first.headers['ratelimit']).toBe('"2-in-1min"; r=1; t=60');
    expect((await get(`${h.url}/a/x`)).status).toBe(200);
    const refused = await get(`${h.url}/a/x`);
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toBe('application/problem+json');
    expect(refused.headers['retry-after']).toBe('60');
    expect(refused.headers['ratelimit']).toBe('"2-in-1min"; r=0; t=60');
    expect(JSON.parse(refused.body)).toMatchObject({
      type: 'urn:turnpike:problem:rate-limited',
      status: 429,
    });
  });

  it('counts routes apart, the gateway-wide limit across them, and none on rateLimit: false', async () => {
    const h = await gatewayWith({
      rateLimit: { limit: 5, windowMs: 60_000, name: 'gateway' },
      routes: [
        {
          path: '/a/**',
          service: 'echo',
          rateLimit: { limit: 2, windowMs: 60_000, name: 'route' },
        },
        {
          path: '/b/**',
          service: 'echo',
          rateLimit: { limit: 2, windowMs: 60_000, name: 'route' },
        },
        { path: '/c/**', service: 'echo' },
        { path: '/free/**', service: 'echo', rateLimit: false },
      ],
    });
    expect(await statuses(`${h.url}/a/1`, 3)).toEqual([200, 200, 429]);
    // Route b has a count of its own; the gateway-wide count already holds a's three.
    const b = await get(`${h.url}/b/1`);
    expect(b.status).toBe(200);
    expect(b.headers['ratelimit']).toBe('"gateway"; r=1; t=60, "route"; r=1; t=60');
    const c = await get(`${h.url}/c/1`);
    expect(c.status).toBe(200);
    expect(c.headers['ratelimit']).toBe('"gateway"; r=0; t=60');
    expect((await get(`${h.url}/c/1`)).status).toBe(429);
    const free = await get(`${h.url}/free/1`);
    expect(free.status).toBe(200);
    expect(free.headers['ratelimit']).toBeUndefined();
  });

  it('counts clients apart by address, and a spoofed X-Forwarded-For buys nothing', async () => {
    const h = await gatewayWith({
      routes: [{ path: '/a/**', service: 'echo', rateLimit: { limit: 2, windowMs: 60_000 } }],
    });
    const spoofed = [];
    for (let i = 0; i < 3; i++) {
      spoofed.push(
        (await get(`${h.url}/a`, { headers: { 'x-forwarded-for': `10.0.0.${i}` } })).status,
      );
    }
    expect(spoofed).toEqual([200, 200, 429]);
    expect(await statuses(`${h.url}/a`, 3, { from: '127.0.0.2' })).toEqual([200, 200, 429]);
  });

  it('with trustProxy, counts the hop the trust reaches, not the ones the client wrote', async () => {
    const h = await gatewayWith({
      trustProxy: 1,
      routes: [{ path: '/a/**', service: 'echo', rateLimit: { limit: 1, windowMs: 60_000 } }],
    });
    // The client wrote 1.1.1.1; the trusted proxy (us) appended 203.0.113.7: that is the client.
    const xff = (ip: string) => ({ headers: { 'x-forwarded-for': `1.1.1.1, ${ip}` } });
    expect((await get(`${h.url}/a`, xff('203.0.113.7'))).status).toBe(200);
    expect(
      (await get(`${h.url}/a`, { headers: { 'x-forwarded-for': `9.9.9.9, 203.0.113.7` } })).status,
    ).toBe(429);
    expect((await get(`${h.url}/a`, xff('203.0.113.8'))).status).toBe(200);
    // IPv6 addresses in one /56 share a count; another /56 has its own.
    expect((await get(`${h.url}/a`, xff('2001:db8:1:100::1'))).status).toBe(200);
    expect((await get(`${h.url}/a`, xff('2001:db8:1:1ff:ffff::2'))).status).toBe(429);
    expect((await get(`${h.url}/a`, xff('2001:db8:1:200::1'))).status).toBe(200);
  });

  it('limits WebSocket upgrades through the same chain; the refusal carries the headers', async () => {
    const { WebSocketServer } = await import('ws');
    const up = await listen(http.createServer());
    upstreams.push(up);
    const wss = new WebSocketServer({ server: up.server });
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send(m)));
    const h = await startGateway({
      services: { ws: { targets: [up.url] } },
      routes: [
        { path: '/ws', service: 'ws', websocket: true, rateLimit: { limit: 1, windowMs: 60_000 } },
      ],
    });
    harnesses.push(h);
    const wsUrl = `ws://127.0.0.1:${(h.running.server.address() as AddressInfo).port}/api/ws`;
    const open = new WebSocket(wsUrl);
    await new Promise((resolve, reject) => {
      open.once('open', resolve);
      open.once('error', reject);
    });
    open.close();
    const refused = new WebSocket(wsUrl);
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      refused.once('unexpected-response', (_req, res) => resolve(res));
      refused.once('open', () => reject(new Error('the second upgrade was let through')));
      refused.once('error', () => {});
    });
    expect(response.statusCode).toBe(429);
    expect(response.headers['retry-after']).toBe('60');
    expect(response.headers['ratelimit']).toBe('"1-in-1min"; r=0; t=60');
    wss.close();
  });

  it('applies to handler routes too', async () => {
    const h = await gatewayWith({
      routes: [
        {
          path: '/local',
          handler: (_req, res) => res.end('ok'),
          rateLimit: { limit: 1, windowMs: 60_000 },
        },
      ],
    });
    expect(await statuses(`${h.url}/local`, 2)).toEqual([200, 429]);
  });

  it('answers a key function that throws with a 500 problem and a log line, and counts nothing shared', async () => {
    const errors: unknown[] = [];
    const logger = {
      error: (m: string, meta?: unknown) => errors.push([m, meta]),
      warn() {},
      info() {},
      debug() {},
    };
    const h = await gatewayWith({
      logger,
      rateLimit: { name: 'gw', limit: 10 },
      routes: [
        {
          path: '/a',
          service: 'echo',
          rateLimit: {
            limit: 1,
            windowMs: 60_000,
            key: (req) => {
              const t = req.headers['x-tenant'];
              if (typeof t !== 'string') throw new Error('no tenant');
              return t;
            },
          },
        },
      ],
    });
    const failed = await get(`${h.url}/a`);
    expect(failed.status).toBe(500);
    expect(JSON.parse(failed.body)).toMatchObject({
      status: 500,
      type: 'urn:turnpike:problem:internal',
    });
    expect(errors).toHaveLength(1);
    expect(JSON.stringify(errors[0])).toContain('no tenant');
    const first = await get(`${h.url}/a`, { headers: { 'x-tenant': 'a' } });
    expect(first.status).toBe(200);
    // The 500 charged nothing, the gateway-wide limit before the failing key neither.
    expect(first.headers['ratelimit']).toBe('"gw"; r=9; t=60, "1-in-1min"; r=0; t=60');
    expect((await get(`${h.url}/a`, { headers: { 'x-tenant': 'b' } })).status).toBe(200);
    expect((await get(`${h.url}/a`, { headers: { 'x-tenant': 'a' } })).status).toBe(429);
  });
});

describe('rate limit config', () => {
  const base = { services: { s: { targets: ['http://127.0.0.1:1'] } } };
  it("takes a route's one limit with an onStoreError of its own (a limit key, not a setting)", async () => {
    const g = createGateway({
      ...base,
      routes: [{ path: '/', service: 's', rateLimit: { limit: 1, onStoreError: 'closed' } }],
    });
    await g.close();
  });
  it.each<[string, unknown, string]>([
    [
      'a limit below 1',
      { routes: [{ path: '/', service: 's', rateLimit: { limit: 0 } }] },
      'routes[0].rateLimit.limit',
    ],
    [
      'a window of 0',
      { routes: [{ path: '/', service: 's' }], rateLimit: { limit: 1, windowMs: 0 } },
      'rateLimit.windowMs',
    ],
    [
      'an unknown algorithm',
      {
        routes: [
          { path: '/', service: 's', rateLimit: [{ limit: 1 }, { limit: 1, algorithm: 'leaky' }] },
        ],
      },
      'routes[0].rateLimit[1].algorithm',
    ],
    [
      'a token bucket without a refill rate',
      {
        routes: [{ path: '/', service: 's' }],
        rateLimit: { limits: [{ limit: 5, algorithm: 'token-bucket' }] },
      },
      'rateLimit.limits[0].refillPerSecond',
    ],
    [
      'an unparsable Redis URL',
      { routes: [{ path: '/', service: 's' }], redis: 'redis://' },
      'redis',
    ],
    [
      'a setting on a route',
      { routes: [{ path: '/', service: 's', rateLimit: { limit: 1, standardHeaders: false } }] },
      'routes[0].rateLimit.standardHeaders',
    ],
    [
      'two limits of one name',
      {
        routes: [{ path: '/', service: 's', rateLimit: { limit: 1, name: 'x' } }],
        rateLimit: { limit: 2, name: 'x' },
      },
      'routes[0].rateLimit.name',
    ],
  ])('refuses %s at creation, naming the field', (_what, config, path) => {
    const err = configErrorOf(() =>
      createGateway({ ...base, ...(config as object) } as unknown as GatewayConfig),
    );
    expect(err.path).toBe(path);
  });
});
