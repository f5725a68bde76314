/** Express middleware: rate limits on express-rate-limit, in memory or counted across instances in Redis. */
export { rateLimit, composeLimits, nameLimits } from './middleware';
export type { RateLimitMiddleware, RateLimitDecision, DecisionListener } from './middleware';
/** One limit compiled once (the gateway composes them per route). */
export { Limit, defaultName, MAX_LIMIT_VALUES } from './limit';
export type { LimitContext } from './limit';
/** express-rate-limit Stores of the three algorithms, memory and Redis: usable with express-rate-limit directly. */
export {
  FixedWindowMemoryStore,
  SlidingWindowMemoryStore,
  TokenBucketMemoryStore,
  DEFAULT_MAX_KEYS,
} from './memory';
export type { MemoryStoreOptions, TokenBucketMemoryOptions } from './memory';
export {
  FixedWindowRedisStore,
  SlidingWindowRedisStore,
  TokenBucketRedisStore,
  RedisLink,
  runScript,
  DEFAULT_PREFIX,
} from './redis';
export type { RedisStoreOptions, TokenBucketRedisOptions, LinkOptions } from './redis';
/** Client keys: the address the router computed, IPv6 grouped by prefix. */
export { clientAddress, addressKey, compileKey } from './keys';
/** The pure decisions of the sliding window and the token bucket. */
export { slidingDecision, bucketDecision } from './algorithms';
export type { Decision } from './algorithms';
/** Options and their checks; the gateway validates its config with the same shapes. */
export {
  limitShape,
  limitCheck,
  settingsShape,
  parseRateLimitOptions,
  completeLimit,
  completeSettings,
  DEFAULT_SETTINGS,
} from './options';
export type { ParsedLimit, ParsedSettings, RateLimitParts } from './options';
export type {
  Algorithm,
  KeySource,
  LimitOptions,
  LimiterSettings,
  RateLimitInfo,
  RateLimitOptions,
  RedisLike,
  StandardHeaders,
  StoreErrorMode,
} from './types';
