/** Express middleware that proves who a request is: JWT (with JWKS), API keys; roles and scopes. */
export { jwtAuth, compileJwt, keyFits, bearerToken, authenticate } from './jwt';
export type { JwtAuthOptions, JwtAuthMiddleware, JwtVerifier } from './jwt';
export { JwksKeys } from './jwks';
export type { JwksSettings } from './jwks';
export { apiKeyAuth, apiKeyHeader, compileApiKey, hashApiKey, compileKeys } from './apikey';
export type { ApiKeyEntry, ApiKeyOptions, ApiKeyOwner, ApiKeyMiddleware } from './apikey';
export { requireRoles, requireScopes } from './require';
export type { RequireMiddleware } from './require';
export {
  bearerAnswers,
  apiKeyAnswers,
  forbiddenRole,
  forbiddenScope,
  REALM,
  AuthUnavailableError,
  isAuthUnavailable,
} from './answers';
export type { Answers } from './answers';
export { identityOf, compilePaths, names } from './claims';
export type {
  AuthIdentity,
  AuthMethod,
  AuthenticatedRequest,
  ClaimPaths,
  JwksOptions,
  JwtAlgorithm,
  JwtOptions,
} from './types';
export {
  introspectionAuth,
  compileIntrospection,
  type IntrospectionOptions,
  type IntrospectionAuthOptions,
  type IntrospectionAuthMiddleware,
  type IntrospectionVerifier,
} from './introspection';
export { ClaimsSigner } from './claims-header';
