import http from 'node:http';
import net from 'node:net';
import {
  isUpstreamFailure,
  type Middleware,
  type Outcome,
  type OutcomeKind,
  type RouteOptions,
  type RouterOptions,
  type ServiceOptions,
} from '@turnpike/router';
import {
  closersAfterEach,
  countConnections,
  fetchResponse,
  gate,
  recordOutcomes,
  recordingLogger,
  startRouter,
  type OutcomeLog,
  type RouterHarness,
} from './helpers/outcomes';
import { listen, startEcho, waitFor, type Running } from './helpers/servers';
import { blackHole, deadPort, rawUpstream } from './helpers/upstreams';

const closers = closersAfterEach();

/** A router at /api with one catch-all route to `target`, its outcomes recorded. */
async function routerFor(
  target: string,
  options: {
    service?: Partial<ServiceOptions>;
    route?: Partial<RouteOptions>;
    router?: Partial<RouterOptions>;
  } = {},
): Promise<{ h: RouterHarness; log: OutcomeLog; logger: ReturnType<typeof recordingLogger> }> {
  const logger = recordingLogger();
  const h = await startRouter({
    services: { svc: { target, ...options.service } },
    routes: [{ path: '/**', service: 'svc', ...options.route }],
    logger,
    ...options.router,
  });
  closers.push(() => h.close());
  return { h, log: recordOutcomes(h.router), logger };
}

/** Starts `server`-like upstreams and closes them after the test. */
async function upstream(started: Promise<Running>): Promise<Running> {
  const up = await started;
  closers.push(() => up.close());
  return up;
}

/**
 * The one outcome of the only request of the test: waits for `quiet` (the upstream saw its
 * socket close, …), then closes the router and its server (anything still pending fires
 * now), and only then counts the reports.
 */
async function onlyOutcome(
  log: OutcomeLog,
  h: RouterHarness,
  quiet: () => boolean = () => true,
): Promise<Outcome> {
  await waitFor(() => log.list.length > 0);
  await waitFor(quiet);
  await h.close();
  expect(log.list.map((o) => o.kind)).toHaveLength(1);
  return log.list[0]!;
}

/** Opens a raw connection to the gateway and writes `text`; errors are ignored. */
function rawSocket(port: number, text: string): net.Socket {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(text);
  return socket;
}

