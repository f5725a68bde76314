/**
 * Issue 8, a second suite written from the issue and the user docs alone (memory stores only):
 * the gateway's rate limits as a user configures them, and the standalone middleware.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import WebSocket, { WebSocketServer } from 'ws';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import {
  rateLimit,
  SlidingWindowMemoryStore,
  TokenBucketMemoryStore,
  type RateLimitInfo,
} from '@turnpike/limiter';
import {
  listen,
  startEcho,
  startGateway,
  echoHandler,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import { gate, recordingLogger } from './helpers/outcomes';
import { fakeClock } from './helpers/clock';
import { configErrorOf } from './helpers/expectations';
import { deadPort } from './helpers/upstreams';

type Express = ReturnType<typeof express>;

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  jest.useRealTimers();
  for (const close of closers.splice(0).reverse()) await close();
});

// Nothing the limiter does may surface as an unhandled rejection.
const rejections: unknown[] = [];
const onRejection = (reason: unknown): void => void rejections.push(reason);
beforeAll(() => process.on('unhandledRejection', onRejection));
afterAll(() => process.off('unhandledRejection', onRejection));
afterEach(() => {
  expect(rejections.splice(0)).toEqual([]);
});

/** An echo upstream that counts the requests it got. */
async function countingEcho(): Promise<Running & { hits: () => number }> {
  let hits = 0;
  const echo = await startEcho();
  echo.server.on('request', () => hits++);
  closers.push(() => echo.close());
  return Object.assign(echo, { hits: () => hits });
}

async function gatewayWith(
  config: Omit<GatewayConfig, 'services'> & { services?: GatewayConfig['services'] },
  options: { before?: (app: Express) => void } = {},
): Promise<GatewayHarness & { echo: Running & { hits: () => number } }> {
  const echo = await countingEcho();
  const h = await startGateway(
    { ...config, services: { echo: { targets: [echo.url] }, ...config.services } },
    options,
  );
  closers.push(() => h.close());
  return Object.assign(h, { echo });
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection, from a chosen local address, with headers. */
function send(
  url: string,
  options: { method?: string; from?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: options.method ?? 'GET',
        localAddress: options.from,
        headers: options.headers,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function statuses(
  url: string,
  n: number,
  options?: Parameters<typeof send>[1],
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(url, options)).status);
  return out;
}

/** A plain Express app on port 0, closed after the test. */
async function serve(app: Express): Promise<Running> {
  const running = await listen(http.createServer(app));
  closers.push(() => running.close());
  return running;
}

/** A Date.now aligned to a multiple of `windowMs`, a long way from the real clock's. */
function alignedNow(windowMs: number): number {
  return Math.ceil(1_900_000_000_000 / windowMs) * windowMs;
}

describe('tiers: gateway-wide and route limits', () => {
  it('lists the gateway-wide limit first and charges both once per request, the refused one too', async () => {
    const h = await gatewayWith({
      rateLimit: { name: 'gw', limit: 10, windowMs: 60_000 },
      routes: [
        { path: '/r', service: 'echo', rateLimit: { name: 'route', limit: 2, windowMs: 60_000 } },
      ],
    });
    const first = await send(`${h.url}/r`);
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"gw"; q=10; w=60, "route"; q=2; w=60');
    expect(first.headers['ratelimit']).toBe('"gw"; r=9; t=60, "route"; r=1; t=60');
    expect((await send(`${h.url}/r`)).headers['ratelimit']).toBe(
      '"gw"; r=8; t=60, "route"; r=0; t=60',
    );
    const refused = await send(`${h.url}/r`);
    expect(refused.status).toBe(429);
    // A fixed window counts a refusal too, in every limit that counted it: once.
    expect(refused.headers['ratelimit']).toBe('"gw"; r=7; t=60, "route"; r=0; t=60');
    expect(refused.headers['ratelimit-policy']).toBe('"gw"; q=10; w=60, "route"; q=2; w=60');
    // The refused request never reached the upstream.
    expect(h.echo.hits()).toBe(2);
  });

  it('charges a request once when the router retries it on another target', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const echo = await countingEcho();
    const h = await gatewayWith({
      services: { pair: { targets: [dead, echo.url] } },
      rateLimit: { name: 'gw', limit: 10, windowMs: 60_000 },
      routes: [{ path: '/r', service: 'pair', rateLimit: { name: 'route', limit: 10 } }],
    });
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await send(`${h.url}/r`);
      expect(r.status).toBe(200);
      seen.push(r.headers['ratelimit'] as string);
    }
    // Every other request tried the dead target first, then was retried: still counted once.
    expect(seen).toEqual([
      '"gw"; r=9; t=60, "route"; r=9; t=60',
      '"gw"; r=8; t=60, "route"; r=8; t=60',
      '"gw"; r=7; t=60, "route"; r=7; t=60',
      '"gw"; r=6; t=60, "route"; r=6; t=60',
    ]);
    expect(echo.hits()).toBe(4);
  });

  it('a route with rateLimit: false neither counts nor answers headers, and costs the others nothing', async () => {
    const h = await gatewayWith({
      rateLimit: { name: 'gw', limit: 2, windowMs: 60_000 },
      routes: [
        { path: '/free', service: 'echo', rateLimit: false },
        { path: '/limited', service: 'echo' },
      ],
    });
    for (let i = 0; i < 5; i++) {
      const r = await send(`${h.url}/free`);
      expect(r.status).toBe(200);
      expect(r.headers['ratelimit']).toBeUndefined();
      expect(r.headers['ratelimit-policy']).toBeUndefined();
    }
    const limited = await send(`${h.url}/limited`);
    expect(limited.headers['ratelimit']).toBe('"gw"; r=1; t=60');
    expect(await statuses(`${h.url}/limited`, 2)).toEqual([200, 429]);
    expect((await send(`${h.url}/free`)).status).toBe(200);
  });

  it('a top-level rateLimit: false leaves the routes their own limits; keyGenerator is a key function', async () => {
    const h = await gatewayWith({
      rateLimit: false,
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { name: 'l', limit: 1, keyGenerator: (req) => String(req.headers['x-k']) },
        },
        { path: '/free', service: 'echo' },
      ],
    });
    expect((await send(`${h.url}/r`, { headers: { 'x-k': 'a' } })).status).toBe(200);
    expect((await send(`${h.url}/r`, { headers: { 'x-k': 'a' } })).status).toBe(429);
    expect((await send(`${h.url}/r`, { headers: { 'x-k': 'b' } })).status).toBe(200);
    expect((await send(`${h.url}/free`)).headers['ratelimit']).toBeUndefined();
  });

  it('names limits from their numbers by default, as the docs show', async () => {
    const h = await gatewayWith({
      rateLimit: { limit: 100, windowMs: 60_000 },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { algorithm: 'token-bucket', limit: 20, refillPerSecond: 5 },
        },
      ],
    });
    const r = await send(`${h.url}/r`);
    expect(r.headers['ratelimit-policy']).toBe(
      '"100-in-1min"; q=100; w=60, "20-burst-5-per-sec"; q=20; w=4',
    );
  });

  it('accepts a route limit in the { limits } form, next to gateway-wide settings given alone', async () => {
    const h = await gatewayWith({
      rateLimit: { limits: [], legacyHeaders: true },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: {
            limits: [
              { name: 'short', limit: 3, windowMs: 1000 },
              { name: 'long', limit: 2, windowMs: 3_600_000 },
            ],
          },
        },
        { path: '/other', service: 'echo' },
      ],
    });
    const r = await send(`${h.url}/r`);
    expect(r.headers['ratelimit-policy']).toBe('"short"; q=3; w=1, "long"; q=2; w=3600');
    expect(r.headers['ratelimit']).toMatch(/^"short"; r=2; t=1, "long"; r=1; t=3600$/);
    // The legacy headers are the most restrictive limit's: "long", one left.
    expect(r.headers['x-ratelimit-limit']).toBe('2');
    expect(r.headers['x-ratelimit-remaining']).toBe('1');
    // No gateway-wide limit: the other route is not limited at all.
    const other = await send(`${h.url}/other`);
    expect(other.headers['ratelimit']).toBeUndefined();
    expect(other.headers['x-ratelimit-limit']).toBeUndefined();
  });
});

