import http, {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { isConfigError } from '@turnpike/core';
import {
  HOP_BY_HOP,
  compileTransform,
  compileTrust,
  createHygiene,
  hasDuplicateHost,
  responseHeaders,
  spellings,
  transformRequest,
  validHost,
} from '../src/headers';
import { DEFAULTS } from '../src/options';
import type { TrustProxy } from '../src/types';
import { closedAfterEach } from '../../../test/helpers/expectations';

// ---- a real server on port 0 -------------------------------------------------------------------

const servers = closedAfterEach();

/**
 * Starts a server on 127.0.0.1, port 0, that hands the first request it receives (a plain one
 * or an upgrade) to `inspect`, and resolves to the port and what `inspect` returned.
 */
async function serveOnce<T>(
  inspect: (req: IncomingMessage, upgrade: boolean) => T,
): Promise<{ port: number; result: Promise<T> }> {
  let settle: (value: T) => void = () => {};
  let fail: (err: unknown) => void = () => {};
  const result = new Promise<T>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  const run = (req: IncomingMessage, upgrade: boolean) => {
    try {
      settle(inspect(req, upgrade));
    } catch (err) {
      fail(err);
    }
  };
  const server = http.createServer((req, res) => {
    run(req, false);
    res.end();
  });
  server.on('upgrade', (req: IncomingMessage, socket: net.Socket) => {
    run(req, true);
    socket.destroy();
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, result };
}

/** Sends a request with `headers` through the node:http client. */
function send(port: number, headers: OutgoingHttpHeaders): void {
  const req = http.request({ host: '127.0.0.1', port, path: '/', agent: false, headers }, (res) =>
    res.resume(),
  );
  req.on('error', () => {});
  req.end();
}

/** Sends raw bytes, for requests the node:http client will not produce. */
function sendRaw(port: number, head: string): void {
  const socket = net.connect(port, '127.0.0.1', () => socket.write(head));
  socket.on('error', () => {});
  socket.on('data', () => socket.end());
}

interface Hygienic {
  headers: IncomingHttpHeaders;
  port: number;
}

type HygieneOptions = { trustProxy?: TrustProxy; identityHeaders?: readonly string[] };

/**
 * The request headers after hygiene ran on a real request that carried `headers`: an object
 * sent through the node:http client, or raw header lines sent on a socket.
 */
async function afterHygiene(
  headers: OutgoingHttpHeaders | string,
  options: HygieneOptions = {},
): Promise<Hygienic> {
  const hygiene = createHygiene({
    trustProxy: options.trustProxy ?? false,
    identityHeaders: options.identityHeaders ?? DEFAULTS.identityHeaders,
  });
  const { port, result } = await serveOnce((req, upgrade) => {
    hygiene(req, upgrade);
    return { ...req.headers };
  });
  if (typeof headers === 'string') {
    sendRaw(port, `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${headers}\r\n`);
  } else {
    send(port, headers);
  }
  return { headers: await result, port };
}

// ---- spellings ---------------------------------------------------------------------------------

describe('spellings', () => {
  it('includes x_user_id among the spellings of x-user-id', () => {
    expect(spellings('x-user-id')).toContain('x_user_id');
  });

  it('includes x-user_id among the spellings of x-user-id', () => {
    expect(spellings('x-user-id')).toContain('x-user_id');
  });

  it('gives every mix of "-" and "_" for x-user-id, once each', () => {
    expect([...spellings('x-user-id')].sort()).toEqual(
      ['x-user-id', 'x-user_id', 'x_user-id', 'x_user_id'].sort(),
    );
  });

  it('gives the same spellings for an underscore, mixed-case name', () => {
    expect([...spellings('X_User-ID')].sort()).toEqual([...spellings('x-user-id')].sort());
  });

  it('gives a name without separators alone, in lower case', () => {
    expect(spellings('Authorization')).toEqual(['authorization']);
  });

  it('includes both uniform spellings of a name with many separators', () => {
    const out = spellings('a-b-c-d-e-f-g-h-i');
    expect(out).toContain('a-b-c-d-e-f-g-h-i');
    expect(out).toContain('a_b_c_d_e_f_g_h_i');
  });

  it('gives only spellings of the name itself for a name with many separators', () => {
    const name = 'a-b-c-d-e-f-g-h-i';
    const notSpellings = spellings(name).filter((s) => s.replace(/_/g, '-') !== name);
    expect(notSpellings).toEqual([]);
  });
});

// ---- createHygiene -----------------------------------------------------------------------------

describe('createHygiene without trusted proxies', () => {
  it('removes an X-Request-ID sent with underscores, keeping the one spelled with dashes', async () => {
    const { headers } = await afterHygiene('X_Request_ID: smuggled\r\nX-Request-ID: checked\r\n');
    expect(headers['x_request_id']).toBeUndefined();
    expect(headers['x-request-id']).toBe('checked');
  });

  it('replaces the client’s X-Forwarded-For with the socket address', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-For': '6.6.6.6' });
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('replaces the client’s X-Forwarded-Proto with the connection’s protocol', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-Proto': 'https' });
    expect(headers['x-forwarded-proto']).toBe('http');
  });

  it('replaces the client’s X-Forwarded-Host with the Host header', async () => {
    const { headers, port } = await afterHygiene({ 'X-Forwarded-Host': 'evil.test' });
    expect(headers['x-forwarded-host']).toBe(`127.0.0.1:${port}`);
  });

  test.each(['X-Forwarded-Port', 'X-Forwarded-Prefix', 'X-Forwarded-Server', 'X-Forwarded-Ssl'])(
    'removes the client’s %s',
    async (name) => {
      const { headers } = await afterHygiene({ [name]: 'spoofed' });
      expect(headers).not.toHaveProperty(name.toLowerCase());
    },
  );

  test.each(['x_forwarded_for', 'x_forwarded-for', 'x-forwarded_for', 'x_forwarded_host'])(
    'removes the underscore spelling %s',
    async (name) => {
      const { headers } = await afterHygiene({ [name]: '6.6.6.6' });
      expect(headers).not.toHaveProperty(name);
    },
  );

  it('replaces the client’s Forwarded with what the gateway saw', async () => {
    const { headers, port } = await afterHygiene({ Forwarded: 'for=6.6.6.6;proto=https' });
    expect(headers.forwarded).toBe(`for=127.0.0.1;host="127.0.0.1:${port}";proto=http`);
  });

  it('replaces the client’s X-Real-IP with the socket address', async () => {
    const { headers } = await afterHygiene({ 'X-Real-IP': '6.6.6.6' });
    expect(headers['x-real-ip']).toBe('127.0.0.1');
  });

  test.each(['x_real_ip', 'x-real_ip', 'x_real-ip'])(
    'removes the client’s X-Real-IP spelled %s',
    async (name) => {
      const { headers } = await afterHygiene({ [name]: '6.6.6.6' });
      expect(headers).not.toHaveProperty(name);
    },
  );

  test.each(
    DEFAULTS.identityHeaders.flatMap((name) => spellings(name).map((s) => [name, s] as const)),
  )('removes the identity header %s spelled %s', async (_name, spelling) => {
    const { headers } = await afterHygiene({ [spelling]: 'admin' });
    expect(headers).not.toHaveProperty(spelling);
  });

  it('removes an identity header whatever the case the client sent', async () => {
    const { headers } = await afterHygiene({ 'X-USER-ID': 'admin' });
    expect(headers).not.toHaveProperty('x-user-id');
  });

  it('removes every spelling of a configured identity header', async () => {
    const { headers } = await afterHygiene(
      { 'x-tenant-id': 'a', x_tenant_id: 'b', 'x-tenant_id': 'c', 'x_tenant-id': 'd' },
      { identityHeaders: ['x-tenant-id'] },
    );
    expect(Object.keys(headers).filter((k) => k.includes('tenant'))).toEqual([]);
  });

  it('keeps a default identity header when the configured list does not name it', async () => {
    const { headers } = await afterHygiene(
      { 'x-user-id': 'u1' },
      { identityHeaders: ['x-tenant-id'] },
    );
    expect(headers['x-user-id']).toBe('u1');
  });

  test.each([
    ['Keep-Alive', 'timeout=5'],
    ['TE', 'trailers'],
    ['Trailer', 'Expires'],
    ['Proxy-Authorization', 'Basic Zm9vOmJhcg=='],
    ['Proxy-Connection', 'keep-alive'],
    ['Upgrade', 'websocket'],
    ['Expect', '100-continue'],
  ])('removes the hop-by-hop header %s', async (name, value) => {
    const { headers } = await afterHygiene(`${name}: ${value}\r\n`);
    expect(headers).not.toHaveProperty(name.toLowerCase());
  });

  it('removes the headers named in Connection', async () => {
    const { headers } = await afterHygiene({
      Connection: 'close, X-Internal-Token',
      'X-Internal-Token': 'secret',
    });
    expect(headers).not.toHaveProperty('x-internal-token');
  });

  it('does not remove Host when Connection names it', async () => {
    const { headers, port } = await afterHygiene({ Connection: 'host' });
    expect(headers.host).toBe(`127.0.0.1:${port}`);
  });

  it('keeps end-to-end headers', async () => {
    const { headers } = await afterHygiene({
      Authorization: 'Bearer t',
      Accept: 'application/json',
      'X-Custom': '1',
    });
    expect([headers.authorization, headers.accept, headers['x-custom']]).toEqual([
      'Bearer t',
      'application/json',
      '1',
    ]);
  });

  it('keeps Connection and Upgrade on a WebSocket upgrade', async () => {
    const { headers } = await afterHygiene({
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version': '13',
    });
    expect([headers.connection, headers.upgrade]).toEqual(['upgrade', 'websocket']);
  });

  it('treats trustProxy 0 as no trusted proxy', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-For': '6.6.6.6' }, { trustProxy: 0 });
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
  });
});

describe('createHygiene with trustProxy 1', () => {
  it('keeps the client’s X-Forwarded-For entry before the socket address', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-For': '203.0.113.9' }, { trustProxy: 1 });
    expect(headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
  });

  it('keeps only the entry the trusted proxy added', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-For': '10.6.6.6, 203.0.113.9' },
      { trustProxy: 1 },
    );
    expect(headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
  });

  it('sets X-Real-IP to the client the trusted proxy saw', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-For': '10.6.6.6, 203.0.113.9' },
      { trustProxy: 1 },
    );
    expect(headers['x-real-ip']).toBe('203.0.113.9');
  });

  it('takes X-Forwarded-Proto from the trusted proxy', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-Proto': 'https' }, { trustProxy: 1 });
    expect(headers['x-forwarded-proto']).toBe('https');
  });

  it('ignores an X-Forwarded-Proto that is not http or https', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-Proto': 'gopher' }, { trustProxy: 1 });
    expect(headers['x-forwarded-proto']).toBe('http');
  });

  it('takes X-Forwarded-Host from the trusted proxy', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-Host': 'public.example.com' },
      { trustProxy: 1 },
    );
    expect(headers['x-forwarded-host']).toBe('public.example.com');
  });

  it('builds Forwarded from the trusted values', async () => {
    const { headers } = await afterHygiene(
      {
        'X-Forwarded-For': '203.0.113.9',
        'X-Forwarded-Proto': 'https',
        'X-Forwarded-Host': 'public.example.com',
      },
      { trustProxy: 1 },
    );
    expect(headers.forwarded).toBe('for=203.0.113.9;host="public.example.com";proto=https');
  });

  it('quotes an IPv6 client in Forwarded', async () => {
    const { headers } = await afterHygiene({ 'X-Forwarded-For': '2001:db8::1' }, { trustProxy: 1 });
    expect(headers.forwarded).toMatch(/^for="\[2001:db8::1\]";/);
  });

  it('still removes identity headers', async () => {
    const { headers } = await afterHygiene({ 'x-user-id': 'admin' }, { trustProxy: 1 });
    expect(headers).not.toHaveProperty('x-user-id');
  });
});

