import http from 'node:http';
import request from 'supertest';
import { get, rawRequest } from './helpers/raw';
import {
  listen,
  startEcho,
  startGateway,
  type Echo,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

let echo: Running;
let hopper: Running;
let gw: GatewayHarness;

beforeAll(async () => {
  echo = await startEcho('echo');
  // An upstream that answers with hop-by-hop headers the gateway must not pass on.
  hopper = await listen((_req, res) => {
    res.writeHead(200, [
      'Content-Type',
      'text/plain',
      'Connection',
      'keep-alive, X-Secret-Hop',
      'Keep-Alive',
      'timeout=5',
      'X-Secret-Hop',
      'internal',
      'Proxy-Authenticate',
      'Basic',
      'Trailer',
      'X-Checksum',
      'Upgrade',
      'h2c',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
      'X-Upstream-Only',
      'drop-me',
      'X-Kept',
      'yes',
      'X-Request-ID',
      'upstream-chosen-id',
    ]);
    res.end('ok');
  });
  gw = await startGateway({
    services: { echo: { targets: [echo.url] }, hopper: { targets: [hopper.url] } },
    routes: [
      {
        path: '/hop',
        service: 'hopper',
        responseHeaders: {
          remove: ['x-upstream-only'],
          set: { 'cache-control': 'no-store' },
          add: { vary: 'Origin' },
        },
      },
      {
        path: '/transformed',
        service: 'echo',
        requestHeaders: {
          remove: ['x-drop'],
          set: { 'x-set': 'gateway' },
          add: { 'x-add': 'second' },
        },
      },
      { path: '/**', service: 'echo' },
    ],
  });
});
afterAll(async () => {
  await gw.close();
  await hopper.close();
  await echo.close();
});

async function upstreamSaw(extra: string[], path = '/api/echo'): Promise<Echo> {
  const res = await get(gw.running.port, path, extra);
  expect(res.status).toBe(200);
  return JSON.parse(res.body) as Echo;
}

describe('request hygiene', () => {
  it.each([
    ['Keep-Alive', 'keep-alive'],
    ['TE', 'te'],
    ['Trailer', 'trailer'],
    ['Proxy-Authorization', 'proxy-authorization'],
    ['Proxy-Connection', 'proxy-connection'],
    ['Upgrade', 'upgrade'],
  ])('removes the hop-by-hop header %s', async (name, lower) => {
    const seen = await upstreamSaw([`${name}: something`]);
    expect(seen.headers[lower]).toBeUndefined();
  });

  it('removes every header named in Connection', async () => {
    const res = await rawRequest(
      gw.running.port,
      'GET /api/echo HTTP/1.1\r\nHost: gateway.test\r\nConnection: close, X-Hop-One, x-hop-two\r\n' +
        'X-Hop-One: 1\r\nX-Hop-Two: 2\r\nX-Stays: 3\r\n\r\n',
    );
    const seen = JSON.parse(res.body) as Echo;
    expect(seen.headers['x-hop-one']).toBeUndefined();
    expect(seen.headers['x-hop-two']).toBeUndefined();
    expect(seen.headers['x-stays']).toBe('3');
  });

  it.each([
    'X-User-Id',
    'X_User_Id',
    'x-user_id',
    'X-User-Roles',
    'x_user_roles',
    'X-Consumer-Id',
    'x_consumer_id',
  ])('removes the client-supplied identity header %s', async (name) => {
    const seen = await upstreamSaw([`${name}: admin`]);
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.some((n) => n.replace(/_/g, '-') === name.toLowerCase().replace(/_/g, '-'))).toBe(
      false,
    );
  });

  it.each(['X-Real_IP', 'x_real-ip', 'X_REAL_IP', 'X-Forwarded_For', 'x_forwarded-host'])(
    'removes the client forwarding header spelled %s',
    async (name) => {
      const seen = await upstreamSaw([`${name}: 6.6.6.6`]);
      const values = seen.rawHeaders.filter((_, i) => i % 2 === 1);
      expect(values).not.toContain('6.6.6.6');
      expect(seen.headers['x-real-ip']).toBe('127.0.0.1');
    },
  );

  it('replaces client forwarding headers with computed ones (trust no one)', async () => {
    const seen = await upstreamSaw([
      'X-Forwarded-For: 6.6.6.6',
      'X-Forwarded-Proto: https',
      'X-Forwarded-Host: evil.test',
      'X-Forwarded-Port: 1',
      'X_Forwarded_For: 6.6.6.6',
      'Forwarded: for=6.6.6.6',
      'X-Real-IP: 6.6.6.6',
    ]);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe('gateway.test');
    expect(seen.headers['x-forwarded-port']).toBeUndefined();
    expect(seen.headers['x_forwarded_for']).toBeUndefined();
    expect(seen.headers['x-real-ip']).toBe('127.0.0.1');
    expect(seen.headers.forwarded).toBe('for=127.0.0.1;host="gateway.test";proto=http');
  });

  it('sends the target host upstream, not the client Host', async () => {
    const seen = await upstreamSaw([]);
    expect(seen.headers.host).toBe(`127.0.0.1:${echo.port}`);
  });

  it('applies the route’s request header transform', async () => {
    const seen = await upstreamSaw(
      ['X-Drop: 1', 'X-Set: client', 'X-Add: first'],
      '/api/transformed',
    );
    expect(seen.headers['x-drop']).toBeUndefined();
    expect(seen.headers['x-set']).toBe('gateway');
    expect(seen.headers['x-add']).toBe('first, second');
  });
});

