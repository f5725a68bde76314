import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@turnpike/core';

/**
 * How a limit counts:
 * - `fixed-window`: at most `limit` requests per `windowMs`, counted from a client's first
 *   request of the window (express-rate-limit's model; refused requests count too);
 * - `sliding-window`: the weighted two-window counter (the previous window's count, weighted
 *   by how much of it still overlaps the last `windowMs`, plus the current window's): a burst
 *   at a window edge cannot pass twice the limit; refused requests do not count;
 * - `token-bucket`: a bucket of `limit` tokens refilled at `refillPerSecond`; each request
 *   takes one, so bursts up to `limit` pass and the long-run rate is the refill rate.
 */
export type Algorithm = 'fixed-window' | 'sliding-window' | 'token-bucket';

/**
 * What a limit counts by:
 * - `'ip'`: the client address (see {@link LimitOptions.ipv6Subnet});
 * - `'subject'`: the authenticated subject (`req.auth.subject`), else the address;
 * - `'api-key'`: the API key the request authenticated with (`req.auth.keyId`), else the address;
 * - `{ header }`: a request header's value, else the address (only as trustworthy as whoever
 *   sets the header: the client, unless something in front of the limiter replaces it);
 * - a function returning the key (it may be async). One that throws, or returns anything but
 *   a non-empty string, is a 500 problem and a log line: never a bucket shared by everyone.
 */
export type KeySource =
  | 'ip'
  | 'subject'
  | 'api-key'
  | { readonly header: string }
  | ((req: IncomingMessage, res: ServerResponse) => string | Promise<string>);

/**
 * What a limit does when its Redis fails (an error, a timeout, a connection that is down):
 * - `'local'`: count in a memory store of this instance until Redis answers again (the limit
 *   then holds per instance, not across them);
 * - `'open'`: let the request through, uncounted;
 * - `'closed'`: answer 503 `limiter-unavailable` with `Retry-After`.
 */
export type StoreErrorMode = 'open' | 'closed' | 'local';

/** One limit. */
export interface LimitOptions {
  /**
   * The policy's name in the `RateLimit` headers, unique among the limits of one request.
   * Also part of the Redis key. Default: from the numbers, e.g. `"100-in-1min"`.
   */
  name?: string;
  /** Default `'fixed-window'`. */
  algorithm?: Algorithm;
  /**
   * Requests allowed per window (integer >= 1); a token bucket's capacity. A function of the
   * request (a plan from `req.auth`, it may be async) gives each value its own count. Required.
   */
  limit: number | ((req: IncomingMessage, res: ServerResponse) => number | Promise<number>);
  /** The window, in ms (integer >= 1). Default 60000. Not used by a token bucket. */
  windowMs?: number;
  /** Tokens added per second (> 0). Required for `token-bucket`, refused for the others. */
  refillPerSecond?: number;
  /** What the limit counts by. Default `'ip'`. */
  key?: KeySource;
  /** express-rate-limit's name for a key function: the same as `key: fn`. Not with `key`. */
  keyGenerator?: (req: IncomingMessage, res: ServerResponse) => string | Promise<string>;
  /** IPv6 addresses are counted per prefix of this length (1–128), or false for whole addresses. Default 56. */
  ipv6Subnet?: number | false;
  /** Requests for which this limit is not applied (it may be async). Default: none. */
  skip?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  /** What happens when Redis fails. Default: the limiter's `onStoreError` (`'local'`). */
  onStoreError?: StoreErrorMode;
}

/** Which `RateLimit` header fields to send: the IETF draft versions express-rate-limit knows, or none. */
export type StandardHeaders = 'draft-6' | 'draft-7' | 'draft-8' | false;

/** Where and how limits answer and count; shared by the limits of one middleware. */
export interface LimiterSettings {
  /** `RateLimit-Policy` and `RateLimit` headers on every response of a limited request, allowed or not. Default `'draft-8'`. */
  standardHeaders?: StandardHeaders;
  /** Also `X-RateLimit-Limit`, `-Remaining` and `-Reset` (of the most restrictive limit). Default false. */
  legacyHeaders?: boolean;
  /**
   * Redis, to count across instances: a `redis://` / `rediss://` URL (a connection of the
   * limiter's own, closed by `close()`), or an ioredis client (used as given, left open by
   * `close()`; give it `enableOfflineQueue: false` and a `commandTimeout`). Default: memory.
   */
  redis?: string | RedisLike;
  /** Prefix of every Redis key. Default `'turnpike:rl:'`. */
  prefix?: string;
  /** What a limit does when Redis fails, unless the limit says. Default `'local'`. */
  onStoreError?: StoreErrorMode;
  /** A Redis command that has not answered in this many ms has failed. Default 250. */
  timeoutMs?: number;
  /** After this many Redis failures in a row, Redis is left alone for `retryMs`, then tried again. Default 3. */
  failuresBeforePause?: number;
  /** How long Redis is left alone after failing, in ms. Default 1000. */
  retryMs?: number;
  /** Most keys one memory store keeps; past it the least recently seen go. Default 100000. */
  maxKeys?: number;
  /** Where store outages and failing key functions are logged. Default: silent. */
  logger?: Logger;
}

/** Options of {@link rateLimit}: one limit and the settings, or `limits` and the settings. */
export type RateLimitOptions =
  | (LimitOptions & LimiterSettings & { limits?: undefined })
  | (LimiterSettings & { limits: readonly LimitOptions[] });

/** What one limit said about a request (`req.rateLimit` holds the most restrictive). */
export interface RateLimitInfo {
  /** The limit's name, as in the headers. */
  readonly name: string;
  readonly limit: number;
  /** Requests counted in the window (for a token bucket, tokens taken and not yet refilled). */
  readonly used: number;
  readonly remaining: number;
  /** When the count resets (a token bucket: when it is full again; refused, when one token is back). */
  readonly resetTime: Date | undefined;
  /** The key the request was counted under. */
  readonly key: string;
  /** Whether this limit refused the request. */
  readonly refused: boolean;
}

/**
 * The part of an ioredis client the limiter uses (`Redis` and `Cluster` both fit): `status`,
 * `evalsha`/`eval` through `call`, and the connection events.
 */
export interface RedisLike {
  readonly status: string;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
  /** ioredis's, for a client made with `lazyConnect`. */
  connect?(): Promise<unknown>;
}
