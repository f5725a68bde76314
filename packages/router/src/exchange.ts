import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { AttemptEnd, AttemptReport, GatewayError, Target, TargetPicker } from '@turnpike/core';
import type { AttemptInfo, AttemptPhase, OutcomeKind } from './outcome';
import type { CompiledRoute } from './route';
import type { Snapshot } from './snapshot';
import type { UpstreamFailure } from './upstream-errors';
import type { ResponseTap, TapSink } from './tap';
import type { FailureAnswer } from './fallback';

const EXCHANGE = Symbol('turnpike.exchange');

/** One upstream call. The forwarder's undici handler carries it; it is its own report to the picker. */
export class Attempt implements AttemptInfo {
  phase: AttemptPhase = 'connecting';
  headAt = 0;
  bytesSent = 0;
  bytesReceived = 0;
  status = 0;
  /** How it ended; undefined while it runs. */
  end: AttemptEnd | undefined = undefined;
  endedAt = 0;
  readonly startedAt = performance.now();
  /** Aborts the call (undici's, once connected); undefined before. */
  abort: ((err?: Error) => void) | undefined = undefined;
  /** A retry's per-try timeout, while waiting for the head. */
  timer: NodeJS.Timeout | undefined = undefined;

  constructor(readonly target: Target) {}

  /** To the response head, or to the end when there was none. */
  get latencyMs(): number {
    return (this.headAt || this.endedAt || performance.now()) - this.startedAt;
  }
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
  /** The upstream call that answers (the last started until a head wins). */
  attempt: Attempt | undefined = undefined;
  /** Every call of this request, in order, once there is more than one (else undefined). */
  attempts: Attempt[] | undefined = undefined;
  /** Calls running now. */
  live = 0;
  /** Retries and hedges sent. */
  retries = 0;
  hedges = 0;
  /** A retry's backoff, or the next hedge. */
  retryTimer: NodeJS.Timeout | undefined = undefined;
  hedgeTimer: NodeJS.Timeout | undefined = undefined;
  /** The body, when it can be sent again (none or buffered within the retry limit). */
  replay: Buffer | null | undefined = undefined;
  /** The failure a scheduled retry is retrying (answered if the retry finds no target). */
  failure: UpstreamFailure | undefined = undefined;
  /** Hears when each call starts and ends (the service's balancer), if any. */
  picker: TargetPicker | undefined = undefined;
  /** Aborts the upstream call in flight (the WebSocket handshake's). */
  abort: ((err?: Error) => void) | undefined = undefined;
  /** Answers an upstream failure instead of the router's problem (a stage's fallback), if set. */
  onFailure: FailureAnswer | undefined = undefined;
  /** Upstream statuses `onFailure` answers instead of the upstream's response. */
  failureStatus: ((status: number) => boolean) | undefined = undefined;
  /** Why a fallback answered, for the outcome; undefined when none did. */
  fallback: string | undefined = undefined;
  /** A fallback still answering (asynchronously): how the exchange settles once `res` closes. */
  pending: { kind: OutcomeKind; error: GatewayError | undefined; cause: unknown } | undefined =
    undefined;
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
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.hedgeTimer !== undefined) clearTimeout(this.hedgeTimer);
    const attempt = this.attempt;
    if (attempt !== undefined) {
      // The phase stays where the call got to; only a call that ended well is 'done'.
      if (kind === 'complete' || kind === 'upgraded') attempt.phase = 'done';
      else if (attempt.phase !== 'done') {
        const abort = this.abort;
        this.abort = undefined;
        abort?.();
      }
      if (this.live !== 0) this.endLive(attempt, kind);
    }
    const sink = this.sink;
    if (sink !== undefined) {
      this.sink = undefined;
      sink.end(kind === 'complete');
    }
    this.snapshot.report(this, kind, error, cause);
    return true;
  }

  /** A call starts: it is the one that answers unless a head of another wins. */
  begin(attempt: Attempt): void {
    const prev = this.attempt;
    if (prev !== undefined) (this.attempts ??= [prev]).push(attempt);
    this.attempt = attempt;
    this.live++;
    const picker = this.picker;
    if (picker?.attemptStarted === undefined) return;
    try {
      picker.attemptStarted(attempt.target);
    } catch (err) {
      this.snapshot.pickerFailed(err);
    }
  }

  /** A call ended: reported to the picker, once. */
  finish(attempt: Attempt, end: AttemptEnd): void {
    if (attempt.end !== undefined) return;
    attempt.end = end;
    attempt.endedAt = performance.now();
    if (attempt.timer !== undefined) {
      clearTimeout(attempt.timer);
      attempt.timer = undefined;
    }
    this.live--;
    const picker = this.picker;
    if (picker?.attemptEnded === undefined) return;
    try {
      picker.attemptEnded(attempt.target, attempt as AttemptReport); // end is set
    } catch (err) {
      this.snapshot.pickerFailed(err);
    }
  }

  /** Ends the calls still running (each reported once) without settling: a fallback answers instead. */
  endCalls(kind: OutcomeKind): void {
    if (this.live !== 0 && this.attempt !== undefined) this.endLive(this.attempt, kind);
  }

  /** The tries so far, for the picker to skip. */
  tried(): Target[] {
    const list = this.attempts;
    if (list === undefined) return this.attempt === undefined ? [] : [this.attempt.target];
    return list.map((a) => a.target);
  }

  /** Ends the calls still running when the exchange settles: aborted, each reported once. */
  private endLive(current: Attempt, kind: OutcomeKind): void {
    const list = this.attempts ?? [current];
    for (const a of list) {
      if (a.end !== undefined) continue;
      let e: AttemptEnd;
      if (a === current)
        e = kind === 'stage' || kind === 'rejected' || kind === 'handled' ? 'cancelled' : kind;
      else e = kind === 'client-gone' || kind === 'timeout' ? kind : 'cancelled';
      this.finish(a, e);
      if (a !== current || a.phase !== 'done') a.abort?.();
    }
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
