import type { Middleware, Outcome, RouterOptions } from '@turnpike/router';
import {
  closersAfterEach,
  configErrorOfAsync,
  countConnections,
  fetchResponse,
  gate,
  recordOutcomes,
  startRouter,
  type Gate,
} from './helpers/outcomes';
import { listen, waitFor, type Running } from './helpers/servers';

const closers = closersAfterEach();

/** An upstream answering its name; with a gate, each answer waits for it to open. */
async function named(name: string, held?: Gate): Promise<Running & { requests: () => number }> {
  let requests = 0;
  const up = await listen((req, res) => {
    requests++;
    req.resume();
    const answer = (): void => {
      res.setHeader('content-type', 'text/plain');
      res.end(name);
    };
    if (held === undefined || held.opened) answer();
    else void held.promise.then(answer);
  });
  // Idle connections are closed by the gateway's pool, not by the upstream's own timer.
  up.server.keepAliveTimeout = 60_000;
  closers.push(() => up.close());
  return { ...up, requests: () => requests };
}

/** Router options: one catch-all route to `target`, kept-alive connections that do not idle out. */
function config(target: string, extra: Partial<RouterOptions> = {}): RouterOptions {
  return {
    services: { svc: { target, timeoutMs: 20_000, agent: { freeSocketTimeoutMs: 60_000 } } },
    routes: [{ path: '/**', service: 'svc' }],
    ...extra,
  };
}

describe('reload() swaps the snapshot under load', () => {
  it('lets 200 requests in flight finish on A, sends new ones to B, resolves after, and closes A', async () => {
    const N = 200;
    const held = gate();
    const a = await named('A', held);
    const b = await named('B');
    const aConns = countConnections(a.server);
    const h = await startRouter(config(a.url));
    closers.push(() => h.close());
    const outcomes: Outcome[] = [];
    h.router.onOutcome((o) => outcomes.push(o));
    const fromA = (o: Outcome): boolean => o.attempt?.target.host === `127.0.0.1:${a.port}`;

    const inflight = Array.from({ length: N }, (_, i) => fetchResponse(`${h.url}/old/${i}`));
    await waitFor(() => a.requests() === N, 10_000);

    let resolved = false;
    let completeFromAAtResolve = -1;
    const reloading = h.router.reload(config(b.url)).then(() => {
      resolved = true;
      completeFromAAtResolve = outcomes.filter((o) => fromA(o) && o.kind === 'complete').length;
    });

    // The new snapshot serves new requests at once; the old requests still wait on A.
    const fresh = await fetchResponse(`${h.url}/new`);
    expect(fresh.status).toBe(200);
    expect(fresh.body.toString()).toBe('B');
    expect(resolved).toBe(false);
    expect(outcomes.filter(fromA)).toHaveLength(0);

    held.open();
    const results = await Promise.all(inflight);
    expect(results.map((r) => r.status)).toEqual(Array<number>(N).fill(200));
    expect(results.every((r) => r.body.toString() === 'A' && r.clean)).toBe(true);

    await reloading;
    expect(completeFromAAtResolve).toBe(N);
    expect(outcomes.filter(fromA).map((o) => o.kind)).toEqual(Array<string>(N).fill('complete'));
    // The old pool is closed: A's connections go, well before any idle timer would end them.
    await waitFor(() => aConns.open === 0, 3000);
    expect(aConns.total).toBeGreaterThan(0);

    // And B keeps serving, A gets nothing more.
    const after = await fetchResponse(`${h.url}/later`);
    expect(after.body.toString()).toBe('B');
    expect(a.requests()).toBe(N);
  });

  it('resolves at once when nothing is in flight, and closes the idle connections of the old pool', async () => {
    const a = await named('A');
    const b = await named('B');
    const aConns = countConnections(a.server);
    const h = await startRouter(config(a.url));
    closers.push(() => h.close());
    expect((await fetchResponse(`${h.url}/x`)).body.toString()).toBe('A');
    expect(aConns.open).toBe(1);

    await h.router.reload(config(b.url));
    await waitFor(() => aConns.open === 0, 3000);
    expect((await fetchResponse(`${h.url}/x`)).body.toString()).toBe('B');
  });

  it('keeps the outcome listeners: requests on the new snapshot are reported', async () => {
    const a = await named('A');
    const b = await named('B');
    const h = await startRouter(config(a.url));
    closers.push(() => h.close());
    const log = recordOutcomes(h.router);
    await fetchResponse(`${h.url}/x`);
    await h.router.reload(config(b.url));
    await fetchResponse(`${h.url}/y`);
    await waitFor(() => log.list.length === 2);
    expect(log.list.map((o) => o.attempt?.target.host)).toEqual([
      `127.0.0.1:${a.port}`,
      `127.0.0.1:${b.port}`,
    ]);
  });

  it("closes the old snapshot's stages once its last request has ended, not before", async () => {
    const held = gate();
    const a = await named('A', held);
    const b = await named('B');
    let closes = 0;
    const stage = Object.assign(((_req, _res, next) => next()) as Middleware, {
      close: () => void closes++,
    });
    const h = await startRouter(config(a.url, { stages: () => [stage] }));
    closers.push(() => h.close());

    const pending = fetchResponse(`${h.url}/slow`);
    await waitFor(() => a.requests() === 1);
    const reloading = h.router.reload(config(b.url));
    expect((await fetchResponse(`${h.url}/x`)).body.toString()).toBe('B');
    expect(closes).toBe(0);

    held.open();
    expect((await pending).body.toString()).toBe('A');
    await reloading;
    expect(closes).toBe(1);
  });
});