describe('createHygiene with trustProxy 2', () => {
  it('keeps two X-Forwarded-For entries before the socket address', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-For': '10.6.6.6, 198.51.100.1, 203.0.113.9' },
      { trustProxy: 2 },
    );
    expect(headers['x-forwarded-for']).toBe('198.51.100.1, 203.0.113.9, 127.0.0.1');
  });
});

describe('createHygiene with trustProxy as a CIDR list', () => {
  it('keeps the entries added by trusted addresses', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-For': '198.51.100.7, 127.0.0.9' },
      { trustProxy: ['127.0.0.0/8'] },
    );
    expect(headers['x-forwarded-for']).toBe('198.51.100.7, 127.0.0.9, 127.0.0.1');
  });

  it('stops at the first untrusted address', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-For': '10.6.6.6, 198.51.100.7, 127.0.0.9' },
      { trustProxy: ['127.0.0.0/8'] },
    );
    expect(headers['x-real-ip']).toBe('198.51.100.7');
  });

  it('takes X-Forwarded-Proto when the socket address is trusted', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-Proto': 'https' },
      { trustProxy: ['127.0.0.1'] },
    );
    expect(headers['x-forwarded-proto']).toBe('https');
  });

  it('ignores X-Forwarded-For when the socket address is not trusted', async () => {
    const { headers } = await afterHygiene(
      { 'X-Forwarded-For': '198.51.100.7' },
      { trustProxy: ['10.0.0.0/8'] },
    );
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('ignores X-Forwarded-Proto and -Host when the socket address is not trusted', async () => {
    const { headers, port } = await afterHygiene(
      { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'evil.test' },
      { trustProxy: ['10.0.0.0/8'] },
    );
    expect([headers['x-forwarded-proto'], headers['x-forwarded-host']]).toEqual([
      'http',
      `127.0.0.1:${port}`,
    ]);
  });
});

