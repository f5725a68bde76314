import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, silentLogger, type Logger } from '@turnpike/core';
import { AuthUnavailableError, bearerAnswers, REALM } from './answers';
import { compilePaths, identityOf, type CompiledPaths } from './claims';
import { authenticate, type JwtVerifier } from './jwt';
import { secureUrl } from './urls';
import type { AuthIdentity, ClaimPaths } from './types';

/** Options of OAuth2 token introspection (RFC 7662). */
export interface IntrospectionOptions {
  /** The introspection endpoint: an https URL (http only for a loopback host). Required. */
  endpoint: string;
  /** The gateway's client id at the authorization server. Required. */
  clientId: string;
  /** The gateway's client secret, sent with HTTP Basic (RFC 7662 §2.1). Required; never logged. */
  clientSecret: string;
  /** A call that has not answered by then has failed (503), in ms. Default 2000. */
  timeoutMs?: number;
  /** Answers kept (a bounded LRU keyed by the SHA-256 of the token, never the token). Default 10000; 0 for none. */
  cacheSize?: number;
  /** The longest an active answer is kept, in ms; never past the token's `exp`. Default 300000. */
  maxCacheMs?: number;
  /** How long an inactive answer is kept, in ms. Default 10000. */
  inactiveCacheMs?: number;
  /** Where roles, scopes, subject and consumer are in the answer. Subject: `sub`, else `username`. */
  claims?: ClaimPaths;
  /** When given, the answer's `iss` must be (one of) it. */
  issuer?: string | readonly string[];
  /** When given, the answer's `aud` must name one of it. */
  audience?: string | readonly string[];
  /** Where failures are logged (the client gets no reason). Default: silent. */
  logger?: Logger;
}

/** Options of {@link introspectionAuth}: the introspection options, and the middleware's. */
export type IntrospectionAuthOptions = IntrospectionOptions & {
  /** No credential: let the request through without `req.auth`. Default false. */
  optional?: boolean;
  /** The realm of the challenge. Default `'api'`. */
  realm?: string;
};

/**
 * An introspection verifier: the {@link JwtVerifier} contract (an identity, or a refusal
 * reason), and a rejection with an {@link AuthUnavailableError} when the endpoint cannot say.
 */
export interface IntrospectionVerifier extends JwtVerifier {
  /** Calls made to the endpoint, for tests and stats. */
  readonly calls: number;
}

interface Cached {
  readonly result: AuthIdentity | string;
  /** Epoch ms past which the entry is dead. */
  readonly until: number;
}

/** A bounded LRU of answers, keyed by the SHA-256 of the token. */
class AnswerCache {
  private readonly map = new Map<string, Cached>();
  constructor(private readonly max: number) {}

  get(key: string, now: number): AuthIdentity | string | undefined {
    const hit = this.map.get(key);
    if (hit === undefined) return undefined;
    this.map.delete(key);
    if (hit.until <= now) return undefined;
    this.map.set(key, hit);
    return hit.result;
  }

  set(key: string, value: Cached): void {
    if (value.until <= Date.now()) return;
    this.map.delete(key);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, value);
  }

  clear(): void {
    this.map.clear();
  }
}

/** The largest answer read from the endpoint; a larger one is a failure. */
const MAX_ANSWER_BYTES = 1024 * 1024;
/** Introspection calls in flight at once; past it a new token is a 503 until one answers. */
export const MAX_IN_FLIGHT = 64;

function endpointUrl(value: unknown, path: string): string {
  const url = secureUrl(value);
  if (url === undefined) {
    throw new ConfigError(
      path,
      'an https:// URL of the introspection endpoint (http:// only for a loopback host, for tests)',
      value,
      "endpoint: 'https://auth.example.com/oauth2/introspect'",
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new ConfigError(
      path,
      'a URL without credentials (give them as clientId and clientSecret)',
      '(a URL with credentials)',
    );
  }
  return url.href;
}

function integer(value: unknown, path: string, min: number, max: number, unit = ''): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(path, `an integer from ${min} to ${max}${unit}`, value);
  }
  return value;
}