describe('what is limited, and the headers on every answer of a limited route', () => {
  it('limits a handler route: the handler is not called once refused, and it sees req.rateLimit', async () => {
    let calls = 0;
    let info: RateLimitInfo | undefined;
    const h = await gatewayWith({
      rateLimit: { name: 'gw', limit: 100, windowMs: 60_000 },
      routes: [
        {
          path: '/local',
          handler: (req, res) => {
            calls++;
            info = (req as { rateLimit?: RateLimitInfo }).rateLimit;
            res.end('ok');
          },
          rateLimit: { name: 'local', limit: 2, windowMs: 60_000 },
        },
      ],
    });
    const first = await send(`${h.url}/local`);
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit']).toBe('"gw"; r=99; t=60, "local"; r=1; t=60');
    // The most restrictive limit: the one with the fewest left.
    expect(info).toMatchObject({ name: 'local', limit: 2, remaining: 1, refused: false });
    expect(await statuses(`${h.url}/local`, 2)).toEqual([200, 429]);
    expect(calls).toBe(2);
  });

  it('counts HEAD and OPTIONS requests, and a HEAD refusal carries the headers without a body', async () => {
    const h = await gatewayWith({
      routes: [{ path: '/r', service: 'echo', rateLimit: { name: 'l', limit: 3 } }],
    });
    const head = await send(`${h.url}/r`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['ratelimit']).toBe('"l"; r=2; t=60');
    const options = await send(`${h.url}/r`, { method: 'OPTIONS' });
    expect(options.headers['ratelimit']).toBe('"l"; r=1; t=60');
    expect((await send(`${h.url}/r`)).status).toBe(200);
    const refused = await send(`${h.url}/r`, { method: 'HEAD' });
    expect(refused.status).toBe(429);
    expect(refused.body).toBe('');
    expect(refused.headers['retry-after']).toBe('60');
    expect(refused.headers['ratelimit']).toBe('"l"; r=0; t=60');
  });

  it('keeps the headers on an upstream error, a 502 of a dead upstream and a 500 the upstream sent', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const failing = await listen((_req, res) => {
      res.statusCode = 500;
      res.end('broken');
    });
    closers.push(() => failing.close());
    const h = await gatewayWith({
      services: {
        dead: { targets: [dead], retries: false },
        failing: { targets: [failing.url] },
      },
      routes: [
        { path: '/dead', service: 'dead', rateLimit: { name: 'd', limit: 5 } },
        { path: '/failing', service: 'failing', rateLimit: { name: 'f', limit: 5 } },
      ],
    });
    const bad = await send(`${h.url}/dead`);
    expect(bad.status).toBe(502);
    expect(bad.headers['content-type']).toBe('application/problem+json');
    expect(bad.headers['ratelimit-policy']).toBe('"d"; q=5; w=60');
    expect(bad.headers['ratelimit']).toBe('"d"; r=4; t=60');
    const error = await send(`${h.url}/failing`);
    expect(error.status).toBe(500);
    expect(error.body).toBe('broken');
    expect(error.headers['ratelimit']).toBe('"f"; r=4; t=60');
  });

  it('a refused request takes no bulkhead place: it is a 429 while the place is held, not a 503', async () => {
    const held = gate();
    let arrived = 0;
    const slow = await listen((_req, res) => {
      arrived++;
      void held.promise.then(() => res.end('late'));
    });
    closers.push(() => slow.close());
    closers.push(() => held.open());
    const h = await gatewayWith({
      services: { slow: { targets: [slow.url], bulkhead: { maxConcurrent: 1 } } },
      routes: [{ path: '/r', service: 'slow', rateLimit: { name: 'l', limit: 1 } }],
    });
    const first = send(`${h.url}/r`);
    await waitFor(() => arrived === 1);
    const refused = await send(`${h.url}/r`);
    expect(refused.status).toBe(429);
    held.open();
    expect((await first).status).toBe(200);
    expect(arrived).toBe(1);
  });

  it('answers draft-7, draft-6 and legacy headers through the gateway, or none', async () => {
    const routes: GatewayConfig['routes'] = [
      {
        path: '/r',
        service: 'echo',
        rateLimit: [
          { name: 'wide', limit: 10, windowMs: 60_000 },
          { name: 'tight', limit: 1, windowMs: 30_000 },
        ],
      },
    ];
    const d7 = await gatewayWith({ rateLimit: { limits: [], standardHeaders: 'draft-7' }, routes });
    const seven = await send(`${d7.url}/r`);
    // One limit only, the most restrictive: "tight", none left.
    expect(seven.headers['ratelimit-policy']).toBe('1;w=30');
    expect(seven.headers['ratelimit']).toBe('limit=1, remaining=0, reset=30');

    const d6 = await gatewayWith({
      rateLimit: { limits: [], standardHeaders: 'draft-6', legacyHeaders: true },
      routes,
    });
    const before = Math.floor(Date.now() / 1000);
    const six = await send(`${d6.url}/r`);
    expect(six.headers['ratelimit-policy']).toBe('1;w=30');
    expect(six.headers['ratelimit-limit']).toBe('1');
    expect(six.headers['ratelimit-remaining']).toBe('0');
    expect(six.headers['ratelimit-reset']).toBe('30');
    expect(six.headers['ratelimit']).toBeUndefined();
    expect(six.headers['x-ratelimit-limit']).toBe('1');
    expect(six.headers['x-ratelimit-remaining']).toBe('0');
    const reset = Number(six.headers['x-ratelimit-reset']);
    expect(reset).toBeGreaterThanOrEqual(before + 29);
    expect(reset).toBeLessThanOrEqual(before + 32);
    const refused = await send(`${d6.url}/r`);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('30');

    const none = await gatewayWith({ rateLimit: { limits: [], standardHeaders: false }, routes });
    expect((await send(`${none.url}/r`)).headers['ratelimit-policy']).toBeUndefined();
    const noneRefused = await send(`${none.url}/r`);
    expect(noneRefused.status).toBe(429);
    expect(noneRefused.headers['ratelimit']).toBeUndefined();
    expect(noneRefused.headers['retry-after']).toBe('30');
  });
});

