import {
  CircuitBreaker,
  DEFAULT_FAILURE_STATUSES,
  REJECTED,
  parseBreakerOptions,
  type BreakerOptions,
  type StateChangeEvent,
} from '@turnpike/breaker';

const T0 = 1_700_000_000_000; // a multiple of every bucketMs used below

beforeEach(() => {
  jest.useFakeTimers();
  jest.setSystemTime(T0);
});
afterEach(() => {
  jest.useRealTimers();
});

function breakerOf(options: BreakerOptions = {}, route?: string): CircuitBreaker {
  return new CircuitBreaker(parseBreakerOptions(options), route);
}

/** Admits one request (which must pass) and records its verdict. */
function request(b: CircuitBreaker, failed: boolean | undefined): void {
  const admission = b.admit();
  expect(admission).not.toBe(REJECTED);
  b.record(admission, failed);
}

function fail(b: CircuitBreaker, n = 1): void {
  for (let i = 0; i < n; i++) request(b, true);
}

function succeed(b: CircuitBreaker, n = 1): void {
  for (let i = 0; i < n; i++) request(b, false);
}

function eventsOf(b: CircuitBreaker): StateChangeEvent[] {
  const events: StateChangeEvent[] = [];
  b.onStateChange((e) => events.push(e));
  return events;
}

/** How long the open circuit stays open from now, in ms. */
function openFor(b: CircuitBreaker): number {
  const s = b.state;
  if (s.kind !== 'open') throw new Error(`expected an open circuit, got ${s.kind}`);
  return s.until - Date.now();
}

describe('CircuitBreaker: consecutive failures', () => {
  it('starts closed and lets requests through', () => {
    const b = breakerOf();
    expect(b.state).toEqual({ kind: 'closed' });
    expect(b.admit()).not.toBe(REJECTED);
  });

  it('opens after failureThreshold failures in a row', () => {
    const b = breakerOf({ failureThreshold: 3, resetTimeoutMs: 1000 });
    fail(b, 2);
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state).toEqual({ kind: 'open', until: T0 + 1000, opens: 1 });
  });

  it('defaults to 5 failures in a row', () => {
    const b = breakerOf();
    fail(b, 4);
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });

  it('a success resets the count', () => {
    const b = breakerOf({ failureThreshold: 3 });
    fail(b, 2);
    succeed(b);
    fail(b, 2);
    expect(b.state.kind).toBe('closed');
    succeed(b);
    fail(b, 2);
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });

  it('admit() returns REJECTED while open, until the reset time', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    expect(b.admit()).toBe(REJECTED);
    jest.advanceTimersByTime(999);
    expect(b.admit()).toBe(REJECTED);
    expect(b.state.kind).toBe('open');
  });

  it('a REJECTED admission recorded is ignored', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    const before = b.state;
    b.record(REJECTED, true);
    b.record(REJECTED, false);
    expect(b.state).toEqual(before);
  });
});

describe('CircuitBreaker: retryAfter()', () => {
  it('is the whole seconds until half-open, rounded up, at least 1', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 2500 });
    expect(b.retryAfter()).toBe(1); // closed
    fail(b);
    expect(b.retryAfter()).toBe(3);
    jest.advanceTimersByTime(500);
    expect(b.retryAfter()).toBe(2);
    jest.advanceTimersByTime(1001);
    expect(b.retryAfter()).toBe(1); // 999 ms left
    jest.advanceTimersByTime(998);
    expect(b.retryAfter()).toBe(1); // 1 ms left
    jest.advanceTimersByTime(1);
    expect(b.retryAfter()).toBe(1); // due, still reads open
    jest.advanceTimersByTime(60_000);
    expect(b.retryAfter()).toBe(1); // long past due
  });

  it('is whole seconds for a long open time', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 60_000 });
    fail(b);
    expect(b.retryAfter()).toBe(60);
    jest.advanceTimersByTime(1);
    expect(b.retryAfter()).toBe(60);
    expect(Number.isInteger(b.retryAfter())).toBe(true);
  });

  it('is 1 while half-open', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    b.admit();
    expect(b.state.kind).toBe('half-open');
    expect(b.retryAfter()).toBe(1);
  });
});

