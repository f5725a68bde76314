import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, GatewayError, sendProblem, silentLogger, type Logger } from '@turnpike/core';
import { KEY, Limit, PASS, REFUSED, UNAVAILABLE, defaultName, type Counter } from './limit';
import { MAX_LIMIT, parseOptions, type ParsedLimit, type ParsedSettings } from './options';
import { RedisLink } from './redis';
import type { RateLimitInfo, RateLimitOptions, StandardHeaders } from './types';

type Next = (err?: unknown) => void;

/** Express middleware that rate limits; `close()` stops its timers and closes the Redis connection it opened. */
export interface RateLimitMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  /** The limits, in the order they count. */
  readonly limits: readonly { readonly name: string }[];
  close(): Promise<void>;
}

/** express-rate-limit's `req.rateLimit`, with the limit's name and whether it refused. */
type Info = {
  limit: number;
  used: number;
  remaining: number;
  resetTime: Date | undefined;
  key: string;
  name?: string;
  refused?: boolean;
};

type Limited = IncomingMessage & { rateLimit?: Info; [KEY]?: string };

const RATE_LIMITED = new GatewayError('ERR_TURNPIKE_RATE_LIMITED');
const KEY_FAILED = new GatewayError('ERR_TURNPIKE_INTERNAL', {
  detail: 'The gateway could not apply its rate limit to the request.',
});

/** Seconds until `at`, rounded up, at least `min`. */
function secondsUntil(at: Date | undefined, now: number, min: number): number {
  if (at === undefined) return min;
  return Math.max(min, Math.ceil((at.getTime() - now) / 1000));
}

/** The most restrictive of the counted limits: a refusal with the latest reset, else the fewest remaining. */
function worstOf(infos: readonly (Info | undefined)[]): Info | undefined {
  let worst: Info | undefined;
  for (const info of infos) {
    if (info === undefined) continue;
    if (worst === undefined) worst = info;
    else if (info.refused !== worst.refused) {
      if (info.refused) worst = info;
    } else if (info.refused) {
      if ((info.resetTime?.getTime() ?? 0) > (worst.resetTime?.getTime() ?? 0)) worst = info;
    } else if (info.remaining < worst.remaining) worst = info;
  }
  return worst;
}

/** What the chain writes, compiled once for its limits. */
interface HeaderPlan {
  readonly standard: StandardHeaders;
  readonly legacy: boolean;
  /** The draft-8 `RateLimit-Policy` when every limit is a number, else undefined (built per request). */
  readonly policy: string | undefined;
}

function writeHeaders(
  res: ServerResponse,
  plan: HeaderPlan,
  limits: readonly Limit[],
  infos: readonly (Info | undefined)[],
  worst: Info,
  windows: readonly number[],
  now: number,
): void {
  const standard = plan.standard;
  if (standard === 'draft-8') {
    // The policy built at start-up names every limit: only when none was skipped.
    let fixedPolicy = plan.policy;
    for (let i = 0; fixedPolicy !== undefined && i < infos.length; i++) {
      if (infos[i] === undefined) fixedPolicy = undefined;
    }
    let policy = '';
    let state = '';
    for (let i = 0; i < infos.length; i++) {
      const info = infos[i];
      if (info === undefined) continue;
      const name = limits[i]!.name;
      const sep = state === '' ? '' : ', ';
      state += `${sep}"${name}"; r=${info.remaining}; t=${secondsUntil(info.resetTime, now, 0)}`;
      if (fixedPolicy === undefined) {
        policy += `${sep}"${name}"; q=${info.limit}; w=${windows[i]}`;
      }
    }
    // A limiter before this one (another rateLimit() on the app) wrote its policies: the
    // draft's lists name them all.
    const before = res.getHeader('RateLimit');
    if (typeof before === 'string' && before !== '' && state !== '') {
      res.setHeader(
        'RateLimit-Policy',
        `${String(res.getHeader('RateLimit-Policy'))}, ${fixedPolicy ?? policy}`,
      );
      res.setHeader('RateLimit', `${before}, ${state}`);
    } else {
      res.setHeader('RateLimit-Policy', fixedPolicy ?? policy);
      res.setHeader('RateLimit', state);
    }
  } else if (standard !== false) {
    const i = infos.indexOf(worst);
    const w = windows[i];
    const reset = secondsUntil(worst.resetTime, now, 0);
    res.setHeader('RateLimit-Policy', `${worst.limit};w=${w}`);
    if (standard === 'draft-7') {
      res.setHeader(
        'RateLimit',
        `limit=${worst.limit}, remaining=${worst.remaining}, reset=${reset}`,
      );
    } else {
      res.setHeader('RateLimit-Limit', String(worst.limit));
      res.setHeader('RateLimit-Remaining', String(worst.remaining));
      res.setHeader('RateLimit-Reset', String(reset));
    }
  }
  if (plan.legacy) {
    res.setHeader('X-RateLimit-Limit', String(worst.limit));
    res.setHeader('X-RateLimit-Remaining', String(worst.remaining));
    if (worst.resetTime !== undefined) {
      res.setHeader('X-RateLimit-Reset', String(Math.ceil(worst.resetTime.getTime() / 1000)));
    }
  }
}

