import { createHash, createPublicKey, createSecretKey, KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import jwt from 'jsonwebtoken';
import { ConfigError, sendProblem, silentLogger, type Logger } from '@turnpike/core';
import { UNAVAILABLE, bearerAnswers, isAuthUnavailable, type Answers } from './answers';
import { compilePaths, identityOf, type CompiledPaths } from './claims';
import { JwksKeys } from './jwks';
import { secureUrl } from './urls';
import type { AuthIdentity, AuthenticatedRequest, JwtAlgorithm, JwtOptions } from './types';

const HS = ['HS256', 'HS384', 'HS512'] as const;
const RS = ['RS256', 'RS384', 'RS512'] as const;
const PS = ['PS256', 'PS384', 'PS512'] as const;
const ES = ['ES256', 'ES384', 'ES512'] as const;
const ALL: readonly string[] = [...HS, ...RS, ...PS, ...ES];
/** The curve each ES algorithm signs with (RFC 7518 §3.4). */
const CURVE: Record<string, string> = {
  ES256: 'prime256v1',
  ES384: 'secp384r1',
  ES512: 'secp521r1',
};

/** Whether `key` can verify `alg`: the key's type decides, so no token picks its own family. */
export function keyFits(key: KeyObject, alg: string): boolean {
  if (alg.startsWith('HS')) return key.type === 'secret';
  if (key.type !== 'public') return false;
  const kind = key.asymmetricKeyType;
  if (alg.startsWith('RS')) return kind === 'rsa';
  if (alg.startsWith('PS')) return kind === 'rsa' || kind === 'rsa-pss';
  if (alg.startsWith('ES')) {
    return kind === 'ec' && key.asymmetricKeyDetails?.namedCurve === CURVE[alg];
  }
  return false;
}

/** A JWT's verifier, compiled once from checked options. */
export interface JwtVerifier {
  /** The identity of a valid token, or why not (for the log; the client gets a generic 401). */
  verify(token: string): AuthIdentity | string | Promise<AuthIdentity | string>;
  close(): void;
}

interface Cached {
  readonly identity: AuthIdentity;
  /** Epoch ms past which the entry is dead: the token's `exp` (or its max age). */
  readonly until: number;
}

/** A bounded LRU of verified tokens, keyed by the SHA-256 of the token. */
class TokenCache {
  private readonly map = new Map<string, Cached>();
  constructor(private readonly max: number) {}

  get(key: string, now: number): AuthIdentity | undefined {
    const hit = this.map.get(key);
    if (hit === undefined) return undefined;
    this.map.delete(key);
    if (hit.until <= now) return undefined;
    this.map.set(key, hit);
    return hit.identity;
  }

  clear(): void {
    this.map.clear();
  }

  set(key: string, value: Cached): void {
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string);
    this.map.set(key, value);
  }
}

/** The header of a compact JWS, parsed without trusting it: alg and kid, or undefined. */
function headerOf(token: string): { alg: unknown; kid: unknown } | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  try {
    const h = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as unknown;
    if (typeof h !== 'object' || h === null || Array.isArray(h)) return undefined;
    return h as { alg: unknown; kid: unknown };
  } catch {
    return undefined;
  }
}

/** How long a token without `exp` (requireExp: false) stays cached. */
const NO_EXP_CACHE_MS = 60_000;

