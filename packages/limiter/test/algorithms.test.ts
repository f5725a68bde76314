import express from 'express';
import request from 'supertest';
import { rateLimit as expressRateLimit, type Store } from 'express-rate-limit';
import { ConfigError } from '@turnpike/core';
import {
  FixedWindowMemoryStore,
  SlidingWindowMemoryStore,
  TokenBucketMemoryStore,
  rateLimit,
  type LimitOptions,
  type RateLimitMiddleware,
  type RateLimitOptions,
} from '@turnpike/limiter';
import { fakeClock } from '../../../test/helpers/clock';

const closers: RateLimitMiddleware[] = [];
afterEach(async () => {
  jest.useRealTimers();
  await Promise.all(closers.splice(0).map((m) => m.close()));
});

function appWith(options: RateLimitOptions, trustProxy = false): express.Express {
  const mw = rateLimit(options);
  closers.push(mw);
  const app = express();
  if (trustProxy) app.set('trust proxy', 'loopback');
  app.use(mw);
  app.get(/.*/, (_req, res) => {
    res.send('ok');
  });
  return app;
}

async function statuses(app: express.Express, n: number, from?: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = request(app).get('/');
    if (from !== undefined) r.set('x-forwarded-for', from);
    out.push((await r).status);
  }
  return out;
}

const passed = (s: number[]): number => s.filter((x) => x === 200).length;

