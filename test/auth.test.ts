import http from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import type { GatewayConfig } from '@turnpike/gateway';
import { createGateway } from '@turnpike/gateway';
import {
  listen,
  startEcho,
  startGateway,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import { configErrorOf } from './helpers/expectations';

const SECRET = 'gateway-test-secret-of-32-bytes-or-more';
const ISS = 'https://issuer.test';
const AUD = 'api://gateway';
const API_KEY = 'partner-key-0123456789abcdef';

const harnesses: GatewayHarness[] = [];
const upstreams: Running[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

const token = (claims: Record<string, unknown> = {}): string =>
  jwt.sign(
    { sub: 'ann', iss: ISS, aud: AUD, roles: ['user'], ...claims },
    SECRET,
    claims.exp === undefined ? { algorithm: 'HS256', expiresIn: 300 } : { algorithm: 'HS256' },
  );

const auth: GatewayConfig['auth'] = {
  jwt: { algorithms: ['HS256'], secret: SECRET, issuer: ISS, audience: AUD },
  apiKeys: { keys: [{ key: API_KEY, consumer: 'partner', roles: ['partner'] }] },
};

async function gateway(routes: GatewayConfig['routes'], more: Partial<GatewayConfig> = {}) {
  const echo = await startEcho();
  upstreams.push(echo);
  const h = await startGateway({
    services: { echo: { targets: [echo.url] } },
    routes,
    auth,
    ...more,
  });
  harnesses.push(h);
  return h;
}

async function call(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers: { connection: 'close', ...headers } });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (text === '' ? null : JSON.parse(text)) as { headers?: Record<string, string> } & Record<
      string,
      unknown
    >,
  };
}

