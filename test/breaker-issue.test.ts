/**
 * The breaker issue, tested from its text alone: circuit breaking per service in the gateway
 * (closed, open, half-open; failures in a row or a failure rate; fallbacks), the bulkhead, the
 * standalone middleware in a plain Express app, and the checks at creation. Real upstream
 * servers on port 0, real sockets.
 */
import http from 'node:http';
import express from 'express';
import {
  bulkhead,
  circuitBreaker,
  type BreakerOptions,
  type CircuitBreaker,
  type StateChangeEvent,
} from '@turnpike/breaker';
import {
  createGateway,
  isConfigError,
  type ConfigError,
  type GatewayConfig,
  type Outcome,
  type RouteOptions,
  type ServiceConfig,
} from '@turnpike/gateway';
import {
  attemptsAfterEach,
  reply,
  resetAfterBody,
  send,
  type Hit,
  type Upstream,
  type Response,
} from './helpers/attempts';
import { recordingLogger } from './helpers/outcomes';
import { listen, waitFor, type GatewayHarness } from './helpers/servers';
import { deadPort } from './helpers/upstreams';

const { closers, up, gateway: startGateway } = attemptsAfterEach();

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** An upstream whose answer the test switches: a status, or 'hold' (kept in `held`). */
interface Switchable extends Upstream {
  set(mode: number | 'hold'): void;
  readonly held: Hit[];
}

async function switchable(name: string, initial: number | 'hold'): Promise<Switchable> {
  let mode = initial;
  const held: Hit[] = [];
  const u = await up(name, (hit) => {
    if (mode === 'hold') held.push(hit);
    else reply(mode)(hit);
  });
  return Object.assign(u, { held, set: (m: number | 'hold') => void (mode = m) });
}

/** A request the test can abandon: `leave()` destroys it (the client goes away). */
function pending(url: string): { response: Promise<Response>; leave(): void } {
  let req!: http.ClientRequest;
  const response = new Promise<Response>((resolve) => {
    req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = (clean: boolean): void =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(chunks),
          clean,
        });
      res.on('end', () => done(res.complete));
      res.on('aborted', () => done(false));
      res.on('error', () => done(false));
    });
    req.on('error', (error) =>
      resolve({ status: 0, headers: {}, body: Buffer.alloc(0), clean: false, error }),
    );
  });
  return { response, leave: () => req.destroy() };
}

/** Asserts a problem+json answer of `status` and type `urn:turnpike:problem:<slug>`. */
function expectProblem(res: Response, status: number, slug?: string): void {
  expect(res.status).toBe(status);
  expect(String(res.headers['content-type'])).toMatch(/^application\/problem\+json/);
  if (slug !== undefined) {
    const body = JSON.parse(res.body.toString('utf8')) as { type?: string };
    expect(body.type).toBe(`urn:turnpike:problem:${slug}`);
  }
}

/** Asserts the 503 of an open circuit: problem `circuit-open` with a whole-seconds Retry-After. */
function expectCircuitOpen(res: Response): void {
  expectProblem(res, 503, 'circuit-open');
  expect(String(res.headers['retry-after'])).toMatch(/^\d+$/);
  expect(res.headers['x-turnpike-fallback']).toBeUndefined();
}

/** Asserts the 503 of a full bulkhead: problem `overloaded` with a whole-seconds Retry-After. */
function expectOverloaded(res: Response): void {
  expectProblem(res, 503, 'overloaded');
  expect(String(res.headers['retry-after'])).toMatch(/^\d+$/);
}

function json(res: Response): unknown {
  return JSON.parse(res.body.toString('utf8'));
}

/** The time an open circuit turns half-open; fails when it is not open. */
function untilOf(breaker: CircuitBreaker): number {
  const state = breaker.state;
  if (state.kind !== 'open') throw new Error(`expected an open circuit, it is ${state.kind}`);
  return state.until;
}

/** Waits (polling, with a deadline) until an open circuit's reset time has passed. */
async function pastReset(breaker: CircuitBreaker): Promise<void> {
  const until = untilOf(breaker);
  await waitFor(() => Date.now() > until + 5, 5000);
}

type ServiceKeys = Omit<ServiceConfig, 'targets'>;

/** One service `svc` on `targets` (passive health off), a catch-all route unless `routes`. */
function configOf(
  targets: string[],
  service: ServiceKeys,
  routes: RouteOptions[] = [{ path: '/**', service: 'svc' }],
  more: Partial<GatewayConfig> = {},
): GatewayConfig {
  return {
    services: { svc: { targets, outlier: false, ...service } },
    routes,
    ...more,
  };
}

/** A started gateway with its outcomes and state changes recorded. */
interface Rig {
  gw: GatewayHarness;
  outcomes: Outcome[];
  events: StateChangeEvent[];
  /** When each event was heard (Date.now()). */
  heardAt: number[];
  /** The service `svc`'s circuit. */
  breaker(): CircuitBreaker;
  /** Sends one request under the mount and waits until its outcome is reported. */
  call(path?: string): Promise<Response>;
}

