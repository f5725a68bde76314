import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { AttemptReport, Target } from '@turnpike/core';
import {
  balancerShape,
  createBalancer,
  parseTargets,
  type Balancer,
  type BalancerOptions,
  type Member,
  type StrategyFactory,
} from '@turnpike/balancer';
import { configErrorOf } from '../../../test/helpers/expectations';

function newRequest(): IncomingMessage {
  return new IncomingMessage(new Socket());
}

const req = newRequest();

function picks(
  balancer: Balancer,
  n: number,
  tried: readonly Target[] = [],
): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  for (let i = 0; i < n; i++) out.push(balancer.pick(req, tried)?.url);
  return out;
}

const complete = (status: number, latencyMs = 5): AttemptReport => ({
  end: 'complete',
  status,
  latencyMs,
});

const open: Balancer[] = [];
function balancerOf(options: BalancerOptions, path?: string): Balancer {
  const b = createBalancer(options, path);
  open.push(b);
  return b;
}
afterEach(() => {
  for (const b of open.splice(0)) b.close();
});

describe('createBalancer: options', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['an unknown key', { stratgy: 'p2c' }, 'balancer.stratgy'],
    ['an empty name', { name: '' }, 'balancer.name'],
    ['an unknown strategy', { strategy: 'fastest' }, 'balancer.strategy'],
    ['a non-boolean panic', { panic: 'yes' }, 'balancer.panic'],
    ['a healthCheck without path', { healthCheck: {} }, 'balancer.healthCheck.path'],
    ['a relative health path', { healthCheck: { path: 'health' } }, 'balancer.healthCheck.path'],
    // Node's http.request refuses characters above \xff: the target would never pass a check.
    [
      'a health path with a character above \\xff',
      { healthCheck: { path: '/health/\u20ac' } },
      'balancer.healthCheck.path',
    ],
    [
      'a health path with a latin-1 character',
      { healthCheck: { path: '/h\u00e9alth' } },
      'balancer.healthCheck.path',
    ],
    [
      'a health path with a control character',
      { healthCheck: { path: '/health\x7f' } },
      'balancer.healthCheck.path',
    ],
    [
      'an unknown healthCheck key',
      { healthCheck: { path: '/h', interval: 5 } },
      'balancer.healthCheck.interval',
    ],
    [
      'intervalMs 0',
      { healthCheck: { path: '/h', intervalMs: 0 } },
      'balancer.healthCheck.intervalMs',
    ],
    [
      'a fractional intervalMs',
      { healthCheck: { path: '/h', intervalMs: 10.5 } },
      'balancer.healthCheck.intervalMs',
    ],
    [
      'timeoutMs 0',
      { healthCheck: { path: '/h', timeoutMs: 0 } },
      'balancer.healthCheck.timeoutMs',
    ],
    [
      'timeoutMs above intervalMs',
      { healthCheck: { path: '/h', intervalMs: 100, timeoutMs: 200 } },
      'balancer.healthCheck.timeoutMs',
    ],
    [
      'timeoutMs above the default intervalMs',
      { healthCheck: { path: '/h', timeoutMs: 6000 } },
      'balancer.healthCheck.timeoutMs',
    ],
    [
      'healthyThreshold 0',
      { healthCheck: { path: '/h', healthyThreshold: 0 } },
      'balancer.healthCheck.healthyThreshold',
    ],
    [
      'unhealthyThreshold 0',
      { healthCheck: { path: '/h', unhealthyThreshold: 0 } },
      'balancer.healthCheck.unhealthyThreshold',
    ],
    [
      'an expectStatus of 99',
      { healthCheck: { path: '/h', expectStatus: [200, 99] } },
      'balancer.healthCheck.expectStatus[1]',
    ],
    [
      'an empty expectStatus list',
      { healthCheck: { path: '/h', expectStatus: [] } },
      'balancer.healthCheck.expectStatus',
    ],
    [
      'an expectStatus range above 599',
      { healthCheck: { path: '/h', expectStatus: { min: 200, max: 600 } } },
      'balancer.healthCheck.expectStatus.max',
    ],
    [
      'an expectStatus range upside down',
      { healthCheck: { path: '/h', expectStatus: { min: 300, max: 200 } } },
      'balancer.healthCheck.expectStatus.max',
    ],
    [
      'a POST check',
      { healthCheck: { path: '/h', method: 'POST' } },
      'balancer.healthCheck.method',
    ],
    [
      'a bad header name',
      { healthCheck: { path: '/h', headers: { 'bad name': 'x' } } },
      'balancer.healthCheck.headers.bad name',
    ],
    [
      'a header value with CRLF',
      { healthCheck: { path: '/h', headers: { 'x-a': 'b\r\nx-evil: 1' } } },
      'balancer.healthCheck.headers.x-a',
    ],
    [
      'a non-string header value',
      { healthCheck: { path: '/h', headers: { 'x-a': 1 } } },
      'balancer.healthCheck.headers.x-a',
    ],
    ['outlier true', { outlier: true }, 'balancer.outlier'],
    ['an unknown outlier key', { outlier: { failures: 3 } }, 'balancer.outlier.failures'],
    [
      'consecutiveFailures 0',
      { outlier: { consecutiveFailures: 0 } },
      'balancer.outlier.consecutiveFailures',
    ],
    ['a 4xx outlier status', { outlier: { statuses: [500, 429] } }, 'balancer.outlier.statuses[1]'],
    ['an outlier status 600', { outlier: { statuses: [600] } }, 'balancer.outlier.statuses[0]'],
    ['baseEjectionMs 0', { outlier: { baseEjectionMs: 0 } }, 'balancer.outlier.baseEjectionMs'],
    ['maxEjectionMs 0', { outlier: { maxEjectionMs: 0 } }, 'balancer.outlier.maxEjectionMs'],
    [
      'baseEjectionMs past a day',
      { outlier: { baseEjectionMs: 86_400_001 } },
      'balancer.outlier.baseEjectionMs',
    ],
    [
      'maxEjectionMs below baseEjectionMs',
      { outlier: { baseEjectionMs: 1000, maxEjectionMs: 500 } },
      'balancer.outlier.maxEjectionMs',
    ],
    [
      'maxEjectionPercent above 100',
      { outlier: { maxEjectionPercent: 101 } },
      'balancer.outlier.maxEjectionPercent',
    ],
    [
      'a negative maxEjectionPercent',
      { outlier: { maxEjectionPercent: -1 } },
      'balancer.outlier.maxEjectionPercent',
    ],
    ['an empty target list', { targets: [] }, 'balancer.targets'],
    ['a bad target', { targets: ['http://a', 'ftp://b'] }, 'balancer.targets[1]'],
    ['a bad weight', { targets: [{ url: 'http://a', weight: -1 }] }, 'balancer.targets[0].weight'],
  ];
  it.each(cases)('refuses %s, naming the field', (_label, extra, path) => {
    const error = configErrorOf(() => createBalancer({ targets: ['http://a'], ...extra }));
    expect(error.path).toBe(path);
  });

  it('names fields below the path it is given', () => {
    const error = configErrorOf(() =>
      createBalancer(
        { targets: ['http://a'], healthCheck: { path: '/h', intervalMs: -1 } },
        'services.users',
      ),
    );
    expect(error.path).toBe('services.users.healthCheck.intervalMs');
  });

  it('refuses options that are not an object', () => {
    expect(configErrorOf(() => createBalancer(null as never)).path).toBe('balancer');
  });

  it('refuses a strategy factory that returns no pick()', () => {
    const error = configErrorOf(() =>
      createBalancer({ targets: ['http://a'], strategy: (() => ({})) as never }),
    );
    expect(error.path).toBe('balancer.strategy');
  });

  it('accepts every option at once, and a timeoutMs equal to intervalMs', () => {
    const b = balancerOf({
      name: 'users',
      targets: ['http://127.0.0.1:1'],
      strategy: { hash: { header: 'x-user' } },
      healthCheck: {
        path: '/health',
        intervalMs: 1000,
        timeoutMs: 1000,
        healthyThreshold: 1,
        unhealthyThreshold: 1,
        expectStatus: { min: 200, max: 204 },
        method: 'HEAD',
        headers: { host: 'users.internal', 'x-probe': '1' },
      },
      outlier: {
        consecutiveFailures: 2,
        statuses: [503],
        baseEjectionMs: 10,
        maxEjectionMs: 10,
        maxEjectionPercent: 100,
      },
      panic: true,
    });
    expect(b.name).toBe('users');
  });

  it('accepts outlier: false', () => {
    const b = balancerOf({ targets: ['http://a'], outlier: false });
    expect(b.pick(req)?.url).toBe('http://a');
  });
});

