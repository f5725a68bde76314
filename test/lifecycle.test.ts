import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import express from 'express';
import request from 'supertest';
import { createGateway, isConfigError, type GatewayConfig } from '@turnpike/gateway';
import { startEcho, startGateway } from './helpers/servers';

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

it('close() leaves nothing open: the process exits on its own afterwards', async () => {
  // In a process of its own, so that no other test's handles count.
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'close-exits.js')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += String(d)));
  child.stderr.on('data', (d: Buffer) => (err += String(d)));
  // Once everything is closed, an idle process exits at once; a leftover handle keeps it up.
  const closed = new Promise<void>((resolve) =>
    child.stdout.on('data', () => out.includes('closed') && resolve()),
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let timer: NodeJS.Timeout | undefined;
  const deadline = (ms: number) =>
    new Promise<'still running'>((resolve) => {
      timer = setTimeout(() => resolve('still running'), ms);
    });
  try {
    const first = await Promise.race([closed, exited, deadline(15_000)]);
    clearTimeout(timer);
    expect({ first, out, err }).not.toMatchObject({ first: 'still running' });
    const code = await Promise.race([exited, deadline(5000)]);
    expect({ code, err }).toEqual({ code: 0, err: '' });
    expect(out.trim()).toBe('closed');
  } finally {
    clearTimeout(timer);
    child.kill('SIGKILL');
  }
});

it.each(['use', 'get', 'route'] as const)(
  'refuses gateway.%s(): nothing added to the gateway could run',
  async (method) => {
    const gateway = createGateway({
      services: { a: { targets: ['http://127.0.0.1:1'] } },
      routes: [],
    });
    try {
      expect(() => (gateway[method] as (p: string) => unknown)('/x')).toThrow(
        new RegExp(`gateway\\.${method}\\(\\) is not supported`),
      );
    } finally {
      await gateway.close();
    }
  },
);

it.each<[string, unknown, string]>([
  ['an unknown key', { prefix: '/api' }, 'attach.options.prefix'],
  ['a path that is not a string', { path: 1 }, 'attach.options.path'],
  ['a path without a leading slash', { path: 'api' }, 'attach.options.path'],
])('refuses attach() options with %s, naming the field', async (_label, options, at) => {
  const gateway = createGateway({
    services: { a: { targets: ['http://127.0.0.1:1'] } },
    routes: [],
  });
  const server = http.createServer();
  try {
    let error: unknown;
    try {
      gateway.attach(server, options as never);
    } catch (err) {
      error = err;
    }
    expect(isConfigError(error)).toBe(true);
    expect((error as { path: string }).path).toBe(at);
  } finally {
    await gateway.close();
  }
});

it('is an express Router that Express calls directly', async () => {
  const echo = await startEcho();
  const gw = await startGateway({
    services: { echo: { targets: [echo.url] } },
    routes: [{ path: '/**', service: 'echo' }],
  });
  try {
    // A Router is on its prototype chain: Router.prototype on Express 5 (router 2, a class),
    // the Router function itself on Express 4 (whose routers inherit from it directly).
    const Router = express.Router as unknown as { prototype: { handle?: unknown } };
    const base = typeof Router.prototype.handle === 'function' ? Router.prototype : Router;
    const chain: unknown[] = [];
    for (let p: unknown = Object.getPrototypeOf(gw.gateway); p; p = Object.getPrototypeOf(p))
      chain.push(p);
    expect(chain.includes(base)).toBe(true);
    const res = await request(gw.running.server).get('/api/x');
    expect(res.status).toBe(200);
  } finally {
    await gw.close();
    await echo.close();
  }
});

it('close() can be called twice', async () => {
  const gateway = createGateway({
    services: { a: { targets: ['http://127.0.0.1:1'] } },
    routes: [],
  });
  await gateway.close();
  await expect(gateway.close()).resolves.toBeUndefined();
});

it('works with a deep-frozen config and never modifies it', async () => {
  const echo = await startEcho();
  const config: GatewayConfig = {
    services: { echo: { targets: [echo.url, { url: echo.url, weight: 2 }], timeoutMs: 5000 } },
    routes: [
      {
        path: '/users/:id',
        service: 'echo',
        methods: ['GET'],
        stripPrefix: '/users',
        requestHeaders: { set: { 'x-a': 'b' } },
      },
    ],
  };
  const copy = JSON.parse(JSON.stringify(config)) as unknown;
  deepFreeze(config);
  const gw = await startGateway(config);
  try {
    const res = await request(gw.running.server).get('/api/users/1');
    expect(res.status).toBe(200);
    expect(JSON.parse(JSON.stringify(config))).toEqual(copy);
  } finally {
    await gw.close();
    await echo.close();
  }
});

it('refuses a wrong config at creation, naming the field, the value and what was expected', () => {
  let error: unknown;
  try {
    createGateway({
      services: { users: { targets: ['http://127.0.0.1:9000'] } },
      routes: [{ path: '/users/**', service: 'users', stripPrefix: 42 as unknown as string }],
    });
  } catch (e) {
    error = e;
  }
  expect(isConfigError(error)).toBe(true);
  expect((error as Error).message).toBe(
    'Invalid Turnpike config at routes[0].stripPrefix: expected a path prefix starting with "/" and not ending with "/", e.g. "/users", got 42 (number)',
  );
});

it('refuses a route that names an unknown service', () => {
  expect(() =>
    createGateway({
      services: { users: { targets: ['http://127.0.0.1:9000'] } },
      routes: [{ path: '/orders/**', service: 'orders' }],
    }),
  ).toThrow(
    /routes\[0\]\.service: expected the name of a configured service \(one of users\), got "orders"/,
  );
});

it('refuses trustProxy: true', () => {
  expect(() =>
    createGateway({
      services: { users: { targets: ['http://127.0.0.1:9000'] } },
      routes: [],
      trustProxy: true as never,
    }),
  ).toThrow(/at trustProxy: .*true trusts every client and is refused/);
});

it('reports each request once to gateway.onOutcome until the listener is disposed', async () => {
  const echo = await startEcho();
  const gw = await startGateway({
    services: { echo: { targets: [echo.url] } },
    routes: [{ path: '/**', service: 'echo', name: 'all' }],
  });
  const seen: string[] = [];
  const dispose = gw.gateway.onOutcome((o) => seen.push(`${o.kind} ${o.status} ${o.route.name}`));
  try {
    expect((await request(gw.running.server).get('/api/x')).status).toBe(200);
    expect(seen).toEqual(['complete 200 all']);
    dispose();
    expect((await request(gw.running.server).get('/api/x')).status).toBe(200);
    expect(seen).toEqual(['complete 200 all']);
  } finally {
    await gw.close();
    await echo.close();
  }
});
