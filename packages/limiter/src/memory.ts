import {
  MemoryStore,
  type ClientRateLimitInfo,
  type Options,
  type Store,
} from 'express-rate-limit';
import { slidingDecision, bucketDecision, type Decision } from './algorithms';

/** Default bound on the keys of one memory store. */
export const DEFAULT_MAX_KEYS = 100_000;

/** Options of the memory stores. */
export interface MemoryStoreOptions {
  /** Most keys kept; past it the least recently seen go (their clients start afresh). Default 100000. */
  maxKeys?: number;
}

/** Options of {@link TokenBucketMemoryStore}. */
export interface TokenBucketMemoryOptions extends MemoryStoreOptions {
  /** Tokens added per second (> 0). Required. The capacity is express-rate-limit's `limit`. */
  refillPerSecond: number;
}

function positiveInteger(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new TypeError(`Turnpike limiter: ${what} must be an integer >= 1, got ${String(value)}`);
  }
  return value;
}

/** A number `limit` from express-rate-limit's options: the sliding window and the bucket decide with it. */
function staticLimit(options: Partial<Options>, store: string): number {
  const limit = options.limit;
  if (typeof limit !== 'number') {
    throw new TypeError(
      `Turnpike limiter: ${store} needs a number \`limit\` (it decides with it); for a limit ` +
        "per request use @turnpike/limiter's rateLimit(), which gives each value its own store",
    );
  }
  return positiveInteger(limit, `${store}: limit`);
}

/**
 * express-rate-limit's own MemoryStore (fixed window: a window per client from its first
 * request), bounded: past `maxKeys` the least recently seen client goes first. Its two maps
 * (clients seen in this window and in the last) expire whole windows at once; within one
 * window a flood of distinct keys would otherwise grow them without limit.
 */
export class FixedWindowMemoryStore extends MemoryStore {
  private readonly maxKeys: number;

  constructor(options: MemoryStoreOptions = {}) {
    super();
    this.maxKeys = positiveInteger(options.maxKeys ?? DEFAULT_MAX_KEYS, 'maxKeys');
  }

  override async increment(key: string): Promise<ClientRateLimitInfo> {
    const { current, previous } = this;
    const seen = current.get(key);
    if (seen !== undefined) {
      // To the back: the client seen last is the last to go.
      current.delete(key);
      current.set(key, seen);
    } else if (!previous.has(key) && current.size + previous.size >= this.maxKeys) {
      // Idle clients (last window's) go before active ones; Maps iterate oldest first.
      const from = previous.size !== 0 ? previous : current;
      const oldest = from.keys().next().value as string;
      from.delete(oldest);
    }
    return super.increment(key);
  }
}

/** A bounded map with least-recently-used order: `touch` moves a key to the back. */
class Lru<V> {
  readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: V): void {
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, value);
  }

  /** Drops entries from the front (least recently used) while `expired` says so. */
  sweep(expired: (v: V) => boolean): void {
    for (const [key, v] of this.map) {
      if (!expired(v)) return;
      this.map.delete(key);
    }
  }
}

/** What the sliding window and the bucket share: a bounded map, an unref'd sweep, the Store surface. */
abstract class DecidingMemoryStore<S extends { expires: number }> implements Store {
  /** Counts are this store's alone (express-rate-limit's double-count check). */
  readonly localKeys = true;
  protected entries: Lru<S>;
  private timer: NodeJS.Timeout | undefined;
  protected limit = 1;

  constructor(private readonly maxKeys: number) {
    this.entries = new Lru(maxKeys);
  }

  /** Called by express-rate-limit with its options. */
  init(options: Partial<Options>): void {
    this.limit = staticLimit(options, this.constructor.name);
    this.configure(options);
    if (this.timer !== undefined) clearInterval(this.timer);
    // Entries past their expiry are also dropped when read; the sweep frees the idle ones.
    this.timer = setInterval(
      () => {
        const now = Date.now();
        this.entries.sweep((s) => s.expires <= now);
      },
      Math.min(3_600_000, Math.max(1000, this.sweepMs())),
    );
    this.timer.unref();
  }

  protected abstract configure(options: Partial<Options>): void;
  protected abstract sweepMs(): number;
  protected abstract decide(state: S | undefined, now: number): { state: S; decision: Decision };

  get(key: string): ClientRateLimitInfo | undefined {
    const s = this.entries.map.get(key);
    if (s === undefined || s.expires <= Date.now()) return undefined;
    return this.peek(s);
  }

  protected abstract peek(state: S): ClientRateLimitInfo;

  /** Synchronous: express-rate-limit awaits a value as it awaits a promise. */
  increment(key: string): ClientRateLimitInfo {
    const now = Date.now();
    const found = this.entries.get(key);
    const { state, decision } = this.decide(
      found === undefined || found.expires <= now ? undefined : found,
      now,
    );
    if (found === undefined) this.entries.set(key, state);
    else if (state !== found) this.entries.map.set(key, state);
    return { totalHits: decision.hits, resetTime: new Date(now + decision.resetMs) };
  }

  decrement(key: string): void {
    const s = this.entries.map.get(key);
    if (s !== undefined) this.refund(s);
  }

  protected abstract refund(state: S): void;

