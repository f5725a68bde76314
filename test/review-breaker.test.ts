/**
 * Regressions from the review of the breaker: each test failed before its fix.
 */
import http from 'node:http';
import net from 'node:net';
import express from 'express';
import { bulkhead, circuitBreaker } from '@turnpike/breaker';
import { createGateway, type GatewayConfig, type Outcome } from '@turnpike/gateway';
import { attemptsAfterEach, hold, reply, send, type Hit } from './helpers/attempts';
import { configErrorOf } from './helpers/expectations';

import { listen, waitFor } from './helpers/servers';

const { closers, up, gateway: gatewayOf } = attemptsAfterEach();

describe('the bulkhead in the gateway', () => {
  it('a queue of requests that each end at once (413) drains whole, and every place is freed', async () => {
    const held: Hit[] = [];
    const u = await up('u', (hit) => held.push(hit));
    const g = await gatewayOf({
      services: {
        svc: {
          targets: [u.url],
          bulkhead: { maxConcurrent: 1, maxQueue: 1000, queueTimeoutMs: 30_000 },
        },
      },
      routes: [{ path: '/**', service: 'svc', bodyLimit: 10 }],
    });
    const busy = send(`${g.url}/busy`);
    await waitFor(() => held.length === 1);
    const agent = new http.Agent({ keepAlive: false, maxSockets: 200 });
    closers.push(() => agent.destroy());
    const big = Array.from(
      { length: 300 },
      () =>
        new Promise<number>((resolve) => {
          const req = http.request(`${g.url}/big`, {
            method: 'POST',
            agent,
            headers: { 'content-length': '100' },
          });
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          });
          req.on('error', () => resolve(0));
          req.flushHeaders();
        }),
    );
    const bulkheadOf = g.gateway.bulkhead('svc')!;
    await waitFor(() => bulkheadOf.queued >= 150, 10_000);
    reply(200)(held[0]!);
    expect((await busy).status).toBe(200);
    const statuses = await Promise.all(big);
    expect(statuses.every((s) => s === 413)).toBe(true);
    await waitFor(() => bulkheadOf.active === 0 && bulkheadOf.queued === 0);
    expect(held).toHaveLength(1);
  });
});

