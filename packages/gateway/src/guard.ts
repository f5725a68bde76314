import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, object, type Check, type Logger, type Shape } from '@turnpike/core';
import {
  Bulkhead,
  CircuitBreaker,
  REJECTED,
  breakerShape,
  bulkheadShape,
  compileFallback,
  completeBreakerOptions,
  fallbackCheck,
  openAnswer,
  overloadedAnswer,
  parseBulkheadOptions,
  shareCircuits,
  type Answer,
  type BreakerOptions,
  type BulkheadOptions,
  type Fallback,
  type RedisLike,
  type Sharing,
  type StateChangeEvent,
  type Waiter,
  type CircuitStateName,
} from '@turnpike/breaker';
import {
  answerFailure,
  markFallback,
  type FailureAnswer,
  type Middleware,
  type Outcome,
  type RouteInfo,
} from '@turnpike/router';

/** A circuit breaker as the gateway's config takes it: the service's name, and `shared` true or false. */
export type ServiceBreakerConfig = Omit<BreakerOptions, 'name' | 'logger' | 'shared'> & {
  /** Share the circuit with other instances through the gateway's `redis`. Default: true when `redis` is set. */
  shared?: boolean;
};

/** A service's bulkhead as the gateway's config takes it. */
export type ServiceBulkheadConfig = Omit<BulkheadOptions, 'name' | 'logger'>;

const { name: _name, logger: _logger, shared: _shared, ...ownBreakerKeys } = breakerShape;
const breakerConfig = object<ServiceBreakerConfig>({
  ...(ownBreakerKeys as Omit<Shape<ServiceBreakerConfig>, 'shared'>),
  shared: (v, p) => {
    if (typeof v !== 'boolean') {
      throw new ConfigError(p, 'true or false (the connection is the gateway\'s "redis")', v);
    }
    return v;
  },
});

/** A service's `breaker`: the options (their relations too), or false. */
export const breakerCheck: Check<ServiceBreakerConfig | false> = (value, path) => {
  if (value === false) return false;
  const parsed = breakerConfig(value, path);
  // fallbackOnFailure may rely on the routes' fallbacks: checked per route (checkGuards).
  completeBreakerOptions({ ...parsed, fallbackOnFailure: undefined }, path);
  return parsed;
};

/** A route's `breaker`: each field checked now; their relations once merged over the service's, when the gateway compiles. */
const routeBreakerCheck: Check<ServiceBreakerConfig | false> = (value, path) =>
  value === false ? false : breakerConfig(value, path);

const { name: _bname, logger: _blogger, ...ownBulkheadKeys } = bulkheadShape;
const bulkheadConfig = object<ServiceBulkheadConfig>(ownBulkheadKeys, ['maxConcurrent']);

/** `bulkhead`: the options, or false. */
export const bulkheadCheck: Check<ServiceBulkheadConfig | false> = (value, path) =>
  value === false ? false : bulkheadConfig(value, path);

/** The route keys this module adds, checked by the router's extensions. */
export const routeExtensions = {
  breaker: routeBreakerCheck,
  fallback: (value: unknown, path: string): Fallback | false =>
    value === false ? false : fallbackCheck(value, path),
};

/** What one service declares. */
export interface ServiceGuardConfig {
  readonly breaker?: ServiceBreakerConfig | false;
  readonly bulkhead?: ServiceBulkheadConfig | false;
}

/** A route's breaker as its keys and its service's make it. */
interface RouteBreaker {
  /** The effective options (the route's keys over the service's), or undefined for none. */
  readonly config: ServiceBreakerConfig | undefined;
  /** Whether the route has a circuit of its own. */
  readonly own: boolean;
  /** The fallback the route answers with (its own, else its circuit's), if any. */
  readonly fallback: Fallback | undefined;
}

/** The one place that says what a route's `breaker` and `fallback` make of its service's. */
function routeBreaker(
  service: ServiceBreakerConfig | false | undefined,
  route: { breaker?: ServiceBreakerConfig | false; fallback?: Fallback | false },
): RouteBreaker {
  let config = service === false ? undefined : service;
  const own = route.breaker !== undefined && route.breaker !== false;
  if (route.breaker === false) config = undefined;
  else if (own) config = { ...config, ...(route.breaker as ServiceBreakerConfig) };
  const fallback =
    route.fallback === undefined
      ? config?.fallback
      : route.fallback === false
        ? undefined
        : route.fallback;
  return { config, own, fallback };
}

