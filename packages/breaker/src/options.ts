import {
  ConfigError,
  array,
  boolean,
  join,
  logger,
  number,
  object,
  record,
  redisConnection,
  silentLogger,
  string,
  type Check,
  type Logger,
  type Shape,
} from '@turnpike/core';
import type {
  BreakerOptions,
  BulkheadOptions,
  Fallback,
  FallbackResponse,
  RedisLike,
  SharedOptions,
} from './types';

const DAY_MS = 86_400_000;

/** Every 5xx except 501 (Not Implemented: the service works, it lacks the feature). */
export const DEFAULT_FAILURE_STATUSES: readonly number[] = Object.freeze(
  Array.from({ length: 100 }, (_, i) => 500 + i).filter((s) => s !== 501),
);

const count = number({ integer: true, min: 1, max: 1_000_000 });
const ms = (min: number): Check<number> => number({ integer: true, min, max: DAY_MS });

const rate: Check<number> = (value, path) => {
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) {
    throw new ConfigError(path, 'a rate in (0, 1], e.g. 0.5', value);
  }
  return value;
};

const statusCheck = number({ integer: true, min: 100, max: 599 });

/** Headers the gateway frames or that belong to one connection: a fallback may not set them. */
const FRAMING = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
]);

const headerValue = string({
  pattern: /^[\t\x20-\x7e]*$/,
  expected:
    'a header value of visible ASCII, spaces and tabs (no CR, LF or other control characters)',
});

const fallbackHeaders: Check<Record<string, string>> = (value, path) => {
  const out = record(headerValue, {
    keyPattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/,
    keyExpected: 'a header name',
  })(value, path);
  for (const name of Object.keys(out)) {
    if (FRAMING.has(name.toLowerCase())) {
      throw new ConfigError(
        join(path, name),
        'a header the gateway does not frame itself (not Content-Length, Transfer-Encoding or a hop-by-hop header)',
        name,
      );
    }
  }
  return out;
};

const fallbackObject = object<FallbackResponse>({
  status: number({ integer: true, min: 200, max: 599 }),
  headers: fallbackHeaders,
  body: (v) => v,
});

const fallbackResponse: Check<FallbackResponse> = (value, path) => {
  const out = fallbackObject(value, path);
  const empty = out.body === undefined || out.body === null || out.body === '';
  if ((out.status === 204 || out.status === 304) && !empty) {
    throw new ConfigError(join(path, 'body'), `no body with status ${out.status}`, out.body);
  }
  return out;
};

/** A fallback: a function, or a fixed response `{ status, headers, body }`. */
export const fallbackCheck: Check<Fallback> = (value, path) => {
  if (typeof value === 'function') return value as Fallback;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(
      path,
      'a function (req, res, reason) or a response { status, headers, body }',
      value,
    );
  }
  return fallbackResponse(value, path);
};

const redisCheck = redisConnection<RedisLike>(['duplicate']);

const sharedOptions = object<SharedOptions>(
  {
    redis: redisCheck,
    prefix: string({
      pattern: /^[A-Za-z0-9:_.-]{0,64}$/,
      expected: 'a key prefix of [A-Za-z0-9:_.-]',
    }),
    probeLockMs: ms(100),
  },
  ['redis'],
);

/** The checks of every breaker option, for callers that build their own shape (the gateway). */
export const breakerShape: Shape<BreakerOptions> = {
  name: string({ pattern: /^[A-Za-z0-9_.:-]{1,128}$/, expected: 'a name of [A-Za-z0-9_.:-]' }),
  failureThreshold: count,
  failureRate: rate,
  windowMs: ms(1),
  bucketMs: ms(1),
  minimumRequests: count,
  resetTimeoutMs: ms(1),
  maxResetTimeoutMs: ms(1),
  halfOpenRequests: count,
  successThreshold: count,
  failureStatuses: array(statusCheck, { min: 1 }),
  fallback: fallbackCheck,
  fallbackOnFailure: boolean,
  shared: (value, path) => (typeof value === 'boolean' ? value : sharedOptions(value, path)),
  logger,
};

const breakerOptions = object<BreakerOptions>(breakerShape);

/** Breaker options with every default applied. */
export interface ParsedBreakerOptions {
  readonly name: string;
  /** Undefined: the consecutive rule is off (a rate is set without a threshold). */
  readonly failureThreshold: number | undefined;
  readonly failureRate: number | undefined;
  readonly windowMs: number;
  readonly bucketMs: number;
  readonly minimumRequests: number;
  readonly resetTimeoutMs: number;
  readonly maxResetTimeoutMs: number;
  readonly halfOpenRequests: number;
  readonly successThreshold: number;
  readonly failureStatuses: readonly number[];
  readonly fallback: Fallback | undefined;
  readonly fallbackOnFailure: boolean;
  readonly shared: SharedOptions | boolean | undefined;
  readonly logger: Logger;
}