describe('keys', () => {
  it('a header key, configured in mixed case, counts each value apart and falls back to the address', async () => {
    const h = await gatewayWith({
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { name: 'tenant', limit: 1, key: { header: 'X-Tenant-Id' } },
        },
      ],
    });
    expect((await send(`${h.url}/r`, { headers: { 'X-TENANT-ID': 'acme' } })).status).toBe(200);
    expect((await send(`${h.url}/r`, { headers: { 'x-tenant-id': 'acme' } })).status).toBe(429);
    expect((await send(`${h.url}/r`, { headers: { 'x-tenant-id': 'globex' } })).status).toBe(200);
    // Without the header: the client address, one bucket per address.
    expect(await statuses(`${h.url}/r`, 2, { from: '127.0.0.5' })).toEqual([200, 429]);
    expect((await send(`${h.url}/r`, { from: '127.0.0.6' })).status).toBe(200);
  });

  it("counts by req.auth from the host app's middleware: subject, api key, else the address", async () => {
    const h = await gatewayWith(
      {
        routes: [
          { path: '/s', service: 'echo', rateLimit: { name: 's', limit: 1, key: 'subject' } },
          { path: '/k', service: 'echo', rateLimit: { name: 'k', limit: 1, key: 'api-key' } },
        ],
      },
      {
        before: (app) =>
          app.use((req, _res, next) => {
            const user = req.headers['x-user'];
            const key = req.headers['x-key'];
            if (user === 'numeric') (req as { auth?: unknown }).auth = { subject: 42 };
            else if (typeof user === 'string' || typeof key === 'string') {
              (req as { auth?: unknown }).auth = { subject: user, keyId: key };
            }
            next();
          }),
      },
    );
    const as = (headers: Record<string, string>, from = '127.0.0.1') =>
      send(`${h.url}/s`, { headers, from }).then((r) => r.status);
    // Alice from two addresses: one count. Bob from Alice's address: his own.
    expect(await as({ 'x-user': 'alice' }, '127.0.0.2')).toBe(200);
    expect(await as({ 'x-user': 'alice' }, '127.0.0.3')).toBe(429);
    expect(await as({ 'x-user': 'bob' }, '127.0.0.2')).toBe(200);
    expect(await as({ 'x-user': 'numeric' })).toBe(200);
    expect(await as({ 'x-user': 'numeric' }, '127.0.0.9')).toBe(429);
    // No req.auth: by address.
    expect(await as({}, '127.0.0.4')).toBe(200);
    expect(await as({}, '127.0.0.4')).toBe(429);
    expect(await as({}, '127.0.0.5')).toBe(200);
    // req.auth without a subject (an API key alone): by address too.
    expect(await as({ 'x-key': 'k1' }, '127.0.0.6')).toBe(200);
    expect(await as({ 'x-key': 'k2' }, '127.0.0.6')).toBe(429);

    const key = (headers: Record<string, string>, from = '127.0.0.1') =>
      send(`${h.url}/k`, { headers, from }).then((r) => r.status);
    expect(await key({ 'x-key': 'k1' }, '127.0.0.2')).toBe(200);
    expect(await key({ 'x-key': 'k1' }, '127.0.0.3')).toBe(429);
    expect(await key({ 'x-key': 'k2' }, '127.0.0.2')).toBe(200);
    expect(await key({}, '127.0.0.7')).toBe(200);
    expect(await key({}, '127.0.0.7')).toBe(429);
  });

  it("keys on the gateway's client address, not on req.ip of a host app that trusts every proxy", async () => {
    const h = await gatewayWith(
      { routes: [{ path: '/r', service: 'echo', rateLimit: { name: 'l', limit: 2 } }] },
      { before: (app) => app.set('trust proxy', true) },
    );
    const out: number[] = [];
    for (let i = 0; i < 4; i++) {
      out.push(
        (await send(`${h.url}/r`, { headers: { 'x-forwarded-for': `198.51.100.${i}` } })).status,
      );
    }
    expect(out).toEqual([200, 200, 429, 429]);
  });

  it('counts IPv4 clients of a dual-stack server (::ffff:a.b.c.d) apart, not as one IPv6 /56', async () => {
    const echo = await countingEcho();
    const app = express();
    const gateway = createGateway({
      services: { echo: { targets: [echo.url] } },
      routes: [{ path: '/r', service: 'echo', rateLimit: { name: 'l', limit: 1 } }],
    });
    app.use('/api', gateway);
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '::', resolve));
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    closers.push(() => gateway.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/r`;
    const a = await send(url, { from: '127.0.0.2' });
    expect(a.status).toBe(200);
    expect((await send(url, { from: '127.0.0.2' })).status).toBe(429);
    expect((await send(url, { from: '127.0.0.3' })).status).toBe(200);
    expect((await send(url, { from: '127.0.0.4' })).status).toBe(200);
  });

  it('with trustProxy, ipv6Subnet: false counts whole IPv6 addresses, a /64 groups by 64 bits', async () => {
    const h = await gatewayWith({
      trustProxy: ['127.0.0.1'],
      routes: [
        {
          path: '/whole',
          service: 'echo',
          rateLimit: { name: 'w', limit: 1, ipv6Subnet: false },
        },
        { path: '/64', service: 'echo', rateLimit: { name: 's', limit: 1, ipv6Subnet: 64 } },
      ],
    });
    const from = (path: string, ip: string) =>
      send(`${h.url}${path}`, { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);
    expect(await from('/whole', '2001:db8::1')).toBe(200);
    expect(await from('/whole', '2001:db8::2')).toBe(200);
    expect(await from('/whole', '2001:db8::1')).toBe(429);
    expect(await from('/64', '2001:db8:0:1::1')).toBe(200);
    expect(await from('/64', '2001:db8:0:1:ffff::2')).toBe(429);
    expect(await from('/64', '2001:db8:0:2::1')).toBe(200);
  });

  it('counts an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address, not as a /56', async () => {
    const h = await gatewayWith({
      trustProxy: 1,
      routes: [{ path: '/r', service: 'echo', rateLimit: { name: 'l', limit: 1 } }],
    });
    const from = (ip: string) =>
      send(`${h.url}/r`, { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);
    expect(await from('::ffff:192.0.2.1')).toBe(200);
    expect(await from('192.0.2.1')).toBe(429);
    expect(await from('::ffff:192.0.2.2')).toBe(200);
    expect(await from('::FFFF:192.0.2.3')).toBe(200);
  });

  it('answers 500 for a key function returning an empty string or a number, counting nothing', async () => {
    const log = recordingLogger();
    let value: unknown = '';
    const h = await gatewayWith({
      logger: log,
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { name: 'l', limit: 1, key: () => value as string },
        },
      ],
    });
    const empty = await send(`${h.url}/r`);
    expect(empty.status).toBe(500);
    expect(JSON.parse(empty.body)).toMatchObject({ type: 'urn:turnpike:problem:internal' });
    value = 7;
    expect((await send(`${h.url}/r`)).status).toBe(500);
    expect(log.entries.filter((e) => e.level === 'error')).toHaveLength(2);
    expect(h.echo.hits()).toBe(0);
    // Nothing was counted: a good key has its whole limit.
    value = 'tenant';
    expect(await statuses(`${h.url}/r`, 2)).toEqual([200, 429]);
  });

  it('an async key function counts by what it resolves to; a rejected one is a 500', async () => {
    const log = recordingLogger();
    const h = await gatewayWith({
      logger: log,
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: {
            name: 'l',
            limit: 1,
            key: async (req) => {
              await new Promise((r) => setImmediate(r));
              const t = req.headers['x-t'];
              if (t === 'bad') throw new Error('tenant lookup failed');
              return `t-${String(t)}`;
            },
          },
        },
      ],
    });
    const as = (t: string) => send(`${h.url}/r`, { headers: { 'x-t': t } }).then((r) => r.status);
    expect(await as('a')).toBe(200);
    expect(await as('a')).toBe(429);
    expect(await as('b')).toBe(200);
    expect(await as('bad')).toBe(500);
    expect(JSON.stringify(log.entries)).toContain('tenant lookup failed');
  });
});

describe('limits per plan, and skip', () => {
  it('an async limit function gives each plan its own limit and count', async () => {
    const h = await gatewayWith(
      {
        routes: [
          {
            path: '/r',
            service: 'echo',
            rateLimit: {
              name: 'plan',
              key: 'subject',
              limit: async (req) => {
                await new Promise((r) => setImmediate(r));
                const auth = (req as { auth?: { plan?: string } }).auth;
                return auth?.plan === 'pro' ? 3 : 1;
              },
            },
          },
        ],
      },
      {
        before: (app) =>
          app.use((req, _res, next) => {
            const [subject, plan] = String(req.headers['x-user'] ?? '').split(':');
            if (subject) (req as { auth?: unknown }).auth = { subject, plan };
            next();
          }),
      },
    );
    const as = (user: string) => send(`${h.url}/r`, { headers: { 'x-user': user } });
    const pro = await as('ann:pro');
    expect(pro.headers['ratelimit-policy']).toBe('"plan"; q=3; w=60');
    expect(pro.headers['ratelimit']).toBe('"plan"; r=2; t=60');
    expect((await as('ann:pro')).status).toBe(200);
    expect((await as('ann:pro')).status).toBe(200);
    expect((await as('ann:pro')).status).toBe(429);
    const free = await as('ben:free');
    expect(free.headers['ratelimit-policy']).toBe('"plan"; q=1; w=60');
    expect((await as('ben:free')).status).toBe(429);
  });

  it('a limit function that throws is a 500 problem and a log line; the upstream is not called', async () => {
    const log = recordingLogger();
    const h = await gatewayWith({
      logger: log,
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: {
            name: 'plan',
            limit: (req) => {
              if (req.headers['x-plan'] === undefined) throw new Error('no plan for you');
              return 5;
            },
          },
        },
      ],
    });
    const r = await send(`${h.url}/r`);
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body)).toMatchObject({ status: 500 });
    expect(h.echo.hits()).toBe(0);
    expect(log.entries.filter((e) => e.level === 'error')).toHaveLength(1);
    expect(JSON.stringify(log.entries)).toContain('no plan for you');
    const ok = await send(`${h.url}/r`, { headers: { 'x-plan': 'x' } });
    expect(ok.status).toBe(200);
    expect(ok.headers['ratelimit']).toBe('"plan"; r=4; t=60');
  });

  it('a limit function returning no valid limit (0, 1.5, NaN, a string) is a 500, counting nothing', async () => {
    const log = recordingLogger();
    let value: unknown = 0;
    const h = await gatewayWith({
      logger: log,
      rateLimit: { name: 'gw', limit: 10 },
      routes: [
        { path: '/r', service: 'echo', rateLimit: { name: 'plan', limit: () => value as number } },
      ],
    });
    for (const bad of [0, 1.5, Number.NaN, '5']) {
      value = bad;
      const r = await send(`${h.url}/r`);
      expect(r.status).toBe(500);
      expect(JSON.parse(r.body)).toMatchObject({ type: 'urn:turnpike:problem:internal' });
    }
    expect(h.echo.hits()).toBe(0);
    expect(log.entries.filter((e) => e.level === 'error').length).toBeGreaterThanOrEqual(4);
    value = 3;
    // Nothing was counted for the four 500s, the gateway-wide limit in front of it neither.
    expect((await send(`${h.url}/r`)).headers['ratelimit']).toBe(
      '"gw"; r=9; t=60, "plan"; r=2; t=60',
    );
  });

  it('past 64 distinct limit values the least recently used one starts afresh', async () => {
    const h = await gatewayWith({
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: {
            name: 'l',
            key: { header: 'x-k' },
            limit: (req) => Number(req.headers['x-v']),
          },
        },
      ],
    });
    const as = (k: string, v: number) =>
      send(`${h.url}/r`, { headers: { 'x-k': k, 'x-v': String(v) } }).then((r) => r.status);
    expect([await as('a', 1), await as('a', 1)]).toEqual([200, 429]);
    // 63 more values: value 1 is still one of the 64.
    for (let v = 2; v <= 64; v++) expect(await as('b', v)).toBe(200);
    expect(await as('a', 1)).toBe(429);
    // Value 1 was just used; 64 new values push it out.
    for (let v = 65; v <= 128; v++) expect(await as('b', v)).toBe(200);
    expect(await as('a', 1)).toBe(200);
  });

  it('an async skip skips that limit alone: not counted, not in the RateLimit header', async () => {
    const h = await gatewayWith({
      rateLimit: { name: 'gw', limit: 2, windowMs: 60_000 },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: {
            name: 'route',
            limit: 1,
            skip: async (req) => {
              await new Promise((r) => setImmediate(r));
              return req.headers['x-internal'] === 'yes';
            },
          },
        },
      ],
    });
    const skipped = await send(`${h.url}/r`, { headers: { 'x-internal': 'yes' } });
    expect(skipped.status).toBe(200);
    // Not counted, and in neither header.
    expect(skipped.headers['ratelimit']).toBe('"gw"; r=1; t=60');
    expect(skipped.headers['ratelimit-policy']).toBe('"gw"; q=2; w=60');
    const counted = await send(`${h.url}/r`);
    expect(counted.headers['ratelimit']).toBe('"gw"; r=0; t=60, "route"; r=0; t=60');
  });
});

describe('the algorithms through the gateway, on a fake clock', () => {
  it('token bucket: a burst up to capacity, Retry-After until one token is back, then the refill rate', async () => {
    const now = alignedNow(1000);
    fakeClock(now);
    const h = await gatewayWith({
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { name: 'b', algorithm: 'token-bucket', limit: 3, refillPerSecond: 0.25 },
        },
      ],
    });
    const burst = await send(`${h.url}/r`);
    // w: the time it takes to fill, 3 tokens at 0.25 a second.
    expect(burst.headers['ratelimit-policy']).toBe('"b"; q=3; w=12');
    expect(burst.headers['ratelimit']).toBe('"b"; r=2; t=4');
    expect(await statuses(`${h.url}/r`, 2)).toEqual([200, 200]);
    const refused = await send(`${h.url}/r`);
    expect(refused.status).toBe(429);
    // One token takes 4 s at 0.25 a second.
    expect(refused.headers['retry-after']).toBe('4');
    jest.setSystemTime(now + 3000);
    const still = await send(`${h.url}/r`);
    expect(still.status).toBe(429);
    expect(still.headers['retry-after']).toBe('1');
    jest.setSystemTime(now + 4000);
    expect(await statuses(`${h.url}/r`, 2)).toEqual([200, 429]);
    // Left alone long enough it is full again, never more than full.
    jest.setSystemTime(now + 600_000);
    expect(await statuses(`${h.url}/r`, 4)).toEqual([200, 200, 200, 429]);
  });

  it('sliding window: Retry-After is the time until the weighted count lets one through', async () => {
    const now = alignedNow(10_000);
    fakeClock(now + 1000);
    const h = await gatewayWith({
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { name: 's', algorithm: 'sliding-window', limit: 2, windowMs: 10_000 },
        },
      ],
    });
    expect(await statuses(`${h.url}/r`, 2)).toEqual([200, 200]);
    const refused = await send(`${h.url}/r`);
    expect(refused.status).toBe(429);
    // 2 in this window: the next passes once 2 × (share of it still inside) + 1 ≤ 2, i.e.
    // halfway through the next window, at now + 15 s: 14 s from now + 1 s.
    expect(Number(refused.headers['retry-after'])).toBe(14);
    jest.setSystemTime(now + 14_000);
    expect((await send(`${h.url}/r`)).status).toBe(429);
    jest.setSystemTime(now + 15_000);
    expect(await statuses(`${h.url}/r`, 2)).toEqual([200, 429]);
  });

  it('sliding window refuses the edge burst that a fixed window lets through', async () => {
    const now = alignedNow(10_000);
    fakeClock(now + 9000);
    const h = await gatewayWith({
      routes: [
        {
          path: '/sw',
          service: 'echo',
          rateLimit: { name: 's', algorithm: 'sliding-window', limit: 4, windowMs: 10_000 },
        },
        { path: '/fw', service: 'echo', rateLimit: { name: 'f', limit: 4, windowMs: 10_000 } },
      ],
    });
    expect(await statuses(`${h.url}/sw`, 4)).toEqual([200, 200, 200, 200]);
    expect(await statuses(`${h.url}/fw`, 4)).toEqual([200, 200, 200, 200]);
    // Just past the sliding window's edge, and past the fixed window's 10 s.
    jest.setSystemTime(now + 19_100);
    const sw = await statuses(`${h.url}/sw`, 4);
    const fw = await statuses(`${h.url}/fw`, 4);
    expect(fw).toEqual([200, 200, 200, 200]);
    // previous 4 × 0.09 (share still inside) ≈ 0.36: 3 more pass, not 4.
    expect(sw).toEqual([200, 200, 200, 429]);
  });

  it('fixed window: Retry-After counts down with the window, and the count starts afresh after it', async () => {
    const now = alignedNow(1000) + 123;
    fakeClock(now);
    const h = await gatewayWith({
      routes: [
        { path: '/r', service: 'echo', rateLimit: { name: 'f', limit: 1, windowMs: 10_000 } },
      ],
    });
    expect((await send(`${h.url}/r`)).status).toBe(200);
    jest.setSystemTime(now + 4000);
    const refused = await send(`${h.url}/r`);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('6');
    expect(refused.headers['ratelimit']).toBe('"f"; r=0; t=6');
    jest.setSystemTime(now + 10_001);
    const fresh = await send(`${h.url}/r`);
    expect(fresh.status).toBe(200);
    expect(fresh.headers['ratelimit']).toBe('"f"; r=0; t=10');
  });

  it('of several limits that refuse, the longest refusal answers Retry-After', async () => {
    const now = alignedNow(1000);
    fakeClock(now);
    const h = await gatewayWith({
      rateLimit: { name: 'gw-minute', limit: 2, windowMs: 60_000 },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: [
            { name: 'ten-s', limit: 1, windowMs: 10_000 },
            { name: 'hour', limit: 100, windowMs: 3_600_000 },
            { name: 'bucket', algorithm: 'token-bucket', limit: 1, refillPerSecond: 0.05 },
          ],
        },
      ],
    });
    expect((await send(`${h.url}/r`)).status).toBe(200);
    const second = await send(`${h.url}/r`);
    // ten-s (10 s) and bucket (20 s) refuse; the gateway-wide minute still had one left.
    expect(second.status).toBe(429);
    expect(second.headers['retry-after']).toBe('20');
    expect(second.headers['ratelimit']).toBe(
      '"gw-minute"; r=0; t=60, "ten-s"; r=0; t=10, "hour"; r=98; t=3600, "bucket"; r=0; t=20',
    );
    const third = await send(`${h.url}/r`);
    // Now the minute refuses too (a fixed window counts refusals), and lasts longest.
    expect(third.status).toBe(429);
    expect(third.headers['retry-after']).toBe('60');
  });
});

describe('concurrency', () => {
  it.each([
    ['fixed-window', { limit: 5, windowMs: 60_000 }],
    ['sliding-window', { limit: 5, windowMs: 60_000, algorithm: 'sliding-window' as const }],
    ['token-bucket', { limit: 5, algorithm: 'token-bucket' as const, refillPerSecond: 0.001 }],
  ])('lets exactly the limit through of 30 concurrent requests (%s)', async (_n, limit) => {
    const h = await gatewayWith({
      routes: [{ path: '/r', service: 'echo', rateLimit: { name: 'l', ...limit } }],
    });
    const all = await Promise.all(Array.from({ length: 30 }, () => send(`${h.url}/r`)));
    expect(all.filter((r) => r.status === 200)).toHaveLength(5);
    expect(all.filter((r) => r.status === 429)).toHaveLength(25);
    expect(h.echo.hits()).toBe(5);
  });
});

describe('WebSocket upgrades', () => {
  async function wsGateway(config: Pick<GatewayConfig, 'rateLimit' | 'routes'>) {
    const up = await listen(http.createServer(echoHandler('ws')));
    const wss = new WebSocketServer({ server: up.server });
    let connections = 0;
    wss.on('connection', (ws) => {
      connections++;
      ws.on('message', (m) => ws.send(m));
    });
    closers.push(async () => {
      wss.close();
      await up.close();
    });
    const h = await startGateway({ services: { ws: { targets: [up.url] } }, ...config });
    closers.push(() => h.close());
    const port = (h.running.server.address() as AddressInfo).port;
    return { h, port, connections: () => connections };
  }

  function upgrade(
    url: string,
  ): Promise<{ opened: true; ws: WebSocket } | { opened: false; res: http.IncomingMessage }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('open', () => resolve({ opened: true, ws }));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ opened: false, res });
      });
      ws.once('error', reject);
    });
  }

  it('the gateway-wide limit counts upgrades with HTTP requests; the refusal carries every header', async () => {
    const { h, port, connections } = await wsGateway({
      rateLimit: { name: 'gw', limit: 2, windowMs: 60_000 },
      routes: [
        {
          path: '/ws',
          service: 'ws',
          websocket: true,
          rateLimit: { name: 'ws', limit: 5, windowMs: 60_000 },
        },
      ],
    });
    expect((await send(`${h.url}/ws`)).headers['ratelimit']).toBe(
      '"gw"; r=1; t=60, "ws"; r=4; t=60',
    );
    const first = await upgrade(`ws://127.0.0.1:${port}/api/ws`);
    expect(first.opened).toBe(true);
    if (first.opened) first.ws.close();
    const refused = await upgrade(`ws://127.0.0.1:${port}/api/ws`);
    expect(refused.opened).toBe(false);
    if (refused.opened) return;
    expect(refused.res.statusCode).toBe(429);
    expect(refused.res.headers['retry-after']).toBe('60');
    expect(refused.res.headers['ratelimit-policy']).toBe('"gw"; q=2; w=60, "ws"; q=5; w=60');
    expect(refused.res.headers['ratelimit']).toBe('"gw"; r=0; t=60, "ws"; r=2; t=60');
    expect(connections()).toBe(1);
  });

  it('a raw upgrade refused by the limit gets a 429 problem and its connection is closed', async () => {
    const { port, connections } = await wsGateway({
      routes: [
        {
          path: '/ws',
          service: 'ws',
          websocket: true,
          rateLimit: { name: 'ws', limit: 1, windowMs: 60_000 },
        },
      ],
    });
    const first = await upgrade(`ws://127.0.0.1:${port}/api/ws`);
    expect(first.opened).toBe(true);
    if (first.opened) first.ws.close();
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (text += c));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      [
        'GET /api/ws HTTP/1.1',
        'Host: gateway.test',
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        '',
        '',
      ].join('\r\n'),
    );
    await closed;
    expect(text).toMatch(/^HTTP\/1\.1 429 /);
    expect(text).toMatch(/\r\nretry-after: 60\r\n/i);
    expect(text).toMatch(/\r\nratelimit: "ws"; r=0; t=60\r\n/i);
    expect(text).toContain('urn:turnpike:problem:rate-limited');
    expect(connections()).toBe(1);
  });

  it("an upstream's refusal of an allowed upgrade carries the headers", async () => {
    const up = await listen(http.createServer(echoHandler('ws')));
    up.server.on('upgrade', (_req, socket: net.Socket) => {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    closers.push(() => up.close());
    const h = await startGateway({
      services: { ws: { targets: [up.url] } },
      rateLimit: { name: 'gw', limit: 5, windowMs: 60_000 },
      routes: [{ path: '/ws', service: 'ws', websocket: true }],
    });
    closers.push(() => h.close());
    const port = (h.running.server.address() as AddressInfo).port;
    const r = await upgrade(`ws://127.0.0.1:${port}/api/ws`);
    expect(r.opened).toBe(false);
    if (r.opened) return;
    expect(r.res.statusCode).toBe(403);
    expect(r.res.headers['ratelimit']).toBe('"gw"; r=4; t=60');
  });

  it('rateLimit: false on a WebSocket route leaves its upgrades unlimited', async () => {
    const { port, connections } = await wsGateway({
      rateLimit: { name: 'gw', limit: 1, windowMs: 60_000 },
      routes: [{ path: '/ws', service: 'ws', websocket: true, rateLimit: false }],
    });
    for (let i = 0; i < 3; i++) {
      const r = await upgrade(`ws://127.0.0.1:${port}/api/ws`);
      expect(r.opened).toBe(true);
      if (r.opened) r.ws.close();
    }
    await waitFor(() => connections() === 3);
  });
});

