import {
  ConfigError,
  boolean,
  object,
  record,
  redisConnection,
  string,
  type Check,
  type TargetInput,
} from '@turnpike/core';
import {
  balancerShape,
  parseTargets,
  type HealthCheckOptions,
  type OutlierOptions,
  type StrategyOption,
} from '@turnpike/balancer';
import type { Fallback, RedisLike } from '@turnpike/breaker';
import {
  checkRouterConfig,
  proxySettingsShape,
  routerShape,
  routesCheck,
  type ProxySettings,
  type RouterOptions,
} from '@turnpike/router';
import { gatewayAuthCheck, routeAuthCheck, type GatewayAuthConfig, type RouteAuth } from './auth';
import {
  corsCheck,
  helmetCheck,
  routeCompressCheck,
  routeCorsCheck,
  type CorsConfig,
  type HelmetConfig,
  type RouteCompress,
} from './edge';
import {
  gatewayRateLimitCheck,
  routeRateLimitCheck,
  type GatewayRateLimit,
  type RouteRateLimit,
} from './limits';
import {
  accessLogConfigCheck,
  metricsConfigCheck,
  metricsPath,
  tracingConfigCheck,
  type GatewayMetricsConfig,
} from './telemetry';
import type { AccessLogOptions, TracingOptions } from '@turnpike/metrics';
import {
  breakerCheck,
  bulkheadCheck,
  checkGuards,
  routeExtensions,
  type ServiceBreakerConfig,
  type ServiceBulkheadConfig,
} from './guard';

declare module '@turnpike/router' {
  interface RouteOptions {
    /**
     * A circuit of the route's own: its keys over the service's `breaker`; or false for no
     * breaker on this route. Default: the service's circuit, shared by its routes.
     */
    breaker?: ServiceBreakerConfig | false;
    /** The route's fallback, instead of its circuit's; false for none. Default: the circuit's. */
    fallback?: Fallback | false;
    /**
     * The route's own rate limits (one, a list, or `{ limits }`), counted for this route and
     * applied after the gateway-wide ones; false for no rate limit at all on the route (the
     * gateway-wide ones neither). Default: the gateway-wide ones only.
     */
    rateLimit?: RouteRateLimit;
    /**
     * Who may call the route, when the gateway has `auth`: true (the default: a credential),
     * 'optional', false (none), or `{ roles, scopes, optional }` (one of the roles, every scope).
     */
    auth?: RouteAuth;
    /**
     * The gateway's `cors` on this route: true (the default) or false (the gateway writes no
     * CORS header on the route's responses and leaves its preflights to it). See docs/edge.md.
     */
    cors?: boolean;
    /**
     * Compress the route's responses (gzip, deflate or br, as the client accepts): true (at
     * least 1024 bytes), `{ thresholdBytes }`, or false. Never an encoded body, `Cache-Control:
     * no-transform` or `text/event-stream`. Default false. See docs/edge.md (BREACH).
     */
    compress?: RouteCompress;
  }
}

/** One service behind the gateway. */
export interface ServiceConfig extends ProxySettings {
  /** Upstream targets: URLs, or `{ url, weight }`. At least one. Required. */
  targets: readonly TargetInput[];
  /**
   * Balancing strategy: a name (`'round-robin'`, `'weighted-round-robin'`,
   * `'least-connections'`, `'p2c'`, `'random'`, `'ip-hash'`), a consistent hash
   * `{ hash: { header | cookie | query } }`, or a strategy factory. Default `'round-robin'`.
   */
  balancer?: StrategyOption;
  /** Active health checks of every target. Default: none. */
  healthCheck?: HealthCheckOptions;
  /** Passive health (ejection on failing traffic), or false for none. Default: on. */
  outlier?: OutlierOptions | false;
  /** With no healthy target, use every non-draining one instead of answering 503. Default false. */
  panic?: boolean;
  /**
   * The service's circuit breaker (see @turnpike/breaker), one circuit for all its routes; a
   * route may have its own. Shared across instances when the gateway's `redis` is set
   * (`shared: false` keeps it local). Default: none.
   */
  breaker?: ServiceBreakerConfig | false;
  /** At most `maxConcurrent` requests to the service in flight, an optional queue; over it 503 `overloaded`. Default: none. */
  bulkhead?: ServiceBulkheadConfig | false;
}

/** The health endpoints' settings. */
export interface HealthOptions {
  /** Where they are served, under the mount. Default `'/health'`. */
  path?: string;
  /** Also serve `{path}/services` and `{path}/services/:name` (target states). Default false. */
  details?: boolean;
}