async function rig(config: GatewayConfig): Promise<Rig> {
  const gw = await startGateway(config);
  const outcomes: Outcome[] = [];
  const events: StateChangeEvent[] = [];
  const heardAt: number[] = [];
  gw.gateway.onOutcome((o) => outcomes.push(o));
  gw.gateway.onBreakerStateChange((e) => {
    events.push(e);
    heardAt.push(Date.now());
  });
  return {
    gw,
    outcomes,
    events,
    heardAt,
    breaker: () => {
      const b = gw.gateway.breaker('svc');
      if (b === undefined) throw new Error('service svc has no breaker');
      return b;
    },
    async call(path = '/x') {
      const before = outcomes.length;
      const res = await send(gw.url + path);
      await waitFor(() => outcomes.length > before, 3000).catch(() => {
        throw new Error(`no outcome was reported for ${path} (status ${res.status})`);
      });
      return res;
    },
  };
}

/** Sends `n` requests one after another; their statuses. */
async function statuses(r: Rig, n: number, path = '/x'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await r.call(path)).status);
  return out;
}

function transitions(events: StateChangeEvent[]): string[] {
  return events.map((e) => `${e.from}>${e.to}:${e.reason}`);
}

// ---------------------------------------------------------------------------------------------
// Gateway: failures in a row
// ---------------------------------------------------------------------------------------------

