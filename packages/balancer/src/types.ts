import type { IncomingMessage } from 'node:http';
import type { AttemptReport, Target, TargetInput, TargetPicker } from '@turnpike/core';

/**
 * One target of a balancer with the state strategies read. The balancer owns and updates
 * it; a strategy only reads it (and may keep its own per-member state in `slot`).
 */
export interface Member {
  readonly target: Target;
  /** Its position in the balancer's current member list. */
  readonly index: number;
  /** The current weight; 0 drains the member (no new requests). */
  readonly weight: number;
  /** Attempts started and not ended. */
  readonly inFlight: number;
  /** Peak-EWMA of latency to the response head, in ms (0 before the first sample). */
  readonly latencyMs: number;
  /** Active health: false once `unhealthyThreshold` checks in a row failed. True without checks. */
  readonly healthy: boolean;
  /** Passive health: ejected until this time (`Date.now()` ms); 0 when not ejected. */
  readonly ejectedUntil: number;
  /** A strategy's own per-member state (e.g. smooth weighted round-robin's current weight). */
  slot: number;
}

/**
 * A balancing strategy. `pick` chooses among `members` those for which `usable(member)` is
 * true (healthy, not ejected, not draining, and not tried by this request while untried ones
 * remain: the balancer decides), or returns undefined when none is. It must not allocate per
 * request what could be kept.
 */
export interface Strategy {
  pick(
    members: readonly Member[],
    usable: (member: Member) => boolean,
    req: IncomingMessage,
  ): Member | undefined;
  /** The member list was replaced (setTargets): rebuild what depends on it (a hash ring). */
  update?(members: readonly Member[]): void;
}

/** Builds a strategy once, at creation, over the first member list. */
export type StrategyFactory = (members: readonly Member[]) => Strategy;

/** The named strategies. */
export type StrategyName =
  'round-robin' | 'weighted-round-robin' | 'least-connections' | 'p2c' | 'random' | 'ip-hash';

/** A consistent-hash ring keyed by one part of the request (exactly one key). */
export interface HashKey {
  header?: string;
  cookie?: string;
  query?: string;
}

/** What a service's `balancer` may be: a name, `{ hash: … }`, or a user's factory. */
export type StrategyOption = StrategyName | { hash: HashKey } | StrategyFactory;

/** Active health checks of every target of a service. */
export interface HealthCheckOptions {
  /** Path requested on each target, e.g. '/health'. Required. */
  path: string;
  /** Between checks of one target, in ms (each round jittered down by up to 15 %). Default 5000. */
  intervalMs?: number;
  /** A check with no complete answer by then fails. Default 2000 (and below intervalMs). */
  timeoutMs?: number;
  /** Successes in a row that make an unhealthy target healthy. Default 2. */
  healthyThreshold?: number;
  /** Failures in a row that make a healthy target unhealthy. Default 3. */
  unhealthyThreshold?: number;
  /** Statuses that pass: a list, or a range `{ min, max }`. Default 200–399. */
  expectStatus?: readonly number[] | { min: number; max: number };
  /** Method of the check: GET or HEAD. Default 'GET'. */
  method?: 'GET' | 'HEAD';
  /** Headers sent with each check (e.g. Host). Default none. */
  headers?: Readonly<Record<string, string>>;
}

/** Passive health: ejecting targets that fail real traffic. */
export interface OutlierOptions {
  /** Failures in a row (connect failures, timeouts, resets, the statuses below) that eject. Default 5. */
  consecutiveFailures?: number;
  /** Statuses that count as failures (5xx only; 4xx never). Default [500, 502, 503, 504]. */
  statuses?: readonly number[];
  /** First ejection time, in ms; the n-th repeated ejection lasts n times as long. Default 30000. */
  baseEjectionMs?: number;
  /** Cap on an ejection's time, in ms. Default 300000. */
  maxEjectionMs?: number;
  /** Most targets ejected at once, as a percentage of the service's targets (rounded down). Default 50. */
  maxEjectionPercent?: number;
}