describe('config refused at creation, naming the field', () => {
  const base = { services: { s: { targets: ['http://127.0.0.1:1'] } } };
  it.each<[string, unknown, string]>([
    [
      'a window of 0 in the second limit of a route list',
      {
        routes: [
          { path: '/a', service: 's' },
          { path: '/b', service: 's', rateLimit: [{ limit: 1 }, { limit: 2, windowMs: 0 }] },
        ],
      },
      'routes[1].rateLimit[1].windowMs',
    ],
    [
      'a limit below 1 in a route { limits }',
      { routes: [{ path: '/', service: 's', rateLimit: { limits: [{ limit: 0 }] } }] },
      'routes[0].rateLimit.limits[0].limit',
    ],
    [
      'a fractional limit',
      { routes: [{ path: '/', service: 's' }], rateLimit: { limit: 2.5 } },
      'rateLimit.limit',
    ],
    [
      'a window past what Node timers run',
      { routes: [{ path: '/', service: 's' }], rateLimit: [{ limit: 1, windowMs: 2 ** 31 }] },
      'rateLimit[0].windowMs',
    ],
    [
      'a refill rate on a fixed window',
      {
        routes: [{ path: '/', service: 's' }],
        rateLimit: { limits: [{ limit: 1, refillPerSecond: 1 }] },
      },
      'rateLimit.limits[0].refillPerSecond',
    ],
    [
      'a window on a token bucket',
      {
        routes: [
          {
            path: '/',
            service: 's',
            rateLimit: { limit: 1, algorithm: 'token-bucket', refillPerSecond: 1, windowMs: 1000 },
          },
        ],
      },
      'routes[0].rateLimit.windowMs',
    ],
    [
      'an unknown onStoreError',
      {
        routes: [{ path: '/', service: 's' }],
        rateLimit: { limits: [{ limit: 1 }], onStoreError: 'maybe' },
      },
      'rateLimit.onStoreError',
    ],
    [
      'an ipv6Subnet past 128',
      { routes: [{ path: '/', service: 's', rateLimit: { limit: 1, ipv6Subnet: 129 } }] },
      'routes[0].rateLimit.ipv6Subnet',
    ],
    [
      'an unknown key kind',
      { routes: [{ path: '/', service: 's', rateLimit: { limit: 1, key: 'cookie' } }] },
      'routes[0].rateLimit.key',
    ],
    [
      'an unknown option in a limit',
      { routes: [{ path: '/', service: 's', rateLimit: { limit: 1, windowSize: 10 } }] },
      'routes[0].rateLimit.windowSize',
    ],
    [
      'redis inside the gateway rateLimit',
      {
        routes: [{ path: '/', service: 's' }],
        rateLimit: { limits: [], redis: 'redis://127.0.0.1:6379' },
      },
      'rateLimit.redis',
    ],
    [
      'a logger inside the gateway rateLimit',
      { routes: [{ path: '/', service: 's' }], rateLimit: { limit: 1, logger: console } },
      'rateLimit.logger',
    ],
    [
      'a setting in a route { limits }',
      {
        routes: [{ path: '/', service: 's', rateLimit: { limits: [{ limit: 1 }], prefix: 'x:' } }],
      },
      'routes[0].rateLimit.prefix',
    ],
    [
      'two limits of one name on one route',
      {
        routes: [
          {
            path: '/',
            service: 's',
            rateLimit: [
              { name: 'dup', limit: 1 },
              { name: 'dup', limit: 2 },
            ],
          },
        ],
      },
      'routes[0].rateLimit[1].name',
    ],
    [
      'a timeoutMs of 0',
      { routes: [{ path: '/', service: 's' }], rateLimit: { limits: [], timeoutMs: 0 } },
      'rateLimit.timeoutMs',
    ],
  ])('refuses %s', (_what, config, path) => {
    const err = configErrorOf(() =>
      createGateway({ ...base, ...(config as object) } as unknown as GatewayConfig),
    );
    expect(err.path).toBe(path);
    expect(err.message).toContain(path);
  });

  it.each<[string, unknown, string]>([
    [
      'an unknown algorithm',
      { limits: [{ limit: 1 }, { limit: 1, algorithm: 'gcra' }] },
      'limits[1].algorithm',
    ],
    [
      'a token bucket without a refill rate',
      { limit: 1, algorithm: 'token-bucket' },
      'refillPerSecond',
    ],
    ['a Redis URL that does not parse', { limit: 1, redis: 'not a url' }, 'redis'],
    ['a Redis URL of another scheme', { limit: 1, redis: 'http://127.0.0.1:6379' }, 'redis'],
    ['a negative limit', { limit: -1 }, 'limit'],
    ['an unknown option', { limit: 1, max: 5 }, 'max'],
    [
      'key and keyGenerator together',
      { limit: 1, key: 'ip', keyGenerator: () => 'k' },
      'keyGenerator',
    ],
    ['a maxKeys of 0', { limit: 1, maxKeys: 0 }, 'maxKeys'],
  ])('the standalone middleware refuses %s', (_what, options, path) => {
    const err = configErrorOf(() => rateLimit(options as Parameters<typeof rateLimit>[0]));
    expect(err.path).toBe(path);
  });
});

