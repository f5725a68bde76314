import { Listeners, type Logger } from '@turnpike/core';
import type { ParsedBreakerOptions } from './options';
import type { CircuitState, CircuitStateName, StateChangeEvent, StateChangeReason } from './types';
import { RollingWindow } from './window';

/** What {@link CircuitBreaker.admit} returns when the request may not pass. */
export const REJECTED = 0;

/** A circuit's state as another instance announced it (through Redis). */
export type PeerState =
  | { readonly kind: 'open'; readonly until: number; readonly opens: number; readonly at: number }
  | { readonly kind: 'closed'; readonly at: number };

/**
 * What a circuit tells the instances it shares with, and asks them (see shared.ts). Every
 * call returns at once: the work goes on in the background, and the request path never
 * waits on Redis.
 */
export interface BreakerSync {
  /** Whether sharing works right now (Redis connected); when false the circuit decides alone. */
  readonly active: boolean;
  /** This circuit opened (or reopened) here. */
  opened(breaker: CircuitBreaker, until: number, opens: number, at: number): void;
  /** This circuit closed here. */
  closed(breaker: CircuitBreaker, at: number): void;
  /**
   * The open time passed here: try to become the one instance that probes. Calls
   * `breaker.probeGranted()` when this instance won (or sharing failed and it decides alone);
   * otherwise the circuit stays open until a peer's verdict (or the lock expires).
   */
  requestProbe(breaker: CircuitBreaker): void;
}

/**
 * A circuit breaker's state machine: closed, open (until a time), half-open (probes in
 * flight). Synchronous and allocation-free on the closed path: `admit()` reads the state,
 * `record()` counts the verdict. The transports (Express middleware, the gateway's outcomes)
 * call it; it knows nothing of HTTP.
 *
 * An admission is a number: the state's generation times two, plus one for a probe. A
 * verdict recorded for an admission from an earlier state is ignored, so requests admitted
 * before the circuit opened cannot close it, nor count twice.
 */
export class CircuitBreaker {
  readonly name: string;
  /** The route's name for a route's own circuit (the gateway's), else undefined. */
  readonly route: string | undefined;
  /** Set by sharing; undefined when the circuit is this instance's alone. */
  sync: BreakerSync | undefined = undefined;

  private kind: CircuitStateName = 'closed';
  private until = 0;
  private opens = 0;
  private probes = 0;
  private successes = 0;
  private consecutive = 0;
  private generation = 1;
  private lastChange = 0;
  /**
   * When the last transition happened, on `performance.now()`: `lastChange` is whole ms and
   * may run ahead of the clock (ordered changes within one ms), so it cannot tell a request
   * that started just after a change from one that started before it.
   */
  private changedAtMono = 0;
  /** Waiting for the shared probe lock. */
  private asking = false;
  private readonly window: RollingWindow | undefined;
  private readonly failing: Uint8Array;
  private readonly changes: Listeners<StateChangeEvent>;

  constructor(
    readonly options: ParsedBreakerOptions,
    route?: string,
    logger?: Logger,
  ) {
    this.name = options.name;
    this.route = route;
    this.window =
      options.failureRate === undefined
        ? undefined
        : new RollingWindow(options.windowMs, options.bucketMs);
    this.failing = new Uint8Array(600);
    for (const s of options.failureStatuses) this.failing[s] = 1;
    this.changes = new Listeners<StateChangeEvent>(
      (err) =>
        (logger ?? options.logger).error('breaker state listener failed', {
          service: this.name,
          error: String(err),
        }),
      'onStateChange',
    );
  }

  /** When the last transition happened (epoch ms): a peer's older news is ignored. */
  get changedAt(): number {
    return this.lastChange;
  }

  /** The state now (an open circuit whose time has passed still reads open until a request arrives). */
  get state(): CircuitState {
    switch (this.kind) {
      case 'closed':
        return CLOSED;
      case 'open':
        return { kind: 'open', until: this.until, opens: this.opens };
      default:
        return { kind: 'half-open', probes: this.probes, opens: this.opens };
    }
  }

  /** Whether an upstream status counts as a failure. */
  isFailureStatus(status: number): boolean {
    return this.failing[status] === 1;
  }

  /** Subscribes to state changes; returns the disposer. */
  onStateChange(listener: (event: StateChangeEvent) => void): () => void {
    return this.changes.on(listener);
  }

  /**
   * Asks to let one request through: an admission (a positive number) to pass to
   * {@link record} when the request ends, or {@link REJECTED}.
   */
  admit(): number {
    if (this.kind === 'closed') return this.generation * 2;
    if (this.kind === 'open') {
      if (Date.now() < this.until) return REJECTED;
      const sync = this.sync;
      if (sync !== undefined && sync.active) {
        // One instance probes: ask in the background, answer open meanwhile.
        if (!this.asking) {
          this.asking = true;
          sync.requestProbe(this);
        }
        return REJECTED;
      }
      this.toHalfOpen();
    }
    if (this.probes >= this.options.halfOpenRequests) return REJECTED;
    this.probes++;
    return this.generation * 2 + 1;
  }