describe('balancerShape', () => {
  it('checks each balancing key on its own, naming the path it is given', () => {
    expect(configErrorOf(() => balancerShape.strategy('nope', 'services.a.balancer')).path).toBe(
      'services.a.balancer',
    );
    expect(
      configErrorOf(() => balancerShape.healthCheck({ path: '/h', method: 'PUT' }, 'x.hc')).path,
    ).toBe('x.hc.method');
    expect(
      configErrorOf(() => balancerShape.outlier({ maxEjectionPercent: 200 }, 'x.o')).path,
    ).toBe('x.o.maxEjectionPercent');
    expect(configErrorOf(() => balancerShape.panic(1, 'x.panic')).path).toBe('x.panic');
  });

  it('fills in the defaults', () => {
    expect(balancerShape.healthCheck({ path: '/health' }, 'hc')).toEqual({
      path: '/health',
      intervalMs: 5000,
      timeoutMs: 2000,
      healthyThreshold: 2,
      unhealthyThreshold: 3,
      expectStatus: { min: 200, max: 399 },
      method: 'GET',
      headers: {},
    });
    expect(balancerShape.healthCheck({ path: '/h', intervalMs: 500 }, 'hc')).toMatchObject({
      intervalMs: 500,
      timeoutMs: 500,
    });
    expect(balancerShape.outlier({}, 'o')).toEqual({
      consecutiveFailures: 5,
      statuses: [500, 502, 503, 504],
      baseEjectionMs: 30000,
      maxEjectionMs: 300000,
      maxEjectionPercent: 50,
    });
    expect(balancerShape.outlier(false, 'o')).toBe(false);
    expect(balancerShape.strategy('p2c', 's')).toBe('p2c');
    expect(balancerShape.strategy({ hash: { cookie: 'sid' } }, 's')).toEqual({
      hash: { cookie: 'sid' },
    });
  });

  it('does not change the object it is given', () => {
    const given = { path: '/h', headers: { 'x-a': '1' } };
    const out = balancerShape.healthCheck(given, 'hc');
    expect(given).toEqual({ path: '/h', headers: { 'x-a': '1' } });
    expect(out).not.toBe(given);
  });
});

