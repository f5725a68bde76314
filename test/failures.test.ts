import http from 'node:http';
import type net from 'node:net';
import request from 'supertest';
import { blackHole, deadPort, rawUpstream } from './helpers/upstreams';
import {
  listen,
  startEcho,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

/** What a client sees of a response: status, body, and whether it ended cleanly. */
function fetchOutcome(url: string): Promise<{ status: number; body: string; clean: boolean }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, clean: res.complete }));
        res.on('error', () => resolve({ status: res.statusCode!, body, clean: false }));
        res.on('aborted', () => resolve({ status: res.statusCode!, body, clean: false }));
      })
      .on('error', reject);
  });
}

/** Log entries, to tell which failure the gateway saw. */
const logged: { message: string; meta?: Record<string, unknown> }[] = [];
const logger = {
  error: (message: string, meta?: Record<string, unknown>) => logged.push({ message, meta }),
  warn: (message: string, meta?: Record<string, unknown>) => logged.push({ message, meta }),
  info: () => {},
  debug: () => {},
};

function gatewayFor(
  target: string,
  extra: { timeoutMs?: number; connectTimeoutMs?: number } = {},
): Promise<GatewayHarness> {
  return startGateway({
    services: { svc: { targets: [target], ...extra } },
    routes: [{ path: '/**', service: 'svc' }],
    logger,
  });
}

describe('502 for an upstream that fails', () => {
  it('connection refused', async () => {
    const port = await deadPort();
    const gw = await gatewayFor(`http://127.0.0.1:${port}`);
    try {
      const res = await request(gw.running.server).get('/api/x');
      expect(res.status).toBe(502);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.text).not.toContain(String(port));
      expect(res.text).not.toContain('127.0.0.1');
      expect(res.text).not.toContain('ECONNREFUSED');
    } finally {
      await gw.close();
    }
  });

  it.each<[string, (s: net.Socket) => void]>([
    ['connection reset before a response', (s) => s.resetAndDestroy()],
    ['malformed response', (s) => s.end('this is not HTTP\r\n\r\n')],
  ])('%s', async (_label, answer) => {
    const up = await rawUpstream((s) => s.once('data', () => answer(s)));
    const gw = await gatewayFor(up.url);
    try {
      expect((await request(gw.running.server).get('/api/x')).status).toBe(502);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('DNS failure', async () => {
    const gw = await gatewayFor('http://turnpike-test.invalid:8080');
    try {
      const res = await request(gw.running.server).get('/api/x');
      expect(res.status).toBe(502);
      expect(res.text).not.toContain('invalid');
    } finally {
      await gw.close();
    }
  });

  it('recovers when the upstream comes back', async () => {
    const port = await deadPort();
    const gw = await gatewayFor(`http://127.0.0.1:${port}`);
    try {
      expect((await request(gw.running.server).get('/api/x')).status).toBe(502);
      const back = http.createServer((_req, res) => res.end('back'));
      await new Promise<void>((r) => back.listen(port, '127.0.0.1', r));
      try {
        const res = await request(gw.running.server).get('/api/x');
        expect(res.status).toBe(200);
        expect(res.text).toBe('back');
      } finally {
        back.closeAllConnections();
        await new Promise((r) => back.close(r));
      }
    } finally {
      await gw.close();
    }
  });
});

describe('504 when the upstream is too slow', () => {
  it('an upstream that never answers', async () => {
    const up = await rawUpstream(() => {});
    const gw = await gatewayFor(up.url, { timeoutMs: 300 });
    try {
      const res = await request(gw.running.server).get('/api/x');
      expect(res.status).toBe(504);
      expect(res.body).toMatchObject({
        status: 504,
        type: 'urn:turnpike:problem:upstream-timeout',
      });
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('an upstream that trickles its response head', async () => {
    const up = await rawUpstream((s) =>
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\n');
        const t = setInterval(() => s.write('X-Slow: y\r\n'), 50);
        s.once('close', () => clearInterval(t));
      }),
    );
    const gw = await gatewayFor(up.url, { timeoutMs: 400 });
    try {
      expect((await request(gw.running.server).get('/api/x')).status).toBe(504);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('a connection that cannot be opened (connect timeout)', async () => {
    const hole = await blackHole();
    const gw = await gatewayFor(hole.url, { connectTimeoutMs: 200, timeoutMs: 10_000 });
    try {
      logged.length = 0;
      const res = await request(gw.running.server).get('/api/x');
      expect(res.status).toBe(504);
      // The connect timeout fired, not the (much longer) total deadline.
      expect(logged.map((l) => l.meta?.kind)).toContain('connect-timeout');
    } finally {
      await gw.close();
      await hole.close();
    }
  });
});

describe('responses cut short', () => {
  it('a trickling body cannot outlive the deadline: the client sees an unclean end', async () => {
    const up = await rawUpstream((s) =>
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n');
        const t = setInterval(() => s.write('x'), 20);
        s.once('close', () => clearInterval(t));
      }),
    );
    const gw = await gatewayFor(up.url, { timeoutMs: 400 });
    try {
      const outcome = await fetchOutcome(`${gw.url}/x`);
      expect(outcome.status).toBe(200);
      expect(outcome.clean).toBe(false);
      expect(outcome.body.length).toBeLessThan(100000);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it.each([
    ['a body', 'Content-Length: 100\r\n\r\n0123456789'],
    ['a chunked body', 'Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n'],
  ])('%s cut off by the upstream ends the client connection uncleanly', async (_label, rest) => {
    const up = await rawUpstream((s) =>
      s.once('data', () => {
        s.write(`HTTP/1.1 200 OK\r\n${rest}`);
        setImmediate(() => s.destroy());
      }),
    );
    const gw = await gatewayFor(up.url);
    try {
      const outcome = await fetchOutcome(`${gw.url}/x`);
      expect(outcome.clean).toBe(false);
      expect(outcome.body).toBe('0123456789');
    } finally {
      await gw.close();
      await up.close();
    }
  });
});

describe('client abort', () => {
  let upstream: Running;
  let upstreamClosed = 0;
  beforeAll(async () => {
    upstream = await listen((req) => {
      // Never answers; counts requests that the gateway abandons.
      req.socket.once('close', () => upstreamClosed++);
    });
  });
  afterAll(() => upstream.close());

  it('destroys the upstream request when the client goes away', async () => {
    const gw = await gatewayFor(upstream.url, { timeoutMs: 60_000 });
    try {
      let received = 0;
      upstream.server.on('request', () => received++);
      const req = http.get(`${gw.url}/slow`);
      req.on('error', () => {});
      await waitFor(() => received === 1);
      const before = upstreamClosed;
      req.destroy();
      await waitFor(() => upstreamClosed === before + 1);
      expect(upstreamClosed).toBe(before + 1);
    } finally {
      await gw.close();
    }
  });
});

describe('with an upstream that works', () => {
  let echo: Running;
  beforeAll(async () => {
    echo = await startEcho();
  });
  afterAll(() => echo.close());

  it('503 when the target function has nothing to offer', async () => {
    const { createRouter } = await import('@turnpike/router');
    const router = createRouter({
      services: { none: { target: () => undefined } },
      routes: [{ path: '/**', service: 'none' }],
    });
    const server = await listen((req, res) => router(req, res, () => {}));
    try {
      const res = await request(server.server).get('/x');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
    } finally {
      await router.close();
      await server.close();
    }
  });
});
