'use strict';

/**
 * Auth benchmark: what authentication (@turnpike/auth through the gateway's `auth`) costs on a
 * route, against the bare route, in one run with the settings of bench/proxy.js (closed loop,
 * 50 connections, warm-up, interleaved reps, medians, CPU µs per request of the proxy child):
 * a JWT route with the verified-token cache warm (HS256 and RS256), the same without the cache,
 * and an API key route.
 *
 *   npm run build && node bench/auth.js
 *
 * autocannon sends no credentials: each gateway's host app sets them on the request before
 * the gateway; the bare one sets the same Authorization header (forwarded, not verified), so
 * every gateway does the same host work and forwards the same bytes but the identity headers.
 * bench/README.md ("Auth benchmark") describes the proxies and the output.
 */

const http = require('node:http');
const path = require('node:path');
const { generateKeyPairSync } = require('node:crypto');
const lib = require('./lib');

const SELF = path.join(__dirname, 'auth.js');
const SECRET = 'bench-secret-of-at-least-thirty-two-bytes';
const API_KEY = 'bench-api-key-0123456789abcdef';
const ISS = 'https://issuer.bench';
const AUD = 'bench';

/** A token for the whole run (an hour), signed in the child. */
function token(key, algorithm) {
  const jwt = require('jsonwebtoken');
  return jwt.sign({ sub: 'bench-user', roles: ['user'], scope: 'read' }, key, {
    algorithm,
    issuer: ISS,
    audience: AUD,
    expiresIn: 3600,
  });
}

/** Express 5 with a host middleware setting `header: value`, then app.use('/api', gateway). */
async function gatewayUse(target, auth, header, value) {
  const express = require('express');
  const gateway = lib.gatewayModule().createGateway({
    services: { api: { targets: [target] } },
    routes: [{ path: '/**', service: 'api' }],
    ...(auth === undefined ? {} : { auth }),
  });
  const app = express();
  app.use((req, _res, next) => {
    req.headers[header] = value;
    next();
  });
  app.use('/api', gateway);
  return {
    servers: [await lib.listenLocal(http.createServer(app))],
    close: () => gateway.close(),
  };
}

const hs = (cacheSize) => ({
  jwt: { algorithms: ['HS256'], secret: SECRET, issuer: ISS, audience: AUD, cacheSize },
});

/** The proxies, in the order they run and are reported; `make(url)` runs in the child. */
const PROXIES = {
  bare: {
    // The same Authorization header, unverified: the bytes forwarded are the same.
    what: 'no auth (the reference), the same token forwarded',
    make: (url) => gatewayUse(url, undefined, 'authorization', `Bearer ${token(SECRET, 'HS256')}`),
  },
  jwt: {
    what: 'JWT HS256, cache warm',
    make: (url) => gatewayUse(url, hs(), 'authorization', `Bearer ${token(SECRET, 'HS256')}`),
  },
  'jwt-rs256': {
    what: 'JWT RS256 (public key), cache warm',
    make: (url) => {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      return gatewayUse(
        url,
        { jwt: { algorithms: ['RS256'], publicKey, issuer: ISS, audience: AUD } },
        'authorization',
        `Bearer ${token(privateKey, 'RS256')}`,
      );
    },
  },
  'jwt-nocache': {
    what: 'JWT HS256, cacheSize 0 (a signature check per request)',
    make: (url) => gatewayUse(url, hs(0), 'authorization', `Bearer ${token(SECRET, 'HS256')}`),
  },
  'api-key': {
    what: 'API key (SHA-256 + constant-time compare)',
    make: (url) =>
      gatewayUse(
        url,
        { apiKeys: { keys: [{ key: API_KEY, consumer: 'bench' }] } },
        'x-api-key',
        API_KEY,
      ),
  },
};

function main() {
  return lib.featureBench({ bench: 'auth', self: SELF, proxies: PROXIES, reference: 'bare' });
}

lib.featureMain(PROXIES, main);
