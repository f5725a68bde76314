import http from 'node:http';
import { randomUUID } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import { Redis } from 'ioredis';
import { rateLimit as expressRateLimit, type Store } from 'express-rate-limit';
import {
  FixedWindowRedisStore,
  SlidingWindowRedisStore,
  TokenBucketRedisStore,
  rateLimit,
  type Algorithm,
} from '@turnpike/limiter';
import {
  listen,
  startEcho,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import {
  killRedisServers,
  redisCommand,
  monitorRedis,
  startRedisServer,
  type RedisServer,
} from './helpers/redis-server';
import { recordingLogger } from './helpers/outcomes';

const SHARED = 'redis://127.0.0.1:6379';
const harnesses: GatewayHarness[] = [];
const upstreams: Running[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
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

type LimitSpec = {
  limit: number;
  windowMs?: number;
  algorithm?: Algorithm;
  refillPerSecond?: number;
  onStoreError?: 'open' | 'closed' | 'local';
};

async function gateways(
  n: number,
  redis: string,
  limit: LimitSpec,
  extra: { timeoutMs?: number; retryMs?: number; logger?: ReturnType<typeof recordingLogger> } = {},
): Promise<GatewayHarness[]> {
  const echo = await startEcho();
  upstreams.push(echo);
  const prefix = `test:${randomUUID()}:`;
  const out: GatewayHarness[] = [];
  for (let i = 0; i < n; i++) {
    const h = await startGateway({
      services: { echo: { targets: [echo.url] } },
      routes: [{ path: '/a', service: 'echo' }],
      rateLimit: {
        limits: [{ name: 'l', ...limit }],
        prefix,
        timeoutMs: extra.timeoutMs,
        retryMs: extra.retryMs,
      },
      redis,
      logger: extra.logger,
    });
    harnesses.push(h);
    out.push(h);
  }
  return out;
}

function get(
  url: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, ms: Date.now() - started }),
        );
      })
      .on('error', reject);
  });
}

