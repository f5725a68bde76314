/**
 * Probes: regression tests for the findings of the forwarder review, written against what the
 * fixed gateway must do, before the fix (the http-proxy → undici rewrite) lands. Every test
 * talks raw TCP on both sides: a client socket to the gateway (nothing normalises the bytes
 * sent) and a recording upstream that keeps every byte it receives and answers each request
 * head with a fixed, valid keep-alive response. The assertions are on those bytes.
 *
 * Waits are events or polls with a deadline. The only timed waits are bounded absence checks
 * (`staysFalse`, 200 ms), each one proving that something did NOT happen.
 */
import type { Server } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { createGateway, type Gateway } from '@turnpike/gateway';
import type { RouteOptions, ServiceConfig } from '@turnpike/gateway';
import { configErrorOf } from './helpers/expectations';
import { parseResponses, rawClient, type RawClient, type RawResponse } from './helpers/raw';
import { startGateway, waitFor, type GatewayHarness } from './helpers/servers';
import {
  OK_RESPONSE,
  deadPort,
  recordedHeader,
  recordingUpstream,
  type RecordedConnection,
  type RecordedRequest,
  type RecordingAnswer,
  type RecordingUpstream,
} from './helpers/upstreams';

// ---- harness ------------------------------------------------------------------------------

/** Closed after each test, last opened first (gateways before their upstreams). */
const opened: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close();
});

async function upstream(
  answer?: RecordingAnswer,
  options?: { answerWhen?: 'head' | 'complete' },
): Promise<RecordingUpstream> {
  const up = await recordingUpstream(answer, options);
  opened.push(() => up.close());
  return up;
}

/**
 * The gateway of the brief, mounted at /api: one service `svc` on the upstream and the route
 * `/**` to it, with `service` / `route` / top-level `config` fields added.
 */
async function gatewayFor(
  up: { url: string },
  extra: {
    service?: Partial<ServiceConfig>;
    route?: Partial<RouteOptions>;
    config?: Record<string, unknown>;
  } = {},
): Promise<GatewayHarness> {
  const gw = await startGateway({
    services: { svc: { targets: [up.url], ...extra.service } },
    routes: [{ path: '/**', service: 'svc', ...extra.route }],
    ...extra.config,
  });
  opened.push(() => gw.close());
  return gw;
}

/** A raw client socket to `port`, destroyed after the test. */
function client(port: number, text?: string, options?: { allowHalfOpen?: boolean }): RawClient {
  const c = rawClient(port, text, options);
  opened.push(() => c.socket.destroy());
  return c;
}

/** The responses a raw client received (1xx first), and whether the server closed. */
interface Exchanged {
  responses: RawResponse[];
  /** The last (final) response, or undefined when nothing arrived. */
  final: RawResponse | undefined;
  closed: boolean;
  text: string;
}

function exchanged(c: RawClient): Exchanged {
  const responses = c.text() === '' ? [] : parseResponses(c.text());
  return { responses, final: responses[responses.length - 1], closed: c.closed, text: c.text() };
}

/**
 * Sends `text` on a new connection and waits (with a deadline) for the server to close it.
 * Never throws on the deadline: the outcome says `closed: false`, for the assertion to show.
 */
async function exchange(port: number, text: string, ms = 5000): Promise<Exchanged> {
  const c = client(port, text);
  await waitFor(() => c.closed, ms).catch(() => {});
  return exchanged(c);
}

/** A request: the lines, a blank line, then `body`. */
function request(lines: string[], body = ''): string {
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** A body as one chunk and the last chunk. */
function chunked(body: string | Buffer): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1');
  return Buffer.concat([
    Buffer.from(`${b.length.toString(16)}\r\n`),
    b,
    Buffer.from('\r\n0\r\n\r\n'),
  ]);
}

/**
 * Proves an absence: true when `happened` stays false for `ms` (a bounded wait, used only to
 * show that something did not happen; every presence is awaited with a poll or an event).
 */
