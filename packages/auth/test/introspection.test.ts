import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import request from 'supertest';
import { ConfigError, silentLogger } from '@turnpike/core';
import {
  AuthUnavailableError,
  compileIntrospection,
  introspectionAuth,
  isAuthUnavailable,
  requireRoles,
  type IntrospectionAuthOptions,
  type JwtVerifier,
  authenticate,
} from '@turnpike/auth';
import { bearerAnswers } from '../src/answers';
import { fakeClock } from '../../../test/helpers/clock';
import { recordingLogger } from '../../../test/helpers/outcomes';
import { listen, waitFor, type Running } from '../../../test/helpers/servers';

const CLIENT_ID = 'gateway';
/** Characters that must be form-urlencoded in the Basic credentials (RFC 6749 §2.3.1). */
const CLIENT_SECRET = 'sEcr3t:with/odd+chars ü%';
const ISS = 'https://issuer.test';
const AUD = 'api://gateway';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  jest.useRealTimers();
  for (const c of closers.splice(0).reverse()) await c();
});

type Mode = 'answer' | 'status500' | 'hang' | 'close' | 'html' | 'no-active' | 'redirect' | 'hold';

/** A real RFC 7662 endpoint on port 0 that checks the protocol and can be made to fail. */
interface FakeEndpoint {
  running: Running;
  url: string;
  /** Introspection calls received. */
  calls: number;
  mode: Mode;
  /** Protocol errors the endpoint saw (wrong method, body, headers): must stay empty. */
  bad: string[];
  /** Tokens it knows, each answering a fresh body (unknown tokens are inactive). */
  tokens: Map<string, () => Record<string, unknown>>;
  /** Answers held in `hold` mode. */
  held: (() => void)[];
  release(): void;
}

const nowSec = (): number => Math.floor(Date.now() / 1000);

const annBody = (): Record<string, unknown> => ({
  active: true,
  sub: 'ann',
  scope: 'read write',
  client_id: 'web',
  iss: ISS,
  aud: AUD,
  exp: nowSec() + 60,
});

function decodeForm(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

async function startEndpoint(): Promise<FakeEndpoint> {
  const ep = {
    calls: 0,
    mode: 'answer' as Mode,
    bad: [] as string[],
    tokens: new Map<string, () => Record<string, unknown>>([
      ['tok-ann', annBody],
      ['tok-expired', () => ({ ...annBody(), exp: nowSec() - 10 })],
      ['tok-user', () => ({ active: true, username: 'bob', roles: ['admin'], exp: nowSec() + 60 })],
      ['tok-other-iss', () => ({ ...annBody(), iss: 'https://evil.test' })],
      ['tok-other-aud', () => ({ ...annBody(), aud: ['api://other'] })],
      ['tok-no-sub', () => ({ active: true, scope: 'read', exp: nowSec() + 60 })],
    ]),
    held: [] as (() => void)[],
    release() {
      for (const answer of ep.held.splice(0)) answer();
    },
  };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      ep.calls++;
      const json = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const auth = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
      const pair = auth === null ? '' : Buffer.from(auth[1]!, 'base64').toString('utf8');
      const colon = pair.indexOf(':');
      const id = decodeForm(pair.slice(0, colon));
      const secret = decodeForm(pair.slice(colon + 1));
      if (colon < 0 || id !== CLIENT_ID || secret !== CLIENT_SECRET) {
        res.setHeader('www-authenticate', 'Basic realm="introspection"');
        return json(401, { error: 'invalid_client' });
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const problems = [
        req.method !== 'POST' && `method ${req.method}`,
        req.url !== '/introspect' && `url ${req.url}`,
        req.headers['content-type'] !== 'application/x-www-form-urlencoded' &&
          `content-type ${req.headers['content-type']}`,
        req.headers.accept !== 'application/json' && `accept ${req.headers.accept}`,
        form.get('token_type_hint') !== 'access_token' && 'no token_type_hint',
        !form.get('token') && 'no token',
      ].filter((p): p is string => typeof p === 'string');
      if (problems.length > 0) {
        ep.bad.push(...problems);
        return json(400, { error: 'invalid_request' });
      }
      const answer = (): void => {
        const make = ep.tokens.get(form.get('token')!);
        json(200, make === undefined ? { active: false } : make());
      };
      switch (ep.mode) {
        case 'answer':
          return answer();
        case 'hold':
          ep.held.push(answer);
          return;
        case 'status500':
          return json(500, { error: 'server_error' });
        case 'hang':
          return;
        case 'close':
          req.socket.destroy();
          return;
        case 'html':
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html>maintenance</html>');
          return;
        case 'no-active':
          return json(200, { sub: 'ann' });
        case 'redirect':
          res.writeHead(302, { location: '/elsewhere' });
          res.end();
          return;
      }
    });
  };
  const running = await listen(handler);
  closers.push(() => running.close());
  return Object.assign(ep, { running, url: `${running.url}/introspect` });
}

