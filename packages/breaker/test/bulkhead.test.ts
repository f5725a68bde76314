import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  Bulkhead,
  CircuitBreaker,
  parseBreakerOptions,
  parseBulkheadOptions,
} from '@turnpike/breaker';

/** A stand-in request and response for the queue (the class only compares and reads flags). */
function pair(): { req: IncomingMessage; res: ServerResponse } {
  return {
    req: {} as IncomingMessage,
    res: { destroyed: false, writableEnded: false, headersSent: false } as ServerResponse,
  };
}

describe('Bulkhead: the queue', () => {
  it('drains thousands of waiters that end at once without recursing (no stack overflow)', () => {
    let refused = 0;
    const b = new Bulkhead(
      parseBulkheadOptions({ maxConcurrent: 1, maxQueue: 20_000, queueTimeoutMs: 60_000 }),
      () => refused++,
    );
    expect(b.tryEnter()).toBe(true);
    let ran = 0;
    for (let i = 0; i < 10_000; i++) {
      const { req, res } = pair();
      // Each waiter, once given a place, ends at once (a 413, a 503 no-target …).
      expect(
        b.enter(req, res, () => {
          ran++;
          b.release();
        }),
      ).toBeDefined();
    }
    expect(b.queued).toBe(10_000);
    b.release();
    expect(ran).toBe(10_000);
    expect(b.queued).toBe(0);
    expect(b.active).toBe(0);
    expect(refused).toBe(0);
  });

  it('cancelled and expired tickets are skipped, and counted out of `queued` at once', () => {
    jest.useFakeTimers();
    try {
      const refusedAt: number[] = [];
      const b = new Bulkhead(
        parseBulkheadOptions({ maxConcurrent: 1, maxQueue: 3, queueTimeoutMs: 100 }),
        () => refusedAt.push(Date.now()),
      );
      expect(b.tryEnter()).toBe(true);
      const went: string[] = [];
      const first = pair();
      const a = b.enter(first.req, first.res, () => went.push('a'))!;
      const second = pair();
      b.enter(second.req, second.res, () => went.push('b'));
      expect(b.queued).toBe(2);
      expect(b.cancel(a)).toBe(true);
      expect(b.cancel(a)).toBe(false);
      expect(b.queued).toBe(1);
      b.release();
      expect(went).toEqual(['b']);
      // One waiting past the timeout is refused.
      const third = pair();
      b.enter(third.req, third.res, () => went.push('c'));
      jest.advanceTimersByTime(100);
      expect(refusedAt).toHaveLength(1);
      expect(b.queued).toBe(0);
      b.release();
      expect(went).toEqual(['b']);
      expect(b.active).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  it('refuses once maxQueue wait, and counts only live waiters', () => {
    let refused = 0;
    const b = new Bulkhead(
      parseBulkheadOptions({ maxConcurrent: 1, maxQueue: 2 }),
      () => refused++,
    );
    b.tryEnter();
    const tickets = [pair(), pair()].map((p) => b.enter(p.req, p.res, () => {})!);
    const extra = pair();
    expect(b.enter(extra.req, extra.res, () => {})).toBeUndefined();
    expect(refused).toBe(1);
    b.cancel(tickets[0]!);
    const again = pair();
    expect(b.enter(again.req, again.res, () => {})).toBeDefined();
    expect(b.queued).toBe(2);
    b.close();
  });
});

describe('CircuitBreaker: news from peers', () => {
  it('ignores a change time far in the future, which would silence every later change', () => {
    const b = new CircuitBreaker(parseBreakerOptions({ failureThreshold: 1 }));
    b.adopt({ kind: 'open', until: Date.now() + 10_000, opens: 1, at: 1e300 });
    expect(b.state.kind).toBe('closed');
    b.adopt({ kind: 'open', until: Date.now() + 10_000, opens: 1, at: Date.now() });
    expect(b.state.kind).toBe('open');
    b.adopt({ kind: 'closed', at: Date.now() + 1 });
    expect(b.state.kind).toBe('closed');
  });

  it("caps a peer's open time at this circuit's maxResetTimeoutMs", () => {
    const b = new CircuitBreaker(
      parseBreakerOptions({ resetTimeoutMs: 1000, maxResetTimeoutMs: 5000 }),
    );
    const now = Date.now();
    b.adopt({ kind: 'open', until: now + 86_400_000, opens: 3, at: now });
    const s = b.state as { kind: string; until: number };
    expect(s.kind).toBe('open');
    expect(s.until).toBeLessThanOrEqual(Date.now() + 5000);
    expect(b.retryAfter()).toBeLessThanOrEqual(5);
  });
});

describe('CircuitBreaker.open(ms)', () => {
  it.each([0, -1, 1.5, Infinity, Number.NaN, 86_400_001])('refuses %p', (ms) => {
    const b = new CircuitBreaker(parseBreakerOptions({}));
    expect(() => b.open(ms)).toThrow(TypeError);
    expect(b.state.kind).toBe('closed');
  });
});