async function staysFalse(happened: () => boolean, ms = 200): Promise<boolean> {
  try {
    await waitFor(happened, ms);
    return false;
  } catch {
    return true;
  }
}

/** Polls `check` until true or `ms` passes; never throws (the assertion after it shows what is). */
async function eventually(check: () => boolean, ms = 3000): Promise<void> {
  await waitFor(check, ms).catch(() => {});
}

/** `eventually` for an async condition. */
async function eventuallyAsync(check: () => Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

/** Open connections of a server, as the kernel-facing side sees them. */
function connectionsOf(server: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

/** The request line of a recorded request. */
const requestLine = (r: RecordedRequest) => r.head.split('\r\n')[0];

const HOST = 'Host: gateway.test';
const UPGRADE = [
  'Connection: Upgrade',
  'Upgrade: websocket',
  'Sec-WebSocket-Version: 13',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
];
/** The request a smuggling attempt hides in a body: it must never reach the upstream. */
const SMUGGLED = 'GET /admin HTTP/1.1\r\nHost: x\r\nX-User-Id: 1\r\n\r\n';

// ---- the harness itself --------------------------------------------------------------------

describe('harness: the recording upstream', () => {
  it('records a GET forwarded by the gateway and answers it (200 ok)', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close']),
    );
    expect({ status: res.final?.status, body: res.final?.body }).toEqual({
      status: 200,
      body: 'ok',
    });
    expect(up.requests().map(requestLine)).toEqual(['GET /x HTTP/1.1']);
  });

  it.each([
    ['Content-Length', 'Content-Length: 5\r\n\r\nhello'],
    ['chunked', `Transfer-Encoding: chunked\r\n\r\n${chunked('hello').toString('latin1')}`],
  ])('frames a %s body and reads the bytes after it as the next request', async (_l, rest) => {
    const up = await upstream();
    const c = client(
      up.port,
      `POST /one HTTP/1.1\r\nHost: u\r\n${rest}GET /two HTTP/1.1\r\nHost: u\r\n\r\n`,
    );
    await waitFor(() => up.requests().length === 2 && c.text().split('HTTP/1.1 200').length === 3);
    const [one, two] = up.requests();
    expect([requestLine(one!), one!.body.toString(), one!.complete, requestLine(two!)]).toEqual([
      'POST /one HTTP/1.1',
      'hello',
      true,
      'GET /two HTTP/1.1',
    ]);
  });
});

// ---- 1. header-count smuggling (critical) ---------------------------------------------------

describe('1. header count: a request at the limit is refused, never framed upstream', () => {
  // Node frames the body from every header line, but req.headers keeps only the first
  // server.maxHeadersCount (2000): a Content-Length or Transfer-Encoding after them frames a
  // body the gateway forwards unframed, so the upstream reads it as a second request.
  const filler = (n: number) => Array.from({ length: n }, () => 'a: 1'); // 5 bytes each: under Node's 16 KiB head limit
  const distinct = (n: number) => Array.from({ length: n }, (_, i) => `X-Filler-${i}: 1`);

  it.each<[string, string, string]>([
    ['Content-Length', `Content-Length: ${SMUGGLED.length}`, SMUGGLED],
    [
      'Transfer-Encoding: chunked',
      'Transfer-Encoding: chunked',
      chunked(SMUGGLED).toString('latin1'),
    ],
  ])(
    'a GET with 2100 filler headers, then %s framing a second request: 431, the upstream never sees it',
    async (_label, framing, body) => {
      const up = await upstream();
      const gw = await gatewayFor(up);
      const res = await exchange(
        gw.running.port,
        request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', ...filler(2100), framing], body),
      );
      // Proving an absence: the smuggled bytes may trail the response; give them 200 ms.
      await staysFalse(() => up.text().includes('/admin'));
      expect({ status: res.final?.status, upstreamSawAdmin: up.text().includes('/admin') }).toEqual(
        {
          status: 431,
          upstreamSawAdmin: false,
        },
      );
    },
  );

  it('101 header lines (default limit 100): 431, nothing upstream', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', ...distinct(99)]),
    );
    expect({ status: res.final?.status, upstreamConnections: up.connections.length }).toEqual({
      status: 431,
      upstreamConnections: 0,
    });
  });

  it('100 header lines (the default limit): forwarded, 200', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', ...distinct(98)]),
    );
    expect({ status: res.final?.status, body: res.final?.body }).toEqual({
      status: 200,
      body: 'ok',
    });
  });

  it('maxHeaderCount: 150 lets 120 header lines through', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up, { config: { maxHeaderCount: 150 } });
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', ...distinct(118)]),
    );
    expect({ status: res.final?.status, body: res.final?.body }).toEqual({
      status: 200,
      body: 'ok',
    });
  });

  it('maxHeaderCount: 150 still refuses 151 header lines (431)', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up, { config: { maxHeaderCount: 150 } });
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', ...distinct(149)]),
    );
    expect({ status: res.final?.status, upstreamConnections: up.connections.length }).toEqual({
      status: 431,
      upstreamConnections: 0,
    });
  });
});