describe('the algorithms, in memory', () => {
  // A client's first request at T, 9 more just before T + 60 s, 10 just after: 20 in 0.2 s.
  const W = 60_000;
  const T = 100 * W + 50;
  async function edgeBurst(algorithm: LimitOptions['algorithm']): Promise<number[]> {
    fakeClock(T);
    const app = appWith({ algorithm, limit: 10, windowMs: W });
    const seen = await statuses(app, 1);
    jest.setSystemTime(T + W - 100);
    seen.push(...(await statuses(app, 9)));
    jest.setSystemTime(T + W + 100);
    seen.push(...(await statuses(app, 10)));
    return seen;
  }

  it('a fixed window lets twice the limit through across its edge; the sliding window does not', async () => {
    expect(passed(await edgeBurst('fixed-window'))).toBe(20);
    jest.useRealTimers();
    // The weighted previous window (10 × 0.9975) leaves no room just past the edge.
    expect(passed(await edgeBurst('sliding-window'))).toBe(10);
  });

  it('the sliding window frees room as the previous window slides out', async () => {
    fakeClock(T);
    const app = appWith({ algorithm: 'sliding-window', limit: 10, windowMs: W });
    expect(passed(await statuses(app, 10))).toBe(10);
    // Half-way through the next window: 10 × 0.5 = 5 still counted, 5 free.
    jest.setSystemTime(101 * W + W / 2 + 1);
    const half = await request(app).get('/');
    expect(half.status).toBe(200);
    expect(passed(await statuses(app, 10))).toBe(4);
    const refused = await request(app).get('/').expect(429);
    // Room again once 10 × (the previous window's share) ≤ 4: at 0.6 of this window, 6 s on.
    expect(Number(refused.headers['retry-after'])).toBe(6);
  });

  it('a token bucket passes a burst of its capacity, then the refill rate, never more than capacity', async () => {
    fakeClock(1_000_000);
    const app = appWith({
      name: 'bucket',
      algorithm: 'token-bucket',
      limit: 5,
      refillPerSecond: 2,
    });
    expect(await statuses(app, 6)).toEqual([200, 200, 200, 200, 200, 429]);
    const refused = await request(app).get('/').expect(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers['ratelimit-policy']).toBe('"bucket"; q=5; w=3');
    // Half a second: one token back.
    jest.setSystemTime(1_000_500);
    expect(await statuses(app, 2)).toEqual([200, 429]);
    // A minute idle fills it to 5, not 120.
    jest.setSystemTime(1_060_500);
    const full = await request(app).get('/').expect(200);
    expect(full.headers['ratelimit']).toBe('"bucket"; r=4; t=1');
    expect(await statuses(app, 5)).toEqual([200, 200, 200, 200, 429]);
  });

  it('several limits on one route: each counts, the most restrictive answers', async () => {
    fakeClock(T);
    const app = appWith({
      limits: [
        { name: 'second', limit: 2, windowMs: 1000 },
        { name: 'minute', limit: 3, windowMs: W },
      ],
    });
    expect(await statuses(app, 3)).toEqual([200, 200, 429]);
    jest.setSystemTime(T + 1500);
    // The second's window is new; the minute already counted 3 (the refusal too, as
    // express-rate-limit's fixed window does), so the minute answers now.
    const r = await request(app).get('/').expect(429);
    expect(r.headers['retry-after']).toBe('59');
    expect(r.headers['ratelimit']).toBe('"second"; r=1; t=1, "minute"; r=0; t=59');
  });

  it('a limit from the request (a plan) counts each plan apart', async () => {
    const app = appWith({
      name: 'plan',
      limit: (req) => (req.headers['x-plan'] === 'gold' ? 3 : 1),
      key: { header: 'x-user' },
    });
    const as = async (user: string, plan: string): Promise<request.Response> =>
      request(app).get('/').set('x-user', user).set('x-plan', plan);
    expect((await as('ann', 'gold')).headers['ratelimit-policy']).toBe('"plan"; q=3; w=60');
    expect((await as('ann', 'gold')).status).toBe(200);
    expect((await as('ann', 'gold')).status).toBe(200);
    expect((await as('ann', 'gold')).status).toBe(429);
    const bob = await as('bob', 'free');
    expect(bob.status).toBe(200);
    expect(bob.headers['ratelimit-policy']).toBe('"plan"; q=1; w=60');
    expect((await as('bob', 'free')).status).toBe(429);
  });

  it('skip leaves a request uncounted and without headers', async () => {
    const app = appWith({ limit: 1, skip: (req) => req.url === '/health' });
    for (let i = 0; i < 3; i++) {
      const r = await request(app).get('/health').expect(200);
      expect(r.headers['ratelimit']).toBeUndefined();
    }
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(429);
  });

  it.each<[RateLimitOptions['standardHeaders'], boolean, Record<string, string | undefined>]>([
    [
      'draft-7',
      false,
      { 'ratelimit-policy': '2;w=60', ratelimit: 'limit=2, remaining=1, reset=60' },
    ],
    [
      'draft-6',
      false,
      {
        'ratelimit-policy': '2;w=60',
        'ratelimit-limit': '2',
        'ratelimit-remaining': '1',
        'ratelimit-reset': '60',
      },
    ],
    [
      false,
      true,
      {
        ratelimit: undefined,
        'ratelimit-policy': undefined,
        'x-ratelimit-limit': '2',
        'x-ratelimit-remaining': '1',
        'x-ratelimit-reset': String(Math.ceil((T + 60_000) / 1000)),
      },
    ],
  ])('standardHeaders %s, legacyHeaders %s', async (standardHeaders, legacyHeaders, expected) => {
    fakeClock(T);
    const app = appWith({ limit: 2, windowMs: W, standardHeaders, legacyHeaders });
    const r = await request(app).get('/').expect(200);
    for (const [name, value] of Object.entries(expected)) expect(r.headers[name]).toBe(value);
  });
});

describe('client addresses', () => {
  it('groups IPv6 addresses by their /56: rotating within one allocation buys nothing', async () => {
    const app = appWith({ limit: 1 }, true);
    expect(await statuses(app, 1, '2001:db8:1:100::1')).toEqual([200]);
    expect(await statuses(app, 1, '2001:db8:1:1ff:abcd::2')).toEqual([429]);
    expect(await statuses(app, 1, '2001:db8:1:200::1')).toEqual([200]);
    expect(await statuses(app, 1, '192.0.2.1')).toEqual([200]);
    expect(await statuses(app, 1, '192.0.2.2')).toEqual([200]);
  });

  it('ipv6Subnet sets the prefix; false counts whole addresses', async () => {
    const by64 = appWith({ limit: 1, ipv6Subnet: 64 }, true);
    expect(await statuses(by64, 1, '2001:db8:1:100::1')).toEqual([200]);
    expect(await statuses(by64, 1, '2001:db8:1:100::2')).toEqual([429]);
    expect(await statuses(by64, 1, '2001:db8:1:101::1')).toEqual([200]);
    const whole = appWith({ limit: 1, ipv6Subnet: false }, true);
    expect(await statuses(whole, 1, '2001:db8:1:100::1')).toEqual([200]);
    expect(await statuses(whole, 1, '2001:db8:1:100::2')).toEqual([200]);
  });
});