describe('gateway circuit: failures in a row', () => {
  it('opens after failureThreshold 500s; then 503 circuit-open with Retry-After at once, upstream not called', async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 3, resetTimeoutMs: 5000 } }),
    );
    expect(r.breaker().state).toEqual({ kind: 'closed' });
    expect(await statuses(r, 3)).toEqual([500, 500, 500]);
    expect(u.hits).toHaveLength(3);
    expect(r.breaker().state.kind).toBe('open');
    const until = untilOf(r.breaker());
    expect(until - Date.now()).toBeGreaterThan(4000);
    expect(until - Date.now()).toBeLessThanOrEqual(5000);
    expect(r.events).toHaveLength(1);
    expect(r.events[0]).toMatchObject({
      service: 'svc',
      from: 'closed',
      to: 'open',
      reason: 'failure-threshold',
    });

    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const res = await r.call();
      expectCircuitOpen(res);
      // Whole seconds until half-open: 5 s from now, rounded up.
      expect(res.headers['retry-after']).toBe('5');
      expect(Date.now() - started).toBeLessThan(1000);
    }
    expect(u.hits).toHaveLength(3);
  });

  it('never counts 4xx answers', async () => {
    const codes = [400, 401, 403, 404, 409, 422, 429, 451];
    let i = 0;
    const u = await up('a', (hit) => reply(codes[i++ % codes.length])(hit));
    const r = await rig(configOf([u.url], { breaker: { failureThreshold: 2 } }));
    expect(await statuses(r, codes.length)).toEqual(codes);
    expect(u.hits).toHaveLength(codes.length);
    expect(r.breaker().state.kind).toBe('closed');
    expect(r.events).toEqual([]);
  });

  it('by default 501 does not count, while 502, 503 and 504 do', async () => {
    const u = await switchable('a', 501);
    const r = await rig(configOf([u.url], { breaker: { failureThreshold: 3 } }));
    expect(await statuses(r, 4)).toEqual([501, 501, 501, 501]);
    expect(r.breaker().state.kind).toBe('closed');
    for (const status of [502, 503, 504]) {
      u.set(status);
      expect((await r.call()).status).toBe(status);
    }
    expect(r.breaker().state.kind).toBe('open');
    expectCircuitOpen(await r.call());
    expect(u.hits).toHaveLength(7);
  });

  it('a success between failures starts the count again', async () => {
    const u = await switchable('a', 500);
    const r = await rig(configOf([u.url], { breaker: { failureThreshold: 3 } }));
    await statuses(r, 2);
    u.set(200);
    await r.call();
    u.set(500);
    await statuses(r, 2);
    expect(r.breaker().state.kind).toBe('closed');
    await r.call();
    expect(r.breaker().state.kind).toBe('open');
  });

  it('failureStatuses replaces the default set', async () => {
    const u = await switchable('a', 503);
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 2, failureStatuses: [500] } }),
    );
    expect(await statuses(r, 4)).toEqual([503, 503, 503, 503]);
    expect(r.breaker().state.kind).toBe('closed');
    u.set(500);
    await statuses(r, 2);
    expect(r.breaker().state.kind).toBe('open');
  });

  it('a refused target opens it: 502s, then 503 circuit-open (its retry is the same request)', async () => {
    const port = await deadPort();
    const r = await rig(
      configOf([`http://127.0.0.1:${port}`], {
        breaker: { failureThreshold: 2, resetTimeoutMs: 10000 },
      }),
    );
    expectProblem(await r.call(), 502);
    // The default retry of a refused connection is part of this request's one outcome.
    expect(r.breaker().state.kind).toBe('closed');
    expectProblem(await r.call(), 502);
    expect(r.breaker().state.kind).toBe('open');
    expectCircuitOpen(await r.call());
  });

  it('a timeout counts, and the timed-out upstream call is cancelled', async () => {
    const u = await up('a', () => {}); // never answers
    const r = await rig(configOf([u.url], { timeoutMs: 200, breaker: { failureThreshold: 2 } }));
    expectProblem(await r.call(), 504);
    await waitFor(() => u.hits[0]!.closed);
    expect(u.hits[0]!.aborted).toBe(true);
    expect(r.breaker().state.kind).toBe('closed');
    expectProblem(await r.call(), 504);
    expect(r.breaker().state.kind).toBe('open');
    expectCircuitOpen(await r.call());
    expect(u.hits).toHaveLength(2);
  });

  it('a connection reset counts', async () => {
    const u = await up('a', resetAfterBody);
    const r = await rig(configOf([u.url], { retries: false, breaker: { failureThreshold: 2 } }));
    expectProblem(await r.call(), 502);
    expectProblem(await r.call(), 502);
    expect(r.breaker().state.kind).toBe('open');
    expectCircuitOpen(await r.call());
    expect(u.hits).toHaveLength(2);
  });

  it("a request's failed retries are its one failure", async () => {
    const u = await up('a', reply(503));
    const r = await rig(
      configOf([u.url], {
        retries: { attempts: 2, statuses: [503], backoff: { baseMs: 1, maxMs: 2 } },
        breaker: { failureThreshold: 2 },
      }),
    );
    expect((await r.call()).status).toBe(503);
    expect(u.hits).toHaveLength(3); // three tries, one request
    expect(r.breaker().state.kind).toBe('closed');
    expect((await r.call()).status).toBe(503);
    expect(r.breaker().state.kind).toBe('open');
  });

  it('a request whose retry succeeded is a success, whatever its first try did', async () => {
    // Every first try fails with 503, every retry gets 200.
    const u = await up('a', (hit) => reply(u.hits.length % 2 === 1 ? 503 : 200)(hit));
    const r = await rig(
      configOf([u.url], {
        retries: { attempts: 1, statuses: [503], backoff: { baseMs: 1, maxMs: 2 } },
        breaker: { failureThreshold: 1 },
      }),
    );
    expect(await statuses(r, 3)).toEqual([200, 200, 200]);
    expect(u.hits).toHaveLength(6);
    expect(r.breaker().state.kind).toBe('closed');
    expect(r.events).toEqual([]);
  });

  it('a client that went away does not count', async () => {
    const u = await switchable('a', 'hold');
    const r = await rig(configOf([u.url], { breaker: { failureThreshold: 1 } }));
    const p = pending(`${r.gw.url}/gone`);
    await waitFor(() => u.hits.length === 1);
    p.leave();
    await waitFor(() => r.outcomes.length === 1 && u.hits[0]!.closed);
    expect(r.breaker().state.kind).toBe('closed');
    u.set(200);
    expect((await r.call()).status).toBe(200);
    expect(u.hits).toHaveLength(2);
    expect(r.events).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Gateway: half-open
// ---------------------------------------------------------------------------------------------

describe('gateway circuit: half-open probes', () => {
  it('after resetTimeoutMs one probe goes through; its success closes the circuit', async () => {
    const u = await switchable('a', 500);
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 1, resetTimeoutMs: 300 } }),
    );
    await r.call();
    expectCircuitOpen(await r.call());
    expect(u.hits).toHaveLength(1);
    await pastReset(r.breaker());
    u.set(200);
    expect((await r.call()).status).toBe(200);
    expect(u.hits).toHaveLength(2);
    expect(r.breaker().state).toEqual({ kind: 'closed' });
    expect(transitions(r.events)).toEqual([
      'closed>open:failure-threshold',
      'open>half-open:reset-timeout',
      'half-open>closed:probe-success',
    ]);
    expect(await statuses(r, 2)).toEqual([200, 200]);
  });

  it('while the probe is in flight the others get the open answer, upstream not called', async () => {
    const u = await switchable('a', 500);
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 1, resetTimeoutMs: 300 } }),
    );
    await r.call();
    await pastReset(r.breaker());
    u.set('hold');
    const probe = pending(`${r.gw.url}/probe`);
    await waitFor(() => u.hits.length === 2);
    expect(r.breaker().state).toMatchObject({ kind: 'half-open', probes: 1 });
    expectCircuitOpen(await r.call('/other'));
    expectCircuitOpen(await r.call('/other'));
    expect(u.hits).toHaveLength(2);
    reply(200)(u.held[0]!);
    expect((await probe.response).status).toBe(200);
    await waitFor(() => r.breaker().state.kind === 'closed');
  });

  it('a failed probe reopens it for longer each time, up to maxResetTimeoutMs', async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], {
        breaker: { failureThreshold: 1, resetTimeoutMs: 200, maxResetTimeoutMs: 500 },
      }),
    );
    const openTimes = (): number[] =>
      r.events.flatMap((e, i) =>
        e.to === 'open' && e.state.kind === 'open' ? [e.state.until - r.heardAt[i]!] : [],
      );

    await r.call();
    await pastReset(r.breaker());
    expect((await r.call()).status).toBe(500); // the probe, failing
    expect(r.breaker().state.kind).toBe('open');
    expectCircuitOpen(await r.call());
    await pastReset(r.breaker());
    expect((await r.call()).status).toBe(500); // the second probe, failing
    expect(u.hits).toHaveLength(3);

    expect(transitions(r.events)).toEqual([
      'closed>open:failure-threshold',
      'open>half-open:reset-timeout',
      'half-open>open:probe-failure',
      'open>half-open:reset-timeout',
      'half-open>open:probe-failure',
    ]);
    const [first, second, third] = openTimes();
    expect(first).toBeGreaterThan(120);
    expect(first).toBeLessThanOrEqual(200);
    expect(second).toBeGreaterThan(320); // 2 × 200
    expect(second).toBeLessThanOrEqual(400);
    expect(third).toBeGreaterThan(420); // 4 × 200 = 800, capped at 500
    expect(third).toBeLessThanOrEqual(500);
  });

  it('after a probe closed it, the next open starts again at resetTimeoutMs', async () => {
    const u = await switchable('a', 500);
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 1, resetTimeoutMs: 200 } }),
    );
    await r.call();
    await pastReset(r.breaker());
    await r.call(); // failed probe: open for 400 ms
    const longer = untilOf(r.breaker()) - Date.now();
    expect(longer).toBeGreaterThan(250);
    await pastReset(r.breaker());
    u.set(200);
    await r.call(); // probe success
    expect(r.breaker().state.kind).toBe('closed');
    u.set(500);
    await r.call();
    const again = untilOf(r.breaker()) - Date.now();
    expect(again).toBeLessThanOrEqual(200);
    expect(again).toBeGreaterThan(100);
  });

  it('halfOpenRequests: 2 lets two probes through at once, and not a third', async () => {
    const u = await switchable('a', 500);
    const r = await rig(
      configOf([u.url], {
        breaker: { failureThreshold: 1, resetTimeoutMs: 300, halfOpenRequests: 2 },
      }),
    );
    await r.call();
    await pastReset(r.breaker());
    u.set('hold');
    const probes = [pending(`${r.gw.url}/p1`), pending(`${r.gw.url}/p2`)];
    await waitFor(() => u.hits.length === 3);
    expect(r.breaker().state).toMatchObject({ kind: 'half-open', probes: 2 });
    expectCircuitOpen(await r.call('/third'));
    expect(u.hits).toHaveLength(3);
    for (const hit of u.held) reply(200)(hit);
    expect((await Promise.all(probes.map((p) => p.response))).map((x) => x.status)).toEqual([
      200, 200,
    ]);
    await waitFor(() => r.breaker().state.kind === 'closed');
  });

  it('successThreshold: 2 needs two probe successes to close', async () => {
    const u = await switchable('a', 500);
    const r = await rig(
      configOf([u.url], {
        breaker: { failureThreshold: 1, resetTimeoutMs: 300, successThreshold: 2 },
      }),
    );
    await r.call();
    await pastReset(r.breaker());
    u.set(200);
    expect((await r.call()).status).toBe(200);
    expect(r.breaker().state.kind).toBe('half-open');
    expect((await r.call()).status).toBe(200);
    expect(r.breaker().state.kind).toBe('closed');
    expect(transitions(r.events).at(-1)).toBe('half-open>closed:probe-success');
  });
});