it("close() during a reload does not wait for the old snapshot's requests: it closes its pools too", async () => {
  const held = gate();
  const a = await named('A', held);
  const b = await named('B');
  const aConns = countConnections(a.server);
  const h = await startRouter(config(a.url));
  closers.push(() => h.close());
  closers.push(() => held.open()); // first of the closers: nothing waits on A any more

  const pending = fetchResponse(`${h.url}/slow`).catch((err: unknown) => err);
  await waitFor(() => a.requests() === 1);
  const reloading = h.router.reload(config(b.url)).catch((err: unknown) => err);

  let closed = false;
  const closing = h.router.close().then(() => (closed = true));
  // A is still holding its answer: only close() can end that connection now.
  await waitFor(() => aConns.open === 0, 3000);
  await waitFor(() => closed, 3000);
  await closing;
  await reloading;
  await pending;
});

describe('reload() with a config that cannot work', () => {
  it('rejects with a ConfigError and the old routes keep serving', async () => {
    const a = await named('A');
    const h = await startRouter(config(a.url));
    closers.push(() => h.close());
    const before = h.router.routes;

    const err = await configErrorOfAsync(
      h.router.reload({
        services: { svc: { target: a.url } },
        routes: [{ path: '/**', service: 'nope' }],
      }),
    );
    expect(err.path).toBe('routes[0].service');
    expect(h.router.routes).toBe(before);
    const res = await fetchResponse(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('A');
  });

  it('rejects a bad target before anything changes', async () => {
    const a = await named('A');
    const h = await startRouter(config(a.url));
    closers.push(() => h.close());
    const err = await configErrorOfAsync(h.router.reload(config('ftp://example.test')));
    expect(err.path).toBe('services.svc.target');
    expect((await fetchResponse(`${h.url}/x`)).body.toString()).toBe('A');
  });

  it('closes the stages it built for a reload that failed', async () => {
    const a = await named('A');
    const h = await startRouter(config(a.url));
    closers.push(() => h.close());
    let built = 0;
    let closes = 0;
    const failing: RouterOptions = {
      services: { svc: { target: a.url } },
      routes: [
        { path: '/one', service: 'svc' },
        { path: '/two', service: 'svc' },
      ],
      stages: (route) => {
        if (route.index === 1) throw new Error('the second route cannot have its stages');
        built++;
        const stage: Middleware = (_req, _res, next) => next();
        return [Object.assign(stage, { close: () => void closes++ })];
      },
    };
    await expect(h.router.reload(failing)).rejects.toThrow(/second route/);
    expect(built).toBe(1);
    // The old snapshot still serves; the stage built for the one that never was is closed.
    expect((await fetchResponse(`${h.url}/x`)).body.toString()).toBe('A');
    await waitFor(() => closes === built, 2000);
  });

  it('rejects after close()', async () => {
    const a = await named('A');
    const h = await startRouter(config(a.url));
    await h.close();
    await expect(h.router.reload(config(a.url))).rejects.toThrow(/after close/);
  });
});

it('router.routes reflects the current snapshot', async () => {
  const a = await named('A');
  const b = await named('B');
  const h = await startRouter(config(a.url));
  closers.push(() => h.close());
  const before = h.router.routes;
  expect(before.map((r) => [r.name, r.path, r.service])).toEqual([['/**', '/**', 'svc']]);

  await h.router.reload({
    services: { b: { target: b.url } },
    routes: [
      { path: '/v2/**', service: 'b', name: 'v2' },
      { path: '/health', service: 'b' },
    ],
  });
  expect(h.router.routes.map((r) => [r.name, r.path, r.service])).toEqual([
    ['v2', '/v2/**', 'b'],
    ['/health', '/health', 'b'],
  ]);
  // The list read before is the old snapshot's, unchanged.
  expect(before.map((r) => r.path)).toEqual(['/**']);
  expect(Object.isFrozen(h.router.routes)).toBe(true);
  // The new table is the one that routes.
  expect((await fetchResponse(`${h.url}/v2/x`)).body.toString()).toBe('B');
  expect((await fetchResponse(`${h.url}/x`)).status).toBe(404);
});
