import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, sendProblem } from '@turnpike/core';
import { bearerAnswers, forbiddenRole, forbiddenScope } from './answers';
import type { AuthenticatedRequest } from './types';

type Next = (err?: unknown) => void;
export type RequireMiddleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

function checked(list: readonly string[], what: string): readonly string[] {
  if (list.length === 0 || !list.every((r) => typeof r === 'string' && r !== '')) {
    throw new ConfigError(what, 'one or more non-empty names', list);
  }
  return Object.freeze([...list]);
}

const UNAUTHENTICATED = bearerAnswers('api').missing;

/**
 * After an auth middleware: the identity must have at least one of `roles`, else 403
 * `forbidden`; no identity at all is a 401.
 */
export function requireRoles(...roles: string[]): RequireMiddleware {
  const wanted = checked(roles, 'requireRoles');
  const refused = forbiddenRole();
  return function turnpikeRequireRoles(req, res, next) {
    const auth = (req as AuthenticatedRequest).auth;
    if (auth === undefined) return sendProblem(req, res, UNAUTHENTICATED);
    if (wanted.some((r) => auth.roles.includes(r))) return next();
    sendProblem(req, res, refused);
  };
}

/**
 * After an auth middleware: the identity must have every one of `scopes`, else 403 with
 * `WWW-Authenticate: Bearer error="insufficient_scope"` naming them (RFC 6750 §3.1).
 */
export function requireScopes(...scopes: string[]): RequireMiddleware {
  const wanted = checked(scopes, 'requireScopes');
  const refused = forbiddenScope(wanted);
  return function turnpikeRequireScopes(req, res, next) {
    const auth = (req as AuthenticatedRequest).auth;
    if (auth === undefined) return sendProblem(req, res, UNAUTHENTICATED);
    if (wanted.every((s) => auth.scopes.includes(s))) return next();
    sendProblem(req, res, refused);
  };
}