describe('each outcome is reported once and only once', () => {
  it('complete: the whole response, with the attempt done', async () => {
    const echo = await upstream(startEcho());
    const conns = countConnections(echo.server);
    const { h, log } = await routerFor(echo.url);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(res.clean).toBe(true);

    const o = await onlyOutcome(log, h, () => conns.total === 1);
    await waitFor(() => conns.open === 0);
    expect(o.kind).toBe('complete');
    expect(o.status).toBe(200);
    expect(o.service).toBe('svc');
    expect(o.route.path).toBe('/**');
    expect(o.error).toBeUndefined();
    expect(o.attempt).toBeDefined();
    const a = o.attempt!;
    expect(a.phase).toBe('done');
    expect(a.status).toBe(200);
    expect(a.bytesReceived).toBe(res.body.length);
    expect(a.headAt).toBeGreaterThan(a.startedAt);
    expect(a.target.host).toBe(`127.0.0.1:${echo.port}`);
    expect(o.durationMs).toBeGreaterThan(0);
  });

  it('refused: nothing listens on the target; the client gets a 502', async () => {
    const port = await deadPort();
    const { h, log } = await routerFor(`http://127.0.0.1:${port}`);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(502);

    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('refused');
    expect(o.error?.status).toBe(502);
    expect(o.attempt?.headAt).toBe(0);
    expect(o.attempt?.status).toBe(0);
    expect(isUpstreamFailure(o.kind)).toBe(true);
  });

  it('reset: the upstream resets the connection before the response head', async () => {
    const up = await upstream(rawUpstream((s) => s.once('data', () => s.resetAndDestroy())));
    const conns = countConnections(up.server);
    const { h, log } = await routerFor(up.url);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(502);

    const o = await onlyOutcome(log, h, () => conns.closed === conns.total && conns.total > 0);
    expect(o.kind).toBe('reset');
    expect(o.error?.status).toBe(502);
    expect(o.attempt?.headAt).toBe(0);
  });

  it('timeout: the deadline passes before the head; 504, and the upstream sees its socket closed', async () => {
    // It reads (and ignores) what it gets, so that it sees the gateway close the socket.
    const up = await upstream(rawUpstream((s) => s.resume()));
    const conns = countConnections(up.server);
    const { h, log } = await routerFor(up.url, { service: { timeoutMs: 300 } });
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(504);
    expect(res.headers['content-type']).toBe('application/problem+json');

    // Closed by the gateway, not by the router's close() below. (undici may open a fresh idle
    // connection once the aborted one is gone: only the first is counted.)
    await waitFor(() => conns.closed >= 1);
    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('timeout');
    expect(o.error?.status).toBe(504);
    expect(o.attempt).toBeDefined();
    expect(o.attempt!.headAt).toBe(0);
  });

  it('cut-off: the upstream closes mid-body; the client sees an unclean end', async () => {
    const up = await upstream(
      rawUpstream((s) =>
        s.once('data', () => {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
          setImmediate(() => s.destroy());
        }),
      ),
    );
    const { h, log } = await routerFor(up.url);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(res.clean).toBe(false);
    expect(res.body.toString()).toBe('0123456789');

    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('cut-off');
    expect(o.status).toBe(200);
    expect(o.attempt?.status).toBe(200);
    expect(o.attempt?.bytesReceived).toBe(10);
    expect(isUpstreamFailure(o.kind)).toBe(true);
  });

  it('client-gone mid-upload (a streamed body): the upstream sees the request aborted', async () => {
    const seen = { requests: 0, bytes: 0, aborted: 0, complete: 0 };
    const up = await upstream(
      listen((req) => {
        seen.requests++;
        req.on('data', (c: Buffer) => (seen.bytes += c.length));
        req.on('end', () => seen.complete++);
        req.on('error', () => {});
        req.once('close', () => {
          if (!req.complete) seen.aborted++;
        });
      }),
    );
    const conns = countConnections(up.server);
    const { h, log } = await routerFor(up.url, { router: { requestBuffer: 1024 } });
    const client = rawSocket(
      h.running.port,
      'POST /api/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 1000000\r\n\r\n' +
        'x'.repeat(16 * 1024),
    );
    // The body streams: the upstream has the request, and bytes of it, before it ends.
    await waitFor(() => seen.requests === 1 && seen.bytes > 0);
    client.destroy();

    await waitFor(() => seen.aborted === 1 && conns.closed >= 1);
    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('client-gone');
    expect(o.status).toBe(0);
    expect(o.attempt).toBeDefined();
    expect(o.attempt!.bytesSent).toBeGreaterThan(0);
    expect(o.attempt!.bytesSent).toBeLessThan(1000000);
    expect(seen.complete).toBe(0);
    expect(isUpstreamFailure(o.kind)).toBe(false);
  });

  it('client-gone while a small body is still being buffered: no upstream connection at all', async () => {
    const echo = await upstream(startEcho());
    const conns = countConnections(echo.server);
    let staged = 0;
    const stage: Middleware = (_req, _res, next) => {
      staged++;
      next();
    };
    const { h, log } = await routerFor(echo.url, { router: { stages: () => [stage] } });
    const client = rawSocket(
      h.running.port,
      'POST /api/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 1000\r\n\r\n' +
        'x'.repeat(100),
    );
    // Past the stages, the forwarder is reading the (small) body before it takes a connection.
    await waitFor(() => staged === 1);
    client.destroy();

    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('client-gone');
    expect(o.attempt).toBeUndefined();
    expect(o.status).toBe(0);
    expect(conns.total).toBe(0);
  });

  it('client-gone while a stage waits: when it calls next(), nothing goes upstream', async () => {
    const paths: string[] = [];
    const up = await upstream(
      listen((req, res) => {
        paths.push(req.url!);
        res.end('ok');
      }),
    );
    const held = gate();
    let reached = false;
    const stage: Middleware = (req, _res, next) => {
      // An async stage (a rate limit asking Redis) that answers after the client left.
      if (req.url !== '/first') return next();
      reached = true;
      void held.promise.then(() => next());
    };
    const { h, log } = await routerFor(up.url, { router: { stages: () => [stage] } });
    const client = rawSocket(
      h.running.port,
      'GET /api/first HTTP/1.1\r\nHost: gateway.test\r\n\r\n',
    );
    await waitFor(() => reached);
    client.destroy();
    await waitFor(() => log.list.length === 1);
    expect(log.list[0]!.kind).toBe('client-gone');
    held.open();
    await held.promise;
    // A request after it, through the same pool: the upstream sees that one alone.
    const res = await fetch(`${h.url}/second`);
    expect(await res.text()).toBe('ok');
    expect(paths).toEqual(['/second']);
    expect(log.list.map((o) => o.kind)).toEqual(['client-gone', 'complete']);
  });

  it('client-gone mid-download: the client leaves after the first bytes; the upstream socket is closed', async () => {
    const up = await upstream(
      listen((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first bytes');
        const t = setInterval(() => res.write('.'), 20);
        res.once('close', () => clearInterval(t));
      }),
    );
    const conns = countConnections(up.server);
    const { h, log } = await routerFor(up.url, { service: { timeoutMs: 60_000 } });
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`${h.url}/download`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.once('error', reject);
    });

    // The gateway closed it: the upstream trickles forever otherwise.
    await waitFor(() => conns.closed >= 1);
    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('client-gone');
    expect(o.status).toBe(200);
    expect(o.attempt).toBeDefined();
    expect(o.attempt!.bytesReceived).toBeGreaterThan(0);
    expect(isUpstreamFailure(o.kind)).toBe(false);
  });

  it('stage: a stage answers 401; no upstream call', async () => {
    const echo = await upstream(startEcho());
    const conns = countConnections(echo.server);
    const deny: Middleware = (_req, res) => {
      res.statusCode = 401;
      res.end('no');
    };
    const { h, log } = await routerFor(echo.url, { router: { stages: () => [deny] } });
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(401);

    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('stage');
    expect(o.status).toBe(401);
    expect(o.attempt).toBeUndefined();
    expect(conns.total).toBe(0);
  });

  it('rejected: a body over the route limit is a 413; no upstream call', async () => {
    const echo = await upstream(startEcho());
    const conns = countConnections(echo.server);
    const { h, log } = await routerFor(echo.url, { route: { bodyLimit: 10 } });
    const res = await fetchResponse(`${h.url}/x`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'x'.repeat(100),
    });
    expect(res.status).toBe(413);

    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('rejected');
    expect(o.error?.status).toBe(413);
    expect(o.attempt).toBeUndefined();
    expect(conns.total).toBe(0);
  });
});