// ---- 2. upgrade desync (high) ------------------------------------------------------------

describe('2. a declined upgrade (the upstream answers 200 and keeps the connection)', () => {
  // The upstream declines the upgrade with a plain 200 and keeps the connection, still waiting
  // for the body the framing header announced: if the gateway pools that connection, the next
  // client's request is read as that body.
  const framings = ['Content-Length: 30', 'Transfer-Encoding: chunked'];

  async function declinedUpgradeThenRequest(framing: string) {
    const up = await upstream(); // answers every head, upgrades too, with 200 ok, keep-alive
    const gw = await gatewayFor(up, { route: { websocket: true } });
    const first = await exchange(
      gw.running.port,
      request(['GET /api/first HTTP/1.1', HOST, ...UPGRADE, framing]),
    );
    const second = await exchange(
      gw.running.port,
      request(['GET /api/second HTTP/1.1', HOST, 'Connection: close']),
    );
    const upgradeConnections = up.connections.filter((c) =>
      c.requests[0]?.head.startsWith('GET /first '),
    );
    return { up, first, second, upgradeConnections };
  }

  it.each(framings)('%s on an upgrade: refused (400) or not forwarded', async (framing) => {
    const { first, upgradeConnections } = await declinedUpgradeThenRequest(framing);
    const name = framing.split(':')[0]!.toLowerCase();
    const forwarded = upgradeConnections.map((c) => recordedHeader(c.requests[0]!, name));
    // Either the gateway said 400 (and sent nothing), or what it sent has no such header.
    if (first.final?.status === 400) expect(upgradeConnections).toEqual([]);
    else expect(forwarded).toEqual(upgradeConnections.map(() => undefined));
  });

  it.each(framings)(
    '%s on an upgrade: the next request reaches the upstream on a new connection',
    async (framing) => {
      const { up, second, upgradeConnections } = await declinedUpgradeThenRequest(framing);
      const secondOn = up.connections.filter((c) =>
        c.requests.some((r) => r.head.startsWith('GET /second ')),
      );
      expect({
        secondStatus: second.final?.status,
        // each connection that carried the upgrade carried that request alone
        requestsOnUpgradeConnections: upgradeConnections.map((c) => c.requests.length),
        secondBytesOnUpgradeConnections: upgradeConnections.some((c) =>
          c.received.toString('latin1').includes('/second'),
        ),
        secondOnItsOwnConnection:
          secondOn.length === 1 && !upgradeConnections.includes(secondOn[0]!),
      }).toEqual({
        secondStatus: 200,
        requestsOnUpgradeConnections: upgradeConnections.map(() => 1),
        secondBytesOnUpgradeConnections: false,
        secondOnItsOwnConnection: true,
      });
    },
  );
  it('a declined upgrade without framing headers: its connection is not reused either', async () => {
    const up = await upstream(); // declines the upgrade with 200 ok and keeps the connection
    const gw = await gatewayFor(up, { route: { websocket: true } });
    const first = await exchange(
      gw.running.port,
      request(['GET /api/first HTTP/1.1', HOST, ...UPGRADE]),
    );
    const second = await exchange(
      gw.running.port,
      request(['GET /api/second HTTP/1.1', HOST, 'Connection: close']),
    );
    expect({
      statuses: [first.final?.status, second.final?.status],
      requestsPerConnection: up.connections.map((c) => c.requests.map(requestLine)),
    }).toEqual({
      statuses: [200, 200],
      requestsPerConnection: [['GET /first HTTP/1.1'], ['GET /second HTTP/1.1']],
    });
  });
});

