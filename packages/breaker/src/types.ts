import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@turnpike/core';

/** The names of the three states. */
export type CircuitStateName = 'closed' | 'open' | 'half-open';

/**
 * Where a circuit is. Open carries the time it turns half-open (`until`, epoch ms, the same
 * on every instance that shares it) and how many times it has opened in a row (`opens`, which
 * doubles the reset time each time); half-open carries the probes in flight.
 */
export type CircuitState =
  | { readonly kind: 'closed' }
  | { readonly kind: 'open'; readonly until: number; readonly opens: number }
  | { readonly kind: 'half-open'; readonly probes: number; readonly opens: number };

/**
 * Why a circuit changed state:
 * - `failure-threshold`: `failureThreshold` failures in a row (closed → open);
 * - `failure-rate`: the failure rate over the window reached `failureRate` (closed → open);
 * - `reset-timeout`: the open time passed (open → half-open);
 * - `probe-success`: the probes succeeded (half-open → closed);
 * - `probe-failure`: a probe failed (half-open → open);
 * - `peer`: another instance sharing the circuit through Redis opened or closed it;
 * - `manual`: `open()` or `close()` was called.
 */
export type StateChangeReason =
  | 'failure-threshold'
  | 'failure-rate'
  | 'reset-timeout'
  | 'probe-success'
  | 'probe-failure'
  | 'peer'
  | 'manual';

/** A circuit changed state. */
export interface StateChangeEvent {
  /** The service (or the breaker's `name` when used alone). */
  readonly service: string;
  /** The route's name for a route's own breaker; undefined for a service's. */
  readonly route: string | undefined;
  readonly from: CircuitStateName;
  readonly to: CircuitStateName;
  readonly reason: StateChangeReason;
  /** The state now (an open state says until when). */
  readonly state: CircuitState;
}

/** Why a fallback answers: the circuit is open, the bulkhead is full, or the upstream failed. */
export type FallbackReason = 'circuit-open' | 'overloaded' | 'upstream-failure';

/** A fixed fallback answer, built once. */
export interface FallbackResponse {
  /** Default 200. */
  status?: number;
  /** Default: none (Content-Type follows the body). */
  headers?: Readonly<Record<string, string>>;
  /** A string (text/plain unless a Content-Type header says otherwise), a Buffer, or a value sent as JSON. Default: empty. */
  body?: unknown;
}

/** A fallback that answers itself; it may be async. One that throws (or rejects) is a 500 problem, logged. */
export type FallbackHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  reason: FallbackReason,
) => unknown;

/** A fallback: a fixed response or a function. */
export type Fallback = FallbackResponse | FallbackHandler;

/** Sharing a circuit's state through Redis (see {@link BreakerOptions.shared}). */
export interface SharedOptions {
  /** The Redis connection: an ioredis client (not closed by the breaker) or a URL (a connection of its own). Required. */
  redis: RedisLike | string;
  /** Prefix of the keys and the channel. Default `'turnpike:'`. */
  prefix?: string;
  /** How long the half-open probe lock is held at most, in ms. Default 10000. */
  probeLockMs?: number;
}

/** The part of an ioredis client sharing uses (an ioredis `Redis`; a `Cluster` is not supported: the state and lock keys of a circuit are written in one MULTI). */
export interface RedisLike {
  duplicate(): RedisLike;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
  readonly status: string;
}

/** Options of a circuit breaker. */
export interface BreakerOptions {
  /** Name in events and Redis keys (the gateway sets the service's). Default `'default'`. */
  name?: string;
  /**
   * Failures in a row that open the circuit. Default 5 when `failureRate` is not set;
   * with `failureRate` set, only when given.
   */
  failureThreshold?: number;
  /** Opens when failures / requests over the last `windowMs` reach this rate, in (0, 1]. Default: not set. */
  failureRate?: number;
  /** The rate's rolling window in ms, kept as a ring of `bucketMs` buckets. Default 10000. */
  windowMs?: number;
  /** One bucket of the window, in ms; the window is at least one bucket. Default 1000. */
  bucketMs?: number;
  /** Below this many requests in the window the rate never opens the circuit. Default 20. */
  minimumRequests?: number;
  /** How long the circuit stays open the first time, in ms; doubled on each open in a row. Default 30000. */
  resetTimeoutMs?: number;
  /** The longest open time, in ms. Default 300000 (or `resetTimeoutMs` when that is longer). */
  maxResetTimeoutMs?: number;
  /** Probes let through at once when half-open; others get the open answer. Default 1. */
  halfOpenRequests?: number;
  /** Probe successes that close the circuit. Default 1. */
  successThreshold?: number;
  /** Statuses that count as failures. Default: every 5xx except 501. 4xx never count unless listed. */
  failureStatuses?: readonly number[];
  /** Answers instead of the 503 `circuit-open` problem. Default: none. */
  fallback?: Fallback;
  /**
   * Also answer upstream failures with the fallback (in the gateway: a failure the circuit
   * counts, before the client got a response head). Default false.
   */
  fallbackOnFailure?: boolean;
  /**
   * Share the state with other instances through Redis: `SharedOptions` when used alone; in
   * the gateway `true` (the default when its `redis` is set) or false. Default: not shared.
   */
  shared?: SharedOptions | boolean;
  /** Where sharing problems and fallback failures are logged. Default: silent. */
  logger?: Logger;
}

/** Options of a bulkhead. */
export interface BulkheadOptions {
  /** Name in logs. Default `'default'`. */
  name?: string;
  /** Requests in flight at once. Required. */
  maxConcurrent: number;
  /** Requests that wait for a place once `maxConcurrent` are in flight. Default 0 (none wait). */
  maxQueue?: number;
  /** How long a request waits in the queue, in ms, before the 503. Default 1000. */
  queueTimeoutMs?: number;
  /** The `Retry-After` of the 503 `overloaded`, in seconds. Default 1. */
  retryAfterSeconds?: number;
  /** Answers instead of the 503 `overloaded` problem. Default: none. */
  fallback?: Fallback;
  /** Where fallback failures are logged. Default: silent. */
  logger?: Logger;
}
