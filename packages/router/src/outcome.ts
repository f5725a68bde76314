import type { IncomingMessage } from 'node:http';
import {
  Listeners,
  isFailedEnd,
  type AttemptEnd,
  type GatewayError,
  type Target,
} from '@turnpike/core';

export { Listeners };
import type { RouteInfo } from './types';

/** Where an upstream call is: each step happens once, in this order. */
export type AttemptPhase = 'connecting' | 'sent' | 'head' | 'body' | 'done';

/** One upstream call, as outcome listeners see it. */
export interface AttemptInfo {
  /** The target called. */
  readonly target: Target;
  /** When the call started (`performance.now()` ms). */
  readonly startedAt: number;
  /** When the response head arrived (`performance.now()` ms); 0 when it never did. */
  readonly headAt: number;
  /** When the call ended (`performance.now()` ms); 0 while it runs. */
  readonly endedAt: number;
  /** Request body bytes sent upstream. */
  readonly bytesSent: number;
  /** Response body bytes received from upstream. */
  readonly bytesReceived: number;
  /** How far the call got before it ended. */
  readonly phase: AttemptPhase;
  /** How it ended, as its picker heard ('cancelled' for a hedge that lost); undefined while running. */
  readonly end: AttemptEnd | undefined;
  /** The upstream's status, or 0 before the response head. */
  readonly status: number;
}

/**
 * How a request handled by the router ended. Upstream kinds (an attempt was made):
 * - `complete`: the upstream's response reached the client whole (any status).
 * - `cut-off`: the response head was sent but the body ended early (upstream closed, reset,
 *   sent a bad chunk, or the deadline passed mid-body).
 * - `refused`, `dns`, `connect-timeout`: no connection to the target.
 * - `reset`: the connection broke before the response head.
 * - `timeout`: the service's deadline passed before the response head.
 * - `protocol`: the upstream's answer was not valid HTTP (a four-digit status included).
 * - `bad-status`: a status or transfer coding the gateway does not forward (`099`, a `100` or
 *   `101` it did not ask for, a coding other than chunked, a `101` naming another protocol).
 * - `upgraded`: a WebSocket handshake succeeded and the tunnel is open.
 * - `client-gone`: the client left before the response was complete (with or without an attempt).
 * Without an upstream call (attempt undefined):
 * - `stage`: a stage answered (auth 401, limiter 429, a cache hit …), failed, or passed the
 *   request on with `next('route')`.
 * - `rejected`: the router refused at the proxy stage: 413, 503 no target, 408 when the
 *   deadline passed while the body was still being read (a slow client), 500 for a body it
 *   cannot re-send. (A 413 while a large body streams comes after the attempt started.)
 * - `handled`: a `handler` route answered, failed, or passed the request on.
 * `status` is what the client got: the upstream's, a stage's, or the gateway's problem.
 */
export type OutcomeKind = Exclude<AttemptEnd, 'cancelled'> | 'stage' | 'rejected' | 'handled';

/** One request's end, reported once to every {@link OutcomeListener}. */
export interface Outcome {
  readonly kind: OutcomeKind;
  /** The route that matched. */
  readonly route: RouteInfo;
  /** The service of the route; undefined for a `handler` route. */
  readonly service: string | undefined;
  /** The request (its `id`, `method`, and what stages set on it). */
  readonly req: IncomingMessage;
  /** The status the client got (the upstream's, a stage's, or the gateway's problem); 0 when the router sent no head (the client left first, or the request was passed on). */
  readonly status: number;
  /** The upstream call that answered (or the last one); undefined when none was made. */
  readonly attempt: AttemptInfo | undefined;
  /** Every upstream call of the request, in order: retries and hedges included. */
  readonly attempts: readonly AttemptInfo[];
  /** Retries and hedges sent. */
  readonly retries: number;
  readonly hedges: number;
  /**
   * Why a fallback answered instead of the upstream or the router's problem (`circuit-open`,
   * `overloaded`, `upstream-failure` …, as the stage that set it names it); undefined when
   * none did. `status` is then the fallback's; `attempt.status` the upstream's, if any.
   */
  readonly fallback: string | undefined;
  /** The gateway error answered (or that ended the response), if any. */
  readonly error: GatewayError | undefined;
  /** The underlying failure (an undici or socket error), for logs. Never sent to the client. */
  readonly cause: unknown;
  /** From the route match to the end, in ms. */
  readonly durationMs: number;
}

/** Receives every outcome. It must not throw; one that does is logged and ignored. */
export type OutcomeListener = (outcome: Outcome) => void;

/** True for the kinds in which the upstream itself failed (passive health and breakers count these). */
export function isUpstreamFailure(kind: OutcomeKind): boolean {
  return isFailedEnd(kind);
}

/** The outcome listeners of one router. */
export class Outcomes extends Listeners<Outcome> {
  constructor(onListenerError: (err: unknown) => void) {
    super(onListenerError, 'onOutcome');
  }
}