describe('a slow client does not open the circuit', () => {
  it('a deadline that passes while the client is still uploading is not counted', async () => {
    const u = await up('u', hold);
    const g = await gatewayOf({
      services: { svc: { targets: [u.url], timeoutMs: 300, breaker: { failureThreshold: 2 } } },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    for (let i = 0; i < 2; i++) {
      const socket = net.connect(g.running.port, '127.0.0.1');
      closers.push(() => void socket.destroy());
      socket.on('error', () => {});
      socket.write(
        `POST /api/up HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n${'x'.repeat(70_000)}`,
      );
      await waitFor(() => outcomes.length === i + 1, 5000);
    }
    expect(outcomes.map((o) => o.kind)).toEqual(['timeout', 'timeout']);
    expect(g.gateway.breaker('svc')!.state.kind).toBe('closed');
  });
});

describe('an asynchronous fallback for an upstream failure', () => {
  it('the outcome carries its status, and the bulkhead place is held until it answered', async () => {
    const u = await up('u', reply(500));
    let answer: (() => void) | undefined;
    const g = await gatewayOf({
      services: {
        svc: {
          targets: [u.url],
          bulkhead: { maxConcurrent: 1 },
          breaker: {
            failureThreshold: 10,
            fallbackOnFailure: true,
            fallback: (_req, res) =>
              new Promise<void>((resolve) => {
                answer = () => {
                  res.writeHead(203, { 'content-type': 'text/plain' });
                  res.end('later');
                  resolve();
                };
              }),
          },
        },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const outcomes: Outcome[] = [];
    g.gateway.onOutcome((o) => outcomes.push(o));
    const first = send(`${g.url}/x`);
    await waitFor(() => answer !== undefined);
    expect(g.gateway.bulkhead('svc')!.active).toBe(1);
    // The place is still taken: a second request is refused.
    expect((await send(`${g.url}/y`)).status).toBe(503);
    expect(u.hits).toHaveLength(1);
    answer!();
    const res = await first;
    expect(res.status).toBe(203);
    expect(res.body.toString()).toBe('later');
    await waitFor(() => outcomes.length === 2);
    const o = outcomes.find((x) => x.fallback === 'upstream-failure')!;
    expect(o).toMatchObject({ kind: 'complete', status: 203 });
    expect(o.attempt!.status).toBe(500);
    await waitFor(() => g.gateway.bulkhead('svc')!.active === 0);
  });

  it('one that never answers is bounded by the deadline: 504', async () => {
    const u = await up('u', reply(502));
    const g = await gatewayOf({
      services: {
        svc: {
          targets: [u.url],
          timeoutMs: 300,
          retries: false,
          breaker: { fallbackOnFailure: true, fallback: () => new Promise(() => {}) },
        },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    const res = await send(`${g.url}/x`);
    expect(res.status).toBe(504);
  });
});

describe('nested standalone middleware', () => {
  it('two bulkheads each free their own place', async () => {
    const held: express.Response[] = [];
    const outer = bulkhead({ maxConcurrent: 100 });
    const inner = bulkhead({ maxConcurrent: 2 });
    const app = express();
    app.use(outer);
    app.get('/b', inner, (_req, res) => void held.push(res));
    const host = await listen(http.createServer(app));
    closers.push(() => host.close());
    for (let round = 0; round < 3; round++) {
      const both = [send(`${host.url}/b`), send(`${host.url}/b`)];
      await waitFor(() => held.length === 2);
      for (const r of held.splice(0)) r.end('ok');
      expect((await Promise.all(both)).map((r) => r.status)).toEqual([200, 200]);
      await waitFor(() => inner.bulkhead.active === 0 && outer.bulkhead.active === 0);
    }
  });

  it('two circuits each judge their own requests', async () => {
    const outer = circuitBreaker({ failureThreshold: 100 });
    const inner = circuitBreaker({ failureThreshold: 1 });
    const app = express();
    app.use(outer);
    app.get('/b', inner, (_req, res) => void res.status(500).end());
    const host = await listen(http.createServer(app));
    closers.push(() => host.close());
    expect((await send(`${host.url}/b`)).status).toBe(500);
    expect(inner.breaker.state.kind).toBe('open');
    expect((await send(`${host.url}/b`)).status).toBe(503);
  });
});

describe('config: fallbacks', () => {
  const base = (service: Record<string, unknown>, route: Record<string, unknown> = {}) =>
    ({
      services: { svc: { targets: ['http://127.0.0.1:1'], ...service } },
      routes: [{ path: '/**', service: 'svc', ...route }],
    }) as GatewayConfig;

  it('accepts fallbackOnFailure on a route breaker whose fallback is the route own', () => {
    expect(() =>
      createGateway(
        base({}, { breaker: { fallbackOnFailure: true }, fallback: { body: 'x' } }),
      ).close(),
    ).not.toThrow();
    expect(() =>
      createGateway(
        base({ breaker: { fallbackOnFailure: true } }, { fallback: { body: 'x' } }),
      ).close(),
    ).not.toThrow();
  });

  it('refuses fallbackOnFailure where a route has no fallback at all', () => {
    expect(
      configErrorOf(() => createGateway(base({ breaker: { fallbackOnFailure: true } }))).path,
    ).toBe('services.svc.breaker.fallbackOnFailure');
  });

  it.each<[string, unknown, string]>([
    ['a CR/LF in a header value', { headers: { 'x-a': 'a\r\nSet-Cookie: x=1' } }, 'x-a'],
    ['Transfer-Encoding', { headers: { 'Transfer-Encoding': 'chunked' } }, 'Transfer-Encoding'],
    ['Content-Length', { headers: { 'content-length': '5' } }, 'content-length'],
    ['a body with 204', { status: 204, body: 'x' }, 'body'],
  ])('refuses a fixed fallback with %s', (_name, fallback, key) => {
    expect(configErrorOf(() => createGateway(base({ breaker: { fallback } }))).path).toBe(
      `services.svc.breaker.fallback.${key === 'body' ? 'body' : `headers.${key}`}`,
    );
  });

  it('a fallback answer carries nosniff, as every answer the gateway writes', async () => {
    const u = await up('u', reply(500));
    const g = await gatewayOf(
      base({ targets: [u.url], breaker: { failureThreshold: 1, fallback: { body: 'x' } } }),
    );
    await send(`${g.url}/x`);
    const res = await send(`${g.url}/x`);
    expect(res.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });
});
