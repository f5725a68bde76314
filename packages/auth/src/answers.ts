import { GatewayError } from '@turnpike/core';

/**
 * The 401 and 403 answers of one middleware, built once: a missing credential gets the
 * challenge alone, a bad one RFC 6750's `error="invalid_token"`. The reason is logged by the
 * caller, never sent.
 */
export interface Answers {
  readonly missing: GatewayError;
  readonly invalid: GatewayError;
}

/** `Bearer realm="api"`, and with `error="invalid_token"` (RFC 6750 §3). */
export function bearerAnswers(realm: string): Answers {
  const challenge = `Bearer realm="${realm}"`;
  return {
    missing: new GatewayError('ERR_TURNPIKE_UNAUTHENTICATED', {
      headers: { 'www-authenticate': challenge },
    }),
    invalid: new GatewayError('ERR_TURNPIKE_UNAUTHENTICATED', {
      headers: { 'www-authenticate': `${challenge}, error="invalid_token"` },
    }),
  };
}

/** An API key's challenge: no standard scheme exists; this names the header to send it in. */
export function apiKeyAnswers(realm: string, header: string): Answers {
  const e = new GatewayError('ERR_TURNPIKE_UNAUTHENTICATED', {
    headers: { 'www-authenticate': `ApiKey realm="${realm}", header="${header}"` },
  });
  return { missing: e, invalid: e };
}

/** A quoted-string of RFC 9110 may hold no `"` or `\`: realm names are checked to be tokens. */
export const REALM = /^[A-Za-z0-9 !#$%&'()*+,./:;<=>?@[\]^_`{|}~-]{1,64}$/;

/** The 403 of a role check, and of a scope check (RFC 6750 `insufficient_scope`, naming them). */
export function forbiddenRole(): GatewayError {
  return new GatewayError('ERR_TURNPIKE_FORBIDDEN');
}

export function forbiddenScope(scopes: readonly string[]): GatewayError {
  return new GatewayError('ERR_TURNPIKE_FORBIDDEN', {
    headers: {
      'www-authenticate': `Bearer error="insufficient_scope", scope="${scopes.join(' ')}"`,
    },
  });
}

const BRAND = Symbol.for('turnpike.AuthUnavailableError');

/**
 * Why a token could not be checked at all (the endpoint is down, slow, or answers nonsense):
 * the verifier rejects with it, distinct from a refusal (a string). The request gets a 503,
 * never a 401 and never through. The message is for the log; it never holds a secret or a token.
 */
export class AuthUnavailableError extends Error {
  override readonly name = 'AuthUnavailableError';
  readonly code = 'ERR_TURNPIKE_AUTH_UNAVAILABLE';
  readonly [BRAND] = true;
}

/** True for an {@link AuthUnavailableError}, also one made by another copy of this package. */
export function isAuthUnavailable(value: unknown): value is AuthUnavailableError {
  return (
    typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true
  );
}

/** The 503 of a credential that cannot be checked right now (an issuer, a key database down). */
export const UNAVAILABLE = new GatewayError('ERR_TURNPIKE_AUTH_UNAVAILABLE', {
  headers: { 'retry-after': '1' },
});
