import http from 'node:http';
import { Socket } from 'node:net';
import path from 'node:path';
import * as express from 'express';
import * as hpm from 'http-proxy-middleware';
import * as balancerModule from '@turnpike/balancer';
import type { Balancer } from '@turnpike/balancer';
import { listen, waitFor, type Running } from '../../../test/helpers/servers';
import { edited, readReadme, runExample } from '../../../test/helpers/readme';

const MODULES = {
  express: (express as { default?: unknown }).default ?? express,
  'http-proxy-middleware': hpm,
  '@turnpike/balancer': balancerModule,
};
const run = (code: string): Record<string, unknown> => runExample(code, MODULES);

const { codeAfter } = readReadme(path.join(__dirname, '..', 'README.md'));

interface Upstream extends Running {
  health: number;
  app: number;
  served: number;
}

const running: Running[] = [];
const balancers: Balancer[] = [];

async function upstream(name: string): Promise<Upstream> {
  const state = { health: 200, app: 200, served: 0 };
  const server = await listen((req, res) => {
    if (req.url === '/health') {
      res.statusCode = state.health;
      res.end();
      return;
    }
    state.served++;
    res.statusCode = state.app;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ upstream: name, url: req.url }));
  });
  running.push(server);
  return Object.assign<typeof state, Running>(state, server);
}

afterEach(async () => {
  for (const b of balancers.splice(0)) b.close();
  await Promise.all(running.splice(0).map((r) => r.close()));
});

async function get(
  base: string,
  url: string,
): Promise<{ status: number; body: string; retryAfter: string | null }> {
  const res = await fetch(base + url, { headers: { connection: 'close' } });
  return { status: res.status, body: await res.text(), retryAfter: res.headers.get('retry-after') };
}

describe('README: the plain Express example with http-proxy-middleware', () => {
  it('balances, reports attempts, ejects a failing target, follows health checks, and answers 503', async () => {
    const a = await upstream('a');
    const b = await upstream('b');
    const code = edited(codeAfter('### With http-proxy-middleware'), [
      ["'http://10.0.0.1:8000'", `'${a.url}'`],
      ["'http://10.0.0.2:8000'", `'${b.url}'`],
      // Checks with room for a loaded machine: a timeout is a failure.
      ['intervalMs: 5000', 'intervalMs: 200'],
      ['app.listen(8080);', 'module.exports = { app, users };'],
    ]);
    const exported = run(code) as { app: http.RequestListener; users: Balancer };
    balancers.push(exported.users);
    const host = await listen(http.createServer(exported.app));
    running.push(host);

    // Round-robin over both, with the mount path stripped.
    const bodies: { upstream: string; url: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await get(host.url, '/users/42?x=1');
      expect({ ...res, st: exported.users.status(), t: exported.users.targets }).toMatchObject({
        status: 200,
      });
      bodies.push(JSON.parse(res.body) as { upstream: string; url: string });
    }
    expect(bodies.map((x) => x.upstream)).toEqual(['a', 'b', 'a', 'b']);
    expect(bodies[0]!.url).toBe('/42?x=1');
    await waitFor(() => exported.users.status().every((s) => s.inFlight === 0));

    // b fails real traffic: 5 failures in a row (503) eject it; a takes everything.
    b.app = 503;
    const ejected: string[] = [];
    exported.users.onEject((e) => ejected.push(e.target.url));
    for (let i = 0; i < 20 && ejected.length === 0; i++) await get(host.url, '/users/x');
    expect(ejected).toEqual([b.url]);
    expect(b.served).toBe(2 + 5);
    expect(exported.users.status()[1]).toMatchObject({ state: 'ejected', ejections: 1 });
    const servedByA = a.served;
    for (let i = 0; i < 3; i++) expect((await get(host.url, '/users/y')).status).toBe(200);
    expect(a.served).toBe(servedByA + 3);

    // a fails its health checks: no target is usable, the app answers 503 with Retry-After.
    a.health = 500;
    await waitFor(() => exported.users.status()[0]!.state === 'unhealthy');
    const none = await get(host.url, '/users/z');
    expect(none.status).toBe(503);
    expect(Number(none.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(a.served).toBe(servedByA + 3);

    // a recovers after 2 passing checks.
    a.health = 200;
    await waitFor(() => exported.users.hasHealthy());
    expect((await get(host.url, '/users/again')).status).toBe(200);

    // A refused connection is reported too: the in-flight count goes back to 0.
    await a.close();
    const refused = await get(host.url, '/users/gone');
    expect(refused.status).toBe(502);
    await waitFor(() => exported.users.status()[0]!.inFlight === 0);
    expect(exported.users.status()[0]!.consecutiveFailures).toBeGreaterThanOrEqual(1);
  });

  it('runs the own-strategy example', () => {
    const exported = run(
      edited(codeAfter('### Your own strategy'), [
        ["healthCheck: { path: '/health' },", ''],
        [
          'const balancer = createBalancer(',
          'const balancer = module.exports.balancer = createBalancer(',
        ],
      ]),
    ) as { balancer: Balancer };
    balancers.push(exported.balancer);
    const req = new http.IncomingMessage(new Socket());
    expect(exported.balancer.pick(req)?.url).toBe('http://primary:8000');
    expect(exported.balancer.pick(req, exported.balancer.targets.slice(0, 1))?.url).toBe(
      'http://standby:8000',
    );
  });
});