describe('the stores with express-rate-limit directly', () => {
  function erlApp(store: Store, limit: number): express.Express {
    const app = express();
    app.set('trust proxy', 'loopback');
    app.use(
      expressRateLimit({
        limit,
        windowMs: 60_000,
        store,
        standardHeaders: 'draft-8',
        legacyHeaders: false,
      }),
    );
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    return app;
  }

  it.each([
    ['FixedWindowMemoryStore', () => new FixedWindowMemoryStore()],
    ['SlidingWindowMemoryStore', () => new SlidingWindowMemoryStore()],
    ['TokenBucketMemoryStore', () => new TokenBucketMemoryStore({ refillPerSecond: 0.001 })],
  ])('%s counts for express-rate-limit', async (_name, make) => {
    const store = make();
    const app = erlApp(store, 2);
    expect(await statuses(app, 3, '192.0.2.9')).toEqual([200, 200, 429]);
    const r = await request(app).get('/').set('x-forwarded-for', '192.0.2.10').expect(200);
    expect(r.headers['ratelimit']).toMatch(/^"2-in-1min"; r=1; t=\d+$/);
    if ('shutdown' in store) store.shutdown();
  });

  it.each([
    ['FixedWindowMemoryStore', () => new FixedWindowMemoryStore({ maxKeys: 3 })],
    ['SlidingWindowMemoryStore', () => new SlidingWindowMemoryStore({ maxKeys: 3 })],
    [
      'TokenBucketMemoryStore',
      () => new TokenBucketMemoryStore({ maxKeys: 3, refillPerSecond: 0.001 }),
    ],
  ])(
    '%s keeps at most maxKeys: a flood of new keys evicts the least recently seen',
    async (_n, make) => {
      const store = make();
      const app = erlApp(store, 1);
      expect(await statuses(app, 2, '192.0.2.1')).toEqual([200, 429]);
      // Still remembered while the store has room.
      expect(await statuses(app, 1, '192.0.2.2')).toEqual([200]);
      expect(await statuses(app, 1, '192.0.2.3')).toEqual([200]);
      expect(await statuses(app, 1, '192.0.2.1')).toEqual([429]);
      // Two more clients: the oldest ones (…2, then …3) make room; …1 was seen last, so it stays.
      expect(await statuses(app, 1, '192.0.2.4')).toEqual([200]);
      expect(await statuses(app, 1, '192.0.2.5')).toEqual([200]);
      expect(await statuses(app, 1, '192.0.2.2')).toEqual([200]);
      if ('shutdown' in store) store.shutdown();
    },
  );

  it('the token bucket store refuses to start without a refill rate', () => {
    expect(() => new TokenBucketMemoryStore({} as never)).toThrow(/refillPerSecond > 0/);
  });
});

describe('rateLimit() options', () => {
  it.each<[string, unknown, string]>([
    ['a limit below 1', { limit: 0 }, 'limit'],
    ['a window of 0', { limit: 1, windowMs: 0 }, 'windowMs'],
    ['an unknown algorithm', { limits: [{ limit: 1, algorithm: 'leaky' }] }, 'limits[0].algorithm'],
    [
      'a token bucket without a refill rate',
      { limit: 5, algorithm: 'token-bucket' },
      'refillPerSecond',
    ],
    ['an unparsable Redis URL', { limit: 1, redis: 'redis://' }, 'redis'],
    ['a Redis URL of another scheme', { limit: 1, redis: 'http://127.0.0.1:6379' }, 'redis'],
    ['both key and keyGenerator', { limit: 1, key: 'ip', keyGenerator: () => 'k' }, 'keyGenerator'],
    ['an unknown option', { limit: 1, max: 5 }, 'max'],
  ])('refuses %s, naming the field', (_what, options, path) => {
    let caught: unknown;
    try {
      rateLimit(options as RateLimitOptions);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).path).toBe(path);
  });

  it("keyGenerator is express-rate-limit's key function", async () => {
    const app = appWith({ limit: 1, keyGenerator: (req) => String(req.headers['x-user']) });
    await request(app).get('/').set('x-user', 'a').expect(200);
    await request(app).get('/').set('x-user', 'a').expect(429);
    await request(app).get('/').set('x-user', 'b').expect(200);
  });
});