/**
 * The checks of guards that need more than one field, without creating anything: a route's
 * breaker merged over its service's, `shared` without `redis`, a fallback without a circuit.
 */
export function checkGuards(config: {
  services: Readonly<Record<string, ServiceGuardConfig>>;
  routes: readonly {
    service?: string;
    breaker?: ServiceBreakerConfig | false;
    fallback?: Fallback | false;
  }[];
  redis?: unknown;
}): void {
  const shared = (c: ServiceBreakerConfig, path: string): void => {
    if (c.shared === true && config.redis === undefined) {
      throw new ConfigError(
        `${path}.shared`,
        'the gateway\'s "redis" set (sharing goes through Redis)',
        true,
      );
    }
  };
  for (const [name, s] of Object.entries(config.services)) {
    if (s.breaker) shared(s.breaker, `services.${name}.breaker`);
  }
  config.routes.forEach((route, i) => {
    const s = route.service === undefined ? undefined : config.services[route.service];
    const at = `routes[${i}]`;
    if (route.service !== undefined && s === undefined) return; // the router names the unknown service
    if (s === undefined) {
      if (route.breaker !== undefined && route.breaker !== false)
        throw new ConfigError(
          `${at}.breaker`,
          'a route with a service (not a handler)',
          'a breaker',
        );
      if (route.fallback !== undefined && route.fallback !== false)
        throw new ConfigError(
          `${at}.fallback`,
          'a route with a service (not a handler)',
          'a fallback',
        );
      return;
    }
    const { config: effective, own, fallback } = routeBreaker(s.breaker, route);
    if (own) {
      completeBreakerOptions({ ...effective, fallbackOnFailure: undefined }, `${at}.breaker`);
      shared(effective!, `${at}.breaker`);
    }
    if (route.fallback !== undefined && route.fallback !== false && effective === undefined) {
      throw new ConfigError(
        `${at}.fallback`,
        "a route with a breaker (its own or its service's)",
        'a fallback',
      );
    }
    // fallback: false on a route turns its fallback off: nothing to check.
    if (
      effective?.fallbackOnFailure === true &&
      fallback === undefined &&
      route.fallback !== false
    ) {
      const onRoute = own && (route.breaker as ServiceBreakerConfig).fallbackOnFailure === true;
      throw new ConfigError(
        onRoute
          ? `${at}.breaker.fallbackOnFailure`
          : `services.${route.service}.breaker.fallbackOnFailure`,
        `a fallback to answer with (routes[${i}] has none: set breaker.fallback or the route's fallback)`,
        true,
      );
    }
  });
}

/** What guards one route: its circuit (the service's or its own) and the service's bulkhead. */
interface RouteGuard {
  readonly breaker: CircuitBreaker | undefined;
  readonly bulkhead: Bulkhead | undefined;
}

/**
 * Per-request marks, only where they are needed: PROBE on a half-open probe (the closed path
 * marks nothing: the outcome's start time tells a stale verdict, see recordClosed), PLACE on
 * a request of a service with a bulkhead. A symbol read on a request walks its prototype chain
 * when absent, so the outcome listener reads them only when they can be there.
 */
const PROBE = Symbol('turnpike.probe');
const PLACE = Symbol('turnpike.bulkhead');
/** PLACE: HOLDING a place, or the ticket of a request waiting in the queue. */
const HOLDING = 1;
type Guarded = IncomingMessage & { [PROBE]?: number; [PLACE]?: typeof HOLDING | Waiter };

/** The circuit's verdict on a request's one outcome (its retries included): true a failure, undefined neither. */
function verdict(o: Outcome, breaker: CircuitBreaker): boolean | undefined {
  switch (o.kind) {
    case 'complete':
      // The upstream's status: a fallback may have answered the client with another.
      return breaker.isFailureStatus(o.attempt === undefined ? o.status : o.attempt.status);
    case 'upgraded':
      return false;
    case 'stage':
    case 'rejected':
    case 'handled':
    case 'client-gone':
      return undefined;
    case 'timeout':
      // The deadline passed while the client was still sending its body: the client may be
      // the slow one (a slow upload must not open the circuit for everyone).
      return o.req.complete ? true : undefined;
    case 'cut-off':
      // The deadline passed mid-body: a client that stops reading is as likely as a
      // trickling upstream. A body that broke (reset, closed, bad chunk) counts.
      return o.error?.code === 'ERR_TURNPIKE_UPSTREAM_TIMEOUT' ? undefined : true;
    default:
      return true; // a connect failure, a reset, a bad answer
  }
}

