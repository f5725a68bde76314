import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { ClientRateLimitInfo, Options, Store } from 'express-rate-limit';
import type { Logger } from '@turnpike/core';
import type { RedisLike } from './types';

/** Default prefix of every key. */
export const DEFAULT_PREFIX = 'turnpike:rl:';

const sha1 = (text: string): string => createHash('sha1').update(text).digest('hex');

const isNoScript = (err: unknown): boolean =>
  err instanceof Error && /^NOSCRIPT(?:\s|$)/.test(err.message);

/**
 * Runs a Lua script in one round trip: `EVALSHA` of its SHA1 (computed here, so nothing is
 * loaded ahead and nothing can be stale after a restart), and on `NOSCRIPT` (Redis restarted,
 * `SCRIPT FLUSH`) `EVAL` of its text, which also caches it again.
 */
export async function runScript(
  client: RedisLike,
  script: Script,
  key: string,
  ...args: (string | number)[]
): Promise<unknown> {
  try {
    return await client.call('EVALSHA', script.sha, 1, key, ...args);
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return client.call('EVAL', script.text, 1, key, ...args);
  }
}

/** A Lua script and its SHA1. */
export interface Script {
  readonly text: string;
  readonly sha: string;
}

function script(text: string): Script {
  const t = text.replace(/^\s+/gm, '').trim();
  return { text: t, sha: sha1(t) };
}

/** Redis's own clock, in ms: every instance counts on the same one. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * The sliding window (algorithms.ts slidingDecision, in Lua): one hash per key, { w, c, p, r }
 * (r: refusals not given back, for express-rate-limit's decrement).
 */
export const SLIDING = script(`
  local limit = tonumber(ARGV[1])
  local w = tonumber(ARGV[2])
  ${NOW}
  local index = math.floor(now / w)
  local s = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
  local sw = tonumber(s[1])
  local c = 0
  local p = 0
  if sw == index then
    c = tonumber(s[2]) or 0
    p = tonumber(s[3]) or 0
  elseif sw == index - 1 then
    p = tonumber(s[2]) or 0
  end
  local elapsed = now - index * w
  local estimate = p * (w - elapsed) / w + c + 1
  local toEnd = (index + 1) * w - now
  if estimate <= limit then
    c = c + 1
    redis.call('HSET', KEYS[1], 'w', index, 'c', c, 'p', p)
    redis.call('PEXPIRE', KEYS[1], toEnd + w)
    return { 1, math.ceil(estimate), toEnd }
  end
  local wait = -1
  if c + 1 <= limit and p > 0 then
    local at = w * (1 - (limit - c - 1) / p)
    if at < w then wait = math.ceil(at - elapsed) end
  end
  if wait < 0 then
    local at = 0
    if c > 0 then at = math.max(0, w * (1 - (limit - 1) / c)) end
    wait = math.ceil(toEnd + at)
  end
  if wait < 1 then wait = 1 end
  redis.call('HINCRBY', KEYS[1], 'r', 1)
  return { 0, math.max(limit + 1, math.ceil(estimate)), wait }
`);

/** Gives one request back (express-rate-limit's decrement): a refusal first, else one count. */
export const SLIDING_BACK = script(`
  local s = redis.call('HMGET', KEYS[1], 'r', 'c')
  if (tonumber(s[1]) or 0) > 0 then
    redis.call('HINCRBY', KEYS[1], 'r', -1)
  elseif (tonumber(s[2]) or 0) > 0 then
    redis.call('HINCRBY', KEYS[1], 'c', -1)
  end
  return 0
`);

/** The token bucket (algorithms.ts bucketDecision, in Lua): one hash per key, { t, at, r }. */
export const BUCKET = script(`
  local capacity = tonumber(ARGV[1])
  local perMs = tonumber(ARGV[2])
  ${NOW}
  local s = redis.call('HMGET', KEYS[1], 't', 'at')
  local tokens = tonumber(s[1])
  local at = tonumber(s[2])
  if tokens == nil or at == nil then
    tokens = capacity
    at = now
  end
  local available = math.min(capacity, tokens + math.max(0, now - at) * perMs)
  if available >= 1 then
    local left = available - 1
    local full = math.ceil((capacity - left) / perMs)
    redis.call('HSET', KEYS[1], 't', tostring(left), 'at', now)
    redis.call('PEXPIRE', KEYS[1], full + 1000)
    return { 1, capacity - math.floor(left), full }
  end
  local full = math.ceil((capacity - available) / perMs)
  redis.call('HSET', KEYS[1], 't', tostring(available), 'at', now)
  redis.call('PEXPIRE', KEYS[1], full + 1000)
  local wait = math.ceil((1 - available) / perMs)
  if wait < 1 then wait = 1 end
  redis.call('HINCRBY', KEYS[1], 'r', 1)
  return { 0, capacity + 1, wait }
`);

