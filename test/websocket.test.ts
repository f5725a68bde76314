import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { rawRequest } from './helpers/raw';
import {
  listen,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

let upstream: Running;
let wss: WebSocketServer;
let lastUpgrade: IncomingMessage | undefined;
let gw: GatewayHarness;
let hostWss: WebSocketServer;

beforeAll(async () => {
  upstream = await listen((_req, res) => res.end('plain http'));
  wss = new WebSocketServer({ server: upstream.server });
  wss.on('connection', (socket, req) => {
    lastUpgrade = req;
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  gw = await startGateway({
    services: { ws: { targets: [upstream.url] } },
    routes: [
      { path: '/ws/**', service: 'ws', websocket: true, stripPrefix: '/ws' },
      { path: '/plain/**', service: 'ws' },
    ],
  });
  // The host app's own WebSocket endpoint, outside the gateway's mount.
  hostWss = new WebSocketServer({ noServer: true });
  hostWss.on('connection', (socket) => socket.send('host'));
  gw.running.server.on('upgrade', (req: IncomingMessage, socket, head) => {
    if (req.url === '/host-ws')
      hostWss.handleUpgrade(req, socket, head, (ws) => hostWss.emit('connection', ws, req));
  });
});
afterAll(async () => {
  await gw.close();
  hostWss.close();
  wss.close();
  await upstream.close();
});

function open(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function refusal(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      resolve(res.statusCode!);
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => reject(new Error('upgrade was accepted')));
    ws.once('error', () => {});
  });
}

const wsBase = () => `ws://127.0.0.1:${gw.running.port}`;

it('echoes through the gateway under the mount path, with no HTTP request before', async () => {
  const ws = await open(`${wsBase()}/api/ws/chat?room=1`);
  try {
    const reply = new Promise<string>((resolve) =>
      ws.once('message', (d: Buffer) => resolve(d.toString())),
    );
    ws.send('hello');
    expect(await reply).toBe('hello');
    expect(lastUpgrade?.url).toBe('/chat?room=1');
  } finally {
    ws.close();
  }
});

it('applies the same header hygiene to upgrades', async () => {
  const ws = await open(`${wsBase()}/api/ws/h`, {
    'X-User-Id': 'admin',
    'X-Forwarded-For': '6.6.6.6',
  });
  try {
    expect(lastUpgrade?.headers['x-user-id']).toBeUndefined();
    expect(lastUpgrade?.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(lastUpgrade?.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  } finally {
    ws.close();
  }
});

it('answers an upgrade on a route without websocket: true as plain HTTP (RFC 9110 §7.8)', async () => {
  lastUpgrade = undefined;
  // The upstream's HTTP answer, not a tunnel: the upstream never sees an upgrade request.
  expect(await refusal(`${wsBase()}/api/plain/x`)).toBe(200);
  expect(lastUpgrade).toBeUndefined();
});

it('answers an Upgrade other than websocket (h2c) on a WebSocket route as plain HTTP', async () => {
  lastUpgrade = undefined;
  const res = await rawRequest(
    gw.running.port,
    'GET /api/ws/x HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade, HTTP2-Settings\r\n' +
      'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
  );
  expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: 'plain http' });
  expect(lastUpgrade).toBeUndefined();
});

it('refuses an upgrade on an unknown path under the mount', async () => {
  expect(await refusal(`${wsBase()}/api/nowhere`)).toBe(404);
});

it('refuses an upgrade whose path the policy rejects', async () => {
  expect(await refusal(`${wsBase()}/api/ws/a%2fb`)).toBe(400);
});

it('leaves upgrades outside the mount to the host', async () => {
  const ws = new WebSocket(`${wsBase()}/host-ws`);
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

it('closes open WebSockets on close()', async () => {
  const other = await startGateway({
    services: { ws: { targets: [upstream.url] } },
    routes: [{ path: '/**', service: 'ws', websocket: true }],
  });
  const ws = await open(`ws://127.0.0.1:${other.running.port}/api/x`);
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  await other.gateway.close();
  await closed;
  expect(ws.readyState).toBe(WebSocket.CLOSED);
  await other.running.close();
});

it('attach() refuses a server whose app does not mount the gateway, naming the fix', async () => {
  const { createGateway } = await import('@turnpike/gateway');
  const gateway = createGateway({ services: { ws: { targets: [upstream.url] } }, routes: [] });
  const server = http.createServer();
  expect(() => gateway.attach(server)).toThrow(/attach\(server, \{ path: '\/api' \}\)/);
  await gateway.close();
});

it('attach(server, { path }) works without discovery', async () => {
  const { createGateway } = await import('@turnpike/gateway');
  const gateway = createGateway({
    services: { ws: { targets: [upstream.url] } },
    routes: [{ path: '/**', service: 'ws', websocket: true }],
  });
  const running = await listen((req, res) => {
    req.url = req.url!.replace(/^\/edge/, '') || '/';
    gateway(req as never, res as never, () => res.end());
  });
  gateway.attach(running.server, { path: '/edge' });
  try {
    const ws = await open(`ws://127.0.0.1:${running.port}/edge/echo`);
    const reply = new Promise<string>((resolve) =>
      ws.once('message', (d: Buffer) => resolve(d.toString())),
    );
    ws.send('ping');
    expect(await reply).toBe('ping');
    ws.close();
    await waitFor(() => ws.readyState === WebSocket.CLOSED);
  } finally {
    await gateway.close();
    await running.close();
  }
});
