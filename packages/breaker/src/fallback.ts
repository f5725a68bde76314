import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, sendProblem, type Logger } from '@turnpike/core';
import type { Fallback, FallbackReason } from './types';

/** The response header that marks a fallback answer, with the reason as its value. */
export const FALLBACK_HEADER = 'X-Turnpike-Fallback';

/** Answers one request for a reason; never throws. */
export type Answer = (req: IncomingMessage, res: ServerResponse, reason: FallbackReason) => void;

const FALLBACK_FAILED = new GatewayError('ERR_TURNPIKE_INTERNAL', {
  detail: 'The fallback response failed.',
});

/**
 * Compiles a fallback once. A fixed response is serialised now, its headers for each reason
 * built now: an answer is a writeHead and an end. A function gets the marker header set
 * before it runs; one that throws or rejects is a 500 problem (or, once it has started the
 * response, a destroyed connection), logged, never a crash.
 */
export function compileFallback(fallback: Fallback, logger: Logger, name: string): Answer {
  if (typeof fallback === 'function') {
    const failed = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
      logger.error('fallback failed', {
        service: name,
        requestId: (req as { id?: string }).id,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      });
      if (res.headersSent) res.destroy();
      else {
        res.removeHeader(FALLBACK_HEADER);
        sendProblem(req, res, FALLBACK_FAILED);
      }
    };
    return (req, res, reason) => {
      try {
        if (!res.headersSent) {
          res.setHeader(FALLBACK_HEADER, reason);
          if (!res.hasHeader('x-content-type-options'))
            res.setHeader('X-Content-Type-Options', 'nosniff');
        }
        const result = fallback(req, res, reason) as PromiseLike<unknown> | undefined;
        if (typeof result?.then === 'function') {
          result.then(undefined, (err: unknown) => failed(req, res, err));
        }
      } catch (err) {
        failed(req, res, err);
      }
    };
  }
  const status = fallback.status ?? 200;
  const given = fallback.headers ?? {};
  let type: string | undefined;
  const base: [string, string][] = [];
  for (const [k, v] of Object.entries(given)) {
    if (k.toLowerCase() === 'content-type') type = v;
    if (k.toLowerCase() === 'content-length') continue;
    base.push([k, v]);
  }
  const raw = fallback.body;
  let body: Buffer;
  if (raw === undefined || raw === null) body = Buffer.alloc(0);
  else if (Buffer.isBuffer(raw)) {
    body = raw;
    type ??= 'application/octet-stream';
  } else if (typeof raw === 'string') {
    body = Buffer.from(raw);
    type ??= 'text/plain; charset=utf-8';
  } else {
    body = Buffer.from(JSON.stringify(raw));
    type ??= 'application/json';
  }
  const headers = (reason: FallbackReason): string[] => {
    const list: string[] = [];
    for (const [k, v] of base) list.push(k, v);
    if (type !== undefined && !base.some(([k]) => k.toLowerCase() === 'content-type')) {
      list.push('Content-Type', type);
    }
    const bodyless = status === 204 || status === 304;
    if (!bodyless) list.push('Content-Length', String(body.length));
    list.push(FALLBACK_HEADER, reason);
    if (!base.some(([k]) => k.toLowerCase() === 'cache-control'))
      list.push('Cache-Control', 'no-store');
    if (!base.some(([k]) => k.toLowerCase() === 'x-content-type-options'))
      list.push('X-Content-Type-Options', 'nosniff');
    return list;
  };
  const byReason: Record<FallbackReason, string[]> = {
    'circuit-open': headers('circuit-open'),
    overloaded: headers('overloaded'),
    'upstream-failure': headers('upstream-failure'),
  };
  return (req, res, reason) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    try {
      res.writeHead(status, byReason[reason]);
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      logger.error('fallback failed', { service: name, error: String(err) });
      res.destroy();
    }
  };
}

/** The 503 problem of a reason, with `Retry-After`, kept per value (there are few). */
export class RetryAfterErrors {
  private readonly cache = new Map<number, GatewayError>();

  constructor(private readonly code: 'ERR_TURNPIKE_CIRCUIT_OPEN' | 'ERR_TURNPIKE_OVERLOADED') {}

  get(seconds: number): GatewayError {
    let err = this.cache.get(seconds);
    if (err === undefined) {
      err = new GatewayError(this.code, { headers: { 'retry-after': String(seconds) } });
      if (this.cache.size < 1024) this.cache.set(seconds, err);
    }
    return err;
  }
}