describe('compileTrust', () => {
  it('trusts nobody for false', () => {
    expect(compileTrust(false)).toBeUndefined();
  });

  it('trusts nobody for 0', () => {
    expect(compileTrust(0)).toBeUndefined();
  });

  it('trusts the first n hops for a number', () => {
    const trust = compileTrust(2)!;
    expect([0, 1, 2].map((i) => trust('1.2.3.4', i))).toEqual([true, true, false]);
  });

  it('trusts the addresses of a CIDR list', () => {
    const trust = compileTrust(['10.0.0.0/8', '192.168.1.1'])!;
    expect(['10.1.2.3', '192.168.1.1', '192.168.1.2'].map((a) => trust(a, 0))).toEqual([
      true,
      true,
      false,
    ]);
  });

  it('refuses a list entry that is not an address or CIDR, naming trustProxy', () => {
    let error: unknown;
    try {
      compileTrust(['10.0.0.0/8', 'not-an-ip']);
    } catch (err) {
      error = err;
    }
    expect(isConfigError(error)).toBe(true);
    expect((error as Error).message).toContain('trustProxy');
  });
});

// ---- hasDuplicateHost --------------------------------------------------------------------------

describe('hasDuplicateHost', () => {
  async function duplicateHost(head: string): Promise<boolean> {
    const { port, result } = await serveOnce((req) => hasDuplicateHost(req));
    sendRaw(port, head);
    return result;
  }

  it('is false for one Host header', async () => {
    expect(await duplicateHost('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n')).toBe(false);
  });

  it('is true for two Host headers', async () => {
    expect(await duplicateHost('GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n')).toBe(
      true,
    );
  });

  it('is true for two Host headers spelled in different cases', async () => {
    expect(await duplicateHost('GET / HTTP/1.1\r\nHost: a.test\r\nhOST: a.test\r\n\r\n')).toBe(
      true,
    );
  });

  it('is false for an HTTP/1.0 request without Host', async () => {
    expect(await duplicateHost('GET / HTTP/1.0\r\nX-Host: a.test\r\n\r\n')).toBe(false);
  });
});

