/**
 * Issue 8, a second suite written from the issue and the user docs alone: the gateway's rate
 * limits counted in Redis (the shared 127.0.0.1:6379 under a random prefix per test, and
 * private redis-servers for the cases that kill, stop or restart one).
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import WebSocket, { WebSocketServer } from 'ws';
import type { GatewayConfig } from '@turnpike/gateway';
import {
  echoHandler,
  listen,
  startEcho,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import {
  killRedisServers,
  monitorRedis,
  redisCommand,
  startRedisServer,
  type RedisServer,
} from './helpers/redis-server';
import { recordingLogger } from './helpers/outcomes';
import { deadPort } from './helpers/upstreams';

const SHARED_PORT = 6379;
const SHARED = `redis://127.0.0.1:${SHARED_PORT}`;

const closers: (() => Promise<void> | void)[] = [];
const prefixes: string[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  // What the tests left in the shared Redis.
  for (const prefix of prefixes.splice(0)) {
    const keys = (await redisCommand(SHARED_PORT, ['KEYS', `${prefix}*`])) as string[];
    if (keys.length > 0) await redisCommand(SHARED_PORT, ['DEL', ...keys]);
  }
});
afterAll(killRedisServers);

// No Redis trouble may surface as an unhandled rejection.
const rejections: unknown[] = [];
const onRejection = (reason: unknown): void => void rejections.push(reason);
beforeAll(() => process.on('unhandledRejection', onRejection));
afterAll(() => process.off('unhandledRejection', onRejection));
afterEach(() => {
  expect(rejections.splice(0)).toEqual([]);
});

function freshPrefix(): string {
  const prefix = `test:issue8:${randomUUID()}:`;
  prefixes.push(prefix);
  return prefix;
}

async function echo(): Promise<Running> {
  const e = await startEcho();
  closers.push(() => e.close());
  return e;
}

/** A gateway on `redis` with an echo service `echo` (closed after the test, unless closed before). */
async function gateway(
  config: Omit<GatewayConfig, 'services'> & { services?: GatewayConfig['services'] },
  upstream?: Running,
): Promise<GatewayHarness> {
  const e = upstream ?? (await echo());
  const h = await startGateway({
    ...config,
    services: { echo: { targets: [e.url] }, ...config.services },
  });
  let closed = false;
  const close = h.close.bind(h);
  h.close = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  closers.push(() => h.close());
  return h;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

function send(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body,
            ms: Date.now() - started,
          }),
        );
      })
      .on('error', reject);
  });
}

async function keysOf(port: number, pattern: string): Promise<string[]> {
  return ((await redisCommand(port, ['KEYS', pattern])) as string[]).sort();
}

/** Clients of the server other than the one asking. */
async function clientCount(redis: RedisServer): Promise<number> {
  const list = (await redisCommand(redis.port, ['CLIENT', 'LIST'])) as string;
  return list.trim().split('\n').length - 1;
}

/** The commands clients sent, from MONITOR lines: not a script's own calls, nor the marks. */
function commandsSent(lines: readonly string[]): string[] {
  return lines
    .filter((l) => !l.includes(' lua] ') && !l.includes('"ECHO"'))
    .map((l) => /\] "([^"]+)"/.exec(l)![1]!.toLowerCase());
}

