import crypto from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import {
  tapResponse,
  type Middleware,
  type RouteOptions,
  type TapSink,
  type TappedHead,
} from '@turnpike/router';
import {
  closersAfterEach,
  countConnections,
  fetchResponse,
  recordOutcomes,
  startRouter,
  type RouterHarness,
} from './helpers/outcomes';
import { get } from './helpers/raw';
import { listen, waitFor, type Running } from './helpers/servers';
import { rawUpstream } from './helpers/upstreams';

const closers = closersAfterEach();

/** What a sink saw: the heads, each write, and each end. */
interface Tapped {
  heads: TappedHead[];
  writes: Buffer[];
  ends: boolean[];
  /** Writes that came after an end. */
  writesAfterEnd: number;
  body(): Buffer;
}

/** A tap that records what it sees; `maxBytes` for its sink, or undefined to return no sink. */
function recordingTap(maxBytes: number | undefined): {
  tapped: Tapped;
  tap: (head: TappedHead, req: IncomingMessage) => TapSink | undefined;
} {
  const tapped: Tapped = {
    heads: [],
    writes: [],
    ends: [],
    writesAfterEnd: 0,
    body: () => Buffer.concat(tapped.writes),
  };
  return {
    tapped,
    tap(head) {
      tapped.heads.push(head);
      if (maxBytes === undefined) return undefined;
      return {
        maxBytes,
        write(chunk) {
          if (tapped.ends.length > 0) tapped.writesAfterEnd++;
          // A copy: the sink may keep what it is given.
          tapped.writes.push(Buffer.from(chunk));
        },
        end(complete) {
          tapped.ends.push(complete);
        },
      };
    },
  };
}

/** A router whose one route's stage taps every response with `tap` (and sets `req.id`). */
async function tappedRouter(
  target: string,
  tap: Parameters<typeof tapResponse>[1],
  route: Partial<RouteOptions> = {},
  host: 'express' | 'node' = 'express',
): Promise<RouterHarness> {
  const stage: Middleware = (req, _res, next) => {
    (req as IncomingMessage & { id?: string }).id = 'rid-tap-1';
    expect(tapResponse(req, tap)).toBe(true);
    next();
  };
  const h = await startRouter(
    {
      services: { svc: { target, timeoutMs: 10_000 } },
      routes: [{ path: '/**', service: 'svc', ...route }],
      stages: () => [stage],
    },
    host,
  );
  closers.push(() => h.close());
  return h;
}

async function upstream(started: Promise<Running>): Promise<Running> {
  const up = await started;
  closers.push(() => up.close());
  return up;
}

/** An upstream answering `body` in chunks of `chunk` bytes, one per turn of the event loop. */
function chunkedUpstream(body: Buffer, chunk: number): Promise<Running> {
  return listen((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
    });
    let at = 0;
    const next = (): void => {
      if (at >= body.length) return void res.end();
      const piece = body.subarray(at, at + chunk);
      at += piece.length;
      if (res.write(piece)) setImmediate(next);
      else res.once('drain', next);
    };
    next();
  });
}

const cutOff = (): Promise<Running> =>
  rawUpstream((s) =>
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
      setImmediate(() => s.destroy());
    }),
  );

describe('tapResponse: the sink', () => {
  it('gets the exact body bytes and end(true) for a complete response', async () => {
    const body = crypto.randomBytes(200_000);
    const up = await upstream(chunkedUpstream(body, 16_384));
    const { tapped, tap } = recordingTap(10_000_000);
    const h = await tappedRouter(up.url, tap);
    const log = recordOutcomes(h.router);

    const res = await fetchResponse(`${h.url}/blob`);
    expect(res.status).toBe(200);
    expect(res.clean).toBe(true);
    expect(res.body.equals(body)).toBe(true);
    await waitFor(() => log.list.length === 1);
    expect(log.list[0]!.kind).toBe('complete');
    expect(tapped.heads).toHaveLength(1);
    expect(tapped.ends).toEqual([true]);
    expect(tapped.body().equals(body)).toBe(true);
    expect(tapped.writesAfterEnd).toBe(0);
  });

  it('gets end(false) for a response cut off mid-body', async () => {
    const up = await upstream(cutOff());
    const { tapped, tap } = recordingTap(1_000_000);
    const h = await tappedRouter(up.url, tap);

    const res = await fetchResponse(`${h.url}/x`);
    expect(res.clean).toBe(false);
    await waitFor(() => tapped.ends.length > 0);
    await h.close();
    expect(tapped.ends).toEqual([false]);
    expect(tapped.body().toString()).toBe('0123456789');
  });

  it('gets end(false) when the client leaves mid-body', async () => {
    const up = await upstream(
      listen((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first');
        const t = setInterval(() => res.write('.'), 20);
        res.once('close', () => clearInterval(t));
      }),
    );
    const { tapped, tap } = recordingTap(1_000_000);
    const h = await tappedRouter(up.url, tap);
    await new Promise<void>((resolve) => {
      const req = http.get(`${h.url}/x`, { agent: false }, (res) =>
        res.once('data', () => {
          req.destroy();
          resolve();
        }),
      );
      req.on('error', () => {});
    });
    await waitFor(() => tapped.ends.length > 0);
    await h.close();
    expect(tapped.ends).toEqual([false]);
    expect(tapped.writesAfterEnd).toBe(0);
  });

  it('past maxBytes gets end(false) and no more writes, while the client gets the whole body', async () => {
    const body = crypto.randomBytes(100_000);
    const up = await upstream(chunkedUpstream(body, 4096));
    const { tapped, tap } = recordingTap(10_000);
    const h = await tappedRouter(up.url, tap);

    const res = await fetchResponse(`${h.url}/blob`);
    expect(res.clean).toBe(true);
    expect(res.body.equals(body)).toBe(true);
    await waitFor(() => tapped.ends.length > 0);
    await h.close();
    expect(tapped.ends).toEqual([false]);
    expect(tapped.writesAfterEnd).toBe(0);
    const got = tapped.body();
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThanOrEqual(10_000);
    expect(got.equals(body.subarray(0, got.length))).toBe(true);
  });

  it('takes a body of exactly maxBytes whole: end(true)', async () => {
    const body = crypto.randomBytes(12_288);
    const up = await upstream(chunkedUpstream(body, 4096));
    const { tapped, tap } = recordingTap(body.length);
    const h = await tappedRouter(up.url, tap);

    const res = await fetchResponse(`${h.url}/blob`);
    expect(res.body.equals(body)).toBe(true);
    await waitFor(() => tapped.ends.length > 0);
    await h.close();
    expect(tapped.ends).toEqual([true]);
    expect(tapped.body().equals(body)).toBe(true);
  });
});