// ---- compileTransform, transformRequest and responseHeaders ------------------------------------

describe('compileTransform', () => {
  it('gives undefined for no transform', () => {
    expect(compileTransform(undefined)).toBeUndefined();
  });

  it('gives undefined for a transform that does nothing', () => {
    expect(compileTransform({ remove: [], set: {}, add: {} })).toBeUndefined();
  });

  it('lower-cases the names it removes', () => {
    expect([...compileTransform({ remove: ['X-Debug'] })!.drop]).toEqual(['x-debug']);
  });

  it('drops the names it sets, lower-cased', () => {
    const t = compileTransform({ set: { 'X-Env': 'prod' } })!;
    expect([...t.drop]).toEqual(['x-env']);
    expect(t.set).toEqual([['x-env', 'prod']]);
  });

  it('does not drop the names it adds', () => {
    const t = compileTransform({ add: { Via: '1.1 turnpike' } })!;
    expect([...t.drop]).toEqual([]);
    expect(t.add).toEqual([['via', '1.1 turnpike']]);
  });
});

describe('transformRequest', () => {
  it('removes a header named in remove, whatever its case in the config', () => {
    const h: IncomingHttpHeaders = { 'x-debug': '1', accept: '*/*' };
    transformRequest(h, compileTransform({ remove: ['X-Debug'] })!);
    expect(h).toEqual({ accept: '*/*' });
  });

  it('replaces the value of a header named in set', () => {
    const h: IncomingHttpHeaders = { 'x-env': 'dev' };
    transformRequest(h, compileTransform({ set: { 'X-Env': 'prod' } })!);
    expect(h['x-env']).toBe('prod');
  });

  it('appends a value named in add to the existing one', () => {
    const h: IncomingHttpHeaders = { via: '1.1 edge' };
    transformRequest(h, compileTransform({ add: { Via: '1.1 turnpike' } })!);
    expect(h.via).toBe('1.1 edge, 1.1 turnpike');
  });

  it('adds a header named in add when it is missing', () => {
    const h: IncomingHttpHeaders = {};
    transformRequest(h, compileTransform({ add: { via: '1.1 turnpike' } })!);
    expect(h.via).toBe('1.1 turnpike');
  });
});