function optionsFor(ep: FakeEndpoint, extra: Partial<IntrospectionAuthOptions> = {}) {
  return {
    endpoint: ep.url,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    ...extra,
  } satisfies IntrospectionAuthOptions;
}

/** A plain Express app: the middleware, then a handler that shows req.auth. */
function appWith(
  options: IntrospectionAuthOptions,
  after: express.RequestHandler[] = [],
): { app: express.Express; arrived: () => number } {
  const mw = introspectionAuth(options);
  closers.push(() => mw.close());
  let arrived = 0;
  const app = express();
  app.get(
    '/',
    (_req, _res, next) => {
      arrived++;
      next();
    },
    mw,
    ...after,
    (req, res) => {
      res.json((req as unknown as { auth?: unknown }).auth ?? null);
    },
  );
  return { app, arrived: () => arrived };
}

const bearer = (token: string): [string, string] => ['authorization', `Bearer ${token}`];

describe('introspectionAuth against a real introspection endpoint, in a plain Express app', () => {
  it('sets req.auth from an active answer; the endpoint got Basic credentials and the form body', async () => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep));
    const r = await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    expect(r.body).toMatchObject({
      subject: 'ann',
      scopes: ['read', 'write'],
      roles: [],
      consumer: 'web',
      method: 'introspection',
      claims: { active: true, iss: ISS, aud: AUD },
    });
    expect(ep.calls).toBe(1);
    expect(ep.bad).toEqual([]);
  });

  it('takes the subject from username when there is no sub; claim paths apply', async () => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep), [requireRoles('admin')]);
    const r = await request(app)
      .get('/')
      .set(...bearer('tok-user'))
      .expect(200);
    expect(r.body).toMatchObject({ subject: 'bob', roles: ['admin'], scopes: [] });
    expect(r.body).not.toHaveProperty('consumer'); // undefined: no client_id
  });

  it('answers an inactive token 401 invalid_token; no token gets the bare challenge', async () => {
    const ep = await startEndpoint();
    const log = recordingLogger();
    const { app } = appWith(optionsFor(ep, { logger: log }));
    const inactive = await request(app)
      .get('/')
      .set(...bearer('tok-unknown-to-the-endpoint'))
      .expect(401);
    expect(inactive.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
    expect(inactive.body).toMatchObject({ type: 'urn:turnpike:problem:unauthenticated' });
    expect(JSON.stringify(inactive.body)).not.toMatch(/active/);
    const missing = await request(app).get('/').expect(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="api"');
    const malformed = await request(app).get('/').set('authorization', 'Bearer a b').expect(401);
    expect(malformed.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
    expect(ep.calls).toBe(1);
    expect(JSON.stringify(log.entries)).not.toContain('tok-unknown-to-the-endpoint');
  });

  it.each([
    ['with an expired exp', 'tok-expired', {}],
    ['from another issuer', 'tok-other-iss', { issuer: ISS }],
    ['for another audience', 'tok-other-aud', { audience: [AUD, 'api://more'] }],
    ['naming no subject', 'tok-no-sub', {}],
  ])('refuses an active answer %s with 401', async (_what, token, extra) => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep, extra));
    const r = await request(app)
      .get('/')
      .set(...bearer(token))
      .expect(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
  });

  it('accepts a token whose iss and aud match the configured ones', async () => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep, { issuer: [ISS], audience: AUD }));
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
  });

  it('serves the same token from the cache, and asks again once its exp has passed', async () => {
    const t0 = Date.now();
    fakeClock(t0);
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep));
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    expect(ep.calls).toBe(1);
    jest.setSystemTime(t0 + 30_000);
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    expect(ep.calls).toBe(1);
    jest.setSystemTime(t0 + 61_000); // past the exp (t0 + 60 s) of the first answer
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    expect(ep.calls).toBe(2);
    // Another token is another entry.
    await request(app)
      .get('/')
      .set(...bearer('tok-user'))
      .expect(200);
    expect(ep.calls).toBe(3);
  });

  it('keeps an active answer no longer than maxCacheMs, whatever its exp', async () => {
    const t0 = Date.now();
    fakeClock(t0);
    const ep = await startEndpoint();
    ep.tokens.set('tok-long', () => ({ ...annBody(), exp: nowSec() + 86_400 }));
    const { app } = appWith(optionsFor(ep, { maxCacheMs: 1000 }));
    await request(app)
      .get('/')
      .set(...bearer('tok-long'))
      .expect(200);
    jest.setSystemTime(t0 + 999);
    await request(app)
      .get('/')
      .set(...bearer('tok-long'))
      .expect(200);
    expect(ep.calls).toBe(1);
    jest.setSystemTime(t0 + 1001);
    await request(app)
      .get('/')
      .set(...bearer('tok-long'))
      .expect(200);
    expect(ep.calls).toBe(2);
  });

  it('caches an inactive answer briefly (inactiveCacheMs), then asks again', async () => {
    const t0 = Date.now();
    fakeClock(t0);
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep, { inactiveCacheMs: 2000 }));
    for (let i = 0; i < 3; i++) {
      await request(app)
        .get('/')
        .set(...bearer('tok-revoked'))
        .expect(401);
    }
    expect(ep.calls).toBe(1);
    // The token becomes active at the endpoint: still refused while the inactive answer is kept.
    ep.tokens.set('tok-revoked', annBody);
    jest.setSystemTime(t0 + 1999);
    await request(app)
      .get('/')
      .set(...bearer('tok-revoked'))
      .expect(401);
    expect(ep.calls).toBe(1);
    jest.setSystemTime(t0 + 2001);
    await request(app)
      .get('/')
      .set(...bearer('tok-revoked'))
      .expect(200);
    expect(ep.calls).toBe(2);
  });

  it('with cacheSize 0 asks for every request', async () => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep, { cacheSize: 0 }));
    for (let i = 0; i < 3; i++) {
      await request(app)
        .get('/')
        .set(...bearer('tok-ann'))
        .expect(200);
    }
    expect(ep.calls).toBe(3);
  });

  it.each<[string, (ep: FakeEndpoint) => Promise<void> | void]>([
    ['is down (the server closed)', (ep) => ep.running.close()],
    ['answers 500', (ep) => void (ep.mode = 'status500')],
    ['does not answer in time', (ep) => void (ep.mode = 'hang')],
    ['closes the connection', (ep) => void (ep.mode = 'close')],
    ['answers HTML', (ep) => void (ep.mode = 'html')],
    ['answers JSON without a boolean active', (ep) => void (ep.mode = 'no-active')],
    ['redirects', (ep) => void (ep.mode = 'redirect')],
  ])(
    'answers 503 auth-unavailable with Retry-After when the endpoint %s, never 401/500/200',
    async (_what, breakIt) => {
      const ep = await startEndpoint();
      const log = recordingLogger();
      const { app } = appWith(optionsFor(ep, { timeoutMs: 300, logger: log }));
      await breakIt(ep);
      const started = Date.now();
      const r = await request(app)
        .get('/')
        .set(...bearer('tok-ann'));
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toBe('1');
      expect(r.headers['content-type']).toBe('application/problem+json');
      expect(r.headers['www-authenticate']).toBeUndefined();
      expect(r.body).toMatchObject({ type: 'urn:turnpike:problem:auth-unavailable', status: 503 });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(log.entries.some((e) => e.level === 'warn' && /introspection/.test(e.message))).toBe(
        true,
      );
      expect(JSON.stringify(log.entries)).not.toContain(CLIENT_SECRET);
      expect(JSON.stringify(log.entries)).not.toContain('tok-ann');
    },
  );

  it('does not cache a failure: once the endpoint answers again, the token passes', async () => {
    const ep = await startEndpoint();
    const log = recordingLogger();
    const { app } = appWith(optionsFor(ep, { logger: log }));
    ep.mode = 'status500';
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(503);
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(503);
    expect(ep.calls).toBe(2);
    // One warning for the failing endpoint, not one per request.
    expect(log.entries.filter((e) => e.level === 'warn')).toHaveLength(1);
    ep.mode = 'answer';
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    expect(ep.calls).toBe(3);
    expect(log.entries.some((e) => /answers again/.test(e.message))).toBe(true);
  });

  it('shares one in-flight call among 10 concurrent requests with the same token', async () => {
    const ep = await startEndpoint();
    ep.mode = 'hold';
    const { app, arrived } = appWith(optionsFor(ep));
    const running = await listen(app);
    closers.push(() => running.close());
    const all = Promise.all(
      Array.from({ length: 10 }, () =>
        request(running.url)
          .get('/')
          .set(...bearer('tok-ann')),
      ),
    );
    await waitFor(() => arrived() === 10 && ep.held.length === 1);
    ep.release();
    const results = await all;
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(results.every((r) => (r.body as { subject: string }).subject === 'ann')).toBe(true);
    expect(ep.calls).toBe(1);
  });

  it('answers 503 when the endpoint refuses the gateway credentials, and logs it without the secret', async () => {
    const ep = await startEndpoint();
    const log = recordingLogger();
    const wrong = 'wrong-secret-0123456789';
    const { app } = appWith(optionsFor(ep, { clientSecret: wrong, logger: log }));
    const r = await request(app)
      .get('/')
      .set(...bearer('tok-ann'));
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.headers['www-authenticate']).toBeUndefined();
    expect(ep.calls).toBe(1);
    const line = log.entries.find((e) => e.level === 'error');
    expect(line).toBeDefined();
    expect(JSON.stringify(line)).toMatch(/client credentials.*401/);
    expect(line!.meta).toMatchObject({ clientId: CLIENT_ID });
    const all = JSON.stringify(log.entries);
    expect(all).not.toContain(wrong);
    expect(all).not.toContain(Buffer.from(`${CLIENT_ID}:${wrong}`).toString('base64'));
    expect(all).not.toContain('tok-ann');
  });

  it('optional: no token passes without req.auth; an inactive one is 401, a failing endpoint 503', async () => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep, { optional: true }));
    const none = await request(app).get('/').expect(200);
    expect(none.body).toBeNull();
    expect(ep.calls).toBe(0);
    await request(app)
      .get('/')
      .set(...bearer('tok-nobody'))
      .expect(401);
    ep.mode = 'status500';
    await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(503);
  });

  it('uses the realm in the challenge', async () => {
    const ep = await startEndpoint();
    const { app } = appWith(optionsFor(ep, { realm: 'orders' }));
    const r = await request(app).get('/').expect(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="orders"');
  });
});