describe('tapResponse: the head', () => {
  it('has the status and the headers the client got (hop-by-hop gone, transform applied), not X-Request-ID', async () => {
    const up = await upstream(
      rawUpstream((s) =>
        s.once('data', () =>
          s.write(
            [
              'HTTP/1.1 201 Created',
              'Date: Wed, 02 Dec 2026 15:00:00 GMT',
              'Content-Type: text/plain',
              'Content-Length: 5',
              'Connection: keep-alive, X-Hop',
              'Keep-Alive: timeout=5',
              'X-Hop: hop-only',
              'X-Request-ID: upstream-id',
              'X-Drop: dropped',
              'X-Keep: k1',
              'Set-Cookie: a=1',
              'Set-Cookie: b=2',
              '',
              'hello',
            ].join('\r\n'),
          ),
        ),
      ),
    );
    const { tapped, tap } = recordingTap(1000);
    // On a bare node:http server: only the router writes headers (Express adds X-Powered-By
    // with setHeader() before the head, which the tap does not see).
    const h = await tappedRouter(
      up.url,
      tap,
      { responseHeaders: { remove: ['x-drop'], set: { 'x-set': 'set' }, add: { 'x-keep': 'k2' } } },
      'node',
    );

    const res = await get(h.running.port, '/api/x');
    expect(res.status).toBe(201);
    expect(res.body).toBe('hello');
    expect(tapped.heads).toHaveLength(1);
    const head = tapped.heads[0]!;
    expect(head.status).toBe(201);

    // The tap's list, one line per value, as the client's lines are.
    const tappedLines: string[] = [];
    for (let i = 0; i < head.headers.length; i += 2) {
      const name = (head.headers[i] as string).toLowerCase();
      const value = head.headers[i + 1]!;
      for (const v of typeof value === 'string' ? [value] : value)
        tappedLines.push(`${name}: ${v}`);
    }
    // The client's lines, less the ones of its own hop and its request id.
    const own = new Set(['connection', 'keep-alive', 'transfer-encoding', 'x-request-id']);
    const clientLines = res.headerLines.filter(([n]) => !own.has(n)).map(([n, v]) => `${n}: ${v}`);
    expect(tappedLines.sort()).toEqual(clientLines.sort());

    // What that means, spelled out.
    expect(res.headers['x-request-id']).toBe('rid-tap-1');
    expect(tappedLines.some((l) => l.startsWith('x-request-id:'))).toBe(false);
    expect(tappedLines).toEqual(
      expect.arrayContaining(['x-keep: k1', 'x-keep: k2', 'x-set: set', 'set-cookie: a=1']),
    );
    for (const gone of ['x-hop', 'keep-alive', 'connection', 'x-drop']) {
      expect(tappedLines.some((l) => l.startsWith(`${gone}:`))).toBe(false);
    }
  });

  it('a tap returning undefined is called once and sees nothing more; the client is unaffected', async () => {
    const body = crypto.randomBytes(50_000);
    const up = await upstream(chunkedUpstream(body, 4096));
    const calls: TappedHead[] = [];
    const h = await tappedRouter(up.url, (head) => {
      calls.push(head);
      return undefined;
    });
    const log = recordOutcomes(h.router);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.clean).toBe(true);
    expect(res.body.equals(body)).toBe(true);
    await waitFor(() => log.list.length === 1);
    expect(log.list[0]!.kind).toBe('complete');
    expect(calls).toHaveLength(1);
  });

  it('is not called when the upstream fails before a head', async () => {
    const up = await upstream(rawUpstream((s) => s.once('data', () => s.resetAndDestroy())));
    const conns = countConnections(up.server);
    const { tapped, tap } = recordingTap(1000);
    const h = await tappedRouter(up.url, tap);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(502);
    await waitFor(() => conns.closed >= 1);
    await h.close();
    expect(tapped.heads).toHaveLength(0);
    expect(tapped.ends).toHaveLength(0);
  });
});

it('tapResponse is false for a request the router is not handling', async () => {
  let answer: boolean | undefined;
  const server = await listen((req, res) => {
    answer = tapResponse(req, () => undefined);
    res.end();
  });
  closers.push(() => server.close());
  await fetchResponse(server.url);
  expect(answer).toBe(false);
});