describe('rate limits counted in Redis', () => {
  it.each<[Algorithm, LimitSpec]>([
    ['fixed-window', { limit: 4, windowMs: 60_000 }],
    ['sliding-window', { limit: 4, windowMs: 60_000, algorithm: 'sliding-window' }],
    ['token-bucket', { limit: 4, algorithm: 'token-bucket', refillPerSecond: 0.01 }],
  ])('two gateway instances share one count (%s)', async (_name, limit) => {
    const [a, b] = await gateways(2, SHARED, limit);
    const seen = [];
    for (let i = 0; i < 6; i++) seen.push((await get(`${(i % 2 === 0 ? a : b)!.url}/a`)).status);
    expect(seen).toEqual([200, 200, 200, 200, 429, 429]);
  });

  it('sends exactly one Redis command per request, and recovers from SCRIPT FLUSH mid-traffic', async () => {
    const redis = await startRedisServer();
    const monitor = await monitorRedis(redis.port);
    try {
      for (const algorithm of ['fixed-window', 'sliding-window', 'token-bucket'] as const) {
        const limit: LimitSpec =
          algorithm === 'token-bucket'
            ? { limit: 1000, algorithm, refillPerSecond: 1 }
            : { limit: 1000, windowMs: 60_000, algorithm };
        const [g] = await gateways(1, redis.url, limit);
        for (let i = 0; i < 3; i++) expect((await get(`${g!.url}/a`)).status).toBe(200);
        await monitor.mark();
        for (let i = 0; i < 20; i++) expect((await get(`${g!.url}/a`)).status).toBe(200);
        // What the clients sent; `[0 lua]` lines are the script's own calls inside the one EVALSHA.
        expect(commandsSent(await monitor.mark())).toEqual(Array(20).fill('evalsha'));

        await redisCommand(redis.port, ['SCRIPT', 'FLUSH']);
        await monitor.mark();
        const after = await get(`${g!.url}/a`);
        expect(after.status).toBe(200);
        // Counted on from before the flush: 3 + 20 + this one. (A sliding window's reset is
        // the end of the current aligned window, anywhere in the minute.)
        expect(after.headers['ratelimit']).toMatch(
          {
            'fixed-window': /^"l"; r=976; t=60$/,
            'sliding-window': /^"l"; r=976; t=\d+$/,
            'token-bucket': /^"l"; r=976; t=24$/,
          }[algorithm],
        );
        // The NOSCRIPT reply, then EVAL, which caches the script again; the next is EVALSHA.
        expect(commandsSent(await monitor.mark())).toEqual(['evalsha', 'eval']);
        expect((await get(`${g!.url}/a`)).status).toBe(200);
        expect(commandsSent(await monitor.mark())).toEqual(['evalsha']);
        await harnesses.pop()!.close();
      }
    } finally {
      monitor.close();
    }
  });

  it('with Redis killed mid-traffic, onStoreError open lets every request through fast', async () => {
    const redis = await startRedisServer();
    const log = recordingLogger();
    const [g] = await gateways(
      1,
      redis.url,
      { limit: 1000, windowMs: 60_000, onStoreError: 'open' },
      { timeoutMs: 200, logger: log },
    );
    // Four clients in a loop; Redis is killed once 20 requests have been answered.
    const traffic = startTraffic(`${g!.url}/a`, 4);
    await waitFor(() => traffic.results.length >= 20, 10_000);
    await redis.kill();
    const killedAt = traffic.results.length;
    await waitFor(() => traffic.results.length >= killedAt + 40, 10_000);
    const results = await traffic.stop();
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    // No request waits for the dead Redis: none near a reconnect (2 s) or worse; the command
    // timeout (200 ms) is the most any may cost, with room for a busy machine.
    expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(200 + 400);
    // One warning for the outage, not one per request.
    expect(log.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
    expect(log.entries.filter((e) => e.level === 'error')).toHaveLength(0);

    await redis.restart();
    await waitFor(() => log.entries.some((e) => e.level === 'info'), 10_000);
    // A fresh Redis (no persistence): counted there again from zero.
    const back = await get(`${g!.url}/a`);
    expect(back.headers['ratelimit']).toBe('"l"; r=999; t=60');
    expect(log.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
  });

  it('a Redis that hangs (SIGSTOP) costs a request at most the command timeout, then is left alone', async () => {
    const redis = await startRedisServer();
    const log = recordingLogger();
    const [g] = await gateways(
      1,
      redis.url,
      { limit: 1000, windowMs: 60_000, onStoreError: 'open' },
      { timeoutMs: 100, retryMs: 3000, logger: log },
    );
    expect((await get(`${g!.url}/a`)).status).toBe(200);
    process.kill(redis.pid!, 'SIGSTOP');
    const results: { status: number; ms: number }[] = [];
    try {
      for (let i = 0; i < 10; i++) results.push(await get(`${g!.url}/a`));
    } finally {
      process.kill(redis.pid!, 'SIGCONT');
    }
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    // The first waited out the timeout; none waited much longer.
    expect(results[0]!.ms).toBeGreaterThanOrEqual(100);
    expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(100 + 400);
    // Sent to Redis: the request before the hang and the one that timed out (Redis ran it
    // when it woke), which paused Redis for retryMs: the nine after it sent nothing.
    expect(await evalshaCalls(redis, 2)).toBe(2);
    expect(log.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
    // Answering again: once the pause (retryMs) is over, one request probes it, succeeds, and
    // counts are shared again. Nothing but requests probes, so keep sending them.
    const deadline = Date.now() + 10_000;
    let shared = false;
    while (!shared && Date.now() < deadline) {
      await get(`${g!.url}/a`);
      shared = log.entries.some((e) => e.level === 'info');
    }
    expect(shared).toBe(true);
  });

  it('with Redis killed, onStoreError local still enforces the limit per instance, and shares again after', async () => {
    const redis = await startRedisServer();
    const logs = [recordingLogger(), recordingLogger()];
    const echo = await startEcho();
    upstreams.push(echo);
    const prefix = `test:${randomUUID()}:`;
    const [a, b] = await Promise.all(
      logs.map(async (logger) => {
        const h = await startGateway({
          services: { echo: { targets: [echo.url] } },
          routes: [{ path: '/a', service: 'echo' }],
          rateLimit: {
            limits: [{ name: 'l', limit: 3, windowMs: 60_000, onStoreError: 'local' }],
            prefix,
            timeoutMs: 200,
          },
          redis: redis.url,
          logger,
        });
        harnesses.push(h);
        return h;
      }),
    );
    await redis.kill();
    const local = [];
    for (let i = 0; i < 4; i++) local.push((await get(`${a!.url}/a`)).status);
    expect(local).toEqual([200, 200, 200, 429]);
    expect((await get(`${b!.url}/a`)).status).toBe(200); // b counts on its own

    await redis.restart();
    await waitFor(() => logs.every((l) => l.entries.some((e) => e.level === 'info')), 10_000);
    // One count between them again (a fresh Redis): 3 in all, then refused on either.
    const shared = [];
    for (let i = 0; i < 5; i++) shared.push((await get(`${(i % 2 === 0 ? a : b)!.url}/a`)).status);
    expect(shared).toEqual([200, 200, 200, 429, 429]);
  });

  it('onStoreError closed answers 503 limiter-unavailable with Retry-After while Redis is down', async () => {
    const redis = await startRedisServer();
    const [g] = await gateways(
      1,
      redis.url,
      { limit: 5, windowMs: 60_000, onStoreError: 'closed' },
      { timeoutMs: 200 },
    );
    expect((await get(`${g!.url}/a`)).status).toBe(200);
    await redis.kill();
    const r = await get(`${g!.url}/a`);
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
  });

  it('starts with Redis unreachable, serves, and counts in Redis once it answers; close() leaves no connection', async () => {
    const redis = await startRedisServer();
    await redis.kill();
    const log = recordingLogger();
    const [g] = await gateways(
      1,
      redis.url,
      { limit: 2, windowMs: 60_000 },
      { timeoutMs: 200, logger: log },
    );
    // Unreachable: the default, local, counts in this instance.
    const local = [];
    for (let i = 0; i < 3; i++) local.push((await get(`${g!.url}/a`)).status);
    expect(local).toEqual([200, 200, 429]);

    await redis.restart();
    await waitFor(() => log.entries.some((e) => e.level === 'info'), 10_000);
    expect((await get(`${g!.url}/a`)).status).toBe(200);
    expect(await redisCommand(redis.port, ['KEYS', 'test:*'])).toHaveLength(1);
    expect(await clientCount(redis)).toBe(1);

    await harnesses.pop()!.close();
    // QUIT was answered before close() resolved; the server drops the client as it reads it.
    await waitForAsync(async () => (await clientCount(redis)) === 0);
  });
});

interface Traffic {
  readonly results: { status: number; ms: number }[];
  /** Stops the loops; resolves with every result once the requests in flight are answered. */
  stop(): Promise<{ status: number; ms: number }[]>;
}

/** `clients` loops, each sending one request after another to `url` until stopped. */
function startTraffic(url: string, clients: number): Traffic {
  const results: { status: number; ms: number }[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const r = await get(url).catch(() => ({ status: 0, ms: 0 }));
      results.push({ status: r.status, ms: r.ms });
    }
  });
  return {
    results,
    async stop() {
      running = false;
      await Promise.all(loops);
      return results;
    },
  };
}

/** The commands clients sent, from MONITOR lines: not the calls a script made. */
function commandsSent(lines: readonly string[]): string[] {
  return lines
    .filter((l) => !l.includes(' lua] ') && !l.includes('"ECHO"'))
    .map((l) => /\] "([^"]+)"/.exec(l)![1]!.toLowerCase());
}

