import {
  ConfigError,
  array,
  boolean,
  join,
  number,
  object,
  oneOf,
  parseTarget,
  record,
  string,
  type Check,
  type Shape,
  type Target,
} from '@turnpike/core';
import { resolveStrategy } from './strategy';
import type {
  BalancerOptions,
  HashKey,
  HealthCheckOptions,
  OutlierOptions,
  StrategyOption,
} from './types';

/** Health-check options with every default filled in. */
export interface NormalisedHealthCheck {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
  readonly expectStatus: readonly number[] | { readonly min: number; readonly max: number };
  readonly method: 'GET' | 'HEAD';
  readonly headers: Readonly<Record<string, string>>;
}

/** Outlier options with every default filled in. */
export interface NormalisedOutlier {
  readonly consecutiveFailures: number;
  readonly statuses: readonly number[];
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
}

export const HEALTH_DEFAULTS = Object.freeze({
  intervalMs: 5000,
  timeoutMs: 2000,
  healthyThreshold: 2,
  unhealthyThreshold: 3,
  expectStatus: Object.freeze({ min: 200, max: 399 }),
  method: 'GET' as const,
});

export const OUTLIER_DEFAULTS = Object.freeze({
  consecutiveFailures: 5,
  statuses: Object.freeze([500, 502, 503, 504]),
  baseEjectionMs: 30000,
  maxEjectionMs: 300000,
  maxEjectionPercent: 50,
});

const positiveInt = number({ integer: true, min: 1 });
/** An ejection time: up to a day (a date past that range would not even print). */
const ejectionMs = number({ integer: true, min: 1, max: 86_400_000 });
const httpStatus = number({ integer: true, min: 100, max: 599 });
const serverStatus: Check<number> = (value, path) => {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 500 || value > 599) {
    throw new ConfigError(path, 'an integer status from 500 to 599 (4xx never count)', value);
  }
  return value;
};

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Visible ASCII, space, tab and obs-text; no CR, LF or other control characters.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

const headerMap = record(
  string({
    pattern: HEADER_VALUE,
    expected: 'a header value without CR, LF or control characters',
  }),
  { keyPattern: TOKEN, keyExpected: 'a header name (an HTTP token)' },
);

const statusRange = object<{ min: number; max: number }>({ min: httpStatus, max: httpStatus }, [
  'min',
  'max',
]);

const expectStatus: Check<NormalisedHealthCheck['expectStatus']> = (value, path) => {
  if (Array.isArray(value)) return Object.freeze(array(httpStatus, { min: 1 })(value, path));
  const range = statusRange(value, path);
  if (range.min > range.max) {
    throw new ConfigError(join(path, 'max'), `a status >= min (${range.min})`, range.max);
  }
  return Object.freeze(range);
};

const healthShape = object<HealthCheckOptions>(
  {
    // Visible ASCII only: Node's http.request refuses anything else, and the target would
    // stay unhealthy from a config that validated.
    path: string({
      pattern: /^\/[\x21-\x7e]*$/,
      expected: "a path of visible ASCII starting with '/', e.g. '/health'",
    }),
    intervalMs: positiveInt,
    timeoutMs: positiveInt,
    healthyThreshold: positiveInt,
    unhealthyThreshold: positiveInt,
    expectStatus,
    method: oneOf(['GET', 'HEAD'] as const),
    headers: headerMap,
  },
  ['path'],
);

/** Checks a `healthCheck` option and fills in its defaults. */
export const healthCheckOption: Check<NormalisedHealthCheck> = (value, path) => {
  const given = healthShape(value, path);
  const intervalMs = given.intervalMs ?? HEALTH_DEFAULTS.intervalMs;
  const timeoutMs = given.timeoutMs ?? Math.min(HEALTH_DEFAULTS.timeoutMs, intervalMs);
  if (timeoutMs > intervalMs) {
    throw new ConfigError(
      join(path, 'timeoutMs'),
      `an integer <= intervalMs (${intervalMs})`,
      timeoutMs,
    );
  }
  return Object.freeze({
    path: given.path,
    intervalMs,
    timeoutMs,
    healthyThreshold: given.healthyThreshold ?? HEALTH_DEFAULTS.healthyThreshold,
    unhealthyThreshold: given.unhealthyThreshold ?? HEALTH_DEFAULTS.unhealthyThreshold,
    expectStatus: given.expectStatus ?? HEALTH_DEFAULTS.expectStatus,
    method: given.method ?? HEALTH_DEFAULTS.method,
    headers: Object.freeze({ ...(given.headers ?? {}) }),
  });
};

