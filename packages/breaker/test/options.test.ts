import { isConfigError } from '@turnpike/core';
import {
  bulkhead,
  circuitBreaker,
  parseBreakerOptions,
  parseBulkheadOptions,
  DEFAULT_FAILURE_STATUSES,
} from '@turnpike/breaker';
import { configErrorOf } from '../../../test/helpers/expectations';

const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe('circuitBreaker options: refused with a ConfigError naming the field', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['failureThreshold 0', { failureThreshold: 0 }, 'failureThreshold'],
    ['a negative failureThreshold', { failureThreshold: -3 }, 'failureThreshold'],
    ['a fractional failureThreshold', { failureThreshold: 2.5 }, 'failureThreshold'],
    ['a string failureThreshold', { failureThreshold: '5' }, 'failureThreshold'],
    ['failureRate 0', { failureRate: 0 }, 'failureRate'],
    ['failureRate 1.5', { failureRate: 1.5 }, 'failureRate'],
    ['failureRate -1', { failureRate: -1 }, 'failureRate'],
    ['failureRate NaN', { failureRate: NaN }, 'failureRate'],
    ['a string failureRate', { failureRate: '0.5' }, 'failureRate'],
    [
      'windowMs shorter than bucketMs',
      { failureRate: 0.5, windowMs: 500, bucketMs: 1000 },
      'windowMs',
    ],
    ['windowMs shorter than the default bucketMs', { failureRate: 0.5, windowMs: 500 }, 'windowMs'],
    [
      'bucketMs longer than the default windowMs',
      { failureRate: 0.5, bucketMs: 20_000 },
      'bucketMs',
    ],
    ['windowMs 0', { failureRate: 0.5, windowMs: 0 }, 'windowMs'],
    ['bucketMs 0', { failureRate: 0.5, bucketMs: 0 }, 'bucketMs'],
    ['windowMs without failureRate', { windowMs: 10_000 }, 'windowMs'],
    ['minimumRequests without failureRate', { minimumRequests: 10 }, 'minimumRequests'],
    ['minimumRequests 0', { failureRate: 0.5, minimumRequests: 0 }, 'minimumRequests'],
    ['resetTimeoutMs 0', { resetTimeoutMs: 0 }, 'resetTimeoutMs'],
    ['resetTimeoutMs past a day', { resetTimeoutMs: 86_400_001 }, 'resetTimeoutMs'],
    ['halfOpenRequests 0', { halfOpenRequests: 0 }, 'halfOpenRequests'],
    ['successThreshold 0', { successThreshold: 0 }, 'successThreshold'],
    [
      'maxResetTimeoutMs below resetTimeoutMs',
      { resetTimeoutMs: 10_000, maxResetTimeoutMs: 5000 },
      'maxResetTimeoutMs',
    ],
    [
      'maxResetTimeoutMs below the default resetTimeoutMs',
      { maxResetTimeoutMs: 1000 },
      'maxResetTimeoutMs',
    ],
    ['a string fallback', { fallback: 'sorry' }, 'fallback'],
    ['a number fallback', { fallback: 503 }, 'fallback'],
    ['a boolean fallback', { fallback: true }, 'fallback'],
    ['an array fallback', { fallback: [] }, 'fallback'],
    ['a null fallback', { fallback: null }, 'fallback'],
    ['a fallback with an unknown key', { fallback: { code: 200 } }, 'fallback.code'],
    ['a fallback status of 99', { fallback: { status: 99 } }, 'fallback.status'],
    ['a fallback status of 600', { fallback: { status: 600 } }, 'fallback.status'],
    [
      'a fallback with a bad header name',
      { fallback: { headers: { 'a b': 'x' } } },
      'fallback.headers.a b',
    ],
    [
      'a fallback with a non-string header value',
      { fallback: { headers: { 'x-a': 1 } } },
      'fallback.headers.x-a',
    ],
    ['fallbackOnFailure without fallback', { fallbackOnFailure: true }, 'fallbackOnFailure'],
    ['a non-boolean fallbackOnFailure', { fallbackOnFailure: 'yes' }, 'fallbackOnFailure'],
    ['an unknown key', { failureTreshold: 3 }, 'failureTreshold'],
    ['failureStatuses with 99', { failureStatuses: [500, 99] }, 'failureStatuses[1]'],
    ['failureStatuses with 600', { failureStatuses: [600] }, 'failureStatuses[0]'],
    ['an empty failureStatuses', { failureStatuses: [] }, 'failureStatuses'],
    ['a failureStatuses that is not an array', { failureStatuses: 500 }, 'failureStatuses'],
    ['an empty name', { name: '' }, 'name'],
    ['a name with a space', { name: 'my service' }, 'name'],
    ['a logger without methods', { logger: {} }, 'logger'],
    ['a shared without redis', { shared: {} }, 'shared.redis'],
    ['a shared redis that is not a URL', { shared: { redis: 'localhost:6379' } }, 'shared.redis'],
  ];

  it.each(cases)('parseBreakerOptions refuses %s', (_label, options, field) => {
    const error = configErrorOf(() => parseBreakerOptions(options, 'circuitBreaker.options'));
    expect(error.code).toBe('ERR_TURNPIKE_CONFIG_INVALID');
    expect(error.path).toBe(`circuitBreaker.options.${field}`);
    expect(error.message).toContain(`circuitBreaker.options.${field}`);
  });

  it.each(cases)('circuitBreaker() refuses %s at creation', (_label, options, field) => {
    const error = configErrorOf(() => circuitBreaker(options));
    expect(error.path).toBe(`circuitBreaker.options.${field}`);
  });

  it('names the fields below the default path "options"', () => {
    expect(configErrorOf(() => parseBreakerOptions({ failureThreshold: 0 })).path).toBe(
      'options.failureThreshold',
    );
  });

  it('refuses options that are not an object', () => {
    for (const bad of ['fast', 5, [1], true]) {
      const error = configErrorOf(() => circuitBreaker(bad as never));
      expect(error.path).toBe('circuitBreaker.options');
    }
  });

  it('keeps the value and what was expected on the error', () => {
    const error = configErrorOf(() => circuitBreaker({ failureRate: 1.5 }));
    expect(error.value).toBe(1.5);
    expect(typeof error.expected).toBe('string');
    expect(error).toBeInstanceOf(Error);
    expect(isConfigError(error)).toBe(true);
  });

  it('refuses shared: true when used alone (it needs { redis })', () => {
    expect(() => circuitBreaker({ shared: true })).toThrow(/redis/);
  });
});

