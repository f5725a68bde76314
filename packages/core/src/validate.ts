import type { Logger } from './types';

/**
 * A small schema toolkit for options objects. Each check takes the value and its field path,
 * returns a new normalised value (the caller's object is never modified) or throws a
 * ConfigError that names the path, the value and what was expected.
 */

/** Thrown at creation for an option that cannot work. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'ERR_TURNPIKE_CONFIG_INVALID';
  /** Field path, e.g. `routes[2].stripPrefix`. */
  readonly path: string;
  /** What the field must be. */
  readonly expected: string;
  /** The value that was given. */
  readonly value: unknown;

  constructor(path: string, expected: string, value: unknown, example?: string) {
    super(
      `Invalid Turnpike config at ${path}: expected ${expected}, got ${describe(value)}` +
        (example === undefined ? '' : `. Example: ${example}`),
    );
    this.path = path;
    this.expected = expected;
    this.value = value;
  }
}

/** True for a {@link ConfigError}, from any copy of this package. */
export function isConfigError(value: unknown): value is ConfigError {
  return (
    value instanceof Error && (value as { code?: unknown }).code === 'ERR_TURNPIKE_CONFIG_INVALID'
  );
}

/** A short, safe rendering of a value for an error message. */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return `${JSON.stringify(shown)} (string)`;
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${String(value)} (${typeof value})`;
  }
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof RegExp) return `the RegExp ${String(value)}`;
  return 'an object';
}

/** A check: returns the normalised value or throws a ConfigError. */
export type Check<T> = (value: unknown, path: string) => T;

/** Makes `KeysEnum<T>` list every key of T: the compiler keeps the list complete. */
export type Shape<T> = { [K in keyof Required<T>]-?: Check<T[K]> };

/** `a.b` for a key below a path; the key alone at the root. */
export function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function checkKey(key: string, path: string): void {
  if (FORBIDDEN_KEYS.has(key)) {
    throw new ConfigError(join(path, key), 'no key named __proto__, constructor or prototype', key);
  }
}

/** An object with exactly the keys of `shape`; unknown keys are refused, by name. */
export function object<T>(shape: Shape<T>, required: readonly (keyof T)[] = []): Check<T> {
  const known = Object.keys(shape);
  return (value, path) => {
    if (!isPlainObject(value)) throw new ConfigError(path || '(root)', 'an object', value);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      checkKey(key, path);
      if (!Object.prototype.hasOwnProperty.call(shape, key)) {
        throw new ConfigError(join(path, key), `a known key (one of ${known.join(', ')})`, key);
      }
    }
    for (const key of known) {
      const given = value[key];
      if (given === undefined) {
        if (required.includes(key as keyof T)) {
          throw new ConfigError(join(path, key), 'a value (this field is required)', undefined);
        }
        continue;
      }
      out[key] = (shape as Record<string, Check<unknown>>)[key]!(given, join(path, key));
    }
    return out as T;
  };
}

/** A map from names to values of one kind. */
export function record<T>(
  item: Check<T>,
  options: { keyPattern?: RegExp; keyExpected?: string; minSize?: number } = {},
): Check<Record<string, T>> {
  return (value, path) => {
    if (!isPlainObject(value)) throw new ConfigError(path || '(root)', 'an object', value);
    const keys = Object.keys(value);
    if (options.minSize !== undefined && keys.length < options.minSize) {
      throw new ConfigError(
        path,
        `at least ${options.minSize} entr${options.minSize === 1 ? 'y' : 'ies'}`,
        value,
      );
    }
    const out: Record<string, T> = Object.create(null) as Record<string, T>;
    for (const key of keys) {
      checkKey(key, path);
      if (options.keyPattern && !options.keyPattern.test(key)) {
        throw new ConfigError(
          join(path, key),
          options.keyExpected ?? `a key matching ${String(options.keyPattern)}`,
          key,
        );
      }
      out[key] = item(value[key], join(path, key));
    }
    return out;
  };
}

/** An array of values of one kind. */
export function array<T>(item: Check<T>, options: { min?: number } = {}): Check<T[]> {
  return (value, path) => {
    if (!Array.isArray(value)) throw new ConfigError(path, 'an array', value);
    if (options.min !== undefined && value.length < options.min) {
      throw new ConfigError(path, `an array of at least ${options.min}`, value);
    }
    return value.map((v, i) => item(v, `${path}[${i}]`));
  };
}

/** A string, optionally matching a pattern. */
export function string(
  options: { pattern?: RegExp; expected?: string; minLength?: number } = {},
): Check<string> {
  return (value, path) => {
    const expected = options.expected ?? 'a string';
    if (typeof value !== 'string') throw new ConfigError(path, expected, value);
    if (options.minLength !== undefined && value.length < options.minLength) {
      throw new ConfigError(path, expected, value);
    }
    if (options.pattern && !options.pattern.test(value))
      throw new ConfigError(path, expected, value);
    return value;
  };
}

/** A finite number, optionally an integer and within bounds. */
export function number(
  options: { min?: number; max?: number; integer?: boolean } = {},
): Check<number> {
  const parts = [options.integer ? 'an integer' : 'a number'];
  if (options.min !== undefined) parts.push(`>= ${options.min}`);
  if (options.max !== undefined) parts.push(`<= ${options.max}`);
  const expected = parts.join(' ');
  return (value, path) => {
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new ConfigError(path, expected, value);
    if (options.integer && !Number.isInteger(value)) throw new ConfigError(path, expected, value);
    if (options.min !== undefined && value < options.min)
      throw new ConfigError(path, expected, value);
    if (options.max !== undefined && value > options.max)
      throw new ConfigError(path, expected, value);
    return value;
  };
}

/** true or false. */
export const boolean: Check<boolean> = (value, path) => {
  if (typeof value !== 'boolean') throw new ConfigError(path, 'true or false', value);
  return value;
};

/** A function (taken as given). */
export function fn<T extends (...args: never[]) => unknown>(): Check<T> {
  return (value, path) => {
    if (typeof value !== 'function') throw new ConfigError(path, 'a function', value);
    return value as T;
  };
}

/** One of a fixed list of literals. */
export function oneOf<const T extends readonly (string | number | boolean)[]>(
  values: T,
): Check<T[number]> {
  const expected = `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
  return (value, path) => {
    if (!values.includes(value as T[number])) throw new ConfigError(path, expected, value);
    return value as T[number];
  };
}

