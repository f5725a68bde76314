import http, { IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import request from 'supertest';
import WebSocket, { WebSocketServer } from 'ws';
import { createGateway, isConfigError, type Gateway, type GatewayConfig } from '@turnpike/gateway';
import type { Middleware, RouteInfo } from '@turnpike/router';
import { configErrorOf } from './helpers/expectations';
import { listen, startEcho, waitFor, type Echo, type Running } from './helpers/servers';

// The gateway's config takes no stages: the router's `stages` seam is filled here, so that a
// test can put a stage on a route. Routes without one are compiled as they always are.
const mockStages: { for?: (route: RouteInfo) => Middleware[] } = {};
jest.mock('@turnpike/router', () => {
  const actual = jest.requireActual<typeof import('@turnpike/router')>('@turnpike/router');
  return {
    ...actual,
    createRouter: (options: Parameters<typeof actual.createRouter>[0]) =>
      actual.createRouter({ ...options, stages: (route) => mockStages.for?.(route) ?? [] }),
  };
});

/** What a stage saw of a request. */
interface Seen {
  url: string | undefined;
  originalUrl: string | undefined;
  baseUrl: string | undefined;
  id: string | undefined;
  plainReq: boolean;
  plainRes: boolean;
}

let echo: Running;
let wsUpstream: Running;
let wss: WebSocketServer;
const seen: Seen[] = [];
/** How many times the 'leave' route's stage ran. */
let leaves = 0;

beforeAll(async () => {
  echo = await startEcho('echo');
  wsUpstream = await listen((_req, res) => res.end('plain http'));
  wss = new WebSocketServer({ server: wsUpstream.server });
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  mockStages.for = (route) => {
    if (route.name === 'probe') {
      return [
        (req, res, next) => {
          const r = req as IncomingMessage & {
            originalUrl?: string;
            baseUrl?: string;
            id?: string;
          };
          seen.push({
            url: r.url,
            originalUrl: r.originalUrl,
            baseUrl: r.baseUrl,
            id: r.id,
            plainReq: Object.getPrototypeOf(req) === IncomingMessage.prototype,
            plainRes: Object.getPrototypeOf(res) === ServerResponse.prototype,
          });
          next();
        },
      ];
    }
    if (route.name === 'leave') {
      return [
        (_req, _res, next) => {
          leaves += 1;
          next('route');
        },
      ];
    }
    return [];
  };
});
afterAll(async () => {
  delete mockStages.for;
  wss.close();
  await wsUpstream.close();
  await echo.close();
});
beforeEach(() => {
  seen.length = 0;
  leaves = 0;
});

function config(): GatewayConfig {
  return {
    services: { echo: { targets: [echo.url] }, ws: { targets: [wsUpstream.url] } },
    routes: [
      { path: '/ws/**', service: 'ws', websocket: true, stripPrefix: '/ws' },
      { path: '/probe/**', name: 'probe', service: 'echo' },
      { path: '/leave/**', name: 'leave', service: 'echo' },
      { path: '/**', service: 'echo' },
    ],
  };
}

/** A host app with its own middleware and routes around the gateway, on a server of its own. */
interface Host {
  app: Express;
  gateway: Gateway;
  server: Server;
  port: number;
  /** The paths the host's middleware saw (it runs before the gateway in the Express lane). */
  middlewareSaw: string[];
  close(): Promise<void>;
}

async function startHost(
  attach: { direct?: boolean; path?: string } | false = { direct: true },
  mount: string = '/api',
): Promise<Host> {
  const middlewareSaw: string[] = [];
  const app = express();
  app.use((req, res, next) => {
    middlewareSaw.push(req.url);
    res.setHeader('x-host-middleware', 'ran');
    next();
  });
  app.get('/host-route', (_req, res) => {
    res.json({ host: true });
  });
  const gateway = createGateway(config());
  app.use(mount, gateway);
  // Registered after the gateway: reached only when the gateway leaves a request to the host.
  app.get(`${mount}/leave/here`, (req, res) => {
    res.json({ after: true, url: req.url, originalUrl: req.originalUrl });
  });
  const running = await listen(http.createServer(app));
  if (attach) gateway.attach(running.server, attach);
  return {
    app,
    gateway,
    server: running.server,
    port: running.port,
    middlewareSaw,
    async close() {
      await gateway.close();
      await running.close();
    },
  };
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function echoOver(ws: WebSocket, text: string): Promise<string> {
  const reply = new Promise<string>((resolve) =>
    ws.once('message', (d: Buffer) => resolve(d.toString())),
  );
  ws.send(text);
  return reply;
}

describe('attach(server, { direct: true })', () => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost();
  });
  afterAll(() => host.close());

  it('serves requests under the mount, with the path relative to it', async () => {
    const res = await request(host.server).get('/api/users/42?page=2');
    expect(res.status).toBe(200);
    expect((res.body as Echo).url).toBe('/users/42?page=2');
  });

  it('leaves every other path to the host app: its routes and its middleware', async () => {
    const res = await request(host.server).get('/host-route');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ host: true });
    expect(res.headers['x-host-middleware']).toBe('ran');
    expect(host.middlewareSaw).toContain('/host-route');
  });

  it('skips the host app for requests under the mount: its middleware does not run', async () => {
    host.middlewareSaw.length = 0;
    const res = await request(host.server).get('/api/probe/x');
    expect(res.status).toBe(200);
    expect(res.headers['x-host-middleware']).toBeUndefined();
    expect(host.middlewareSaw).toEqual([]);
  });

  it('hands the gateway plain node:http objects: no Express prototype swap', async () => {
    await request(host.server).get('/api/probe/x').expect(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ plainReq: true, plainRes: true });
  });

  it.each([
    ['/api', '/'],
    ['/api?a=1', '/?a=1'],
    ['/api/', '/'],
    ['/api/probe/x?y=1', '/probe/x?y=1'],
  ])('takes %s, with req.url %s', async (path, url) => {
    const res = await request(host.server).get(path);
    expect(res.status).toBe(200);
    expect(res.headers['x-host-middleware']).toBeUndefined();
    expect((res.body as Echo).url).toBe(url);
  });

  it('sets req.url, originalUrl and baseUrl exactly as the Express lane does', async () => {
    const express = await startHost(false);
    try {
      await request(host.server).get('/api/probe/a?b=1').expect(200);
      await request(express.server).get('/api/probe/a?b=1').expect(200);
      expect(seen).toHaveLength(2);
      const pick = ({ url, originalUrl, baseUrl }: Seen) => ({ url, originalUrl, baseUrl });
      expect(pick(seen[0]!)).toEqual(pick(seen[1]!));
      expect(pick(seen[0]!)).toEqual({
        url: '/probe/a?b=1',
        originalUrl: '/api/probe/a?b=1',
        baseUrl: '/api',
      });
      expect(seen[1]).toMatchObject({ plainReq: false }); // Express's own request prototype
    } finally {
      await express.close();
    }
  });

  it.each(['/apix', '/apiary/x', '/other/api/x'])(
    'leaves %s to the host: the prefix ends on a segment boundary',
    async (path) => {
      const res = await request(host.server).get(path);
      expect(res.status).toBe(404);
      expect(res.headers['x-host-middleware']).toBe('ran');
      expect(res.headers['content-type']).not.toMatch(/problem/);
    },
  );

  it('compares the prefix exactly: a path that differs in case goes the Express way', async () => {
    host.middlewareSaw.length = 0;
    const res = await request(host.server).get('/API/x');
    expect(res.status).toBe(200); // Express mounts are case-insensitive: the gateway still serves it
    expect(res.headers['x-host-middleware']).toBe('ran');
    expect((res.body as Echo).url).toBe('/x');
  });

  it('assigns X-Request-ID: generated, sent upstream and returned', async () => {
    const res = await request(host.server).get('/api/x');
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((res.body as Echo).headers['x-request-id']).toBe(id);
  });

  it("keeps a client's well-formed X-Request-ID and replaces a malformed one", async () => {
    const kept = await request(host.server).get('/api/x').set('X-Request-ID', 'abc-123_x.y');
    expect(kept.headers['x-request-id']).toBe('abc-123_x.y');
    expect((kept.body as Echo).headers['x-request-id']).toBe('abc-123_x.y');
    const replaced = await request(host.server).get('/api/x').set('X-Request-ID', 'bad id<>');
    expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("answers the gateway's own problems: a refused path is a 400 with a requestId", async () => {
    const res = await request(host.server).get('/api/a%2fb');
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect((res.body as { requestId: string }).requestId).toBe(res.headers['x-request-id']);
  });

  it('routes WebSocket upgrades under the mount', async () => {
    const ws = await open(`ws://127.0.0.1:${host.port}/api/ws/chat`);
    try {
      expect(await echoOver(ws, 'hello')).toBe('hello');
    } finally {
      ws.close();
    }
  });
});

