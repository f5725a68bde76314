import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayConfig } from '@turnpike/gateway';
import {
  listen,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';
import { closersAfterEach } from './helpers/outcomes';
import { memoryLogger, rawGet } from './helpers/logs';
import { parseScrape } from './helpers/prometheus';

const closers = closersAfterEach();

/** What the upstream saw of each request. */
interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
}

async function upstream(seen: Seen[]): Promise<Running> {
  const u = await listen((req: IncomingMessage, res: ServerResponse) => {
    seen.push({ url: req.url!, headers: req.headers });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('seven b'));
  });
  closers.push(() => u.close());
  return u;
}

async function gatewayOf(config: GatewayConfig): Promise<GatewayHarness> {
  const g = await startGateway(config);
  closers.push(() => g.close());
  return g;
}

const SECRETS = {
  authorization: 'Bearer sekrit-token-value',
  cookie: 'session=cookie-secret-value',
  apiKey: 'api-key-secret-value',
  query: 'query-secret-value',
  custom: 'custom-secret-value',
};

describe('the access log: one JSON line per request, after it ends', () => {
  test('a proxied request: every field, and none of the credentials', async () => {
    const seen: Seen[] = [];
    const up = await upstream(seen);
    const { logger, lines } = memoryLogger();
    const g = await gatewayOf({
      services: { users: { targets: [up.url] } },
      routes: [{ name: 'users', path: '/users/**', service: 'users' }],
      accessLog: { logger, query: true, redactQuery: ['session_hint'] },
      tracing: { opentelemetry: false },
    });
    const res = await fetch(
      `${g.url}/users/42?page=2&api_key=${SECRETS.query}&session_hint=${SECRETS.custom}`,
      {
        method: 'POST',
        body: 'twelve bytes',
        headers: {
          authorization: SECRETS.authorization,
          cookie: SECRETS.cookie,
          'x-api-key': SECRETS.apiKey,
          'x-request-id': 'req-abc-1',
        },
      },
    );
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('seven b');
    await waitFor(() => lines.length === 1);
    const line = lines[0]!;
    const entry = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(entry).sort()).toEqual(
      [
        'level',
        'message',
        'time',
        'requestId',
        'traceId',
        'method',
        'path',
        'route',
        'service',
        'target',
        'status',
        'outcome',
        'durationMs',
        'upstreamMs',
        'bytesIn',
        'bytesOut',
        'client',
        'retries',
      ].sort(),
    );
    expect(entry).toMatchObject({
      level: 'info',
      message: 'request',
      requestId: 'req-abc-1',
      method: 'POST',
      path: '/api/users/42?page=2&api_key=[REDACTED]&session_hint=[REDACTED]',
      route: 'users',
      service: 'users',
      target: up.url,
      status: 200,
      outcome: 'complete',
      bytesIn: 12,
      bytesOut: 7,
      retries: 0,
    });
    expect(entry.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(entry.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(entry.client).toMatch(/127\.0\.0\.1$/);
    expect(typeof entry.durationMs).toBe('number');
    expect(typeof entry.upstreamMs).toBe('number');
    expect(entry.upstreamMs as number).toBeLessThanOrEqual(entry.durationMs as number);
    for (const secret of Object.values(SECRETS))
      expect(line).not.toContain(secret.split(' ').pop());
    // The upstream got the credentials: the log is where they do not go.
    expect(seen[0]!.headers.cookie).toBe(SECRETS.cookie);
    expect(seen[0]!.headers.traceparent).toContain(entry.traceId as string);
  });

  test('the subject of a proven credential is logged; the key itself is not', async () => {
    const up = await upstream([]);
    const { logger, lines } = memoryLogger();
    const key = 'k'.repeat(40);
    const g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      auth: { apiKeys: { keys: [{ key, consumer: 'team-a' }] } },
      accessLog: { logger },
    });
    expect((await fetch(`${g.url}/x`, { headers: { 'x-api-key': key } })).status).toBe(200);
    await waitFor(() => lines.length === 1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ subject: 'team-a', status: 200, route: '/x' });
    expect(lines[0]).not.toContain(key);
  });

  test('without query: true the query is not logged at all', async () => {
    const up = await upstream([]);
    const { logger, lines } = memoryLogger();
    const g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      accessLog: { logger },
    });
    expect((await fetch(`${g.url}/x?token=abc&q=visible`)).status).toBe(200);
    await waitFor(() => lines.length === 1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(entry.path).toBe('/api/x');
    expect('traceId' in entry).toBe(false); // no tracing: no trace id
    expect(lines[0]).not.toContain('visible');
  });

  test('a 404 and a refused path are logged too, as unrouted', async () => {
    const up = await upstream([]);
    const { logger, lines } = memoryLogger();
    const g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      accessLog: { logger },
    });
    expect((await fetch(`${g.url}/nowhere`)).status).toBe(404);
    expect(await rawGet(g.running.port, '/api/x/%2e%2e/etc')).toBe(400);
    await waitFor(() => lines.length === 2);
    const [notFound, refused] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(notFound).toMatchObject({
      status: 404,
      outcome: 'unrouted',
      route: '',
      path: '/api/nowhere',
    });
    expect(refused).toMatchObject({ status: 400, outcome: 'unrouted', route: '' });
    expect(typeof notFound!.requestId).toBe('string');
  });

  test('sampleRate 0 logs only the failures: a dead upstream is logged, successes are not', async () => {
    const up = await upstream([]);
    const { logger, lines } = memoryLogger();
    const g = await gatewayOf({
      services: {
        svc: { targets: [up.url] },
        dead: { targets: ['http://127.0.0.1:1'], retries: false },
      },
      routes: [
        { path: '/x', service: 'svc' },
        { path: '/dead', service: 'dead' },
      ],
      accessLog: { logger, sampleRate: 0 },
    });
    for (let i = 0; i < 5; i++) expect((await fetch(`${g.url}/x`)).status).toBe(200);
    expect((await fetch(`${g.url}/dead`)).status).toBe(502);
    await waitFor(() => lines.length === 1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      route: '/dead',
      status: 502,
      outcome: 'refused',
    });
    // The five successes were dropped, not late: one more success adds nothing either.
    expect((await fetch(`${g.url}/x`)).status).toBe(200);
    expect(lines).toHaveLength(1);
  });

  test('a logger that throws loses the line, not the request', async () => {
    const up = await upstream([]);
    const g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      accessLog: {
        logger: {
          info() {
            throw new Error('disk full');
          },
          warn() {},
          error() {},
          debug() {},
        },
      },
    });
    expect((await fetch(`${g.url}/x`)).status).toBe(200);
    expect((await fetch(`${g.url}/x`)).status).toBe(200);
  });
});

test("a body the upstream never got (refused) is logged and counted as the client's, alike", async () => {
  const { logger, lines } = memoryLogger();
  const g = await gatewayOf({
    services: { dead: { targets: ['http://127.0.0.1:1'], retries: false } },
    routes: [{ path: '/dead', service: 'dead' }],
    accessLog: { logger },
    metrics: true,
  });
  const res = await fetch(`${g.url}/dead`, { method: 'POST', body: 'x'.repeat(1000) });
  expect(res.status).toBe(502);
  await waitFor(() => lines.length === 1);
  expect(JSON.parse(lines[0]!)).toMatchObject({ outcome: 'refused', bytesIn: 1000 });
  const s = parseScrape(await g.gateway.metrics!.scrape());
  expect(s.value('gateway_request_bytes_sum', { route: '/dead' })).toBe(1000);
});