// ---- 3. half-closed clients during the handshake -------------------------------------------

describe('3. a client that sends its FIN while the upgrade is pending', () => {
  /** Holds every upgrade unanswered; returns once the upstream has it and the client sent FIN. */
  async function finDuringHandshake() {
    const up = await upstream((r) =>
      recordedHeader(r, 'upgrade') !== undefined ? undefined : OK_RESPONSE,
    );
    const gw = await gatewayFor(up, { route: { websocket: true } });
    const c = client(gw.running.port, request(['GET /api/ws HTTP/1.1', HOST, ...UPGRADE]), {
      allowHalfOpen: true,
    });
    await waitFor(() => up.requests().length === 1);
    c.socket.end(); // FIN: the client will send nothing more
    return { up, gw, c };
  }

  it('the upstream connection is closed', async () => {
    const { up } = await finDuringHandshake();
    const conn = up.connections[0]!;
    await eventually(() => conn.ended || conn.closed);
    expect({ upstreamConnectionClosed: conn.ended || conn.closed }).toEqual({
      upstreamConnectionClosed: true,
    });
  });

  it('the gateway closes the client connection too (nothing stays open)', async () => {
    const { gw } = await finDuringHandshake();
    await eventuallyAsync(async () => (await connectionsOf(gw.running.server)) === 0);
    expect(await connectionsOf(gw.running.server)).toBe(0);
  });
});

// ---- 4. extra bytes after a complete response ------------------------------------------------

describe('4. bytes after a complete upstream response', () => {
  it('a 204 followed by GARBAGE: the client gets the complete 204 alone', async () => {
    const up = await upstream('HTTP/1.1 204 No Content\r\n\r\nGARBAGE');
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close']),
    );
    expect({
      status: res.final?.status,
      body: res.final?.body,
      garbage: res.text.includes('GARBAGE'),
    }).toEqual({
      status: 204,
      body: '',
      garbage: false,
    });
  });

  it('Content-Length: 2 then "okEXTRA": the client gets the 2-byte body "ok"', async () => {
    const up = await upstream('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA');
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close']),
    );
    expect({
      status: res.final?.status,
      body: res.final?.body,
      extra: res.text.includes('EXTRA'),
    }).toEqual({
      status: 200,
      body: 'ok',
      extra: false,
    });
  });

  it("excess bytes that look like a response are never read as the next request's response", async () => {
    // "Discarded" means also not left on a pooled connection: the first answer carries a
    // second, complete response after its body; the next client must not get it.
    let answered = 0;
    const up = await upstream(() =>
      answered++ === 0
        ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil'
        : OK_RESPONSE,
    );
    const gw = await gatewayFor(up);
    const first = await exchange(
      gw.running.port,
      request(['GET /api/one HTTP/1.1', HOST, 'Connection: close']),
    );
    const second = await exchange(
      gw.running.port,
      request(['GET /api/two HTTP/1.1', HOST, 'Connection: close']),
    );
    expect([first.final?.body, second.final?.status, second.final?.body]).toEqual([
      'ok',
      200,
      'ok',
    ]);
  });

  it('a 101 Switching Protocols to a plain GET: 502 problem+json, well before the deadline', async () => {
    const up = await upstream(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    const gw = await gatewayFor(up, { service: { timeoutMs: 10_000 } });
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close']),
      3000, // "promptly": a third of the service deadline
    );
    expect({
      status: res.final?.status,
      type: res.final?.headers['content-type'],
      closed: res.closed,
    }).toEqual({ status: 502, type: 'application/problem+json', closed: true });
  });
});

