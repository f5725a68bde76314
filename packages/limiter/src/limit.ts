import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  rateLimit as erl,
  type ClientRateLimitInfo,
  type Options,
  type Store,
} from 'express-rate-limit';
import { FixedWindowMemoryStore, SlidingWindowMemoryStore, TokenBucketMemoryStore } from './memory';
import {
  FixedWindowRedisStore,
  SlidingWindowRedisStore,
  TokenBucketRedisStore,
  type RedisLink,
} from './redis';
import { compileKey, type KeyFunction } from './keys';
import type { ParsedLimit, ParsedSettings } from './options';
import type { StoreErrorMode } from './types';

/** What a limit passes to the chain's `next` instead of an error; built once, never thrown far. */
class Signal extends Error {}
/** Passed to the chain's `next` by a limit: it refused the request (express-rate-limit's `handler`). */
export const REFUSED = new Signal('rate limit: refused');
/** Thrown by a store whose Redis failed, for a limit that lets requests through (`open`). */
export const PASS = new Signal('rate limit: Redis failed, let through');
/** Thrown by a store whose Redis failed, for a limit that refuses them (`closed`). */
export const UNAVAILABLE = new Signal('rate limit: Redis failed, refused');

/** Where one limit counts: a memory store, or Redis (with the limit's onStoreError). */
export interface LimitContext {
  readonly settings: ParsedSettings;
  /** The Redis link, when the limiter counts in Redis. */
  readonly link: RedisLink | undefined;
  /** Prefix of this limit's keys in Redis (the settings' prefix, then what identifies the limit). */
  readonly keyPrefix: string;
}

type Middleware = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

/** The counting of one value of a limit: express-rate-limit with its store. */
export interface Counter {
  readonly middleware: Middleware;
  readonly store: Store & { shutdown?(): void };
  readonly policy: string;
  readonly windowSeconds: number;
}

const ALGORITHM_TAG = {
  'fixed-window': 'fw:',
  'sliding-window': 'sw:',
  'token-bucket': 'tb:',
} as const;

/** Where the chain puts the key of the limit it is counting, for express-rate-limit to read. */
export const KEY = Symbol('turnpike.rateLimitKey');
const precomputedKey = (req: IncomingMessage): string => (req as { [KEY]?: string })[KEY]!;

/** Most distinct values a limit function may return: each is a count of its own. */
export const MAX_LIMIT_VALUES = 64;

/**
 * A Redis store that never throws a Redis failure at express-rate-limit: it asks the link
 * first (down, or resting after failures: not tried), and on a failure follows the limit's
 * mode: count in its memory twin (`local`), or tell the chain to let the request through
 * (`open`) or refuse it (`closed`).
 */
class GuardedStore implements Store {
  readonly localKeys = false;
  constructor(
    private readonly redis: Store,
    private readonly local: Store | undefined,
    private readonly link: RedisLink,
    private readonly mode: StoreErrorMode,
    private readonly limit: string,
  ) {}

  get prefix(): string | undefined {
    return (this.redis as { prefix?: string }).prefix;
  }

  init(options: Options): void {
    void this.redis.init?.(options);
    void this.local?.init?.(options);
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    if (this.link.starting !== undefined) await this.link.starting;
    if (this.link.usable()) {
      try {
        const info = await this.link.run(async () => this.redis.increment(key));
        this.link.succeeded();
        return info;
      } catch (err) {
        this.link.failed(err, this.limit);
      }
    }
    if (this.mode === 'local') return this.local!.increment(key);
    throw this.mode === 'open' ? PASS : UNAVAILABLE;
  }

  async decrement(key: string): Promise<void> {
    try {
      await (this.link.usable() ? this.redis : this.local)?.decrement(key);
    } catch {
      // A count not given back is a request counted: the safe side.
    }
  }

  async resetKey(key: string): Promise<void> {
    await Promise.allSettled([this.redis.resetKey(key), this.local?.resetKey(key)]);
  }

  shutdown(): void {
    (this.local as { shutdown?(): void } | undefined)?.shutdown?.();
  }
}

function memoryStore(limit: ParsedLimit, maxKeys: number): Store & { shutdown?(): void } {
  switch (limit.algorithm) {
    case 'fixed-window':
      return new FixedWindowMemoryStore({ maxKeys });
    case 'sliding-window':
      return new SlidingWindowMemoryStore({ maxKeys });
    case 'token-bucket':
      return new TokenBucketMemoryStore({ maxKeys, refillPerSecond: limit.refillPerSecond! });
  }
}

function redisStore(limit: ParsedLimit, link: RedisLink, prefix: string): Store {
  const options = { client: link.client, prefix };
  switch (limit.algorithm) {
    case 'fixed-window':
      return new FixedWindowRedisStore(options);
    case 'sliding-window':
      return new SlidingWindowRedisStore(options);
    case 'token-bucket':
      return new TokenBucketRedisStore({ ...options, refillPerSecond: limit.refillPerSecond! });
  }
}