/** Gives one request back: a refusal first, else its token (up to the capacity). */
export const BUCKET_BACK = script(`
  local s = redis.call('HMGET', KEYS[1], 'r', 't')
  if (tonumber(s[1]) or 0) > 0 then
    redis.call('HINCRBY', KEYS[1], 'r', -1)
  elseif s[2] then
    local t = math.min(tonumber(ARGV[1]), tonumber(s[2]) + 1)
    redis.call('HSET', KEYS[1], 't', tostring(t))
  end
  return 0
`);

/** Options of the Redis stores. */
export interface RedisStoreOptions {
  /** An ioredis client (`Redis` or `Cluster`), used as given. Required. */
  client: RedisLike;
  /**
   * Prefix of the keys. Each key is `prefix{key}`: the client's key is the hash tag, so
   * everything one script touches is in one Cluster slot. Default `'turnpike:rl:'`.
   */
  prefix?: string;
}

/** Options of {@link TokenBucketRedisStore}. */
export interface TokenBucketRedisOptions extends RedisStoreOptions {
  /** Tokens added per second (> 0). Required. The capacity is express-rate-limit's `limit`. */
  refillPerSecond: number;
}

function clientOf(options: RedisStoreOptions | undefined, store: string): RedisLike {
  const client = options?.client;
  if (typeof (client as { call?: unknown } | undefined)?.call !== 'function') {
    throw new TypeError(`Turnpike limiter: ${store} needs { client }: an ioredis client`);
  }
  return client!;
}

/** A script's reply as express-rate-limit's increment result. */
function infoOf(reply: unknown): ClientRateLimitInfo {
  if (!Array.isArray(reply) || reply.length !== 3) {
    throw new TypeError('Turnpike limiter: unexpected reply from the Redis script');
  }
  return { totalHits: Number(reply[1]), resetTime: new Date(Date.now() + Number(reply[2])) };
}

/**
 * The fixed window in Redis: rate-limit-redis's store (its script: SET PX on a client's first
 * request, INCR after), with the script run by {@link runScript}. rate-limit-redis loads its
 * scripts with `SCRIPT LOAD` at start-up and keeps the promise: with Redis away at start, that
 * promise stays rejected and the store never recovers. Here `SCRIPT LOAD` is answered locally
 * (the SHA1 of the text), and `EVALSHA` falls back to `EVAL` on `NOSCRIPT`, in one round trip.
 */
export class FixedWindowRedisStore extends RedisStore {
  constructor(options: RedisStoreOptions) {
    const client = clientOf(options, 'FixedWindowRedisStore');
    const scripts = new Map<string, Script>();
    super({
      prefix: options.prefix ?? DEFAULT_PREFIX,
      sendCommand: async (...command: string[]): Promise<RedisReply> => {
        const [name, a, , key, ...args] = command;
        if (name === 'SCRIPT' && a === 'LOAD') {
          // The SHA1 of the text is what Redis would answer: nothing is sent.
          const text = command[2]!;
          const known: Script = { text, sha: sha1(text) };
          scripts.set(known.sha, known);
          return known.sha;
        }
        if (name === 'EVALSHA') {
          const known = scripts.get(a!);
          if (known !== undefined)
            return (await runScript(client, known, key!, ...args)) as RedisReply;
        }
        return (await client.call(name!, ...command.slice(1))) as RedisReply;
      },
    });
  }

  /** `prefix{key}`: the key is the Cluster hash tag. */
  override prefixKey(key: string): string {
    return `${this.prefix}{${key}}`;
  }
}

/** What the sliding window and the bucket share in Redis. */
abstract class ScriptStore implements Store {
  readonly prefix: string;
  protected readonly client: RedisLike;
  protected limit = 1;

  constructor(options: RedisStoreOptions, name: string) {
    this.client = clientOf(options, name);
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
  }

