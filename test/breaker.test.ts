import http from 'node:http';
import type { StateChangeEvent } from '@turnpike/breaker';
import { createGateway, type GatewayConfig, type Outcome } from '@turnpike/gateway';
import { attemptsAfterEach, hold, reply, send, type Answer, type Hit } from './helpers/attempts';
import { configErrorOf } from './helpers/expectations';
import { recordingLogger } from './helpers/outcomes';
import { waitFor } from './helpers/servers';
import { deadPort } from './helpers/upstreams';

const { closers, up, gateway: gatewayOf } = attemptsAfterEach();

/** An upstream whose status the test sets as it goes. */
function switchable(initial: number): { answer: Answer; set(status: number): void } {
  let status = initial;
  return {
    answer: (hit) => reply(status)(hit),
    set: (s) => (status = s),
  };
}

/** One service `svc` on `targets`, one catch-all route; `service` and `route` keys added. */
function config(
  targets: string[],
  service: Record<string, unknown>,
  route: Record<string, unknown> = {},
  more: Partial<GatewayConfig> = {},
): GatewayConfig {
  return {
    services: { svc: { targets, ...service } },
    routes: [{ path: '/**', service: 'svc', ...route }],
    ...more,
  };
}

/** Sends `n` requests one after another; returns their statuses. */
async function sendMany(
  url: string,
  n: number,
  init: Parameters<typeof send>[1] = {},
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(url, init)).status);
  return out;
}

function problemType(body: Buffer): string {
  return (JSON.parse(body.toString('utf8')) as { type: string }).type;
}

describe('a service circuit in the gateway (consecutive failures)', () => {
  it('opens after failureThreshold 500s: then 503 circuit-open with Retry-After, upstream not called', async () => {
    const u = await up('u', reply(500));
    const g = await gatewayOf(
      config([u.url], { breaker: { failureThreshold: 3, resetTimeoutMs: 20_000 } }),
    );
    expect(await sendMany(`${g.url}/x`, 3)).toEqual([500, 500, 500]);
    expect(u.hits).toHaveLength(3);
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(problemType(res.body)).toBe('urn:turnpike:problem:circuit-open');
    const retryAfter = Number(res.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(19);
    expect(retryAfter).toBeLessThanOrEqual(20);
    expect(u.hits).toHaveLength(3); // not called
    expect(g.gateway.breaker('svc')!.state.kind).toBe('open');
  });

  it('does not count 4xx answers, nor 501', async () => {
    const s = switchable(404);
    const u = await up('u', s.answer);
    const g = await gatewayOf(config([u.url], { breaker: { failureThreshold: 2 } }));
    expect(await sendMany(`${g.url}/x`, 5)).toEqual([404, 404, 404, 404, 404]);
    s.set(429);
    expect(await sendMany(`${g.url}/x`, 3)).toEqual([429, 429, 429]);
    s.set(501);
    expect(await sendMany(`${g.url}/x`, 3)).toEqual([501, 501, 501]);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
    expect(u.hits).toHaveLength(11);
  });

  it('a success between failures resets the count', async () => {
    const s = switchable(500);
    const u = await up('u', s.answer);
    const g = await gatewayOf(config([u.url], { breaker: { failureThreshold: 2 } }));
    await send(`${g.url}/x`);
    s.set(200);
    await send(`${g.url}/x`);
    s.set(500);
    await send(`${g.url}/x`);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
    await send(`${g.url}/x`);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('open');
  });

  it('a refused target opens it (the gateway 502s count as failures)', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const g = await gatewayOf(
      config([dead], { breaker: { failureThreshold: 2 }, outlier: false, retries: false }),
    );
    expect(await sendMany(`${g.url}/x`, 2)).toEqual([502, 502]);
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(503);
    expect(problemType(res.body)).toBe('urn:turnpike:problem:circuit-open');
  });

  it("a request's retries count as its one outcome: a retry that succeeds is a success", async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const u = await up('u');
    const g = await gatewayOf(
      config([dead, u.url], { breaker: { failureThreshold: 1 }, outlier: false }),
    );
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    // Round robin: every other request tries the dead target first, then retries on u.
    expect(await sendMany(`${g.url}/x`, 4)).toEqual([200, 200, 200, 200]);
    expect(outcomes.some((o) => o.retries === 1)).toBe(true);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
  });

  it('a client that goes away is not counted', async () => {
    const u = await up('u', hold);
    const g = await gatewayOf(config([u.url], { breaker: { failureThreshold: 1 } }));
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    for (let i = 0; i < 3; i++) {
      const req = http.get(`${g.url}/x`);
      req.on('error', () => {});
      const seen = u.hits.length;
      await waitFor(() => u.hits.length > seen);
      req.destroy();
      await waitFor(() => outcomes.length > i);
    }
    expect(outcomes.map((o) => o.kind)).toEqual(['client-gone', 'client-gone', 'client-gone']);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
  });

  it('a timeout counts', async () => {
    const u = await up('u', hold);
    const g = await gatewayOf(config([u.url], { breaker: { failureThreshold: 1 }, timeoutMs: 50 }));
    expect((await send(`${g.url}/x`)).status).toBe(504);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('open');
  });
});

