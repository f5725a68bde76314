import type { IncomingMessage } from 'node:http';
import { ConfigError, isFailedEnd, join, type AttemptReport, type Target } from '@turnpike/core';
import { Prober } from './health';
import { parseOptions, parseTargetsOrNone, type NormalisedHealthCheck } from './options';
import { OutlierDetector, readmit } from './outlier';
import { resolveStrategy } from './strategy';
import type {
  Balancer,
  BalancerOptions,
  EjectionEvent,
  HealthChangeEvent,
  Member,
  ReadmissionEvent,
  Strategy,
  TargetStatus,
} from './types';

export { parseTargets } from './options';

/** Decay time of the peak-EWMA latency, in ms (Finagle's and Linkerd's default). */
const LATENCY_TAU_MS = 10_000;
const NO_TARGETS: readonly Target[] = Object.freeze([]);

/** The least a failure counts as, in ms. */
const FAILURE_PENALTY_MS = 1000;
/** The most a failure's penalty grows to by doubling, in ms (the latency's decay time). */
const FAILURE_PENALTY_MAX_MS = LATENCY_TAU_MS;
/** The most retryAfter() says, in s (a day). */
const RETRY_AFTER_MAX_S = 86_400;

/**
 * A failure's latency sample: twice the latency so far, at least 1 s and at most 10 s, so
 * failures in a row double it up to a bound it decays from once the target answers again;
 * never below the latency so far or the attempt's own time, so a failure never makes a
 * target look faster.
 */
function failurePenalty(current: number, sample: number): number {
  const doubled = Math.min(Math.max(2 * current, FAILURE_PENALTY_MS), FAILURE_PENALTY_MAX_MS);
  return Math.max(sample, current, doubled);
}

/** A member with the state the balancer keeps; strategies see it as a {@link Member}. */
class MemberState implements Member {
  /** Set when setTargets removed it: reports of its attempts still running are ignored. */
  removed = false;
  inFlight = 0;
  latencyMs = 0;
  healthy = true;
  ejectedUntil = 0;
  slot = 0;
  /** Passive health: failures in a row and ejections so far. */
  failures = 0;
  ejections = 0;
  /** Active health: results in a row. */
  checkFailures = 0;
  checkSuccesses = 0;
  lastCheck: TargetStatus['lastCheck'] = null;
  latencyAt = 0;
  prober: Prober | undefined;

  weight: number;

  constructor(
    public target: Target,
    public index: number,
  ) {
    this.weight = target.weight;
  }
}

type Listener<E> = (event: E) => void;

function emitter<E>(): { listeners: Set<Listener<E>>; emit(event: E): void } {
  const listeners = new Set<Listener<E>>();
  return {
    listeners,
    emit(event) {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          // A listener's failure is its own: the balancer goes on.
        }
      }
    },
  };
}

function subscribe<E>(set: Set<Listener<E>>, listener: Listener<E>): () => void {
  if (typeof listener !== 'function') throw new TypeError('listener must be a function');
  // Wrapped so that the same function added twice is two subscriptions.
  const entry: Listener<E> = (event) => listener(event);
  set.add(entry);
  return () => {
    set.delete(entry);
  };
}

/**
 * Creates a balancer: a service's targets, the strategy that picks among them, active health
 * checks and passive health (outlier ejection). Usable alone, e.g. as http-proxy-middleware's
 * `router`: `createProxyMiddleware({ router: (req) => balancer.pick(req)?.url })`.
 */