  resetKey(key: string): void {
    this.entries.map.delete(key);
  }

  resetAll(): void {
    this.entries = new Lru(this.maxKeys);
  }

  /** Stops the sweep timer and forgets every count. */
  shutdown(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.entries = new Lru(this.maxKeys);
  }
}

interface SlidingState {
  /** The current window's index (floor(now / windowMs)). */
  window: number;
  current: number;
  previous: number;
  /** Refusals not given back yet: express-rate-limit's `decrement` (skipFailedRequests) takes these first. */
  refused: number;
  expires: number;
}

/**
 * The sliding window in memory: the weighted two-window counter. A request is allowed when
 * previous × (the share of the previous window still inside the last `windowMs`) + current + 1
 * ≤ limit, and then counted; a refused request is not counted. `totalHits` is that estimate
 * rounded up, so express-rate-limit refuses exactly when it passes the limit.
 */
export class SlidingWindowMemoryStore extends DecidingMemoryStore<SlidingState> {
  private windowMs = 60_000;

  constructor(options: MemoryStoreOptions = {}) {
    super(positiveInteger(options.maxKeys ?? DEFAULT_MAX_KEYS, 'maxKeys'));
  }

  protected configure(options: Partial<Options>): void {
    this.windowMs = positiveInteger(options.windowMs ?? 60_000, 'windowMs');
  }

  protected sweepMs(): number {
    return this.windowMs;
  }

  protected decide(s: SlidingState | undefined, now: number) {
    const w = this.windowMs;
    const index = Math.floor(now / w);
    let current = 0;
    let previous = 0;
    if (s !== undefined) {
      if (s.window === index) {
        current = s.current;
        previous = s.previous;
      } else if (s.window === index - 1) previous = s.current;
    }
    const decision = slidingDecision(this.limit, w, now, index, previous, current);
    if (decision.allowed) current++;
    const state =
      s ?? ({ window: index, current, previous, refused: 0, expires: 0 } satisfies SlidingState);
    if (!decision.allowed) state.refused++;
    state.window = index;
    state.current = current;
    state.previous = previous;
    state.expires = (index + 2) * w;
    return { state, decision };
  }

  protected peek(s: SlidingState): ClientRateLimitInfo {
    const now = Date.now();
    const index = Math.floor(now / this.windowMs);
    const previous = s.window === index ? s.previous : s.window === index - 1 ? s.current : 0;
    const current = s.window === index ? s.current : 0;
    const weight = (this.windowMs - (now - index * this.windowMs)) / this.windowMs;
    return {
      totalHits: Math.ceil(previous * weight + current),
      resetTime: new Date((index + 1) * this.windowMs),
    };
  }

  protected refund(s: SlidingState): void {
    // A refusal counted nothing: giving it back gives nothing back.
    if (s.refused > 0) s.refused--;
    else if (s.current > 0) s.current--;
  }
}

interface BucketState {
  tokens: number;
  /** Refusals not given back yet (see SlidingState). */
  refused: number;
  /** When `tokens` was computed (epoch ms). */
  at: number;
  expires: number;
}

/**
 * The token bucket in memory: `limit` tokens (express-rate-limit's `limit` is the capacity),
 * refilled at `refillPerSecond`. A request takes one token; with none left it is refused and
 * takes nothing. `totalHits` is the tokens in use, so remaining is the tokens left; the reset
 * time is when the bucket is full again, or for a refusal when the next token is back.
 */
export class TokenBucketMemoryStore extends DecidingMemoryStore<BucketState> {
  private readonly perMs: number;

  constructor(options: TokenBucketMemoryOptions) {
    super(positiveInteger(options?.maxKeys ?? DEFAULT_MAX_KEYS, 'maxKeys'));
    const rate = options?.refillPerSecond;
    if (typeof rate !== 'number' || !Number.isFinite(rate) || rate <= 0) {
      throw new TypeError(
        `Turnpike limiter: TokenBucketMemoryStore needs refillPerSecond > 0, got ${String(rate)}`,
      );
    }
    this.perMs = rate / 1000;
  }

  protected configure(): void {}

  protected sweepMs(): number {
    return Math.max(1000, Math.ceil(this.limit / this.perMs));
  }

  protected decide(s: BucketState | undefined, now: number) {
    const before = s === undefined ? this.limit : s.tokens;
    const at = s === undefined ? now : s.at;
    const { decision, tokens } = bucketDecision(this.limit, this.perMs, now, before, at);
    const state = s ?? ({ tokens, at: now, refused: 0, expires: 0 } satisfies BucketState);
    if (!decision.allowed) state.refused++;
    state.tokens = tokens;
    state.at = now;
    state.expires = now + Math.ceil((this.limit - tokens) / this.perMs);
    return { state, decision };
  }

  protected peek(s: BucketState): ClientRateLimitInfo {
    const now = Date.now();
    const tokens = Math.min(this.limit, s.tokens + (now - s.at) * this.perMs);
    return {
      totalHits: this.limit - Math.floor(tokens),
      resetTime: new Date(now + Math.ceil((this.limit - tokens) / this.perMs)),
    };
  }

  protected refund(s: BucketState): void {
    if (s.refused > 0) s.refused--;
    else s.tokens = Math.min(this.limit, s.tokens + 1);
  }
}