describe('half-open: one probe after the reset time', () => {
  async function opened(resetTimeoutMs: number, extra: Record<string, unknown> = {}) {
    const s = switchable(500);
    const probes: Hit[] = [];
    let holdNext = false;
    const u = await up('u', (hit) => {
      if (holdNext) {
        probes.push(hit);
        return;
      }
      s.answer(hit);
    });
    const g = await gatewayOf(
      config([u.url], {
        breaker: { failureThreshold: 1, resetTimeoutMs, ...extra },
        outlier: false,
      }),
    );
    const events: StateChangeEvent[] = [];
    g.gateway.onBreakerStateChange((e) => events.push(e));
    expect((await send(`${g.url}/x`)).status).toBe(500);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('open');
    return { s, u, g, events, probes, holding: (on: boolean) => (holdNext = on) };
  }

  it('lets one probe through; the others get the open answer; its success closes', async () => {
    const { s, u, g, events, probes, holding } = await opened(200);
    s.set(200);
    holding(true);
    const circuit = g.gateway.breaker('svc')!;
    const until = (circuit.state as { until: number }).until;
    await waitFor(() => Date.now() >= until, 2000);
    const probe = send(`${g.url}/probe`);
    await waitFor(() => probes.length === 1);
    expect(circuit.state.kind).toBe('half-open');
    // While the probe is in flight, others are answered open, upstream not called.
    const others = await sendMany(`${g.url}/x`, 3);
    expect(others).toEqual([503, 503, 503]);
    expect(u.hits).toHaveLength(2);
    holding(false);
    reply(200)(probes[0]!);
    expect((await probe).status).toBe(200);
    expect(circuit.state.kind).toBe('closed');
    expect(await sendMany(`${g.url}/x`, 2)).toEqual([200, 200]);
    expect(events.map((e) => [e.service, e.from, e.to, e.reason])).toEqual([
      ['svc', 'closed', 'open', 'failure-threshold'],
      ['svc', 'open', 'half-open', 'reset-timeout'],
      ['svc', 'half-open', 'closed', 'probe-success'],
    ]);
  });

  it('a failed probe reopens it with a longer wait', async () => {
    const { g, events } = await opened(1000, { maxResetTimeoutMs: 60_000 });
    const circuit = g.gateway.breaker('svc')!;
    const first = circuit.state as { until: number; opens: number };
    expect(first.opens).toBe(1);
    await waitFor(() => Date.now() >= first.until, 3000);
    expect((await send(`${g.url}/x`)).status).toBe(500); // the probe, failing
    const second = circuit.state as { kind: string; until: number; opens: number };
    expect(second.kind).toBe('open');
    expect(second.opens).toBe(2);
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(503);
    expect(Number(res.headers['retry-after'])).toBe(2); // 1000 ms doubled
    expect(events.map((e) => e.reason)).toEqual([
      'failure-threshold',
      'reset-timeout',
      'probe-failure',
    ]);
  });
});