describe('parseTargets', () => {
  it('parses every target of a list', () => {
    expect(
      parseTargets(['http://a', { url: 'http://b', weight: 2 }], 't').map((t) => t.weight),
    ).toEqual([1, 2]);
  });

  it('refuses an empty list and a non-array, naming the path', () => {
    expect(configErrorOf(() => parseTargets([], 'services.a.targets')).path).toBe(
      'services.a.targets',
    );
    expect(configErrorOf(() => parseTargets('http://a', 't')).path).toBe('t');
  });
});

describe('pick', () => {
  it('picks the targets in turn by default, and is a bound function', () => {
    const { pick } = balancerOf({ targets: ['http://a', 'http://b', 'http://c'] });
    expect([1, 2, 3, 4].map(() => pick(req)?.url)).toEqual([
      'http://a',
      'http://b',
      'http://c',
      'http://a',
    ]);
  });

  it('exposes its name and frozen targets', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b'] });
    expect(b.name).toBe('service');
    expect(b.targets.map((t) => t.url)).toEqual(['http://a', 'http://b']);
    expect(Object.isFrozen(b.targets)).toBe(true);
  });

  it('returns the Target objects of its list', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b'] });
    expect(b.pick(req)).toBe(b.targets[0]);
  });

  it('skips the targets this request tried while untried ones remain', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b', 'http://c'] });
    const [a, bb] = b.targets as [Target, Target];
    expect(picks(b, 4, [a])).toEqual(['http://b', 'http://c', 'http://b', 'http://c']);
    expect(picks(b, 2, [a, bb])).toEqual(['http://c', 'http://c']);
  });

  it('uses tried targets again once every target was tried', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b'] });
    expect(picks(b, 4, b.targets)).toEqual(['http://a', 'http://b', 'http://a', 'http://b']);
  });

  it('never picks a target of weight 0 (draining), even in panic mode', () => {
    const b = balancerOf({
      targets: ['http://a', { url: 'http://b', weight: 0 }],
      panic: true,
    });
    expect(picks(b, 3)).toEqual(['http://a', 'http://a', 'http://a']);
    const drained = balancerOf({ targets: [{ url: 'http://a', weight: 0 }], panic: true });
    expect(drained.pick(req)).toBeUndefined();
    expect(drained.hasHealthy()).toBe(false);
    expect(drained.status()[0]!.state).toBe('draining');
  });

  it('builds the strategy once, over the members, and passes the request', () => {
    const seen: unknown[] = [];
    let built = 0;
    const first: StrategyFactory = (members) => {
      built++;
      seen.push(members.map((m) => m.target.url));
      return {
        pick(list, usable, request) {
          seen.push(request);
          return list.find(usable);
        },
      };
    };
    const b = balancerOf({ targets: ['http://a', 'http://b'], strategy: first });
    const r = newRequest();
    expect(b.pick(r)?.url).toBe('http://a');
    b.pick(r);
    expect(built).toBe(1);
    expect(seen).toEqual([['http://a', 'http://b'], r, r]);
  });

  it('hands strategies members with the contract fields', () => {
    let members: readonly Member[] = [];
    const b = balancerOf({
      targets: ['http://a', { url: 'http://b', weight: 3 }],
      strategy: (m) => {
        members = m;
        return { pick: (list, usable) => list.find(usable) };
      },
    });
    b.attemptStarted(b.targets[1]!);
    expect(members.map((m) => ({ ...m, url: m.target.url }))).toMatchObject([
      {
        url: 'http://a',
        slot: 0,
        index: 0,
        weight: 1,
        inFlight: 0,
        latencyMs: 0,
        healthy: true,
        ejectedUntil: 0,
      },
      {
        url: 'http://b',
        slot: 0,
        index: 1,
        weight: 3,
        inFlight: 1,
        latencyMs: 0,
        healthy: true,
        ejectedUntil: 0,
      },
    ]);
  });

  it('goes on after a strategy that throws', () => {
    let fail = true;
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      strategy: () => ({
        pick(list, usable) {
          if (fail) throw new Error('boom');
          return list.find(usable);
        },
      }),
    });
    expect(() => b.pick(req, [b.targets[0]!])).toThrow('boom');
    fail = false;
    // The tried list of the failed pick is forgotten.
    expect(b.pick(req)?.url).toBe('http://a');
  });
});

