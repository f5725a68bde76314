import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { AttemptEnd, AttemptReport, Target } from '@turnpike/core';
import {
  createBalancer,
  type Balancer,
  type BalancerOptions,
  type EjectionEvent,
  type ReadmissionEvent,
} from '@turnpike/balancer';
import { waitFor } from '../../../test/helpers/servers';

const req = new IncomingMessage(new Socket());

const open: Balancer[] = [];
function balancerOf(options: BalancerOptions): Balancer {
  const b = createBalancer(options);
  open.push(b);
  return b;
}
afterEach(() => {
  for (const b of open.splice(0)) b.close();
});

const fail: AttemptReport = { end: 'refused', status: 0, latencyMs: 1 };
const ok: AttemptReport = { end: 'complete', status: 200, latencyMs: 1 };
const status = (s: number): AttemptReport => ({ end: 'complete', status: s, latencyMs: 1 });

function failTimes(b: Balancer, target: Target, n: number, report: AttemptReport = fail): void {
  for (let i = 0; i < n; i++) {
    b.attemptStarted(target);
    b.attemptEnded(target, report);
  }
}

function states(b: Balancer): string[] {
  return b.status().map((s) => s.state);
}

describe('passive health (outlier ejection)', () => {
  it('ejects a target after consecutiveFailures failures in a row, and pick skips it', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 3, baseEjectionMs: 60000 },
    });
    const events: EjectionEvent[] = [];
    b.onEject((e) => events.push(e));
    const a = b.targets[0]!;
    failTimes(b, a, 2);
    expect(states(b)).toEqual(['healthy', 'healthy']);
    expect(b.status()[0]!.consecutiveFailures).toBe(2);
    failTimes(b, a, 1);
    expect(states(b)).toEqual(['ejected', 'healthy']);
    expect(events).toEqual([
      { service: 'service', target: a, durationMs: 60000, ejections: 1, failures: 3 },
    ]);
    expect(b.status()[0]!.ejectedUntil).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/));
    expect([1, 2, 3].map(() => b.pick(req)?.url)).toEqual(['http://b', 'http://b', 'http://b']);
    expect(b.hasHealthy()).toBe(true);
    expect(b.retryAfter()).toBeGreaterThanOrEqual(59);
    expect(b.retryAfter()).toBeLessThanOrEqual(60);
  });

  it.each<AttemptEnd>([
    'refused',
    'dns',
    'connect-timeout',
    'reset',
    'timeout',
    'protocol',
    'bad-status',
    'cut-off',
  ])('counts an attempt ending %s as a failure', (end) => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 2 },
    });
    failTimes(b, b.targets[0]!, 2, { end, status: 0, latencyMs: 1 });
    expect(states(b)).toEqual(['ejected', 'healthy']);
  });

  it('counts the configured 5xx statuses only; 4xx and other statuses reset the count', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 2, statuses: [503] },
    });
    const a = b.targets[0]!;
    failTimes(b, a, 1, status(503));
    failTimes(b, a, 1, status(500));
    failTimes(b, a, 1, status(503));
    failTimes(b, a, 1, status(429));
    failTimes(b, a, 1, status(503));
    expect(states(b)).toEqual(['healthy', 'healthy']);
    failTimes(b, a, 1, status(503));
    expect(states(b)).toEqual(['ejected', 'healthy']);
  });

  it('never counts 4xx with the default statuses', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 1 },
    });
    for (const s of [400, 404, 429, 499]) failTimes(b, b.targets[0]!, 3, status(s));
    expect(states(b)).toEqual(['healthy', 'healthy']);
    failTimes(b, b.targets[0]!, 1, status(502));
    expect(states(b)).toEqual(['ejected', 'healthy']);
  });

  it('resets the count on a success', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 3 },
    });
    const a = b.targets[0]!;
    failTimes(b, a, 2);
    failTimes(b, a, 1, ok);
    expect(b.status()[0]!.consecutiveFailures).toBe(0);
    failTimes(b, a, 2);
    expect(states(b)).toEqual(['healthy', 'healthy']);
    failTimes(b, a, 1, { end: 'upgraded', status: 101, latencyMs: 1 });
    failTimes(b, a, 2);
    expect(states(b)).toEqual(['healthy', 'healthy']);
  });

  it('takes cancelled attempts and gone clients as neither', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 3 },
    });
    const a = b.targets[0]!;
    failTimes(b, a, 2);
    failTimes(b, a, 1, { end: 'cancelled', status: 0, latencyMs: 1 });
    failTimes(b, a, 1, { end: 'client-gone', status: 0, latencyMs: 1 });
    expect(b.status()[0]!.consecutiveFailures).toBe(2);
    failTimes(b, a, 1);
    expect(states(b)).toEqual(['ejected', 'healthy']);
  });

  it('readmits lazily when the time is over, once, and ejects for longer each time', async () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b', 'http://c', 'http://d'],
      outlier: { consecutiveFailures: 1, baseEjectionMs: 30, maxEjectionMs: 70 },
    });
    const ejections: EjectionEvent[] = [];
    const readmissions: ReadmissionEvent[] = [];
    b.onEject((e) => ejections.push(e));
    b.onReadmit((e) => readmissions.push(e));
    const a = b.targets[0]!;
    const durations: number[] = [];
    for (let round = 1; round <= 4; round++) {
      failTimes(b, a, 1);
      expect(states(b)[0]).toBe('ejected');
      durations.push(ejections[ejections.length - 1]!.durationMs);
      // Failures of attempts still in flight while ejected change nothing.
      failTimes(b, a, 3);
      expect(ejections).toHaveLength(round);
      await waitFor(
        () => b.pick(req, [b.targets[1]!, b.targets[2]!, b.targets[3]!])?.url === 'http://a',
      );
      expect(readmissions).toHaveLength(round);
      expect(b.status()[0]).toMatchObject({
        state: 'healthy',
        consecutiveFailures: 0,
        ejectedUntil: null,
      });
      b.status();
      expect(readmissions).toHaveLength(round);
    }
    expect(durations).toEqual([30, 60, 70, 70]);
    expect(ejections.map((e) => e.ejections)).toEqual([1, 2, 3, 4]);
    expect(b.status()[0]!.ejections).toBe(4);
  });

  it('readmits on status() too', async () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 1, baseEjectionMs: 20 },
    });
    let readmitted = 0;
    b.onReadmit(() => readmitted++);
    failTimes(b, b.targets[0]!, 1);
    await waitFor(() => b.status()[0]!.state === 'healthy');
    expect(readmitted).toBe(1);
  });

  it('ejects at most maxEjectionPercent of the targets at once', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b', 'http://c', 'http://d'],
      outlier: { consecutiveFailures: 2, maxEjectionPercent: 50, baseEjectionMs: 60000 },
    });
    let ejected = 0;
    b.onEject(() => ejected++);
    for (const t of b.targets) failTimes(b, t, 5);
    expect(ejected).toBe(2);
    expect(states(b)).toEqual(['ejected', 'ejected', 'healthy', 'healthy']);
    expect(b.hasHealthy()).toBe(true);
  });

  it('ejects a target refused by the cap on its next failure once room is made', async () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 2, maxEjectionPercent: 50, baseEjectionMs: 20 },
    });
    const [a, bb] = b.targets as [Target, Target];
    failTimes(b, a, 2);
    failTimes(b, bb, 2);
    expect(states(b)).toEqual(['ejected', 'healthy']);
    await waitFor(() => b.status()[0]!.state === 'healthy');
    failTimes(b, bb, 1);
    expect(states(b)).toEqual(['healthy', 'ejected']);
  });

  it('never ejects the only target at the default 50 %', () => {
    const b = balancerOf({ targets: ['http://a'], outlier: { consecutiveFailures: 1 } });
    failTimes(b, b.targets[0]!, 20);
    expect(states(b)).toEqual(['healthy']);
    expect(b.status()[0]!.consecutiveFailures).toBe(20);
    expect(b.pick(req)?.url).toBe('http://a');
  });

  it('ejects nothing with maxEjectionPercent 0 or outlier: false', () => {
    for (const outlier of [{ consecutiveFailures: 1, maxEjectionPercent: 0 }, false as const]) {
      const b = balancerOf({ targets: ['http://a', 'http://b'], outlier });
      failTimes(b, b.targets[0]!, 10);
      expect(states(b)).toEqual(['healthy', 'healthy']);
    }
  });

  it('ejects after 5 failures by default', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b'] });
    failTimes(b, b.targets[0]!, 4, status(503));
    expect(states(b)[0]).toBe('healthy');
    failTimes(b, b.targets[0]!, 1, status(504));
    expect(states(b)[0]).toBe('ejected');
    expect(b.retryAfter()).toBe(30);
  });

  it('answers none with every target ejected, unless in panic mode', () => {
    for (const panic of [false, true]) {
      const b = balancerOf({
        targets: ['http://a'],
        outlier: { consecutiveFailures: 1, maxEjectionPercent: 100, baseEjectionMs: 5000 },
        panic,
      });
      failTimes(b, b.targets[0]!, 1);
      expect(b.hasHealthy()).toBe(false);
      expect(b.pick(req)?.url).toBe(panic ? 'http://a' : undefined);
      expect(b.retryAfter()).toBe(5);
    }
  });

  it('keeps a retryAfter of at least 1 s, rounded up', () => {
    const b = balancerOf({
      targets: ['http://a'],
      outlier: { consecutiveFailures: 1, maxEjectionPercent: 100, baseEjectionMs: 1500 },
    });
    failTimes(b, b.targets[0]!, 1);
    expect(b.retryAfter()).toBe(2);
    const c = balancerOf({
      targets: ['http://a'],
      outlier: { consecutiveFailures: 1, maxEjectionPercent: 100, baseEjectionMs: 10 },
    });
    failTimes(c, c.targets[0]!, 1);
    expect(c.retryAfter()).toBe(1);
  });

  it('keeps ejections across setTargets, and frees the cap when an ejected target leaves', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b', 'http://c', 'http://d'],
      outlier: { consecutiveFailures: 1, maxEjectionPercent: 25, baseEjectionMs: 60000 },
    });
    failTimes(b, b.targets[0]!, 1);
    failTimes(b, b.targets[1]!, 1);
    expect(states(b)).toEqual(['ejected', 'healthy', 'healthy', 'healthy']);
    b.setTargets(['http://a', 'http://b', 'http://c', 'http://d', 'http://e']);
    expect(states(b)[0]).toBe('ejected');
    b.setTargets(['http://b', 'http://c', 'http://d', 'http://e']);
    failTimes(b, b.targets[0]!, 1);
    expect(states(b)).toEqual(['ejected', 'healthy', 'healthy', 'healthy']);
  });
});
