import http, { METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express from 'express';
import { boolean, object, silentLogger, string } from '@turnpike/core';
import {
  createBalancer,
  type Balancer,
  type EjectionEvent,
  type HealthChangeEvent,
  type ReadmissionEvent,
} from '@turnpike/balancer';
import {
  createRouter,
  type HedgeEvent,
  type OutcomeListener,
  type RetryEvent,
  type ServiceOptions,
  type TurnpikeRouter,
} from '@turnpike/router';
import type {
  Bulkhead,
  CircuitBreaker,
  CircuitStateName,
  StateChangeEvent,
} from '@turnpike/breaker';
import type { TargetStatus } from '@turnpike/balancer';
import {
  checkConfigShape,
  extensions,
  healthSettings,
  patternMatches,
  type GatewayConfig,
} from './config';
import { Edge } from './edge';
import { Guards } from './guard';
import { RateLimits } from './limits';
import { GatewayAuth } from './auth';
import type { RedisLike as LimiterRedis } from '@turnpike/limiter';
import { installDirect, type Handler } from './direct';
import { HealthEndpoints } from './health';
import { closeServer, listenOn } from './listen';
import {
  appsOf,
  findMount,
  fixedMount,
  isMounted,
  isUnder,
  type ExpressAppLike,
  type FixedMount,
} from './mount';
import { notFoundNext, type Next } from './next';
import { assignRequestId, type Metrics, type SeriesStats } from '@turnpike/metrics';
import { Telemetry } from './telemetry';
import { createUpgradeListener, type UpgradeMount } from './upgrade';

/** Options of {@link Gateway.attach}. */
export interface AttachOptions {
  /** The mount prefix, when it cannot be discovered from the server's Express app (e.g. a sub-app). Default: discovered. */
  path?: string;
  /**
   * The direct lane: requests under the mount go to the gateway before the host app sees them,
   * without Express (the host's middleware does not run for them). Default false.
   */
  direct?: boolean;
}

/** One route in {@link Gateway.stats}; the counts and latencies only when `metrics` is on. */
export interface RouteStats extends Partial<SeriesStats> {
  /** The route's service; null for a handler route. */
  service: string | null;
}

/** One service in {@link Gateway.stats}; the counts and latencies only when `metrics` is on. */
export interface ServiceStats extends Partial<SeriesStats> {
  /** Some target is usable now. */
  ready: boolean;
  targets: TargetStatus[];
  /** The service circuit's state; null without a breaker. */
  breaker: CircuitStateName | null;
}

/** What {@link Gateway.stats} returns (and `{health.path}/stats` serves): JSON a program can read. */
export interface GatewayStats {
  routes: Record<string, RouteStats>;
  services: Record<string, ServiceStats>;
}

/** The gateway: an Express router to mount, plus attachment to a server, a server of its own, and shutdown. */
export interface Gateway extends express.Router {
  /**
   * Routes WebSocket upgrades that arrive under the gateway's mount prefix; others are left to
   * the host. With `{ direct: true }`, also takes the mount's HTTP requests before the host app.
   */
  attach(server: Server, options?: AttachOptions): void;
  /**
   * Starts a node:http server of the gateway's own (no Express) on `port` (and `host`): every
   * request is the gateway's, at '/', WebSocket upgrades included. Resolves with the server
   * once it listens; rejects with the listen error (EADDRINUSE, …). `close()` closes it.
   */
  listen(port: number, host?: string): Promise<Server>;
  /** Every request's outcome, from the router (see `Outcome` in @turnpike/router); returns the disposer. */
  onOutcome(listener: OutcomeListener): () => void;
  /** A target's active health changed, in any service (the event names it); returns the disposer. */
  onHealthChange(listener: (event: HealthChangeEvent) => void): () => void;
  /** A target was ejected by passive health, in any service; returns the disposer. */
  onEject(listener: (event: EjectionEvent) => void): () => void;
  /** An ejected target takes traffic again, in any service; returns the disposer. */
  onReadmit(listener: (event: ReadmissionEvent) => void): () => void;
  /** A failed try is retried (see `RetryEvent` in @turnpike/router); returns the disposer. */
  onRetry(listener: (event: RetryEvent) => void): () => void;
  /** A hedge was sent (see `HedgeEvent` in @turnpike/router); returns the disposer. */
  onHedge(listener: (event: HedgeEvent) => void): () => void;
  /** A circuit changed state, in any service or route (the event names it); returns the disposer. */
  onBreakerStateChange(listener: (event: StateChangeEvent) => void): () => void;
  /** The circuit breaker of a service (`state`, `open()`, `close()`), or undefined when it has none. */
  breaker(name: string): CircuitBreaker | undefined;
  /** The bulkhead of a service (`active`, `queued`), or undefined when it has none. */
  bulkhead(name: string): Bulkhead | undefined;
  /**
   * The balancer of a service, or undefined for an unknown name: its `status()`, or
   * `setTargets()` to change the targets at run time (service discovery, draining).
   */
  balancer(name: string): Balancer | undefined;
  /**
   * The health endpoints as an Express router, to mount elsewhere (an internal port, another
   * app): `/live`, `/ready`, and with `details: true` `/services` and `/services/:name`. Works
   * whether or not `health` is set in the config.
   */
  healthRouter(options?: { details?: boolean }): express.Router;
  /**
   * The gateway's Prometheus series when `metrics` is on (else undefined): `registry`, and
   * `handler` to serve them elsewhere (`internal.get('/metrics', gateway.metrics.handler)`).
   */
  readonly metrics: Metrics | undefined;
  /**
   * Per route and per service: requests, errors and latency percentiles (from the histograms,
   * with `metrics` on), health and breaker state. Served at `{health.path}/stats` with `details`.
   */
  stats(): Promise<GatewayStats>;
  /** Stops everything the gateway started: keep-alive sockets, WebSockets, listeners, its own servers. Idempotent. */
  close(): Promise<void>;
}

const attachOptions = object<AttachOptions>({
  path: string({
    pattern: /^(?:\/[^/?#]+)*\/?$/,
    expected: 'the mount path, starting with "/", e.g. "/api"',
  }),
  direct: boolean,
});

const healthRouterOptions = object<{ details?: boolean }>({ details: boolean });

/** The Router methods that add layers: refused on the gateway. */
const ROUTER_METHODS = ['use', 'route', 'param', 'all', ...METHODS.map((m) => m.toLowerCase())];

/** Where an app mounts the gateway, once known: a fixed prefix, or per request (`DYNAMIC`). */
const DYNAMIC = Symbol('dynamic mount');

/**
 * Creates the gateway from a config, validated here: a config that cannot work throws a
 * ConfigError naming the field. Everything per route is compiled now, not per request.
 */
export function createGateway(config: GatewayConfig): Gateway {
  const cfg = checkConfigShape(config);
  const logger = cfg.logger ?? silentLogger;
  // Metrics, the access log and tracing first: the limiter and auth stages record into them.
  const telemetry = new Telemetry(cfg);
  const byName = new Map<string, Balancer>();
  const balancers: Balancer[] = [];
  const services: Record<string, ServiceOptions> = {};
  let router: TurnpikeRouter;
  let guards: Guards | undefined;
  let limits: RateLimits | undefined;
  let auth: GatewayAuth | undefined;
  // helmet → cors → compression (DESIGN.md), built once: the wrapper in front of every lane,
  // and each route's stages (cors: false, compression) in front of auth.
  const edge = new Edge(cfg.cors, cfg.helmet, cfg.routes, patternMatches, logger);
  try {
    auth = new GatewayAuth(cfg.auth, cfg.identityHeaders, logger);
    limits = new RateLimits(
      cfg.rateLimit,
      cfg.redis as LimiterRedis | undefined,
      cfg.logger,
      telemetry.rateLimitRecorder,
    );
    guards = new Guards(cfg.services, cfg.redis, logger);
    for (const [name, service] of Object.entries(cfg.services)) {
      const {
        targets,
        balancer: strategy,
        healthCheck,
        outlier,
        panic,
        breaker: _breaker,
        bulkhead: _bulkhead,
        ...proxy
      } = service;
      const balancer = createBalancer(
        { name, targets, strategy, healthCheck, outlier, panic },
        `services.${name}`,
      );
      balancers.push(balancer);
      byName.set(name, balancer);
      // The balancer itself is the target picker: the router tells it when each attempt
      // starts and ends (in-flight counts, latency, passive health). Proxy settings pass through.
      services[name] = { ...proxy, target: balancer };
    }
    const {
      services: _configured,
      health: _health,
      redis: _redis,
      rateLimit: _rateLimit,
      auth: _auth,
      cors: _cors,
      helmet: _helmet,
      metrics: _metrics,
      accessLog: _accessLog,
      tracing: _tracing,
      ...routerOptions
    } = cfg;
    const g = guards;
    const l = limits;
    const a = auth;
    // The router checks the routes against the services and compiles them, once. Each route
    // gets its stages in DESIGN.md's order: rate limits, then (service routes) breaker and bulkhead.
    router = createRouter({
      ...routerOptions,
      services,
      extensions,
      stages: (route) => [
        ...edge.stagesFor(route),
        ...a.stagesFor(route, telemetry.authRecorder(route)),
        ...l.stagesFor(route),
        ...g.stagesFor(route),
      ],
    });
  } catch (err) {
    for (const b of balancers) b.close();
    void guards?.close();
    void limits?.close();
    auth?.close();
    throw err;
  }
  const rateLimits = limits;
  const authn = auth;
  const circuits = guards;
  // Circuits and bulkheads count each request's one outcome (its retries included).
  if (circuits.any) router.onOutcome(circuits.onOutcome);
  telemetry.methodOf = (req) => authn.methodOf(req);
  telemetry.wire(router, balancers, circuits);

  async function stats(): Promise<GatewayStats> {
    const counted = await telemetry.metrics?.requestStats();
    const none: SeriesStats = { requests: 0, errors: 0, latencyMs: null };
    const routes: Record<string, RouteStats> = {};
    for (const r of router.routes) {
      routes[r.name] = {
        service: r.service ?? null,
        ...(counted && (counted.routes[r.name] ?? none)),
      };
    }
    const services: Record<string, ServiceStats> = {};
    for (const [name, b] of byName) {
      services[name] = {
        ready: b.hasHealthy(),
        targets: b.status(),
        breaker: circuits.breaker(name)?.state.kind ?? null,
        ...(counted && (counted.services[name] ?? none)),
      };
    }
    return { routes, services };
  }

  const endpoints = new HealthEndpoints(byName, stats);
  const inner = endpointsFirst(router, endpoints, healthSettings(cfg.health), telemetry);
  // The edge in front: a lane with a host app behind it (Express's next, the direct lane) lets
  // a request leave without the edge's headers; listen() and a bare call answer it themselves.
  const dispatch = edge.handler(inner, true);
  const dispatchOwn = edge.handler(inner, false);
  /** On a request this gateway's direct lane handed back to the host app. */
  const LEFT = Symbol('turnpike.leftGateway');

  // The gateway answers every request under its mount, so it is its own handler: Express
  // calls it directly, with no router layer walk. It is shaped as an express Router (its
  // prototype is one), but adding routes or middleware to it is refused: they could never
  // run. Gateway-wide middleware goes on the host app before the gateway. Express's own
  // `next` goes to the router, so that leaving the gateway (a stage's next('route')) goes on
  // to the host app's later handlers; called without one, the gateway answers like listen().
  const gateway = function turnpikeGateway(
    req: IncomingMessage,
    res: ServerResponse,
    next?: Next,
  ): void {
    const done = next ?? notFoundNext(req, res, logger);
    // Left by this gateway's direct lane, and handed to the host app: it has been through
    // the gateway once (stages included), and is not taken a second time.
    if ((req as { [LEFT]?: true })[LEFT]) return done();
    assignRequestId(req, res);
    (next === undefined ? dispatchOwn : dispatch)(req, res, done);
  } as unknown as Gateway;
  Object.setPrototypeOf(gateway, express.Router());
  gateway.onOutcome = (listener) => router.onOutcome(listener);
  gateway.onRetry = (listener) => router.onRetry(listener);
  gateway.onHedge = (listener) => router.onHedge(listener);
  /** Subscribes to one event of every balancer; one disposer for all. */
  const fanIn =
    <E>(subscribe: (b: Balancer, listener: (event: E) => void) => () => void) =>
    (listener: (event: E) => void) => {
      const off = balancers.map((b) => subscribe(b, listener));
      return () => {
        for (const dispose of off.splice(0)) dispose();
      };
    };
  gateway.onHealthChange = fanIn<HealthChangeEvent>((b, l) => b.onHealthChange(l));
  gateway.onEject = fanIn<EjectionEvent>((b, l) => b.onEject(l));
  gateway.onReadmit = fanIn<ReadmissionEvent>((b, l) => b.onReadmit(l));
  gateway.balancer = (name) => byName.get(name);
  gateway.breaker = (name) => circuits.breaker(name);
  gateway.bulkhead = (name) => circuits.bulkhead(name);
  gateway.onBreakerStateChange = (listener) => circuits.onStateChange(listener);
  Object.defineProperty(gateway, 'metrics', { value: telemetry.metrics, enumerable: true });
  gateway.stats = stats;
  gateway.healthRouter = (options = {}) =>
    endpoints.router(healthRouterOptions(options, 'healthRouter.options').details ?? false);
  for (const method of ROUTER_METHODS) {
    Object.defineProperty(gateway, method, {
      value: () => {
        throw new TypeError(
          `Turnpike: gateway.${method}() is not supported: the gateway answers every request ` +
            'under its mount, so nothing added to it would run. Add middleware to the host app ' +
            "before the gateway (app.use('/api', mw, gateway)), and routes to the config.",
        );
      },
    });
  }

  /** What close() undoes: listeners off, the direct lane's dispatcher out. */
  const disposers: (() => void)[] = [];
  /** The servers this gateway is attached to or listens on: one attachment each. */
  const servers = new WeakSet<Server>();
  /** The servers of listen(): closed by close(). */
  const own = new Set<Server>();
  let closed = false;

  // Mount discovery for upgrades, cached per app. A plain `app.use('/api', gateway)`, also
  // through nested routers, puts the gateway at one fixed prefix whatever the path, so the
  // prefix is read from the app's router tree on the first upgrade and kept (a WeakMap: the
  // app can go). A mount whose paths cannot be told by a prefix (parameters, a RegExp, several
  // mounts, an Express that does not keep the path) is DYNAMIC: Express's matching is asked on
  // every upgrade, as before. Apps that do not mount the gateway are not cached (it may be
  // mounted later). What the cache does not see: a second mount of the gateway added to the
  // app after its first upgrade (attach() after the app is complete, as for listen()).
  const mounts = new WeakMap<ExpressAppLike, string | typeof DYNAMIC>();
  function mountIn(app: ExpressAppLike, pathname: string): string | undefined {
    let known = mounts.get(app);
    if (known === undefined) {
      const fixed = fixedMount(app, gateway);
      if (fixed.kind === 'absent') return undefined;
      known = fixed.kind === 'fixed' ? fixed.prefix : DYNAMIC;
      mounts.set(app, known);
    }
    if (known !== DYNAMIC) {
      if (isUnder(pathname, known)) return known;
      // Express matches mount paths case-insensitively unless told otherwise: let it decide
      // for a path that differs from the prefix in case only.
      if (!isUnder(pathname.toLowerCase(), known.toLowerCase())) return undefined;
    }
    const mount = findMount(app, gateway, pathname);
    return mount !== undefined && isUnder(pathname, mount) ? mount : undefined;
  }

  gateway.attach = function attach(server, options = {}) {
    if (closed) throw new Error('Turnpike: attach() after close()');
    const { path, direct = false } = attachOptions(options, 'attach.options');
    if (servers.has(server)) {
      throw new Error(
        'Turnpike: this gateway is already attached to this server (or listens on it).',
      );
    }
    let fixed = path?.replace(/\/$/, '');
    if (path === undefined) {
      const apps = appsOf(server).filter((app) => isMounted(app, gateway));
      if (apps.length === 0) {
        throw new Error(
          'Turnpike: attach(server) found no Express app on this server with the gateway mounted. ' +
            "Mount it first (app.use('/api', gateway)), or pass attach(server, { path: '/api' }).",
        );
      }
      if (direct) fixed = directPrefix(apps.map((app) => fixedMount(app, gateway)));
    }
    let resolve: (pathname: string) => UpgradeMount | undefined;
    if (fixed !== undefined) {
      const mount = fixed;
      const at: UpgradeMount = { mount };
      resolve = (pathname) => (isUnder(pathname, mount) ? at : undefined);
    } else {
      resolve = (pathname) => {
        for (const app of appsOf(server)) {
          const mount = mountIn(app, pathname);
          if (mount !== undefined) return { mount, app };
        }
        return undefined;
      };
    }
    const onUpgrade = createUpgradeListener(server, resolve, router);
    server.on('upgrade', onUpgrade);
    servers.add(server);
    disposers.push(() => server.off('upgrade', onUpgrade));
    // The prefix is fixed from now on: computed once, compared as a string per request.
    if (direct && fixed !== undefined)
      disposers.push(installDirect(server, fixed, dispatch, LEFT, logger));
  };

  gateway.listen = async function listen(port, host) {
    if (closed) throw new Error('Turnpike: listen() after close()');
    const server = http.createServer(serveRoot);
    server.on(
      'upgrade',
      createUpgradeListener(server, () => AT_ROOT, router),
    );
    await listenOn(server, port, host);
    if (closed) {
      await closeServer(server);
      throw new Error('Turnpike: close() was called while listen() was starting');
    }
    servers.add(server);
    own.add(server);
    return server;
  };

  /** A request on the gateway's own server: all of it is the gateway's, at '/'. */
  function serveRoot(req: IncomingMessage, res: ServerResponse): void {
    assignRequestId(req, res);
    dispatchOwn(req, res, notFoundNext(req, res, logger));
  }

  gateway.close = async function close() {
    if (closed) return;
    closed = true;
    for (const dispose of disposers.splice(0)) dispose();
    const closing = [...own].map(closeServer);
    own.clear();
    for (const b of balancers) b.close();
    telemetry.close();
    await router.close(); // its WebSockets too: the servers' close waits for them
    authn.close();
    await Promise.all([...closing, circuits.close(), rateLimits.close()]);
  };

  return gateway;
}

const AT_ROOT: UpgradeMount = { mount: '' };

const SLASH = 47;
const QUESTION = 63;

/**
 * What every lane (the Express handler, listen(), the direct lane) calls with a request
 * relative to the mount: the metrics and health endpoints first when they are on, then the
 * request's trace context, then the router. With neither endpoint nor tracing it is the router
 * itself; with them, a prefix comparison or two per request.
 */
function endpointsFirst(
  router: TurnpikeRouter,
  endpoints: HealthEndpoints,
  health: { path: string; details: boolean } | undefined,
  telemetry: Telemetry,
): Handler {
  const metricsPath = telemetry.metricsPath;
  const scrape = telemetry.metrics?.handler;
  const tracing = telemetry.tracing;
  if (health === undefined && metricsPath === undefined && tracing === undefined) return router;
  const path = health?.path;
  const details = health?.details ?? false;
  const length = path?.length ?? 0;
  const metricsLength = metricsPath?.length ?? 0;
  return function turnpikeEndpointsFirst(req, res, next) {
    const url = req.url!;
    if (path !== undefined && url.startsWith(path)) {
      const after = url.charCodeAt(length); // NaN at the end
      if (after === SLASH || after === QUESTION || url.length === length) {
        const q = url.indexOf('?', length);
        if (endpoints.serve(url.slice(length, q === -1 ? undefined : q), req, res, details)) return;
      }
    }
    if (metricsPath !== undefined && url.startsWith(metricsPath)) {
      const after = url.charCodeAt(metricsLength);
      if (after === QUESTION || url.length === metricsLength) return scrape!(req, res);
    }
    if (tracing !== undefined) tracing.enter(req, res);
    router(req, res, next);
  };
}

/** The direct lane's prefix from the apps that mount the gateway: one fixed prefix, or a ConfigError-like refusal. */
function directPrefix(found: FixedMount[]): string {
  const fixed = found.filter((m) => m.kind === 'fixed');
  const dynamic = found.find((m) => m.kind === 'dynamic');
  if (fixed.length === 1 && dynamic === undefined) return fixed[0]!.prefix;
  const reason =
    dynamic?.reason ??
    (fixed.length > 1 ? 'it is mounted in more than one app on this server' : 'it is not mounted');
  throw new Error(
    `Turnpike: attach(server, { direct: true }) needs one fixed mount prefix, and the gateway's ` +
      `cannot be read from the app: ${reason}. Pass it: attach(server, { direct: true, path: '/api' }).`,
  );
}