/** The relations between fields, once each field is valid on its own. */
export function completeBreakerOptions(o: BreakerOptions, path: string): ParsedBreakerOptions {
  const windowMs = o.windowMs ?? 10_000;
  const bucketMs = o.bucketMs ?? 1000;
  if (windowMs < bucketMs) {
    throw new ConfigError(
      join(path, o.windowMs === undefined ? 'bucketMs' : 'windowMs'),
      `a window of at least one bucket (windowMs ${windowMs} >= bucketMs ${bucketMs})`,
      o.windowMs ?? o.bucketMs,
    );
  }
  if (windowMs / bucketMs > 3600) {
    throw new ConfigError(
      join(path, 'bucketMs'),
      `at most 3600 buckets in the window (bucketMs >= ${Math.ceil(windowMs / 3600)})`,
      bucketMs,
    );
  }
  if (
    o.failureRate === undefined &&
    (o.windowMs !== undefined || o.bucketMs !== undefined || o.minimumRequests !== undefined)
  ) {
    const key =
      o.windowMs !== undefined
        ? 'windowMs'
        : o.bucketMs !== undefined
          ? 'bucketMs'
          : 'minimumRequests';
    throw new ConfigError(
      join(path, key),
      'no rate window option without failureRate (set failureRate, e.g. 0.5)',
      (o as Record<string, unknown>)[key],
    );
  }
  const resetTimeoutMs = o.resetTimeoutMs ?? 30_000;
  if (o.maxResetTimeoutMs !== undefined && o.maxResetTimeoutMs < resetTimeoutMs) {
    throw new ConfigError(
      join(path, 'maxResetTimeoutMs'),
      `a time of at least resetTimeoutMs (${resetTimeoutMs})`,
      o.maxResetTimeoutMs,
    );
  }
  if (o.fallbackOnFailure === true && o.fallback === undefined) {
    throw new ConfigError(
      join(path, 'fallbackOnFailure'),
      'a fallback to answer with (set fallback)',
      o.fallbackOnFailure,
    );
  }
  return Object.freeze({
    name: o.name ?? 'default',
    failureThreshold: o.failureThreshold ?? (o.failureRate === undefined ? 5 : undefined),
    failureRate: o.failureRate,
    windowMs,
    bucketMs,
    minimumRequests: o.minimumRequests ?? 20,
    resetTimeoutMs,
    maxResetTimeoutMs: o.maxResetTimeoutMs ?? Math.max(300_000, resetTimeoutMs),
    halfOpenRequests: o.halfOpenRequests ?? 1,
    successThreshold: o.successThreshold ?? 1,
    failureStatuses: Object.freeze([...(o.failureStatuses ?? DEFAULT_FAILURE_STATUSES)]),
    fallback: o.fallback,
    fallbackOnFailure: o.fallbackOnFailure ?? false,
    shared: o.shared,
    logger: o.logger ?? silentLogger,
  });
}

/** Checks breaker options: a ConfigError names the field. */
export function parseBreakerOptions(value: unknown, path = 'options'): ParsedBreakerOptions {
  return completeBreakerOptions(breakerOptions(value ?? {}, path), path);
}

/** The checks of every bulkhead option. */
export const bulkheadShape: Shape<BulkheadOptions> = {
  name: breakerShape.name,
  maxConcurrent: count,
  maxQueue: number({ integer: true, min: 0, max: 1_000_000 }),
  queueTimeoutMs: ms(1),
  retryAfterSeconds: number({ integer: true, min: 1, max: 86_400 }),
  fallback: fallbackCheck,
  logger,
};

const bulkheadOptions = object<BulkheadOptions>(bulkheadShape, ['maxConcurrent']);

/** Bulkhead options with every default applied. */
export type ParsedBulkheadOptions = Readonly<
  Required<Omit<BulkheadOptions, 'fallback'>> & Pick<BulkheadOptions, 'fallback'>
>;

/** Checks bulkhead options: a ConfigError names the field. */
export function parseBulkheadOptions(value: unknown, path = 'options'): ParsedBulkheadOptions {
  const o = bulkheadOptions(value, path);
  return Object.freeze({
    name: o.name ?? 'default',
    maxConcurrent: o.maxConcurrent,
    maxQueue: o.maxQueue ?? 0,
    queueTimeoutMs: o.queueTimeoutMs ?? 1000,
    retryAfterSeconds: o.retryAfterSeconds ?? 1,
    fallback: o.fallback,
    logger: o.logger ?? silentLogger,
  });
}
