import type { AuthRecorder } from './telemetry';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, sendProblem, silentLogger, type Check, type Logger } from '@turnpike/core';
import {
  REALM,
  apiKeyAnswers,
  apiKeyHeader,
  authenticate,
  bearerAnswers,
  ClaimsSigner,
  compileApiKey,
  compileIntrospection,
  compileJwt,
  forbiddenRole,
  forbiddenScope,
  type Answers,
  type ApiKeyMiddleware,
  type ApiKeyOptions,
  type AuthIdentity,
  type AuthenticatedRequest,
  type IntrospectionOptions,
  type JwtOptions,
  type JwtVerifier,
} from '@turnpike/auth';
import type { Middleware, RouteInfo } from '@turnpike/router';

/** The header names the identity goes upstream in; false for one not sent. */
export interface IdentityHeaders {
  subject?: string | false;
  roles?: string | false;
  consumer?: string | false;
}

/** The gateway's `auth`: the methods a credential may use, and what goes upstream. */
export interface GatewayAuthConfig {
  /** Bearer JWTs (jsonwebtoken): algorithms, a secret, a public key or a JWKS URL, issuer, audience. */
  jwt?: Omit<JwtOptions, 'logger'>;
  /** Opaque bearer tokens checked at the issuer (RFC 7662): endpoint, client credentials. */
  introspection?: Omit<IntrospectionOptions, 'logger'>;
  /** API keys in a header: configured (plain or SHA-256) or resolved by a lookup. */
  apiKeys?: Omit<ApiKeyOptions, 'logger' | 'optional' | 'realm'>;
  /** The realm of the challenges. Default `'api'`. */
  realm?: string;
  /**
   * The headers the proven identity is sent upstream in. Default `x-user-id`, `x-user-roles`
   * (comma-separated), `x-consumer-id`. Each must be one of the top-level `identityHeaders`,
   * which hygiene removes from every client request: no client can send its own.
   */
  identity?: IdentityHeaders;
  /** Remove `Authorization` (and the API key header) before forwarding. Default false. */
  stripCredentials?: boolean;
  /**
   * The verified identity as a JWT the gateway signs (HS256), in a header, for services that
   * want the claims without verifying the client's token: `{ sub, roles, scopes, consumer,
   * method }`, `iss: 'turnpike'`, valid `ttlSec` (default 60). The header must be one of the
   * `identityHeaders`; the secret at least 32 bytes.
   */
  claimsHeader?: { name: string; secret: string; ttlSec?: number };
}

/**
 * A route's `auth`: `true` (a credential required, the default when the gateway has `auth`),
 * `'optional'` (the identity when one is sent; a bad one is still 401), `false` (none), or
 * `{ roles, scopes, optional }`: at least one of `roles`, every one of `scopes`.
 */
export type RouteAuth =
  | boolean
  | 'optional'
  | { roles?: readonly string[]; scopes?: readonly string[]; optional?: boolean };

const KEYS = new Set([
  'jwt',
  'introspection',
  'apiKeys',
  'realm',
  'identity',
  'stripCredentials',
  'claimsHeader',
]);

/** The gateway's `auth`, checked for its shape; the methods are compiled by {@link GatewayAuth}. */
export const gatewayAuthCheck: Check<GatewayAuthConfig | false> = (value, path) => {
  if (value === false) return false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(
      path,
      'an object: { jwt?, apiKeys?, realm?, identity?, stripCredentials? }',
      value,
    );
  }
  for (const key of Object.keys(value)) {
    if (!KEYS.has(key))
      throw new ConfigError(
        `${path}.${key}`,
        'no such key here',
        (value as Record<string, unknown>)[key],
      );
  }
  const v = value as GatewayAuthConfig;
  if (v.jwt === undefined && v.introspection === undefined && v.apiKeys === undefined) {
    throw new ConfigError(path, 'at least one method: jwt, introspection or apiKeys', value);
  }
  return v;
};

function nameList(value: unknown, path: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every((x) => typeof x === 'string' && x !== '')
  ) {
    throw new ConfigError(path, 'a list of one or more names', value);
  }
  return Object.freeze([...(value as string[])]);
}

/** A route's `auth`, checked. */
export const routeAuthCheck: Check<RouteAuth> = (value, path) => {
  if (value === true || value === false || value === 'optional') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(path, "true, false, 'optional' or { roles?, scopes?, optional? }", value);
  }
  for (const key of Object.keys(value)) {
    if (key !== 'roles' && key !== 'scopes' && key !== 'optional') {
      throw new ConfigError(
        `${path}.${key}`,
        'roles, scopes or optional',
        (value as Record<string, unknown>)[key],
      );
    }
  }
  const v = value as { roles?: unknown; scopes?: unknown; optional?: unknown };
  nameList(v.roles, `${path}.roles`);
  nameList(v.scopes, `${path}.scopes`);
  if (v.optional !== undefined && typeof v.optional !== 'boolean') {
    throw new ConfigError(`${path}.optional`, 'true or false', v.optional);
  }
  if (v.optional === true && (v.roles !== undefined || v.scopes !== undefined)) {
    // Anonymous callers would pass where a signed-in one without the role does not.
    throw new ConfigError(`${path}.optional`, 'no optional with roles or scopes', true);
  }
  return value;
};