describe('the other upstream failures are reported once each, with their kind', () => {
  it.each<[string, OutcomeKind, (s: net.Socket) => void]>([
    ['an answer that is not HTTP', 'protocol', (s) => s.end('this is not HTTP\r\n\r\n')],
    [
      'a transfer coding other than chunked',
      'bad-status',
      (s) => s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx'),
    ],
    [
      'a 101 to a request that asked for no upgrade',
      'bad-status',
      (s) => s.end('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n'),
    ],
    [
      'a 101 without Connection: upgrade to a request that asked for none',
      'bad-status',
      (s) => s.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n'),
    ],
  ])('%s: %s, 502', async (_label, kind, answer) => {
    const up = await upstream(rawUpstream((s) => s.once('data', () => answer(s))));
    const conns = countConnections(up.server);
    const { h, log } = await routerFor(up.url);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(502);
    const o = await onlyOutcome(log, h, () => conns.closed >= 1);
    expect(o.error?.status).toBe(502);
    expect(isUpstreamFailure(o.kind)).toBe(true);
    expect(o.kind).toBe(kind);
  });

  it('dns: a target whose name does not resolve', async () => {
    const { h, log } = await routerFor('http://turnpike-test.invalid:8080');
    expect((await fetchResponse(`${h.url}/x`)).status).toBe(502);
    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('dns');
  });

  it('connect-timeout: a connection that cannot be opened', async () => {
    const hole = await blackHole();
    closers.push(() => hole.close());
    const { h, log } = await routerFor(hole.url, {
      service: { connectTimeoutMs: 200, timeoutMs: 10_000 },
    });
    expect((await fetchResponse(`${h.url}/x`)).status).toBe(504);
    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('connect-timeout');
    expect(o.error?.status).toBe(504);
  });
});

