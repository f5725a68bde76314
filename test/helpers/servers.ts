import http, { type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import express, { type Express } from 'express';
import { createGateway, type Gateway, type GatewayConfig } from '@turnpike/gateway';

/** A server on an ephemeral port that can be closed with its open connections. */
export interface Running {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Starts `handler` (or a server, http or raw TCP) on 127.0.0.1, port 0. */
export async function listen(handler: RequestListener | Server | net.Server): Promise<Running> {
  const server = typeof handler === 'function' ? http.createServer(handler) : handler;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server: server as Server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** What the echo upstream saw. */
export interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  bodyLength: number;
  body: string;
  upstream: string;
}

/** An upstream that answers every request with JSON describing it (body up to 64 KiB shown). */
export function echoHandler(name = 'echo'): RequestListener {
  return (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (c: Buffer) => {
      length += c.length;
      if (length <= 65536) chunks.push(c);
    });
    req.on('end', () => {
      const echo: Echo = {
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyLength: length,
        body: Buffer.concat(chunks).toString('utf8'),
        upstream: name,
      };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(echo));
    });
  };
}

/** Starts an echo upstream. */
export function startEcho(name?: string): Promise<Running> {
  return listen(echoHandler(name));
}

/** A host Express app with its own route, the gateway mounted at `mount`. */
export interface GatewayHarness {
  app: Express;
  gateway: Gateway;
  running: Running;
  url: string;
  close(): Promise<void>;
}

/** Builds a host app around a gateway and starts it on port 0. */
export async function startGateway(
  config: GatewayConfig,
  options: { mount?: string; before?: (app: Express) => void; attach?: boolean } = {},
): Promise<GatewayHarness> {
  const mount = options.mount ?? '/api';
  const app = express();
  app.get('/host-route', (_req, res) => {
    res.json({ host: true });
  });
  options.before?.(app);
  const gateway = createGateway(config);
  app.use(mount, gateway);
  const running = await listen(http.createServer(app));
  if (options.attach !== false) gateway.attach(running.server);
  return {
    app,
    gateway,
    running,
    url: running.url + mount,
    async close() {
      await gateway.close();
      await running.close();
    },
  };
}

/** Polls `check` until it returns true or the deadline passes. */
export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met before the deadline');
    await new Promise((r) => setTimeout(r, 10));
  }
}