export function createBalancer(options: BalancerOptions, path = 'balancer'): Balancer {
  const parsed = parseOptions(options, path);
  const { name, healthCheck, panic } = parsed;
  const detector = parsed.outlier === false ? undefined : new OutlierDetector(parsed.outlier);
  const strategyPath = join(path, 'strategy');
  const factory = resolveStrategy(parsed.strategy, strategyPath);

  let members: readonly MemberState[] = Object.freeze(
    parsed.targets.map((t, i) => new MemberState(t, i)),
  );
  let targets: readonly Target[] = Object.freeze([...parsed.targets]);
  let byUrl = new Map<string, MemberState>();
  let ejected = 0;
  let closed = false;

  const healthChange = emitter<HealthChangeEvent>();
  const ejection = emitter<EjectionEvent>();
  const readmission = emitter<ReadmissionEvent>();

  /** Every Target object a member ever had → that member: an attempt reports to the member it started on. */
  const issued = new WeakMap<Target, MemberState>();

  function index(): void {
    byUrl = new Map();
    for (const m of members) {
      issued.set(m.target, m);
      if (!byUrl.has(m.target.url)) byUrl.set(m.target.url, m);
    }
  }
  index();

  const strategy: Strategy = factory(members);
  if (typeof strategy?.pick !== 'function') {
    throw new ConfigError(
      strategyPath,
      'a factory returning { pick(members, usable, req) }',
      strategy,
    );
  }

  // The request's state for `usable`, set before each strategy.pick (single-threaded).
  let currentTried: readonly Target[] = NO_TARGETS;
  // 0: untried usable members; 1: tried ones too; 2: panic, any non-draining member.
  let mode = 0;

  function wasTried(m: MemberState): boolean {
    const url = m.target.url;
    for (let i = 0; i < currentTried.length; i++) {
      const t = currentTried[i]!;
      if (t === m.target || t.url === url) return true;
    }
    return false;
  }

  // Built once: strategies call it per member per request.
  const usable = (member: Member): boolean => {
    const m = member as MemberState;
    if (m.weight <= 0) return false;
    if (mode === 2) return true;
    if (!m.healthy || m.ejectedUntil !== 0) return false;
    if (mode === 0 && currentTried.length !== 0 && wasTried(m)) return false;
    return true;
  };

  /** Readmits members whose ejection is over (lazily: on pick, status and the like). */
  function sweep(now: number): void {
    for (const m of members) {
      if (m.ejectedUntil !== 0 && m.ejectedUntil <= now) {
        readmit(m);
        ejected--;
        readmission.emit({ service: name, target: m.target });
      }
    }
  }

  function pick(req: IncomingMessage, tried: readonly Target[] = NO_TARGETS): Target | undefined {
    if (members.length === 0) return undefined;
    if (ejected !== 0) sweep(Date.now());
    const list = members;
    currentTried = tried;
    mode = 0;
    try {
      let chosen = strategy.pick(list, usable, req);
      if (chosen === undefined && tried.length !== 0) {
        mode = 1;
        chosen = strategy.pick(list, usable, req);
      }
      if (chosen === undefined && panic) {
        mode = 2;
        chosen = strategy.pick(list, usable, req);
      }
      return chosen?.target;
    } finally {
      currentTried = NO_TARGETS;
      mode = 0;
    }
  }

  function lookup(target: Target): MemberState | undefined {
    const m = issued.get(target);
    // A Target this balancer never handed out (a user's own parse): matched by URL.
    if (m === undefined) return target ? byUrl.get(target.url) : undefined;
    return m.removed ? undefined : m;
  }

  function attemptStarted(target: Target): void {
    const m = lookup(target);
    if (m) m.inFlight++;
  }

  function attemptEnded(target: Target, report: AttemptReport): void {
    const m = lookup(target);
    if (!m) return;
    if (m.inFlight > 0) m.inFlight--;
    const end = report.end;
    if (end === 'client-gone') return;
    if (end === 'cancelled') {
      // A hedge's loser: how long it had waited is a lower bound on its latency (else a slow
      // target that always loses would keep looking fast to p2c). No health verdict.
      if (report.status === 0 && report.latencyMs > m.latencyMs) recordLatency(m, report.latencyMs);
      return;
    }
    // A failure counts as a slow answer (a penalty sample, not its time): a target refusing
    // in 1 ms must not look like the fastest.
    // So does a server error (5xx but 501): a target answering 503 in 1 ms is not fast.
    const status = report.status;
    const failed = isFailedEnd(end) || (status >= 500 && status !== 501);
    recordLatency(m, failed ? failurePenalty(m.latencyMs, report.latencyMs) : report.latencyMs);
    if (detector && detector.record(m, report)) {
      const now = Date.now();
      if (ejected !== 0) sweep(now);
      if (ejected < detector.maxEjected(members.length)) {
        const durationMs = detector.eject(m, now);
        ejected++;
        ejection.emit({
          service: name,
          target: m.target,
          durationMs,
          ejections: m.ejections,
          failures: m.failures,
        });
      }
    }
  }

  function recordLatency(m: MemberState, sample: number): void {
    if (!(sample >= 0) || !Number.isFinite(sample)) return;
    const now = Date.now();
    if (m.latencyAt === 0 || sample > m.latencyMs) {
      m.latencyMs = sample;
    } else {
      const w = Math.exp(-Math.max(0, now - m.latencyAt) / LATENCY_TAU_MS);
      m.latencyMs = m.latencyMs * w + sample * (1 - w);
    }
    m.latencyAt = now;
  }

  function onCheck(m: MemberState, ok: boolean, detail: string): void {
    if (!healthCheck) return;
    m.lastCheck = Object.freeze({ at: new Date().toISOString(), ok, detail });
    if (ok) {
      m.checkFailures = 0;
      m.checkSuccesses++;
      if (!m.healthy && m.checkSuccesses >= healthCheck.healthyThreshold) {
        m.healthy = true;
        healthChange.emit({ service: name, target: m.target, healthy: true, reason: 'passed' });
      }
    } else {
      m.checkSuccesses = 0;
      m.checkFailures++;
      if (m.healthy && m.checkFailures >= healthCheck.unhealthyThreshold) {
        m.healthy = false;
        healthChange.emit({ service: name, target: m.target, healthy: false, reason: detail });
      }
    }
  }

  function startChecks(m: MemberState, check: NormalisedHealthCheck): void {
    const prober = new Prober(
      () => m.target,
      check,
      (ok, detail) => onCheck(m, ok, detail),
    );
    m.prober = prober;
    prober.start();
  }

  function stopChecks(m: MemberState): void {
    m.prober?.stop();
    m.prober = undefined;
  }

  function retryAfter(): number {
    const now = Date.now();
    if (ejected !== 0) sweep(now);
    let earliest = Infinity;
    for (const m of members) {
      if (m.weight <= 0) continue;
      if (m.ejectedUntil !== 0 && m.ejectedUntil < earliest) earliest = m.ejectedUntil;
      if (!m.healthy && m.prober && m.prober.nextAt < earliest) earliest = m.prober.nextAt;
    }
    const seconds = Math.ceil((earliest - now) / 1000);
    // Whole seconds for Retry-After: never NaN or Infinity, at least 1, at most a day.
    if (!Number.isFinite(seconds)) return 1;
    return Math.min(RETRY_AFTER_MAX_S, Math.max(1, seconds));
  }

  function hasHealthy(): boolean {
    if (ejected !== 0) sweep(Date.now());
    for (const m of members) {
      if (m.weight > 0 && m.healthy && m.ejectedUntil === 0) return true;
    }
    return false;
  }

  function status(): TargetStatus[] {
    if (ejected !== 0) sweep(Date.now());
    return members.map((m) => {
      const state: TargetStatus['state'] =
        m.weight <= 0
          ? 'draining'
          : !m.healthy
            ? 'unhealthy'
            : m.ejectedUntil !== 0
              ? 'ejected'
              : 'healthy';
      return Object.freeze({
        url: m.target.url,
        weight: m.weight,
        state,
        lastCheck: m.lastCheck,
        consecutiveFailures: Math.max(m.failures, m.checkFailures),
        inFlight: m.inFlight,
        latencyMs: Math.round(m.latencyMs * 10) / 10,
        ejections: m.ejections,
        ejectedUntil: m.ejectedUntil === 0 ? null : new Date(m.ejectedUntil).toISOString(),
      });
    });
  }

  function setTargets(list: readonly unknown[]): void {
    const next = parseTargetsOrNone(list, join(path, 'targets'));
    // Members of URLs that stay are kept (each old member reused at most once).
    const old = new Map<string, MemberState[]>();
    for (const m of members) {
      const same = old.get(m.target.url);
      if (same) same.push(m);
      else old.set(m.target.url, [m]);
    }
    const kept = new Set<MemberState>();
    const added: MemberState[] = [];
    const nextMembers = next.map((target, i) => {
      const reuse = old.get(target.url)?.shift();
      if (reuse) {
        reuse.target = target;
        reuse.weight = target.weight;
        reuse.index = i;
        kept.add(reuse);
        return reuse;
      }
      const fresh = new MemberState(target, i);
      added.push(fresh);
      return fresh;
    });
    for (const m of members) {
      if (kept.has(m)) continue;
      m.removed = true;
      stopChecks(m);
      if (m.ejectedUntil !== 0) ejected--;
    }
    members = Object.freeze(nextMembers);
    targets = Object.freeze([...next]);
    index();
    strategy.update?.(members);
    if (healthCheck && !closed) for (const m of added) startChecks(m, healthCheck);
  }

  function close(): void {
    if (closed) return;
    closed = true;
    for (const m of members) stopChecks(m);
  }

  const balancer: Balancer = {
    name,
    get targets() {
      return targets;
    },
    pick,
    attemptStarted,
    attemptEnded,
    retryAfter,
    hasHealthy,
    setTargets,
    status,
    onHealthChange: (listener) => subscribe(healthChange.listeners, listener),
    onEject: (listener) => subscribe(ejection.listeners, listener),
    onReadmit: (listener) => subscribe(readmission.listeners, listener),
    close,
  };

  if (healthCheck) for (const m of members) startChecks(m, healthCheck);
  return balancer;
}