describe('the failure-rate mode', () => {
  const rate = { failureRate: 0.5, windowMs: 60_000, minimumRequests: 6 };

  it('never trips below minimumRequests, even at 100 % failures', async () => {
    const u = await up('u', reply(503));
    const g = await gatewayOf(config([u.url], { breaker: rate, outlier: false, retries: false }));
    expect(await sendMany(`${g.url}/x`, 5)).toEqual([503, 503, 503, 503, 503]);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
    expect(u.hits).toHaveLength(5);
  });

  it('trips once the volume is reached and the rate is', async () => {
    const s = switchable(200);
    const u = await up('u', s.answer);
    const g = await gatewayOf(config([u.url], { breaker: rate, outlier: false, retries: false }));
    expect(await sendMany(`${g.url}/x`, 3)).toEqual([200, 200, 200]);
    s.set(500);
    expect(await sendMany(`${g.url}/x`, 2)).toEqual([500, 500]);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed'); // 2 of 5
    expect((await send(`${g.url}/x`)).status).toBe(500); // 3 of 6: 50 %
    expect(g.gateway.breaker('svc')!.state.kind).toBe('open');
    expect((await send(`${g.url}/x`)).status).toBe(503);
    expect(u.hits).toHaveLength(6);
  });
});

describe('fallbacks', () => {
  it('a static fallback answers the open circuit, marked in a header and in the outcome', async () => {
    const u = await up('u', reply(500));
    const g = await gatewayOf(
      config([u.url], {
        breaker: {
          failureThreshold: 1,
          fallback: { status: 200, headers: { 'x-from': 'cache' }, body: { items: [] } },
        },
      }),
    );
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    expect((await send(`${g.url}/x`)).status).toBe(500); // without fallbackOnFailure: the upstream's
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ items: [] });
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-from']).toBe('cache');
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(res.headers['x-request-id']).toBeDefined();
    expect(u.hits).toHaveLength(1);
    await waitFor(() => outcomes.length === 2);
    expect(outcomes[0]!.fallback).toBeUndefined();
    expect(outcomes[1]).toMatchObject({ kind: 'stage', status: 200, fallback: 'circuit-open' });
    const head = await send(`${g.url}/x`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toHaveLength(0);
  });

  it('fallbackOnFailure answers an upstream 5xx and a refused target, and the circuit still counts them', async () => {
    const u = await up('u', reply(500));
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const fallback = { status: 200, body: 'stale but fine' };
    const g = await gatewayOf({
      services: {
        svc: {
          targets: [u.url],
          breaker: { failureThreshold: 2, fallback, fallbackOnFailure: true },
        },
        gone: {
          targets: [dead],
          outlier: false,
          breaker: { failureThreshold: 5, fallback, fallbackOnFailure: true },
        },
      },
      routes: [
        { path: '/svc/**', service: 'svc' },
        { path: '/gone/**', service: 'gone' },
      ],
    });
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    const res = await send(`${g.url}/svc/x`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('stale but fine');
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['x-turnpike-fallback']).toBe('upstream-failure');
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]).toMatchObject({
      kind: 'complete',
      status: 200,
      fallback: 'upstream-failure',
    });
    expect(outcomes[0]!.attempt!.status).toBe(500);
    await send(`${g.url}/svc/x`);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('open');
    const open = await send(`${g.url}/svc/x`);
    expect(open.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(u.hits).toHaveLength(2);

    const refused = await send(`${g.url}/gone/x`);
    expect(refused.status).toBe(200);
    expect(refused.headers['x-turnpike-fallback']).toBe('upstream-failure');
    await waitFor(() => outcomes.length === 4);
    expect(outcomes[3]).toMatchObject({
      kind: 'refused',
      status: 200,
      fallback: 'upstream-failure',
    });
  });

  it('a route fallback function overrides the service one and gets the reason', async () => {
    const u = await up('u', reply(500));
    const reasons: string[] = [];
    const g = await gatewayOf(
      config(
        [u.url],
        { breaker: { failureThreshold: 1, fallback: { status: 503, body: 'service' } } },
        {
          fallback: (_req: http.IncomingMessage, res: http.ServerResponse, reason: string) => {
            reasons.push(reason);
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.end(`route:${reason}`);
          },
        },
      ),
    );
    await send(`${g.url}/x`);
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('route:circuit-open');
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(reasons).toEqual(['circuit-open']);
  });

  it('a fallback that throws is a 500 problem, logged, and the gateway goes on', async () => {
    const u = await up('u', reply(500));
    const logger = recordingLogger();
    const g = await gatewayOf(
      config(
        [u.url],
        {
          breaker: {
            failureThreshold: 1,
            fallback: () => {
              throw new Error('fallback bug');
            },
          },
        },
        {},
        { logger },
      ),
    );
    await send(`${g.url}/x`);
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['x-turnpike-fallback']).toBeUndefined();
    expect(res.body.toString()).not.toContain('fallback bug');
    expect(logger.entries.some((e) => e.message === 'fallback failed')).toBe(true);
    expect((await send(`${g.url}/x`)).status).toBe(500);
  });
});