describe('listeners', () => {
  it('a listener that throws does not break the request, is logged, and the others still get the outcome', async () => {
    const echo = await upstream(startEcho());
    const { h, log, logger } = await routerFor(echo.url);
    const dispose = h.router.onOutcome(() => {
      throw new Error('listener boom');
    });
    const after: Outcome[] = [];
    h.router.onOutcome((o) => after.push(o));
    try {
      const res = await fetchResponse(`${h.url}/x`);
      expect(res.status).toBe(200);
      expect(res.clean).toBe(true);
      expect(JSON.parse(res.body.toString())).toMatchObject({ url: '/x' });
      await waitFor(() => after.length === 1);
      expect(log.list.map((o) => o.kind)).toEqual(['complete']);
      const errors = logger.entries.filter((e) => e.level === 'error');
      expect(errors).toHaveLength(1);
      expect(errors[0]!.message).toBe('outcome listener failed');
      expect(String(errors[0]!.meta?.error)).toContain('listener boom');
    } finally {
      dispose();
    }
  });

  it('dispose() stops delivery to that listener', async () => {
    const echo = await upstream(startEcho());
    const { h, log } = await routerFor(echo.url);
    const mine: Outcome[] = [];
    const dispose = h.router.onOutcome((o) => mine.push(o));
    expect((await fetchResponse(`${h.url}/one`)).status).toBe(200);
    await waitFor(() => mine.length === 1);
    dispose();
    expect((await fetchResponse(`${h.url}/two`)).status).toBe(200);
    // The recording listener still hears the second request: it has been reported.
    await waitFor(() => log.list.length === 2);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.req.url).toBe('/one');
  });

  it('with no listener, answers and failures work as usual', async () => {
    const echo = await upstream(startEcho());
    const dead = await deadPort();
    const h = await startRouter({
      services: {
        ok: { target: echo.url },
        dead: { target: `http://127.0.0.1:${dead}` },
      },
      routes: [
        { path: '/ok/**', service: 'ok' },
        { path: '/dead/**', service: 'dead' },
      ],
    });
    closers.push(() => h.close());
    const ok = await fetchResponse(`${h.url}/ok/x`);
    expect(ok.status).toBe(200);
    expect(ok.clean).toBe(true);
    expect((await fetchResponse(`${h.url}/dead/x`)).status).toBe(502);
  });
});

describe('outcome.status is the status the client got', () => {
  const deny: Middleware = (_req, res) => {
    res.statusCode = 401;
    res.end();
  };
  it.each<[string, number, () => Promise<string>, Partial<Parameters<typeof routerFor>[1]>]>([
    ['a complete response', 200, async () => (await upstream(startEcho())).url, {}],
    [
      'a stage answer',
      401,
      async () => (await upstream(startEcho())).url,
      { router: { stages: () => [deny] } },
    ],
    ['a refused target', 502, async () => `http://127.0.0.1:${await deadPort()}`, {}],
    [
      'a deadline before the head',
      504,
      async () => (await upstream(rawUpstream(() => {}))).url,
      { service: { timeoutMs: 200 } },
    ],
    [
      'a body over the limit',
      413,
      async () => (await upstream(startEcho())).url,
      { route: { bodyLimit: 1 } },
    ],
  ])('%s: %d', async (_label, status, target, options) => {
    const { h, log } = await routerFor(await target(), options);
    const res = await fetchResponse(`${h.url}/x`, { method: 'POST', body: 'body' });
    expect(res.status).toBe(status);
    const o = await onlyOutcome(log, h);
    expect(o.status).toBe(res.status);
  });

  it('503 when the target function has nothing to offer', async () => {
    const h = await startRouter({
      services: { none: { target: () => undefined } },
      routes: [{ path: '/**', service: 'none' }],
    });
    closers.push(() => h.close());
    const log = recordOutcomes(h.router);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(503);
    const o = await onlyOutcome(log, h);
    expect(o.kind).toBe('rejected');
    expect(o.status).toBe(503);
  });
});

describe('attempt.phase says how far a failed call got', () => {
  it.each<[string, string, () => Promise<string>]>([
    ['refused (no connection)', 'connecting', async () => `http://127.0.0.1:${await deadPort()}`],
    [
      'a deadline before the head (sent, no answer)',
      'sent',
      async () => (await upstream(rawUpstream((s) => s.resume()))).url,
    ],
    [
      'a body cut off (the head came)',
      'body',
      async () =>
        (
          await upstream(
            rawUpstream((s) =>
              s.once('data', () => {
                s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
                setImmediate(() => s.destroy());
              }),
            ),
          )
        ).url,
    ],
  ])('%s: %s', async (_label, phase, target) => {
    const { h, log } = await routerFor(await target(), { service: { timeoutMs: 300 } });
    await fetchResponse(`${h.url}/x`);
    const o = await onlyOutcome(log, h);
    expect(o.attempt?.phase).toBe(phase);
  });
});

describe('a slow client is not blamed on the upstream', () => {
  it('the deadline passing while a small body is still being read is not an upstream failure', async () => {
    const echo = await upstream(startEcho());
    const conns = countConnections(echo.server);
    const { h, log } = await routerFor(echo.url, { service: { timeoutMs: 300 } });
    // 10 of the 100 bytes announced, then nothing: the upstream is never called.
    const client = rawSocket(
      h.running.port,
      'POST /api/x HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 100\r\n\r\n0123456789',
    );
    closers.push(() => void client.destroy());
    await waitFor(() => log.list.length === 1);
    const o = await onlyOutcome(log, h);
    expect(conns.total).toBe(0);
    expect(o.attempt).toBeUndefined();
    expect({ kind: o.kind, upstreamFailure: isUpstreamFailure(o.kind) }).toMatchObject({
      upstreamFailure: false,
    });
  });
});