describe('counts shared across instances', () => {
  it.each<[string, NonNullable<GatewayConfig['routes'][number]['rateLimit']>]>([
    ['fixed-window', { name: 'route', limit: 3, windowMs: 60_000 }],
    ['sliding-window', { name: 'route', algorithm: 'sliding-window', limit: 3, windowMs: 60_000 }],
    [
      'token-bucket',
      { name: 'route', algorithm: 'token-bucket', limit: 3, refillPerSecond: 0.001 },
    ],
  ])(
    'a route limit (%s) counts once for two instances, next to a gateway-wide one',
    async (_alg, routeLimit) => {
      const prefix = freshPrefix();
      const e = await echo();
      const config = {
        redis: SHARED,
        rateLimit: { limits: [{ name: 'gw', limit: 100, windowMs: 60_000 }], prefix },
        routes: [
          { path: '/r', service: 'echo', rateLimit: routeLimit },
          { path: '/other', service: 'echo' },
        ],
      };
      const a = await gateway(config, e);
      const b = await gateway(config, e);
      const seen: Answer[] = [];
      for (let i = 0; i < 5; i++) seen.push(await send(`${(i % 2 === 0 ? a : b).url}/r`));
      expect(seen.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
      expect(seen.map((r) => /"route"; r=(\d+)/.exec(String(r.headers['ratelimit']))?.[1])).toEqual(
        ['2', '1', '0', '0', '0'],
      );
      // The gateway-wide count is shared too, and across routes: 5 on /r, this one on /other.
      expect((await send(`${b.url}/other`)).headers['ratelimit']).toBe('"gw"; r=94; t=60');
    },
  );

  it.each<[string, NonNullable<GatewayConfig['rateLimit']>]>([
    ['fixed-window', { name: 'l', limit: 7, windowMs: 60_000 }],
    ['sliding-window', { name: 'l', algorithm: 'sliding-window', limit: 7, windowMs: 60_000 }],
    ['token-bucket', { name: 'l', algorithm: 'token-bucket', limit: 7, refillPerSecond: 0.001 }],
  ])(
    'lets exactly the limit through of 40 concurrent requests on two instances (%s)',
    async (_alg, limit) => {
      const prefix = freshPrefix();
      const e = await echo();
      let hits = 0;
      e.server.on('request', () => hits++);
      const config = {
        redis: SHARED,
        rateLimit: { limits: [limit as object], prefix },
        routes: [{ path: '/r', service: 'echo' }],
      } as Omit<GatewayConfig, 'services'>;
      const a = await gateway(config, e);
      const b = await gateway(config, e);
      const all = await Promise.all(
        Array.from({ length: 40 }, (_, i) => send(`${(i % 2 ? a : b).url}/r`)),
      );
      expect(all.filter((r) => r.status === 200)).toHaveLength(7);
      expect(all.filter((r) => r.status === 429)).toHaveLength(33);
      expect(hits).toBe(7);
    },
  );

  it('counts WebSocket upgrades of two instances in one count', async () => {
    const prefix = freshPrefix();
    const up = await listen(http.createServer(echoHandler('ws')));
    const wss = new WebSocketServer({ server: up.server });
    wss.on('connection', (ws) => ws.close());
    closers.push(async () => {
      wss.close();
      await up.close();
    });
    const config: GatewayConfig = {
      redis: SHARED,
      services: { ws: { targets: [up.url] } },
      rateLimit: { limits: [], prefix },
      routes: [
        { path: '/ws', service: 'ws', websocket: true, rateLimit: { name: 'ws', limit: 1 } },
      ],
    };
    const a = await gateway(config);
    const b = await gateway(config);
    const port = (h: GatewayHarness) => (h.running.server.address() as AddressInfo).port;
    const opened = await new Promise<boolean>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port(a)}/api/ws`);
      ws.once('open', () => resolve(true));
      ws.once('unexpected-response', () => resolve(false));
      ws.once('error', () => resolve(false));
    });
    expect(opened).toBe(true);
    const refused = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port(b)}/api/ws`);
      ws.once('open', () => reject(new Error('the other instance let the upgrade through')));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        resolve(res);
      });
      ws.once('error', () => {});
    });
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['ratelimit']).toBe('"ws"; r=0; t=60');
    expect(refused.headers['retry-after']).toBe('60');
  });

  it('a token bucket in Redis answers Retry-After until one token is back', async () => {
    const prefix = freshPrefix();
    const h = await gateway({
      redis: SHARED,
      rateLimit: { limits: [], prefix },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { name: 'b', algorithm: 'token-bucket', limit: 2, refillPerSecond: 0.1 },
        },
      ],
    });
    const first = await send(`${h.url}/r`);
    expect(first.headers['ratelimit-policy']).toBe('"b"; q=2; w=20');
    expect((await send(`${h.url}/r`)).status).toBe(200);
    const refused = await send(`${h.url}/r`);
    expect(refused.status).toBe(429);
    // One token takes 10 s at 0.1 a second (a few ms of it may have passed).
    expect(refused.headers['retry-after']).toBe('10');
    // Refused, t is when one token is back too (RateLimitInfo.resetTime).
    expect(refused.headers['ratelimit']).toBe('"b"; r=0; t=10');
  });
});