function staticKey(o: JwtOptions, path: string): KeyObject | undefined {
  if (o.secret !== undefined) {
    const bytes = typeof o.secret === 'string' ? Buffer.from(o.secret, 'utf8') : o.secret;
    if (Buffer.isBuffer(bytes) && bytes.includes('-----BEGIN')) {
      // A public key as an HS secret: anyone holding it could sign tokens (algorithm confusion).
      throw new ConfigError(
        `${path}.secret`,
        'an HS secret, not a PEM key (a public key goes in publicKey)',
        '(a PEM key)',
      );
    }
    if (!Buffer.isBuffer(bytes) || bytes.length < 32) {
      throw new ConfigError(
        `${path}.secret`,
        'an HS secret of at least 32 bytes (a shorter one can be guessed offline from any token)',
        typeof o.secret === 'string' ? `(${bytes.length} bytes)` : o.secret,
      );
    }
    return createSecretKey(bytes);
  }
  if (o.publicKey !== undefined) {
    if (o.publicKey instanceof KeyObject) {
      if (o.publicKey.type !== 'public') {
        throw new ConfigError(`${path}.publicKey`, 'a public key', `(a ${o.publicKey.type} key)`);
      }
      return o.publicKey;
    }
    try {
      const key = createPublicKey(o.publicKey);
      return key;
    } catch {
      throw new ConfigError(`${path}.publicKey`, 'a PEM public key that parses', '(unparsable)');
    }
  }
  return undefined;
}

function jwksUri(uri: unknown, path: string): string {
  const url = secureUrl(uri);
  if (url === undefined) {
    throw new ConfigError(
      path,
      'an https:// URL of the key set without credentials (http:// only for a loopback host, for tests)',
      uri,
    );
  }
  return url.href;
}

/** Checks JWT options; throws a ConfigError naming the field. */
export function compileJwt(o: JwtOptions, path = 'jwt'): JwtVerifier {
  if (!Array.isArray(o.algorithms) || o.algorithms.length === 0) {
    throw new ConfigError(
      `${path}.algorithms`,
      'a list of the algorithms tokens are signed with (there is no default)',
      o.algorithms,
      "algorithms: ['RS256']",
    );
  }
  const algorithms: readonly unknown[] = o.algorithms;
  algorithms.forEach((a, i) => {
    if (typeof a !== 'string' || !ALL.includes(a)) {
      throw new ConfigError(
        `${path}.algorithms[${i}]`,
        `one of ${ALL.join(', ')} ("none" is never accepted)`,
        a,
      );
    }
  });
  const sources = [o.secret, o.publicKey, o.jwks].filter((x) => x !== undefined).length;
  if (sources !== 1) {
    throw new ConfigError(path, 'exactly one of secret, publicKey or jwks', sources);
  }
  const key = staticKey(o, path);
  (algorithms as readonly string[]).forEach((a, i) => {
    const fits =
      key !== undefined ? keyFits(key, a) : !a.startsWith('HS'); /* JWKS: asymmetric only */
    if (!fits) {
      throw new ConfigError(
        `${path}.algorithms[${i}]`,
        key === undefined
          ? 'an RS, PS or ES algorithm (a key set holds public keys: HS cannot use them)'
          : `an algorithm this key can verify (the key is ${key.type === 'secret' ? 'an HS secret' : `a ${key.asymmetricKeyType} public key`})`,
        a,
      );
    }
  });
  for (const field of ['issuer', 'audience'] as const) {
    const v = o[field];
    const ok =
      v === false ||
      (typeof v === 'string' && v !== '') ||
      (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x !== ''));
    if (!ok) {
      throw new ConfigError(
        `${path}.${field}`,
        `the ${field} tokens must name (a string or a list), or false to accept any`,
        v,
      );
    }
  }
  const tolerance = o.clockToleranceSec ?? 5;
  if (!Number.isInteger(tolerance) || tolerance < 0 || tolerance > 300) {
    throw new ConfigError(`${path}.clockToleranceSec`, 'an integer from 0 to 300', tolerance);
  }
  if (o.maxAgeSec !== undefined && (!Number.isInteger(o.maxAgeSec) || o.maxAgeSec < 1)) {
    throw new ConfigError(`${path}.maxAgeSec`, 'an integer >= 1 (seconds)', o.maxAgeSec);
  }
  const cacheSize = o.cacheSize ?? 10_000;
  if (!Number.isInteger(cacheSize) || cacheSize < 0 || cacheSize > 1_000_000) {
    throw new ConfigError(`${path}.cacheSize`, 'an integer from 0 to 1000000', cacheSize);
  }
  const jwks =
    o.jwks === undefined
      ? undefined
      : (() => {
          const j = typeof o.jwks === 'string' ? { uri: o.jwks } : o.jwks;
          return new JwksKeys({
            uri: jwksUri(j.uri, `${path}.jwks${typeof o.jwks === 'string' ? '' : '.uri'}`),
            refreshMs: j.refreshMs ?? 600_000,
            minRefetchMs: j.minRefetchMs ?? 30_000,
            timeoutMs: j.timeoutMs ?? 5_000,
            logger: o.logger,
          });
        })();
  return new Verifier(o, key, jwks, compilePaths(o.claims), tolerance, cacheSize);
}