/**
 * The whole gateway configuration; see DESIGN.md. Routes, trustProxy, identityHeaders,
 * stripHeaders, bodyLimit, maxHeaderCount, requestBuffer and logger are the router's
 * options, with its defaults.
 */
export interface GatewayConfig extends Pick<
  RouterOptions,
  | 'routes'
  | 'trustProxy'
  | 'identityHeaders'
  | 'stripHeaders'
  | 'bodyLimit'
  | 'maxHeaderCount'
  | 'requestBuffer'
  | 'logger'
> {
  /** Services by name. Required. */
  services: Readonly<Record<string, ServiceConfig>>;
  /** Health endpoints under the mount: true for the defaults, or their settings. Default: none. */
  health?: boolean | HealthOptions;
  /**
   * Rate limits of every route, counted across the whole gateway (one count per client for all
   * routes), before each route's own: one limit, a list, or `{ limits, ...settings }` (headers,
   * onStoreError, timeouts). A route's `rateLimit: false` opts out. Counted in Redis when
   * `redis` is set, else in memory. Default: none.
   */
  rateLimit?: GatewayRateLimit | false;
  /**
   * Authentication of every route (a route's `auth` narrows or lifts it): bearer JWTs and/or
   * API keys, the identity sent upstream in headers the gateway sets. Default: none.
   */
  auth?: GatewayAuthConfig | false;
  /**
   * CORS for every route (a route's `cors: false` opts out): an exact allowlist of `origins`,
   * preflights answered by the gateway before route matching and auth. Default: off.
   */
  cors?: CorsConfig | false;
  /**
   * Security headers (helmet) on every answer the gateway writes itself: true (helmet's
   * defaults), false, or helmet's options; `proxied: true` also puts them on proxied responses
   * (the upstream's own headers win). Default true.
   */
  helmet?: HelmetConfig;
  /**
   * Redis, for what instances share (breaker state, rate limit counts): a `redis://` / `rediss://` URL (the
   * gateway opens its connections and closes them in `close()`), or an ioredis client (not
   * closed by the gateway). Absent: everything stays in this process. Default: none.
   */
  redis?: string | RedisLike;
  /**
   * Prometheus series (see docs/observability.md): true, or `{ prefix, path, registry, buckets,
   * defaultMetrics }`. In a registry of the gateway's own unless one is given; served under the
   * mount only with `path` (`gateway.metrics.handler` serves it anywhere). Default: none.
   */
  metrics?: boolean | GatewayMetricsConfig;
  /**
   * One JSON line per request (winston on stdout by default): true, or `{ logger, sampleRate,
   * query, redactQuery }`. Headers are never logged; credentials in the query are redacted. Default: none.
   */
  accessLog?: boolean | AccessLogOptions;
  /**
   * W3C trace context: `traceparent` read or started, sent upstream with a new span id per call,
   * the trace id in logs and problem bodies; OpenTelemetry spans when `@opentelemetry/api` is
   * installed. true, or `{ opentelemetry }`. Default: none.
   */
  tracing?: boolean | TracingOptions;
}

const serviceConfig = object<ServiceConfig>(
  {
    ...proxySettingsShape,
    targets: (v, p) => (parseTargets(v, p), v as readonly TargetInput[]),
    balancer: balancerShape.strategy,
    healthCheck: balancerShape.healthCheck,
    outlier: balancerShape.outlier,
    panic: balancerShape.panic,
    breaker: breakerCheck,
    bulkhead: bulkheadCheck,
  },
  ['targets'],
);

const redisCheck = redisConnection<RedisLike>(['duplicate']);

/** The keys the gateway adds to routes, for the router to check. */
export const extensions = {
  route: {
    ...routeExtensions,
    rateLimit: routeRateLimitCheck,
    auth: routeAuthCheck,
    cors: routeCorsCheck,
    compress: routeCompressCheck,
  },
};

const healthOptions = object<HealthOptions>({
  path: string({
    pattern: /^(?:\/[A-Za-z0-9._~-]+)+$/,
    expected: 'a path of plain segments starting with "/", without a trailing "/", e.g. "/health"',
  }),
  details: boolean,
});

const healthCheck: Check<boolean | HealthOptions> = (value, path) =>
  typeof value === 'boolean' ? value : healthOptions(value, path);

