import { GatewayError } from '@turnpike/core';
import type { OutcomeKind } from './outcome';

/** What an upstream failure means: its outcome kind and the error the client is answered. */
export interface UpstreamFailure {
  readonly kind: OutcomeKind;
  readonly error: GatewayError;
}

// Built once: an Error's stack capture is most of a failure's cost. The cause is kept in
// the outcome and the logs, never on the shared error.
const FAILED = new GatewayError('ERR_TURNPIKE_UPSTREAM_FAILED');
const TIMED_OUT = new GatewayError('ERR_TURNPIKE_UPSTREAM_TIMEOUT');

const entry = (kind: OutcomeKind, error: GatewayError): UpstreamFailure =>
  Object.freeze({ kind, error });

/** The deadline of the service passed. */
export const DEADLINE: UpstreamFailure = entry('timeout', TIMED_OUT);
/** A retry's per-try timeout passed before the head: a timeout of that try. */
export const PER_TRY: UpstreamFailure = entry('timeout', TIMED_OUT);
/** A status or coding the gateway does not forward. */
export const BAD_STATUS: UpstreamFailure = entry('bad-status', FAILED);
/** The connection broke. */
export const RESET: UpstreamFailure = entry('reset', FAILED);
const PROTOCOL = entry('protocol', FAILED);

/**
 * Upstream failure → outcome kind and gateway error: the one table, by error code (undici's
 * `UND_ERR_*`, Node's socket codes, llhttp's `HPE_*` and undici's HTTPParserError). Anything not listed is a 502 `reset`.
 */
const TABLE: Readonly<Record<string, UpstreamFailure>> = {
  ECONNREFUSED: entry('refused', FAILED),
  EHOSTUNREACH: entry('refused', FAILED),
  ENETUNREACH: entry('refused', FAILED),
  ENOTFOUND: entry('dns', FAILED),
  EAI_AGAIN: entry('dns', FAILED),
  UND_ERR_CONNECT_TIMEOUT: entry('connect-timeout', TIMED_OUT),
  ETIMEDOUT: entry('connect-timeout', TIMED_OUT),
  ECONNRESET: RESET,
  EPIPE: RESET,
  UND_ERR_SOCKET: RESET,
  UND_ERR_CLOSED: RESET,
  UND_ERR_DESTROYED: RESET,
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: PROTOCOL,
  UND_ERR_HEADERS_OVERFLOW: PROTOCOL,
  UND_ERR_INVALID_ARG: PROTOCOL,
  // undici asserts on a 101 without Connection: upgrade to a request that asked for none.
  ERR_ASSERTION: BAD_STATUS,
};

/** The outcome kind and gateway error for an upstream failure. */
export function upstreamFailure(err: unknown): UpstreamFailure {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  // undici's parser errors carry no code, Node's (the WebSocket handshake) an HPE_* one.
  if (code.startsWith('HPE_') || (err as Error | null)?.name === 'HTTPParserError') return PROTOCOL;
  // undici answers a 101 to a request that did not ask for an upgrade, and a 100 to one that
  // sent no Expect, as "bad upgrade" / "bad response" socket errors.
  if (code === 'UND_ERR_SOCKET' && (e?.message === 'bad upgrade' || e?.message === 'bad response'))
    return BAD_STATUS;
  return TABLE[code] ?? RESET;
}

/** The gateway error for an upstream failure (the table's answer, without the kind). */
export function upstreamError(err: unknown): GatewayError {
  return upstreamFailure(err).error;
}
