import http, { type IncomingHttpHeaders, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync, gzipSync } from 'node:zlib';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import { configErrorOf } from './helpers/expectations';
import { echoHandler, listen, startGateway, type GatewayHarness } from './helpers/servers';

/** One answer, the body as bytes (never decoded: the test decides). */
interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function send(
  url: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const varyOf = (a: Answer): string[] =>
  String(a.headers.vary ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '');

const corsHeaders = (a: Answer): string[] =>
  Object.keys(a.headers).filter((name) => name.startsWith('access-control-'));

/** helmet's default headers (v8), as the gateway writes them. */
const HELMET_DEFAULTS: Record<string, string | RegExp> = {
  'content-security-policy': /^default-src 'self';/,
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': /^max-age=\d+; includeSubDomains$/,
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'SAMEORIGIN',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
};

function expectHelmet(a: Answer): void {
  for (const [name, value] of Object.entries(HELMET_DEFAULTS)) {
    if (typeof value === 'string') expect([name, a.headers[name]]).toEqual([name, value]);
    else expect([name, a.headers[name]]).toEqual([name, expect.stringMatching(value)]);
  }
}

function expectNoHelmet(a: Answer): void {
  for (const name of Object.keys(HELMET_DEFAULTS)) {
    if (name === 'x-content-type-options') continue; // the problem writer's own, with or without helmet
    expect([name, a.headers[name]]).toEqual([name, undefined]);
  }
}

// ---------------------------------------------------------------------------------------------
// The upstream: one server, a behaviour per path; it counts what reaches it.
// ---------------------------------------------------------------------------------------------

const BIG = Buffer.from(
  JSON.stringify({
    items: Array.from({ length: 400 }, (_, i) => ({ id: i, name: `item-${i}`, tags: ['a', 'b'] })),
  }),
);
const SMALL = Buffer.from(JSON.stringify({ ok: true, note: 'small' }));
const MEDIUM = Buffer.from(JSON.stringify({ pad: 'x'.repeat(480) })); // ~500 bytes
const SSE = Buffer.from(
  Array.from({ length: 100 }, (_, i) => `id: ${i}\ndata: {"n":${i},"pad":"aaaaaaaa"}\n\n`).join(''),
);

let hits: { method: string; url: string }[] = [];

const upstream: RequestListener = (req, res) => {
  hits.push({ method: req.method!, url: req.url! });
  const json = { 'content-type': 'application/json' };
  switch (req.url) {
    case '/big':
      res.writeHead(200, { ...json, 'content-length': BIG.length });
      return void res.end(BIG);
    case '/big-chunked': {
      // Streamed in pieces, no Content-Length: the gateway forwards each as it comes.
      res.writeHead(200, json);
      let offset = 0;
      const step = (): void => {
        if (offset >= BIG.length) return void res.end();
        res.write(BIG.subarray(offset, offset + 1000));
        offset += 1000;
        setImmediate(step);
      };
      return step();
    }
    case '/small':
      res.writeHead(200, { ...json, 'content-length': SMALL.length });
      return void res.end(SMALL);
    case '/medium':
      res.writeHead(200, { ...json, 'content-length': MEDIUM.length });
      return void res.end(MEDIUM);
    case '/gzipped': {
      const body = gzipSync(BIG);
      res.writeHead(200, { ...json, 'content-encoding': 'gzip', 'content-length': body.length });
      return void res.end(body);
    }
    case '/sse':
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      return void res.end(SSE);
    case '/no-transform':
      res.writeHead(200, { ...json, 'cache-control': 'public, no-transform' });
      return void res.end(BIG);
    case '/own-cors':
      res.writeHead(200, {
        ...json,
        'access-control-allow-origin': '*',
        'access-control-allow-credentials': 'true',
        vary: 'Accept-Language',
      });
      return void res.end(SMALL);
    case '/framed':
      res.writeHead(200, { ...json, 'x-frame-options': 'DENY' });
      return void res.end(SMALL);
    default:
      return echoHandler('up')(req, res);
  }
};

const APP = 'https://app.example.com';
const OTHER = 'https://evil.example.net';

const harnesses: GatewayHarness[] = [];
const closers: (() => Promise<void>)[] = [];
let up: { url: string };

beforeAll(async () => {
  const running = await listen(upstream);
  closers.push(() => running.close());
  up = running;
});
beforeEach(() => {
  hits = [];
});
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
});
afterAll(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function gateway(
  more: Partial<GatewayConfig> = {},
  routes: GatewayConfig['routes'] = [{ path: '/**', service: 'up' }],
): Promise<GatewayHarness> {
  const h = await startGateway({ services: { up: { targets: [up.url] } }, routes, ...more });
  harnesses.push(h);
  return h;
}

// ---------------------------------------------------------------------------------------------

describe('cors', () => {
  const cors: GatewayConfig['cors'] = {
    origins: [APP, /^https:\/\/[a-z0-9-]+\.example\.org$/],
    credentials: true,
    exposedHeaders: ['X-Request-ID'],
    methods: ['GET', 'POST'],
    allowedHeaders: ['Authorization', 'Content-Type'],
    maxAgeSec: 600,
  };

  it('an allowed origin (exact) gets Access-Control-Allow-Origin = the origin, credentials and Vary: Origin', async () => {
    const h = await gateway({ cors });
    const a = await send(`${h.url}/hello`, { headers: { origin: APP } });
    expect(a.status).toBe(200);
    expect(a.headers['access-control-allow-origin']).toBe(APP);
    expect(a.headers['access-control-allow-credentials']).toBe('true');
    expect(a.headers['access-control-expose-headers']).toBe('X-Request-ID');
    expect(varyOf(a)).toContain('origin');
    // Preflight-only headers stay off an actual request.
    expect(a.headers['access-control-allow-methods']).toBeUndefined();
    expect(hits).toEqual([{ method: 'GET', url: '/hello' }]);
  });

  it('a disallowed origin gets no CORS header at all, and the request still goes on', async () => {
    const h = await gateway({ cors });
    for (const origin of [OTHER, `${APP}:8443`, 'http://app.example.com', 'null']) {
      const a = await send(`${h.url}/hello`, { headers: { origin } });
      expect(a.status).toBe(200);
      expect([origin, corsHeaders(a)]).toEqual([origin, []]);
      expect(varyOf(a)).toContain('origin');
    }
    expect(hits).toHaveLength(4);
  });

  it('a RegExp origin allows what it matches in full, and nothing else', async () => {
    const h = await gateway({ cors });
    const yes = await send(`${h.url}/x`, { headers: { origin: 'https://shop-1.example.org' } });
    expect(yes.headers['access-control-allow-origin']).toBe('https://shop-1.example.org');
    for (const origin of [
      'https://shop.example.org.evil.net',
      'https://evil.net/https://shop.example.org',
      'http://shop.example.org',
    ]) {
      const no = await send(`${h.url}/x`, { headers: { origin } });
      expect([origin, corsHeaders(no)]).toEqual([origin, []]);
    }
  });

  it('a preflight is answered 204 by the gateway: before route matching and the route stages, never upstream', async () => {
    const h = await gateway({ cors }, [
      // Only GET: an OPTIONS that reached route matching would be a 405.
      { path: '/users', service: 'up', methods: ['GET'], rateLimit: { limit: 1, windowMs: 60000 } },
    ]);
    const preflight = {
      method: 'OPTIONS',
      headers: {
        origin: APP,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization',
      },
    };
    // A plain OPTIONS (no Access-Control-Request-Method) is not a preflight: matching refuses it.
    const plain = await send(`${h.url}/users`, { method: 'OPTIONS', headers: { origin: APP } });
    expect(plain.status).toBe(405);
    for (let i = 0; i < 3; i++) {
      const a = await send(`${h.url}/users`, preflight);
      expect(a.status).toBe(204);
      expect(a.body.length).toBe(0);
      expect(a.headers['access-control-allow-origin']).toBe(APP);
      expect(a.headers['access-control-allow-credentials']).toBe('true');
      expect(a.headers['access-control-allow-methods']).toBe('GET,POST');
      expect(a.headers['access-control-allow-headers']).toBe('Authorization,Content-Type');
      expect(a.headers['access-control-max-age']).toBe('600');
      expect(varyOf(a)).toContain('origin');
      expectHelmet(a); // an answer of the gateway's own
    }
    // A path no route has: still the gateway's preflight, not a 404.
    const unrouted = await send(`${h.url}/nowhere`, preflight);
    expect(unrouted.status).toBe(204);
    expect(unrouted.headers['access-control-allow-origin']).toBe(APP);
    expect(hits).toEqual([]);
    // The route's rate limit (a stage) never counted the preflights: its one request is left.
    const get = await send(`${h.url}/users`, { headers: { origin: APP } });
    expect(get.status).toBe(200);
    const limited = await send(`${h.url}/users`, { headers: { origin: APP } });
    expect(limited.status).toBe(429);
    expect(limited.headers['access-control-allow-origin']).toBe(APP); // the app can read its errors
    expect(hits).toHaveLength(1);
  });

  it('a preflight from a disallowed origin is a plain 204 without any Access-Control-* header', async () => {
    const h = await gateway({ cors });
    const a = await send(`${h.url}/users`, {
      method: 'OPTIONS',
      headers: { origin: OTHER, 'access-control-request-method': 'POST' },
    });
    expect(a.status).toBe(204);
    expect(corsHeaders(a)).toEqual([]);
    expect(varyOf(a)).toContain('origin');
    expect(hits).toEqual([]);
  });

  it("'*' without credentials answers Access-Control-Allow-Origin: * to any origin", async () => {
    const h = await gateway({ cors: { origins: ['*'] } });
    const a = await send(`${h.url}/x`, { headers: { origin: OTHER } });
    expect(a.headers['access-control-allow-origin']).toBe('*');
    expect(a.headers['access-control-allow-credentials']).toBeUndefined();
    expect(varyOf(a)).toContain('origin');
    const pre = await send(`${h.url}/x`, {
      method: 'OPTIONS',
      headers: { origin: OTHER, 'access-control-request-method': 'DELETE' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('*');
    expect(pre.headers['access-control-allow-methods']).toBe('GET,HEAD,PUT,PATCH,POST,DELETE');
  });

  it('Vary: Origin is on every response while cors is on: no Origin, a 404, a 503', async () => {
    const h = await startGateway({
      services: { up: { targets: [up.url] }, none: { targets: [{ url: up.url, weight: 0 }] } },
      routes: [
        { path: '/x', service: 'up' },
        { path: '/down', service: 'none' },
      ],
      cors,
    });
    harnesses.push(h);
    const [plain, missing, down] = await Promise.all([
      send(`${h.url}/x`),
      send(`${h.url}/nope`, { headers: { origin: APP } }),
      send(`${h.url}/down`, { headers: { origin: OTHER } }),
    ]);
    expect([plain.status, missing.status, down.status]).toEqual([200, 404, 503]);
    for (const a of [plain, missing, down]) expect(varyOf(a)).toContain('origin');
    expect(corsHeaders(plain)).toEqual([]);
    expect(missing.headers['access-control-allow-origin']).toBe(APP);
    expect(corsHeaders(down)).toEqual([]);
  });

  it("the gateway's CORS owns the Access-Control-* headers: the upstream's are dropped, its Vary kept", async () => {
    const h = await gateway({ cors });
    const other = await send(`${h.url}/own-cors`, { headers: { origin: OTHER } });
    expect(other.status).toBe(200);
    expect(corsHeaders(other)).toEqual([]); // the upstream's `*` does not undo the allowlist
    expect(varyOf(other)).toEqual(['accept-language', 'origin']);
    const app = await send(`${h.url}/own-cors`, { headers: { origin: APP } });
    expect(app.headers['access-control-allow-origin']).toBe(APP);
    expect(varyOf(app)).toEqual(['accept-language', 'origin']);
  });

  it("a route's cors: false: no CORS from the gateway on it, and its preflights go to the route", async () => {
    const h = await gateway({ cors }, [
      { path: '/own-cors', service: 'up', cors: false },
      { path: '/legacy/**', service: 'up', cors: false },
      { path: '/legacy/open', service: 'up' }, // more specific, with the gateway's CORS
      { path: '/**', service: 'up' },
    ]);
    const own = await send(`${h.url}/own-cors`, { headers: { origin: OTHER } });
    expect(own.headers['access-control-allow-origin']).toBe('*'); // the upstream's, untouched
    expect(varyOf(own)).toEqual(['accept-language']);
    const legacy = await send(`${h.url}/legacy/a`, { headers: { origin: APP } });
    expect(corsHeaders(legacy)).toEqual([]);
    const preflight = {
      method: 'OPTIONS',
      headers: { origin: APP, 'access-control-request-method': 'PUT' },
    };
    hits = [];
    const toRoute = await send(`${h.url}/legacy/a`, preflight);
    expect(toRoute.status).toBe(200); // the upstream (echo) answered it
    expect(corsHeaders(toRoute)).toEqual([]);
    expect(hits).toEqual([{ method: 'OPTIONS', url: '/legacy/a' }]);
    // Under the same pattern, a route with CORS: its stage answers the preflight.
    const open = await send(`${h.url}/legacy/open`, preflight);
    expect(open.status).toBe(204);
    expect(open.headers['access-control-allow-origin']).toBe(APP);
    // Elsewhere the edge answers as before.
    const elsewhere = await send(`${h.url}/other`, preflight);
    expect(elsewhere.status).toBe(204);
    expect(hits).toHaveLength(1);
  });
});

describe('helmet', () => {
  it("helmet's headers are on the gateway's own answers by default: 404, 405, 429, 503", async () => {
    const h = await startGateway({
      services: { up: { targets: [up.url] }, none: { targets: [{ url: up.url, weight: 0 }] } },
      routes: [
        { path: '/only-get', service: 'up', methods: ['GET'] },
        { path: '/limited', service: 'up', rateLimit: { limit: 1, windowMs: 60000 } },
        { path: '/down', service: 'none' },
      ],
    });
    harnesses.push(h);
    const notFound = await send(`${h.url}/nope`);
    expect(notFound.status).toBe(404);
    expect(notFound.headers['content-type']).toBe('application/problem+json');
    expectHelmet(notFound);
    const method = await send(`${h.url}/only-get`, { method: 'DELETE' });
    expect(method.status).toBe(405);
    expectHelmet(method);
    expect((await send(`${h.url}/limited`)).status).toBe(200);
    const limited = await send(`${h.url}/limited`);
    expect(limited.status).toBe(429);
    expectHelmet(limited);
    const down = await send(`${h.url}/down`);
    expect(down.status).toBe(503);
    expectHelmet(down);
  });

  it('proxied responses carry none of them by default', async () => {
    const h = await gateway();
    const a = await send(`${h.url}/hello`);
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body.toString()) as { url: string }).toMatchObject({ url: '/hello' });
    expectNoHelmet(a);
    expect(a.headers['x-content-type-options']).toBeUndefined();
    expect(a.headers['x-request-id']).toEqual(expect.any(String));
  });

  it("with proxied: true they are on proxied responses too, the upstream's own header winning", async () => {
    const h = await gateway({ helmet: { proxied: true } });
    const a = await send(`${h.url}/framed`);
    expect(a.status).toBe(200);
    expect(a.headers['x-frame-options']).toBe('DENY'); // the upstream's, not helmet's SAMEORIGIN
    const { 'x-frame-options': _frame, ...others } = HELMET_DEFAULTS;
    for (const [name, value] of Object.entries(others)) {
      expect([name, a.headers[name]]).toEqual([
        name,
        typeof value === 'string' ? value : expect.stringMatching(value),
      ]);
    }
  });

  it("helmet's options are passed on; helmet: false writes none", async () => {
    const routes = [{ path: '/x', service: 'up' }];
    const custom = await gateway(
      { helmet: { xFrameOptions: { action: 'deny' }, strictTransportSecurity: false } },
      routes,
    );
    const a = await send(`${custom.url}/nope`);
    expect(a.headers['x-frame-options']).toBe('DENY');
    expect(a.headers['strict-transport-security']).toBeUndefined();
    expect(a.headers['content-security-policy']).toEqual(expect.any(String));
    const off = await gateway({ helmet: false }, routes);
    const b = await send(`${off.url}/nope`);
    expect(b.status).toBe(404);
    expectNoHelmet(b);
    expect(b.headers['x-content-type-options']).toBe('nosniff'); // every problem has it
  });

  it('runs in every lane: the direct lane and listen() too', async () => {
    const config: GatewayConfig = {
      services: { up: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'up' }],
      cors: { origins: [APP] },
    };
    const direct = await startGateway(config, { attach: false });
    harnesses.push(direct);
    direct.gateway.attach(direct.running.server, { direct: true, path: '/api' });
    const own = createGateway(config);
    closers.push(() => own.close());
    const server = await own.listen(0, '127.0.0.1');
    const ownUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (const base of [direct.url, ownUrl]) {
      const missing = await send(`${base}/nope`, { headers: { origin: APP } });
      expect([base, missing.status]).toEqual([base, 404]);
      expectHelmet(missing);
      expect(missing.headers['access-control-allow-origin']).toBe(APP);
      const pre = await send(`${base}/x`, {
        method: 'OPTIONS',
        headers: { origin: APP, 'access-control-request-method': 'GET' },
      });
      expect([base, pre.status]).toEqual([base, 204]);
      expect(pre.headers['access-control-allow-origin']).toBe(APP);
    }
    expect(hits).toEqual([]);
  });

  it("a request the gateway passes on to the host app gets none of the edge's headers", async () => {
    const h = await gateway({ cors: { origins: [APP] } }, [
      { path: '/leave', handler: (_req, _res, next) => next() },
      { path: '/mine', handler: (_req, res) => void res.end('handled') },
    ]);
    h.app.get('/api/leave', (_req, res) => {
      res.json({ host: true });
    });
    const left = await send(`${h.url}/leave`, { headers: { origin: APP } });
    expect(JSON.parse(left.body.toString())).toEqual({ host: true });
    expectNoHelmet(left);
    expect(corsHeaders(left)).toEqual([]);
    expect(varyOf(left)).not.toContain('origin');
    // A handler route's own answer is the gateway's: the edge is on it.
    const mine = await send(`${h.url}/mine`, { headers: { origin: APP } });
    expect(mine.body.toString()).toBe('handled');
    expectHelmet(mine);
    expect(mine.headers['access-control-allow-origin']).toBe(APP);
  });
});

describe('compression', () => {
  const routes: GatewayConfig['routes'] = [
    { path: '/c/**', service: 'up', stripPrefix: '/c', compress: true },
    { path: '/t/**', service: 'up', stripPrefix: '/t', compress: { thresholdBytes: 100 } },
    { path: '/p/**', service: 'up', stripPrefix: '/p' },
  ];
  const gzip = { 'accept-encoding': 'gzip' };

  it("a large JSON body is gzipped, streamed, and decompresses to the upstream's bytes", async () => {
    const h = await gateway({}, routes);
    for (const path of ['/c/big', '/c/big-chunked']) {
      const a = await send(`${h.url}${path}`, { headers: gzip });
      expect([path, a.status, a.headers['content-encoding']]).toEqual([path, 200, 'gzip']);
      expect(a.headers['content-length']).toBeUndefined();
      expect(varyOf(a)).toContain('accept-encoding');
      expect(a.body.length).toBeLessThan(BIG.length / 2);
      expect(gunzipSync(a.body).equals(BIG)).toBe(true);
    }
  });

  it('not without Accept-Encoding, not below the threshold, not on a route without compress', async () => {
    const h = await gateway({}, routes);
    const identity = await send(`${h.url}/c/big`, { headers: { 'accept-encoding': 'identity' } });
    expect(identity.headers['content-encoding']).toBeUndefined();
    expect(identity.body.equals(BIG)).toBe(true);
    const small = await send(`${h.url}/c/small`, { headers: gzip });
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.body.equals(SMALL)).toBe(true);
    const medium = await send(`${h.url}/c/medium`, { headers: gzip });
    expect(medium.headers['content-encoding']).toBeUndefined(); // ~500 bytes < 1024
    const lower = await send(`${h.url}/t/medium`, { headers: gzip });
    expect(lower.headers['content-encoding']).toBe('gzip'); // thresholdBytes: 100
    expect(gunzipSync(lower.body).equals(MEDIUM)).toBe(true);
    const plain = await send(`${h.url}/p/big`, { headers: gzip });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.equals(BIG)).toBe(true);
  });

  it("an upstream's gzip body is passed as it is, never encoded twice", async () => {
    const h = await gateway({}, routes);
    const a = await send(`${h.url}/c/gzipped`, { headers: gzip });
    expect(a.headers['content-encoding']).toBe('gzip');
    expect(a.body.equals(gzipSync(BIG))).toBe(true);
    expect(gunzipSync(a.body).equals(BIG)).toBe(true);
  });

  it('never text/event-stream, never Cache-Control: no-transform', async () => {
    const h = await gateway({}, routes);
    const sse = await send(`${h.url}/c/sse`, { headers: gzip });
    expect(sse.headers['content-type']).toBe('text/event-stream');
    expect(sse.headers['content-encoding']).toBeUndefined();
    expect(sse.body.equals(SSE)).toBe(true);
    const fixed = await send(`${h.url}/c/no-transform`, { headers: gzip });
    expect(fixed.headers['content-encoding']).toBeUndefined();
    expect(fixed.body.equals(BIG)).toBe(true);
  });

  it('with cors and helmet on: Vary keeps Origin and Accept-Encoding, the edge sees the upstream head', async () => {
    const h = await gateway({ cors: { origins: [APP] }, helmet: { proxied: true } }, routes);
    const a = await send(`${h.url}/c/big`, { headers: { ...gzip, origin: APP } });
    expect(a.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(a.body).equals(BIG)).toBe(true);
    expect(varyOf(a)).toEqual(expect.arrayContaining(['origin', 'accept-encoding']));
    expect(a.headers['access-control-allow-origin']).toBe(APP);
    expectHelmet(a);
    // Helmet goes on before the upstream's head, compression's wrapper or not: the upstream's wins.
    const framed = await send(`${h.url}/c/framed`, { headers: gzip });
    expect(framed.headers['x-frame-options']).toBe('DENY');
    expect(framed.headers['content-security-policy']).toEqual(expect.any(String));
    const byDefault = await gateway({ cors: { origins: [APP] } }, routes);
    const b = await send(`${byDefault.url}/c/big`, { headers: { ...gzip, origin: APP } });
    expect(b.headers['content-encoding']).toBe('gzip');
    expectNoHelmet(b); // still known as the upstream's head under compression's wrapper
    expect(b.headers['x-content-type-options']).toBeUndefined();
  });
});