describe('per-route circuits', () => {
  it('breaker: false leaves a route unguarded; a route breaker has a circuit of its own', async () => {
    const u = await up('u', reply(500));
    const g = await gatewayOf({
      services: { svc: { targets: [u.url], breaker: { failureThreshold: 2 }, outlier: false } },
      routes: [
        { path: '/free/**', service: 'svc', breaker: false },
        { path: '/own/**', service: 'svc', breaker: { failureThreshold: 1 }, name: 'own' },
        { path: '/**', service: 'svc' },
      ],
    });
    const events: StateChangeEvent[] = [];
    g.gateway.onBreakerStateChange((e) => events.push(e));
    await send(`${g.url}/own/x`);
    expect(events).toEqual([expect.objectContaining({ service: 'svc', route: 'own', to: 'open' })]);
    expect((await send(`${g.url}/own/x`)).status).toBe(503);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed'); // the service's is untouched
    expect(await sendMany(`${g.url}/free/x`, 4)).toEqual([500, 500, 500, 500]);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
    expect(await sendMany(`${g.url}/x`, 3)).toEqual([500, 500, 503]);
  });
});

describe('the bulkhead', () => {
  it('caps requests in flight, queues up to maxQueue, and answers 503 overloaded past it', async () => {
    const held: Hit[] = [];
    const u = await up('u', (hit) => held.push(hit));
    const g = await gatewayOf(
      config([u.url], { bulkhead: { maxConcurrent: 2, maxQueue: 1, queueTimeoutMs: 10_000 } }),
    );
    const first = [send(`${g.url}/1`), send(`${g.url}/2`)];
    await waitFor(() => held.length === 2);
    const queued = send(`${g.url}/3`);
    await waitFor(() => g.gateway.bulkhead('svc')!.queued === 1);
    // The fourth finds the queue full.
    const over = await send(`${g.url}/4`);
    expect(over.status).toBe(503);
    expect(problemType(over.body)).toBe('urn:turnpike:problem:overloaded');
    expect(over.headers['retry-after']).toBe('1');
    expect(held).toHaveLength(2); // the queued one has not reached the upstream
    reply(200)(held[0]!);
    await waitFor(() => held.length === 3);
    expect(held[2]!.url).toBe('/3');
    for (const h of held.slice(1)) reply(200)(h);
    expect((await Promise.all([...first, queued])).map((r) => r.status)).toEqual([200, 200, 200]);
  });

  it('a queued request past queueTimeoutMs gets 503 overloaded', async () => {
    const u = await up('u', hold);
    const g = await gatewayOf(
      config([u.url], { bulkhead: { maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 100 } }),
    );
    const busy = http.get(`${g.url}/busy`);
    busy.on('error', () => {});
    closers.push(() => void busy.destroy());
    await waitFor(() => u.hits.length === 1);
    const res = await send(`${g.url}/waits`);
    expect(res.status).toBe(503);
    expect(problemType(res.body)).toBe('urn:turnpike:problem:overloaded');
    expect(u.hits).toHaveLength(1);
  });

  it('a client that leaves while queued frees its place', async () => {
    const held: Hit[] = [];
    const u = await up('u', (hit) => held.push(hit));
    const g = await gatewayOf(
      config([u.url], { bulkhead: { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 10_000 } }),
    );
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    const busy = send(`${g.url}/busy`);
    await waitFor(() => held.length === 1);
    const leaving = http.get(`${g.url}/leaving`);
    leaving.on('error', () => {});
    // It waits in the queue (a second queued request is refused now) …
    const bulkhead = g.gateway.bulkhead('svc')!;
    await waitFor(() => bulkhead.queued === 1);
    const full = await send(`${g.url}/refused`);
    expect(full.status).toBe(503);
    // … and leaves: its place is free for the next one.
    leaving.destroy();
    await waitFor(() => outcomes.some((o) => o.kind === 'client-gone'));
    expect(bulkhead.queued).toBe(0);
    const next = send(`${g.url}/next`);
    reply(200)(held[0]!);
    await waitFor(() => held.length === 2);
    expect(held.map((h) => h.url)).toEqual(['/busy', '/next']);
    reply(200)(held[1]!);
    expect((await busy).status).toBe(200);
    expect((await next).status).toBe(200);
  });
});