class Verifier implements JwtVerifier {
  private readonly allowed: ReadonlySet<string>;
  private readonly verifyOptions: jwt.VerifyOptions;
  private readonly cache: TokenCache | undefined;
  private readonly requireExp: boolean;
  private readonly maxAgeMs: number | undefined;

  constructor(
    o: JwtOptions,
    private readonly key: KeyObject | undefined,
    private readonly jwks: JwksKeys | undefined,
    private readonly paths: CompiledPaths,
    tolerance: number,
    cacheSize: number,
  ) {
    this.allowed = new Set(o.algorithms);
    this.requireExp = o.requireExp ?? true;
    this.maxAgeMs = o.maxAgeSec === undefined ? undefined : o.maxAgeSec * 1000;
    this.verifyOptions = {
      issuer: o.issuer === false ? undefined : (o.issuer as string | [string, ...string[]]),
      audience: o.audience === false ? undefined : (o.audience as string | [string, ...string[]]),
      clockTolerance: tolerance,
      maxAge: o.maxAgeSec,
    };
    this.cache = cacheSize === 0 ? undefined : new TokenCache(cacheSize);
    if (jwks !== undefined) jwks.removed = () => this.cache?.clear();
    jwks?.start();
  }

  verify(token: string): AuthIdentity | string | Promise<AuthIdentity | string> {
    const now = Date.now();
    const hash =
      this.cache === undefined ? '' : createHash('sha256').update(token).digest('base64');
    const hit = this.cache?.get(hash, now);
    if (hit !== undefined) return hit;
    const header = headerOf(token);
    if (header === undefined) return 'the token is not a JWS';
    const alg = header.alg;
    if (typeof alg !== 'string' || !this.allowed.has(alg)) {
      return `algorithm ${typeof alg === 'string' ? JSON.stringify(alg.slice(0, 20)) : typeof alg} is not accepted`;
    }
    if (this.key !== undefined) return this.check(token, this.key, alg, hash, now);
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    return this.jwks!.keyFor(kid, alg).then((key) =>
      key === undefined || !keyFits(key, alg)
        ? `no key for kid ${JSON.stringify(kid)} and ${alg}`
        : this.check(token, key, alg, hash, Date.now()),
    );
  }

  private check(
    token: string,
    key: KeyObject,
    alg: string,
    hash: string,
    now: number,
  ): AuthIdentity | string {
    let claims: jwt.JwtPayload;
    try {
      const payload = jwt.verify(token, key, {
        ...this.verifyOptions,
        algorithms: [alg as jwt.Algorithm],
      });
      if (typeof payload === 'string') return 'the payload is not a claims object';
      claims = payload;
    } catch (err) {
      return err instanceof Error ? err.message : 'verification failed';
    }
    if (this.requireExp && typeof claims.exp !== 'number') return 'the token has no exp';
    const identity = identityOf(claims, this.paths, 'jwt');
    if (identity === undefined) return 'the token names no subject';
    if (this.cache !== undefined) {
      let until = typeof claims.exp === 'number' ? claims.exp * 1000 : now + NO_EXP_CACHE_MS;
      if (this.maxAgeMs !== undefined && typeof claims.iat === 'number') {
        until = Math.min(until, claims.iat * 1000 + this.maxAgeMs);
      }
      this.cache.set(hash, { identity, until });
    }
    return identity;
  }

