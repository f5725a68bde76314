import http from 'node:http';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import express from 'express';
import request from 'supertest';
import jwt from 'jsonwebtoken';
import { ConfigError } from '@turnpike/core';
import { jwtAuth, requireRoles, requireScopes, type JwtAuthOptions } from '@turnpike/auth';
import { listen, waitFor, type Running } from '../../../test/helpers/servers';
import { fakeClock } from '../../../test/helpers/clock';

const SECRET = 'a-test-secret-of-at-least-32-bytes!!';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsa2 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ISS = 'https://issuer.test';
const AUD = 'api://gateway';
const pem = (k: KeyObject): string => k.export({ type: 'spki', format: 'pem' }).toString();

const closers: (() => unknown)[] = [];
afterEach(async () => {
  jest.useRealTimers();
  for (const c of closers.splice(0).reverse()) await c();
});

function sign(
  payload: Record<string, unknown>,
  key: string | KeyObject,
  options: jwt.SignOptions & { noExp?: boolean } = {},
): string {
  const { noExp, ...rest } = options;
  return jwt.sign({ sub: 'ann', iss: ISS, aud: AUD, ...payload }, key, {
    algorithm: 'HS256',
    ...(noExp === true || payload.exp !== undefined ? {} : { expiresIn: 300 }),
    ...rest,
  });
}

/** A plain Express app: the middleware, then a handler that shows req.auth. */
function appWith(options: JwtAuthOptions, after: express.RequestHandler[] = []): express.Express {
  const mw = jwtAuth(options);
  closers.push(() => mw.close());
  const app = express();
  app.get('/', mw, ...after, (req, res) => {
    res.json((req as unknown as { auth?: unknown }).auth ?? null);
  });
  return app;
}