describe('CircuitBreaker: half-open', () => {
  it('after resetTimeoutMs the next admit is a probe', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    // The state does not move on its own: the request that arrives turns it half-open.
    expect(b.state.kind).toBe('open');
    const probe = b.admit();
    expect(probe).not.toBe(REJECTED);
    expect(b.state).toEqual({ kind: 'half-open', probes: 1, opens: 1 });
  });

  it('lets only halfOpenRequests probes through at once; the others are REJECTED', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, halfOpenRequests: 2 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const p1 = b.admit();
    const p2 = b.admit();
    expect(p1).not.toBe(REJECTED);
    expect(p2).not.toBe(REJECTED);
    expect(b.admit()).toBe(REJECTED);
    expect(b.admit()).toBe(REJECTED);
    expect(b.state).toEqual({ kind: 'half-open', probes: 2, opens: 1 });
  });

  it('one probe by default', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    expect(b.admit()).not.toBe(REJECTED);
    expect(b.admit()).toBe(REJECTED);
  });

  it('a probe success closes the circuit', () => {
    const b = breakerOf({ failureThreshold: 2, resetTimeoutMs: 1000 });
    fail(b, 2);
    jest.advanceTimersByTime(1000);
    const probe = b.admit();
    b.record(probe, false);
    expect(b.state).toEqual({ kind: 'closed' });
    // Closed again, with a fresh count.
    fail(b);
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });

  it('with successThreshold > 1 needs that many probe successes to close', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, successThreshold: 3 });
    fail(b);
    jest.advanceTimersByTime(1000);
    for (let i = 0; i < 2; i++) {
      const probe = b.admit();
      expect(probe).not.toBe(REJECTED);
      b.record(probe, false);
      expect(b.state.kind).toBe('half-open');
    }
    const last = b.admit();
    expect(last).not.toBe(REJECTED);
    b.record(last, false);
    expect(b.state.kind).toBe('closed');
  });

  it('with successThreshold > 1 a probe failure after some successes reopens', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, successThreshold: 2 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const p1 = b.admit();
    b.record(p1, false);
    const p2 = b.admit();
    b.record(p2, true);
    expect(b.state).toEqual({ kind: 'open', until: Date.now() + 2000, opens: 2 });
  });

  it('a probe failure reopens with the reset time doubled, capped at maxResetTimeoutMs', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, maxResetTimeoutMs: 5000 });
    fail(b);
    expect(openFor(b)).toBe(1000);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      jest.advanceTimersByTime(openFor(b));
      const probe = b.admit();
      expect(probe).not.toBe(REJECTED);
      b.record(probe, true);
      expect(b.state.kind).toBe('open');
      waits.push(openFor(b));
    }
    expect(waits).toEqual([2000, 4000, 5000, 5000, 5000]);
    const s = b.state;
    expect(s.kind === 'open' && s.opens).toBe(6);
  });

  it('the default cap is 300 s', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 100_000 });
    fail(b);
    jest.advanceTimersByTime(openFor(b));
    b.record(b.admit(), true);
    expect(openFor(b)).toBe(200_000);
    jest.advanceTimersByTime(openFor(b));
    b.record(b.admit(), true);
    expect(openFor(b)).toBe(300_000);
  });

  it('the doubling starts over after the circuit closes', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    b.record(b.admit(), true); // reopens for 2000
    expect(openFor(b)).toBe(2000);
    jest.advanceTimersByTime(2000);
    b.record(b.admit(), false); // closes
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state).toEqual({ kind: 'open', until: Date.now() + 1000, opens: 1 });
  });

  it('a probe is still a probe while it is in flight past a second reset time', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const probe = b.admit();
    jest.advanceTimersByTime(10_000);
    expect(b.admit()).toBe(REJECTED);
    b.record(probe, false);
    expect(b.state.kind).toBe('closed');
  });
});

