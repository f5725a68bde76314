import {
  ConfigError,
  array,
  boolean,
  fn,
  join,
  logger,
  number,
  object,
  oneOf,
  redisConnection,
  string,
  type Check,
  type Logger,
  type Shape,
} from '@turnpike/core';
import type {
  Algorithm,
  KeySource,
  LimitOptions,
  LimiterSettings,
  RateLimitOptions,
  RedisLike,
  StandardHeaders,
  StoreErrorMode,
} from './types';

const ALGORITHMS = ['fixed-window', 'sliding-window', 'token-bucket'] as const;
const MODES = ['open', 'closed', 'local'] as const;

/** A header name as RFC 9110 spells a token. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const keySource: Check<KeySource> = (value, path) => {
  if (value === 'ip' || value === 'subject' || value === 'api-key') return value;
  if (typeof value === 'function') return value as KeySource;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const { header } = object<{ header: string }>(
      {
        header: string({ pattern: TOKEN, expected: 'a header name, e.g. "x-tenant-id"' }),
      },
      ['header'],
    )(value, path);
    return { header: header.toLowerCase() };
  }
  throw new ConfigError(
    path,
    `'ip', 'subject', 'api-key', { header: name } or a function (req, res) => key`,
    value,
    "key: 'subject'",
  );
};

/** The largest delay Node's timers take (about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;
/** The largest integer a structured header field may carry (RFC 9651: 15 digits). */
export const MAX_LIMIT = 999_999_999_999_999;

const windowCheck: Check<number> = (value, path) => {
  if (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value >= 100 &&
    value <= MAX_TIMER_MS
  ) {
    return value;
  }
  throw new ConfigError(
    path,
    `an integer from 100 to ${MAX_TIMER_MS} (ms: up to about 24.8 days, the longest timer Node runs)`,
    value,
    'windowMs: 60000',
  );
};

const limitValue: Check<LimitOptions['limit']> = (value, path) => {
  if (typeof value === 'function') return value as LimitOptions['limit'];
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_LIMIT) {
    return value;
  }
  throw new ConfigError(
    path,
    `an integer from 1 to ${MAX_LIMIT} (requests per window; a token bucket: its capacity), or a function (req, res) => number`,
    value,
    'limit: 100',
  );
};

const refill: Check<number> = (value, path) => {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0.001 || value > 1e9) {
    throw new ConfigError(
      path,
      'a number from 0.001 to 1e9 (tokens added per second)',
      value,
      'refillPerSecond: 10',
    );
  }
  return value;
};

const subnet: Check<number | false> = (value, path) => {
  if (value === false) return false;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 128) {
    return value;
  }
  throw new ConfigError(path, 'a prefix length from 1 to 128, or false', value, 'ipv6Subnet: 56');
};

/** Every key of one limit, checked alone. */
export const limitShape: Shape<LimitOptions> = {
  name: string({
    pattern: /^[A-Za-z0-9._~:-]{1,64}$/,
    expected: 'a name of 1 to 64 of [A-Za-z0-9._~:-], e.g. "per-second"',
  }),
  algorithm: oneOf(ALGORITHMS),
  limit: limitValue,
  windowMs: windowCheck,
  refillPerSecond: refill,
  key: keySource,
  keyGenerator: fn<NonNullable<LimitOptions['keyGenerator']>>(),
  ipv6Subnet: subnet,
  skip: fn<NonNullable<LimitOptions['skip']>>(),
  onStoreError: oneOf(MODES),
};

const limitObject = object<LimitOptions>(limitShape, ['limit']);

/** One limit: its keys, then their relations (the token bucket's refill rate). */
export const limitCheck: Check<LimitOptions> = (value, path) => {
  const limit = limitObject(value, path);
  if (limit.keyGenerator !== undefined && limit.key !== undefined) {
    throw new ConfigError(
      join(path, 'keyGenerator'),
      "key or keyGenerator, not both (keyGenerator is express-rate-limit's name for key: fn)",
      '[Function]',
    );
  }
  const algorithm = limit.algorithm ?? 'fixed-window';
  if (algorithm === 'token-bucket') {
    if (limit.refillPerSecond === undefined) {
      throw new ConfigError(
        join(path, 'refillPerSecond'),
        'tokens added per second (a token bucket needs a refill rate)',
        undefined,
        "{ algorithm: 'token-bucket', limit: 20, refillPerSecond: 5 }",
      );
    }
    if (limit.windowMs !== undefined) {
      throw new ConfigError(
        join(path, 'windowMs'),
        'no windowMs on a token bucket (its rate is refillPerSecond)',
        limit.windowMs,
      );
    }
  } else if (limit.refillPerSecond !== undefined) {
    throw new ConfigError(
      join(path, 'refillPerSecond'),
      "no refillPerSecond on a window (it is the token bucket's: algorithm: 'token-bucket')",
      limit.refillPerSecond,
    );
  }
  return limit;
};

const redisCheck = redisConnection<RedisLike>(['call', 'on']);

/** Every setting shared by the limits of one middleware. */
export const settingsShape: Shape<LimiterSettings> = {
  standardHeaders: oneOf(['draft-6', 'draft-7', 'draft-8', false] as const),
  legacyHeaders: boolean,
  redis: redisCheck,
  prefix: string({
    pattern: /^[^\s{}]{0,100}$/,
    expected: 'a key prefix without spaces or braces',
  }),
  onStoreError: oneOf(MODES),
  timeoutMs: number({ integer: true, min: 1, max: 60_000 }),
  failuresBeforePause: number({ integer: true, min: 1, max: 1000 }),
  retryMs: number({ integer: true, min: 1, max: 3_600_000 }),
  maxKeys: number({ integer: true, min: 1, max: 10_000_000 }),
  logger,
};

