import express from 'express';
import request from 'supertest';
import { rateLimit, type RateLimitMiddleware } from '@turnpike/limiter';

const closers: RateLimitMiddleware[] = [];
afterEach(async () => {
  jest.useRealTimers();
  await Promise.all(closers.splice(0).map((m) => m.close()));
});

function appWith(mw: RateLimitMiddleware): express.Express {
  closers.push(mw);
  const app = express();
  app.use(mw);
  app.get('/', (req, res) => {
    res.json((req as unknown as { rateLimit: unknown }).rateLimit);
  });
  return app;
}

describe('rateLimit() in a plain Express app', () => {
  it('allows `limit` requests, then answers 429 problems with Retry-After and draft-8 headers', async () => {
    const app = appWith(rateLimit({ limit: 2, windowMs: 60_000 }));
    const first = await request(app).get('/');
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"2-in-1min"; q=2; w=60');
    expect(first.headers['ratelimit']).toBe('"2-in-1min"; r=1; t=60');
    expect(first.body).toMatchObject({
      name: '2-in-1min',
      limit: 2,
      used: 1,
      remaining: 1,
      refused: false,
    });
    await request(app).get('/').expect(200);
    const refused = await request(app).get('/');
    expect(refused.status).toBe(429);
    expect(refused.headers['content-type']).toBe('application/problem+json');
    expect(refused.headers['x-content-type-options']).toBe('nosniff');
    expect(refused.headers['retry-after']).toBe('60');
    expect(refused.headers['ratelimit']).toBe('"2-in-1min"; r=0; t=60');
    expect(refused.body).toMatchObject({ type: 'urn:turnpike:problem:rate-limited', status: 429 });
  });

  it('counts every limit once and answers with the most restrictive refusal', async () => {
    const app = appWith(
      rateLimit({
        limits: [
          { name: 'burst', limit: 1, windowMs: 1000 },
          { name: 'hour', limit: 3, windowMs: 3_600_000 },
        ],
      }),
    );
    const ok = await request(app).get('/').expect(200);
    expect(ok.headers['ratelimit']).toBe('"burst"; r=0; t=1, "hour"; r=2; t=3600');
    expect(ok.headers['ratelimit-policy']).toBe('"burst"; q=1; w=1, "hour"; q=3; w=3600');
    const second = await request(app).get('/').expect(429);
    expect(second.headers['retry-after']).toBe('1');
    expect(second.headers['ratelimit']).toBe('"burst"; r=0; t=1, "hour"; r=1; t=3600');
    await request(app).get('/').expect(429);
    const fourth = await request(app).get('/').expect(429);
    // The hour limit is spent too now: its refusal (an hour away) is the one that answers.
    expect(fourth.headers['retry-after']).toBe('3600');
  });
});