// ---- 5. slow uploads pin upstream sockets -----------------------------------------------------

describe('5. a small body is buffered before an upstream connection is taken', () => {
  /** Sends the head (Content-Length: 10) and 5 bytes; returns once the gateway has read them. */
  async function halfUpload() {
    const up = await upstream(undefined, { answerWhen: 'complete' });
    const gw = await gatewayFor(up);
    const sockets: Socket[] = [];
    gw.running.server.on('connection', (s: Socket) => sockets.push(s));
    const head = request([
      'POST /api/upload HTTP/1.1',
      HOST,
      'Connection: close',
      'Content-Type: text/plain',
      'Content-Length: 10',
    ]);
    const c = client(gw.running.port, `${head}12345`);
    await waitFor(() => (sockets[0]?.bytesRead ?? 0) >= Buffer.byteLength(head) + 5);
    return { up, c };
  }

  it('with 5 of 10 bytes received, the upstream has no connection and no bytes', async () => {
    const { up } = await halfUpload();
    // Proving an absence: nothing may reach the upstream within 200 ms of the gateway reading the 5 bytes.
    await staysFalse(() => up.connections.length > 0);
    expect({ connections: up.connections.length, bytes: up.text().length }).toEqual({
      connections: 0,
      bytes: 0,
    });
  });

  it('once the rest arrives, the upstream gets the whole request with Content-Length: 10', async () => {
    const { up, c } = await halfUpload();
    c.socket.write('67890');
    await waitFor(() => up.requests()[0]?.complete === true);
    await waitFor(() => c.closed);
    const r = up.requests()[0]!;
    expect({
      line: requestLine(r),
      length: recordedHeader(r, 'content-length'),
      body: r.body.toString('latin1'),
      status: exchanged(c).final?.status,
    }).toEqual({ line: 'POST /upload HTTP/1.1', length: '10', body: '1234567890', status: 200 });
  });
});

// ---- 6. a queued request keeps the path fix --------------------------------------------------

describe('6. "http:/" in a path goes upstream as checked', () => {
  it('/api/fetch/http:/x is sent as /fetch/http:/x', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up);
    await exchange(
      gw.running.port,
      request(['GET /api/fetch/http:/x HTTP/1.1', HOST, 'Connection: close']),
    );
    expect(up.requests().map(requestLine)).toEqual(['GET /fetch/http:/x HTTP/1.1']);
  });

  it('also after waiting for the one pooled socket (agent.maxSockets: 1)', async () => {
    let slow: RecordedConnection | undefined;
    const up = await upstream((r, conn) => {
      if (!r.head.startsWith('GET /slow ')) return OK_RESPONSE;
      slow = conn; // answered below, once the second request is queued
      return undefined;
    });
    const gw = await gatewayFor(up, { service: { agent: { maxSockets: 1 } } });
    let received = 0;
    gw.running.server.on('request', () => received++);
    const first = client(
      gw.running.port,
      request(['GET /api/slow HTTP/1.1', HOST, 'Connection: close']),
    );
    await waitFor(() => slow !== undefined);
    const second = client(
      gw.running.port,
      request(['GET /api/fetch/http:/x HTTP/1.1', HOST, 'Connection: close']),
    );
    await waitFor(() => received === 2); // the gateway has it: it waits for the busy socket
    expect(up.requests()).toHaveLength(1);
    slow!.socket.write(OK_RESPONSE);
    await waitFor(() => first.closed && second.closed);
    expect({ connections: up.connections.length, lines: up.requests().map(requestLine) }).toEqual({
      connections: 1,
      lines: ['GET /slow HTTP/1.1', 'GET /fetch/http:/x HTTP/1.1'],
    });
  });
});