describe('circuitBreaker options: accepted', () => {
  it('applies the defaults', () => {
    const o = parseBreakerOptions({});
    expect(o).toMatchObject({
      name: 'default',
      failureThreshold: 5,
      failureRate: undefined,
      windowMs: 10_000,
      bucketMs: 1000,
      minimumRequests: 20,
      resetTimeoutMs: 30_000,
      maxResetTimeoutMs: 300_000,
      halfOpenRequests: 1,
      successThreshold: 1,
      fallback: undefined,
      fallbackOnFailure: false,
    });
    expect(o.failureStatuses).toEqual(DEFAULT_FAILURE_STATUSES);
    expect(Object.isFrozen(o)).toBe(true);
  });

  it('takes undefined as no options', () => {
    expect(parseBreakerOptions(undefined).failureThreshold).toBe(5);
    expect(typeof circuitBreaker()).toBe('function');
  });

  it('has no consecutive rule with only failureRate, and both when both are set', () => {
    expect(parseBreakerOptions({ failureRate: 0.5 }).failureThreshold).toBeUndefined();
    const both = parseBreakerOptions({ failureRate: 0.5, failureThreshold: 3 });
    expect(both.failureThreshold).toBe(3);
    expect(both.failureRate).toBe(0.5);
  });

  it('accepts the edges: failureRate 1, windowMs equal to bucketMs, maxResetTimeoutMs equal to resetTimeoutMs', () => {
    expect(() =>
      parseBreakerOptions({ failureRate: 1, windowMs: 1000, bucketMs: 1000 }),
    ).not.toThrow();
    expect(() =>
      parseBreakerOptions({ resetTimeoutMs: 5000, maxResetTimeoutMs: 5000 }),
    ).not.toThrow();
  });

  it('raises the default cap to a resetTimeoutMs longer than 300 s', () => {
    expect(parseBreakerOptions({ resetTimeoutMs: 600_000 }).maxResetTimeoutMs).toBe(600_000);
  });

  it('accepts a fallback response, a fallback function and fallbackOnFailure with one', () => {
    expect(() =>
      circuitBreaker({ fallback: { status: 200, headers: { 'x-a': 'b' }, body: { ok: 1 } } }),
    ).not.toThrow();
    expect(() => circuitBreaker({ fallback: {} })).not.toThrow();
    expect(() => circuitBreaker({ fallback: () => undefined })).not.toThrow();
    expect(() =>
      circuitBreaker({ fallback: { body: 'sorry' }, fallbackOnFailure: true }),
    ).not.toThrow();
  });

  it('accepts a 4xx in failureStatuses', () => {
    expect(parseBreakerOptions({ failureStatuses: [429, 503] }).failureStatuses).toEqual([
      429, 503,
    ]);
  });

  it('does not modify the caller object', () => {
    const given = { failureThreshold: 3, failureStatuses: [500] };
    const o = parseBreakerOptions(given);
    expect(given).toEqual({ failureThreshold: 3, failureStatuses: [500] });
    expect(o.failureStatuses).not.toBe(given.failureStatuses);
  });

  it('accepts a logger', () => {
    expect(parseBreakerOptions({ logger: silent }).logger).toBe(silent);
  });
});