/** The first check whose type guard accepts the value; `expected` names them all. */
export function either<A, B>(
  a: { when: (v: unknown) => boolean; check: Check<A> },
  b: { when: (v: unknown) => boolean; check: Check<B> },
  expected: string,
): Check<A | B> {
  return (value, path) => {
    if (a.when(value)) return a.check(value, path);
    if (b.when(value)) return b.check(value, path);
    throw new ConfigError(path, expected, value);
  };
}

/** Deep-freezes a normalised options object so that nothing downstream can change it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

/** A logger: an object with `error`, `warn`, `info` and `debug` functions (console, winston, pino). */
export const logger: Check<Logger> = (value, path) => {
  const l = value as Partial<Record<string, unknown>> | null;
  if (
    typeof l !== 'object' ||
    l === null ||
    !['error', 'warn', 'info', 'debug'].every((m) => typeof l[m] === 'function')
  ) {
    throw new ConfigError(path, 'a logger with error, warn, info and debug methods', value);
  }
  return l as unknown as Logger;
};

/**
 * A Redis to connect to: a `redis://` or `rediss://` URL with a host (`'redis://'` alone
 * parses but names no server), or a client object with each of `methods` (an ioredis client).
 */
export function redisConnection<C extends object>(methods: readonly string[]): Check<string | C> {
  return (value, path) => {
    if (typeof value === 'string') {
      let url: URL | undefined;
      try {
        url = new URL(value);
      } catch {
        url = undefined;
      }
      if (
        url !== undefined &&
        (url.protocol === 'redis:' || url.protocol === 'rediss:') &&
        url.hostname !== ''
      ) {
        return value;
      }
    } else if (
      typeof value === 'object' &&
      value !== null &&
      methods.every((m) => typeof (value as Record<string, unknown>)[m] === 'function')
    ) {
      return value as C;
    }
    throw new ConfigError(
      path,
      'a redis:// or rediss:// URL with a host, or an ioredis client',
      value,
      'redis: "redis://127.0.0.1:6379"',
    );
  };
}