  init(options: Partial<Options>): void {
    if (
      typeof options.limit !== 'number' ||
      !Number.isInteger(options.limit) ||
      options.limit < 1
    ) {
      throw new TypeError(
        `Turnpike limiter: ${this.constructor.name} needs a number \`limit\` >= 1 (it decides with it)`,
      );
    }
    this.limit = options.limit;
    this.configure(options);
  }

  protected configure(_options: Partial<Options>): void {}

  protected keyOf(key: string): string {
    return `${this.prefix}{${key}}`;
  }

  abstract increment(key: string): Promise<ClientRateLimitInfo>;

  /** express-rate-limit's skipFailedRequests / skipSuccessfulRequests: one request given back. */
  abstract decrement(key: string): Promise<void>;

  async resetKey(key: string): Promise<void> {
    await this.client.call('DEL', this.keyOf(key));
  }
}

/** The sliding window in Redis: {@link SLIDING}, one `EVALSHA` per request. */
export class SlidingWindowRedisStore extends ScriptStore {
  private windowMs = 60_000;

  constructor(options: RedisStoreOptions) {
    super(options, 'SlidingWindowRedisStore');
  }

  protected override configure(options: Partial<Options>): void {
    this.windowMs = options.windowMs ?? 60_000;
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    return infoOf(
      await runScript(this.client, SLIDING, this.keyOf(key), this.limit, this.windowMs),
    );
  }

  async decrement(key: string): Promise<void> {
    await runScript(this.client, SLIDING_BACK, this.keyOf(key));
  }
}

/** The token bucket in Redis: {@link BUCKET}, one `EVALSHA` per request. */
export class TokenBucketRedisStore extends ScriptStore {
  private readonly perMs: string;

  constructor(options: TokenBucketRedisOptions) {
    super(options, 'TokenBucketRedisStore');
    const rate = options.refillPerSecond;
    if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) {
      throw new TypeError(
        `Turnpike limiter: TokenBucketRedisStore needs refillPerSecond > 0, got ${String(rate)}`,
      );
    }
    this.perMs = String(rate / 1000);
  }

  async increment(key: string): Promise<ClientRateLimitInfo> {
    return infoOf(await runScript(this.client, BUCKET, this.keyOf(key), this.limit, this.perMs));
  }

  async decrement(key: string): Promise<void> {
    await runScript(this.client, BUCKET_BACK, this.keyOf(key), this.limit);
  }
}

/** No answer within the limiter's `timeoutMs` (a client given by the user). */
class CommandTimeout extends Error {
  override readonly name = 'CommandTimeout';
  constructor() {
    super('Command timed out');
  }
}

const isTimeout = (err: unknown): boolean =>
  err instanceof CommandTimeout || (err instanceof Error && err.message === 'Command timed out');

/**
 * An error reply about the key or the script, not about Redis: the key holds another type
 * (a limit renamed across algorithms), the script failed. Redis-wide conditions (LOADING,
 * BUSY, OOM, READONLY, MASTERDOWN, CLUSTERDOWN …) are outages.
 */
const isKeyError = (err: unknown): boolean =>
  err instanceof Error &&
  err.name === 'ReplyError' &&
  /^(?:WRONGTYPE|ERR)\b/.test(err.message) &&
  !/\bERR max number of clients\b/.test(err.message);

/** Options of a {@link RedisLink}. */
export interface LinkOptions {
  readonly timeoutMs: number;
  readonly failuresBeforePause: number;
  readonly retryMs: number;
  readonly logger: Logger;
}

/**
 * One Redis connection of a limiter, and what it knows of its health. A URL gets a connection
 * of its own that fails fast while Redis is away (no offline queue, a command timeout) and
 * reconnects for ever; a client given is used as it is and left open. The stores ask
 * {@link usable} before each command: not while the connection is down, nor for `retryMs` after
 * `failuresBeforePause` failures in a row (then one request tries it again). One warning when
 * an outage starts, one line when it ends: never a line per request.
 */
