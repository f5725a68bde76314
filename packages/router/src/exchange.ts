import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { GatewayError, Target } from '@turnpike/core';
import type { AttemptInfo, AttemptPhase, OutcomeKind } from './outcome';
import type { CompiledRoute } from './route';
import type { Snapshot } from './snapshot';
import type { ResponseTap, TapSink } from './tap';

const EXCHANGE = Symbol('turnpike.exchange');

/** One upstream call. The forwarder's undici handler carries it. */
export class Attempt implements AttemptInfo {
  phase: AttemptPhase = 'connecting';
  headAt = 0;
  bytesSent = 0;
  bytesReceived = 0;
  status = 0;
  readonly startedAt = performance.now();

  constructor(readonly target: Target) {}
}

/**
 * Where the router is with one request; every way out goes through {@link Exchange.settle}.
 * - `stages`: the route's stages are running.
 * - `forwarding`: the proxy stage took it (reading the body, calling upstream, streaming back).
 * - `settled`: its outcome is decided; whatever arrives later is ignored.
 */
export type ExchangeState = 'stages' | 'forwarding' | 'settled';

/** The router's state for one request: one object, on one symbol of the request. */
export class Exchange {
  state: ExchangeState = 'stages';
  /** The deadline, while forwarding. */
  timer: NodeJS.Timeout | undefined = undefined;
  /** The upstream call in flight (or the last one). */
  attempt: Attempt | undefined = undefined;
  /** Aborts the upstream call in flight. */
  abort: ((err?: Error) => void) | undefined = undefined;
  /** A response tap a stage set for this request, and the sink it opened. */
  tap: ResponseTap | undefined = undefined;
  sink: TapSink | undefined = undefined;
  /** For upgrades: the client socket and the bytes read past its head. */
  socket: Duplex | undefined = undefined;
  head: Buffer | undefined = undefined;
  /** For upgrades: stops watching the client once the tunnel opens. */
  onHandshakeEnd: (() => void) | undefined = undefined;
  readonly startedAt = performance.now();

  constructor(
    readonly snapshot: Snapshot,
    readonly route: CompiledRoute,
    readonly segments: readonly string[],
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** Leaves the router (a stage's next('route')): the host's next, when there is one. */
    readonly exit: ((err?: unknown) => void) | undefined,
  ) {}

  /**
   * Ends the exchange once: clears the deadline, aborts an upstream call still running, tells
   * the tap whether the body was complete, reports the outcome, and releases the snapshot.
   * Returns false when it had already ended. Answering the client is the caller's part.
   */
  settle(kind: OutcomeKind, error?: GatewayError, cause?: unknown): boolean {
    if (this.state === 'settled') return false;
    this.state = 'settled';
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const attempt = this.attempt;
    if (attempt !== undefined) {
      // The phase stays where the call got to; only a call that ended well is 'done'.
      if (kind === 'complete' || kind === 'upgraded') attempt.phase = 'done';
      else if (attempt.phase !== 'done') {
        const abort = this.abort;
        this.abort = undefined;
        abort?.();
      }
    }
    const sink = this.sink;
    if (sink !== undefined) {
      this.sink = undefined;
      sink.end(kind === 'complete');
    }
    this.snapshot.report(this, kind, error, cause);
    return true;
  }
}

/** The exchange of a request the router is handling. */
export function exchangeOf(req: IncomingMessage): Exchange | undefined {
  return (req as unknown as { [EXCHANGE]?: Exchange })[EXCHANGE];
}

/** Attaches an exchange to its request. */
export function setExchange(req: IncomingMessage, ex: Exchange): void {
  (req as unknown as { [EXCHANGE]?: Exchange })[EXCHANGE] = ex;
}