const gatewayConfig: Check<GatewayConfig> = object<GatewayConfig>(
  {
    services: record(serviceConfig, {
      keyPattern: /^[A-Za-z0-9_.-]+$/,
      keyExpected: 'a service name of [A-Za-z0-9_.-]',
      minSize: 1,
    }),
    routes: routesCheck(extensions),
    trustProxy: routerShape.trustProxy,
    identityHeaders: routerShape.identityHeaders,
    stripHeaders: routerShape.stripHeaders,
    bodyLimit: routerShape.bodyLimit,
    maxHeaderCount: routerShape.maxHeaderCount,
    requestBuffer: routerShape.requestBuffer,
    logger: routerShape.logger,
    health: healthCheck,
    redis: redisCheck,
    rateLimit: gatewayRateLimitCheck,
    auth: gatewayAuthCheck,
    cors: corsCheck,
    helmet: helmetCheck,
    metrics: metricsConfigCheck,
    accessLog: accessLogConfigCheck,
    tracing: tracingConfigCheck,
  },
  ['services', 'routes'],
);

/** The health endpoints as configured: their path and whether details are served, or undefined when off. */
export function healthSettings(
  health: GatewayConfig['health'],
): { path: string; details: boolean } | undefined {
  if (health === undefined || health === false) return undefined;
  if (health === true) return { path: '/health', details: false };
  return { path: health.path ?? '/health', details: health.details ?? false };
}

/** A route pattern's segments: no leading slash, one trailing slash ignored (as the router splits them). */
function segmentsOf(path: string): string[] {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return trimmed.length <= 1 ? [] : trimmed.slice(1).split('/');
}

/** Whether a route pattern matches a concrete path: `:name` and `*` one segment, `**` the rest. */
export function patternMatches(pattern: string, path: string): boolean {
  const p = segmentsOf(pattern);
  const s = segmentsOf(path);
  for (let i = 0; i < p.length; i++) {
    const seg = p[i]!;
    if (seg === '**') return true;
    if (i >= s.length) return false;
    if (seg !== '*' && !seg.startsWith(':') && seg !== s[i]) return false;
  }
  return p.length === s.length;
}

/**
 * Refuses a route that could match a health endpoint: the gateway answers those before the
 * router, so such a route would silently lose those paths. Patterns are tried against the
 * concrete endpoint paths, which covers `**`, `*` and `:param` overlaps alike.
 */
export function checkHealthOverlap(config: GatewayConfig): void {
  checkMetricsOverlap(config);
  const health = healthSettings(config.health);
  if (health === undefined) return;
  const { path } = health;
  const endpoints = [
    path,
    `${path}/live`,
    `${path}/ready`,
    `${path}/services`,
    `${path}/services/x`,
    `${path}/stats`,
  ];
  config.routes.forEach((route, i) => {
    const hit = endpoints.find((endpoint) => patternMatches(route.path, endpoint));
    if (hit !== undefined) {
      throw new ConfigError(
        `routes[${i}].path`,
        `a pattern that does not overlap the health endpoints under "${path}" ` +
          `(it matches "${hit}", which the gateway answers before any route; ` +
          'move the route or set health.path)',
        route.path,
      );
    }
  });
}

/** Refuses a route that could match the metrics endpoint, and an endpoint inside the health ones. */
function checkMetricsOverlap(config: GatewayConfig): void {
  const path = metricsPath(config.metrics);
  if (path === undefined) return;
  const health = healthSettings(config.health);
  if (health !== undefined && (path === health.path || path.startsWith(`${health.path}/`))) {
    throw new ConfigError(
      'metrics.path',
      `a path outside the health endpoints under "${health.path}"`,
      path,
    );
  }
  config.routes.forEach((route, i) => {
    if (patternMatches(route.path, path)) {
      throw new ConfigError(
        `routes[${i}].path`,
        `a pattern that does not overlap the metrics endpoint "${path}" ` +
          '(the gateway answers it before any route; move the route or set metrics.path)',
        route.path,
      );
    }
  });
}

/**
 * Validates a gateway config. Throws a ConfigError whose message names the field path, the
 * value and what was expected. Returns a normalised copy; the input is never modified.
 */
export function validateConfig(config: unknown): GatewayConfig {
  const parsed = gatewayConfig(config, '');
  checkHealthOverlap(parsed);
  checkRouterConfig(parsed);
  checkGuards(parsed);
  return parsed;
}

/**
 * The shape checks of {@link validateConfig} without compiling the routes: createGateway
 * leaves that to createRouter, which compiles each route once and refuses the same.
 */
export function checkConfigShape(config: unknown): GatewayConfig {
  const parsed = gatewayConfig(config, '');
  checkHealthOverlap(parsed);
  checkGuards(parsed);
  return parsed;
}
