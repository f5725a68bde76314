import http, { type IncomingMessage } from 'node:http';
import express from 'express';
import WebSocket, { WebSocketServer } from 'ws';
import { createGateway, type Gateway, type GatewayConfig } from '@turnpike/gateway';
import { rawRequest, type RawResponse } from './helpers/raw';
import { listen, startEcho, type Running } from './helpers/servers';

// Node emits 'upgrade' instead of 'request' for any request with an Upgrade header as soon
// as the server has one 'upgrade' listener, and attach() adds one. Outside the mount, with no
// upgrade listener of the host's own, such a request used to get no answer at all.

let upstream: Running;
let wss: WebSocketServer;

beforeAll(async () => {
  upstream = await startEcho('echo');
  wss = new WebSocketServer({ server: upstream.server });
  wss.on('connection', (socket) => socket.send('upstream'));
});
afterAll(async () => {
  wss.close();
  await upstream.close();
});

function config(): GatewayConfig {
  return {
    services: { echo: { targets: [upstream.url] } },
    routes: [
      { path: '/ws', service: 'echo', websocket: true },
      { path: '/**', service: 'echo' },
    ],
  };
}

interface Host {
  gateway: Gateway;
  running: Running;
  /** Paths seen by the host app's middleware. */
  hostSaw: { url: string; upgrade: string | undefined }[];
  close(): Promise<void>;
}

/** A host app (its own middleware and routes) with the gateway mounted at /api and attached. */
async function startHost(attach: { direct?: boolean } = {}): Promise<Host> {
  const hostSaw: Host['hostSaw'] = [];
  const app = express();
  app.use((req, res, next) => {
    hostSaw.push({ url: req.url, upgrade: req.headers.upgrade });
    res.setHeader('x-host-middleware', 'ran');
    next();
  });
  app.get('/host-route', (_req, res) => {
    res.json({ host: true });
  });
  const gateway = createGateway(config());
  app.use('/api', gateway);
  const running = await listen(http.createServer(app));
  gateway.attach(running.server, attach);
  return {
    gateway,
    running,
    hostSaw,
    async close() {
      await gateway.close();
      await running.close();
    },
  };
}

/** The head of a request that asks for an upgrade, as curl --http2 sends it on http://. */
function h2c(path: string, extra: string[] = []): string {
  return [
    `GET ${path} HTTP/1.1`,
    'Host: gateway.test',
    'Connection: Upgrade, HTTP2-Settings',
    'Upgrade: h2c',
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
    ...extra,
    '',
    '',
  ].join('\r\n');
}

/** `promise`, or a rejection once `ms` pass: an upgrade left unanswered would hang forever. */
function within<T>(promise: Promise<T>, ms = 3000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer and no close within ${ms} ms: the socket was left open`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Sends `text` and reads until the server closes the connection (within the deadline). */
function answered(port: number, text: string): Promise<RawResponse> {
  return within(rawRequest(port, text));
}

describe.each([
  ['attach(server)', {}],
  ['attach(server, { direct: true })', { direct: true }],
])('an Upgrade outside the mount, no upgrade listener of the host: %s', (_label, options) => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost(options);
  });
  afterAll(() => host.close());

  it('gets the host app’s plain HTTP answer (h2c), and the socket closes', async () => {
    const res = await answered(host.running.port, h2c('/host-route'));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ host: true });
    expect(res.headers['x-host-middleware']).toBe('ran');
    expect(res.headers.connection).toBe('close');
    expect(res.headers.upgrade).toBeUndefined();
  });

  it('is served as plain HTTP: the host does not see the Upgrade header', async () => {
    host.hostSaw.length = 0;
    await answered(host.running.port, h2c('/host-route?x=1'));
    expect(host.hostSaw).toEqual([{ url: '/host-route?x=1', upgrade: undefined }]);
  });

  it('gets the host’s own 404 for a path the host does not have', async () => {
    const res = await answered(host.running.port, h2c('/nowhere'));
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^text\/html/); // Express's, not a problem
    expect(res.headers['x-host-middleware']).toBe('ran');
  });

  it('answers a WebSocket handshake outside the mount as plain HTTP too', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${host.running.port}/host-route`);
    try {
      const status = await within(
        new Promise<number>((resolve, reject) => {
          ws.once('unexpected-response', (_req, res: IncomingMessage) => {
            res.resume();
            resolve(res.statusCode!);
          });
          ws.once('open', () => reject(new Error('upgrade was accepted')));
          ws.once('error', () => {});
        }),
      );
      expect(status).toBe(200);
    } finally {
      ws.terminate();
    }
  });

  it('refuses one with a body (it was not read): 400 problem, and the socket closes', async () => {
    const res = await answered(
      host.running.port,
      h2c('/host-route', ['Content-Type: text/plain', 'Content-Length: 5']).replace(
        /^GET/,
        'POST',
      ) + 'hello',
    );
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.body)).toMatchObject({
      type: 'urn:turnpike:problem:bad-request',
      requestId: res.headers['x-request-id'],
    });
  });

  it('still gives an Upgrade under the mount to the gateway, not to the host', async () => {
    host.hostSaw.length = 0;
    const res = await answered(host.running.port, h2c('/api/x'));
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers['x-host-middleware']).toBeUndefined();
    expect(host.hostSaw).toEqual([]);
  });
});

