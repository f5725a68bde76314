import { get, rawRequest } from './helpers/raw';
import {
  startEcho,
  startGateway,
  type Echo,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

let upstream: Running;
let gw: GatewayHarness;
let hits = 0;

beforeAll(async () => {
  upstream = await startEcho('files');
  upstream.server.on('request', () => hits++);
  gw = await startGateway({
    services: { files: { targets: [upstream.url] } },
    routes: [{ path: '/**', service: 'files' }],
  });
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

describe('refused paths get 400 and never reach the upstream', () => {
  it.each([
    ['dot segment', '/api/a/./b'],
    ['dot-dot segment', '/api/a/../b'],
    ['trailing dot-dot', '/api/a/..'],
    ['encoded dot-dot, lower case', '/api/a/%2e%2e/b'],
    ['encoded dot-dot, upper case', '/api/a/%2E%2E/b'],
    ['encoded dot-dot, mixed', '/api/a/.%2e/b'],
    ['encoded single dot', '/api/a/%2e/b'],
    ['encoded slash', '/api/a%2fb'],
    ['encoded slash, upper case', '/api/a%2Fb'],
    ['encoded backslash', '/api/a%5cb'],
    ['raw backslash', '/api/a\\b'],
    ['matrix parameter', '/api/a;jsessionid=1/b'],
    ['encoded NUL', '/api/a%00b'],
    ['encoded line feed', '/api/a%0ab'],
    ['encoded DEL', '/api/a%7fb'],
    ['truncated escape', '/api/a%4'],
    ['bad hex escape', '/api/a%zzb'],
    ['lone percent', '/api/a%'],
    ['invalid UTF-8 (overlong dot)', '/api/%c0%ae%c0%ae/b'],
    ['invalid UTF-8 (lone byte)', '/api/a%ffb'],
    ['empty segment', '/api/a//b'],
  ])('%s: %s', async (_name, path) => {
    const before = hits;
    const res = await get(gw.running.port, path);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(res.body)).toMatchObject({
      status: 400,
      type: 'urn:turnpike:problem:path-rejected',
    });
    expect(hits).toBe(before);
  });

  it('raw control character (tab) in the path', async () => {
    const res = await get(gw.running.port, '/api/a\tb');
    expect(res.status).toBe(400);
  });

  it('a request with two Host headers', async () => {
    const before = hits;
    const res = await rawRequest(
      gw.running.port,
      'GET /api/a HTTP/1.1\r\nHost: one.test\r\nHost: two.test\r\nConnection: close\r\n\r\n',
    );
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(hits).toBe(before);
  });
});

describe('accepted paths are forwarded exactly as checked', () => {
  it('forwards an ordinary path unchanged', async () => {
    const res = await get(gw.running.port, '/api/a/b.txt?x=%2e%2e');
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as Echo).url).toBe('/a/b.txt?x=%2e%2e');
  });

  it('decodes percent-encoded unreserved characters and upper-cases other escapes', async () => {
    const res = await get(gw.running.port, '/api/%61dmin/a%3ab%20c');
    expect((JSON.parse(res.body) as Echo).url).toBe('/admin/a%3Ab%20c');
  });

  it('keeps dots inside a segment', async () => {
    const res = await get(gw.running.port, '/api/a/..b/c.');
    expect((JSON.parse(res.body) as Echo).url).toBe('/a/..b/c.');
  });
});