/** Options of {@link createBalancer}. */
export interface BalancerOptions {
  /** Service name, used in messages and events. Default `'service'`. */
  name?: string;
  /** The upstream targets; at least one. */
  targets: readonly TargetInput[];
  /** A strategy name, `{ hash: { header | cookie | query } }`, or a factory. Default `'round-robin'`. */
  strategy?: StrategyOption;
  /** Active health checks. Default: none (targets are healthy unless ejected). */
  healthCheck?: HealthCheckOptions;
  /** Passive health (outlier ejection), or false for none. Default: on, with the defaults above. */
  outlier?: OutlierOptions | false;
  /**
   * With no healthy target: false answers "none" (the router's 503 with Retry-After), true
   * uses every non-draining target regardless of health (Envoy's panic mode). Default false.
   */
  panic?: boolean;
}

/** A target's health changed (active checks). */
export interface HealthChangeEvent {
  readonly service: string;
  readonly target: Target;
  readonly healthy: boolean;
  /** Why: e.g. 'status 500', 'timeout', 'ECONNREFUSED', or 'passed'. */
  readonly reason: string;
}

/** A target was ejected by passive health. */
export interface EjectionEvent {
  readonly service: string;
  readonly target: Target;
  /** How long this ejection lasts, in ms. */
  readonly durationMs: number;
  /** The how-many-th ejection of this target. */
  readonly ejections: number;
  /** Failures in a row that caused it. */
  readonly failures: number;
}

/** An ejected target's time ran out and it takes traffic again. */
export interface ReadmissionEvent {
  readonly service: string;
  readonly target: Target;
}

/** What the health endpoints show of one target. */
export interface TargetStatus {
  readonly url: string;
  readonly weight: number;
  /** 'healthy', 'unhealthy' (active checks), 'ejected' (passive), or 'draining' (weight 0). */
  readonly state: 'healthy' | 'unhealthy' | 'ejected' | 'draining';
  /** The last active check, or null without checks / before the first. */
  readonly lastCheck: { readonly at: string; readonly ok: boolean; readonly detail: string } | null;
  /** Failures in a row, active or passive, whichever is counting. */
  readonly consecutiveFailures: number;
  readonly inFlight: number;
  /** Peak-EWMA latency in ms, rounded to 0.1. */
  readonly latencyMs: number;
  /** Times ejected so far; and until when, as an ISO time, while ejected. */
  readonly ejections: number;
  readonly ejectedUntil: string | null;
}

/** A service's pool of targets and the strategy that picks among them. */
export interface Balancer extends TargetPicker {
  readonly name: string;
  /** The current targets (frozen), in configured order. */
  readonly targets: readonly Target[];
  /**
   * The target of the next attempt, or undefined when none is usable. A bound function: pass
   * it around as it is. `tried` (default none) lists targets this request already used: they
   * are skipped while untried ones remain.
   */
  readonly pick: (req: IncomingMessage, tried?: readonly Target[]) => Target | undefined;
  /** An attempt to `target` started / ended: in-flight counts, latency, passive health. Bound. */
  readonly attemptStarted: (target: Target) => void;
  readonly attemptEnded: (target: Target, report: AttemptReport) => void;
  /** Whole seconds (≥ 1) until a target may be usable again: the next check or the earliest ejection's end. */
  readonly retryAfter: () => number;
  /** Whether any target is usable now (healthy, not ejected, not draining). */
  hasHealthy(): boolean;
  /**
   * Replaces the targets in one step (checked like the options; throws a ConfigError and
   * changes nothing if wrong). Targets that stay (same URL) keep their state: in-flight
   * count, health, latency, ejections; their weight is the new one. An empty list is
   * allowed here: every pick is then undefined (a 503 in the router), never a throw.
   */
  setTargets(targets: readonly TargetInput[]): void;
  /** Per-target state, for health endpoints and admin. */
  status(): TargetStatus[];
  onHealthChange(listener: (event: HealthChangeEvent) => void): () => void;
  onEject(listener: (event: EjectionEvent) => void): () => void;
  onReadmit(listener: (event: ReadmissionEvent) => void): () => void;
  /** Stops health checks and timers. Idempotent. */
  close(): void;
}