describe('the standalone middleware in a plain Express app', () => {
  it('sets req.rateLimit and the headers, exposes .limits, and answers a 429 problem', async () => {
    const mw = rateLimit({
      limits: [
        { name: 'burst', limit: 2, windowMs: 1000 },
        { name: 'daily', limit: 1000, windowMs: 86_400_000 },
      ],
    });
    closers.push(() => mw.close());
    expect(mw.limits.map((l) => l.name)).toEqual(['burst', 'daily']);
    const app = express();
    app.use(mw);
    app.get('/', (req, res) => {
      res.json((req as unknown as { rateLimit: RateLimitInfo }).rateLimit);
    });
    const s = await serve(app);
    const r = await send(`${s.url}/`);
    expect(r.headers['ratelimit-policy']).toBe('"burst"; q=2; w=1, "daily"; q=1000; w=86400');
    const info = JSON.parse(r.body) as Record<string, unknown>;
    expect(info).toMatchObject({ name: 'burst', limit: 2, used: 1, remaining: 1, refused: false });
    expect(typeof info['key']).toBe('string');
    expect((await send(`${s.url}/`)).status).toBe(200);
    const refused = await send(`${s.url}/`);
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(refused.body)).toMatchObject({
      type: 'urn:turnpike:problem:rate-limited',
      status: 429,
    });
    expect(refused.headers['retry-after']).toBe('1');
  });

  it("with Express's trust proxy on loopback, counts the forwarded client; trust proxy true warns once", async () => {
    const mw = rateLimit({ name: 'l', limit: 1 });
    closers.push(() => mw.close());
    const app = express();
    app.set('trust proxy', 'loopback');
    app.use(mw);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const s = await serve(app);
    const xff = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
    expect((await send(`${s.url}/`, xff('192.0.2.1'))).status).toBe(200);
    expect((await send(`${s.url}/`, xff('192.0.2.1'))).status).toBe(429);
    expect((await send(`${s.url}/`, xff('192.0.2.2'))).status).toBe(200);

    // Jest's process object does not see 'warning' events: watch emitWarning itself.
    const emitWarning = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    closers.push(() => emitWarning.mockRestore());
    const permissive = rateLimit({ name: 'p', limit: 100 });
    closers.push(() => permissive.close());
    const open = express();
    open.set('trust proxy', true);
    open.use(permissive);
    open.get('/', (_req, res) => {
      res.send('ok');
    });
    const o = await serve(open);
    for (let i = 0; i < 3; i++)
      expect((await send(`${o.url}/`, xff(`10.9.0.${i}`))).status).toBe(200);
    const ours = emitWarning.mock.calls.filter((args) =>
      JSON.stringify(args).includes('TURNPIKE_PERMISSIVE_TRUST_PROXY'),
    );
    expect(ours).toHaveLength(1);
  });

  it('hashes a key over 128 characters: same long key, one count; another, its own', async () => {
    const seen: string[] = [];
    const mw = rateLimit({
      name: 'l',
      limit: 1,
      keyGenerator: (req) => String(req.headers['x-k']).repeat(100),
    });
    closers.push(() => mw.close());
    const app = express();
    app.use(mw);
    app.get('/', (req, res) => {
      seen.push((req as unknown as { rateLimit: RateLimitInfo }).rateLimit.key);
      res.send('ok');
    });
    const s = await serve(app);
    const as = (k: string) => send(`${s.url}/`, { headers: { 'x-k': k } }).then((r) => r.status);
    expect(await as('abc')).toBe(200);
    expect(await as('abc')).toBe(429);
    expect(await as('abd')).toBe(200);
    expect(seen).toHaveLength(2);
    for (const key of seen) expect(key.length).toBeLessThanOrEqual(128);
    expect(seen[0]).not.toBe(seen[1]);
  });

  it('a memory store bounded by maxKeys forgets the least recently seen client', async () => {
    const mw = rateLimit({ name: 'l', limit: 1, key: { header: 'x-k' }, maxKeys: 2 });
    closers.push(() => mw.close());
    const app = express();
    app.use(mw);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const s = await serve(app);
    const as = (k: string) => send(`${s.url}/`, { headers: { 'x-k': k } }).then((r) => r.status);
    expect(await as('a')).toBe(200);
    expect(await as('b')).toBe(200);
    expect(await as('b')).toBe(429);
    // c pushes out a, the least recently seen.
    expect(await as('c')).toBe(200);
    expect(await as('b')).toBe(429);
    expect(await as('a')).toBe(200);
  });

  it('a skip function that throws is a 500 and a log line, not a request let through', async () => {
    const log = recordingLogger();
    const mw = rateLimit({
      name: 'l',
      limit: 1,
      logger: log,
      skip: (req) => {
        if (req.headers['x-boom']) throw new Error('skip exploded');
        return false;
      },
    });
    closers.push(() => mw.close());
    const app = express();
    app.use(mw);
    let handled = 0;
    app.get('/', (_req, res) => {
      handled++;
      res.send('ok');
    });
    const s = await serve(app);
    const r = await send(`${s.url}/`, { headers: { 'x-boom': '1' } });
    expect(r.status).toBe(500);
    expect(handled).toBe(0);
    expect(JSON.stringify(log.entries)).toContain('skip exploded');
    // Without the throw: counted as ever.
    expect(await statuses(`${s.url}/`, 2)).toEqual([200, 429]);
  });
});