const outlierShape = object<OutlierOptions>({
  consecutiveFailures: positiveInt,
  statuses: array(serverStatus),
  baseEjectionMs: ejectionMs,
  maxEjectionMs: ejectionMs,
  maxEjectionPercent: number({ min: 0, max: 100 }),
});

/** Checks an `outlier` option (an object or false) and fills in its defaults. */
export const outlierOption: Check<NormalisedOutlier | false> = (value, path) => {
  if (value === false) return false;
  const given = outlierShape(value, path);
  const baseEjectionMs = given.baseEjectionMs ?? OUTLIER_DEFAULTS.baseEjectionMs;
  const maxEjectionMs =
    given.maxEjectionMs ?? Math.max(OUTLIER_DEFAULTS.maxEjectionMs, baseEjectionMs);
  if (maxEjectionMs < baseEjectionMs) {
    throw new ConfigError(
      join(path, 'maxEjectionMs'),
      `an integer >= baseEjectionMs (${baseEjectionMs})`,
      maxEjectionMs,
    );
  }
  return Object.freeze({
    consecutiveFailures: given.consecutiveFailures ?? OUTLIER_DEFAULTS.consecutiveFailures,
    statuses: Object.freeze([...(given.statuses ?? OUTLIER_DEFAULTS.statuses)]),
    baseEjectionMs,
    maxEjectionMs,
    maxEjectionPercent: given.maxEjectionPercent ?? OUTLIER_DEFAULTS.maxEjectionPercent,
  });
};

/**
 * Checks a `strategy` option (a name, `{ hash: … }` or a factory) and returns it as given
 * (an object copied), so it can be passed to createBalancer later.
 */
export const strategyOption: Check<StrategyOption> = (value, path) => {
  resolveStrategy(value, path);
  if (typeof value === 'object' && value !== null) {
    const { hash } = value as { hash: HashKey };
    return Object.freeze({ hash: Object.freeze({ ...hash }) });
  }
  return value as StrategyOption;
};

/** Checks `panic`. */
export const panicOption: Check<boolean> = boolean;

/** The balancing options a service may carry, by key; the gateway's config check reuses them. */
export type BalancingOptions = Pick<
  BalancerOptions,
  'strategy' | 'healthCheck' | 'outlier' | 'panic'
>;

/**
 * Checks of the balancing keys, shaped for `object()` of @turnpike/core: each takes
 * `(value, path)` and returns the normalised value or throws a ConfigError naming `path`.
 */
export const balancerShape: Shape<BalancingOptions> = Object.freeze({
  strategy: strategyOption,
  healthCheck: healthCheckOption,
  outlier: outlierOption,
  panic: panicOption,
});

const targetList = array(parseTarget, { min: 1 });
const targetListOrNone = array(parseTarget);

/** Parses and checks a target list (at least one); throws a ConfigError naming `path`. */
export function parseTargets(value: unknown, path: string): Target[] {
  return targetList(value, path);
}

/** Parses a target list that may be empty (setTargets). */
export function parseTargetsOrNone(value: unknown, path: string): Target[] {
  return targetListOrNone(value, path);
}

/** The options of createBalancer, checked; strategy is resolved by the caller. */
export interface ParsedOptions {
  name: string;
  targets: Target[];
  strategy: StrategyOption | undefined;
  healthCheck: NormalisedHealthCheck | undefined;
  outlier: NormalisedOutlier | false;
  panic: boolean;
}

const optionsShape = object<{
  name: string;
  targets: Target[];
  strategy: StrategyOption;
  healthCheck: NormalisedHealthCheck;
  outlier: NormalisedOutlier | false;
  panic: boolean;
}>(
  {
    name: string({ minLength: 1, expected: 'a non-empty service name' }),
    targets: parseTargets,
    strategy: strategyOption,
    healthCheck: healthCheckOption,
    outlier: outlierOption,
    panic: panicOption,
  },
  ['targets'],
);

/** Checks every option of createBalancer; throws a ConfigError naming the field below `path`. */
export function parseOptions(value: unknown, path: string): ParsedOptions {
  const given = optionsShape(value, path);
  return {
    name: given.name ?? 'service',
    targets: given.targets,
    strategy: given.strategy,
    healthCheck: given.healthCheck,
    outlier: given.outlier ?? outlierOption({}, join(path, 'outlier')),
    panic: given.panic ?? false,
  };
}