const hs: JwtAuthOptions = {
  algorithms: ['HS256'],
  secret: SECRET,
  issuer: ISS,
  audience: AUD,
};

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('jwtAuth with an HS256 secret, in a plain Express app', () => {
  it('sets req.auth from a valid token: subject, roles, scopes, consumer, claims', async () => {
    const app = appWith({ ...hs, claims: { roles: 'realm_access.roles' } });
    const token = sign(
      { realm_access: { roles: ['admin', 'user'] }, scope: 'read write', client_id: 'web' },
      SECRET,
    );
    const r = await request(app).get('/').set('authorization', `Bearer ${token}`).expect(200);
    expect(r.body).toMatchObject({
      subject: 'ann',
      roles: ['admin', 'user'],
      scopes: ['read', 'write'],
      consumer: 'web',
      method: 'jwt',
      claims: { iss: ISS, aud: AUD },
    });
  });

  it('answers a missing token 401 with a Bearer challenge, a bad one with invalid_token', async () => {
    const app = appWith(hs);
    const missing = await request(app).get('/').expect(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="api"');
    expect(missing.headers['content-type']).toBe('application/problem+json');
    expect(missing.body).toMatchObject({ type: 'urn:turnpike:problem:unauthenticated' });
    const bad = await request(app).get('/').set('authorization', 'Bearer x.y.z').expect(401);
    expect(bad.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
    // The reason stays in the log.
    expect(JSON.stringify(bad.body)).not.toMatch(/JWS|signature|malformed/i);
  });

  const now = Math.floor(Date.now() / 1000);
  it.each<[string, () => string]>([
    ['expired', () => sign({ exp: now - 60 }, SECRET)],
    ['not yet valid', () => sign({ nbf: now + 600 }, SECRET)],
    ['from another issuer', () => sign({ iss: 'https://evil.test' }, SECRET)],
    ['for another audience', () => sign({ aud: 'api://other' }, SECRET)],
    ['signed with another key', () => sign({}, 'another-secret-of-at-least-32-bytes!!')],
    ['without exp', () => sign({}, SECRET, { noExp: true })],
    ['without a subject', () => sign({ sub: undefined }, SECRET)],
    ...['none', 'None', 'NONE', 'nOnE'].map((alg): [string, () => string] => [
      `alg ${alg}`,
      () =>
        `${b64({ alg, typ: 'JWT' })}.${b64({ sub: 'ann', iss: ISS, aud: AUD, exp: now + 60 })}.`,
    ]),
    ['of an algorithm not accepted (HS512)', () => sign({}, SECRET, { algorithm: 'HS512' })],
    ['with a header that is not JSON', () => `bm90IGpzb24.${b64({ sub: 'a' })}.c2ln`],
    ['with a header that is JSON null', () => `${b64(null)}.${b64({ sub: 'a' })}.c2ln`],
    [
      'with an alg nested too deep to print',
      () =>
        `${Buffer.from('{"alg":' + '['.repeat(5000) + ']'.repeat(5000) + '}').toString('base64url')}.${b64({ sub: 'a' })}.c2ln`,
    ],
    ['of garbage', () => '....'],
    ['of one segment', () => 'abc'],
  ])('refuses a token %s with 401, never 500', async (_what, make) => {
    const app = appWith(hs);
    const r = await request(app).get('/').set('authorization', `Bearer ${make()}`);
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
  });

  it.each(['Basic YWxhZGRpbjpvcGVuc2VzYW1l', 'Bearer', 'Bearer a b', 'bearer\tx', 'Token abc'])(
    'refuses the Authorization header %j with 401',
    async (header) => {
      const app = appWith(hs);
      expect((await request(app).get('/').set('authorization', header)).status).toBe(401);
    },
  );

  it('optional: no token passes without req.auth; a bad token is still 401', async () => {
    const app = appWith({ ...hs, optional: true });
    const none = await request(app).get('/').expect(200);
    expect(none.body).toBeNull();
    await request(app).get('/').set('authorization', 'Bearer nope').expect(401);
  });

  it('maxAgeSec refuses a token issued too long ago', async () => {
    const app = appWith({ ...hs, maxAgeSec: 60 });
    const old = sign({ iat: now - 120 }, SECRET);
    await request(app).get('/').set('authorization', `Bearer ${old}`).expect(401);
    await request(app)
      .get('/')
      .set('authorization', `Bearer ${sign({}, SECRET)}`)
      .expect(200);
  });

  it('a cached token is still refused once it expires', async () => {
    const app = appWith(hs);
    const token = sign({ exp: now + 2 }, SECRET);
    await request(app).get('/').set('authorization', `Bearer ${token}`).expect(200);
    // Past exp, within jsonwebtoken's 5 s tolerance: still accepted; past that: the cached
    // entry is dead too (it never outlives exp, and the token is checked again).
    fakeClock((now + 3) * 1000);
    await request(app).get('/').set('authorization', `Bearer ${token}`).expect(200);
    jest.setSystemTime((now + 10) * 1000);
    await request(app).get('/').set('authorization', `Bearer ${token}`).expect(401);
  });
});

describe('jwtAuth with RS256 and ES256 public keys', () => {
  it('verifies RS256 with the PEM and ES256 with the key object', async () => {
    const rs = appWith({
      ...hs,
      secret: undefined,
      algorithms: ['RS256'],
      publicKey: pem(rsa.publicKey),
    });
    const token = sign({}, rsa.privateKey, { algorithm: 'RS256' });
    expect((await request(rs).get('/').set('authorization', `Bearer ${token}`)).status).toBe(200);
    const es = appWith({
      ...hs,
      secret: undefined,
      algorithms: ['ES256'],
      publicKey: ec.publicKey,
    });
    const t2 = sign({}, ec.privateKey, { algorithm: 'ES256' });
    expect((await request(es).get('/').set('authorization', `Bearer ${t2}`)).status).toBe(200);
  });

  it('refuses a token HS-signed with the RSA public key (algorithm confusion)', async () => {
    const publicPem = pem(rsa.publicKey);
    const app = appWith({ ...hs, secret: undefined, algorithms: ['RS256'], publicKey: publicPem });
    const head = b64({ alg: 'HS256', typ: 'JWT' });
    const body = b64({
      sub: 'mallory',
      iss: ISS,
      aud: AUD,
      exp: Math.floor(Date.now() / 1000) + 60,
    });
    const sig = createHmac('sha256', publicPem).update(`${head}.${body}`).digest('base64url');
    const r = await request(app).get('/').set('authorization', `Bearer ${head}.${body}.${sig}`);
    expect(r.status).toBe(401);
  });

  it('refuses an RS256 token signed by another key', async () => {
    const app = appWith({
      ...hs,
      secret: undefined,
      algorithms: ['RS256'],
      publicKey: pem(rsa.publicKey),
    });
    const token = sign({}, rsa2.privateKey, { algorithm: 'RS256' });
    expect((await request(app).get('/').set('authorization', `Bearer ${token}`)).status).toBe(401);
  });
});

describe('roles and scopes', () => {
  it('requireRoles: one of them, else 403; requireScopes: all of them, else 403 insufficient_scope', async () => {
    const app = appWith(hs, [requireRoles('admin', 'ops'), requireScopes('read', 'write')]);
    const as = (claims: Record<string, unknown>) =>
      request(app)
        .get('/')
        .set('authorization', `Bearer ${sign(claims, SECRET)}`);
    expect((await as({ roles: ['ops'], scope: 'read write extra' })).status).toBe(200);
    const noRole = await as({ roles: ['user'], scope: 'read write' });
    expect(noRole.status).toBe(403);
    expect(noRole.body).toMatchObject({ type: 'urn:turnpike:problem:forbidden' });
    const noScope = await as({ roles: ['admin'], scp: ['read'] });
    expect(noScope.status).toBe(403);
    expect(noScope.headers['www-authenticate']).toBe(
      'Bearer error="insufficient_scope", scope="read write"',
    );
  });
});

/** A JWKS endpoint on port 0 whose key set the test changes; counts its requests. */
async function jwksServer(): Promise<
  Running & { set(keys: object[]): void; down(v: boolean): void; hits: number }
> {
  let keys: object[] = [];
  let down = false;
  const state = { hits: 0 };
  const running = await listen(
    http.createServer((_req, res) => {
      state.hits++;
      if (down) {
        res.statusCode = 503;
        return void res.end();
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys }));
    }),
  );
  closers.push(() => running.close());
  const out = Object.assign(running, {
    set: (k: object[]) => void (keys = k),
    down: (v: boolean) => void (down = v),
    hits: 0,
  });
  // A live count: Object.assign would copy a getter's value once.
  Object.defineProperty(out, 'hits', { get: () => state.hits });
  return out;
}