/**
 * The circuit breakers and bulkheads of a gateway: one circuit per service (a route with a
 * `breaker` of its own gets its own), one bulkhead per service. They run as the last stages
 * of each route, and learn how each request ended from the router's outcomes.
 */
export class Guards {
  private readonly services = new Map<
    string,
    {
      readonly breaker: ServiceBreakerConfig | undefined;
      readonly circuit: CircuitBreaker | undefined;
      readonly bulkhead: Bulkhead | undefined;
    }
  >();
  private readonly routes = new Map<RouteInfo, RouteGuard>();
  /** Every circuit, the services' and the routes' own. */
  private readonly circuits: CircuitBreaker[] = [];
  private readonly bulkheads: Bulkhead[] = [];
  private sharing: Sharing | undefined = undefined;

  constructor(
    services: Readonly<Record<string, ServiceGuardConfig>>,
    private readonly redis: string | RedisLike | undefined,
    private readonly logger: Logger,
  ) {
    for (const [name, s] of Object.entries(services)) {
      const breaker = s.breaker === false ? undefined : s.breaker;
      this.services.set(name, {
        breaker,
        circuit:
          breaker === undefined
            ? undefined
            : this.circuit(name, undefined, breaker, `services.${name}.breaker`),
        bulkhead:
          s.bulkhead === undefined || s.bulkhead === false
            ? undefined
            : this.pool(name, s.bulkhead),
      });
    }
  }

  /** Whether any route is guarded (the gateway listens to outcomes only then). */
  get any(): boolean {
    return this.routes.size !== 0;
  }

  /** The circuit of a service (not a route's own), or undefined. */
  breaker(service: string): CircuitBreaker | undefined {
    return this.services.get(service)?.circuit;
  }

  /** The bulkhead of a service, or undefined. */
  bulkhead(service: string): Bulkhead | undefined {
    return this.services.get(service)?.bulkhead;
  }

  /** The router's `stages` for one route: the breaker, then the bulkhead. */
  stagesFor(route: RouteInfo): readonly Middleware[] {
    const service = route.service === undefined ? undefined : this.services.get(route.service);
    if (service === undefined) return [];
    const options = route.options as {
      breaker?: ServiceBreakerConfig | false;
      fallback?: Fallback | false;
    };
    const { config, own, fallback } = routeBreaker(service.breaker, options);
    const circuit = own
      ? this.circuit(route.service!, route.name, config!, `routes[${route.index}].breaker`)
      : config === undefined
        ? undefined
        : service.circuit;
    const stages: Middleware[] = [];
    if (circuit !== undefined) {
      const answer =
        fallback === undefined ? undefined : compileFallback(fallback, this.logger, route.service!);
      stages.push(breakerStage(circuit, answer, config?.fallbackOnFailure === true));
    }
    if (service.bulkhead !== undefined) stages.push(bulkheadStage(service.bulkhead));
    if (stages.length !== 0)
      this.routes.set(route, { breaker: circuit, bulkhead: service.bulkhead });
    return stages;
  }

  /** Every request's outcome: its circuit counts it, its bulkhead place is freed. */
  readonly onOutcome = (o: Outcome): void => {
    const guard = this.routes.get(o.route);
    if (guard === undefined) return;
    const breaker = guard.breaker;
    if (breaker !== undefined) {
      const failed = verdict(o, breaker);
      if (breaker.halfOpen) {
        const req = o.req as Guarded;
        const probe = req[PROBE];
        if (probe !== undefined) {
          req[PROBE] = undefined;
          breaker.record(probe, failed);
        }
      } else if (failed !== undefined) {
        // The start on the clock durationMs is measured with: exact, where Date.now() is not.
        breaker.recordClosed(failed, performance.now() - o.durationMs);
      }
    }
    const bulkhead = guard.bulkhead;
    if (bulkhead !== undefined) {
      const req = o.req as Guarded;
      const place = req[PLACE];
      if (place === undefined) return;
      req[PLACE] = undefined;
      if (place === HOLDING) bulkhead.release();
      else bulkhead.cancel(place);
    }
  };