  close(): void {
    this.jwks?.close();
  }
}

/** `Authorization: Bearer <token>` (RFC 6750 §2.1): the token, '' for none, undefined when malformed. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return '';
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(h);
  return m === null ? undefined : m[1];
}

/** Options of {@link jwtAuth}: the JWT options, and the middleware's. */
export type JwtAuthOptions = JwtOptions & {
  /** No credential: let the request through without `req.auth`. Default false. */
  optional?: boolean;
  /** The realm of the challenge. Default `'api'`. */
  realm?: string;
};

type Next = (err?: unknown) => void;

/** The middleware: `req.auth` from a valid bearer JWT, else a 401 problem. */
export type JwtAuthMiddleware = ((
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
) => void) & {
  close(): void;
};

/**
 * Express middleware: a bearer JWT verified with jsonwebtoken (algorithms required, `none`
 * never, the key's type deciding the family), `req.auth` set from its claims. No or a
 * malformed credential → 401 problem with `WWW-Authenticate` (RFC 6750); the reason is
 * logged, not sent. Throws a ConfigError naming the field for options that cannot work.
 */
export function jwtAuth(options: JwtAuthOptions): JwtAuthMiddleware {
  const verifier = compileJwt(options, 'jwtAuth');
  const answers = bearerAnswers(options.realm ?? 'api');
  const logger = options.logger ?? silentLogger;
  const optional = options.optional ?? false;
  const mw = function turnpikeJwt(req: IncomingMessage, res: ServerResponse, next: Next): void {
    authenticate(verifier, answers, logger, optional, req, res, next);
  } as JwtAuthMiddleware;
  mw.close = () => verifier.close();
  return mw;
}

/**
 * The bearer-token loop every verifier shares: no token (401 challenge, or through when
 * optional), a malformed header or a refused token (401 invalid_token, the reason logged),
 * an identity (`req.auth`, next). A verifier that rejects or throws is a 503
 * `auth-unavailable`: an {@link AuthUnavailableError} is its issuer's failure, anything else a
 * bug; neither is the client's fault, and neither lets the request through.
 */
export function authenticate(
  verifier: JwtVerifier,
  answers: Answers,
  logger: Logger,
  optional: boolean,
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
): void {
  const token = bearerToken(req);
  if (token === '') {
    if (optional) return next();
    return sendProblem(req, res, answers.missing);
  }
  if (token === undefined) {
    logger.info('auth: malformed Authorization header', { requestId: (req as { id?: string }).id });
    return sendProblem(req, res, answers.invalid);
  }
  let result: AuthIdentity | string | Promise<AuthIdentity | string>;
  try {
    result = verifier.verify(token);
  } catch (err) {
    return unavailable(err, logger, req, res);
  }
  // A cached token answers at once: no closure on that path.
  if (!(result instanceof Promise)) return settle(result, answers, logger, req, res, next);
  result.then(
    (r) => settle(r, answers, logger, req, res, next),
    (err: unknown) => unavailable(err, logger, req, res),
  );
}

function settle(
  result: AuthIdentity | string,
  answers: Answers,
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
): void {
  if (typeof result === 'string') {
    logger.info('auth: token refused', { requestId: (req as { id?: string }).id, reason: result });
    return sendProblem(req, res, answers.invalid);
  }
  (req as AuthenticatedRequest).auth = result;
  next();
}

function unavailable(
  err: unknown,
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const requestId = (req as { id?: string }).id;
  if (isAuthUnavailable(err)) {
    logger.info('auth: token not checked; 503', { requestId, reason: err.message });
  } else {
    logger.error('auth: the verifier failed; 503', {
      requestId,
      error: err instanceof Error ? err.message : String(err),
    });
  }
  sendProblem(req, res, UNAVAILABLE);
}

export type { JwtAlgorithm };