describe('hardening', () => {
  it.each([
    ['SlidingWindowMemoryStore', () => new SlidingWindowMemoryStore()],
    ['TokenBucketMemoryStore', () => new TokenBucketMemoryStore({ refillPerSecond: 0.001 })],
  ])(
    '%s under skipFailedRequests: a refusal given back gives back nothing',
    async (_name, make) => {
      const store = make();
      const app = express();
      app.use(expressRateLimit({ limit: 3, windowMs: 60_000, store, skipFailedRequests: true }));
      app.get('/', (_req, res) => {
        res.send('ok');
      });
      expect(passed(await statuses(app, 20))).toBe(3);
      store.shutdown();
    },
  );

  it.each<[string, unknown, string]>([
    ['a window longer than Node timers run', { limit: 1, windowMs: 30 * 86_400_000 }, 'windowMs'],
    ['a window under 100 ms', { limit: 1, windowMs: 1 }, 'windowMs'],
    ['a limit no header can carry', { limit: 1e21 }, 'limit'],
    [
      'a refill rate of nearly nothing',
      { limit: 1, algorithm: 'token-bucket', refillPerSecond: 1e-9 },
      'refillPerSecond',
    ],
    ['a command timeout of a month', { limit: 1, timeoutMs: 3e9 }, 'timeoutMs'],
    ['a pause of a day', { limit: 1, retryMs: 86_400_000 }, 'retryMs'],
  ])('refuses %s', (_what, options, path) => {
    let caught: unknown;
    try {
      rateLimit(options as RateLimitOptions);
    } catch (err) {
      caught = err;
    }
    expect((caught as ConfigError).path).toBe(path);
  });

  it('hashes a long key from a key function; a numeric subject is a subject', async () => {
    const keys: string[] = [];
    const app = express();
    app.use((req, _res, next) => {
      const id = req.headers['x-id'];
      if (id !== undefined) (req as unknown as { auth: unknown }).auth = { subject: Number(id) };
      next();
    });
    const long = rateLimit({ name: 'long', limit: 5, key: (req) => String(req.headers['x-key']) });
    const subject = rateLimit({ name: 'sub', limit: 5, key: 'subject' });
    closers.push(long, subject);
    app.use(long, (req, _res, next) => {
      keys.push((req as unknown as { rateLimit: { key: string } }).rateLimit.key);
      next();
    });
    app.use(subject, (req, res) => {
      res.send((req as unknown as { rateLimit: { key: string } }).rateLimit.key);
    });
    const r = await request(app).get('/').set('x-key', 'k'.repeat(4000)).set('x-id', '12345');
    expect(r.text).toBe('sub:12345');
    expect(keys[0]!.length).toBeLessThanOrEqual(128);
    const short = await request(app).get('/').set('x-key', 'abc');
    expect(short.status).toBe(200);
    expect(keys[1]).toBe('abc');
  });

  it('a limit function with more distinct values than counters drops the least recently used, never a 500', async () => {
    const app = appWith({
      name: 'quota',
      limit: (req) => Number(req.headers['x-quota']),
      key: { header: 'x-user' },
    });
    for (let q = 1; q <= 70; q++) {
      const r = await request(app).get('/').set('x-quota', String(q)).set('x-user', 'u');
      expect(r.status).toBe(200);
      expect(r.headers['ratelimit-policy']).toBe(`"quota"; q=${q}; w=60`);
    }
    // Value 70's count is kept: its second request is counted on.
    const again = await request(app).get('/').set('x-quota', '70').set('x-user', 'u');
    expect(again.headers['ratelimit']).toBe('"quota"; r=68; t=60');
  });

  it("warns once when Express's trust proxy is true (any client could pick its address)", async () => {
    const emit = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const app = appWith({ limit: 100 }, false);
      app.set('trust proxy', true);
      await statuses(app, 3, '192.0.2.1');
      const ours = emit.mock.calls.filter(
        ([, options]) => options?.code === 'TURNPIKE_PERMISSIVE_TRUST_PROXY',
      );
      expect(ours).toHaveLength(1);
    } finally {
      emit.mockRestore();
    }
  });
});