  /** Subscribes to the state changes of every circuit; returns the disposer. */
  /** Every circuit's state now, for the state gauge (`route` '' for a service's circuit). */
  circuitSamples(): { service: string; route: string; state: CircuitStateName }[] {
    return this.circuits.map((c) => ({
      service: c.name,
      route: c.route ?? '',
      state: c.state.kind,
    }));
  }

  onStateChange(listener: (event: StateChangeEvent) => void): () => void {
    const off = this.circuits.map((c) => c.onStateChange(listener));
    return () => {
      for (const dispose of off.splice(0)) dispose();
    };
  }

  /** Stops sharing, refuses requests still queued. */
  async close(): Promise<void> {
    for (const b of this.bulkheads) b.close();
    const sharing = this.sharing;
    this.sharing = undefined;
    await sharing?.close();
  }

  /** A service's bulkhead; its refusals marked as a fallback's when one answers them. */
  private pool(service: string, config: ServiceBulkheadConfig): Bulkhead {
    const o = parseBulkheadOptions(
      { ...config, name: service, logger: this.logger },
      `services.${service}.bulkhead`,
    );
    const answer =
      o.fallback === undefined ? undefined : compileFallback(o.fallback, this.logger, service);
    const refuse = overloadedAnswer(o, answer);
    const bulkhead = new Bulkhead(
      o,
      answer === undefined
        ? refuse
        : (req, res) => {
            markFallback(req, 'overloaded');
            refuse(req, res);
          },
    );
    this.bulkheads.push(bulkhead);
    return bulkhead;
  }

  private circuit(
    service: string,
    route: string | undefined,
    config: ServiceBreakerConfig,
    path: string,
  ): CircuitBreaker {
    // The fallback is the stage's (per route), not the circuit's.
    const { shared, fallback: _fallback, fallbackOnFailure: _onFailure, ...rest } = config;
    const options = completeBreakerOptions({ ...rest, name: service, logger: this.logger }, path);
    const circuit = new CircuitBreaker(options, route, this.logger);
    if (this.redis !== undefined && shared !== false) {
      this.sharing ??= shareCircuits({ redis: this.redis }, this.logger);
      this.sharing.add(circuit);
    }
    this.circuits.push(circuit);
    return circuit;
  }
}

/** The breaker stage: open answers at once (fallback or 503); closed and probes pass, counted by their outcome. */
function breakerStage(
  circuit: CircuitBreaker,
  fallback: Answer | undefined,
  onFailure: boolean,
): Middleware {
  const open = openAnswer(circuit, fallback);
  const rejected =
    fallback === undefined
      ? open
      : (req: IncomingMessage, res: ServerResponse) => {
          markFallback(req, 'circuit-open');
          open(req, res);
        };
  // Built once: answerFailure() stores these, allocating nothing per request.
  const failureAnswer: FailureAnswer | undefined =
    onFailure && fallback !== undefined
      ? (req, res) => fallback(req, res, 'upstream-failure')
      : undefined;
  const failureStatus = (status: number): boolean => circuit.isFailureStatus(status);
  return function turnpikeBreaker(req, res, next) {
    const admission = circuit.admit();
    if (admission === REJECTED) return rejected(req, res);
    if (admission % 2 === 1) (req as Guarded)[PROBE] = admission;
    if (failureAnswer !== undefined) answerFailure(req, failureAnswer, failureStatus);
    next();
  };
}

/** The bulkhead stage: a place now, a place in the queue, or the 503 `overloaded`. */
function bulkheadStage(bulkhead: Bulkhead): Middleware {
  return function turnpikeBulkhead(req, res, next) {
    const guarded = req as Guarded;
    if (bulkhead.tryEnter()) {
      guarded[PLACE] = HOLDING;
      return next();
    }
    const waiter = bulkhead.enter(req, res, () => {
      guarded[PLACE] = HOLDING;
      next();
    });
    if (waiter !== undefined) guarded[PLACE] = waiter;
  };
}
