import { performance } from 'node:perf_hooks';
import type { AttemptEnd } from '@turnpike/core';
import type { RetryOptions } from './types';

/** Methods a retry may repeat once bytes were sent (RFC 9110 §9.2.2). */
const IDEMPOTENT: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'OPTIONS',
  'PUT',
  'DELETE',
  'TRACE',
]);

/** Ends after which no byte of the request reached the upstream: safe to retry for any method. */
const NOT_SENT: ReadonlySet<AttemptEnd> = new Set<AttemptEnd>([
  'refused',
  'dns',
  'connect-timeout',
]);

/** Ends after bytes were sent that a retry may repeat (for idempotent requests). */
const RETRIABLE_AFTER_SEND: ReadonlySet<AttemptEnd> = new Set<AttemptEnd>([
  'reset',
  'timeout',
  'protocol',
  'bad-status',
]);

export const RETRY_DEFAULTS = Object.freeze({
  attempts: 2,
  statuses: Object.freeze([502, 503, 504]),
  idempotencyKey: false,
  bodyLimit: 64 * 1024,
  baseMs: 25,
  maxMs: 250,
  ratio: 0.2,
  minPerSecond: 5,
  windowMs: 10_000,
});

/**
 * Retries and hedges of one service stay within a share of its requests (Finagle's retry
 * budget): over a rolling window of one-second buckets, retries ≤ ratio × requests +
 * minPerSecond × window seconds. A failing service then sees at most (1 + ratio) times its
 * load, never attempts × load.
 */
export class RetryBudget {
  private readonly requests: Float64Array;
  private readonly retries: Float64Array;
  private readonly seconds: number;
  private readonly floor: number;
  /** The second the newest bucket counts (monotonic clock: a wall-clock step cannot stall it). */
  private head = 0;
  /** Running totals over the window's buckets. */
  private requestTotal = 0;
  private retryTotal = 0;

  constructor(
    private readonly ratio: number,
    minPerSecond: number,
    windowMs: number,
  ) {
    this.seconds = Math.max(1, Math.ceil(windowMs / 1000));
    this.requests = new Float64Array(this.seconds);
    this.retries = new Float64Array(this.seconds);
    this.floor = minPerSecond * this.seconds;
  }

  /** Moves the window to now: buckets older than the window are emptied. */
  private advance(): number {
    const now = Math.floor(performance.now() / 1000);
    const gap = now - this.head;
    if (gap > 0) {
      const n = Math.min(gap, this.seconds);
      for (let i = 1; i <= n; i++) {
        const b = (this.head + i) % this.seconds;
        this.requestTotal -= this.requests[b]!;
        this.retryTotal -= this.retries[b]!;
        this.requests[b] = 0;
        this.retries[b] = 0;
      }
      this.head = now;
    }
    return now % this.seconds;
  }

  /** One request of the service (its first try). */
  deposit(): void {
    this.requests[this.advance()]!++;
    this.requestTotal++;
  }

  /** Takes one retry (or hedge) from the budget; false when it is spent. */
  withdraw(): boolean {
    const b = this.advance();
    if (this.retryTotal + 1 > this.ratio * this.requestTotal + this.floor) return false;
    this.retries[b]!++;
    this.retryTotal++;
    return true;
  }
}

/** A service's retry settings, compiled once. */
export class RetryPolicy {
  readonly attempts: number;
  readonly statuses: ReadonlySet<number>;
  readonly idempotencyKey: boolean;
  readonly bodyLimit: number;
  readonly perTryTimeoutMs: number;
  readonly budget: RetryBudget;
  private readonly baseMs: number;
  private readonly maxMs: number;

  /** `connectOnly`: the default policy, which retries only tries that sent nothing. */
  constructor(
    options: RetryOptions,
    readonly connectOnly: boolean,
  ) {
    this.attempts = options.attempts ?? RETRY_DEFAULTS.attempts;
    this.statuses = new Set(connectOnly ? [] : (options.statuses ?? RETRY_DEFAULTS.statuses));
    this.idempotencyKey = options.idempotencyKey ?? RETRY_DEFAULTS.idempotencyKey;
    this.bodyLimit = options.bodyLimit ?? RETRY_DEFAULTS.bodyLimit;
    this.perTryTimeoutMs = options.perTryTimeoutMs ?? 0;
    this.baseMs = options.backoff?.baseMs ?? RETRY_DEFAULTS.baseMs;
    this.maxMs = options.backoff?.maxMs ?? RETRY_DEFAULTS.maxMs;
    const b = options.budget ?? {};
    this.budget = new RetryBudget(
      b.ratio ?? RETRY_DEFAULTS.ratio,
      b.minPerSecond ?? RETRY_DEFAULTS.minPerSecond,
      b.windowMs ?? RETRY_DEFAULTS.windowMs,
    );
  }

  /**
   * Whether a try that ended so may be retried, by what it did (the caller checks the count,
   * the body and the budget): nothing sent, any method; otherwise idempotent requests only.
   */
  allows(
    end: AttemptEnd | 'status',
    method: string,
    headers: Readonly<Record<string, unknown>>,
  ): boolean {
    if (end !== 'status' && NOT_SENT.has(end)) return true;
    if (this.connectOnly) return false;
    if (end !== 'status' && !RETRIABLE_AFTER_SEND.has(end)) return false;
    if (IDEMPOTENT.has(method)) return true;
    return this.idempotencyKey && headers['idempotency-key'] !== undefined;
  }

  /** The wait before retry `n` (1-based): full jitter over min(maxMs, baseMs × 2^(n-1)). */
  delay(n: number): number {
    return Math.floor(Math.random() * Math.min(this.maxMs, this.baseMs * 2 ** (n - 1)));
  }
}

/** The service's policy: the default (connect failures once), the configured one, or none. */
export function compileRetries(options: RetryOptions | false | undefined): RetryPolicy | undefined {
  if (options === false) return undefined;
  if (options === undefined) return new RetryPolicy({ attempts: 1 }, true);
  return new RetryPolicy(options, false);
}