describe('config errors name the field', () => {
  const base = (service: Record<string, unknown>, route: Record<string, unknown> = {}) =>
    config(['http://127.0.0.1:1'], service, route);

  it.each<[string, GatewayConfig, string]>([
    [
      'a threshold of 0',
      base({ breaker: { failureThreshold: 0 } }),
      'services.svc.breaker.failureThreshold',
    ],
    ['a rate of 0', base({ breaker: { failureRate: 0 } }), 'services.svc.breaker.failureRate'],
    ['a rate above 1', base({ breaker: { failureRate: 1.2 } }), 'services.svc.breaker.failureRate'],
    [
      'a window shorter than a bucket',
      base({ breaker: { failureRate: 0.5, windowMs: 500, bucketMs: 1000 } }),
      'services.svc.breaker.windowMs',
    ],
    [
      'halfOpenRequests 0',
      base({ breaker: { halfOpenRequests: 0 } }),
      'services.svc.breaker.halfOpenRequests',
    ],
    [
      'a fallback string',
      base({ breaker: { fallback: 'sorry' } }),
      'services.svc.breaker.fallback',
    ],
    ['shared without redis', base({ breaker: { shared: true } }), 'services.svc.breaker.shared'],
    [
      'a bulkhead of 0',
      base({ bulkhead: { maxConcurrent: 0 } }),
      'services.svc.bulkhead.maxConcurrent',
    ],
    [
      'a route breaker whose merge is wrong',
      base({ breaker: { resetTimeoutMs: 5000 } }, { breaker: { maxResetTimeoutMs: 1000 } }),
      'routes[0].breaker.maxResetTimeoutMs',
    ],
    [
      'a route fallback without a circuit',
      base({}, { fallback: { body: 'x' } }),
      'routes[0].fallback',
    ],
    ['a redis that is no URL', { ...base({}), redis: 'localhost:6379' }, 'redis'],
  ])('%s', (_name, cfg, path) => {
    expect(configErrorOf(() => createGateway(cfg)).path).toBe(path);
  });
});