// ---- 7. transfer codings other than chunked --------------------------------------------------

describe('7. transfer codings other than chunked', () => {
  it('a request with Transfer-Encoding: gzip, chunked: 501 problem, nothing upstream', async () => {
    const up = await upstream();
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(
        ['POST /api/x HTTP/1.1', HOST, 'Connection: close', 'Transfer-Encoding: gzip, chunked'],
        '',
      ) + chunked(gzipSync('hello')).toString('latin1'),
    );
    expect({
      status: res.final?.status,
      type: res.final?.headers['content-type'],
      upstreamConnections: up.connections.length,
    }).toEqual({ status: 501, type: 'application/problem+json', upstreamConnections: 0 });
  });

  it('an upstream response with Transfer-Encoding: gzip, chunked is not passed on as plain bytes', async () => {
    const body = gzipSync('hello');
    const up = await upstream(
      Buffer.concat([
        Buffer.from(
          'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
        ),
        chunked(body),
      ]),
    );
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close']),
    );
    const f = res.final;
    const coding = `${f?.headers['transfer-encoding'] ?? ''} ${f?.headers['content-encoding'] ?? ''}`;
    const outcome =
      f?.status === 502
        ? '502'
        : /gzip/i.test(coding)
          ? 'coding preserved'
          : `${f?.status} with ${f?.body === body.toString('latin1') ? 'the gzip bytes' : 'a body'} and no coding`;
    expect(['502', 'coding preserved']).toContain(outcome);
  });
});

// ---- 8. forwarded-header injection ------------------------------------------------------------

describe.each<[string, number | string[]]>([
  ['trustProxy: 1', 1],
  ["trustProxy: ['127.0.0.1']", ['127.0.0.1']],
])('8. forwarding headers computed from X-Forwarded-For (%s)', (_label, trustProxy) => {
  async function forwardedFor(xff: string): Promise<RecordedRequest> {
    const up = await upstream();
    const gw = await gatewayFor(up, { config: { trustProxy } });
    await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', `X-Forwarded-For: ${xff}`]),
    );
    expect(up.requests()).toHaveLength(1);
    return up.requests()[0]!;
  }

  /** The `for=` values of a Forwarded header that are not a valid address (RFC 7239 §6). */
  function invalidFor(forwarded: string): string[] {
    return forwarded
      .split(',')
      .flatMap((element) => element.split(';'))
      .map((pair) => pair.trim())
      .filter((pair) => /^for=/i.test(pair))
      .map((pair) => pair.slice(4))
      .filter((value) => {
        const v6 = /^"\[([^\]]+)\]"$/.exec(value);
        if (v6) return isIP(v6[1]!) !== 6;
        return isIP(value.replace(/^"(.*)"$/, '$1')) !== 4;
      });
  }

  const JUNK = 'a;for=9.9.9.9;host="admin"';

  it('a junk element: X-Real-IP is a valid address, not one from the junk', async () => {
    const r = await forwardedFor(JUNK);
    const realIp = recordedHeader(r, 'x-real-ip') ?? '';
    expect({ realIp, valid: isIP(realIp) !== 0 }).toEqual({
      realIp: expect.not.stringContaining('9.9.9.9') as string,
      valid: true,
    });
  });

  it('a junk element: Forwarded has no for= or host= from it, only valid addresses', async () => {
    const r = await forwardedFor(JUNK);
    const forwarded = recordedHeader(r, 'forwarded') ?? '';
    expect({
      forwarded,
      injected: /9\.9\.9\.9|admin/.test(forwarded),
      invalidFor: invalidFor(forwarded),
    }).toEqual({ forwarded: expect.any(String) as string, injected: false, invalidFor: [] });
  });

  it('an IPv6 client address is quoted in Forwarded: for="[::1]"', async () => {
    const r = await forwardedFor('::1');
    const forwarded = recordedHeader(r, 'forwarded') ?? '';
    expect(forwarded).toMatch(/(?:^|[;,]\s*)for="\[::1\]"(?:;|,|$)/);
  });
});

