import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

const SAFE_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Gives the request its id: the client's `X-Request-ID` when it is safe (at most 128 of
 * `[A-Za-z0-9._-]`), a new UUID otherwise. Sets `req.id`, the header sent upstream and the
 * response header.
 */
export function assignRequestId(
  req: IncomingMessage & { id?: string },
  res: ServerResponse | undefined,
): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && SAFE_ID.test(given) ? given : randomUUID();
  req.id = id;
  req.headers['x-request-id'] = id;
  if (res !== undefined) res.setHeader('x-request-id', id);
  return id;
}

/**
 * {@link assignRequestId} as Express middleware: `app.use(requestId())` gives every request
 * `req.id` and an `X-Request-ID` response header (the client's, when it is safe).
 */
export function requestId(): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return function turnpikeRequestId(req, res, next) {
    assignRequestId(req, res);
    next();
  };
}
