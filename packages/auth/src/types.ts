import type { KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from '@turnpike/core';

/** How a request proved who it is. */
export type AuthMethod = 'jwt' | 'api-key' | 'introspection';

/**
 * The proven identity, `req.auth`: one shape for every method. `roles` and `scopes` are
 * empty when the credential carries none; `claims` are the token's (or what a key lookup
 * returned), frozen.
 */
export interface AuthIdentity {
  readonly subject: string;
  readonly roles: readonly string[];
  readonly scopes: readonly string[];
  readonly claims: Readonly<Record<string, unknown>>;
  readonly method: AuthMethod;
  /** The consumer (an API key's owner, a token's client id), when known. */
  readonly consumer: string | undefined;
  /** The API key's id (never the key itself), for limits keyed by API key. */
  readonly keyId?: string | undefined;
}

/** A request after an auth middleware: `req.auth` is set when it authenticated. */
export type AuthenticatedRequest = IncomingMessage & { auth?: AuthIdentity };

/** The JWS algorithms a JWT may be signed with. `none` is not one of them. */
export type JwtAlgorithm =
  | 'HS256'
  | 'HS384'
  | 'HS512'
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512';

/** Where the roles and scopes are in a token's claims. */
export interface ClaimPaths {
  /** Dotted path of the roles (a list, or a space-separated string). Default `'roles'`. */
  roles?: string;
  /** Dotted path of the scopes. Default: `'scope'` (space-separated), else `'scp'` (a list). */
  scopes?: string;
  /** The subject claim. Default `'sub'`. */
  subject?: string;
  /** The consumer claim. Default `'client_id'`, else `'azp'`. */
  consumer?: string;
}

/** Options of the JWKS key source. */
export interface JwksOptions {
  /** An https URL (http only for a loopback host). Required. */
  uri: string;
  /** How often the key set is fetched again, in ms. Default 600000 (10 min). */
  refreshMs?: number;
  /** After an unknown `kid`, the earliest next fetch, in ms: a flood of made-up kids costs one. Default 30000. */
  minRefetchMs?: number;
  /** A fetch that has not answered by then has failed, in ms. Default 5000. */
  timeoutMs?: number;
}

/** Options of {@link jwtAuth}. */
export interface JwtOptions {
  /** The algorithms accepted: required, none by default; `none` is refused. One family per key. */
  algorithms: readonly JwtAlgorithm[];
  /** The HS secret, at least 32 bytes. */
  secret?: string | Buffer;
  /** The RS / PS / ES public key (PEM, or a KeyObject). */
  publicKey?: string | Buffer | KeyObject;
  /** Keys from a JWKS URL instead (a string is `{ uri }`). */
  jwks?: string | JwksOptions;
  /** The `iss` a token must carry; required, `false` to accept any (not advised). */
  issuer: string | readonly string[] | false;
  /** The `aud` a token must carry one of; required, `false` to accept any (not advised). */
  audience: string | readonly string[] | false;
  /** Whether a token without `exp` is refused. Default true. */
  requireExp?: boolean;
  /** Seconds of clock skew allowed on `exp`, `nbf` and `iat`. Default 5. */
  clockToleranceSec?: number;
  /** The oldest `iat` accepted, in seconds; none by default. */
  maxAgeSec?: number;
  /** Where roles, scopes, subject and consumer are in the claims. */
  claims?: ClaimPaths;
  /** Verified tokens kept (a bounded LRU, keyed by a hash of the token, never past `exp`). Default 10000; 0 for none. */
  cacheSize?: number;
  /** Where failures are logged (the client gets no reason). Default: silent. */
  logger?: Logger;
}
