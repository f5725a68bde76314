import http from 'node:http';
import net from 'node:net';
import express from 'express';
import request from 'supertest';
import { WebSocketServer } from 'ws';
import { clientIp, createRouter, type Middleware } from '@turnpike/router';
import { listen, startEcho, startGateway, type Echo, type Running } from './helpers/servers';

let echo: Running;
beforeAll(async () => {
  echo = await startEcho();
});
afterAll(() => echo.close());

/** A plain Express app: the router at /api with `stages`, and a host route after it. */
async function hostWith(stages: Middleware[], trustProxy?: number) {
  const router = createRouter({
    services: { echo: { target: echo.url } },
    routes: [{ path: '/**', service: 'echo' }],
    stages: () => stages,
    ...(trustProxy === undefined ? {} : { trustProxy }),
  });
  const app = express();
  app.use('/api', router);
  app.use('/api', (_req, res) => {
    res.json({ host: true });
  });
  const running = await listen(http.createServer(app));
  return {
    running,
    close: async () => {
      await router.close();
      await running.close();
    },
  };
}

describe('a stage calling next("route")', () => {
  it.each(['route', 'router'])(
    'next(%j) leaves the router for the host app, not a 500',
    async (arg) => {
      const host = await hostWith([(_req, _res, next) => next(arg)]);
      try {
        const res = await request(host.running.server).get('/api/x');
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ host: true });
      } finally {
        await host.close();
      }
    },
  );
});

describe('clientIp', () => {
  it('is what the router computed from trustProxy, while req.ip is the proxy view', async () => {
    let seen: { clientIp: string; prop: unknown; ip: unknown } | undefined;
    const host = await hostWith(
      [
        (req, _res, next) => {
          seen = {
            clientIp: clientIp(req),
            prop: (req as { clientIp?: unknown }).clientIp,
            ip: (req as { ip?: unknown }).ip,
          };
          next();
        },
      ],
      1,
    );
    try {
      const res = await request(host.running.server)
        .get('/api/x')
        .set('X-Forwarded-For', '203.0.113.9');
      expect(res.status).toBe(200);
      expect(seen).toEqual({ clientIp: '203.0.113.9', prop: '203.0.113.9', ip: '127.0.0.1' });
      expect((res.body as Echo).headers['x-real-ip']).toBe('203.0.113.9');
    } finally {
      await host.close();
    }
  });

  it('is the socket address for a request the router has not seen', () => {
    const req = { socket: { remoteAddress: '198.51.100.7' } } as unknown as http.IncomingMessage;
    expect(clientIp(req)).toBe('198.51.100.7');
  });
});

describe('WebSocket bytes sent right after the upgrade request', () => {
  it('reach the upstream: the bytes Node read past the head are not lost', async () => {
    const upstream = await listen((_req, res) => res.end('plain'));
    const wss = new WebSocketServer({ server: upstream.server });
    wss.on('connection', (socket) =>
      socket.on('message', (d: Buffer) => socket.send(d.toString())),
    );
    const gw = await startGateway({
      services: { ws: { targets: [upstream.url] } },
      routes: [{ path: '/ws', service: 'ws', websocket: true }],
    });
    const client = net.connect(gw.running.port, '127.0.0.1');
    try {
      // The handshake and a masked text frame "early" in one write.
      const payload = Buffer.from('early');
      const mask = Buffer.from([1, 2, 3, 4]);
      const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
      const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
      const head =
        'GET /api/ws HTTP/1.1\r\nHost: gateway.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
      const received: Buffer[] = [];
      const echoed = new Promise<string>((resolve, reject) => {
        client.on('data', (c: Buffer) => {
          received.push(c);
          const all = Buffer.concat(received);
          const end = all.indexOf('\r\n\r\n');
          if (end === -1 || all.length < end + 4 + 2 + payload.length) return;
          const body = all.subarray(end + 4);
          resolve(body.subarray(2, 2 + body[1]!).toString());
        });
        client.once('error', reject);
      });
      client.write(Buffer.concat([Buffer.from(head), frame]));
      expect(await echoed).toBe('early');
      expect(Buffer.concat(received).toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
    } finally {
      client.destroy();
      await gw.close();
      wss.close();
      await upstream.close();
    }
  });
});
