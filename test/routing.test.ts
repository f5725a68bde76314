import request from 'supertest';
import {
  startEcho,
  startGateway,
  type Echo,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

let users: Running;
let orders: Running;
let gw: GatewayHarness;

beforeAll(async () => {
  users = await startEcho('users');
  orders = await startEcho('orders');
  gw = await startGateway({
    services: { users: { targets: [users.url] }, orders: { targets: [orders.url] } },
    routes: [
      { path: '/users', service: 'users', methods: ['GET'] },
      { path: '/users/me', service: 'orders', methods: ['GET'] },
      { path: '/users/:id', service: 'users', methods: ['GET', 'DELETE'], stripPrefix: '/users' },
      { path: '/orders/**', service: 'orders', stripPrefix: '/orders' },
      {
        path: '/v1/accounts/:account/orders/**',
        service: 'orders',
        rewrite: '/internal/:account/**',
      },
      { path: '/files/*', service: 'users', methods: ['GET'] },
      { path: '/tenant', service: 'users', host: '*.example.com' },
      { path: '/tenant', service: 'orders' },
      { path: '/versioned', service: 'orders', headers: { 'x-api-version': '2' } },
      { path: '/versioned', service: 'users' },
    ],
  });
});
afterAll(async () => {
  await gw.close();
  await orders.close();
  await users.close();
});

const api = () => request(gw.running.server);

describe('matching', () => {
  it('matches relative to the mount and forwards the path unchanged without a rewrite', async () => {
    const res = await api().get('/api/users?page=2');
    expect(res.status).toBe(200);
    expect((res.body as Echo).upstream).toBe('users');
    expect((res.body as Echo).url).toBe('/users?page=2');
  });

  it.each(['/api/orders/http:/x', '/api/orders/a/https:/b?u=http:/c'])(
    'forwards %s exactly as checked (no URL join rewriting "http:/")',
    async (path) => {
      const res = await api().get(path);
      expect(res.status).toBe(200);
      expect((res.body as Echo).url).toBe(path.slice('/api/orders'.length));
    },
  );

  it('prefers a static segment over a param', async () => {
    const res = await api().get('/api/users/me');
    expect((res.body as Echo).upstream).toBe('orders');
  });

  it('matches :param on one segment', async () => {
    const res = await api().get('/api/users/42');
    expect((res.body as Echo).upstream).toBe('users');
    expect((res.body as Echo).url).toBe('/42');
  });

  it('does not match :param across segments', async () => {
    const res = await api().get('/api/users/42/extra');
    expect(res.status).toBe(404);
  });

  it('matches ** on the rest, and on nothing', async () => {
    const deep = await api().get('/api/orders/a/b/c');
    expect((deep.body as Echo).url).toBe('/a/b/c');
    const bare = await api().get('/api/orders');
    expect((bare.body as Echo).url).toBe('/');
  });

  it('matches on segment boundaries only', async () => {
    const res = await api().get('/api/ordersx/1');
    expect(res.status).toBe(404);
  });

  it('is case-sensitive', async () => {
    const res = await api().get('/api/USERS');
    expect(res.status).toBe(404);
  });

  it('matches * on exactly one segment', async () => {
    expect((await api().get('/api/files/a.txt')).status).toBe(200);
    expect((await api().get('/api/files/a/b.txt')).status).toBe(404);
  });

  it('routes by host', async () => {
    const res = await api().get('/api/tenant').set('Host', 'acme.example.com');
    expect((res.body as Echo).upstream).toBe('users');
    const other = await api().get('/api/tenant').set('Host', 'acme.example.org');
    expect((other.body as Echo).upstream).toBe('orders');
  });

  it('routes by header', async () => {
    const v2 = await api().get('/api/versioned').set('X-API-Version', '2');
    expect((v2.body as Echo).upstream).toBe('orders');
    const v1 = await api().get('/api/versioned').set('X-API-Version', '1');
    expect((v1.body as Echo).upstream).toBe('users');
  });

  it('leaves the host app’s own routes alone', async () => {
    const res = await api().get('/host-route');
    expect(res.body).toEqual({ host: true });
  });
});

describe('rewrites', () => {
  it('rewrites from a template with params and the rest, keeping the query', async () => {
    const res = await api().get('/api/v1/accounts/acme/orders/7/lines?expand=1');
    expect((res.body as Echo).url).toBe('/internal/acme/7/lines?expand=1');
  });

  it('strips the prefix on a segment boundary only once', async () => {
    const res = await api().get('/api/orders/orders/1');
    expect((res.body as Echo).url).toBe('/orders/1');
  });
});

describe('errors', () => {
  it('answers an unknown path with a 404 problem', async () => {
    const res = await api().get('/api/nothing-here').set('X-Request-ID', 'req-404');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.body).toEqual({
      type: 'urn:turnpike:problem:route-not-found',
      title: 'Not Found',
      status: 404,
      detail: 'No route matches the request.',
      requestId: 'req-404',
    });
  });

  it('does not reflect the request path in a problem', async () => {
    const res = await api().get('/api/%3Cscript%3Ealert(1)%3C%2Fscript%3E');
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.text).not.toMatch(/script/i);
  });

  it('answers a method the route does not take with 405 and Allow', async () => {
    const res = await api().post('/api/users/42');
    expect(res.status).toBe(405);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers.allow!.split(', ').sort()).toEqual(['DELETE', 'GET', 'HEAD']);
  });

  it('serves HEAD on a GET route', async () => {
    const res = await api().head('/api/users');
    expect(res.status).toBe(200);
  });
});

describe('request id', () => {
  it('accepts a well-formed X-Request-ID, sends it upstream and returns it', async () => {
    const res = await api().get('/api/users').set('X-Request-ID', 'abc-123_x.y');
    expect(res.headers['x-request-id']).toBe('abc-123_x.y');
    expect((res.body as Echo).headers['x-request-id']).toBe('abc-123_x.y');
  });

  it('replaces an unsafe X-Request-ID with a generated one', async () => {
    const res = await api().get('/api/users').set('X-Request-ID', 'bad id<>');
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((res.body as Echo).headers['x-request-id']).toBe(id);
  });

  it('generates one when none is sent', async () => {
    const a = await api().get('/api/users');
    const b = await api().get('/api/users');
    expect(a.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
  });
});
