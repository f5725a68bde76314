/** Express middleware: a circuit breaker and a bulkhead, each guarding the handlers after it. */
export { circuitBreaker, bulkhead, openAnswer, overloadedAnswer } from './middleware';
export type { CircuitBreakerMiddleware, BulkheadMiddleware } from './middleware';
/** The state machine and the concurrency cap, for other transports (the gateway's outcomes). */
export { CircuitBreaker, REJECTED } from './breaker';
export type { BreakerSync, PeerState } from './breaker';
export { Bulkhead } from './bulkhead';
export type { Waiter } from './bulkhead';
/** Sharing circuits across instances through Redis. */
export { shareCircuits } from './shared';
export type { Sharing } from './shared';
/** Fallback answers, compiled once. */
export { compileFallback, FALLBACK_HEADER } from './fallback';
export type { Answer } from './fallback';
/** Options and their checks; the gateway validates its config with the same shapes. */
export {
  breakerShape,
  bulkheadShape,
  completeBreakerOptions,
  fallbackCheck,
  parseBreakerOptions,
  parseBulkheadOptions,
  DEFAULT_FAILURE_STATUSES,
} from './options';
export type { ParsedBreakerOptions, ParsedBulkheadOptions } from './options';
export type {
  BreakerOptions,
  BulkheadOptions,
  CircuitState,
  CircuitStateName,
  Fallback,
  FallbackHandler,
  FallbackReason,
  FallbackResponse,
  RedisLike,
  SharedOptions,
  StateChangeEvent,
  StateChangeReason,
} from './types';