describe('bulkhead options: refused with a ConfigError naming the field', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['a missing maxConcurrent', {}, 'maxConcurrent'],
    ['maxConcurrent 0', { maxConcurrent: 0 }, 'maxConcurrent'],
    ['a negative maxConcurrent', { maxConcurrent: -1 }, 'maxConcurrent'],
    ['a fractional maxConcurrent', { maxConcurrent: 1.5 }, 'maxConcurrent'],
    ['a string maxConcurrent', { maxConcurrent: '10' }, 'maxConcurrent'],
    ['maxQueue -1', { maxConcurrent: 1, maxQueue: -1 }, 'maxQueue'],
    ['a fractional maxQueue', { maxConcurrent: 1, maxQueue: 0.5 }, 'maxQueue'],
    ['queueTimeoutMs 0', { maxConcurrent: 1, queueTimeoutMs: 0 }, 'queueTimeoutMs'],
    ['retryAfterSeconds 0', { maxConcurrent: 1, retryAfterSeconds: 0 }, 'retryAfterSeconds'],
    ['a string fallback', { maxConcurrent: 1, fallback: 'busy' }, 'fallback'],
    ['a number fallback', { maxConcurrent: 1, fallback: 503 }, 'fallback'],
    ['an unknown key', { maxConcurrent: 1, maxQueued: 3 }, 'maxQueued'],
    ['a breaker option', { maxConcurrent: 1, failureThreshold: 3 }, 'failureThreshold'],
  ];

  it.each(cases)('parseBulkheadOptions refuses %s', (_label, options, field) => {
    const error = configErrorOf(() => parseBulkheadOptions(options, 'bulkhead.options'));
    expect(error.code).toBe('ERR_TURNPIKE_CONFIG_INVALID');
    expect(error.path).toBe(`bulkhead.options.${field}`);
  });

  it.each(cases)('bulkhead() refuses %s at creation', (_label, options, field) => {
    const error = configErrorOf(() => bulkhead(options as never));
    expect(error.path).toBe(`bulkhead.options.${field}`);
  });

  it('refuses no options at all', () => {
    const error = configErrorOf(() => bulkhead(undefined as never));
    expect(error.path).toBe('bulkhead.options');
  });
});

describe('bulkhead options: accepted', () => {
  it('applies the defaults', () => {
    expect(parseBulkheadOptions({ maxConcurrent: 4 })).toMatchObject({
      name: 'default',
      maxConcurrent: 4,
      maxQueue: 0,
      queueTimeoutMs: 1000,
      retryAfterSeconds: 1,
      fallback: undefined,
    });
  });

  it('creates the middleware with its counters at 0', () => {
    const mw = bulkhead({ maxConcurrent: 2, maxQueue: 1, queueTimeoutMs: 300 });
    expect(mw.bulkhead.active).toBe(0);
    expect(mw.bulkhead.queued).toBe(0);
  });
});