/** A limit with every default filled in. */
export interface ParsedLimit {
  readonly name: string | undefined;
  readonly algorithm: Algorithm;
  readonly limit: LimitOptions['limit'];
  readonly windowMs: number;
  readonly refillPerSecond: number | undefined;
  readonly key: KeySource;
  readonly ipv6Subnet: number | false;
  readonly skip: LimitOptions['skip'];
  readonly onStoreError: StoreErrorMode | undefined;
}

/** Settings with every default filled in. */
export interface ParsedSettings {
  readonly standardHeaders: StandardHeaders;
  readonly legacyHeaders: boolean;
  readonly redis: string | RedisLike | undefined;
  readonly prefix: string;
  readonly onStoreError: StoreErrorMode;
  readonly timeoutMs: number;
  readonly failuresBeforePause: number;
  readonly retryMs: number;
  readonly maxKeys: number;
  readonly logger: Logger | undefined;
}

/** Defaults of the settings (see {@link LimiterSettings}). */
export const DEFAULT_SETTINGS = {
  standardHeaders: 'draft-8',
  legacyHeaders: false,
  prefix: 'turnpike:rl:',
  onStoreError: 'local',
  timeoutMs: 250,
  failuresBeforePause: 3,
  retryMs: 1000,
  maxKeys: 100_000,
} as const;

export function completeLimit(limit: LimitOptions): ParsedLimit {
  const algorithm = limit.algorithm ?? 'fixed-window';
  return {
    name: limit.name,
    algorithm,
    limit: limit.limit,
    // A token bucket has no window: its `w` in the headers is the time it takes to fill.
    windowMs: algorithm === 'token-bucket' ? 0 : (limit.windowMs ?? 60_000),
    refillPerSecond: limit.refillPerSecond,
    key: limit.key ?? limit.keyGenerator ?? 'ip',
    ipv6Subnet: limit.ipv6Subnet ?? 56,
    skip: limit.skip,
    onStoreError: limit.onStoreError,
  };
}

export function completeSettings(s: LimiterSettings, over?: ParsedSettings): ParsedSettings {
  const base = over ?? { ...DEFAULT_SETTINGS, redis: undefined, logger: undefined };
  return {
    standardHeaders: s.standardHeaders ?? base.standardHeaders,
    legacyHeaders: s.legacyHeaders ?? base.legacyHeaders,
    redis: s.redis ?? base.redis,
    prefix: s.prefix ?? base.prefix,
    onStoreError: s.onStoreError ?? base.onStoreError,
    timeoutMs: s.timeoutMs ?? base.timeoutMs,
    failuresBeforePause: s.failuresBeforePause ?? base.failuresBeforePause,
    retryMs: s.retryMs ?? base.retryMs,
    maxKeys: s.maxKeys ?? base.maxKeys,
    logger: s.logger ?? base.logger,
  };
}

const LIMIT_KEYS = Object.keys(limitShape);
const SETTING_KEYS = Object.keys(settingsShape);
const limitsList = array(limitCheck, { min: 1 });
const settingsObject = object<LimiterSettings & { limits: readonly LimitOptions[] }>(
  { ...settingsShape, limits: limitsList },
  ['limits'],
);
/** The same, where settings alone make sense (the gateway's, for its routes' limits). */
const settingsOnlyObject = object<LimiterSettings & { limits: readonly LimitOptions[] }>(
  { ...settingsShape, limits: array(limitCheck) },
  ['limits'],
);
const singleObject = object<LimitOptions & LimiterSettings>({ ...limitShape, ...settingsShape }, [
  'limit',
]);

/** Options as {@link parseRateLimitOptions} returns them: the limits, and the settings given. */
export interface RateLimitParts {
  readonly limits: readonly LimitOptions[];
  readonly settings: LimiterSettings;
}

function pick<T>(from: Record<string, unknown>, keys: readonly string[]): T {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out as T;
}

/**
 * Checks rate limit options: one limit with the settings beside it, `{ limits: [...], ...settings }`,
 * or (`allowList`) a list of limits; with `allowNoLimits`, `limits` may be empty (settings
 * alone). Throws a ConfigError naming the field.
 */
export function parseRateLimitOptions(
  value: unknown,
  path: string,
  allowList = false,
  allowNoLimits = false,
): RateLimitParts {
  if (Array.isArray(value)) {
    if (!allowList) {
      throw new ConfigError(path || '(root)', 'an object: one limit, or { limits: [...] }', value);
    }
    return { limits: limitsList(value, path), settings: {} };
  }
  if (typeof value === 'object' && value !== null && 'limits' in value) {
    const parsed = (allowNoLimits ? settingsOnlyObject : settingsObject)(value, path);
    return {
      limits: parsed.limits,
      settings: pick<LimiterSettings>(parsed as unknown as Record<string, unknown>, SETTING_KEYS),
    };
  }
  const parsed = singleObject(value, path) as unknown as Record<string, unknown>;
  const limit = limitCheck(pick(parsed, LIMIT_KEYS), path);
  return { limits: [limit], settings: pick<LimiterSettings>(parsed, SETTING_KEYS) };
}

/** The checked options of {@link rateLimit}. */
export function parseOptions(options: RateLimitOptions): {
  limits: ParsedLimit[];
  settings: ParsedSettings;
} {
  const { limits, settings } = parseRateLimitOptions(options, '');
  return { limits: limits.map(completeLimit), settings: completeSettings(settings) };
}