function nameList(value: unknown, path: string): ReadonlySet<string> | undefined {
  if (value === undefined) return undefined;
  const list: unknown[] = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  if (list.length === 0 || !list.every((x) => typeof x === 'string' && x !== '')) {
    throw new ConfigError(path, 'a non-empty string or a list of them', value);
  }
  return new Set(list as string[]);
}

/** `Basic base64(id:secret)`, each form-urlencoded first (RFC 6749 §2.3.1, RFC 7662 §2.1). */
function basic(id: string, secret: string): string {
  const enc = (s: string): string => new URLSearchParams([['', s]]).toString().slice(1);
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`, 'utf8').toString('base64')}`;
}

interface Settings {
  readonly endpoint: string;
  readonly clientId: string;
  readonly authorization: string;
  readonly timeoutMs: number;
  readonly cacheSize: number;
  readonly maxCacheMs: number;
  readonly inactiveCacheMs: number;
  readonly paths: CompiledPaths;
  /** With `subject: 'username'`, when no subject path was given. */
  readonly fallback: CompiledPaths | undefined;
  readonly issuer: ReadonlySet<string> | undefined;
  readonly audience: ReadonlySet<string> | undefined;
  readonly logger: Logger;
}

/** Checks introspection options; throws a ConfigError naming the field (never echoing the secret). */
export function compileIntrospection(
  o: IntrospectionOptions,
  path = 'introspection',
): IntrospectionVerifier {
  if (typeof o !== 'object' || o === null) {
    throw new ConfigError(path, 'an options object', o, '{ endpoint, clientId, clientSecret }');
  }
  const endpoint = endpointUrl(o.endpoint, `${path}.endpoint`);
  if (typeof o.clientId !== 'string' || o.clientId === '') {
    throw new ConfigError(
      `${path}.clientId`,
      "the gateway's client id at the authorization server (a non-empty string)",
      o.clientId,
    );
  }
  if (typeof o.clientSecret !== 'string' || o.clientSecret === '') {
    throw new ConfigError(
      `${path}.clientSecret`,
      "the gateway's client secret (a non-empty string)",
      o.clientSecret === undefined
        ? undefined
        : `(hidden: ${o.clientSecret === '' ? 'empty' : typeof o.clientSecret})`,
    );
  }
  const timeoutMs = integer(o.timeoutMs ?? 2000, `${path}.timeoutMs`, 1, 60_000, ' (ms)');
  const cacheSize = integer(o.cacheSize ?? 10_000, `${path}.cacheSize`, 0, 1_000_000);
  const maxCacheMs = integer(o.maxCacheMs ?? 300_000, `${path}.maxCacheMs`, 0, 86_400_000, ' (ms)');
  const inactiveCacheMs = integer(
    o.inactiveCacheMs ?? 10_000,
    `${path}.inactiveCacheMs`,
    0,
    3_600_000,
    ' (ms)',
  );
  if (o.claims !== undefined && (typeof o.claims !== 'object' || o.claims === null)) {
    throw new ConfigError(`${path}.claims`, 'an object of claim paths', o.claims);
  }
  for (const field of ['roles', 'scopes', 'subject', 'consumer'] as const) {
    const v: unknown = o.claims?.[field];
    if (v !== undefined && (typeof v !== 'string' || v === '')) {
      throw new ConfigError(`${path}.claims.${field}`, 'a dotted path (a non-empty string)', v);
    }
  }
  const paths = compilePaths(o.claims);
  return new Introspector({
    endpoint,
    clientId: o.clientId,
    authorization: basic(o.clientId, o.clientSecret),
    timeoutMs,
    cacheSize,
    maxCacheMs,
    inactiveCacheMs,
    paths,
    fallback: o.claims?.subject === undefined ? { ...paths, subject: ['username'] } : undefined,
    issuer: nameList(o.issuer, `${path}.issuer`),
    audience: nameList(o.audience, `${path}.audience`),
    logger: o.logger ?? silentLogger,
  });
}