describe('config', () => {
  const base = (more: Record<string, unknown>, routes?: unknown[]): GatewayConfig =>
    ({
      services: { up: { targets: ['http://127.0.0.1:1'] } },
      routes: routes ?? [{ path: '/x', service: 'up' }],
      ...more,
    }) as unknown as GatewayConfig;
  const refused = (config: GatewayConfig): string =>
    configErrorOf(() => createGateway(config)).path;

  it.each([
    ['a trailing slash', [APP, 'https://b.example.com/'], 'cors.origins[1]'],
    ['a path', ['https://a.example.com/app'], 'cors.origins[0]'],
    ['a default port', ['https://a.example.com:443'], 'cors.origins[0]'],
    ['upper case', ['https://App.example.com'], 'cors.origins[0]'],
    ['no scheme', ['app.example.com'], 'cors.origins[0]'],
    ['"null"', ['null'], 'cors.origins[0]'],
    ['another scheme', ['ftp://a.example.com'], 'cors.origins[0]'],
    ['an unanchored RegExp', [APP, /example\.com$/], 'cors.origins[1]'],
    ['a RegExp without $', [/^https:\/\/a\.example\.com/], 'cors.origins[0]'],
    ['a top-level alternative', [/^https:\/\/a\.com|b\.com$/], 'cors.origins[0]'],
    ['an escaped $', [/^https:\/\/a\.com\$/], 'cors.origins[0]'],
    ['a global RegExp', [/^https:\/\/a\.com$/g], 'cors.origins[0]'],
    ['no origin', [], 'cors.origins'],
  ])('cors.origins with %s is refused, naming the entry', (_what, origins, path) => {
    expect(refused(base({ cors: { origins } }))).toBe(path);
  });

  it("'*' is refused with credentials: true; cors: true and unknown keys too", () => {
    expect(refused(base({ cors: { origins: [APP, '*'], credentials: true } }))).toBe(
      'cors.origins[1]',
    );
    expect(
      refused(base({ cors: { origins: [APP], allowedHeaders: ['*'], credentials: true } })),
    ).toBe('cors.allowedHeaders[0]');
    expect(refused(base({ cors: true }))).toBe('cors');
    expect(refused(base({ cors: { origins: [APP], maxAge: 5 } }))).toBe('cors.maxAge');
    expect(refused(base({ cors: { origins: [APP], maxAgeSec: -1 } }))).toBe('cors.maxAgeSec');
    expect(refused(base({ cors: { origins: [APP], methods: ['get'] } }))).toBe('cors.methods[0]');
    // Anchored ones pass, alternatives in a group included.
    expect(() =>
      createGateway(base({ cors: { origins: ['*', /^https:\/\/(?:a|b)\.example\.com$/] } })),
    ).not.toThrow();
  });

  it('route keys: compress and cors', () => {
    const routes = (route: Record<string, unknown>): unknown[] => [
      { path: '/a', service: 'up' },
      { path: '/b', service: 'up' },
      { path: '/c', service: 'up', ...route },
    ];
    expect(refused(base({}, routes({ compress: { thresholdBytes: -1 } })))).toBe(
      'routes[2].compress.thresholdBytes',
    );
    expect(refused(base({}, routes({ compress: { thresholdBytes: 1.5 } })))).toBe(
      'routes[2].compress.thresholdBytes',
    );
    expect(refused(base({}, routes({ compress: { threshold: 10 } })))).toBe(
      'routes[2].compress.threshold',
    );
    expect(refused(base({}, routes({ compress: 'yes' })))).toBe('routes[2].compress');
    expect(refused(base({}, routes({ cors: 'off' })))).toBe('routes[2].cors');
  });

  it('helmet: unknown keys, values helmet refuses, proxied not a boolean', () => {
    expect(refused(base({ helmet: { frameGuard: true } }))).toBe('helmet.frameGuard');
    expect(refused(base({ helmet: { proxied: 'yes' } }))).toBe('helmet.proxied');
    expect(refused(base({ helmet: { noSniff: {} } }))).toBe('helmet.noSniff');
    expect(
      refused(
        base({ helmet: { contentSecurityPolicy: { directives: { 'bad name': ["'self'"] } } } }),
      ),
    ).toBe('helmet.contentSecurityPolicy');
    expect(refused(base({ helmet: { referrerPolicy: { policy: 'sometimes' } } }))).toBe(
      'helmet.referrerPolicy',
    );
    expect(refused(base({ helmet: { hsts: true, strictTransportSecurity: true } }))).toBe('helmet');
    expect(refused(base({ helmet: 'on' }))).toBe('helmet');
  });
});