// ---------------------------------------------------------------------------------------------
// Gateway: failure rate
// ---------------------------------------------------------------------------------------------

describe('gateway circuit: failure rate over a rolling window', () => {
  const rate = { failureRate: 0.5, windowMs: 10000, bucketMs: 1000, minimumRequests: 10 };

  it('below minimumRequests it never opens, even when every request fails', async () => {
    const u = await up('a', reply(500));
    const r = await rig(configOf([u.url], { breaker: rate }));
    expect(await statuses(r, 9)).toEqual(Array(9).fill(500));
    expect(u.hits).toHaveLength(9);
    expect(r.breaker().state.kind).toBe('closed');
    expect(r.events).toEqual([]);
  });

  it('at the minimum volume, a rate over failureRate opens it (reason failure-rate)', async () => {
    const u = await switchable('a', 200);
    const r = await rig(configOf([u.url], { breaker: rate }));
    await statuses(r, 4);
    u.set(500);
    await statuses(r, 5); // 9 requests, 5 failed: under the volume
    expect(r.breaker().state.kind).toBe('closed');
    await r.call(); // 10 requests, 6 failed
    expect(r.breaker().state.kind).toBe('open');
    expect(transitions(r.events)).toEqual(['closed>open:failure-rate']);
    expectCircuitOpen(await r.call());
    expect(u.hits).toHaveLength(10);
  });

  it('at volume, a rate under failureRate does not open it', async () => {
    let n = 0;
    const u = await up('a', (hit) => reply(n++ % 3 === 0 ? 500 : 200)(hit));
    const r = await rig(configOf([u.url], { breaker: rate }));
    await statuses(r, 15); // 5 of 15 failed
    expect(u.hits).toHaveLength(15);
    expect(r.breaker().state.kind).toBe('closed');
  });

  it('failures older than the window no longer count', async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], {
        breaker: { failureRate: 0.5, windowMs: 400, bucketMs: 100, minimumRequests: 3 },
      }),
    );
    await statuses(r, 2);
    const after = Date.now() + 600; // the window and one more bucket
    await waitFor(() => Date.now() > after);
    await r.call(); // one request in the window: under the volume
    expect(r.breaker().state.kind).toBe('closed');
    await statuses(r, 2);
    expect(r.breaker().state.kind).toBe('open');
  });
});

// ---------------------------------------------------------------------------------------------
// Gateway: fallbacks
// ---------------------------------------------------------------------------------------------