describe('CircuitBreaker: verdicts from an earlier state', () => {
  it('ignores a success admitted while closed and recorded after it opened', () => {
    const b = breakerOf({ failureThreshold: 2, resetTimeoutMs: 1000 });
    const early = b.admit();
    fail(b, 2);
    const opened = b.state;
    expect(opened.kind).toBe('open');
    b.record(early, false);
    expect(b.state).toEqual(opened);
    expect(b.admit()).toBe(REJECTED);
  });

  it('ignores a failure admitted while closed and recorded after it opened (no reopen, no doubling)', () => {
    const b = breakerOf({ failureThreshold: 2, resetTimeoutMs: 1000 });
    const early = b.admit();
    fail(b, 2);
    const opened = b.state;
    jest.advanceTimersByTime(500);
    b.record(early, true);
    expect(b.state).toEqual(opened);
  });

  it('ignores a closed-state verdict that arrives once the circuit is half-open', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    const early = b.admit();
    fail(b);
    jest.advanceTimersByTime(1000);
    const probe = b.admit();
    b.record(early, false); // must not count as the probe's success
    expect(b.state).toEqual({ kind: 'half-open', probes: 1, opens: 1 });
    b.record(early, true); // nor as its failure
    expect(b.state).toEqual({ kind: 'half-open', probes: 1, opens: 1 });
    b.record(probe, false);
    expect(b.state.kind).toBe('closed');
  });

  it('ignores a closed-state verdict that arrives after the circuit closed again', () => {
    const b = breakerOf({ failureThreshold: 2, resetTimeoutMs: 1000 });
    const early = b.admit();
    fail(b, 2);
    jest.advanceTimersByTime(1000);
    b.record(b.admit(), false);
    expect(b.state.kind).toBe('closed');
    fail(b);
    b.record(early, true); // from the previous closed period: not the second failure in a row
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });

  it('ignores the verdict of a second probe once the first reopened the circuit', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, halfOpenRequests: 2 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const p1 = b.admit();
    const p2 = b.admit();
    b.record(p1, true);
    const reopened = b.state;
    expect(reopened.kind).toBe('open');
    b.record(p2, false);
    expect(b.state).toEqual(reopened);
  });

  it('ignores a probe from an earlier half-open period', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, halfOpenRequests: 2 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const p1 = b.admit();
    const p2 = b.admit();
    b.record(p1, true); // reopens for 2000
    jest.advanceTimersByTime(2000);
    const p3 = b.admit();
    expect(b.state).toEqual({ kind: 'half-open', probes: 1, opens: 2 });
    b.record(p2, false); // old probe: neither closes nor frees a slot
    expect(b.state).toEqual({ kind: 'half-open', probes: 1, opens: 2 });
    b.record(p3, false);
    expect(b.state.kind).toBe('closed');
  });
});

describe('CircuitBreaker: an undefined verdict', () => {
  it('frees a probe slot without counting', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const p1 = b.admit();
    expect(b.admit()).toBe(REJECTED);
    b.record(p1, undefined);
    expect(b.state).toEqual({ kind: 'half-open', probes: 0, opens: 1 });
    const p2 = b.admit();
    expect(p2).not.toBe(REJECTED);
    b.record(p2, false);
    expect(b.state.kind).toBe('closed');
  });

  it('does not count toward successThreshold', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000, successThreshold: 2 });
    fail(b);
    jest.advanceTimersByTime(1000);
    b.record(b.admit(), false);
    b.record(b.admit(), undefined);
    expect(b.state.kind).toBe('half-open');
    b.record(b.admit(), false);
    expect(b.state.kind).toBe('closed');
  });

  it('while closed neither counts as a failure nor resets the count', () => {
    const b = breakerOf({ failureThreshold: 3 });
    fail(b, 2);
    request(b, undefined);
    request(b, undefined);
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });
});