describe('compileIntrospection: a verifier with the JwtVerifier contract', () => {
  it('resolves an identity or a refusal reason, and rejects with AuthUnavailableError when it cannot say', async () => {
    const ep = await startEndpoint();
    const verifier: JwtVerifier = compileIntrospection(optionsFor(ep));
    closers.push(() => verifier.close());
    await expect(verifier.verify('tok-ann')).resolves.toMatchObject({
      subject: 'ann',
      method: 'introspection',
    });
    // A cache hit answers synchronously.
    expect(verifier.verify('tok-ann')).toMatchObject({ subject: 'ann' });
    await expect(verifier.verify('tok-nobody')).resolves.toBe('the token is not active');
    ep.mode = 'status500';
    const err = await Promise.resolve(verifier.verify('tok-user')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthUnavailableError);
    expect(isAuthUnavailable(err)).toBe(true);
    expect(isAuthUnavailable(new Error('x'))).toBe(false);
  });

  it('is driven by the shared authenticate(), which answers 503 for an unavailable endpoint', async () => {
    const ep = await startEndpoint();
    const verifier = compileIntrospection(optionsFor(ep));
    closers.push(() => verifier.close());
    const answers = bearerAnswers('api');
    const app = express();
    app.get(
      '/',
      (req, res, next) => authenticate(verifier, answers, silentLogger, false, req, res, next),
      (req, res) => {
        res.json((req as unknown as { auth?: unknown }).auth ?? null);
      },
    );
    const ok = await request(app)
      .get('/')
      .set(...bearer('tok-ann'))
      .expect(200);
    expect(ok.body).toMatchObject({ subject: 'ann', method: 'introspection' });
    ep.mode = 'status500';
    const down = await request(app)
      .get('/')
      .set(...bearer('tok-user'))
      .expect(503);
    expect(down.headers['retry-after']).toBe('1');
  });

  it('after close(), answers unavailable (never a stale identity)', async () => {
    const ep = await startEndpoint();
    const verifier = compileIntrospection(optionsFor(ep));
    await verifier.verify('tok-ann');
    verifier.close();
    await expect(Promise.resolve(verifier.verify('tok-ann'))).rejects.toBeInstanceOf(
      AuthUnavailableError,
    );
  });
});