describe('gateway fallbacks', () => {
  it('a static fallback answers an open circuit, marked in the header and the outcome', async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], {
        breaker: {
          failureThreshold: 1,
          fallback: {
            status: 200,
            headers: { 'x-stale': 'yes' },
            body: { items: [], stale: true },
          },
        },
      }),
    );
    // An upstream answer is not a fallback's, even a failing one (no fallbackOnFailure).
    const failed = await r.call();
    expect(failed.status).toBe(500);
    expect(failed.headers['x-turnpike-fallback']).toBeUndefined();
    expect(r.outcomes[0]!.fallback).toBeUndefined();

    const res = await r.call();
    expect(res.status).toBe(200);
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(res.headers['x-stale']).toBe('yes');
    expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
    expect(json(res)).toEqual({ items: [], stale: true });
    expect(u.hits).toHaveLength(1);
    expect(r.outcomes[1]!.fallback).toBe('circuit-open');
    expect(r.outcomes[1]!.status).toBe(200);
  });

  it('a string fallback body is sent as text, with status 200 by default', async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 1, fallback: { body: 'try later' } } }),
    );
    await r.call();
    const res = await r.call();
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^text\/plain/);
    expect(res.body.toString('utf8')).toBe('try later');
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
  });

  it('a function fallback gets (req, res, reason) and answers itself, still marked', async () => {
    const u = await up('a', reply(500));
    const seen: { reason: string; url: string | undefined }[] = [];
    const r = await rig(
      configOf([u.url], {
        breaker: {
          failureThreshold: 1,
          fallback: (req, res, reason) => {
            seen.push({ reason, url: req.url });
            res.statusCode = 203;
            res.setHeader('content-type', 'text/plain');
            res.end(`fallback for ${reason}`);
          },
        },
      }),
    );
    await r.call('/first');
    const res = await r.call('/second');
    expect(res.status).toBe(203);
    expect(res.body.toString('utf8')).toBe('fallback for circuit-open');
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(seen).toHaveLength(1);
    expect(seen[0]!.reason).toBe('circuit-open');
    expect(seen[0]!.url).toContain('second');
    expect(r.outcomes[1]!.fallback).toBe('circuit-open');
  });

  it('fallbackOnFailure answers upstream failures with the fallback; they still count, 4xx pass through', async () => {
    const u = await switchable('a', 404);
    const r = await rig(
      configOf([u.url], {
        breaker: {
          failureThreshold: 2,
          fallbackOnFailure: true,
          fallback: { status: 200, body: { cached: true } },
        },
      }),
    );
    const notFound = await r.call();
    expect(notFound.status).toBe(404);
    expect(notFound.headers['x-turnpike-fallback']).toBeUndefined();

    u.set(500);
    const first = await r.call();
    expect(first.status).toBe(200);
    expect(json(first)).toEqual({ cached: true });
    expect(first.headers['x-turnpike-fallback']).toBe('upstream-failure');
    expect(r.outcomes[1]!.fallback).toBe('upstream-failure');
    expect(r.breaker().state.kind).toBe('closed');
    await r.call();
    expect(r.breaker().state.kind).toBe('open');
    expect(u.hits).toHaveLength(3);

    const open = await r.call();
    expect(open.status).toBe(200);
    expect(open.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(r.outcomes[3]!.fallback).toBe('circuit-open');
    expect(u.hits).toHaveLength(3);
  });

  it('fallbackOnFailure answers a refused target with the fallback function, reason upstream-failure', async () => {
    const port = await deadPort();
    const reasons: string[] = [];
    const r = await rig(
      configOf([`http://127.0.0.1:${port}`], {
        breaker: {
          failureThreshold: 5,
          fallbackOnFailure: true,
          fallback: (_req, res, reason) => {
            reasons.push(reason);
            res.end('from the fallback');
          },
        },
      }),
    );
    const res = await r.call();
    expect(res.status).toBe(200);
    expect(res.body.toString('utf8')).toBe('from the fallback');
    expect(res.headers['x-turnpike-fallback']).toBe('upstream-failure');
    expect(reasons).toEqual(['upstream-failure']);
    expect(r.outcomes[0]!.fallback).toBe('upstream-failure');
  });

  it("a route's fallback overrides the service's; fallback: false on a route leaves the 503", async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf(
        [u.url],
        { breaker: { failureThreshold: 1, fallback: { body: 'service fallback' } } },
        [
          { path: '/b/**', service: 'svc', fallback: { status: 202, body: 'route b fallback' } },
          { path: '/c/**', service: 'svc', fallback: false },
          { path: '/**', service: 'svc' },
        ],
      ),
    );
    await r.call('/a/x'); // opens the service's circuit, shared by its routes
    const a = await r.call('/a/x');
    expect(a.status).toBe(200);
    expect(a.body.toString('utf8')).toBe('service fallback');
    const b = await r.call('/b/x');
    expect(b.status).toBe(202);
    expect(b.body.toString('utf8')).toBe('route b fallback');
    expect(b.headers['x-turnpike-fallback']).toBe('circuit-open');
    expectCircuitOpen(await r.call('/c/x'));
    expect(u.hits).toHaveLength(1);
  });

  it('a fallback that throws or rejects is a 500 problem, logged, and the gateway goes on', async () => {
    const u = await up('a', reply(500));
    const logger = recordingLogger();
    const r = await rig(
      configOf(
        [u.url],
        { breaker: { failureThreshold: 1 } },
        [
          {
            path: '/sync/**',
            service: 'svc',
            fallback: () => {
              throw new Error('sync fallback bug');
            },
          },
          {
            path: '/async/**',
            service: 'svc',
            fallback: () => Promise.reject(new Error('async fallback bug')),
          },
          { path: '/**', service: 'svc' },
        ],
        { logger },
      ),
    );
    await r.call('/x');
    expect(r.breaker().state.kind).toBe('open');
    expectProblem(await r.call('/sync/x'), 500);
    expectProblem(await r.call('/async/x'), 500);
    expectProblem(await r.call('/sync/x'), 500);
    expectCircuitOpen(await r.call('/x'));
    const errors = logger.entries.filter((e) => e.level === 'error');
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(JSON.stringify(errors)).toMatch(/sync fallback bug/);
    expect(JSON.stringify(errors)).toMatch(/async fallback bug/);
  });
});