class Introspector implements IntrospectionVerifier {
  private readonly cache: AnswerCache | undefined;
  /** One call per token at a time: concurrent requests with the same token share it. */
  private readonly inflight = new Map<string, Promise<AuthIdentity | string>>();
  private readonly closing = new AbortController();
  /** The last failure logged: a failing endpoint is logged once per kind of failure. */
  private failing: string | undefined;
  calls = 0;

  constructor(private readonly s: Settings) {
    this.cache = s.cacheSize === 0 ? undefined : new AnswerCache(s.cacheSize);
  }

  verify(token: string): AuthIdentity | string | Promise<AuthIdentity | string> {
    if (this.closing.signal.aborted) {
      return Promise.reject(new AuthUnavailableError('the introspection verifier is closed'));
    }
    const hash = createHash('sha256').update(token).digest('base64');
    const hit = this.cache?.get(hash, Date.now());
    if (hit !== undefined) return hit;
    let call = this.inflight.get(hash);
    if (call === undefined) {
      // A flood of made-up tokens may not become a flood of calls at the issuer.
      if (this.inflight.size >= MAX_IN_FLIGHT) {
        return Promise.reject(new AuthUnavailableError('too many introspection calls in flight'));
      }
      call = this.introspect(token, hash).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, call);
    }
    return call;
  }

  private async introspect(token: string, hash: string): Promise<AuthIdentity | string> {
    this.calls++;
    let body: unknown;
    try {
      body = await this.ask(token);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (this.failing !== reason) {
        this.failing = reason;
        this.s.logger[reason.startsWith('the endpoint refused') ? 'error' : 'warn'](
          'introspection: the endpoint cannot check tokens; requests get 503',
          { endpoint: this.s.endpoint, clientId: this.s.clientId, error: reason },
        );
      }
      throw new AuthUnavailableError(`introspection failed: ${reason}`);
    }
    if (this.failing !== undefined) {
      this.failing = undefined;
      this.s.logger.info('introspection: the endpoint answers again', {
        endpoint: this.s.endpoint,
      });
    }
    const now = Date.now();
    const { result, until } = this.judge(body as Record<string, unknown>, now);
    this.cache?.set(hash, { result, until });
    return result;
  }

  /** The answer of an active or inactive token, and until when it may be kept. */
  private judge(
    answer: Record<string, unknown>,
    now: number,
  ): { result: AuthIdentity | string; until: number } {
    const refuse = (reason: string) => ({ result: reason, until: now + this.s.inactiveCacheMs });
    if (answer.active !== true) return refuse('the token is not active');
    const exp = answer.exp;
    if (exp !== undefined && typeof exp !== 'number') return refuse('the answer has a bad exp');
    if (typeof exp === 'number' && exp * 1000 <= now) return refuse('the token has expired');
    const nbf = answer.nbf;
    if (typeof nbf === 'number' && nbf * 1000 > now) return refuse('the token is not yet valid');
    if (this.s.issuer !== undefined) {
      const iss = answer.iss;
      if (typeof iss !== 'string' || !this.s.issuer.has(iss)) {
        return refuse(`issuer ${JSON.stringify(iss)} is not accepted`);
      }
    }
    if (this.s.audience !== undefined) {
      const aud = answer.aud;
      const list: unknown[] = Array.isArray(aud) ? aud : [aud];
      if (!list.some((a) => typeof a === 'string' && this.s.audience!.has(a))) {
        return refuse('the token is not for this audience');
      }
    }
    const identity =
      identityOf(answer, this.s.paths, 'introspection') ??
      (this.s.fallback === undefined
        ? undefined
        : identityOf(answer, this.s.fallback, 'introspection'));
    if (identity === undefined) return refuse('the answer names no subject');
    let until = now + this.s.maxCacheMs;
    if (typeof exp === 'number') until = Math.min(until, exp * 1000);
    return { result: identity, until };
  }

  /** One POST to the endpoint: the answer object, or a throw naming what failed. */
  private async ask(token: string): Promise<unknown> {
    const res = await fetch(this.s.endpoint, {
      method: 'POST',
      headers: {
        authorization: this.s.authorization,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
      signal: AbortSignal.any([AbortSignal.timeout(this.s.timeoutMs), this.closing.signal]),
      redirect: 'error',
    }).catch((err: unknown) => {
      const e = err as { name?: string; cause?: { code?: string; message?: string } };
      if (e.name === 'TimeoutError') throw new Error(`no answer within ${this.s.timeoutMs} ms`);
      if (e.name === 'AbortError') throw new Error('the verifier was closed');
      throw new Error(
        `the call failed (${e.cause?.code ?? e.cause?.message ?? (err instanceof Error ? err.message : 'unknown')})`,
      );
    });
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(
        `the endpoint refused the gateway's client credentials (status ${res.status}): check clientId and clientSecret`,
      );
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`status ${res.status}`);
    }
    const text = await readCapped(res, this.s.timeoutMs);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new Error('the answer is not JSON', { cause: err });
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new Error('the answer is not a JSON object');
    }
    if (typeof (body as { active?: unknown }).active !== 'boolean') {
      throw new Error('the answer has no boolean "active"');
    }
    return body;
  }

  close(): void {
    this.closing.abort();
    this.cache?.clear();
  }
}

