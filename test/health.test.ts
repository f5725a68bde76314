import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import request from 'supertest';
import {
  createGateway,
  isConfigError,
  type EjectionEvent,
  type GatewayConfig,
  type HealthChangeEvent,
  type ReadmissionEvent,
  type ServiceHealthBody,
  type ServicesHealthBody,
} from '@turnpike/gateway';
import {
  listen,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

/** An upstream with a /health endpoint the test can fail, counting checks and proxied requests apart. */
interface Node extends Running {
  name: string;
  /** Answer /health with 200 (true) or 500 (false). */
  healthy: boolean;
  /** Status of every other request. */
  status: number;
  checks: number;
  proxied: number;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function node(name: string, status = 200): Promise<Node> {
  const n = { name, healthy: true, status, checks: 0, proxied: 0 } as Node;
  const running = await listen((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.url === '/health') {
      n.checks++;
      res.statusCode = n.healthy ? 200 : 500;
      return res.end();
    }
    n.proxied++;
    res.statusCode = n.status;
    res.setHeader('x-upstream', name);
    res.end(name);
  });
  Object.assign(n, running);
  closers.push(() => running.close());
  return n;
}

async function nodes(count: number, status = 200): Promise<Node[]> {
  const out: Node[] = [];
  for (let i = 0; i < count; i++) out.push(await node(`n${i}`, status));
  return out;
}

async function gatewayFor(config: GatewayConfig): Promise<GatewayHarness> {
  const h = await startGateway(config);
  closers.push(() => h.close());
  return h;
}

async function get(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const body = await res.text();
  return {
    status: res.status,
    upstream: res.headers.get('x-upstream'),
    headers: res.headers,
    body,
  };
}

// A timeout as long as the interval: a busy machine must not fail the healthy targets' checks.
const FAST_CHECKS = {
  path: '/health',
  intervalMs: 100,
  timeoutMs: 100,
  unhealthyThreshold: 2,
  healthyThreshold: 2,
};

describe('active health checks', () => {
  it('an upstream failing its /health stops getting traffic, and comes back once it recovers', async () => {
    const [a, b, c] = await nodes(3);
    const h = await gatewayFor({
      services: {
        svc: { targets: [a!.url, b!.url, c!.url], healthCheck: FAST_CHECKS },
      },
      routes: [{ path: '/svc/**', service: 'svc', stripPrefix: '/svc' }],
    });
    const events: HealthChangeEvent[] = [];
    const aPort = `:${a!.port}`;
    h.gateway.onHealthChange((e) => {
      if (e.target.url.includes(aPort)) events.push(e);
    });
    await waitFor(() => a!.checks >= 1 && b!.checks >= 1 && c!.checks >= 1);

    a!.healthy = false;
    const checksAtFailure = a!.checks;
    let proxiedAtEvent = -1;
    let checksAtEvent = -1;
    const off = h.gateway.onHealthChange((e) => {
      if (!e.healthy && e.target.url.includes(aPort)) {
        proxiedAtEvent = a!.proxied;
        checksAtEvent = a!.checks;
      }
    });
    await waitFor(() => events.some((e) => !e.healthy));
    off();
    const down = events.find((e) => !e.healthy)!;
    expect(down).toMatchObject({ service: 'svc', healthy: false });
    expect(['status 500', 'timeout']).toContain(down.reason);
    // Within unhealthyThreshold checks (one more may have been on its way when it was failed).
    expect(checksAtEvent - checksAtFailure).toBeLessThanOrEqual(FAST_CHECKS.unhealthyThreshold + 1);

    for (let i = 0; i < 30; i++) expect((await get(`${h.url}/svc/x`)).status).toBe(200);
    expect(a!.proxied).toBe(proxiedAtEvent);
    expect(b!.proxied + c!.proxied).toBeGreaterThanOrEqual(30);
    expect(h.gateway.balancer('svc')!.status()[0]!.state).toBe('unhealthy');

    a!.healthy = true;
    await waitFor(() => events.some((e) => e.healthy));
    expect(events.at(-1)).toMatchObject({ service: 'svc', healthy: true });
    const before = a!.proxied;
    for (let i = 0; i < 30; i++) await get(`${h.url}/svc/x`);
    expect(a!.proxied - before).toBe(10);
  });

  it('answers 503 with Retry-After when no target is healthy, without calling the upstreams', async () => {
    const [a, b] = await nodes(2);
    a!.healthy = b!.healthy = false;
    const h = await gatewayFor({
      services: { svc: { targets: [a!.url, b!.url], healthCheck: FAST_CHECKS } },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const balancer = h.gateway.balancer('svc')!;
    await waitFor(() => !balancer.hasHealthy());
    const proxied = a!.proxied + b!.proxied;

    const r = await get(`${h.url}/x`);
    expect(r.status).toBe(503);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    const retryAfter = r.headers.get('retry-after');
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(r.body)).toMatchObject({ status: 503 });
    expect(a!.proxied + b!.proxied).toBe(proxied);
  });

  it('in panic mode, with no target healthy, uses every target', async () => {
    const [a, b, c] = await nodes(3);
    a!.healthy = b!.healthy = c!.healthy = false;
    const h = await gatewayFor({
      services: {
        svc: { targets: [a!.url, b!.url, c!.url], healthCheck: FAST_CHECKS, panic: true },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const balancer = h.gateway.balancer('svc')!;
    await waitFor(() => !balancer.hasHealthy());
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await get(`${h.url}/x`);
      expect(r.status).toBe(200);
      seen.add(r.upstream!);
    }
    expect([...seen].sort()).toEqual(['n0', 'n1', 'n2']);
  });

  it('close() stops the health checks', async () => {
    const [a] = await nodes(1);
    const [witness] = await nodes(1);
    const gateway = createGateway({
      services: { svc: { targets: [a!.url], healthCheck: FAST_CHECKS } },
      routes: [{ path: '/**', service: 'svc' }],
    });
    // Another gateway, kept open, checks its own upstream at the same pace: a clock.
    const clock = createGateway({
      services: { svc: { targets: [witness!.url], healthCheck: FAST_CHECKS } },
      routes: [{ path: '/**', service: 'svc' }],
    });
    closers.push(() => clock.close());
    await waitFor(() => a!.checks >= 2);
    await gateway.close();
    const atClose = a!.checks;
    const clockAtClose = witness!.checks;
    await waitFor(() => witness!.checks >= clockAtClose + 6);
    // At most a check that was already on its way.
    expect(a!.checks - atClose).toBeLessThanOrEqual(1);
  });
});

describe('passive health (outlier ejection)', () => {
  it('ejects a target failing real traffic, within maxEjectionPercent; the others keep serving', async () => {
    const [good1, good2] = await nodes(2);
    const [bad1, bad2] = await nodes(2, 503);
    const h = await gatewayFor({
      services: {
        svc: {
          targets: [good1!.url, bad1!.url, good2!.url, bad2!.url],
          outlier: { consecutiveFailures: 3, maxEjectionPercent: 25, baseEjectionMs: 60_000 },
          retries: false,
        },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const ejections: EjectionEvent[] = [];
    h.gateway.onEject((e) => ejections.push(e));
    for (let i = 0; i < 16; i++) await get(`${h.url}/x`);
    // Each bad target failed 4 times in a row; 25 % of 4 allows one ejection only.
    expect(ejections).toHaveLength(1);
    expect(ejections[0]).toMatchObject({ service: 'svc', failures: 3, ejections: 1 });
    const ejectedPort = Number(new URL(ejections[0]!.target.url).port);
    const [ejected, kept] = ejectedPort === bad1!.port ? [bad1!, bad2!] : [bad2!, bad1!];
    const states = h.gateway
      .balancer('svc')!
      .status()
      .map((s) => s.state);
    expect(states.filter((s) => s === 'ejected')).toHaveLength(1);

    const ejectedBefore = ejected.proxied;
    const keptBefore = kept.proxied;
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await get(`${h.url}/x`)).status);
    expect(ejected.proxied).toBe(ejectedBefore);
    expect(kept.proxied - keptBefore).toBe(10); // the other bad one still serves (and fails)
    expect(statuses.filter((s) => s === 200)).toHaveLength(20);
    expect(ejections).toHaveLength(1);
  });

  it('readmits an ejected target once its time is over', async () => {
    const [good] = await nodes(1);
    const [bad] = await nodes(1, 503);
    const h = await gatewayFor({
      services: {
        svc: {
          targets: [good!.url, bad!.url],
          outlier: { consecutiveFailures: 3, maxEjectionPercent: 50, baseEjectionMs: 100 },
          retries: false,
        },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const ejected: EjectionEvent[] = [];
    const readmitted: ReadmissionEvent[] = [];
    h.gateway.onEject((e) => ejected.push(e));
    const off = h.gateway.onReadmit((e) => readmitted.push(e));
    for (let i = 0; i < 6; i++) await get(`${h.url}/x`);
    expect(ejected).toHaveLength(1);
    expect(ejected[0]!.durationMs).toBe(100);
    bad!.status = 200; // recovered while ejected
    const proxied = bad!.proxied;
    // Readmission happens as traffic asks for a target: keep asking until it is readmitted.
    const deadline = Date.now() + 5000;
    while (readmitted.length === 0 && Date.now() < deadline) await get(`${h.url}/x`);
    expect(readmitted).toHaveLength(1);
    expect(readmitted[0]).toMatchObject({ service: 'svc' });
    expect(readmitted[0]!.target.url).toBe(ejected[0]!.target.url);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add((await get(`${h.url}/x`)).upstream!);
    expect(seen.has('n0')).toBe(true);
    expect(bad!.proxied).toBeGreaterThan(proxied);
    off();
  });
});

describe('health endpoints', () => {
  async function withHealth(health: GatewayConfig['health']) {
    const [a, b] = await nodes(2);
    const [o] = await nodes(1);
    const h = await gatewayFor({
      services: { users: { targets: [a!.url, b!.url] }, orders: { targets: [o!.url] } },
      routes: [
        { path: '/users/**', service: 'users' },
        { path: '/orders/**', service: 'orders' },
      ],
      health,
    });
    return { h, a: a!, b: b!, o: o! };
  }

  it('serves live and ready under the mount, JSON and not cached', async () => {
    const { h, a, b, o } = await withHealth(true);
    const live = await request(h.running.server).get('/api/health/live');
    expect(live.status).toBe(200);
    expect(live.body).toEqual({ status: 'ok' });
    expect(live.headers['content-type']).toMatch(/^application\/json/);
    expect(live.headers['cache-control']).toBe('no-store');
    const ready = await request(h.running.server).get('/api/health/ready?x=1');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready' });
    expect(ready.headers['cache-control']).toBe('no-store');
    // Never proxied.
    expect(a.proxied + b.proxied + o.proxied).toBe(0);
    // The routes still work.
    expect((await request(h.running.server).get('/api/users/1')).status).toBe(200);
  });

  it('HEAD works like GET; other methods get 405 with Allow', async () => {
    const { h } = await withHealth(true);
    const head = await request(h.running.server).head('/api/health/live');
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toMatch(/^application\/json/);
    expect(head.text ?? '').toBe('');
    for (const method of ['post', 'put', 'delete'] as const) {
      const r = await request(h.running.server)[method]('/api/health/ready');
      expect(r.status).toBe(405);
      expect(r.headers.allow).toBe('GET, HEAD');
      expect(r.headers['content-type']).toBe('application/problem+json');
    }
  });

  it('ready is 503 naming the services without a usable target', async () => {
    const { h } = await withHealth(true);
    h.gateway.balancer('orders')!.setTargets([]);
    const r = await request(h.running.server).get('/api/health/ready');
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ status: 'not-ready', services: ['orders'] });
    expect(r.headers['cache-control']).toBe('no-store');
    // live is about the process, not the upstreams.
    expect((await request(h.running.server).get('/api/health/live')).status).toBe(200);
  });

  it('without details, services is not served; other paths under health are 404 problems', async () => {
    const { h } = await withHealth(true);
    for (const path of ['/services', '/services/users', '/nothing', '']) {
      const r = await request(h.running.server).get(`/api/health${path}`);
      expect(r.status).toBe(404);
      expect(r.headers['content-type']).toBe('application/problem+json');
    }
  });

  it('with details, serves every service’s target states, and one service by name', async () => {
    const { h, a } = await withHealth({ path: '/status', details: true });
    const all = await request(h.running.server).get('/api/status/services');
    expect(all.status).toBe(200);
    expect(all.headers['cache-control']).toBe('no-store');
    const { services } = all.body as ServicesHealthBody;
    expect(Object.keys(services)).toEqual(['users', 'orders']);
    expect(services.users!.ready).toBe(true);
    expect(services.users!.targets).toHaveLength(2);
    expect(services.users!.targets[0]!.url).toContain(`:${a.port}`);
    expect(services.users!.targets[0]).toMatchObject({
      weight: 1,
      state: 'healthy',
      inFlight: 0,
      lastCheck: null,
    });
    const one = await request(h.running.server).get('/api/status/services/orders');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ name: 'orders', ready: true });
    expect((one.body as ServiceHealthBody).targets).toHaveLength(1);
    const unknown = await request(h.running.server).get('/api/status/services/nope');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['content-type']).toBe('application/problem+json');
    // The default path is not the health path any more: it goes to the router (404, no route).
    expect((await request(h.running.server).get('/api/health/live')).status).toBe(404);
    expect((await request(h.running.server).get('/api/status/live')).status).toBe(200);
  });

  it('without health in the config, the health path goes to the router', async () => {
    const { h } = await withHealth(undefined);
    const r = await request(h.running.server).get('/api/health/live');
    expect(r.status).toBe(404);
    expect((r.body as { type: string }).type).toBe('urn:turnpike:problem:route-not-found');
  });

  it('serves in the listen() lane and the direct lane too', async () => {
    const [a] = await nodes(1);
    const config: GatewayConfig = {
      services: { users: { targets: [a!.url] } },
      routes: [{ path: '/users/**', service: 'users' }],
      health: { details: true },
    };
    const own = createGateway(config);
    closers.push(() => own.close());
    const server = await own.listen(0, '127.0.0.1');
    const { port } = server.address() as { port: number };
    expect(JSON.parse((await get(`http://127.0.0.1:${port}/health/live`)).body)).toEqual({
      status: 'ok',
    });
    expect((await get(`http://127.0.0.1:${port}/health/services/users`)).status).toBe(200);

    const app = express();
    let hostSaw = 0;
    app.use((_req, _res, next) => {
      hostSaw++;
      next();
    });
    const direct = createGateway(config);
    app.use('/api', direct);
    const running = await listen(http.createServer(app));
    closers.push(async () => {
      await direct.close();
      await running.close();
    });
    direct.attach(running.server, { direct: true });
    const r = await get(`${running.url}/api/health/ready`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: 'ready' });
    expect(hostSaw).toBe(0); // the direct lane answered before the host app
  });

  it('refuses a route that overlaps the health path, naming it', () => {
    for (const path of ['/health/**', '/**', '/:x/live']) {
      let error: unknown;
      try {
        createGateway({
          services: { users: { targets: ['http://127.0.0.1:1'] } },
          routes: [
            { path: '/users/**', service: 'users' },
            { path, service: 'users' },
          ],
          health: true,
        });
      } catch (err) {
        error = err;
      }
      expect(isConfigError(error)).toBe(true);
      expect((error as { path: string }).path).toBe('routes[1].path');
      expect((error as Error).message).toContain('/health');
    }
  });

  it('healthRouter() serves the same endpoints on a separate plain Express app', async () => {
    const [a] = await nodes(1);
    const h = await gatewayFor({
      services: { users: { targets: [a!.url] } },
      routes: [{ path: '/**', service: 'users' }],
    });
    const internal = express();
    internal.use('/internal', h.gateway.healthRouter({ details: true }));
    internal.use('/plain', h.gateway.healthRouter());
    const live = await request(internal).get('/internal/live');
    expect(live.status).toBe(200);
    expect(live.body).toEqual({ status: 'ok' });
    expect(live.headers['cache-control']).toBe('no-store');
    expect((await request(internal).get('/internal/ready')).body).toEqual({ status: 'ready' });
    const one = await request(internal).get('/internal/services/users');
    expect(one.status).toBe(200);
    expect((one.body as ServiceHealthBody).name).toBe('users');
    expect((await request(internal).get('/internal/services/nope')).status).toBe(404);
    const all = (await request(internal).get('/internal/services')).body as ServicesHealthBody;
    expect(all.services.users!.ready).toBe(true);
    expect((await request(internal).post('/internal/live')).status).toBe(405);
    expect((await request(internal).get('/plain/live')).status).toBe(200);
    expect((await request(internal).get('/plain/services')).status).toBe(404);

    h.gateway.balancer('users')!.setTargets([]);
    const notReady = await request(internal).get('/plain/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.body).toEqual({ status: 'not-ready', services: ['users'] });
  });
});