describe('attempt reports', () => {
  it('counts attempts in flight, never below 0, and bound', () => {
    const b = balancerOf({ targets: ['http://a'] });
    const { attemptStarted, attemptEnded } = b;
    const a = b.targets[0]!;
    attemptStarted(a);
    attemptStarted(a);
    expect(b.status()[0]!.inFlight).toBe(2);
    attemptEnded(a, complete(200));
    attemptEnded(a, complete(200));
    attemptEnded(a, complete(200));
    expect(b.status()[0]!.inFlight).toBe(0);
  });

  it('ignores reports for targets it does not have', () => {
    const b = balancerOf({ targets: ['http://a'] });
    const stranger = parseTargets(['http://z'], 't')[0]!;
    b.attemptStarted(stranger);
    b.attemptEnded(stranger, { end: 'refused', status: 0, latencyMs: 1 });
    expect(b.status()[0]).toMatchObject({ inFlight: 0, consecutiveFailures: 0 });
  });

  it('keeps a peak-EWMA of latency: a higher sample at once, a lower one decays slowly', () => {
    const b = balancerOf({ targets: ['http://a'] });
    const a = b.targets[0]!;
    b.attemptEnded(a, complete(200, 100));
    expect(b.status()[0]!.latencyMs).toBe(100);
    b.attemptEnded(a, complete(200, 10));
    // Within a few ms of the last sample the weight of the old value is ~1 (tau 10 s).
    expect(b.status()[0]!.latencyMs).toBeGreaterThan(95);
    expect(b.status()[0]!.latencyMs).toBeLessThanOrEqual(100);
    b.attemptEnded(a, complete(200, 250.04));
    expect(b.status()[0]!.latencyMs).toBe(250);
  });

  it('counts a failure as a slow answer: at least 1 s, and at least twice the latency so far', () => {
    const b = balancerOf({ targets: ['http://a'] });
    const a = b.targets[0]!;
    b.attemptEnded(a, { end: 'refused', status: 0, latencyMs: 1 });
    expect(b.status()[0]!.latencyMs).toBe(1000);
    b.attemptEnded(a, { end: 'reset', status: 0, latencyMs: 3 });
    expect(b.status()[0]!.latencyMs).toBe(2000);
  });

  it('counts a server error as a slow answer too, but not a 501 or a 4xx', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b', 'http://c'] });
    const [a, c, d] = b.targets;
    b.attemptEnded(a!, complete(503, 1));
    b.attemptEnded(c!, complete(501, 1));
    b.attemptEnded(d!, complete(404, 1));
    expect(b.status().map((t) => t.latencyMs)).toEqual([1000, 1, 1]);
  });

  it('takes no latency from gone clients, and from a cancelled attempt only a longer wait than known', () => {
    const b = balancerOf({ targets: ['http://a'] });
    const a = b.targets[0]!;
    b.attemptEnded(a, { end: 'client-gone', status: 0, latencyMs: 900 });
    expect(b.status()[0]!.latencyMs).toBe(0);
    // A hedge's loser had waited 900 ms without a head: its latency is at least that.
    b.attemptEnded(a, { end: 'cancelled', status: 0, latencyMs: 900 });
    expect(b.status()[0]!.latencyMs).toBe(900);
    // A shorter wait says nothing (the head might have been near), and one with a head is not a wait.
    b.attemptEnded(a, { end: 'cancelled', status: 0, latencyMs: 50 });
    b.attemptEnded(a, { end: 'cancelled', status: 200, latencyMs: 5000 });
    expect(b.status()[0]!.latencyMs).toBe(900);
  });

  it('bounds the penalty of failures in a row at 10 s, and never lowers the latency on a failure', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b'], outlier: false });
    const [a, slow] = b.targets as [Target, Target];
    for (let i = 0; i < 60; i++) b.attemptEnded(a, { end: 'refused', status: 0, latencyMs: 1 });
    expect(b.status()[0]!.latencyMs).toBe(10_000);
    // A target slower than the bound keeps its latency when it fails fast.
    b.attemptEnded(slow, complete(200, 20_000));
    b.attemptEnded(slow, { end: 'reset', status: 0, latencyMs: 2 });
    expect(b.status()[1]!.latencyMs).toBe(20_000);
    // A failure that took longer than the penalty counts as its time.
    b.attemptEnded(slow, { end: 'timeout', status: 0, latencyMs: 30_000 });
    expect(b.status()[1]!.latencyMs).toBe(30_000);
  });

  it('p2c: a target that fails fast gets no first try while the other answers', () => {
    const b = balancerOf({
      targets: ['http://bad', 'http://good'],
      strategy: 'p2c',
      outlier: false,
    });
    const [bad, good] = b.targets as [Target, Target];
    for (let i = 0; i < 20; i++) {
      b.attemptStarted(bad);
      b.attemptEnded(bad, { end: 'refused', status: 0, latencyMs: 1 });
      b.attemptStarted(good);
      b.attemptEnded(good, complete(200, 20));
    }
    expect(picks(b, 100).filter((url) => url === 'http://bad')).toEqual([]);
  });

  it('p2c: a target that always loses the hedge (cancelled without a head) is not preferred', () => {
    const b = balancerOf({ targets: ['http://slow', 'http://fast'], strategy: 'p2c' });
    const [slow, fast] = b.targets as [Target, Target];
    for (let i = 0; i < 20; i++) {
      // The slow target was tried first; after 30 ms the hedge went to the fast one, which won.
      b.attemptStarted(slow);
      b.attemptStarted(fast);
      b.attemptEnded(fast, complete(200, 5));
      b.attemptEnded(slow, { end: 'cancelled', status: 0, latencyMs: 30 });
    }
    expect(b.status()[0]!.latencyMs).toBe(30);
    expect(picks(b, 100).filter((url) => url === 'http://slow')).toEqual([]);
  });
});

