import { createHash } from 'node:crypto';
import { ConfigError, silentLogger, type Check, type Logger } from '@turnpike/core';
import {
  Limit,
  RedisLink,
  completeLimit,
  completeSettings,
  composeLimits,
  nameLimits,
  parseRateLimitOptions,
  type LimitOptions,
  type LimiterSettings,
  type ParsedSettings,
  type RateLimitParts,
  type RedisLike,
  type DecisionListener,
} from '@turnpike/limiter';
import type { Middleware, RouteInfo } from '@turnpike/router';

/**
 * The gateway-wide `rateLimit`: one limit, a list, or `{ limits, ...settings }` (headers,
 * onStoreError, Redis timeouts); Redis and the logger are the gateway's own.
 */
export type GatewayRateLimit =
  | LimitOptions
  | readonly LimitOptions[]
  | (Omit<LimiterSettings, 'redis' | 'logger'> & { limits: readonly LimitOptions[] });

/** A route's `rateLimit`: one limit, a list, `{ limits }`, or false for none (the gateway-wide ones neither). */
export type RouteRateLimit =
  LimitOptions | readonly LimitOptions[] | { limits: readonly LimitOptions[] } | false;

function refuseKeys(
  parts: RateLimitParts,
  path: string,
  keys: readonly string[],
  why: string,
): void {
  for (const key of keys) {
    if ((parts.settings as Record<string, unknown>)[key] !== undefined) {
      throw new ConfigError(
        `${path}.${key}`,
        why,
        (parts.settings as Record<string, unknown>)[key],
      );
    }
  }
}

/**
 * A route's part of its Redis keys: its name, and a short hash of what tells it from another
 * route of the same name (`GET /x` and `POST /x` are both named `/x` by default), so two
 * routes never share a count in Redis, while the keys stay the same across a reload or a
 * reordering of the routes.
 */
function routeKeyOf(route: RouteInfo): string {
  const o = route.options as { methods?: readonly string[]; host?: string | readonly string[] };
  const identity = JSON.stringify([route.path, o.methods ?? null, o.host ?? null]);
  const hash = createHash('sha256').update(identity).digest('base64url').slice(0, 8);
  return `${encodeURIComponent(route.name)}:${hash}`;
}

/** The gateway-wide `rateLimit`, checked (false: none). */
export const gatewayRateLimitCheck: Check<GatewayRateLimit | false> = (value, path) => {
  if (value === false) return false;
  const parts = parseRateLimitOptions(value, path, true, true);
  refuseKeys(
    parts,
    path,
    ['redis', 'logger'],
    'no such key here (the limiter uses the gateway\'s "redis" and "logger")',
  );
  return value as GatewayRateLimit;
};

const ROUTE_SETTINGS = [
  'standardHeaders',
  'legacyHeaders',
  'redis',
  'prefix',
  'onStoreError',
  'timeoutMs',
  'failuresBeforePause',
  'retryMs',
  'maxKeys',
  'logger',
];

/** A route's `rateLimit`, checked: limits only (settings are the gateway's; each limit may have its onStoreError). */
export const routeRateLimitCheck: Check<RouteRateLimit> = (value, path) => {
  if (value === false) return false;
  const parts = parseRateLimitOptions(value, path, true);
  // One limit given alone: its onStoreError is the limit's own, not a setting.
  const single = !Array.isArray(value) && !('limits' in (value as object));
  refuseKeys(
    parts,
    path,
    single ? ROUTE_SETTINGS.filter((k) => k !== 'onStoreError') : ROUTE_SETTINGS,
    "no limiter setting on a route (set it on the gateway's rateLimit; a limit may have its own onStoreError)",
  );
  return value as RouteRateLimit;
};

/** The path of limit `i` of a `rateLimit` value: a list's entry, `limits[i]`, or the one limit itself. */
function limitPath(value: unknown, path: string): (i: number) => string {
  if (Array.isArray(value)) return (i) => `${path}[${i}]`;
  if (typeof value === 'object' && value !== null && 'limits' in value) {
    return (i) => `${path}.limits[${i}]`;
  }
  return () => path;
}

/**
 * The gateway's rate limits. Gateway-wide limits are built once and count across every route
 * (one count per client for the whole gateway); a route's own limits count for that route and
 * come after them in its stage. One Redis connection (the gateway's `redis`) for all.
 */
export class RateLimits {
  private readonly settings: ParsedSettings;
  private readonly global: Limit[] = [];
  private link: RedisLink | undefined;
  private readonly redis: string | RedisLike | undefined;

  constructor(
    config: GatewayRateLimit | false | undefined,
    redis: string | RedisLike | undefined,
    logger: Logger | undefined,
    /** A route's decision listener (metrics), if any. */
    private readonly recorder: (route: RouteInfo) => DecisionListener | undefined = () => undefined,
  ) {
    const parts =
      config === undefined || config === false
        ? { limits: [], settings: {} }
        : parseRateLimitOptions(config, 'rateLimit', true, true);
    this.redis = redis;
    this.settings = completeSettings({ ...parts.settings, redis, logger });
    const specs = parts.limits.map(completeLimit);
    const names = nameLimits(specs, limitPath(config, 'rateLimit'));
    specs.forEach((spec, i) => {
      this.global.push(new Limit(spec, names[i]!, this.context(`gw:${names[i]}:`)));
    });
  }

  /** The rate limit stage of one route, or none. */
  stagesFor(route: RouteInfo): Middleware[] {
    const own = (route.options as { rateLimit?: RouteRateLimit }).rateLimit;
    if (own === false) return [];
    const path = `routes[${route.index}].rateLimit`;
    const specs =
      own === undefined ? [] : parseRateLimitOptions(own, path, true).limits.map(completeLimit);
    if (specs.length === 0 && this.global.length === 0) return [];
    const taken = new Set(this.global.map((l) => l.name));
    const names = nameLimits(specs, limitPath(own, path), taken);
    const routeKey = routeKeyOf(route);
    const mine = specs.map(
      (spec, i) => new Limit(spec, names[i]!, this.context(`route:${routeKey}:${names[i]}:`)),
    );
    const stage = composeLimits(
      [...this.global, ...mine],
      this.settings,
      this.recorder(route),
    ) as Middleware & {
      close?: () => void;
    };
    // The router closes a route's stages when it closes or reloads: the route's own limits go.
    stage.close = () => {
      for (const l of mine) l.close();
    };
    return [stage];
  }

  /** Stops every store's timers; closes the Redis connection when it opened one. */
  async close(): Promise<void> {
    for (const l of this.global) l.close();
    await this.link?.close();
  }

  private context(id: string) {
    if (this.redis !== undefined && this.link === undefined) {
      const s = this.settings;
      this.link = new RedisLink(this.redis, {
        timeoutMs: s.timeoutMs,
        failuresBeforePause: s.failuresBeforePause,
        retryMs: s.retryMs,
        logger: s.logger ?? silentLogger,
      });
    }
    return { settings: this.settings, link: this.link, keyPrefix: `${this.settings.prefix}${id}` };
  }
}