describe('responseHeaders', () => {
  test.each([
    'Connection',
    'Keep-Alive',
    'Proxy-Connection',
    'TE',
    'Trailer',
    'Upgrade',
    'Proxy-Authorization',
    'Proxy-Authenticate',
    'Transfer-Encoding',
    'HTTP2-Settings',
  ])('removes the hop-by-hop header %s', (name) => {
    const value = name === 'Connection' ? 'keep-alive' : 'x';
    expect(responseHeaders([name, value, 'Content-Type', 'text/plain'], undefined)).toEqual([
      'Content-Type',
      'text/plain',
    ]);
  });

  it('covers every name of HOP_BY_HOP', () => {
    expect([...HOP_BY_HOP].sort()).toEqual(
      [
        'connection',
        'keep-alive',
        'proxy-connection',
        'te',
        'trailer',
        'upgrade',
        'proxy-authorization',
        'proxy-authenticate',
        'transfer-encoding',
        'http2-settings',
      ].sort(),
    );
  });

  it('removes the headers named in Connection', () => {
    const raw = ['Connection', 'close, X-Backend-Debug', 'X-Backend-Debug', 'db=3', 'ETag', '"1"'];
    expect(responseHeaders(raw, undefined)).toEqual(['ETag', '"1"']);
  });

  it('removes headers named in Connection whatever their case', () => {
    const raw = ['connection', 'X-BACKEND-DEBUG', 'x-backend-debug', 'db=3', 'ETag', '"1"'];
    expect(responseHeaders(raw, undefined)).toEqual(['ETag', '"1"']);
  });

  it('removes headers named in any of several Connection headers', () => {
    const raw = ['Connection', 'x-a', 'Connection', 'x-b', 'X-A', '1', 'X-B', '2', 'X-C', '3'];
    expect(responseHeaders(raw, undefined)).toEqual(['X-C', '3']);
  });

  it('keeps repeated Set-Cookie headers, in order, as one name with every value', () => {
    const raw = ['Set-Cookie', 'a=1; Path=/', 'Content-Type', 'text/html', 'set-cookie', 'b=2'];
    expect(responseHeaders(raw, undefined)).toEqual([
      'Set-Cookie',
      ['a=1; Path=/', 'b=2'],
      'Content-Type',
      'text/html',
    ]);
  });

  it('gives the gateway’s request id in place of the upstream’s', () => {
    expect(responseHeaders(['X-Request-Id', 'upstream', 'ETag', '"1"'], undefined, 'gw-1')).toEqual(
      ['ETag', '"1"', 'X-Request-ID', 'gw-1'],
    );
  });

  it('keeps the upstream’s spelling of header names', () => {
    expect(responseHeaders(['X-ReQuEsT-Thing', 'v'], undefined)).toEqual(['X-ReQuEsT-Thing', 'v']);
  });

  it('removes headers named in the transform’s remove, whatever their case', () => {
    const t = compileTransform({ remove: ['server'] });
    expect(responseHeaders(['Server', 'nginx/1.2', 'ETag', '"1"'], t)).toEqual(['ETag', '"1"']);
  });

  it('replaces every value of a header named in the transform’s set', () => {
    const t = compileTransform({ set: { 'Cache-Control': 'no-store' } });
    const raw = ['Cache-Control', 'max-age=60', 'cache-control', 'public', 'ETag', '"1"'];
    expect(responseHeaders(raw, t)).toEqual(['ETag', '"1"', 'cache-control', 'no-store']);
  });

  it('appends a header named in the transform’s add, keeping the upstream’s', () => {
    const t = compileTransform({ add: { Vary: 'Origin' } });
    expect(responseHeaders(['Vary', 'Accept'], t)).toEqual(['Vary', ['Accept', 'Origin']]);
  });

  it('still removes hop-by-hop headers when a transform is given', () => {
    const t = compileTransform({ add: { 'X-A': '1' } });
    expect(responseHeaders(['Keep-Alive', 'timeout=5'], t)).toEqual(['x-a', '1']);
  });
});

describe('validHost', () => {
  it.each([
    'gateway.test',
    'gateway.test:8080',
    'gateway.test:',
    '10.0.0.1:65535',
    '[::1]',
    '[::1]:443',
  ])('accepts %j', (host) => {
    expect(validHost(host)).toBe(true);
  });

  it.each([
    '',
    'user@gateway.test',
    'gateway.test/x',
    '"gateway.test"',
    'gateway.test:65536',
    'a b',
  ])('refuses %j', (host) => {
    expect(validHost(host)).toBe(false);
  });
});
