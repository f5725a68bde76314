import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendProblem } from '@turnpike/core';
import { CircuitBreaker, REJECTED } from './breaker';
import { Bulkhead, type Waiter } from './bulkhead';
import { compileFallback, RetryAfterErrors, type Answer } from './fallback';
import { parseBreakerOptions, parseBulkheadOptions } from './options';
import { shareCircuits, type Sharing } from './shared';
import type { BreakerOptions, BulkheadOptions } from './types';

/** An Express middleware (also plain node:http). */
type Middleware = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

/** {@link circuitBreaker}'s middleware, with its circuit. */
export interface CircuitBreakerMiddleware extends Middleware {
  /** The circuit: `state`, `onStateChange()`, `open()`, `close()`. */
  readonly breaker: CircuitBreaker;
  /** Stops sharing (closes the Redis connections it opened). */
  close(): Promise<void>;
}

/** {@link bulkhead}'s middleware, with its counters. */
export interface BulkheadMiddleware extends Middleware {
  readonly bulkhead: Bulkhead;
  /** Answers every waiting request 503 and stops. */
  close(): void;
}

/** Set by any bulkhead on a response it refused: the service was never called, nothing to judge. */
const REFUSED = Symbol('turnpike.bulkhead.refused');
type Refused = ServerResponse & { [REFUSED]?: true };

/** The open answer of a circuit: its fallback, or the 503 `circuit-open` with `Retry-After`. */
export function openAnswer(
  breaker: CircuitBreaker,
  fallback: Answer | undefined,
): (req: IncomingMessage, res: ServerResponse) => void {
  if (fallback !== undefined) return (req, res) => fallback(req, res, 'circuit-open');
  const errors = new RetryAfterErrors('ERR_TURNPIKE_CIRCUIT_OPEN');
  return (req, res) => sendProblem(req, res, errors.get(breaker.retryAfter()));
}

/**
 * A circuit breaker as Express middleware: it guards whatever handler comes after it. Open,
 * it answers at once (503 `circuit-open` with `Retry-After`, or the fallback) and the handler
 * is not called. It judges each request from the response: the status at `finish` (a failure
 * when in `failureStatuses`, by default 5xx except 501), and a response closed before it
 * finished as a failure.
 */
export function circuitBreaker(options: BreakerOptions = {}): CircuitBreakerMiddleware {
  const o = parseBreakerOptions(options, 'circuitBreaker.options');
  if (o.shared === true) {
    throw new TypeError(
      'Turnpike: circuitBreaker({ shared }) takes { redis } (an ioredis client or a URL) when used alone',
    );
  }
  const breaker = new CircuitBreaker(o);
  const sharing: Sharing | undefined =
    typeof o.shared === 'object' ? shareCircuits(o.shared, o.logger) : undefined;
  sharing?.add(breaker);
  const fallback =
    o.fallback === undefined ? undefined : compileFallback(o.fallback, o.logger, o.name);
  const rejected = openAnswer(breaker, fallback);
  // A symbol of this middleware's own: nested breakers each keep their admission.
  const ADMISSION = Symbol('turnpike.breaker.admission');
  type Marked = Refused & { [ADMISSION]?: number };
  function onClose(this: Marked): void {
    const admission = this[ADMISSION] ?? REJECTED;
    this[ADMISSION] = REJECTED;
    breaker.record(
      admission,
      this[REFUSED] === true
        ? undefined
        : this.writableFinished
          ? breaker.isFailureStatus(this.statusCode)
          : true,
    );
  }
  const mw = function turnpikeCircuitBreaker(req, res, next) {
    const admission = breaker.admit();
    if (admission === REJECTED) return rejected(req, res);
    (res as Marked)[ADMISSION] = admission;
    res.on('close', onClose);
    next();
  } as Middleware as CircuitBreakerMiddleware;
  Object.defineProperty(mw, 'breaker', { value: breaker, enumerable: true });
  (mw as { close: () => Promise<void> }).close = async () => {
    await sharing?.close();
  };
  return mw;
}

/** The refusal of a bulkhead: its fallback, or the 503 `overloaded` with `Retry-After`. */
export function overloadedAnswer(
  bulkhead: { retryAfterSeconds: number },
  fallback: Answer | undefined,
): (req: IncomingMessage, res: ServerResponse) => void {
  if (fallback !== undefined) return (req, res) => fallback(req, res, 'overloaded');
  const err = new RetryAfterErrors('ERR_TURNPIKE_OVERLOADED').get(bulkhead.retryAfterSeconds);
  return (req, res) => sendProblem(req, res, err);
}

/**
 * A bulkhead as Express middleware: at most `maxConcurrent` requests run the handlers after
 * it at once; up to `maxQueue` more wait up to `queueTimeoutMs`; past that, 503 `overloaded`
 * with `Retry-After` (or the fallback). A client that leaves while it waits frees its place.
 */
export function bulkhead(options: BulkheadOptions): BulkheadMiddleware {
  const o = parseBulkheadOptions(options, 'bulkhead.options');
  const fallback =
    o.fallback === undefined ? undefined : compileFallback(o.fallback, o.logger, o.name);
  const refuse = overloadedAnswer(o, fallback);
  // A circuit in front of this bulkhead does not count its refusals: the service was not called.
  const pool = new Bulkhead(o, (req, res) => {
    (res as Refused)[REFUSED] = true;
    refuse(req, res);
  });
  // A symbol of this middleware's own: nested bulkheads each keep their place.
  // HOLDING: the request holds a place; a Waiter: it waits in the queue.
  const PLACE = Symbol('turnpike.bulkhead.place');
  type Held = ServerResponse & { [PLACE]?: typeof HOLDING | Waiter | undefined };
  function onClose(this: Held): void {
    const place = this[PLACE];
    this[PLACE] = undefined;
    if (place === HOLDING) pool.release();
    else if (place !== undefined) pool.cancel(place);
  }
  const mw = function turnpikeBulkhead(req, res, next) {
    const marked = res as Held;
    if (pool.tryEnter()) {
      marked[PLACE] = HOLDING;
      res.on('close', onClose);
      return next();
    }
    const waiter = pool.enter(req, res, () => {
      marked[PLACE] = HOLDING;
      next();
    });
    if (waiter === undefined) return;
    marked[PLACE] = waiter;
    res.on('close', onClose);
  } as Middleware as BulkheadMiddleware;
  Object.defineProperty(mw, 'bulkhead', { value: pool, enumerable: true });
  (mw as { close: () => void }).close = () => pool.close();
  return mw;
}

const HOLDING = 1;