describe('status', () => {
  it('describes each target', () => {
    const b = balancerOf({ targets: ['http://a', { url: 'http://b', weight: 0 }] });
    expect(b.status()).toEqual([
      {
        url: 'http://a',
        weight: 1,
        state: 'healthy',
        lastCheck: null,
        consecutiveFailures: 0,
        inFlight: 0,
        latencyMs: 0,
        ejections: 0,
        ejectedUntil: null,
      },
      {
        url: 'http://b',
        weight: 0,
        state: 'draining',
        lastCheck: null,
        consecutiveFailures: 0,
        inFlight: 0,
        latencyMs: 0,
        ejections: 0,
        ejectedUntil: null,
      },
    ]);
  });

  it('says retryAfter 1 when nothing is waiting', () => {
    const b = balancerOf({ targets: ['http://a'] });
    expect(b.retryAfter()).toBe(1);
    const { retryAfter } = b;
    expect(retryAfter()).toBe(1);
  });

  it('says retryAfter in whole seconds from 1 to a day, never NaN or Infinity', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 1, baseEjectionMs: 86_400_000, maxEjectionPercent: 100 },
    });
    for (const t of b.targets) b.attemptEnded(t, { end: 'refused', status: 0, latencyMs: 1 });
    expect(b.hasHealthy()).toBe(false);
    expect(b.retryAfter()).toBe(86_400); // the longest ejection there is: a day
    const now = jest.spyOn(Date, 'now').mockReturnValue(Number.NaN); // a broken clock
    try {
      expect(b.retryAfter()).toBe(1);
    } finally {
      now.mockRestore();
    }
  });
});