describe('CircuitBreaker: failure rate', () => {
  const rate = { failureRate: 0.5, windowMs: 10_000, bucketMs: 1000, minimumRequests: 10 };

  it('never opens below minimumRequests, even at 100% failures', () => {
    const b = breakerOf(rate);
    fail(b, 9);
    expect(b.state.kind).toBe('closed');
  });

  it('opens once minimumRequests is reached at the rate', () => {
    const b = breakerOf({ ...rate, resetTimeoutMs: 1000 });
    const events = eventsOf(b);
    fail(b, 9);
    fail(b);
    expect(b.state).toEqual({ kind: 'open', until: T0 + 1000, opens: 1 });
    expect(events.map((e) => e.reason)).toEqual(['failure-rate']);
  });

  it('opens above minimumRequests when the rate is reached, not below the rate', () => {
    const b = breakerOf(rate);
    // 6 successes, 4 failures: 40%.
    succeed(b, 6);
    fail(b, 4);
    expect(b.state.kind).toBe('closed');
    fail(b); // 5 / 11
    expect(b.state.kind).toBe('closed');
    fail(b); // 6 / 12 = 50%
    expect(b.state.kind).toBe('open');
  });

  it('has no consecutive rule when only failureRate is set', () => {
    const b = breakerOf({ ...rate, minimumRequests: 100 });
    fail(b, 50);
    expect(b.state.kind).toBe('closed');
    expect(b.options.failureThreshold).toBeUndefined();
  });

  it('failures older than windowMs no longer count', () => {
    const b = breakerOf(rate);
    fail(b, 9); // at T0
    jest.advanceTimersByTime(10_000);
    fail(b); // the 9 above are out of the window: 1 request
    expect(b.state.kind).toBe('closed');
    fail(b, 8); // 9 in the window
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });

  it('failures within the window still count across buckets', () => {
    const b = breakerOf(rate);
    fail(b, 5); // bucket 0
    jest.advanceTimersByTime(5000);
    fail(b, 4); // bucket 5
    jest.advanceTimersByTime(4999); // bucket 9: bucket 0 is still in the window
    expect(b.state.kind).toBe('closed');
    fail(b);
    expect(b.state.kind).toBe('open');
  });

  it('buckets drop out one by one as the window rolls', () => {
    const b = breakerOf(rate);
    fail(b, 4); // bucket 0
    jest.advanceTimersByTime(3000);
    fail(b, 4); // bucket 3
    jest.advanceTimersByTime(7000); // bucket 10: bucket 0 is out, bucket 3 is in
    fail(b); // 5 in the window
    expect(b.state.kind).toBe('closed');
    fail(b, 4); // 9
    expect(b.state.kind).toBe('closed');
    fail(b); // 10
    expect(b.state.kind).toBe('open');
  });

  it('successes older than the window no longer dilute the rate', () => {
    const b = breakerOf(rate);
    succeed(b, 50);
    jest.advanceTimersByTime(10_000);
    fail(b, 10);
    expect(b.state.kind).toBe('open');
  });

  it('starts the window over after the circuit closes', () => {
    const b = breakerOf({ ...rate, resetTimeoutMs: 1000 });
    fail(b, 10);
    expect(b.state.kind).toBe('open');
    jest.advanceTimersByTime(1000);
    b.record(b.admit(), false);
    expect(b.state.kind).toBe('closed');
    fail(b, 9);
    expect(b.state.kind).toBe('closed');
  });

  // BUG (breaker.ts, record(): `window.failures >= o.failureRate! * window.total`): the
  // product rounds up for some rates (0.56 * 25 === 14.000000000000002), so a window whose
  // failure rate is exactly failureRate (14 / 25 === 0.56) does not open the circuit.
  // Comparing `failures / total >= failureRate` gets every one of these right.
  it.each([
    [0.56, 25, 14],
    [0.55, 100, 55],
    [0.07, 100, 7],
    [0.14, 50, 7],
    [0.28, 25, 7],
    [0.68, 75, 51],
  ])(
    'BUG float rounding: failureRate %p opens at exactly that rate (%p requests, %p failed)',
    (failureRate, total, failures) => {
      const b = breakerOf({ failureRate, minimumRequests: total });
      succeed(b, total - failures);
      fail(b, failures - 1);
      expect(b.state.kind).toBe('closed');
      fail(b); // failures / total === failureRate now
      expect(failures / total).toBe(failureRate);
      expect(b.state.kind).toBe('open');
    },
  );

  it('with both rules set, either opens it', () => {
    const b = breakerOf({
      failureThreshold: 3,
      failureRate: 0.5,
      minimumRequests: 6,
      resetTimeoutMs: 1000,
    });
    const events = eventsOf(b);
    fail(b, 3); // 3 in a row, below minimumRequests
    expect(b.state.kind).toBe('open');
    b.close();
    // Never 3 in a row; 3 of 6 failed.
    for (const failed of [true, false, true, false, false]) request(b, failed);
    expect(b.state.kind).toBe('closed');
    request(b, true);
    expect(b.state.kind).toBe('open');
    expect(events.map((e) => e.reason)).toEqual(['failure-threshold', 'manual', 'failure-rate']);
  });
});