// ---------------------------------------------------------------------------------------------
// Gateway: per-route breakers
// ---------------------------------------------------------------------------------------------

describe('gateway circuit: per-route override', () => {
  it("a route's breaker keys make a circuit of its own, over the service's keys", async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 5, resetTimeoutMs: 30000 } }, [
        { path: '/fragile/**', name: 'fragile', service: 'svc', breaker: { failureThreshold: 1 } },
        { path: '/**', service: 'svc' },
      ]),
    );
    await r.call('/fragile/x');
    const open = await r.call('/fragile/x');
    expectCircuitOpen(open);
    expect(open.headers['retry-after']).toBe('30'); // resetTimeoutMs from the service
    expect(u.hits).toHaveLength(1);
    expect(r.events).toHaveLength(1);
    expect(r.events[0]).toMatchObject({
      service: 'svc',
      route: 'fragile',
      from: 'closed',
      to: 'open',
    });
    expect((await r.call('/other')).status).toBe(500);
    expect(u.hits).toHaveLength(2);
    expect(r.breaker().state.kind).toBe('closed');
  });

  it('breaker: false on a route leaves it unguarded while the service circuit is open', async () => {
    const u = await up('a', reply(500));
    const r = await rig(
      configOf([u.url], { breaker: { failureThreshold: 1 } }, [
        { path: '/free/**', service: 'svc', breaker: false },
        { path: '/**', service: 'svc' },
      ]),
    );
    await r.call('/x');
    expectCircuitOpen(await r.call('/x'));
    expect((await r.call('/free/x')).status).toBe(500);
    expect(u.hits).toHaveLength(2);
  });

  it('gateway.breaker() and gateway.bulkhead() are undefined for a service without them', async () => {
    const u = await up('a');
    const r = await rig({
      services: {
        svc: { targets: [u.url], breaker: { failureThreshold: 3 } },
        plain: { targets: [u.url] },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    expect(r.gw.gateway.breaker('svc')).toBeDefined();
    expect(r.gw.gateway.breaker('plain')).toBeUndefined();
    expect(r.gw.gateway.breaker('nope')).toBeUndefined();
    expect(r.gw.gateway.bulkhead('svc')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Gateway: bulkhead
// ---------------------------------------------------------------------------------------------

describe('gateway bulkhead', () => {
  function pool(r: Rig): NonNullable<ReturnType<GatewayHarness['gateway']['bulkhead']>> {
    const b = r.gw.gateway.bulkhead('svc');
    if (b === undefined) throw new Error('service svc has no bulkhead');
    return b;
  }

  it('over maxConcurrent with no queue: 503 overloaded with Retry-After, upstream not called', async () => {
    const u = await switchable('a', 'hold');
    const r = await rig(configOf([u.url], { bulkhead: { maxConcurrent: 1 } }));
    const first = pending(`${r.gw.url}/1`);
    await waitFor(() => u.hits.length === 1);
    expect(pool(r).active).toBe(1);
    expectOverloaded(await r.call('/2'));
    expect(u.hits).toHaveLength(1);
    u.set(200);
    reply(200)(u.held[0]!);
    expect((await first.response).status).toBe(200);
    await waitFor(() => pool(r).active === 0);
    expect((await r.call('/3')).status).toBe(200);
  });

  it('queues up to maxQueue until a place frees, refusing beyond it', async () => {
    const u = await switchable('a', 'hold');
    const r = await rig(
      configOf([u.url], { bulkhead: { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 5000 } }),
    );
    const first = pending(`${r.gw.url}/1`);
    await waitFor(() => u.hits.length === 1);
    const second = pending(`${r.gw.url}/2`);
    await waitFor(() => pool(r).queued === 1);
    expectOverloaded(await r.call('/3'));
    expect(u.hits).toHaveLength(1);
    u.set(200);
    reply(200)(u.held[0]!);
    expect((await first.response).status).toBe(200);
    expect((await second.response).status).toBe(200);
    expect(u.hits.map((h) => h.url)).toEqual(['/1', '/2']);
  });

  it('a request that waits longer than queueTimeoutMs gets the 503', async () => {
    const u = await switchable('a', 'hold');
    const r = await rig(
      configOf([u.url], { bulkhead: { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 200 } }),
    );
    pending(`${r.gw.url}/1`);
    await waitFor(() => u.hits.length === 1);
    const started = Date.now();
    const res = await r.call('/2');
    expectOverloaded(res);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(pool(r).queued).toBe(0);
    expect(u.hits).toHaveLength(1);
  });

  it('a queued client that leaves frees its place', async () => {
    const u = await switchable('a', 'hold');
    const r = await rig(
      configOf([u.url], { bulkhead: { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 5000 } }),
    );
    const first = pending(`${r.gw.url}/1`);
    await waitFor(() => u.hits.length === 1);
    const leaving = pending(`${r.gw.url}/2`);
    await waitFor(() => pool(r).queued === 1);
    leaving.leave();
    await waitFor(() => pool(r).queued === 0);
    const third = pending(`${r.gw.url}/3`);
    await waitFor(() => pool(r).queued === 1); // queued, not refused
    u.set(200);
    reply(200)(u.held[0]!);
    expect((await first.response).status).toBe(200);
    expect((await third.response).status).toBe(200);
    expect(u.hits.map((h) => h.url)).toEqual(['/1', '/3']);
  });

  it('a bulkhead fallback answers instead of the 503, marked overloaded', async () => {
    const u = await switchable('a', 'hold');
    const r = await rig(
      configOf([u.url], {
        bulkhead: { maxConcurrent: 1, fallback: { status: 200, body: 'busy, try later' } },
      }),
    );
    pending(`${r.gw.url}/1`);
    await waitFor(() => u.hits.length === 1);
    const res = await r.call('/2');
    expect(res.status).toBe(200);
    expect(res.body.toString('utf8')).toBe('busy, try later');
    expect(res.headers['x-turnpike-fallback']).toBe('overloaded');
    expect(r.outcomes.at(-1)!.fallback).toBe('overloaded');
    expect(u.hits).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Standalone middleware in a plain Express app
// ---------------------------------------------------------------------------------------------

describe('standalone circuitBreaker() and bulkhead() in a plain Express app', () => {
  /** A plain app with `use` in front of `/r`; `call` waits until the response closed. */
  async function plainApp(
    guards: express.RequestHandler[],
    handler: express.RequestHandler,
  ): Promise<{ url: string; call(path?: string): Promise<Response>; closedCount(): number }> {
    const app = express();
    let closed = 0;
    app.use((_req, res, next) => {
      res.on('close', () => void closed++);
      next();
    });
    app.get('/r/:n', ...guards, handler);
    const running = await listen(http.createServer(app));
    closers.push(() => running.close());
    return {
      url: `${running.url}/r`,
      closedCount: () => closed,
      async call(path = '/x') {
        const before = closed;
        const res = await send(`${running.url}/r${path}`);
        await waitFor(() => closed > before, 3000);
        return res;
      },
    };
  }

  it('opens after N 500s: 503 circuit-open with Retry-After, the handler not called; 4xx not counted', async () => {
    const guard = circuitBreaker({ name: 'reports', failureThreshold: 2, resetTimeoutMs: 5000 });
    closers.push(() => guard.close());
    const events: StateChangeEvent[] = [];
    guard.breaker.onStateChange((e) => events.push(e));
    let status = 404;
    let calls = 0;
    const app = await plainApp([guard], (_req, res) => {
      calls++;
      res.status(status).json({ calls });
    });
    for (let i = 0; i < 3; i++) expect((await app.call()).status).toBe(404);
    expect(guard.breaker.state.kind).toBe('closed');
    status = 500;
    expect((await app.call()).status).toBe(500);
    expect(guard.breaker.state.kind).toBe('closed');
    expect((await app.call()).status).toBe(500);
    expect(guard.breaker.state.kind).toBe('open');
    const res = await app.call();
    expectCircuitOpen(res);
    expect(res.headers['retry-after']).toBe('5');
    expect(calls).toBe(5);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      service: 'reports',
      from: 'closed',
      to: 'open',
      reason: 'failure-threshold',
    });
  });

  it('a response that closed unfinished (the handler dropped the connection) is a failure', async () => {
    const guard = circuitBreaker({ failureThreshold: 2 });
    closers.push(() => guard.close());
    let calls = 0;
    const app = await plainApp([guard], (req) => {
      calls++;
      req.socket.destroy();
    });
    expect((await app.call()).status).toBe(0);
    expect((await app.call()).status).toBe(0);
    expect(guard.breaker.state.kind).toBe('open');
    expectCircuitOpen(await app.call());
    expect(calls).toBe(2);
  });

  it('probes after the reset time: a success closes, a failure reopens', async () => {
    const guard = circuitBreaker({ name: 'p', failureThreshold: 1, resetTimeoutMs: 200 });
    closers.push(() => guard.close());
    const events: StateChangeEvent[] = [];
    guard.breaker.onStateChange((e) => events.push(e));
    let status = 500;
    const app = await plainApp([guard], (_req, res) => void res.sendStatus(status));
    await app.call();
    await pastReset(guard.breaker);
    expect((await app.call()).status).toBe(500); // failed probe
    expect(guard.breaker.state.kind).toBe('open');
    expectCircuitOpen(await app.call());
    await pastReset(guard.breaker);
    status = 200;
    expect((await app.call()).status).toBe(200);
    expect(guard.breaker.state.kind).toBe('closed');
    expect(transitions(events)).toEqual([
      'closed>open:failure-threshold',
      'open>half-open:reset-timeout',
      'half-open>open:probe-failure',
      'open>half-open:reset-timeout',
      'half-open>closed:probe-success',
    ]);
    expect(events.every((e) => e.service === 'p')).toBe(true);
  });

  it('a static fallback answers the open circuit, marked circuit-open', async () => {
    const guard = circuitBreaker({
      failureThreshold: 1,
      fallback: { status: 200, body: { reports: [], stale: true } },
    });
    closers.push(() => guard.close());
    let calls = 0;
    const app = await plainApp([guard], (_req, res) => {
      calls++;
      res.sendStatus(503);
    });
    expect((await app.call()).status).toBe(503);
    const res = await app.call();
    expect(res.status).toBe(200);
    expect(json(res)).toEqual({ reports: [], stale: true });
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(calls).toBe(1);
  });

  it('a fallback that throws is a 500 problem, logged, and the app goes on', async () => {
    const logger = recordingLogger();
    const guard = circuitBreaker({
      failureThreshold: 1,
      logger,
      fallback: () => {
        throw new Error('standalone fallback bug');
      },
    });
    closers.push(() => guard.close());
    const app = await plainApp([guard], (_req, res) => void res.sendStatus(500));
    await app.call();
    expectProblem(await app.call(), 500);
    expectProblem(await app.call(), 500);
    expect(JSON.stringify(logger.entries.filter((e) => e.level === 'error'))).toMatch(
      /standalone fallback bug/,
    );
  });

  it('bulkhead() caps the handler, queues, answers 503 overloaded, and frees a leaving client', async () => {
    const cap = bulkhead({ maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 5000 });
    closers.push(() => cap.close());
    const held: { n: string; res: express.Response }[] = [];
    const app = await plainApp([cap], (req, res) => {
      held.push({ n: String(req.params.n), res });
    });
    const first = pending(`${app.url}/1`);
    await waitFor(() => held.length === 1);
    expect(cap.bulkhead.active).toBe(1);
    const leaving = pending(`${app.url}/2`);
    await waitFor(() => cap.bulkhead.queued === 1);
    expectOverloaded(await app.call('/3'));
    leaving.leave();
    await waitFor(() => cap.bulkhead.queued === 0);
    const fourth = pending(`${app.url}/4`);
    await waitFor(() => cap.bulkhead.queued === 1);
    held[0]!.res.send('one');
    expect((await first.response).status).toBe(200);
    await waitFor(() => held.length === 2);
    held[1]!.res.send('four');
    expect((await fourth.response).body.toString('utf8')).toBe('four');
    expect(held.map((h) => h.n)).toEqual(['1', '4']);
    await waitFor(() => cap.bulkhead.active === 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input refused at creation
// ---------------------------------------------------------------------------------------------

/** The ConfigError `create` throws; closes what it made when it throws nothing. */
function refusal(create: () => { close(): unknown }): ConfigError {
  let made: { close(): unknown } | undefined;
  try {
    made = create();
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return err as ConfigError;
  }
  void made.close();
  throw new Error('expected a ConfigError, but it was created');
}

describe('bad input refused at creation, the field named', () => {
  const bad: [string, Partial<BreakerOptions>, RegExp][] = [
    ['failureThreshold of 0', { failureThreshold: 0 }, /failureThreshold$/],
    ['successThreshold of 0', { successThreshold: 0 }, /successThreshold$/],
    ['failureRate of 0', { failureRate: 0 }, /failureRate$/],
    ['failureRate over 1', { failureRate: 1.5 }, /failureRate$/],
    ['a negative failureRate', { failureRate: -0.2 }, /failureRate$/],
    [
      'a window shorter than a bucket',
      { failureRate: 0.5, windowMs: 500, bucketMs: 1000 },
      /(windowMs|bucketMs)$/,
    ],
    ['halfOpenRequests of 0', { halfOpenRequests: 0 }, /halfOpenRequests$/],
    ['a number as fallback', { fallback: 42 as never }, /fallback$/],
    ['a string as fallback', { fallback: 'sorry' as never }, /fallback$/],
  ];

  /** The cases `check` got wrong: not refused, or refused naming another field. */
  function misses(
    check: (options: Partial<BreakerOptions>) => ConfigError,
    under = /.*/,
  ): string[] {
    const wrong: string[] = [];
    for (const [label, options, field] of bad) {
      try {
        const err = check(options);
        if (!field.test(err.path) || !under.test(err.path))
          wrong.push(`${label}: path ${err.path}`);
      } catch (err) {
        wrong.push(`${label}: ${(err as Error).message}`);
      }
    }
    return wrong;
  }

  it('the gateway refuses each bad breaker key under services.<name>.breaker', () => {
    const wrong = misses(
      (breaker) =>
        refusal(() =>
          createGateway(configOf(['http://127.0.0.1:1'], { breaker: breaker as never })),
        ),
      /^services\.svc\.breaker\./,
    );
    expect(wrong).toEqual([]);
  });

  it('circuitBreaker() refuses each bad option', () => {
    expect(misses((options) => refusal(() => circuitBreaker(options)))).toEqual([]);
  });

  it('refuses a bad fallback on a route and on a bulkhead, naming it', () => {
    const route = refusal(() =>
      createGateway(
        configOf(['http://127.0.0.1:1'], { breaker: { failureThreshold: 1 } }, [
          { path: '/**', service: 'svc', fallback: 7 as never },
        ]),
      ),
    );
    expect(route.path).toBe('routes[0].fallback');
    const pool = refusal(() =>
      createGateway(
        configOf(['http://127.0.0.1:1'], {
          bulkhead: { maxConcurrent: 1, fallback: true as never },
        }),
      ),
    );
    expect(pool.path).toBe('services.svc.bulkhead.fallback');
    const alone = refusal(() => bulkhead({ maxConcurrent: 1, fallback: 7 as never }));
    expect(alone.path).toMatch(/fallback$/);
  });

  it('accepts the edges: failureRate 1 and a window of exactly one bucket', async () => {
    const gateway = createGateway(
      configOf(['http://127.0.0.1:1'], {
        breaker: { failureRate: 1, windowMs: 1000, bucketMs: 1000, minimumRequests: 1 },
      }),
    );
    await gateway.close();
    const guard = circuitBreaker({ failureRate: 1, windowMs: 1000, bucketMs: 1000 });
    await guard.close();
  });

  it('refuses a gateway `redis` that is neither a redis:// URL nor a client', () => {
    const err = refusal(() =>
      createGateway(
        configOf(['http://127.0.0.1:1'], { breaker: { failureThreshold: 1 } }, undefined, {
          redis: 'http://127.0.0.1:6379',
        }),
      ),
    );
    expect(err.path).toBe('redis');
  });
});