/** express-rate-limit's handler: no answer of its own; the chain decides once every limit has counted. */
const refuse = (_req: unknown, _res: unknown, next: (err?: unknown) => void): void => next(REFUSED);

/** `"100-in-1min"`, as express-rate-limit names a policy; a token bucket `"20-burst-5-per-sec"`. */
export function defaultName(limit: ParsedLimit): string {
  const q = typeof limit.limit === 'number' ? String(limit.limit) : 'plan';
  if (limit.algorithm === 'token-bucket') return `${q}-burst-${limit.refillPerSecond}-per-sec`;
  const ms = limit.windowMs;
  const unit = (n: number, one: string, many = one) =>
    `${Number(n.toFixed(3))}${n > 1 ? many : one}`;
  const duration =
    ms < 60_000
      ? unit(ms / 1000, 'sec')
      : ms < 3_600_000
        ? unit(ms / 60_000, 'min')
        : ms < 86_400_000
          ? unit(ms / 3_600_000, 'hr', 'hrs')
          : unit(ms / 86_400_000, 'day', 'days');
  return `${q}-in-${duration}`;
}

/**
 * One limit, compiled once: its key function, and express-rate-limit over the limit's store
 * for each limit value (one for a number; one per value a limit function returns).
 */
export class Limit {
  readonly name: string;
  readonly key: KeyFunction;
  readonly skip: ParsedLimit['skip'];
  /** The counter of a number limit; undefined for a limit function. */
  readonly fixed: Counter | undefined;
  private readonly counters = new Map<number, Counter>();

  constructor(
    readonly spec: ParsedLimit,
    name: string,
    private readonly ctx: LimitContext,
  ) {
    this.name = name;
    this.key = compileKey(spec.key, spec.ipv6Subnet);
    this.skip = spec.skip;
    this.fixed = typeof spec.limit === 'number' ? this.counter(spec.limit) : undefined;
  }

  /**
   * The counter of one limit value, created on first use for a limit function. At most
   * {@link MAX_LIMIT_VALUES} are kept: past them the least recently used goes (its clients'
   * counts in memory start afresh; Redis keeps its own).
   */
  counterFor(value: number): Counter {
    const fixed = this.fixed;
    if (fixed !== undefined) return fixed;
    const known = this.counters.get(value);
    if (known !== undefined) {
      this.counters.delete(value);
      this.counters.set(value, known);
      return known;
    }
    if (this.counters.size >= MAX_LIMIT_VALUES) {
      const [oldest, c] = this.counters.entries().next().value as [number, Counter];
      this.counters.delete(oldest);
      void c.store.shutdown?.();
    }
    return this.counter(value);
  }

  private counter(value: number): Counter {
    const { spec, ctx } = this;
    const windowMs =
      spec.algorithm === 'token-bucket'
        ? Math.max(1000, Math.ceil((value / spec.refillPerSecond!) * 1000))
        : spec.windowMs;
    const mode = spec.onStoreError ?? ctx.settings.onStoreError;
    // The algorithm is part of the key: a limit that changes algorithm (a deploy rolling
    // out) starts afresh instead of meeting a key of the other kind (WRONGTYPE).
    const tagged = `${ctx.keyPrefix}${ALGORITHM_TAG[spec.algorithm]}`;
    const prefix = typeof spec.limit === 'number' ? tagged : `${tagged}q${value}:`;
    const store =
      ctx.link === undefined
        ? memoryStore(spec, ctx.settings.maxKeys)
        : new GuardedStore(
            redisStore(spec, ctx.link, prefix),
            mode === 'local' ? memoryStore(spec, ctx.settings.maxKeys) : undefined,
            ctx.link,
            mode,
            this.name,
          );
    // The chain computes every limit's key before any counts (a key that fails charges
    // nothing); express-rate-limit reads the one computed for this limit.
    const key = precomputedKey;
    const middleware = erl({
      limit: value,
      windowMs,
      store,
      keyGenerator: key as Options['keyGenerator'],
      handler: refuse as unknown as Options['handler'],
      standardHeaders: false,
      legacyHeaders: false,
      passOnStoreError: false,
      requestPropertyName: 'rateLimit',
      identifier: this.name,
      // Turnpike checks its options itself; express-rate-limit's per-request checks are off.
      validate: false,
    }) as unknown as Middleware;
    const windowSeconds = Math.ceil(windowMs / 1000);
    const c: Counter = {
      middleware,
      store,
      windowSeconds,
      policy: `"${this.name}"; q=${value}; w=${windowSeconds}`,
    };
    this.counters.set(value, c);
    return c;
  }

  /** Stops the stores' timers. */
  close(): void {
    for (const c of this.counters.values()) void c.store.shutdown?.();
  }
}