describe('an Upgrade outside the mount, with an upgrade listener of the host', () => {
  let host: Host;
  let hostWss: WebSocketServer;
  const hostUpgrades: string[] = [];
  beforeAll(async () => {
    host = await startHost();
    hostWss = new WebSocketServer({ noServer: true });
    hostWss.on('connection', (socket) => socket.send('host'));
    host.running.server.on('upgrade', (req: IncomingMessage, socket, head) => {
      hostUpgrades.push(req.url!);
      if (req.url === '/host-ws') {
        hostWss.handleUpgrade(req, socket, head, (ws) => hostWss.emit('connection', ws, req));
      } else if (req.url === '/host-route') {
        socket.end('HTTP/1.1 418 I am the host\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      }
    });
  });
  afterAll(async () => {
    hostWss.close();
    await host.close();
  });

  it('reaches that listener: a WebSocket on a host path', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${host.running.port}/host-ws`);
    try {
      const msg = await new Promise<string>((resolve, reject) => {
        ws.once('message', (d: Buffer) => resolve(d.toString()));
        ws.once('error', reject);
      });
      expect(msg).toBe('host');
    } finally {
      ws.close();
    }
  });

  it('is left to that listener alone: the host app is not called, the gateway does not answer', async () => {
    host.hostSaw.length = 0;
    const res = await answered(host.running.port, h2c('/host-route'));
    expect(res.status).toBe(418);
    expect(host.hostSaw).toEqual([]);
    expect(hostUpgrades).toContain('/host-route');
  });

  it('under the mount, the gateway still takes it', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${host.running.port}/api/ws`);
    try {
      const msg = await new Promise<string>((resolve, reject) => {
        ws.once('message', (d: Buffer) => resolve(d.toString()));
        ws.once('error', reject);
      });
      expect(msg).toBe('upstream');
    } finally {
      ws.close();
    }
  });
});

describe('two gateways on one server', () => {
  it('answer an Upgrade outside both mounts once, through the host app', async () => {
    const app = express();
    app.get('/host-route', (_req, res) => {
      res.json({ host: true });
    });
    const a = createGateway(config());
    const b = createGateway(config());
    app.use('/a', a);
    app.use('/b', b);
    const running = await listen(http.createServer(app));
    a.attach(running.server);
    b.attach(running.server, { direct: true });
    try {
      const res = await answered(running.port, h2c('/host-route'));
      expect(res.status).toBe(200);
      // One answer: a second one would follow the first body on the same connection.
      expect(JSON.parse(res.body)).toEqual({ host: true });
      for (const mount of ['/a', '/b']) {
        const ws = new WebSocket(`ws://127.0.0.1:${running.port}${mount}/ws`);
        try {
          const msg = await new Promise<string>((resolve, reject) => {
            ws.once('message', (d: Buffer) => resolve(d.toString()));
            ws.once('error', reject);
          });
          expect(msg).toBe('upstream');
        } finally {
          ws.close();
        }
      }
    } finally {
      await a.close();
      await b.close();
      await running.close();
    }
  });
});