describe('Redis keys', () => {
  it('gateway-wide and route keys have the documented shape, the client key as the hash tag', async () => {
    const prefix = freshPrefix();
    const h = await gateway(
      {
        redis: SHARED,
        rateLimit: { limits: [{ name: 'gw', limit: 100 }], prefix },
        routes: [
          {
            path: '/users/**',
            name: 'users',
            service: 'echo',
            rateLimit: [
              { name: 'by-ip', limit: 10 },
              { name: 'by-sub', algorithm: 'sliding-window', limit: 10, key: 'subject' },
              {
                name: 'by-key',
                algorithm: 'token-bucket',
                limit: 10,
                refillPerSecond: 1,
                key: 'api-key',
              },
              { name: 'by-tenant', limit: 10, key: { header: 'X-Tenant' } },
              { name: 'by-fn', limit: 10, key: (req) => `fn-${String(req.headers['x-tenant'])}` },
              { name: 'by-plan', limit: () => 7 },
            ],
          },
        ],
      },
      undefined,
    );
    expect((await send(`${h.url}/users/1`, { 'x-tenant': 'acme' })).status).toBe(200);
    const keys = await keysOf(SHARED_PORT, `${prefix}*`);
    const route = /^route:users:([^:]+):/.exec(
      keys.find((k) => k.includes('by-ip'))!.slice(prefix.length),
    );
    expect(route).not.toBeNull();
    const r = `${prefix}route:users:${route![1]}:`;
    expect(keys).toEqual(
      [
        `${prefix}gw:gw:fw:{ip:127.0.0.1}`,
        `${r}by-ip:fw:{ip:127.0.0.1}`,
        `${r}by-sub:sw:{ip:127.0.0.1}`,
        `${r}by-key:tb:{ip:127.0.0.1}`,
        `${r}by-tenant:fw:{h:acme}`,
        `${r}by-fn:fw:{fn-acme}`,
        `${r}by-plan:fw:q7:{ip:127.0.0.1}`,
      ].sort(),
    );
  });

  it('keys subjects, API keys and long header values as documented', async () => {
    const prefix = freshPrefix();
    const e = await echo();
    const h = await startGateway(
      {
        redis: SHARED,
        services: { echo: { targets: [e.url] } },
        rateLimit: { limits: [], prefix },
        routes: [
          {
            path: '/r',
            service: 'echo',
            rateLimit: [
              { name: 'sub', limit: 10, key: 'subject' },
              { name: 'key', limit: 10, key: 'api-key' },
              { name: 'hdr', limit: 10, key: { header: 'x-long' } },
            ],
          },
        ],
      },
      {
        before: (app) =>
          app.use((req, _res, next) => {
            (req as { auth?: unknown }).auth = { subject: 'alice', keyId: 'k-123' };
            next();
          }),
      },
    );
    closers.push(() => h.close());
    const long = 'v'.repeat(300);
    expect((await send(`${h.url}/r`, { 'x-long': long })).status).toBe(200);
    const keys = await keysOf(SHARED_PORT, `${prefix}*`);
    expect(keys.find((k) => k.includes(':sub:'))).toMatch(/:sub:fw:\{sub:alice\}$/);
    expect(keys.find((k) => k.includes(':key:'))).toMatch(/:key:fw:\{key:k-123\}$/);
    const hdr = keys.find((k) => k.includes(':hdr:'))!;
    expect(hdr).toMatch(/:hdr:fw:\{h:[^{}]+\}$/);
    expect(hdr).not.toContain(long);
    const tag = /\{(.*)\}$/.exec(hdr)![1]!;
    expect(tag.length).toBeLessThanOrEqual(130);
    // The same long value is the same key: counted on.
    const again = await send(`${h.url}/r`, { 'x-long': long });
    expect(again.headers['ratelimit']).toContain('"hdr"; r=8;');
  });

  it('a route keeps its keys in another order of the routes; two routes of one name count apart', async () => {
    const prefix = freshPrefix();
    const e = await echo();
    const limited = {
      path: '/r',
      service: 'echo',
      name: 'api',
      rateLimit: { name: 'l', limit: 3 },
    };
    const a = await gateway(
      {
        redis: SHARED,
        rateLimit: { limits: [], prefix },
        routes: [
          { path: '/x', service: 'echo', name: 'api', rateLimit: { name: 'l', limit: 3 } },
          limited,
        ],
      },
      e,
    );
    const b = await gateway(
      { redis: SHARED, rateLimit: { limits: [], prefix }, routes: [limited] },
      e,
    );
    expect((await send(`${a.url}/r`)).headers['ratelimit']).toBe('"l"; r=2; t=60');
    expect((await send(`${b.url}/r`)).headers['ratelimit']).toBe('"l"; r=1; t=60');
    // Same route name, another path: a count of its own.
    expect((await send(`${a.url}/x`)).headers['ratelimit']).toBe('"l"; r=2; t=60');
    expect(await keysOf(SHARED_PORT, `${prefix}*`)).toHaveLength(2);
  });

  it('uses turnpike:rl: as the default prefix, and a prefix of its own when set', async () => {
    const redis = await startRedisServer();
    const e = await echo();
    const routes = [{ path: '/r', service: 'echo', rateLimit: { name: 'l', limit: 5 } }];
    const plain = await gateway({ redis: redis.url, routes }, e);
    expect((await send(`${plain.url}/r`)).status).toBe(200);
    const custom = await gateway(
      { redis: redis.url, rateLimit: { limits: [], prefix: 'acme/' }, routes },
      e,
    );
    expect((await send(`${custom.url}/r`)).headers['ratelimit']).toBe('"l"; r=4; t=60');
    const keys = await keysOf(redis.port, '*');
    expect(keys).toHaveLength(2);
    expect(keys.filter((k) => k.startsWith('turnpike:rl:route:'))).toHaveLength(1);
    expect(keys.filter((k) => k.startsWith('acme/route:'))).toHaveLength(1);
  });

  it('sends one EVALSHA per limit per request and nothing else; SCRIPT FLUSH recovers every script', async () => {
    const redis = await startRedisServer();
    const monitor = await monitorRedis(redis.port);
    closers.push(() => monitor.close());
    const h = await gateway({
      redis: redis.url,
      rateLimit: { name: 'gw', limit: 1000 },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: [
            { name: 'sw', algorithm: 'sliding-window', limit: 1000 },
            { name: 'tb', algorithm: 'token-bucket', limit: 1000, refillPerSecond: 1 },
          ],
        },
      ],
    });
    for (let i = 0; i < 2; i++) expect((await send(`${h.url}/r`)).status).toBe(200);
    await monitor.mark();
    for (let i = 0; i < 5; i++) expect((await send(`${h.url}/r`)).status).toBe(200);
    expect(commandsSent(await monitor.mark())).toEqual(Array(15).fill('evalsha'));

    await redisCommand(redis.port, ['SCRIPT', 'FLUSH']);
    await monitor.mark();
    const after = await send(`${h.url}/r`);
    expect(after.status).toBe(200);
    // Counted on from before the flush: 2 + 5 + this one.
    expect(after.headers['ratelimit']).toMatch(
      /^"gw"; r=992; t=60, "sw"; r=992; t=\d+, "tb"; r=992; t=\d+$/,
    );
    const sent = commandsSent(await monitor.mark());
    expect(sent.filter((c) => c === 'eval')).toHaveLength(3);
    expect(sent.filter((c) => c === 'evalsha')).toHaveLength(3);
    for (let i = 0; i < 2; i++) expect((await send(`${h.url}/r`)).status).toBe(200);
    expect(commandsSent(await monitor.mark())).toEqual(Array(6).fill('evalsha'));
  });
});