const jwk = (key: KeyObject, kid: string): object => ({
  ...key.export({ format: 'jwk' }),
  kid,
  use: 'sig',
  alg: 'RS256',
});

describe('jwtAuth with a JWKS URL', () => {
  function jwksApp(uri: string, minRefetchMs = 60_000): express.Express {
    return appWith({
      algorithms: ['RS256'],
      jwks: { uri, minRefetchMs, refreshMs: 600_000 },
      issuer: ISS,
      audience: AUD,
    });
  }
  const rs = (key: KeyObject, kid: string): string =>
    sign({}, key, { algorithm: 'RS256', keyid: kid });

  it('verifies with the key of the token kid; picks up a rotation without a restart', async () => {
    const server = await jwksServer();
    server.set([jwk(rsa.publicKey, 'k1')]);
    const app = jwksApp(`${server.url}/jwks.json`, 0);
    expect(
      (
        await request(app)
          .get('/')
          .set('authorization', `Bearer ${rs(rsa.privateKey, 'k1')}`)
      ).status,
    ).toBe(200);
    // The issuer rotates to k2: the unknown kid fetches the set again.
    server.set([jwk(rsa2.publicKey, 'k2')]);
    expect(
      (
        await request(app)
          .get('/')
          .set('authorization', `Bearer ${rs(rsa2.privateKey, 'k2')}`)
      ).status,
    ).toBe(200);
  });

  it('a flood of unknown kids costs one refetch per minRefetchMs, not one per token', async () => {
    const server = await jwksServer();
    server.set([jwk(rsa.publicKey, 'k1')]);
    const app = jwksApp(`${server.url}/jwks.json`, 60_000);
    await request(app)
      .get('/')
      .set('authorization', `Bearer ${rs(rsa.privateKey, 'k1')}`)
      .expect(200);
    const before = server.hits;
    // One after another, so no fetch in flight can stand in for the next.
    const statuses = [];
    for (let i = 0; i < 30; i++) {
      const forged = rs(rsa2.privateKey, `forged-${i}`);
      statuses.push(await request(app).get('/').set('authorization', `Bearer ${forged}`));
    }
    expect(statuses.map((s) => s.status)).toEqual(Array(30).fill(401));
    expect(server.hits - before).toBeLessThanOrEqual(1);
  });

  it('forgets cached tokens of a key the issuer withdrew', async () => {
    const server = await jwksServer();
    server.set([jwk(rsa.publicKey, 'k1')]);
    const app = jwksApp(`${server.url}/jwks.json`, 0);
    const old = rs(rsa.privateKey, 'k1');
    await request(app).get('/').set('authorization', `Bearer ${old}`).expect(200);
    // k1 withdrawn: a k2 token makes the set be fetched again, without k1.
    server.set([jwk(rsa2.publicKey, 'k2')]);
    await request(app)
      .get('/')
      .set('authorization', `Bearer ${rs(rsa2.privateKey, 'k2')}`)
      .expect(200);
    await request(app).get('/').set('authorization', `Bearer ${old}`).expect(401);
  });

  it('keeps the last good keys while the JWKS server is down', async () => {
    const server = await jwksServer();
    server.set([jwk(rsa.publicKey, 'k1')]);
    const app = jwksApp(`${server.url}/jwks.json`, 0);
    const token = rs(rsa.privateKey, 'k1');
    await request(app).get('/').set('authorization', `Bearer ${token}`).expect(200);
    server.down(true);
    // An unknown kid triggers a fetch, which fails: the known key still verifies.
    await request(app)
      .get('/')
      .set('authorization', `Bearer ${rs(rsa2.privateKey, 'k9')}`)
      .expect(401);
    await waitFor(() => server.hits >= 2);
    const fresh = sign({ jti: 'x' }, rsa.privateKey, { algorithm: 'RS256', keyid: 'k1' });
    await request(app).get('/').set('authorization', `Bearer ${fresh}`).expect(200);
  });
});