describe('auth in the gateway', () => {
  it('a valid JWT: the upstream sees the identity the gateway set, never a forged copy', async () => {
    const h = await gateway([{ path: '/a', service: 'echo' }]);
    const r = await call(`${h.url}/a`, {
      authorization: `Bearer ${token({ roles: ['user', 'admin'], client_id: 'web' })}`,
      'x-user-id': 'forged-admin',
      'x-user-roles': 'root',
      x_consumer_id: 'forged',
    });
    expect(r.status).toBe(200);
    expect(r.body.headers).toMatchObject({
      'x-user-id': 'ann',
      'x-user-roles': 'user,admin',
      'x-consumer-id': 'web',
    });
    expect(r.body.headers!['x_consumer_id']).toBeUndefined();
    // Authorization goes on unless stripCredentials says otherwise.
    expect(r.body.headers!['authorization']).toMatch(/^Bearer /);
  });

  it('an API key: identity from the key; stripCredentials removes it before forwarding', async () => {
    const h = await gateway([{ path: '/a', service: 'echo' }], {
      auth: { ...auth, stripCredentials: true },
    });
    const r = await call(`${h.url}/a`, { 'x-api-key': API_KEY });
    expect(r.status).toBe(200);
    expect(r.body.headers).toMatchObject({
      'x-user-id': 'partner',
      'x-user-roles': 'partner',
      'x-consumer-id': 'partner',
    });
    expect(r.body.headers!['x-api-key']).toBeUndefined();
  });

  it('claimsHeader: the verified identity as a JWT the gateway signs; a client copy never passes', async () => {
    const claimsSecret = 'claims-secret-for-upstreams-32-bytes!!';
    const h = await gateway([{ path: '/a', service: 'echo' }], {
      identityHeaders: ['x-user-id', 'x-user-roles', 'x-consumer-id', 'x-auth-claims'],
      auth: { ...auth, claimsHeader: { name: 'x-auth-claims', secret: claimsSecret } },
    });
    const r = await call(`${h.url}/a`, {
      authorization: `Bearer ${token({ scope: 'a b' })}`,
      'x-auth-claims': 'forged',
    });
    const claims = jwt.verify(r.body.headers!['x-auth-claims']!, claimsSecret, {
      algorithms: ['HS256'],
      issuer: 'turnpike',
    }) as jwt.JwtPayload;
    expect(claims).toMatchObject({
      sub: 'ann',
      roles: ['user'],
      scopes: ['a', 'b'],
      method: 'jwt',
    });
    expect(claims.exp! - claims.iat!).toBe(60);
    // A client token that ends sooner bounds the claims header.
    const soon = Math.floor(Date.now() / 1000) + 10;
    const short = await call(`${h.url}/a`, { authorization: `Bearer ${token({ exp: soon })}` });
    const bounded = jwt.verify(short.body.headers!['x-auth-claims']!, claimsSecret, {
      algorithms: ['HS256'],
    }) as jwt.JwtPayload;
    expect(bounded.exp).toBe(soon);
    const anon = await call(`${h.url}/a`, { 'x-auth-claims': 'forged' });
    expect(anon.status).toBe(401);
  });

  it('introspection for opaque tokens beside JWTs; the issuer down is a 503, never a way in', async () => {
    let down = false;
    const calls: string[] = [];
    const issuer = await listen(
      http.createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          calls.push(body);
          if (down) {
            res.statusCode = 500;
            return void res.end();
          }
          const t = new URLSearchParams(body).get('token');
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify(
              t === 'opaque-good'
                ? {
                    active: true,
                    sub: 'svc',
                    scope: 'jobs',
                    exp: Math.floor(Date.now() / 1000) + 60,
                  }
                : { active: false },
            ),
          );
        });
      }),
    );
    upstreams.push(issuer);
    const h = await gateway([{ path: '/a', service: 'echo' }], {
      auth: {
        ...auth,
        introspection: {
          endpoint: `${issuer.url}/introspect`,
          clientId: 'gw',
          clientSecret: 'gw-secret',
        },
      },
    });
    const opaque = await call(`${h.url}/a`, { authorization: 'Bearer opaque-good' });
    expect(opaque.status).toBe(200);
    expect(opaque.body.headers!['x-user-id']).toBe('svc');
    // A JWT is verified locally: the issuer is not asked.
    const before = calls.length;
    expect((await call(`${h.url}/a`, { authorization: `Bearer ${token()}` })).status).toBe(200);
    expect(calls.length).toBe(before);
    expect((await call(`${h.url}/a`, { authorization: 'Bearer opaque-bad' })).status).toBe(401);
    down = true;
    const unavailable = await call(`${h.url}/a`, { authorization: 'Bearer opaque-other' });
    expect(unavailable.status).toBe(503);
    expect(unavailable.body).toMatchObject({ type: 'urn:turnpike:problem:auth-unavailable' });
  });

  it('forwards only the credential it checked; identity values are encoded unambiguously', async () => {
    const h = await gateway([{ path: '/a', service: 'echo' }]);
    const forged = 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.';
    const byKey = await call(`${h.url}/a`, { 'x-api-key': API_KEY, authorization: forged });
    expect(byKey.status).toBe(200);
    expect(byKey.body.headers!['authorization']).toBeUndefined();
    const byToken = await call(`${h.url}/a`, {
      authorization: `Bearer ${token({ roles: ['user,admin', 'ops'], sub: 'José %41' })}`,
      'x-api-key': '',
    });
    expect(byToken.status).toBe(200);
    expect(byToken.body.headers!['x-api-key']).toBeUndefined();
    expect(byToken.body.headers!['x-user-roles']).toBe('user%2Cadmin,ops');
    expect(byToken.body.headers!['x-user-id']).toBe(encodeURIComponent('José %41'));
  });

  it('no credential: 401 with the challenge, the upstream not called; bad ones 401, never 500', async () => {
    const h = await gateway([{ path: '/a', service: 'echo' }]);
    const none = await call(`${h.url}/a`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="api"');
    expect(none.body).toMatchObject({ type: 'urn:turnpike:problem:unauthenticated', status: 401 });
    expect(none.body.requestId).toBeDefined();
    for (const bad of [
      'Bearer nope',
      'Bearer a.b.c',
      'Basic Zm9vOmJhcg==',
      `Bearer ${token({ exp: 1 })}`,
    ]) {
      expect((await call(`${h.url}/a`, { authorization: bad })).status).toBe(401);
    }
    expect((await call(`${h.url}/a`, { 'x-api-key': 'unknown-key-0123456789' })).status).toBe(401);
  });

  it("roles and scopes per route; 'optional'; false", async () => {
    const h = await gateway([
      { path: '/admin', service: 'echo', auth: { roles: ['admin'] } },
      { path: '/orders', service: 'echo', auth: { scopes: ['orders:read'] } },
      { path: '/public', service: 'echo', auth: false },
      { path: '/maybe', service: 'echo', auth: 'optional' },
    ]);
    const user = { authorization: `Bearer ${token()}` };
    expect((await call(`${h.url}/admin`, user)).status).toBe(403);
    expect(
      (await call(`${h.url}/admin`, { authorization: `Bearer ${token({ roles: ['admin'] })}` }))
        .status,
    ).toBe(200);
    const scoped = await call(`${h.url}/orders`, user);
    expect(scoped.status).toBe(403);
    expect(scoped.headers.get('www-authenticate')).toBe(
      'Bearer error="insufficient_scope", scope="orders:read"',
    );
    expect(
      (
        await call(`${h.url}/orders`, {
          authorization: `Bearer ${token({ scope: 'orders:read' })}`,
        })
      ).status,
    ).toBe(200);
    const pub = await call(`${h.url}/public`, { 'x-user-id': 'forged' });
    expect(pub.status).toBe(200);
    expect(pub.body.headers!['x-user-id']).toBeUndefined();
    const anon = await call(`${h.url}/maybe`);
    expect(anon.status).toBe(200);
    expect(anon.body.headers!['x-user-id']).toBeUndefined();
    expect((await call(`${h.url}/maybe`, user)).body.headers!['x-user-id']).toBe('ann');
    expect((await call(`${h.url}/maybe`, { authorization: 'Bearer bad' })).status).toBe(401);
  });

  it('comes before the rate limit, which can then count per subject', async () => {
    const h = await gateway([
      { path: '/a', service: 'echo', rateLimit: { limit: 1, key: 'subject' } },
    ]);
    expect((await call(`${h.url}/a`, { authorization: `Bearer ${token()}` })).status).toBe(200);
    expect((await call(`${h.url}/a`, { authorization: `Bearer ${token()}` })).status).toBe(429);
    expect(
      (await call(`${h.url}/a`, { authorization: `Bearer ${token({ sub: 'bob' })}` })).status,
    ).toBe(200);
  });

  it('authenticates WebSocket upgrades through the same chain', async () => {
    const { WebSocketServer } = await import('ws');
    const up = await listen(http.createServer());
    upstreams.push(up);
    const wss = new WebSocketServer({ server: up.server });
    const seen: (string | undefined)[] = [];
    wss.on('connection', (ws, req) => {
      seen.push(req.headers['x-user-id'] as string | undefined);
      ws.close();
    });
    const h = await startGateway({
      services: { ws: { targets: [up.url] } },
      routes: [{ path: '/ws', service: 'ws', websocket: true }],
      auth,
    });
    harnesses.push(h);
    const wsUrl = `ws://127.0.0.1:${(h.running.server.address() as AddressInfo).port}/api/ws`;
    const refused = new WebSocket(wsUrl);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      refused.once('unexpected-response', (_req, r) => resolve(r));
      refused.once('open', () =>
        reject(new Error('an upgrade without credentials was let through')),
      );
      refused.once('error', () => {});
    });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="api"');
    const ok = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token()}` } });
    await new Promise((resolve, reject) => {
      ok.once('open', resolve);
      ok.once('error', reject);
    });
    ok.close();
    wss.close();
    expect(seen).toEqual(['ann']);
  });
});

describe('auth config', () => {
  const base = { services: { s: { targets: ['http://127.0.0.1:1'] } } };
  it.each<[string, unknown, string]>([
    [
      'roles on a route without auth',
      { routes: [{ path: '/', service: 's', auth: { roles: ['a'] } }] },
      'routes[0].auth',
    ],
    [
      'a short HS secret',
      { routes: [], auth: { jwt: { ...auth.jwt, secret: 'short' } } },
      'auth.jwt.secret',
    ],
    [
      'alg none',
      { routes: [], auth: { jwt: { ...auth.jwt, algorithms: ['none'] } } },
      'auth.jwt.algorithms[0]',
    ],
    ['no method', { routes: [], auth: {} }, 'auth'],
    [
      'an identity header hygiene does not remove',
      { routes: [], auth: { ...auth, identity: { subject: 'x-subject' } } },
      'auth.identity.subject',
    ],
    [
      'optional with roles (anonymous would pass where a user without the role does not)',
      { routes: [{ path: '/', service: 's', auth: { roles: ['a'], optional: true } }], auth },
      'routes[0].auth.optional',
    ],
    [
      'a PEM key as the HS secret',
      {
        routes: [],
        auth: { jwt: { ...auth.jwt, secret: '-----BEGIN PUBLIC KEY-----\nMIIBIjAN...' } },
      },
      'auth.jwt.secret',
    ],
    [
      'an http JWKS URL on a name that looks like loopback',
      {
        routes: [],
        auth: {
          jwt: {
            algorithms: ['RS256'],
            jwks: 'http://127.evil.example/jwks',
            issuer: ISS,
            audience: AUD,
          },
        },
      },
      'auth.jwt.jwks',
    ],
    [
      'the API key in a query parameter',
      { routes: [], auth: { apiKeys: { ...auth.apiKeys, query: 'k' } } },
      'auth.apiKeys.query',
    ],
    [
      'an unknown route auth key',
      { routes: [{ path: '/', service: 's', auth: { role: ['a'] } }] },
      'routes[0].auth.role',
    ],
    [
      'an API key too short',
      { routes: [], auth: { apiKeys: { keys: [{ key: 'x', consumer: 'c' }] } } },
      'auth.apiKeys.keys[0].key',
    ],
  ])('refuses %s, naming the field', (_what, config, path) => {
    const err = configErrorOf(() =>
      createGateway({ ...base, ...(config as object) } as unknown as GatewayConfig),
    );
    expect(err.path).toBe(path);
  });
});