describe('CircuitBreaker: state change events', () => {
  it('carry service, route, from, to, reason and state, with the right reasons', () => {
    const b = breakerOf(
      { name: 'payments', failureThreshold: 2, resetTimeoutMs: 1000, maxResetTimeoutMs: 10_000 },
      'charge',
    );
    const events = eventsOf(b);
    fail(b, 2);
    jest.advanceTimersByTime(1000);
    const p1 = b.admit();
    b.record(p1, true);
    jest.advanceTimersByTime(2000);
    const p2 = b.admit();
    b.record(p2, false);
    b.open(5000);
    b.close();
    const at = T0;
    expect(events).toEqual([
      {
        service: 'payments',
        route: 'charge',
        from: 'closed',
        to: 'open',
        reason: 'failure-threshold',
        state: { kind: 'open', until: at + 1000, opens: 1 },
      },
      {
        service: 'payments',
        route: 'charge',
        from: 'open',
        to: 'half-open',
        reason: 'reset-timeout',
        state: { kind: 'half-open', probes: 0, opens: 1 },
      },
      {
        service: 'payments',
        route: 'charge',
        from: 'half-open',
        to: 'open',
        reason: 'probe-failure',
        state: { kind: 'open', until: at + 1000 + 2000, opens: 2 },
      },
      {
        service: 'payments',
        route: 'charge',
        from: 'open',
        to: 'half-open',
        reason: 'reset-timeout',
        state: { kind: 'half-open', probes: 0, opens: 2 },
      },
      {
        service: 'payments',
        route: 'charge',
        from: 'half-open',
        to: 'closed',
        reason: 'probe-success',
        state: { kind: 'closed' },
      },
      {
        service: 'payments',
        route: 'charge',
        from: 'closed',
        to: 'open',
        reason: 'manual',
        state: { kind: 'open', until: at + 3000 + 5000, opens: 1 },
      },
      {
        service: 'payments',
        route: 'charge',
        from: 'open',
        to: 'closed',
        reason: 'manual',
        state: { kind: 'closed' },
      },
    ]);
  });

  it('names the default service and no route', () => {
    const b = breakerOf({ failureThreshold: 1 });
    const events = eventsOf(b);
    fail(b);
    expect(events).toHaveLength(1);
    expect(events[0]!.service).toBe('default');
    expect(events[0]!.route).toBeUndefined();
  });

  it('the disposer stops the events', () => {
    const b = breakerOf({ failureThreshold: 1 });
    const events: StateChangeEvent[] = [];
    const off = b.onStateChange((e) => events.push(e));
    fail(b);
    off();
    off();
    b.close();
    expect(events.map((e) => e.to)).toEqual(['open']);
  });

  it('a listener that throws does not break the breaker, and the others still run', () => {
    const errors: unknown[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: (message: string, meta?: Record<string, unknown>) => errors.push({ message, meta }),
    };
    const b = breakerOf({ name: 'svc', failureThreshold: 1, resetTimeoutMs: 1000, logger });
    b.onStateChange(() => {
      throw new Error('listener broke');
    });
    const events = eventsOf(b);
    expect(() => fail(b)).not.toThrow();
    expect(b.state.kind).toBe('open');
    expect(b.admit()).toBe(REJECTED);
    jest.advanceTimersByTime(1000);
    const probe = b.admit();
    expect(probe).not.toBe(REJECTED);
    expect(() => b.record(probe, false)).not.toThrow();
    expect(b.state.kind).toBe('closed');
    expect(events.map((e) => e.reason)).toEqual([
      'failure-threshold',
      'reset-timeout',
      'probe-success',
    ]);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({ meta: { service: 'svc' } });
  });

  it('refuses a listener that is not a function', () => {
    const b = breakerOf();
    expect(() => b.onStateChange('nope' as unknown as () => void)).toThrow(TypeError);
  });
});

