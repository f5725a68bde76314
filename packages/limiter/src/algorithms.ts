/**
 * The decisions of the sliding window and the token bucket, as pure functions of the state:
 * the memory stores call them, and the Redis scripts (redis.ts) do the same arithmetic in Lua.
 */

/** One decision: allowed or not, the hits express-rate-limit compares with the limit, and when to come back. */
export interface Decision {
  readonly allowed: boolean;
  /** Never above the limit when allowed; above it when refused. */
  readonly hits: number;
  /** Allowed: until the count resets (the window ends; the bucket is full). Refused: until a request would pass. */
  readonly resetMs: number;
}

/**
 * The weighted two-window counter: allowed when previous × (share of the previous window
 * still inside the last `windowMs`) + current + 1 ≤ limit. `index` is floor(now / windowMs).
 */
export function slidingDecision(
  limit: number,
  windowMs: number,
  now: number,
  index: number,
  previous: number,
  current: number,
): Decision {
  const elapsed = now - index * windowMs;
  const estimate = (previous * (windowMs - elapsed)) / windowMs + current + 1;
  const toWindowEnd = (index + 1) * windowMs - now;
  if (estimate <= limit) return { allowed: true, hits: Math.ceil(estimate), resetMs: toWindowEnd };
  return {
    allowed: false,
    hits: Math.max(limit + 1, Math.ceil(estimate)),
    resetMs: Math.max(1, slidingWait(limit, windowMs, elapsed, toWindowEnd, previous, current)),
  };
}

/** How long until a request would pass, if nothing else is counted meanwhile. */
function slidingWait(
  limit: number,
  w: number,
  elapsed: number,
  toWindowEnd: number,
  previous: number,
  current: number,
): number {
  if (current + 1 <= limit && previous > 0) {
    // Within this window: previous × (w − e) / w ≤ limit − current − 1.
    const at = w * (1 - (limit - current - 1) / previous);
    if (at < w) return Math.ceil(at - elapsed);
  }
  // In the next window this window's count is the previous one: current × (w − e) / w + 1 ≤ limit.
  const at = current === 0 ? 0 : Math.max(0, w * (1 - (limit - 1) / current));
  return Math.ceil(toWindowEnd + at);
}

/**
 * The token bucket: `tokens` (as of `at`) refilled at `perMs` up to `capacity`; a request
 * takes one, or is refused and takes none. `hits` is the tokens in use.
 */
export function bucketDecision(
  capacity: number,
  perMs: number,
  now: number,
  tokens: number,
  at: number,
): { decision: Decision; tokens: number } {
  const available = Math.min(capacity, tokens + Math.max(0, now - at) * perMs);
  if (available >= 1) {
    const left = available - 1;
    return {
      tokens: left,
      decision: {
        allowed: true,
        hits: capacity - Math.floor(left),
        resetMs: Math.ceil((capacity - left) / perMs),
      },
    };
  }
  return {
    tokens: available,
    decision: {
      allowed: false,
      hits: capacity + 1,
      resetMs: Math.max(1, Math.ceil((1 - available) / perMs)),
    },
  };
}