describe('the memory stores with express-rate-limit directly', () => {
  it('TokenBucketMemoryStore: bursts up to the capacity, refills at its rate', async () => {
    const now = alignedNow(1000);
    fakeClock(now);
    const app = express();
    app.use(
      expressRateLimit({
        limit: 2,
        store: new TokenBucketMemoryStore({ refillPerSecond: 1 }),
        standardHeaders: 'draft-8',
        legacyHeaders: false,
      }),
    );
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const s = await serve(app);
    expect(await statuses(`${s.url}/`, 3)).toEqual([200, 200, 429]);
    jest.setSystemTime(now + 1000);
    expect(await statuses(`${s.url}/`, 2)).toEqual([200, 429]);
  });

  it('SlidingWindowMemoryStore: refuses the edge burst, and counts per client', async () => {
    const now = alignedNow(10_000);
    fakeClock(now + 9500);
    const app = express();
    app.set('trust proxy', 'loopback');
    app.use(
      expressRateLimit({ limit: 2, windowMs: 10_000, store: new SlidingWindowMemoryStore() }),
    );
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const s = await serve(app);
    const xff = { headers: { 'x-forwarded-for': '192.0.2.9' } };
    expect(await statuses(`${s.url}/`, 3, xff)).toEqual([200, 200, 429]);
    expect((await send(`${s.url}/`, { headers: { 'x-forwarded-for': '192.0.2.10' } })).status).toBe(
      200,
    );
    jest.setSystemTime(now + 10_500);
    // 2 × 0.95 still inside: nothing passes yet.
    expect((await send(`${s.url}/`, xff)).status).toBe(429);
  });
});
