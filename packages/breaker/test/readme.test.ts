import http from 'node:http';
import path from 'node:path';
import * as express from 'express';
import * as breakerModule from '@turnpike/breaker';
import type { CircuitBreakerMiddleware } from '@turnpike/breaker';
import { listen, waitFor, type Running } from '../../../test/helpers/servers';
import { edited, readReadme, runExample } from '../../../test/helpers/readme';

const MODULES = {
  express: (express as { default?: unknown }).default ?? express,
  '@turnpike/breaker': breakerModule,
};
const run = (code: string, globals: Record<string, unknown> = {}): Record<string, unknown> =>
  runExample(code, MODULES, globals);

const { codeAfter } = readReadme(path.join(__dirname, '..', 'README.md'));

const running: Running[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

async function get(base: string, url: string) {
  const res = await fetch(base + url, { headers: { connection: 'close' } });
  return {
    status: res.status,
    body: await res.text(),
    type: res.headers.get('content-type'),
    retryAfter: res.headers.get('retry-after'),
    fallback: res.headers.get('x-turnpike-fallback'),
  };
}

describe('README: the plain Express example', () => {
  it('opens after 5 failures, answers the fallback without calling the handler, probes, closes; the bulkhead caps and queues', async () => {
    let calls = 0;
    let failing = true;
    /** Builds wait here when `holding`; released by the test. */
    let holding = false;
    const waiting: (() => void)[] = [];
    const buildReports = async (): Promise<string[]> => {
      calls++;
      if (holding) await new Promise<void>((resolve) => waiting.push(resolve));
      if (failing) throw new Error('database down');
      return ['r1'];
    };
    const changes: string[] = [];
    const code = edited(codeAfter('### In a plain Express app'), [
      ['resetTimeoutMs: 30000', 'resetTimeoutMs: 300'],
      ['console.log(`circuit', 'changes.push(`circuit'],
      ['queueTimeoutMs: 2000', 'queueTimeoutMs: 5000'],
      ['app.listen(8080);', 'module.exports = { app, guard, cap };'],
    ]);
    const exported = run(code, { buildReports, changes }) as {
      app: http.RequestListener;
      guard: CircuitBreakerMiddleware;
      cap: breakerModule.BulkheadMiddleware;
    };
    const host = await listen(http.createServer(exported.app));
    running.push(host);

    // 5 failures (the error handler's 500) open the circuit.
    for (let i = 0; i < 5; i++) expect((await get(host.url, '/reports')).status).toBe(500);
    expect(changes).toEqual(['circuit reports: closed -> open (failure-threshold)']);
    const open = await get(host.url, '/reports');
    expect(open).toMatchObject({ status: 200, fallback: 'circuit-open' });
    expect(JSON.parse(open.body)).toEqual({ reports: [], stale: true });
    expect(calls).toBe(5);

    // After the reset time one probe goes through; its success closes the circuit.
    failing = false;
    const until = (exported.guard.breaker.state as { until: number }).until;
    await waitFor(() => Date.now() >= until, 3000);
    const probe = await get(host.url, '/reports');
    expect(probe.status).toBe(200);
    expect(JSON.parse(probe.body)).toEqual({ reports: ['r1'] });
    expect(exported.guard.breaker.state.kind).toBe('closed');
    expect(changes.slice(1)).toEqual([
      'circuit reports: open -> half-open (reset-timeout)',
      'circuit reports: half-open -> closed (probe-success)',
    ]);

    // The bulkhead: 10 run, 20 wait, the 31st is refused 503 overloaded.
    holding = true;
    const inFlight = Array.from({ length: 30 }, () => get(host.url, '/reports'));
    await waitFor(() => exported.cap.bulkhead.active === 10 && exported.cap.bulkhead.queued === 20);
    expect(waiting).toHaveLength(10);
    const refused = await get(host.url, '/reports');
    expect(refused.status).toBe(503);
    expect(refused.type).toBe('application/problem+json');
    expect((JSON.parse(refused.body) as { type: string }).type).toBe(
      'urn:turnpike:problem:overloaded',
    );
    expect(refused.retryAfter).toBe('1');
    holding = false;
    // Releasing builds lets the waiting ones in, ten at a time.
    while (waiting.length > 0 || exported.cap.bulkhead.queued > 0) {
      for (const release of waiting.splice(0)) release();
      await new Promise((r) => setImmediate(r));
    }
    const statuses = (await Promise.all(inFlight)).map((r) => r.status);
    expect(statuses).toEqual(Array.from({ length: 30 }, () => 200));
    await waitFor(() => exported.cap.bulkhead.active === 0);
  });
});

describe('README: options', () => {
  it('the failure-rate example is valid options', () => {
    const code = codeAfter('### Failure rate instead of failures in a row');
    const exported = run(`module.exports.mw = ${code.trim().replace(/;$/, '')};`, {
      circuitBreaker: breakerModule.circuitBreaker,
    });
    expect((exported.mw as CircuitBreakerMiddleware).breaker.options).toMatchObject({
      failureRate: 0.5,
      windowMs: 10000,
      bucketMs: 1000,
      minimumRequests: 20,
      failureThreshold: undefined,
    });
  });
});