describe('CircuitBreaker: isFailureStatus', () => {
  it('by default counts 500, 502, 503, 504 and 599, not 501, 4xx or 2xx', () => {
    const b = breakerOf();
    for (const s of [500, 502, 503, 504, 599]) expect(b.isFailureStatus(s)).toBe(true);
    for (const s of [501, 404, 429, 400, 200, 204, 301, 304]) {
      expect(b.isFailureStatus(s)).toBe(false);
    }
    expect(DEFAULT_FAILURE_STATUSES).toHaveLength(99);
    expect(DEFAULT_FAILURE_STATUSES).not.toContain(501);
  });

  it('a custom failureStatuses list replaces the default', () => {
    const b = breakerOf({ failureStatuses: [503, 429] });
    expect(b.isFailureStatus(503)).toBe(true);
    expect(b.isFailureStatus(429)).toBe(true);
    expect(b.isFailureStatus(500)).toBe(false);
    expect(b.isFailureStatus(502)).toBe(false);
    expect(b.isFailureStatus(200)).toBe(false);
  });

  it('is false for statuses out of range', () => {
    const b = breakerOf();
    expect(b.isFailureStatus(600)).toBe(false);
    expect(b.isFailureStatus(0)).toBe(false);
  });
});

describe('CircuitBreaker: open() and close() by hand', () => {
  it('open(ms) opens for ms, then half-opens', () => {
    const b = breakerOf({ resetTimeoutMs: 60_000 });
    const events = eventsOf(b);
    b.open(1500);
    expect(b.state).toEqual({ kind: 'open', until: T0 + 1500, opens: 1 });
    expect(b.admit()).toBe(REJECTED);
    expect(b.retryAfter()).toBe(2);
    jest.advanceTimersByTime(1500);
    expect(b.admit()).not.toBe(REJECTED);
    expect(b.state.kind).toBe('half-open');
    expect(events.map((e) => [e.to, e.reason])).toEqual([
      ['open', 'manual'],
      ['half-open', 'reset-timeout'],
    ]);
  });

  it('open() without ms uses the reset time', () => {
    const b = breakerOf({ resetTimeoutMs: 4000 });
    b.open();
    expect(openFor(b)).toBe(4000);
  });

  it('close() closes an open circuit and lets requests through', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 60_000 });
    fail(b);
    expect(b.admit()).toBe(REJECTED);
    b.close();
    expect(b.state).toEqual({ kind: 'closed' });
    expect(b.admit()).not.toBe(REJECTED);
  });

  it('close() closes a half-open circuit; the probe in flight then counts for nothing', () => {
    const b = breakerOf({ failureThreshold: 1, resetTimeoutMs: 1000 });
    fail(b);
    jest.advanceTimersByTime(1000);
    const probe = b.admit();
    b.close();
    b.record(probe, true);
    expect(b.state.kind).toBe('closed');
  });

  it('close() on a closed circuit does nothing', () => {
    const b = breakerOf({ failureThreshold: 2 });
    const events = eventsOf(b);
    fail(b);
    b.close();
    expect(events).toEqual([]);
    fail(b); // the count was not reset by a no-op close
    expect(b.state.kind).toBe('open');
  });
});
