import { GatewayError, type GatewayErrorCode } from '@turnpike/core';

/** Code of the error raised when opening a connection to a target takes too long. */
export const CONNECT_TIMEOUT = 'ETURNPIKE_CONNECT_TIMEOUT';

/**
 * Upstream failure → gateway error: the one table. Anything not listed (refused, reset,
 * DNS failure, a malformed response — llhttp's HPE_* codes) is a 502.
 */
const TABLE: Readonly<Record<string, GatewayErrorCode>> = {
  [CONNECT_TIMEOUT]: 'ERR_TURNPIKE_UPSTREAM_TIMEOUT',
  ETIMEDOUT: 'ERR_TURNPIKE_UPSTREAM_TIMEOUT',
};

/** The gateway error for an upstream failure; the cause is kept for logs only. */
export function upstreamError(err: unknown): GatewayError {
  const code = (err as { code?: unknown } | null)?.code;
  const mapped = typeof code === 'string' ? TABLE[code] : undefined;
  return new GatewayError(mapped ?? 'ERR_TURNPIKE_UPSTREAM_FAILED', { cause: err });
}