describe('introspectionAuth options', () => {
  const base = {
    endpoint: 'https://auth.example.com/oauth2/introspect',
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
  };

  it.each<[string, string, Record<string, unknown>]>([
    ['introspectionAuth.endpoint', 'missing', { endpoint: undefined }],
    ['introspectionAuth.endpoint', 'not a URL', { endpoint: 'not a url' }],
    [
      'introspectionAuth.endpoint',
      'http to a non-loopback host',
      { endpoint: 'http://auth.example.com/introspect' },
    ],
    ['introspectionAuth.endpoint', 'ftp', { endpoint: 'ftp://127.0.0.1/introspect' }],
    [
      'introspectionAuth.endpoint',
      'credentials in the URL',
      { endpoint: 'https://id:pw@auth.example.com/introspect' },
    ],
    ['introspectionAuth.clientId', 'missing', { clientId: undefined }],
    ['introspectionAuth.clientId', 'empty', { clientId: '' }],
    ['introspectionAuth.clientSecret', 'missing', { clientSecret: undefined }],
    ['introspectionAuth.clientSecret', 'empty', { clientSecret: '' }],
    ['introspectionAuth.clientSecret', 'a number', { clientSecret: 987654321 }],
    ['introspectionAuth.timeoutMs', '0', { timeoutMs: 0 }],
    ['introspectionAuth.timeoutMs', '1.5', { timeoutMs: 1.5 }],
    ['introspectionAuth.timeoutMs', 'a string', { timeoutMs: '2000' }],
    ['introspectionAuth.cacheSize', '-1', { cacheSize: -1 }],
    ['introspectionAuth.maxCacheMs', 'Infinity', { maxCacheMs: Infinity }],
    ['introspectionAuth.inactiveCacheMs', '-5', { inactiveCacheMs: -5 }],
    ['introspectionAuth.issuer', 'empty', { issuer: '' }],
    ['introspectionAuth.audience', 'an empty list', { audience: [] }],
    ['introspectionAuth.claims.roles', 'an empty path', { claims: { roles: '' } }],
    ['introspectionAuth.realm', 'with a quote', { realm: 'a"b' }],
    ['introspectionAuth.optional', 'a string', { optional: 'yes' }],
  ])('refuses with a ConfigError naming %s (%s)', (path, _label, bad) => {
    let err: unknown;
    try {
      introspectionAuth({ ...base, ...bad });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(path);
    expect((err as ConfigError).message).toContain(path);
    expect((err as ConfigError).message).not.toContain(CLIENT_SECRET);
    expect((err as ConfigError).message).not.toContain('987654321');
    expect(String(JSON.stringify((err as ConfigError).value))).not.toContain('987654321');
  });

  it('accepts http for a loopback host, and the defaults', () => {
    for (const endpoint of ['http://127.0.0.1:8080/i', 'http://localhost/i', 'http://[::1]/i']) {
      introspectionAuth({ ...base, endpoint }).close();
    }
    compileIntrospection(base).close();
  });
});