const DEFAULT_IDENTITY = { subject: 'x-user-id', roles: 'x-user-roles', consumer: 'x-consumer-id' };

/** A header value from an identity field: visible ASCII as it is, anything else percent-encoded. */
function headerValue(v: string): string {
  // `%` and `,` too: an encoded value and a literal one must not meet, nor a role split in two.
  return /^[\x21-\x7e]*$/.test(v) && !/[%,]/.test(v) ? v : encodeURIComponent(v);
}

/**
 * The gateway's authentication, compiled once: the methods, the challenges, the identity
 * headers. `stagesFor(route)` gives a route its stage (none for `auth: false` or a gateway
 * without `auth`): the credential proven, roles and scopes checked, the identity set upstream.
 */
export class GatewayAuth {
  private readonly jwt: JwtVerifier | undefined;
  private readonly introspection: JwtVerifier | undefined;
  private readonly apiKey: ApiKeyMiddleware | undefined;
  private readonly apiKeyHeader: string | undefined;
  private readonly bearer: Answers;
  private readonly missing: Answers['missing'];
  private readonly headers: { subject?: string; roles?: string; consumer?: string };
  private readonly strip: boolean;
  private readonly claims: ClaimsSigner | undefined;
  private readonly values = new WeakMap<
    AuthIdentity,
    { subject: string; roles: string | undefined; consumer: string | undefined }
  >();
  private readonly logger: Logger;
  readonly configured: boolean;

  constructor(
    config: GatewayAuthConfig | false | undefined,
    identityHeaders: readonly string[] | undefined,
    logger: Logger | undefined,
  ) {
    this.logger = logger ?? silentLogger;
    const c = config === undefined || config === false ? undefined : config;
    this.configured = c !== undefined;
    const realm = c?.realm ?? 'api';
    if (!REALM.test(realm))
      throw new ConfigError('auth.realm', 'a realm name (no quotes or backslashes)', realm);
    this.jwt =
      c?.jwt === undefined ? undefined : compileJwt({ ...c.jwt, logger: this.logger }, 'auth.jwt');
    this.introspection =
      c?.introspection === undefined
        ? undefined
        : compileIntrospection({ ...c.introspection, logger: this.logger }, 'auth.introspection');
    this.apiKey =
      c?.apiKeys === undefined
        ? undefined
        : compileApiKey({ ...c.apiKeys, realm, logger: this.logger }, 'auth.apiKeys');
    if (c?.apiKeys?.query !== undefined && c.apiKeys.query !== false) {
      // The gateway reads the key from its header only (a query string ends up in logs).
      throw new ConfigError(
        'auth.apiKeys.query',
        'false (the gateway takes keys from a header)',
        c.apiKeys.query,
      );
    }
    this.apiKeyHeader =
      c?.apiKeys === undefined ? undefined : apiKeyHeader(c.apiKeys, 'auth.apiKeys');
    this.bearer = bearerAnswers(realm);
    this.missing =
      this.jwt !== undefined || this.introspection !== undefined || this.apiKeyHeader === undefined
        ? this.bearer.missing
        : apiKeyAnswers(realm, this.apiKeyHeader).missing;
    const stripped = new Set(
      (identityHeaders ?? Object.values(DEFAULT_IDENTITY)).map((h) => h.toLowerCase()),
    );
    const wanted = { ...DEFAULT_IDENTITY, ...(c?.identity ?? {}) };
    const headers: { subject?: string; roles?: string; consumer?: string } = {};
    for (const field of ['subject', 'roles', 'consumer'] as const) {
      if (c === undefined) break; // no auth: no identity is ever set
      const name = wanted[field];
      if (name === false) continue;
      if (typeof name !== 'string' || !stripped.has(name.toLowerCase())) {
        throw new ConfigError(
          `auth.identity.${field}`,
          'one of the identityHeaders (hygiene removes those from every client request, so no client can send its own), or false',
          name,
        );
      }
      headers[field] = name.toLowerCase();
    }
    this.headers = headers;
    if (c?.stripCredentials !== undefined && typeof c.stripCredentials !== 'boolean') {
      throw new ConfigError('auth.stripCredentials', 'true or false', c.stripCredentials);
    }
    this.strip = c?.stripCredentials ?? false;
    this.claims =
      c?.claimsHeader === undefined
        ? undefined
        : new ClaimsSigner(c.claimsHeader, stripped, 'auth.claimsHeader');
  }