/** The body as text, at most {@link MAX_ANSWER_BYTES}; a failure to read is a throw. */
async function readCapped(res: Response, timeoutMs: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_ANSWER_BYTES) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error('the answer is too large');
  }
  if (res.body === null) return '';
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_ANSWER_BYTES) {
        await reader.cancel().catch(() => undefined);
        throw new Error('the answer is too large');
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof Error && err.message === 'the answer is too large') throw err;
    const name = (err as { name?: string }).name;
    throw new Error(
      name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'the answer was cut off',
      { cause: err },
    );
  }
  return Buffer.concat(chunks).toString('utf8');
}

type Next = (err?: unknown) => void;

/** The middleware: `req.auth` from an active bearer token, else a 401 (refused) or 503 (unchecked). */
export type IntrospectionAuthMiddleware = ((
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
) => void) & {
  close(): void;
  /** The verifier the middleware asks. */
  readonly verifier: IntrospectionVerifier;
};

/**
 * Express middleware: a bearer token checked by OAuth2 token introspection (RFC 7662), `req.auth`
 * set from the answer. No or a malformed token → 401 with a Bearer challenge; an inactive,
 * expired or foreign token → 401 `invalid_token`; an endpoint that is down, slow or answers
 * nonsense → 503 `auth-unavailable` with `Retry-After: 1`, never through. Reasons are logged,
 * not sent. Throws a ConfigError naming the field for options that cannot work.
 */
export function introspectionAuth(options: IntrospectionAuthOptions): IntrospectionAuthMiddleware {
  const verifier = compileIntrospection(options, 'introspectionAuth');
  const realm = options.realm ?? 'api';
  if (typeof realm !== 'string' || !REALM.test(realm)) {
    throw new ConfigError('introspectionAuth.realm', 'a realm name', realm);
  }
  if (options.optional !== undefined && typeof options.optional !== 'boolean') {
    throw new ConfigError('introspectionAuth.optional', 'true or false', options.optional);
  }
  const answers = bearerAnswers(realm);
  const logger = options.logger ?? silentLogger;
  const optional = options.optional ?? false;
  const mw = function turnpikeIntrospection(
    req: IncomingMessage,
    res: ServerResponse,
    next: Next,
  ): void {
    authenticate(verifier, answers, logger, optional, req, res, next);
  } as IntrospectionAuthMiddleware;
  mw.close = () => verifier.close();
  Object.defineProperty(mw, 'verifier', { value: verifier, enumerable: true });
  return mw;
}