describe('the direct lane: discovery, options and close()', () => {
  it('discovers the prefix through nested routers', async () => {
    const app = express();
    const gateway = createGateway(config());
    const v1 = express.Router();
    v1.use('/v1', gateway);
    app.use('/api', v1);
    const running = await listen(http.createServer(app));
    try {
      gateway.attach(running.server, { direct: true });
      const res = await request(running.server).get('/api/v1/probe/x');
      expect(res.status).toBe(200);
      expect(seen.at(-1)).toMatchObject({ url: '/probe/x', baseUrl: '/api/v1', plainReq: true });
    } finally {
      await gateway.close();
      await running.close();
    }
  });

  it('takes every request for a gateway mounted at the root', async () => {
    const host = await startHost({ direct: true }, '/');
    try {
      const res = await request(host.server).get('/probe/x');
      expect(res.status).toBe(200);
      expect(res.headers['x-host-middleware']).toBeUndefined();
      expect(seen.at(-1)).toMatchObject({ url: '/probe/x', baseUrl: '', plainReq: true });
    } finally {
      await host.close();
    }
  });

  it('refuses a mount with parameters, naming the fix', async () => {
    const app = express();
    const gateway = createGateway(config());
    app.use('/t/:tenant', gateway);
    const server = http.createServer(app);
    try {
      expect(() => gateway.attach(server, { direct: true })).toThrow(
        /needs one fixed mount prefix.*direct: true, path: '\/api'/,
      );
    } finally {
      await gateway.close();
    }
  });

  it('takes { path } for a host that is not an Express app', async () => {
    const gateway = createGateway(config());
    const running = await listen((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(`host saw ${req.url}`);
    });
    try {
      gateway.attach(running.server, { direct: true, path: '/edge' });
      const served = await request(running.server).get('/edge/probe/x?q=1');
      expect(served.status).toBe(200);
      expect((served.body as Echo).url).toBe('/probe/x?q=1');
      expect(seen.at(-1)).toMatchObject({ originalUrl: '/edge/probe/x?q=1', baseUrl: '/edge' });
      const host = await request(running.server).get('/elsewhere');
      expect(host.text).toBe('host saw /elsewhere');
    } finally {
      await gateway.close();
      await running.close();
    }
  });

  it.each<[string, unknown, string]>([
    ['an unknown key', { direkt: true }, 'attach.options.direkt'],
    ['a direct that is not a boolean', { direct: 'yes' }, 'attach.options.direct'],
  ])('refuses attach() options with %s, naming the field', async (_label, options, at) => {
    const gateway = createGateway(config());
    try {
      const error = configErrorOf(() => gateway.attach(http.createServer(), options as never));
      expect(isConfigError(error)).toBe(true);
      expect(error.path).toBe(at);
    } finally {
      await gateway.close();
    }
  });

  it('refuses a second attach() of the same server', async () => {
    const host = await startHost();
    try {
      expect(() => host.gateway.attach(host.server, { direct: true })).toThrow(/already attached/);
    } finally {
      await host.close();
    }
  });

  it("close() puts the server's own request listeners back, in place", async () => {
    const app = express();
    const gateway = createGateway(config());
    app.use('/api', gateway);
    const server = http.createServer(app);
    const other = (): void => {};
    server.on('request', other);
    const before = server.listeners('request');
    gateway.attach(server, { direct: true });
    const during = server.listeners('request');
    expect(during).toHaveLength(1);
    expect(during[0]).not.toBe(app);
    await gateway.close();
    expect(server.listeners('request')).toEqual(before);
    expect(server.listeners('upgrade')).toEqual([]);
  });

  it('after close(), requests under the mount reach the host app again', async () => {
    const host = await startHost();
    await host.gateway.close();
    host.middlewareSaw.length = 0;
    try {
      await request(host.server).get('/api/x');
      expect(host.middlewareSaw).toEqual(['/api/x']);
    } finally {
      await host.close();
    }
  });
});

