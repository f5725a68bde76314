import jwt from 'jsonwebtoken';
import { ConfigError } from '@turnpike/core';
import type { AuthIdentity } from './types';

/**
 * Signs the identity for `claimsHeader`, once per identity while it stays fresh: a cached
 * token's identity is one object, so a hot token costs a WeakMap lookup, not an HMAC.
 */
export class ClaimsSigner {
  readonly name: string;
  private readonly secret: Buffer;
  private readonly ttlSec: number;
  private readonly signed = new WeakMap<AuthIdentity, { value: string; renewAt: number }>();

  constructor(
    o: { name: string; secret: string; ttlSec?: number },
    identityHeaders: ReadonlySet<string>,
    path = 'claimsHeader',
  ) {
    if (typeof o !== 'object' || o === null)
      throw new ConfigError(path, '{ name, secret, ttlSec? }', o);
    if (typeof o.name !== 'string' || !identityHeaders.has(o.name.toLowerCase())) {
      throw new ConfigError(
        `${path}.name`,
        'one of the identityHeaders (hygiene removes those from every client request, so no client can send its own)',
        o.name,
      );
    }
    const secret = typeof o.secret === 'string' ? Buffer.from(o.secret, 'utf8') : undefined;
    if (secret === undefined || secret.length < 32) {
      throw new ConfigError(`${path}.secret`, 'a secret of at least 32 bytes', '(hidden)');
    }
    const ttl = o.ttlSec ?? 60;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 3600) {
      throw new ConfigError(`${path}.ttlSec`, 'an integer from 1 to 3600', ttl);
    }
    this.name = o.name.toLowerCase();
    this.secret = secret;
    this.ttlSec = ttl;
  }

  sign(auth: AuthIdentity): string {
    const now = Date.now();
    const known = this.signed.get(auth);
    if (known !== undefined && now < known.renewAt) return known.value;
    const iat = Math.floor(now / 1000);
    // Never past the client's own token: its exp, when it has one, bounds ours.
    const tokenExp = auth.claims.exp;
    const exp =
      typeof tokenExp === 'number' ? Math.min(iat + this.ttlSec, tokenExp) : iat + this.ttlSec;
    const value = jwt.sign(
      {
        sub: auth.subject,
        roles: auth.roles,
        scopes: auth.scopes,
        consumer: auth.consumer,
        method: auth.method,
        iat,
        exp,
      },
      this.secret,
      { algorithm: 'HS256', issuer: 'turnpike' },
    );
    // Renewed at half its life: what goes upstream always has some left.
    this.signed.set(auth, { value, renewAt: now + ((exp - iat) * 1000) / 2 });
    return value;
  }
}