describe('jwtAuth options', () => {
  it.each<[string, Partial<JwtAuthOptions>, string]>([
    ['no algorithms', { algorithms: [] }, 'jwtAuth.algorithms'],
    ['none', { algorithms: ['none' as never] }, 'jwtAuth.algorithms[0]'],
    ['a short HS secret', { secret: 'short' }, 'jwtAuth.secret'],
    ['an RS algorithm with an HS secret', { algorithms: ['RS256'] }, 'jwtAuth.algorithms[0]'],
    [
      'an HS algorithm with an RSA key',
      { secret: undefined, publicKey: pem(rsa.publicKey), algorithms: ['HS256'] },
      'jwtAuth.algorithms[0]',
    ],
    [
      'ES384 with a P-256 key',
      { secret: undefined, publicKey: ec.publicKey, algorithms: ['ES384'] },
      'jwtAuth.algorithms[0]',
    ],
    [
      'a PEM that does not parse',
      { secret: undefined, publicKey: '-----BEGIN nonsense' },
      'jwtAuth.publicKey',
    ],
    [
      'an http JWKS URL',
      { secret: undefined, jwks: 'http://issuer.example/jwks', algorithms: ['RS256'] },
      'jwtAuth.jwks',
    ],
    [
      'HS with a JWKS',
      { secret: undefined, jwks: 'https://issuer.example/jwks' },
      'jwtAuth.algorithms[0]',
    ],
    ['no issuer', { issuer: undefined }, 'jwtAuth.issuer'],
    ['no audience', { audience: undefined }, 'jwtAuth.audience'],
    ['two key sources', { publicKey: pem(rsa.publicKey) }, 'jwtAuth'],
  ])('refuses %s, naming the field', (_what, over, path) => {
    let caught: unknown;
    try {
      jwtAuth({ ...hs, ...over });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).path).toBe(path);
  });
});