// ---- 9. Host not validated ---------------------------------------------------------------

describe('9. a Host that is not a host[:port]', () => {
  it.each(['user@gateway.test', 'gateway.test/path', '"gateway.test"', ''])(
    'Host: %j: 400 problem, nothing upstream',
    async (host) => {
      const up = await upstream();
      const gw = await gatewayFor(up);
      const res = await exchange(
        gw.running.port,
        request(['GET /api/x HTTP/1.1', `Host: ${host}`, 'Connection: close']),
      );
      expect({
        status: res.final?.status,
        type: res.final?.headers['content-type'],
        upstreamConnections: up.connections.length,
      }).toEqual({ status: 400, type: 'application/problem+json', upstreamConnections: 0 });
    },
  );
});

// ---- 10. hardening ---------------------------------------------------------------------------

describe('10. hardening', () => {
  it('an upstream 103 Early Hints reaches the client as a 103, then the 200', async () => {
    const up = await upstream(
      'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' + OK_RESPONSE,
    );
    const gw = await gatewayFor(up);
    const res = await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close']),
    );
    expect(res.responses.map((r) => [r.status, r.headers.link, r.body])).toEqual([
      [103, '</style.css>; rel=preload', ''],
      [200, undefined, 'ok'],
    ]);
  });

  it('an upgrade answered with a 101 for another protocol (h2c for websocket): 502, no tunnel', async () => {
    const up = await upstream(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n',
    );
    const gw = await gatewayFor(up, { route: { websocket: true } });
    const c = client(gw.running.port, request(['GET /api/ws HTTP/1.1', HOST, ...UPGRADE]));
    await eventually(() => c.text().includes('\r\n\r\n') || c.closed);
    const first = exchanged(c).responses[0];
    // No tunnel: the client gets a 502, and the upstream connection that answered 101 closes.
    await eventually(() => up.connections[0]?.closed === true);
    expect({
      status: first?.status,
      upgrade: first?.headers.upgrade,
      upstreamClosed: up.connections[0]?.closed,
    }).toEqual({ status: 502, upgrade: undefined, upstreamClosed: true });
  });

  describe('route header matchers fold "_" as identity headers do', () => {
    async function routedWith(header: string | undefined) {
      const up = await upstream();
      const gw = await gatewayFor(up, { route: { headers: { 'x-version': '2' } } });
      const lines = ['GET /api/x HTTP/1.1', HOST, 'Connection: close'];
      if (header !== undefined) lines.push(header);
      const res = await exchange(gw.running.port, request(lines));
      return { status: res.final?.status, upstreamRequests: up.requests().length };
    }

    it('x_version: 2 matches the route with headers { "x-version": "2" }', async () => {
      expect(await routedWith('x_version: 2')).toEqual({ status: 200, upstreamRequests: 1 });
    });

    it('X-Version: 2 matches it (control)', async () => {
      expect(await routedWith('X-Version: 2')).toEqual({ status: 200, upstreamRequests: 1 });
    });

    it('no X-Version does not match it: 404 (control)', async () => {
      expect(await routedWith(undefined)).toEqual({ status: 404, upstreamRequests: 0 });
    });
  });

  it.each([
    'X-Original-URL',
    'X-Rewrite-URL',
    'X-HTTP-Method-Override',
    'X_Original_URL',
    'X_Rewrite_URL',
    'X_HTTP_Method_Override',
  ])('%s is stripped by default (the upstream never receives it)', async (name) => {
    const up = await upstream();
    const gw = await gatewayFor(up);
    await exchange(
      gw.running.port,
      request(['GET /api/x HTTP/1.1', HOST, 'Connection: close', `${name}: /admin`]),
    );
    expect(up.requests()).toHaveLength(1);
    const canonical = name.toLowerCase().replace(/_/g, '-');
    const seen = up.requests()[0]!.headers.filter(([n]) => n.replace(/_/g, '-') === canonical);
    expect(seen).toEqual([]);
  });
});