describe('Redis unreachable at start', () => {
  async function unreachable(
    mode: 'open' | 'closed' | 'local',
    log: ReturnType<typeof recordingLogger>,
  ): Promise<GatewayHarness> {
    const port = await deadPort();
    return gateway({
      redis: `redis://127.0.0.1:${port}`,
      logger: log,
      rateLimit: {
        limits: [{ name: 'l', limit: 2, windowMs: 60_000 }],
        onStoreError: mode,
        timeoutMs: 150,
        retryMs: 1500,
        prefix: freshPrefix(),
      },
      routes: [{ path: '/r', service: 'echo' }],
    });
  }

  it.each<['open' | 'closed' | 'local', number[]]>([
    ['open', [200, 200, 200, 200, 200]],
    ['closed', [503, 503, 503, 503, 503]],
    ['local', [200, 200, 429, 429, 429]],
  ])(
    'onStoreError %s: serves at once, none slower than the command timeout, one warning',
    async (mode, expected) => {
      const log = recordingLogger();
      const h = await unreachable(mode, log);
      const answers: Answer[] = [];
      for (let i = 0; i < 5; i++) answers.push(await send(`${h.url}/r`));
      expect(answers.map((a) => a.status)).toEqual(expected);
      expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(150 + 400);
      if (mode === 'closed') {
        expect(answers[0]!.headers['retry-after']).toBe('2');
        expect(JSON.parse(answers[0]!.body)).toMatchObject({
          type: 'urn:turnpike:problem:limiter-unavailable',
          status: 503,
        });
      }
      if (mode === 'local') expect(answers[2]!.headers['ratelimit']).toBe('"l"; r=0; t=60');
      await waitFor(() => log.entries.some((e) => e.level === 'warn'));
      expect(log.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
      expect(log.entries.filter((e) => e.level === 'error')).toHaveLength(0);
      // close() does not wait for a Redis that never answered.
      const closing = Date.now();
      await h.close();
      expect(Date.now() - closing).toBeLessThan(2000);
    },
  );

  it('a limit that says closed answers 503 while one that says open lets through, on one request', async () => {
    const port = await deadPort();
    const h = await gateway({
      redis: `redis://127.0.0.1:${port}`,
      rateLimit: {
        limits: [{ name: 'lenient', limit: 5, onStoreError: 'open' }],
        onStoreError: 'open',
        prefix: freshPrefix(),
      },
      routes: [
        {
          path: '/strict',
          service: 'echo',
          rateLimit: [{ name: 'strict', limit: 5, onStoreError: 'closed' }],
        },
        { path: '/loose', service: 'echo' },
      ],
    });
    expect((await send(`${h.url}/strict`)).status).toBe(503);
    expect((await send(`${h.url}/loose`)).status).toBe(200);
  });
});

describe('Redis going away and coming back', () => {
  it('a route limit on local holds per instance while Redis is down, and is shared when it is back', async () => {
    const redis = await startRedisServer();
    const e = await echo();
    const logs = [recordingLogger(), recordingLogger()];
    const prefix = freshPrefix();
    const [a, b] = await Promise.all(
      logs.map((logger) =>
        gateway(
          {
            redis: redis.url,
            logger,
            rateLimit: { limits: [], prefix, timeoutMs: 150, onStoreError: 'local' },
            routes: [
              {
                path: '/r',
                service: 'echo',
                rateLimit: [
                  { name: 'l', algorithm: 'sliding-window', limit: 2, key: { header: 'x-k' } },
                ],
              },
            ],
          },
          e,
        ),
      ),
    );
    const as = (h: GatewayHarness, k: string) => send(`${h.url}/r`, { 'x-k': k });
    expect((await as(a!, 'down')).status).toBe(200);
    await redis.kill();
    // Each instance counts on its own now, from zero.
    const local = [];
    for (const h of [a!, a!, a!, b!, b!, b!]) local.push((await as(h, 'down')).status);
    expect(local).toEqual([200, 200, 429, 200, 200, 429]);
    expect(logs.every((l) => l.entries.filter((x) => x.level === 'warn').length === 1)).toBe(true);

    await redis.restart();
    // Nothing but requests tries Redis again: keep sending until both say it is back.
    const deadline = Date.now() + 10_000;
    while (!logs.every((l) => l.entries.some((x) => x.level === 'info')) && Date.now() < deadline) {
      await as(a!, 'probe');
      await as(b!, 'probe');
    }
    expect(logs.every((l) => l.entries.some((x) => x.level === 'info'))).toBe(true);
    // A client neither has seen: one count between the two instances again.
    const shared = [];
    for (const h of [a!, b!, a!, b!]) shared.push((await as(h, 'fresh')).status);
    expect(shared).toEqual([200, 200, 429, 429]);
    expect(await keysOf(redis.port, `${prefix}*{h:fresh}`)).toHaveLength(1);
    expect(logs.every((l) => l.entries.filter((x) => x.level === 'warn').length === 1)).toBe(true);
  });

  it('closed answers 503 from the kill on, then counts in Redis again once it is back', async () => {
    const redis = await startRedisServer();
    const log = recordingLogger();
    const h = await gateway({
      redis: redis.url,
      logger: log,
      rateLimit: { limits: [], prefix: freshPrefix(), timeoutMs: 150, retryMs: 300 },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: { limits: [{ name: 'l', limit: 100, onStoreError: 'closed' }] },
        },
      ],
    });
    expect((await send(`${h.url}/r`)).headers['ratelimit']).toBe('"l"; r=99; t=60');
    await redis.kill();
    const down: Answer[] = [];
    for (let i = 0; i < 5; i++) down.push(await send(`${h.url}/r`));
    expect(down.map((d) => d.status)).toEqual([503, 503, 503, 503, 503]);
    expect(down.map((d) => d.headers['retry-after'])).toEqual(['1', '1', '1', '1', '1']);
    expect(Math.max(...down.map((d) => d.ms))).toBeLessThan(150 + 400);
    await redis.restart();
    const deadline = Date.now() + 10_000;
    let back: Answer | undefined;
    while (Date.now() < deadline) {
      const r = await send(`${h.url}/r`);
      if (r.status === 200) {
        back = r;
        break;
      }
    }
    expect(back?.headers['ratelimit']).toBe('"l"; r=99; t=60');
    expect(log.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
    expect(log.entries.filter((e) => e.level === 'info')).toHaveLength(1);
  });

  it('a hung Redis costs a request with three limits at most one command timeout', async () => {
    const redis = await startRedisServer();
    const h = await gateway({
      redis: redis.url,
      rateLimit: {
        limits: [{ name: 'gw', limit: 1000 }],
        prefix: freshPrefix(),
        timeoutMs: 200,
        retryMs: 5000,
        onStoreError: 'open',
      },
      routes: [
        {
          path: '/r',
          service: 'echo',
          rateLimit: [
            { name: 'sw', algorithm: 'sliding-window', limit: 1000 },
            { name: 'tb', algorithm: 'token-bucket', limit: 1000, refillPerSecond: 1 },
          ],
        },
      ],
    });
    expect((await send(`${h.url}/r`)).status).toBe(200);
    process.kill(redis.pid!, 'SIGSTOP');
    const answers: Answer[] = [];
    try {
      for (let i = 0; i < 4; i++) answers.push(await send(`${h.url}/r`));
    } finally {
      process.kill(redis.pid!, 'SIGCONT');
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(200 + 350);
  });
});

describe('close()', () => {
  it('closes the connection it opened while Redis is down: nothing reconnects when it is back', async () => {
    const redis = await startRedisServer();
    const e = await echo();
    const config = (prefix: string): Omit<GatewayConfig, 'services'> => ({
      redis: redis.url,
      rateLimit: { limits: [{ name: 'l', limit: 5 }], prefix, timeoutMs: 150 },
      routes: [{ path: '/r', service: 'echo' }],
    });
    // A witness that stays open: once it has reconnected, a leaked connection would have too.
    const witness = await gateway(config(freshPrefix()), e);
    expect((await send(`${witness.url}/r`)).status).toBe(200);
    const h = await gateway(config(freshPrefix()), e);
    expect((await send(`${h.url}/r`)).status).toBe(200);
    expect(await clientCount(redis)).toBe(2);
    await redis.kill();
    expect((await send(`${h.url}/r`)).status).toBe(200);
    const closing = Date.now();
    await h.close();
    expect(Date.now() - closing).toBeLessThan(2000);
    // Redis back: the witness reconnects, the closed gateway does not.
    await redis.restart();
    const deadline = Date.now() + 10_000;
    while ((await clientCount(redis)) < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await send(`${witness.url}/r`)).status).toBe(200);
    expect(await clientCount(redis)).toBe(1);
  });

  it('counts on an ioredis client passed as redis, and leaves it open after close()', async () => {
    const client = new Redis(SHARED, { enableOfflineQueue: false, commandTimeout: 250 });
    closers.push(() => client.disconnect());
    await new Promise<void>((resolve) => client.once('ready', () => resolve()));
    const prefix = freshPrefix();
    const e = await echo();
    const config: GatewayConfig = {
      redis: client, // an ioredis client, as GatewayConfig.redis types it
      services: { echo: { targets: [e.url] } },
      rateLimit: { limits: [], prefix },
      routes: [{ path: '/r', service: 'echo', rateLimit: { name: 'l', limit: 2 } }],
    };
    const a = await gateway(config, e);
    const b = await gateway({ ...config, redis: SHARED }, e);
    expect((await send(`${a.url}/r`)).status).toBe(200);
    expect((await send(`${b.url}/r`)).status).toBe(200);
    expect((await send(`${a.url}/r`)).status).toBe(429);
    await a.close();
    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
    expect(await client.keys(`${prefix}*`)).toHaveLength(1);
  });
});