describe('gateway.listen()', () => {
  it('serves every request at the root, without Express', async () => {
    const gateway = createGateway(config());
    try {
      const server = await gateway.listen(0, '127.0.0.1');
      const res = await request(server).get('/probe/users/1?x=2');
      expect(res.status).toBe(200);
      expect((res.body as Echo).url).toBe('/probe/users/1?x=2');
      expect(seen.at(-1)).toMatchObject({
        url: '/probe/users/1?x=2',
        plainReq: true,
        plainRes: true,
      });
    } finally {
      await gateway.close();
    }
  });

  it('assigns X-Request-ID', async () => {
    const gateway = createGateway(config());
    try {
      const server = await gateway.listen(0, '127.0.0.1');
      const res = await request(server).get('/x').set('X-Request-ID', 'given-1');
      expect(res.headers['x-request-id']).toBe('given-1');
      expect((res.body as Echo).headers['x-request-id']).toBe('given-1');
    } finally {
      await gateway.close();
    }
  });

  it('routes WebSocket upgrades', async () => {
    const gateway = createGateway(config());
    try {
      const server = await gateway.listen(0, '127.0.0.1');
      const { port } = server.address() as AddressInfo;
      const ws = await open(`ws://127.0.0.1:${port}/ws/chat`);
      try {
        expect(await echoOver(ws, 'over listen()')).toBe('over listen()');
      } finally {
        ws.close();
      }
    } finally {
      await gateway.close();
    }
  });

  it('rejects with EADDRINUSE when the port is taken', async () => {
    const taken = await listen(() => {});
    const gateway = createGateway(config());
    try {
      await expect(gateway.listen(taken.port, '127.0.0.1')).rejects.toMatchObject({
        code: 'EADDRINUSE',
      });
    } finally {
      await gateway.close();
      await taken.close();
    }
  });

  it('rejects a port that cannot work, naming it', async () => {
    const gateway = createGateway(config());
    try {
      await expect(gateway.listen(70000)).rejects.toMatchObject({ path: 'listen.port' });
    } finally {
      await gateway.close();
    }
  });

  it('close() closes its server, keep-alive connections and WebSockets too, and frees the port', async () => {
    const gateway = createGateway(config());
    const server = await gateway.listen(0, '127.0.0.1');
    const { port } = server.address() as AddressInfo;
    const agent = new http.Agent({ keepAlive: true });
    try {
      await new Promise<void>((resolve, reject) => {
        http
          .get({ port, host: '127.0.0.1', path: '/x', agent }, (res) => {
            res.resume();
            res.once('end', resolve);
          })
          .once('error', reject);
      });
      const ws = await open(`ws://127.0.0.1:${port}/ws/chat`);
      const wsClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      expect(Object.keys(agent.freeSockets)).toHaveLength(1); // kept alive, idle
      await gateway.close();
      await wsClosed;
      expect(server.listening).toBe(false);
      await waitFor(() => Object.keys(agent.freeSockets).length === 0);
      // The port is free again: another server takes it.
      const reuse = http.createServer();
      await new Promise<void>((resolve, reject) => {
        reuse.once('error', reject);
        reuse.listen(port, '127.0.0.1', resolve);
      });
      await new Promise<void>((resolve) => reuse.close(() => resolve()));
    } finally {
      agent.destroy();
      await gateway.close();
    }
  });

  it('refuses attach() of its own server, and listen() after close()', async () => {
    const gateway = createGateway(config());
    const server = await gateway.listen(0, '127.0.0.1');
    expect(() => gateway.attach(server, { path: '/' })).toThrow(/already attached/);
    await gateway.close();
    await expect(gateway.listen(0)).rejects.toThrow(/after close/);
  });
});

describe("leaving the gateway: a stage's next('route')", () => {
  it('reaches a host route registered after the gateway (the Express lane)', async () => {
    const host = await startHost(false);
    try {
      const res = await request(host.server).get('/api/leave/here');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        after: true,
        url: '/api/leave/here',
        originalUrl: '/api/leave/here',
      });
    } finally {
      await host.close();
    }
  });

  it('hands the request to the host app as it arrived (the direct lane)', async () => {
    const host = await startHost();
    host.middlewareSaw.length = 0;
    try {
      const res = await request(host.server).get('/api/leave/here');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        after: true,
        url: '/api/leave/here',
        originalUrl: '/api/leave/here',
      });
      expect(host.middlewareSaw).toEqual(['/api/leave/here']);
      expect(leaves).toBe(1); // not a second time when the host app reaches the gateway
    } finally {
      await host.close();
    }
  });

  it("is a 404 problem on the gateway's own server (listen())", async () => {
    const gateway = createGateway(config());
    try {
      const server = await gateway.listen(0, '127.0.0.1');
      const res = await request(server).get('/leave/here');
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({
        type: 'urn:turnpike:problem:route-not-found',
        requestId: res.headers['x-request-id'],
      });
    } finally {
      await gateway.close();
    }
  });
});