// ---- 11. Expect: 100-continue and the deadline ----------------------------------------------

describe('11. Expect: 100-continue with an upstream that never answers (timeoutMs: 300)', () => {
  /** Sends the head, the body after a 100 Continue (or at once if the answer is final). */
  async function hangingContinue() {
    const up = await upstream(() => undefined); // never answers
    const gw = await gatewayFor(up, { service: { timeoutMs: 300 } });
    const c = client(
      gw.running.port,
      request([
        'POST /api/upload HTTP/1.1',
        HOST,
        'Connection: close',
        'Expect: 100-continue',
        'Content-Type: text/plain',
        'Content-Length: 5',
      ]),
    );
    await waitFor(() => c.text().includes('\r\n\r\n') || c.closed);
    if (/^HTTP\/1\.1 100 /.test(c.text())) c.socket.write('hello');
    return { up, c };
  }

  it('the client gets 504', async () => {
    const { c } = await hangingContinue();
    await eventually(() => c.closed);
    expect({ status: exchanged(c).final?.status, closed: c.closed }).toEqual({
      status: 504,
      closed: true,
    });
  });

  it('the upstream sees its connection closed', async () => {
    const { up } = await hangingContinue();
    await waitFor(() => up.connections.length === 1);
    const conn = up.connections[0]!;
    await eventually(() => conn.ended || conn.closed);
    expect({ closedOrEnded: conn.ended || conn.closed }).toEqual({ closedOrEnded: true });
  });
});

// ---- responses the gateway writes itself ----------------------------------------------------

describe('every response the gateway writes itself carries X-Content-Type-Options: nosniff', () => {
  it.each<[number, string]>([
    [404, 'GET /api/nowhere HTTP/1.1'],
    [405, 'POST /api/known HTTP/1.1'],
    [400, 'GET /api/a%2fb HTTP/1.1'],
    [502, 'GET /api/dead/x HTTP/1.1'],
  ])('%d (%s)', async (status, line) => {
    const up = await upstream();
    const port = await deadPort();
    const gw = await startGateway({
      services: { svc: { targets: [up.url] }, dead: { targets: [`http://127.0.0.1:${port}`] } },
      routes: [
        { path: '/known', service: 'svc', methods: ['GET'] },
        { path: '/dead/**', service: 'dead' },
      ],
    });
    opened.push(() => gw.close());
    const res = await exchange(
      gw.running.port,
      request([line, HOST, 'Connection: close', 'Content-Length: 0']),
    );
    expect({
      status: res.final?.status,
      nosniff: res.final?.headers['x-content-type-options'],
    }).toEqual({
      status,
      nosniff: 'nosniff',
    });
  });
});

// ---- config: methods Node does not know ---------------------------------------------------

describe('config: route methods', () => {
  function gatewayWithMethods(methods: string[]): () => Gateway {
    return () => {
      const gateway = createGateway({
        services: { svc: { targets: ['http://127.0.0.1:1'] } },
        routes: [{ path: '/x', service: 'svc', methods }],
      });
      opened.push(() => gateway.close());
      return gateway;
    };
  }

  it("methods: ['FETCH'] (not a method Node knows) is refused, naming routes[0].methods[0]", () => {
    const error = configErrorOf(gatewayWithMethods(['FETCH']));
    expect(error.path).toBe('routes[0].methods[0]');
  });

  it("methods: ['PURGE'] (a method Node knows) is accepted (control)", () => {
    expect(gatewayWithMethods(['PURGE'])).not.toThrow();
  });
});
