import type { IncomingMessage, ServerResponse } from 'node:http';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { createGateway } from '@turnpike/gateway';
import { createRouter, type Middleware, type RouteOptions } from '@turnpike/router';
import { configErrorOf } from './helpers/expectations';
import {
  closersAfterEach,
  fetchResponse,
  recordOutcomes,
  recordingLogger,
  startRouter,
} from './helpers/outcomes';
import {
  startEcho,
  startGateway,
  waitFor,
  type Echo,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

const closers = closersAfterEach();

async function echo(name: string): Promise<Running> {
  const up = await startEcho(name);
  closers.push(() => up.close());
  return up;
}

/**
 * HPM as a migrated app would have it: the target, the origin changed. Its middleware returns
 * a promise; the router takes it as it is (it watches a handler's promise for a rejection).
 */
function legacyProxy(target: string): Middleware {
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- see above
  return createProxyMiddleware<IncomingMessage, ServerResponse>({ target, changeOrigin: true });
}

/** A gateway with a legacy route through HPM, a service route, and `extra` routes first. */
async function gatewayWith(
  legacy: Running,
  svc: Running,
  extra: RouteOptions[] = [],
  logger = recordingLogger(),
): Promise<GatewayHarness> {
  const gw = await startGateway({
    services: { svc: { targets: [svc.url] } },
    routes: [
      ...extra,
      { path: '/legacy/**', handler: legacyProxy(legacy.url) },
      { path: '/svc/**', service: 'svc' },
    ],
    logger,
  });
  closers.push(() => gw.close());
  return gw;
}

describe('a handler route behind the gateway', () => {
  it('reaches its upstream through http-proxy-middleware, next to a service route', async () => {
    const legacy = await echo('legacy');
    const svc = await echo('svc');
    const gw = await gatewayWith(legacy, svc);

    const viaHpm = await fetchResponse(`${gw.url}/legacy/thing?q=1`);
    expect(viaHpm.status).toBe(200);
    const seen = JSON.parse(viaHpm.body.toString()) as Echo;
    expect(seen.upstream).toBe('legacy');
    expect(seen.url).toBe('/legacy/thing?q=1');
    // changeOrigin: the upstream sees its own host.
    expect(seen.headers.host).toBe(`127.0.0.1:${legacy.port}`);

    const viaService = await fetchResponse(`${gw.url}/svc/x`);
    expect(viaService.status).toBe(200);
    expect((JSON.parse(viaService.body.toString()) as Echo).upstream).toBe('svc');
  });

  it('still gets a request id: on the response, and sent upstream by HPM', async () => {
    const legacy = await echo('legacy');
    const svc = await echo('svc');
    const gw = await gatewayWith(legacy, svc);

    const res = await fetchResponse(`${gw.url}/legacy/id`);
    expect(res.status).toBe(200);
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((JSON.parse(res.body.toString()) as Echo).headers['x-request-id']).toBe(id);

    const given = await fetchResponse(`${gw.url}/legacy/id`, {
      headers: { 'x-request-id': 'client-id-1' },
    });
    expect(given.headers['x-request-id']).toBe('client-id-1');
    expect((JSON.parse(given.body.toString()) as Echo).headers['x-request-id']).toBe('client-id-1');
  });

  it('still gets the header hygiene: a client identity header does not reach the handler upstream', async () => {
    const legacy = await echo('legacy');
    const svc = await echo('svc');
    const gw = await gatewayWith(legacy, svc);
    const res = await fetchResponse(`${gw.url}/legacy/x`, { headers: { 'x-user-id': 'admin' } });
    const seen = JSON.parse(res.body.toString()) as Echo;
    expect(seen.headers['x-user-id']).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it.each<[string, Middleware]>([
    ['calls next(err)', (_req, _res, next) => next(new Error('db password hunter2 at 10.9.8.7'))],
    [
      'throws',
      () => {
        throw new Error('db password hunter2 at 10.9.8.7');
      },
    ],
    [
      'returns a rejected promise',
      () => Promise.reject(new Error('db password hunter2 at 10.9.8.7')),
    ],
  ])('a handler that %s: a problem+json 500 without the detail', async (_label, handler) => {
    const legacy = await echo('legacy');
    const svc = await echo('svc');
    const logger = recordingLogger();
    const gw = await gatewayWith(legacy, svc, [{ path: '/broken', handler }], logger);

    const res = await fetchResponse(`${gw.url}/broken`);
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toBe('application/problem+json');
    const text = res.body.toString();
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('10.9.8.7');
    const problem = JSON.parse(text) as { status: number; requestId?: string };
    expect(problem.status).toBe(500);
    expect(problem.requestId).toBe(res.headers['x-request-id']);
    // The detail is for the logs.
    await waitFor(() => logger.entries.some((e) => e.level === 'error'));
    expect(JSON.stringify(logger.entries)).toContain('hunter2');
  });

  it("is reported as one outcome of kind 'handled' through gateway.onOutcome", async () => {
    const legacy = await echo('legacy');
    const svc = await echo('svc');
    const gw = await gatewayWith(legacy, svc);
    const log = recordOutcomes(gw.gateway);
    const res = await fetchResponse(`${gw.url}/legacy/x`);
    expect(res.status).toBe(200);
    await waitFor(() => log.list.length > 0);
    await gw.close();
    expect(log.list.map((o) => o.kind)).toEqual(['handled']);
    const o = log.list[0]!;
    expect(o.status).toBe(200);
    expect(o.route.path).toBe('/legacy/**');
    expect(o.service).toBeUndefined();
    expect(o.attempt).toBeUndefined();
    expect((o.req as { id?: string }).id).toBe(res.headers['x-request-id']);
  });

  it('a local endpoint handler answers itself', async () => {
    const legacy = await echo('legacy');
    const svc = await echo('svc');
    const gw = await gatewayWith(legacy, svc, [
      { path: '/local', handler: (_req, res) => res.end('local') },
    ]);
    const res = await fetchResponse(`${gw.url}/local`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('local');
    expect(res.headers['x-request-id']).toBeDefined();
  });

  it("a handler's next() passes the request on to the host app", async () => {
    const svc = await echo('svc');
    const gw = await startGateway({
      services: { svc: { targets: [svc.url] } },
      routes: [{ path: '/pass', handler: (_req, _res, next) => next() }],
    });
    closers.push(() => gw.close());
    gw.app.use('/api/pass', (_req, res) => {
      res.end('host app after the gateway');
    });
    const res = await fetchResponse(`${gw.url}/pass`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('host app after the gateway');
  });
});

describe('a handler route with createRouter', () => {
  it("runs the route's stages in front of the handler", async () => {
    const legacy = await echo('legacy');
    const order: string[] = [];
    const stage: Middleware = (req, _res, next) => {
      order.push('stage');
      req.headers['x-stage'] = 'ran';
      next();
    };
    const proxy = legacyProxy(legacy.url);
    const h = await startRouter({
      services: {},
      routes: [
        {
          path: '/legacy/**',
          handler: (req, res, next) => {
            order.push('handler');
            proxy(req, res, next);
          },
        },
      ],
      stages: () => [stage],
    });
    closers.push(() => h.close());
    const res = await fetchResponse(`${h.url}/legacy/x`);
    expect(res.status).toBe(200);
    expect(order).toEqual(['stage', 'handler']);
    expect((JSON.parse(res.body.toString()) as Echo).headers['x-stage']).toBe('ran');
  });

  it('a stage that answers keeps the handler from running', async () => {
    let handled = 0;
    const h = await startRouter({
      services: {},
      routes: [{ path: '/**', handler: (_req, res) => (handled++, res.end('handler')) }],
      stages: () => [
        (_req, res) => {
          res.statusCode = 401;
          res.end();
        },
      ],
    });
    closers.push(() => h.close());
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(401);
    expect(handled).toBe(0);
  });

  it.each<[string, (legacy: Running) => Middleware, string]>([
    ['an HPM proxy', (legacy) => legacyProxy(legacy.url), 'legacy'],
    ['a local endpoint', () => (_req, res) => res.end('local'), 'local'],
  ])('reports %s as one outcome of kind handled', async (_label, handler, body) => {
    const legacy = await echo('legacy');
    const h = await startRouter({
      services: {},
      routes: [{ path: '/**', handler: handler(legacy), name: 'the-handler' }],
    });
    closers.push(() => h.close());
    const log = recordOutcomes(h.router);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toContain(body);
    await waitFor(() => log.list.length > 0);
    await h.close();
    expect(log.list).toHaveLength(1);
    const o = log.list[0]!;
    expect(o.kind).toBe('handled');
    expect(o.status).toBe(200);
    expect(o.service).toBeUndefined();
    expect(o.route.name).toBe('the-handler');
    expect(o.attempt).toBeUndefined();
  });
});

describe('config refusals', () => {
  const handler: Middleware = (_req, res) => res.end();

  it('a route with both a service and a handler: ConfigError at routes[0].handler', () => {
    const err = configErrorOf(() =>
      createRouter({
        services: { svc: { target: 'http://127.0.0.1:1' } },
        routes: [{ path: '/x', service: 'svc', handler }],
      }),
    );
    expect(err.path).toBe('routes[0].handler');
  });

  it('a route with neither: ConfigError at routes[0].service', () => {
    const err = configErrorOf(() =>
      createRouter({
        services: { svc: { target: 'http://127.0.0.1:1' } },
        routes: [{ path: '/x' }],
      }),
    );
    expect(err.path).toBe('routes[0].service');
  });

  it.each<[string, RouteOptions, string]>([
    ['both', { path: '/x', service: 'svc', handler }, 'routes[0].handler'],
    ['neither', { path: '/x' }, 'routes[0].service'],
  ])('the gateway refuses %s the same way', (_label, route, path) => {
    const err = configErrorOf(() =>
      createGateway({ services: { svc: { targets: ['http://127.0.0.1:1'] } }, routes: [route] }),
    );
    expect(err.path).toBe(path);
  });
});