async function waitForAsync(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * EVALSHA calls the server has run (INFO commandstats: a client's, not a script's own calls),
 * once at least `atLeast` are in: commands a resumed server still holds unread come first.
 */
async function evalshaCalls(redis: RedisServer, atLeast: number): Promise<number> {
  const calls = async (): Promise<number> => {
    const info = (await redisCommand(redis.port, ['INFO', 'commandstats'])) as string;
    return Number(/^cmdstat_evalsha:calls=(\d+)/m.exec(info)?.[1] ?? 0);
  };
  await waitForAsync(async () => (await calls()) >= atLeast);
  return calls();
}

/** Clients of the server other than the one asking. */
describe('the limiter on Redis, hardened', () => {
  it('a hung Redis behind a client of the user costs a request at most timeoutMs too', async () => {
    const redis = await startRedisServer();
    // ioredis defaults: an offline queue, no command timeout.
    const client = new Redis(redis.url);
    const mw = rateLimit({
      limits: [
        { name: 'a', limit: 1000 },
        { name: 'b', limit: 1000, algorithm: 'sliding-window' },
      ],
      redis: client,
      timeoutMs: 300,
      retryMs: 3000,
      onStoreError: 'open',
      prefix: `test:${randomUUID()}:`,
    });
    const app = express();
    app.use(mw);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const server = await listen(http.createServer(app));
    try {
      expect((await get(`${server.url}/`)).headers['ratelimit']).toMatch(
        /^"a"; r=999; t=60, "b"; r=999/,
      );
      process.kill(redis.pid!, 'SIGSTOP');
      const results = [];
      try {
        for (let i = 0; i < 5; i++) results.push(await get(`${server.url}/`));
      } finally {
        process.kill(redis.pid!, 'SIGCONT');
      }
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      // Two limits, one timeout (300 ms, not 600): the first limit's paused Redis for the
      // second, and for the requests after it.
      expect(results[0]!.ms).toBeGreaterThanOrEqual(300);
      expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(300 + 250);
      // Two EVALSHA for the first request, one for the one that timed out; nothing after.
      expect(await evalshaCalls(redis, 3)).toBe(3);
    } finally {
      await server.close();
      await mw.close();
      client.disconnect();
    }
  });

  it('a client made with lazyConnect is connected and counted on', async () => {
    const client = new Redis(SHARED, { lazyConnect: true });
    const prefix = `test:${randomUUID()}:`;
    const mw = rateLimit({ name: 'l', limit: 3, redis: client, prefix });
    const app = express();
    app.use(mw);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    try {
      await request(app).get('/').expect(200);
      await request(app).get('/').expect(200);
      expect(await client.keys(`${prefix}*`)).toHaveLength(1);
    } finally {
      await mw.close();
      await client.quit();
    }
  });

  it('routes of one name (GET /x and POST /x) count apart in Redis, as in memory', async () => {
    const echo = await startEcho();
    upstreams.push(echo);
    const h = await startGateway({
      services: { echo: { targets: [echo.url] } },
      routes: [
        { path: '/x', service: 'echo', methods: ['GET'], rateLimit: { limit: 2 } },
        { path: '/x', service: 'echo', methods: ['POST'], rateLimit: { limit: 2 } },
      ],
      rateLimit: { limits: [], prefix: `test:${randomUUID()}:` },
      redis: SHARED,
    });
    harnesses.push(h);
    const send = async (method: string): Promise<number> =>
      (await fetch(`${h.url}/x`, { method })).status;
    expect([await send('GET'), await send('GET'), await send('GET')]).toEqual([200, 200, 429]);
    expect([await send('POST'), await send('POST'), await send('POST')]).toEqual([200, 200, 429]);
  });

  it('a key Redis refuses (WRONGTYPE) follows onStoreError for that key alone: one log line, no outage', async () => {
    const log = recordingLogger();
    const prefix = `test:${randomUUID()}:`;
    const client = new Redis(SHARED);
    const mw = rateLimit({
      name: 'l',
      algorithm: 'sliding-window',
      limit: 3,
      key: { header: 'x-user' },
      redis: SHARED,
      prefix,
      onStoreError: 'open',
      logger: log,
    });
    const app = express();
    app.use(mw);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    try {
      await client.set(`${prefix}l:sw:{h:bad}`, 'not a hash');
      for (let i = 0; i < 5; i++) {
        const r = await request(app).get('/').set('x-user', 'bad');
        expect(r.status).toBe(200); // open: through, uncounted
      }
      // Everyone else is counted in Redis as ever.
      const good = [];
      for (let i = 0; i < 4; i++)
        good.push((await request(app).get('/').set('x-user', 'good')).status);
      expect(good).toEqual([200, 200, 200, 429]);
      expect(log.entries.map((e) => e.level)).toEqual(['error']);
      expect(log.entries[0]!.meta).toMatchObject({ limit: 'l' });
      expect(String(log.entries[0]!.meta!['error'])).toMatch(/^WRONGTYPE/);
    } finally {
      await mw.close();
      await client.del(...(await client.keys(`${prefix}*`)));
      await client.quit();
    }
  });

  it.each<[string, (client: Redis, prefix: string) => Store]>([
    ['FixedWindowRedisStore', (client, prefix) => new FixedWindowRedisStore({ client, prefix })],
    [
      'SlidingWindowRedisStore',
      (client, prefix) => new SlidingWindowRedisStore({ client, prefix }),
    ],
    [
      'TokenBucketRedisStore',
      (client, prefix) => new TokenBucketRedisStore({ client, prefix, refillPerSecond: 0.001 }),
    ],
  ])(
    '%s gives requests back for skipFailedRequests, a refusal giving back nothing',
    async (_n, make) => {
      const client = new Redis(SHARED);
      const prefix = `test:${randomUUID()}:`;
      try {
        const app = express();
        let fail = true;
        app.use(
          expressRateLimit({
            limit: 3,
            windowMs: 60_000,
            store: make(client, prefix),
            skipFailedRequests: true,
          }),
        );
        app.get('/', (_req, res) => {
          res.status(fail ? 500 : 200).send('x');
        });
        // Failed answers are given back: five 500s leave the whole limit.
        for (let i = 0; i < 5; i++) await request(app).get('/').expect(500);
        fail = false;
        const seen = [];
        for (let i = 0; i < 20; i++) seen.push((await request(app).get('/')).status);
        // Then 3 pass, and the refusals (429, a failure too) buy nothing back.
        expect(seen.filter((s) => s === 200)).toHaveLength(3);
      } finally {
        const keys = await client.keys(`${prefix}*`);
        if (keys.length > 0) await client.del(...keys);
        await client.quit();
      }
    },
  );
});

describe('the Redis stores on a client of the user', () => {
  let client: Redis;
  beforeAll(() => {
    client = new Redis(SHARED);
  });
  afterAll(async () => {
    await client.quit();
  });

  it.each<[string, (prefix: string) => Store]>([
    ['FixedWindowRedisStore', (prefix) => new FixedWindowRedisStore({ client, prefix })],
    ['SlidingWindowRedisStore', (prefix) => new SlidingWindowRedisStore({ client, prefix })],
    [
      'TokenBucketRedisStore',
      (prefix) => new TokenBucketRedisStore({ client, prefix, refillPerSecond: 0.001 }),
    ],
  ])('%s counts for express-rate-limit directly, under hash-tagged keys', async (_name, make) => {
    const prefix = `test:${randomUUID()}:`;
    const app = express();
    app.set('trust proxy', 'loopback');
    app.use(expressRateLimit({ limit: 2, windowMs: 60_000, store: make(prefix) }));
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const seen = [];
    for (let i = 0; i < 3; i++) {
      seen.push((await request(app).get('/').set('x-forwarded-for', '192.0.2.7')).status);
    }
    expect(seen).toEqual([200, 200, 429]);
    await request(app).get('/').set('x-forwarded-for', '192.0.2.8').expect(200);
    // One key per client, the client's key in braces: one Cluster slot per script call.
    const keys = (await client.keys(`${prefix}*`)).sort();
    expect(keys).toEqual([`${prefix}{192.0.2.7}`, `${prefix}{192.0.2.8}`]);
    await client.del(...keys);
  });

  it('rateLimit({ redis: client }).close() leaves the client open', async () => {
    const mw = rateLimit({ limit: 5, redis: client, prefix: `test:${randomUUID()}:` });
    const app = express();
    app.use(mw);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const r = await request(app).get('/').expect(200);
    expect(r.headers['ratelimit']).toBe('"5-in-1min"; r=4; t=60');
    await mw.close();
    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
  });
});

async function clientCount(redis: RedisServer): Promise<number> {
  const list = (await redisCommand(redis.port, ['CLIENT', 'LIST'])) as string;
  return list.trim().split('\n').length - 1;
}