describe('setTargets', () => {
  it('swaps the targets, keeping the state of those that stay', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b', 'http://c'],
      outlier: { consecutiveFailures: 1, maxEjectionPercent: 100 },
    });
    const [a, bb] = b.targets as [Target, Target];
    b.attemptStarted(a);
    b.attemptEnded(a, complete(200, 40));
    b.attemptStarted(a);
    b.attemptEnded(bb, { end: 'refused', status: 0, latencyMs: 1 });
    expect(b.status()[1]!.state).toBe('ejected');

    b.setTargets([{ url: 'http://b', weight: 2 }, 'http://d', { url: 'http://a', weight: 5 }]);
    expect(b.targets.map((t) => `${t.url}:${t.weight}`)).toEqual([
      'http://b:2',
      'http://d:1',
      'http://a:5',
    ]);
    const [sb, sd, sa] = b.status() as [
      ReturnType<Balancer['status']>[0],
      ReturnType<Balancer['status']>[0],
      ReturnType<Balancer['status']>[0],
    ];
    expect(sa).toMatchObject({ weight: 5, inFlight: 1, latencyMs: 40, state: 'healthy' });
    expect(sb).toMatchObject({ weight: 2, state: 'ejected', ejections: 1 });
    expect(sd).toMatchObject({ weight: 1, state: 'healthy', inFlight: 0, ejections: 0 });
    // The attempt started before the swap (on the old Target object) still ends.
    b.attemptEnded(a, complete(200));
    expect(b.status()[2]!.inFlight).toBe(0);
    expect(picks(b, 2)).toEqual(['http://d', 'http://a']);
  });

  it('hands the new members to the strategy’s update(), keeping kept member objects', () => {
    const lists: (readonly Member[])[] = [];
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      strategy: (members) => {
        lists.push(members);
        return { pick: (list, usable) => list.find(usable), update: (m) => lists.push(m) };
      },
    });
    b.setTargets(['http://c', { url: 'http://a', weight: 4 }]);
    expect(lists).toHaveLength(2);
    const [before, after] = lists as [readonly Member[], readonly Member[]];
    expect(after[1]).toBe(before[0]);
    expect(after[1]).toMatchObject({ index: 1, weight: 4 });
    expect(after[0]!.target.url).toBe('http://c');
  });

  it('forgets removed targets: their reports are ignored', () => {
    const b = balancerOf({ targets: ['http://a', 'http://b'] });
    const a = b.targets[0]!;
    b.setTargets(['http://b']);
    b.attemptStarted(a);
    expect(b.status()).toEqual([expect.objectContaining({ url: 'http://b', inFlight: 0 })]);
    expect(picks(b, 2)).toEqual(['http://b', 'http://b']);
  });

  it("dropping a URL and adding it back: the old member's attempts leave the new member alone", () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      strategy: 'least-connections',
      outlier: { consecutiveFailures: 1, maxEjectionPercent: 100 },
    });
    const old = b.targets[0]!;
    b.attemptStarted(old);
    b.attemptStarted(old);
    b.setTargets(['http://b']);
    b.setTargets(['http://a', 'http://b']);
    const fresh = b.targets[0]!;
    expect(fresh).not.toBe(old);
    b.attemptStarted(fresh);
    // The attempts started on the old member end now: they count on nothing.
    b.attemptEnded(old, complete(200, 900));
    b.attemptEnded(old, { end: 'refused', status: 0, latencyMs: 1 });
    expect(b.status()[0]).toMatchObject({
      url: 'http://a',
      inFlight: 1,
      latencyMs: 0,
      state: 'healthy',
      consecutiveFailures: 0,
    });
    b.attemptEnded(fresh, complete(200, 7));
    expect(b.status()[0]).toMatchObject({ inFlight: 0, latencyMs: 7 });
  });

  it('allows an empty list: every pick is then undefined', () => {
    const b = balancerOf({ targets: ['http://a'], panic: true });
    b.setTargets([]);
    expect(b.targets).toEqual([]);
    expect(b.pick(req)).toBeUndefined();
    expect(b.pick(req, [])).toBeUndefined();
    expect(b.hasHealthy()).toBe(false);
    expect(b.retryAfter()).toBe(1);
    expect(b.status()).toEqual([]);
    b.setTargets(['http://z']);
    expect(b.pick(req)?.url).toBe('http://z');
  });

  it('refuses a bad list, naming the field, and changes nothing', () => {
    const b = balancerOf({ targets: ['http://a'] }, 'services.users');
    expect(configErrorOf(() => b.setTargets(['http://b', 'nope'])).path).toBe(
      'services.users.targets[1]',
    );
    expect(configErrorOf(() => b.setTargets('http://b' as never)).path).toBe(
      'services.users.targets',
    );
    expect(b.targets.map((t) => t.url)).toEqual(['http://a']);
  });
});

describe('events', () => {
  it('isolates a throwing listener, and disposers unsubscribe', () => {
    const b = balancerOf({
      targets: ['http://a', 'http://b'],
      outlier: { consecutiveFailures: 1, maxEjectionPercent: 100, baseEjectionMs: 60000 },
    });
    const seen: string[] = [];
    b.onEject(() => {
      throw new Error('listener bug');
    });
    const dispose = b.onEject((e) => seen.push(e.target.url));
    expect(() =>
      b.attemptEnded(b.targets[0]!, { end: 'reset', status: 0, latencyMs: 1 }),
    ).not.toThrow();
    expect(seen).toEqual(['http://a']);
    dispose();
    dispose();
    b.attemptEnded(b.targets[1]!, { end: 'reset', status: 0, latencyMs: 1 });
    expect(seen).toEqual(['http://a']);
    expect(b.status().map((s) => s.state)).toEqual(['ejected', 'ejected']);
  });

  it('close() is idempotent', () => {
    const b = balancerOf({ targets: ['http://a'] });
    b.close();
    b.close();
    expect(b.pick(req)?.url).toBe('http://a');
  });
});
