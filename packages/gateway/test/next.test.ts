import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import request from 'supertest';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import { closedAfterEach } from '../../../test/helpers/expectations';

// What the gateway gives the router as `next`. The router is a stub here: it
// calls next() with whatever the request's `x-next` header says ('', 'route', 'router',
// 'error', 'gateway-error'), or answers itself without one. The router's own next('route')
// handling is tested with the real router in the top-level tests.
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
  it.each(['', 'route'])("next(%j) goes on to the host's routes after the gateway", async (how) => {
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