/**
 * One request through the limits, in two passes. First every limit is prepared: its skip
 * asked, its key and (for a limit function) its value computed; a failure there is a 500 and
 * nothing is charged. Then each limit not skipped counts the request once, and the most
 * restrictive decision answers: a 429 with `Retry-After`, or the next handler; the headers
 * name every limit that counted.
 */
class Run {
  private readonly infos: (Info | undefined)[];
  private readonly windows: number[];
  /** Per limit: the key (undefined: skipped) and the counter, from the first pass. */
  private readonly keys: (string | undefined)[];
  private readonly counters: (Counter | undefined)[];
  private at = 0;
  private counting = false;
  private done = false;

  constructor(
    private readonly chain: Chain,
    private readonly req: Limited,
    private readonly res: ServerResponse,
    private readonly next: Next,
  ) {
    const n = chain.limits.length;
    this.infos = new Array<Info | undefined>(n);
    this.windows = new Array<number>(n);
    this.keys = new Array<string | undefined>(n);
    this.counters = new Array<Counter | undefined>(n);
  }

  step(): void {
    if (this.counting) return this.countNext();
    const limits = this.chain.limits;
    while (this.at < limits.length) {
      const limit = limits[this.at]!;
      if (limit.skip !== undefined) {
        let skipped: unknown;
        try {
          skipped = limit.skip(this.req, this.res);
        } catch (err) {
          return this.fail(err, limit);
        }
        if (typeof (skipped as PromiseLike<boolean>)?.then === 'function') {
          const at = this.at;
          (skipped as PromiseLike<boolean>).then(
            (s) => (s ? this.skipped(at) : this.prepare(at)),
            (err: unknown) => this.fail(err, limit),
          );
          return;
        }
        if (skipped) {
          this.at++;
          continue;
        }
      }
      return this.prepare(this.at);
    }
    this.counting = true;
    this.at = 0;
    this.countNext();
  }

  private skipped(at: number): void {
    if (this.done || at !== this.at) return;
    this.at++;
    this.step();
  }

  /** The key of limit `at`, then its counter. */
  private prepare(at: number): void {
    if (this.done || at !== this.at) return;
    const limit = this.chain.limits[at]!;
    let key: string | Promise<string>;
    try {
      key = limit.key(this.req, this.res);
    } catch (err) {
      return this.fail(err, limit);
    }
    if (typeof key === 'string') return this.keyed(at, key);
    key.then(
      (k) => this.keyed(at, k),
      (err: unknown) => this.fail(err, limit),
    );
  }