  /**
   * The verdict on an admitted request: true a failure, false a success, undefined neither
   * (the client left, the request was refused before it reached the service): a probe's
   * place is freed, nothing is counted.
   */
  record(admission: number, failed: boolean | undefined): void {
    if (admission === REJECTED) return;
    const probe = admission % 2 === 1;
    if ((admission - (probe ? 1 : 0)) / 2 !== this.generation) return;
    if (probe) {
      this.probes--;
      if (failed === undefined) return;
      if (failed) return this.toOpen('probe-failure');
      if (++this.successes >= this.options.successThreshold) this.toClosed('probe-success');
      return;
    }
    if (failed !== undefined) this.count(failed);
  }

  /**
   * The verdict on a request admitted while closed, for a transport that keeps no admission
   * per request (the gateway): `since` (`performance.now()`) is when the request started. Counted only
   * while the circuit is closed and the request started after its last change, which is what
   * the generation of an admission proves otherwise.
   */
  recordClosed(failed: boolean, since: number): void {
    if (this.kind === 'closed' && since > this.changedAtMono) this.count(failed);
  }

  /** Whether the circuit is half-open: the only state whose admissions must be told apart. */
  get halfOpen(): boolean {
    return this.kind === 'half-open';
  }

  private count(failed: boolean): void {
    const o = this.options;
    const window = this.window;
    if (window !== undefined) window.add(Date.now(), failed);
    if (!failed) {
      this.consecutive = 0;
      return;
    }
    this.consecutive++;
    if (o.failureThreshold !== undefined && this.consecutive >= o.failureThreshold) {
      return this.toOpen('failure-threshold');
    }
    if (
      window !== undefined &&
      window.total >= o.minimumRequests &&
      window.failures / window.total >= o.failureRate! // a division: 0.56 × 25 is 14.000000000000002
    ) {
      this.toOpen('failure-rate');
    }
  }

  /** Whole seconds until a request may pass again, at least 1 (the `Retry-After` of the open answer). */
  retryAfter(): number {
    if (this.kind !== 'open') return 1;
    return Math.max(1, Math.ceil((this.until - Date.now()) / 1000));
  }

  /** Opens the circuit by hand, for `ms` (default: the next reset time). */
  open(ms?: number): void {
    if (ms !== undefined && !(Number.isInteger(ms) && ms >= 1 && ms <= 86_400_000)) {
      throw new TypeError(
        `Turnpike: breaker.open(ms) takes whole ms from 1 to 86400000, got ${ms}`,
      );
    }
    this.toOpen('manual', ms);
  }

  /** Closes the circuit by hand. */
  close(): void {
    if (this.kind !== 'closed') this.toClosed('manual');
  }

  /** Sharing: this instance won the probe lock (or decides alone). */
  probeGranted(): void {
    this.asking = false;
    if (this.kind === 'open' && Date.now() >= this.until) this.toHalfOpen();
  }

  /** Sharing: another instance probes; ask again after `ms` if no verdict came. */
  probeDenied(ms: number): void {
    this.asking = false;
    if (this.kind === 'open') this.until = Math.max(this.until, Date.now() + ms);
  }

  /** Sharing: a peer's state. Newer than this circuit's last change: taken as this one's. */
  adopt(peer: PeerState): void {
    // A change time from the future (a skewed clock, a stray publisher) would make this
    // circuit ignore every real change after it: beyond a minute ahead it is dropped.
    if (!(peer.at > this.lastChange && peer.at <= Date.now() + 60_000)) return;
    if (peer.kind === 'open') {
      const now = Date.now();
      if (!(peer.until > now)) return;
      // A peer's time is capped by this circuit's own longest open time: a stray or skewed
      // announcement cannot hold it open for longer than it would hold itself.
      const until = Math.min(peer.until, now + this.options.maxResetTimeoutMs);
      this.transition('open', 'peer', peer.at, until, Math.max(1, Math.min(peer.opens, 64)));
    } else if (this.kind !== 'closed') {
      this.transition('closed', 'peer', peer.at, 0, 0);
    }
  }

  private toOpen(reason: StateChangeReason, ms?: number): void {
    const opens = this.opens + 1;
    const o = this.options;
    const wait = ms ?? Math.min(o.maxResetTimeoutMs, o.resetTimeoutMs * 2 ** (opens - 1));
    const now = Date.now();
    const at = this.nextChangeAt(now);
    this.transition('open', reason, at, now + wait, opens);
    this.sync?.opened(this, this.until, opens, at);
  }

  private toHalfOpen(): void {
    this.transition('half-open', 'reset-timeout', this.nextChangeAt(Date.now()), 0, this.opens);
  }

  private toClosed(reason: StateChangeReason): void {
    const at = this.nextChangeAt(Date.now());
    this.transition('closed', reason, at, 0, 0);
    this.sync?.closed(this, at);
  }

  /** A change time after the last one, even within one millisecond: peers order changes by it. */
  private nextChangeAt(now: number): number {
    return now > this.lastChange ? now : this.lastChange + 1;
  }

  private transition(
    to: CircuitStateName,
    reason: StateChangeReason,
    at: number,
    until: number,
    opens: number,
  ): void {
    const from = this.kind;
    this.kind = to;
    this.until = until;
    this.opens = opens;
    this.generation++;
    this.lastChange = at;
    this.changedAtMono = performance.now();
    this.probes = 0;
    this.successes = 0;
    this.consecutive = 0;
    this.asking = false;
    this.window?.clear();
    if (from === to || !this.changes.listening) return;
    this.changes.emit({
      service: this.name,
      route: this.route,
      from,
      to,
      reason,
      state: this.state,
    });
  }
}

const CLOSED: CircuitState = Object.freeze({ kind: 'closed' });