  /** The auth stage of one route, or none. */
  stagesFor(route: RouteInfo, record?: AuthRecorder): Middleware[] {
    const own = (route.options as { auth?: RouteAuth }).auth;
    const path = `routes[${route.index}].auth`;
    if (!this.configured) {
      if (own !== undefined && own !== false) {
        throw new ConfigError(
          path,
          'no auth on a route of a gateway without auth (set the top-level auth first)',
          own,
        );
      }
      return [];
    }
    if (own === false) return [];
    const spec = typeof own === 'object' ? own : {};
    const optional = own === 'optional' || (typeof own === 'object' && own.optional === true);
    const roles = spec.roles;
    const scopes = spec.scopes;
    const noRole = roles === undefined ? undefined : forbiddenRole();
    const noScope = scopes === undefined ? undefined : forbiddenScope(scopes);
    const after = (
      req: IncomingMessage,
      res: ServerResponse,
      next: (err?: unknown) => void,
    ): void => {
      const auth = (req as AuthenticatedRequest).auth;
      if (auth === undefined) {
        if (optional) {
          record?.(req, 'none', 'anonymous');
          return next();
        }
        record?.(req, 'none', 'missing');
        return sendProblem(req, res, this.missing);
      }
      if (roles !== undefined && !roles.some((r) => auth.roles.includes(r))) {
        record?.(req, auth.method, 'forbidden');
        return sendProblem(req, res, noRole);
      }
      if (scopes !== undefined && !scopes.every((s) => auth.scopes.includes(s))) {
        record?.(req, auth.method, 'forbidden');
        return sendProblem(req, res, noScope);
      }
      record?.(req, auth.method, 'allowed');
      this.forward(req, auth);
      next();
    };
    const stage: Middleware = (req, res, next) => {
      // Never an identity a host middleware (or the client) put there: the gateway proves it.
      if ((req as AuthenticatedRequest).auth !== undefined)
        (req as AuthenticatedRequest).auth = undefined;
      this.authenticate(req, res, () => after(req, res, next), optional);
    };
    return [stage];
  }

  private authenticate(
    req: IncomingMessage,
    res: ServerResponse,
    next: () => void,
    optional: boolean,
  ): void {
    const header = this.apiKeyHeader;
    const presented = header === undefined ? undefined : req.headers[header];
    if (presented !== undefined && presented !== '') {
      return this.apiKey!(req, res, next);
    }
    if (req.headers.authorization !== undefined) {
      const verifier = this.verifierFor(req.headers.authorization);
      if (verifier !== undefined) {
        return authenticate(verifier, this.bearer, this.logger, false, req, res, next);
      }
    }
    if (optional) return next();
    sendProblem(req, res, this.missing);
  }

  /** The method a request's credential would be checked by ('none' without one), for a refusal's metrics. */
  methodOf(req: IncomingMessage): string {
    const header = this.apiKeyHeader;
    const presented = header === undefined ? undefined : req.headers[header];
    if (presented !== undefined && presented !== '') return 'api-key';
    const authorization = req.headers.authorization;
    if (authorization === undefined) return 'none';
    const verifier = this.verifierFor(authorization);
    if (verifier === undefined) return 'none';
    return verifier === this.jwt ? 'jwt' : 'introspection';
  }

  /**
   * A bearer token's verifier: with both methods, a token shaped as a JWS (three dot-separated
   * parts) is a JWT, any other is introspected; with one, that one.
   */
  private verifierFor(authorization: string): JwtVerifier | undefined {
    if (this.jwt === undefined) return this.introspection;
    if (this.introspection === undefined) return this.jwt;
    let dots = 0;
    for (let i = authorization.indexOf('.'); i !== -1; i = authorization.indexOf('.', i + 1))
      dots++;
    return dots === 2 ? this.jwt : this.introspection;
  }

  /** The identity into the request headers upstream (client copies were removed by hygiene). */
  private forward(req: IncomingMessage, auth: AuthIdentity): void {
    const h = req.headers;
    const names = this.headers;
    // A cached token's identity is one object: its header values are built once.
    let v = this.values.get(auth);
    if (v === undefined) {
      v = {
        subject: headerValue(auth.subject),
        roles: auth.roles.length > 0 ? auth.roles.map(headerValue).join(',') : undefined,
        consumer: auth.consumer === undefined ? undefined : headerValue(auth.consumer),
      };
      this.values.set(auth, v);
    }
    if (names.subject !== undefined) h[names.subject] = v.subject;
    if (names.roles !== undefined && v.roles !== undefined) h[names.roles] = v.roles;
    if (names.consumer !== undefined && v.consumer !== undefined) h[names.consumer] = v.consumer;
    if (this.claims !== undefined) h[this.claims.name] = this.claims.sign(auth);
    // Only the credential that was checked goes on: an Authorization header beside an API
    // key (or a key beside a token) was never verified, and a service might trust it.
    if (h.authorization !== undefined && (this.strip || auth.method === 'api-key')) {
      delete h.authorization;
    }
    const key = this.apiKeyHeader;
    if (key !== undefined && h[key] !== undefined && (this.strip || auth.method !== 'api-key')) {
      delete h[key];
    }
  }

  close(): void {
    this.jwt?.close();
    this.introspection?.close();
  }
}
