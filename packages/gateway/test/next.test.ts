import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import request from 'supertest';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import { closedAfterEach } from '../../../test/helpers/expectations';

// What the gateway gives the router as `next`, in each lane. The router is a stub here: it
// calls next() with whatever the request's `x-next` header says ('', 'route', 'router',
// 'error', 'gateway-error'), or answers itself without one. The router's own next('route')
// handling is tested with the real router in test/direct-lane.test.ts.
const mockCalls: { url: string | undefined; originalUrl?: string; baseUrl?: string }[] = [];
jest.mock('@turnpike/router', () => {
  const actual = jest.requireActual<typeof import('@turnpike/router')>('@turnpike/router');
  const core = jest.requireActual<typeof import('@turnpike/core')>('@turnpike/core');
  return {
    ...actual,
    createRouter: () =>
      Object.assign(
        (
          req: IncomingMessage & { originalUrl?: string; baseUrl?: string },
          res: ServerResponse,
          next: (err?: unknown) => void,
        ) => {
          mockCalls.push({ url: req.url, originalUrl: req.originalUrl, baseUrl: req.baseUrl });
          const how = req.headers['x-next'];
          if (how === undefined) return void res.end('router');
          if (how === 'error') return next(new Error('secret detail'));
          if (how === 'gateway-error') {
            return next(new core.GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED'));
          }
          next(how === '' ? undefined : how);
        },
        { upgrade: () => {}, close: () => Promise.resolve(), routes: [] },
      ),
  };
});

const config: GatewayConfig = {
  services: { s: { targets: ['http://127.0.0.1:1'] } },
  routes: [{ path: '/**', service: 's' }],
};

const servers = closedAfterEach();

/** A host app: middleware, the gateway at /api, then a route and an error handler after it. */
function hostApp(gateway: ReturnType<typeof createGateway>) {
  const app = express();
  const saw: string[] = [];
  app.use((req, _res, next) => {
    saw.push(req.url);
    next();
  });
  app.use('/api', gateway);
  app.get('/api/after', (req, res) => {
    res.json({ after: true, originalUrl: req.originalUrl, url: req.url });
  });
  app.use(
    (err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(599).json({ handled: err.message });
    },
  );
  return { app, saw };
}

beforeEach(() => {
  mockCalls.length = 0;
});

describe('the Express lane passes Express’s own next', () => {
  it.each([
    ['next()', ''],
    ["next('route')", 'route'],
  ])("%s goes on to the host's routes after the gateway", async (_label, how) => {
    const gateway = createGateway(config);
    const { app } = hostApp(gateway);
    try {
      const res = await request(app).get('/api/after').set('x-next', how);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ after: true, originalUrl: '/api/after', url: '/api/after' });
      expect(mockCalls).toHaveLength(1);
    } finally {
      await gateway.close();
    }
  });

  it("next(err) reaches the host's error handler", async () => {
    const gateway = createGateway(config);
    const { app } = hostApp(gateway);
    try {
      const res = await request(app).get('/api/after').set('x-next', 'error');
      expect(res.status).toBe(599);
      expect(res.body).toEqual({ handled: 'secret detail' });
    } finally {
      await gateway.close();
    }
  });

  it('called without next (a bare request listener), leaving is a 404 problem', async () => {
    const gateway = createGateway(config);
    const server = http.createServer((req, res) =>
      gateway(req as never, res as never, undefined as never),
    );
    servers.push(server);
    try {
      const res = await request(server).get('/x').set('x-next', 'route');
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ type: 'urn:turnpike:problem:route-not-found' });
      expect((res.body as { requestId: string }).requestId).toBe(res.headers['x-request-id']);
    } finally {
      await gateway.close();
    }
  });
});

describe('the direct lane’s next hands the request to the host', () => {
  it.each([
    ['next()', ''],
    ["next('route')", 'route'],
    ["next('router')", 'router'],
  ])(
    '%s: to the host app, with the URL it arrived with, and not through the gateway again',
    async (_label, how) => {
      const gateway = createGateway(config);
      const { app, saw } = hostApp(gateway);
      const server = http.createServer(app);
      servers.push(server);
      gateway.attach(server, { direct: true });
      try {
        const res = await request(server).get('/api/after?q=1').set('x-next', how);
        expect(res.status).toBe(200);
        expect(res.body).toEqual({
          after: true,
          originalUrl: '/api/after?q=1',
          url: '/api/after?q=1',
        });
        expect(saw).toEqual(['/api/after?q=1']); // the host's middleware ran, once
        expect(mockCalls).toEqual([
          { url: '/after?q=1', originalUrl: '/api/after?q=1', baseUrl: '/api' },
        ]);
      } finally {
        await gateway.close();
      }
    },
  );

  it('a host that is a plain listener gets the original URL, without the mount fields', async () => {
    const gateway = createGateway(config);
    const server = http.createServer((req: IncomingMessage & { baseUrl?: string }, res) => {
      res.end(JSON.stringify({ url: req.url, hasBaseUrl: 'baseUrl' in req }));
    });
    servers.push(server);
    gateway.attach(server, { direct: true, path: '/edge' });
    try {
      const res = await request(server).get('/edge/x').set('x-next', 'route');
      expect(JSON.parse(res.text)).toEqual({ url: '/edge/x', hasBaseUrl: false });
    } finally {
      await gateway.close();
    }
  });

  it('next(err) is answered as a problem: a GatewayError with its status, anything else a 500', async () => {
    const logged: unknown[] = [];
    const gateway = createGateway({
      ...config,
      logger: { error: (m, meta) => logged.push([m, meta]), warn() {}, info() {}, debug() {} },
    });
    const { app } = hostApp(gateway);
    const server = http.createServer(app);
    servers.push(server);
    gateway.attach(server, { direct: true });
    try {
      const failed = await request(server).get('/api/x').set('x-next', 'error');
      expect(failed.status).toBe(500);
      expect(failed.text).not.toContain('secret detail');
      expect(logged).toHaveLength(1);
      const refused = await request(server).get('/api/x').set('x-next', 'gateway-error');
      expect(refused.status).toBe(405);
    } finally {
      await gateway.close();
    }
  });
});

describe('listen(): leaving the gateway is a 404 problem', () => {
  it.each([
    ['next()', ''],
    ["next('route')", 'route'],
    ["next('router')", 'router'],
  ])('%s', async (_label, how) => {
    const gateway = createGateway(config);
    try {
      const server = await gateway.listen(0, '127.0.0.1');
      const res = await request(server).get('/x').set('x-next', how);
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({
        type: 'urn:turnpike:problem:route-not-found',
        requestId: res.headers['x-request-id'],
      });
      expect(mockCalls).toEqual([{ url: '/x', originalUrl: undefined, baseUrl: undefined }]);
    } finally {
      await gateway.close();
    }
  });

  it('a GatewayError given to next() keeps its status', async () => {
    const gateway = createGateway(config);
    try {
      const server = await gateway.listen(0, '127.0.0.1');
      const res = await request(server).get('/x').set('x-next', 'gateway-error');
      expect(res.status).toBe(405);
    } finally {
      await gateway.close();
    }
  });
});