export class RedisLink {
  readonly client: RedisLike;
  /** Whether the link opened the connection (with its own command timeout) or was given it. */
  readonly own: boolean;
  /** The limits whose key or script error (e.g. WRONGTYPE) was logged already. */
  private readonly keyErrors = new Set<string>();
  private failures = 0;
  private pausedUntil = 0;
  private probing = false;
  private down = false;
  private closed = false;
  private readonly onError = (err: unknown): void => this.outage(err);
  /**
   * Until the connection is first ready (or fails, or `timeoutMs` passes): the first requests
   * wait for it rather than count locally (or be refused) for the few ms a connection takes.
   */
  starting: Promise<void> | undefined;
  private readonly onReady = (): void => this.succeeded();

  constructor(
    redis: string | RedisLike,
    private readonly options: LinkOptions,
  ) {
    this.own = typeof redis === 'string';
    this.client =
      typeof redis === 'string'
        ? new Redis(redis, {
            enableOfflineQueue: false,
            commandTimeout: options.timeoutMs,
            maxRetriesPerRequest: 0,
            autoResendUnfulfilledCommands: false,
            connectTimeout: 2000,
            // close() on a connection already lost still arms ioredis's timer for a socket that
            // does not close (2 s by default): keep it to the command timeout.
            disconnectTimeout: options.timeoutMs,
            retryStrategy: (times: number) => Math.min(100 * times, 2000),
          })
        : redis;
    this.client.on('error', this.onError);
    this.client.on('ready', this.onReady);
    // A client made with lazyConnect connects on its first command: never sent while it is not ready.
    if (this.client.status === 'wait') this.client.connect?.().catch(() => undefined);
    if (this.client.status !== 'ready') {
      this.starting = new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.client.off('ready', done);
          this.client.off('error', done);
          this.client.off('end', done);
          this.starting = undefined;
          resolve();
        };
        const timer = setTimeout(done, options.timeoutMs);
        timer.unref();
        this.client.on('ready', done);
        this.client.on('error', done);
        this.client.on('end', done);
      });
    }
  }

  /** Whether a command may be sent now (see the class). */
  usable(): boolean {
    if (this.client.status !== 'ready') {
      if (!this.down && !this.closed) this.outage(new Error(`connection ${this.client.status}`));
      return false;
    }
    if (this.pausedUntil === 0) return true;
    if (this.probing || Date.now() < this.pausedUntil) return false;
    this.probing = true;
    return true;
  }

  /** A command answered. */
  succeeded(): void {
    this.failures = 0;
    this.pausedUntil = 0;
    this.probing = false;
    if (this.down) {
      this.down = false;
      this.options.logger.info('rate limiter: Redis is back; counts are shared again');
    }
  }

  /**
   * Runs one command of a store: as it is on the link's own connection (which times out by
   * itself), raced against `timeoutMs` on a client that was given (whose settings are not ours).
   */
  run<T>(command: () => Promise<T>): Promise<T> {
    if (this.own) return command();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new CommandTimeout()), this.options.timeoutMs);
      command().then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /**
   * A command failed. A timeout pauses Redis at once (a hung Redis would cost every request
   * the timeout); a lost connection after `failuresBeforePause` in a row. An error about one
   * key or script (WRONGTYPE, a script error) is not an outage: it returns false, is logged
   * once per limit, and the request follows its limit's onStoreError.
   */
  failed(err: unknown, limit: string): void {
    this.probing = false;
    if (isKeyError(err)) {
      const message = err instanceof Error ? err.message : String(err);
      if (!this.keyErrors.has(limit)) {
        this.keyErrors.add(limit);
        this.options.logger.error("rate limiter: Redis refused a limit's command", {
          limit,
          error: message,
        });
      }
      return;
    }
    if (isTimeout(err) || ++this.failures >= this.options.failuresBeforePause) {
      this.pausedUntil = Date.now() + this.options.retryMs;
    }
    this.outage(err);
  }

  private outage(err: unknown): void {
    if (this.down || this.closed) return;
    this.down = true;
    this.options.logger.warn(
      'rate limiter: Redis unavailable; each limit follows its onStoreError until it answers',
      { error: err instanceof Error ? err.message : String(err) },
    );
  }

  /** Stops listening; closes the connection when it opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.off('error', this.onError);
    this.client.off('ready', this.onReady);
    if (!this.own) return;
    // A polite QUIT when connected; at once when not (QUIT would wait for a reconnect).
    if (this.client.status === 'ready') {
      this.client.on('error', () => {});
      try {
        await this.client.quit();
        return;
      } catch {
        // fall through
      }
    }
    this.client.disconnect();
  }
}