describe('trustProxy', () => {
  it('keeps the chain through a trusted hop and takes its proto and host', async () => {
    const trusted = await startGateway({
      services: { echo: { targets: [echo.url] } },
      routes: [{ path: '/**', service: 'echo' }],
      trustProxy: ['127.0.0.1'],
    });
    try {
      const res = await get(trusted.running.port, '/api/x', [
        'X-Forwarded-For: 203.0.113.9, 6.6.6.6',
        'X-Forwarded-Proto: https',
        'X-Forwarded-Host: shop.example.com',
      ]);
      const seen = JSON.parse(res.body) as Echo;
      // 6.6.6.6 is not trusted, so the chain stops there; 203.0.113.9 could be spoofed.
      expect(seen.headers['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
      expect(seen.headers['x-real-ip']).toBe('6.6.6.6');
      expect(seen.headers['x-forwarded-proto']).toBe('https');
      expect(seen.headers['x-forwarded-host']).toBe('shop.example.com');
    } finally {
      await trusted.close();
    }
  });

  it('counts hops when given a number', async () => {
    const trusted = await startGateway({
      services: { echo: { targets: [echo.url] } },
      routes: [{ path: '/**', service: 'echo' }],
      trustProxy: 2,
    });
    try {
      const res = await get(trusted.running.port, '/api/x', [
        'X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3',
      ]);
      const seen = JSON.parse(res.body) as Echo;
      // Two trusted hops: this socket's peer and 3.3.3.3; the client is the one before them.
      expect(seen.headers['x-forwarded-for']).toBe('2.2.2.2, 3.3.3.3, 127.0.0.1');
      expect(seen.headers['x-real-ip']).toBe('2.2.2.2');
    } finally {
      await trusted.close();
    }
  });
});

describe('response hygiene', () => {
  it('removes hop-by-hop and Connection-named headers from the response', async () => {
    const res = await rawRequest(
      gw.running.port,
      'GET /api/hop HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n',
    );
    expect(res.status).toBe(200);
    const names = res.headerLines.map(([n]) => n);
    for (const hop of ['keep-alive', 'x-secret-hop', 'proxy-authenticate', 'trailer', 'upgrade']) {
      expect(names).not.toContain(hop);
    }
    expect(res.headers.connection).toBe('close');
    expect(res.headers['x-kept']).toBe('yes');
    expect(res.body).toBe('ok');
  });

  it('returns the gateway’s request id, not the one the upstream answered with', async () => {
    const res = await rawRequest(
      gw.running.port,
      'GET /api/hop HTTP/1.1\r\nHost: gateway.test\r\nX-Request-ID: client-1\r\nConnection: close\r\n\r\n',
    );
    const ids = res.headerLines.filter(([n]) => n === 'x-request-id').map(([, v]) => v);
    expect(ids).toEqual(['client-1']);
  });

  it('keeps repeated Set-Cookie headers when a host middleware removed a header before (helmet)', async () => {
    const host = await startGateway(
      {
        services: { hopper: { targets: [hopper.url] } },
        routes: [{ path: '/**', service: 'hopper' }],
      },
      {
        before: (app) =>
          app.use((_req, res, next) => {
            res.removeHeader('X-Powered-By'); // what helmet does: headers were set, now none
            next();
          }),
      },
    );
    try {
      const res = await request(host.running.server).get('/api/hop');
      expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
      expect(res.headers['x-powered-by']).toBeUndefined();
    } finally {
      await host.close();
    }
  });

  it('keeps repeated Set-Cookie headers', async () => {
    const res = await request(gw.running.server).get('/api/hop');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
  });

  it('applies the route’s response header transform', async () => {
    const res = await request(gw.running.server).get('/api/hop');
    expect(res.headers['x-upstream-only']).toBeUndefined();
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers.vary).toBe('Origin');
  });

  it('keeps the client connection alive across proxied responses', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const ports: number[] = [];
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((resolve, reject) => {
          http
            .get(`${gw.url}/hop`, { agent }, (res) => {
              ports.push(res.socket.localPort!);
              res.resume().on('end', resolve);
            })
            .on('error', reject);
        });
      }
      expect(new Set(ports).size).toBe(1);
    } finally {
      agent.destroy();
    }
  });
});