  private keyed(at: number, key: string): void {
    if (this.done || at !== this.at) return;
    this.keys[at] = key;
    const limit = this.chain.limits[at]!;
    const fixed = limit.fixed;
    if (fixed !== undefined) return this.ready(at, fixed);
    let value: unknown;
    try {
      value = (limit.spec.limit as Exclude<ParsedLimit['limit'], number>)(this.req, this.res);
    } catch (err) {
      return this.fail(err, limit);
    }
    if (typeof (value as PromiseLike<number>)?.then === 'function') {
      (value as PromiseLike<number>).then(
        (v) => this.valued(at, v),
        (err: unknown) => this.fail(err, limit),
      );
    } else this.valued(at, value);
  }

  private valued(at: number, value: unknown): void {
    if (this.done || at !== this.at) return;
    const limit = this.chain.limits[at]!;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
      return this.fail(
        new Error(
          `the limit function returned ${String(value)}, not an integer from 1 to ${MAX_LIMIT}`,
        ),
        limit,
      );
    }
    this.ready(at, limit.counterFor(value));
  }

  private ready(at: number, counter: Counter): void {
    this.counters[at] = counter;
    this.at++;
    this.step();
  }

  /** The second pass: the next limit that was not skipped counts the request. */
  private countNext(): void {
    const n = this.chain.limits.length;
    while (this.at < n && this.keys[this.at] === undefined) this.at++;
    if (this.at === n) return this.finish();
    const at = this.at;
    const counter = this.counters[at]!;
    this.windows[at] = counter.windowSeconds;
    this.req.rateLimit = undefined;
    this.req[KEY] = this.keys[at];
    counter.middleware(this.req, this.res, (err) => this.counted(at, err));
  }

  /** express-rate-limit's verdict for limit `at`: counted (allowed or REFUSED), passed, or failed. */
  private counted(at: number, err: unknown): void {
    if (this.done || at !== this.at) return;
    const limit = this.chain.limits[at]!;
    if (err === undefined || err === REFUSED) {
      const info = this.req.rateLimit;
      if (info !== undefined) {
        info.name = limit.name;
        info.refused = err === REFUSED;
        this.infos[at] = info;
      }
    } else if (err === UNAVAILABLE) {
      this.done = true;
      this.chain.decided?.(this.req, 'unavailable');
      return sendProblem(this.req, this.res, this.chain.unavailable);
    } else if (err !== PASS) {
      return this.fail(err, limit);
    }
    this.at++;
    this.step();
  }

  private fail(err: unknown, limit: Limit): void {
    if (this.done) return;
    this.done = true;
    this.chain.logger.error('rate limit failed: the request is answered 500', {
      limit: limit.name,
      error: err instanceof Error ? err.message : String(err),
    });
    this.chain.decided?.(this.req, 'error');
    sendProblem(this.req, this.res, KEY_FAILED);
  }

  private finish(): void {
    this.done = true;
    const worst = worstOf(this.infos);
    this.req.rateLimit = worst;
    const decided = this.chain.decided;
    if (worst === undefined) {
      decided?.(this.req, 'skipped');
      return this.next();
    }
    const now = Date.now();
    writeHeaders(
      this.res,
      this.chain.plan,
      this.chain.limits,
      this.infos,
      worst,
      this.windows,
      now,
    );
    if (!worst.refused) {
      decided?.(this.req, 'allowed');
      return this.next();
    }
    decided?.(this.req, 'limited');
    this.res.setHeader('Retry-After', String(secondsUntil(worst.resetTime, now, 1)));
    sendProblem(this.req, this.res, RATE_LIMITED);
  }
}

/** Limits composed into one middleware, with what they answer. */
export interface Chain {
  readonly limits: readonly Limit[];
  readonly plan: HeaderPlan;
  readonly logger: Logger;
  readonly unavailable: GatewayError;
  /** Hears each request's decision (metrics), when set. */
  readonly decided: DecisionListener | undefined;
}

/**
 * How a chain of limits decided on one request: `allowed`, `limited` (429), `skipped` (every
 * limit's `skip` let it through uncounted), `unavailable` (503: the store is down and
 * `onStoreError` is 'deny'), `error` (500: a key or limit function failed).
 */
