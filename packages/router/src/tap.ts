import type { IncomingMessage } from 'node:http';
import { exchangeOf } from './exchange';

/**
 * The upstream's response head as the gateway writes it (hop-by-hop headers removed, the
 * route's transform applied), without this request's `X-Request-ID`. Headers that host
 * middleware or stages set on `res` before (`X-Powered-By`, a stage's `Set-Cookie`) are not
 * in it: they belong to this request, not to the response a cache would store.
 */
export interface TappedHead {
  readonly status: number;
  /** Name, value pairs as written (a repeated name comes once, with an array of values). */
  readonly headers: readonly (string | readonly string[])[];
}

/** Receives the body of one response, up to `maxBytes`. */
export interface TapSink {
  /** Largest body the sink takes; past it the sink is ended with `complete` false and fed no more. */
  readonly maxBytes: number;
  /** A chunk of the body, as written to the client. */
  write(chunk: Buffer): void;
  /** The end: `complete` is true only when the sink received the whole body of a complete response. */
  end(complete: boolean): void;
}

/** Called just before the upstream's response head is written; returns a sink for the body, or undefined. */
export type ResponseTap = (head: TappedHead, req: IncomingMessage) => TapSink | undefined;

/**
 * Taps the upstream response of this request (a cache stage on a miss calls it): the tap sees
 * the head the client gets and may return a size-bounded sink for the body. Returns false when
 * the request is not one the router forwards (no exchange, or already ended).
 */
export function tapResponse(req: IncomingMessage, tap: ResponseTap): boolean {
  const ex = exchangeOf(req);
  if (ex === undefined || ex.state === 'settled') return false;
  ex.tap = tap;
  return true;
}
