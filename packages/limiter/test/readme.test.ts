import http from 'node:http';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import express from 'express';
import * as expressRateLimit from 'express-rate-limit';
import { Redis } from 'ioredis';
import * as limiterModule from '@turnpike/limiter';
import type { RateLimitMiddleware } from '@turnpike/limiter';
import { listen, type Running } from '../../../test/helpers/servers';
import { edited, readReadme, runExample } from '../../../test/helpers/readme';
import { fakeClock } from '../../../test/helpers/clock';

const MODULES = {
  express,
  'express-rate-limit': expressRateLimit,
  '@turnpike/limiter': limiterModule,
};
const run = (code: string, globals: Record<string, unknown> = {}): Record<string, unknown> =>
  runExample(code, MODULES, globals);

const { codeAfter } = readReadme(path.join(__dirname, '..', 'README.md'));

const running: Running[] = [];
const closers: RateLimitMiddleware[] = [];

afterEach(async () => {
  jest.useRealTimers();
  await Promise.all(running.splice(0).map((r) => r.close()));
  await Promise.all(closers.splice(0).map((m) => m.close()));
});

async function serve(app: http.RequestListener): Promise<string> {
  const host = await listen(http.createServer(app));
  running.push(host);
  return host.url;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers: { connection: 'close', ...headers } });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe('README: the plain Express example', () => {
  it('stacks the app-wide limit and the two search limits; the sixth search in a second is a 429', async () => {
    const code = edited(codeAfter('### In a plain Express app'), [
      ['app.listen(8080);', 'module.exports = { app, searchLimit };'],
    ]);
    const { app } = run(code) as { app: http.RequestListener };

    const base = await serve(app);
    // The sliding windows are aligned to the clock: stop it at the start of an hour.
    fakeClock(500_000 * 3_600_000);
    const first = await get(`${base}/search`);
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toEqual({ results: [], remaining: 4 });
    expect(first.headers.get('ratelimit-policy')).toBe(
      '"300-in-1min"; q=300; w=60, "per-second"; q=5; w=1, "per-hour"; q=1000; w=3600',
    );
    expect(first.headers.get('ratelimit')).toMatch(
      /^"300-in-1min"; r=299; t=60, "per-second"; r=4; t=1, "per-hour"; r=999; t=3600$/,
    );
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await get(`${base}/search`)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    const refused = await get(`${base}/search`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(JSON.parse(refused.body)).toMatchObject({ type: 'urn:turnpike:problem:rate-limited' });
    // Until this second's 5, weighted, have slid out enough: 1.2 s from its start.
    expect(refused.headers.get('retry-after')).toBe('2');
    // Only the app-wide limit elsewhere, counted once per request: 7 so far, the refusals too.
    const other = await get(`${base}/elsewhere`);
    expect(other.status).toBe(404);
    expect(other.headers.get('ratelimit')).toBe('"300-in-1min"; r=292; t=60');
  });
});

describe('README: limits per plan', () => {
  it('gives a pro subject 1000 and another 100, each counted apart', async () => {
    const code = `${codeAfter('### Limits per plan')}\nmodule.exports = { planLimit };`;
    const { planLimit } = run(code, { rateLimit: limiterModule.rateLimit }) as {
      planLimit: RateLimitMiddleware;
    };
    closers.push(planLimit);
    const app = express();
    app.use((req, _res, next) => {
      const [subject, plan] = String(req.headers['x-user'] ?? '').split(':');
      if (subject) (req as unknown as { auth: unknown }).auth = { subject, plan };
      next();
    });
    app.use(planLimit);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const base = await serve(app);
    const pro = await get(base, { 'x-user': 'ann:pro' });
    expect(pro.headers.get('ratelimit-policy')).toBe('"plan"; q=1000; w=60');
    expect(pro.headers.get('ratelimit')).toBe('"plan"; r=999; t=60');
    const free = await get(base, { 'x-user': 'bob:free' });
    expect(free.headers.get('ratelimit')).toBe('"plan"; r=99; t=60');
    expect((await get(base, { 'x-user': 'bob:free' })).headers.get('ratelimit')).toBe(
      '"plan"; r=98; t=60',
    );
  });
});

describe('README: counted in Redis', () => {
  it('counts in the Redis the URL names', async () => {
    const prefix = `test:${randomUUID()}:`;
    const code = edited(codeAfter('### Counted in Redis'), [
      ['process.env.REDIS_URL', "'redis://127.0.0.1:6379'"],
      ["onStoreError: 'local',", `onStoreError: 'local', prefix: '${prefix}',`],
    ]);
    const { shared } = run(`${code}\nmodule.exports = { shared };`, {
      rateLimit: limiterModule.rateLimit,
    }) as {
      shared: RateLimitMiddleware;
    };
    const app = express();
    app.use(shared);
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const base = await serve(app);
    expect((await get(base)).headers.get('ratelimit')).toBe('"100-in-1min"; r=99; t=60');
    const redis = new Redis('redis://127.0.0.1:6379');
    try {
      const keys = await redis.keys(`${prefix}*`);
      expect(keys).toHaveLength(1);
      expect(await redis.get(keys[0]!)).toBe('1');
      await redis.del(...keys);
    } finally {
      await redis.quit();
    }
    await shared.close();
  });
});

describe('README: the stores with express-rate-limit directly', () => {
  it('the sliding window in memory and the token bucket in Redis count under express-rate-limit', async () => {
    const redis = new Redis('redis://127.0.0.1:6379');
    const prefix = `test:${randomUUID()}:`;
    try {
      const app = express();
      app.set('trust proxy', 'loopback');
      const code = edited(codeAfter('### The stores, with express-rate-limit directly'), [
        // Slower refill, so the 21st is refused however slow this machine is.
        ['refillPerSecond: 5 }', `refillPerSecond: 0.001, prefix: '${prefix}' }`],
      ]);
      run(code, { app, redis });
      app.get('/', (_req, res) => {
        res.send('ok');
      });
      const base = await serve(app);
      const statuses = [];
      for (let i = 0; i < 21; i++) {
        statuses.push((await get(base, { 'x-forwarded-for': '192.0.2.1' })).status);
      }
      // The bucket's capacity of 20, then a refusal (the sliding window's 100 allow them all).
      expect(statuses).toEqual([...(Array(20).fill(200) as number[]), 429]);
      expect(await redis.keys(`${prefix}*`)).toEqual([`${prefix}{192.0.2.1}`]);
      await redis.del(`${prefix}{192.0.2.1}`);
    } finally {
      await redis.quit();
    }
  });
});
