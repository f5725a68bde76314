import http from 'node:http';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import express from 'express';
import jwt from 'jsonwebtoken';
import * as authModule from '@turnpike/auth';
import { listen, waitFor } from '../../../test/helpers/servers';
import { edited, readReadme, runExample } from '../../../test/helpers/readme';

const { codeAfter } = readReadme(path.join(__dirname, '..', 'README.md'));
const MODULES = { express, '@turnpike/auth': authModule };
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await fetch(url, { method, headers: { connection: 'close', ...headers } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text };
}

describe('README: the plain Express example', () => {
  it('JWT routes with a scope and a role, an API key route; 401 and 403 as described', async () => {
    let jwksHits = 0;
    const jwks = await listen(
      http.createServer((_req, res) => {
        jwksHits++;
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            keys: [
              { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'RS256' },
            ],
          }),
        );
      }),
    );
    closers.push(() => jwks.close());
    const code = edited(codeAfter('### In a plain Express app'), [
      ["'https://id.example.com/.well-known/jwks.json'", `'${jwks.url}/jwks.json'`],
      ['app.listen(8080);', 'module.exports = { app, user };'],
    ]);
    const { app, user } = runExample(code, MODULES) as {
      app: http.RequestListener;
      user: authModule.JwtAuthMiddleware;
    };
    const host = await listen(http.createServer(app));
    closers.push(
      () => user.close(),
      () => host.close(),
    );
    await waitFor(() => jwksHits >= 1);

    const sign = (claims: Record<string, unknown>): string =>
      jwt.sign({ sub: 'ann', ...claims }, rsa.privateKey, {
        algorithm: 'RS256',
        keyid: 'k1',
        issuer: 'https://id.example.com/',
        audience: 'orders-api',
        expiresIn: 300,
      });

    const none = await get(`${host.url}/orders`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="api"');
    const reader = { authorization: `Bearer ${sign({ scope: 'orders:read' })}` };
    const ok = await get(`${host.url}/orders`, reader);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ for: 'ann', orders: [] });
    const noScope = await get(`${host.url}/orders`, { authorization: `Bearer ${sign({})}` });
    expect(noScope.status).toBe(403);
    expect(noScope.headers.get('www-authenticate')).toBe(
      'Bearer error="insufficient_scope", scope="orders:read"',
    );
    expect((await get(`${host.url}/orders/1`, reader, 'DELETE')).status).toBe(403);
    const admin = { authorization: `Bearer ${sign({ realm_access: { roles: ['admin'] } })}` };
    expect((await get(`${host.url}/orders/1`, admin, 'DELETE')).status).toBe(204);

    const partner = await get(`${host.url}/partner/orders`, {
      'x-api-key': 'acme-key-0123456789abcdef',
    });
    expect(partner.status).toBe(200);
    expect(JSON.parse(partner.body)).toEqual({ for: 'acme', orders: [] });
    expect(
      (await get(`${host.url}/partner/orders`, { 'x-api-key': 'other-key-0123456789' })).status,
    ).toBe(401);
  });
});