export type RateLimitDecision = 'allowed' | 'limited' | 'skipped' | 'unavailable' | 'error';

/** Hears a chain's decisions; it must not throw. */
export type DecisionListener = (req: IncomingMessage, decision: RateLimitDecision) => void;

/**
 * Composes limits (built once, perhaps shared by several chains: a gateway-wide limit counts
 * across routes) into one middleware. Names must differ within a chain.
 */
export function composeLimits(
  limits: readonly Limit[],
  settings: Pick<ParsedSettings, 'standardHeaders' | 'legacyHeaders' | 'retryMs' | 'logger'>,
  decided?: DecisionListener,
): (req: IncomingMessage, res: ServerResponse, next: Next) => void {
  const policy = limits.every((l) => l.fixed !== undefined)
    ? limits.map((l) => l.fixed!.policy).join(', ')
    : undefined;
  const chain: Chain = {
    limits,
    plan: { standard: settings.standardHeaders, legacy: settings.legacyHeaders, policy },
    logger: settings.logger ?? silentLogger,
    unavailable: new GatewayError('ERR_TURNPIKE_LIMITER_UNAVAILABLE', {
      headers: { 'retry-after': String(Math.max(1, Math.ceil(settings.retryMs / 1000))) },
    }),
    decided,
  };
  return function turnpikeRateLimit(req, res, next) {
    new Run(chain, req, res, next).step();
  };
}

/**
 * Names for limits: each its own or its default; a default that repeats gets `-2`, `-3`…; a
 * name given twice is refused (`pathOf(i)` names the field).
 */
export function nameLimits(
  specs: readonly ParsedLimit[],
  pathOf: (i: number) => string,
  taken: Set<string> = new Set(),
): string[] {
  return specs.map((spec, i) => {
    let name = spec.name ?? defaultName(spec);
    if (spec.name === undefined) {
      for (let n = 2; taken.has(name); n++) name = `${defaultName(spec)}-${n}`;
    } else if (taken.has(name)) {
      throw new ConfigError(
        `${pathOf(i)}.name`,
        'a name no other limit of the request has (the RateLimit headers tell them apart by it)',
        name,
      );
    }
    taken.add(name);
    return name;
  });
}

/**
 * Rate limiting as Express middleware, on express-rate-limit: one limit, or several
 * (`limits`), each counted once per request; the most restrictive decision answers (429
 * problem with `Retry-After`), and `RateLimit-Policy` / `RateLimit` (IETF draft 8) name every
 * limit on every response. Memory by default; `redis` counts across instances. Sets
 * `req.rateLimit` (the most restrictive limit's {@link RateLimitInfo}). Throws a ConfigError
 * naming the field for options that cannot work.
 */
export function rateLimit(options: RateLimitOptions): RateLimitMiddleware {
  const { limits: specs, settings } = parseOptions(options);
  const names = nameLimits(specs, (i) =>
    options.limits === undefined ? '(root)' : `limits[${i}]`,
  );
  const link =
    settings.redis === undefined
      ? undefined
      : new RedisLink(settings.redis, {
          timeoutMs: settings.timeoutMs,
          failuresBeforePause: settings.failuresBeforePause,
          retryMs: settings.retryMs,
          logger: settings.logger ?? silentLogger,
        });
  const limits = specs.map(
    (spec, i) =>
      new Limit(spec, names[i]!, { settings, link, keyPrefix: `${settings.prefix}${names[i]}:` }),
  );
  const middleware = composeLimits(limits, settings) as RateLimitMiddleware;
  let closing: Promise<void> | undefined;
  Object.defineProperty(middleware, 'limits', {
    value: Object.freeze(limits.map((l) => Object.freeze({ name: l.name }))),
  });
  middleware.close = () =>
    (closing ??= (async () => {
      for (const l of limits) l.close();
      await link?.close();
    })());
  return middleware;
}

export type { RateLimitInfo };
