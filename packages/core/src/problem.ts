import type { ServerResponse } from 'node:http';
import { GatewayError, isGatewayError } from './errors';
import type { RequestWithId } from './types';

/** The media type of every error response (RFC 9457). */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** The body of a problem response. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  requestId?: string;
  /** The W3C trace id of the request, when the gateway traces (`tracing`). */
  traceId?: string;
}

/** The problem body for an error; anything that is not a GatewayError becomes a generic 500. */
export function toProblem(error: unknown, requestId?: string, traceId?: string): ProblemBody {
  const e = isGatewayError(error) ? error : new GatewayError('ERR_TURNPIKE_INTERNAL');
  const body: ProblemBody = { type: e.type, title: e.title, status: e.status, detail: e.detail };
  if (requestId !== undefined) body.requestId = requestId;
  if (traceId !== undefined) body.traceId = traceId;
  return body;
}

/**
 * Writes `error` as an `application/problem+json` response. Anything that is not a GatewayError
 * is answered as a generic 500: its message never reaches the client. When the response has
 * already started, the connection is destroyed instead, so the client sees an unclean end
 * rather than a complete-looking short body. Every answer carries `X-Content-Type-Options:
 * nosniff` and `Cache-Control: no-store`.
 */
export function sendProblem(req: RequestWithId, res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const problem = toProblem(error, req.id, req.trace?.traceId);
  const payload = JSON.stringify(problem);
  const headers: Record<string, string | number> = {
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
  if (isGatewayError(error) && error.headers) Object.assign(headers, error.headers);
  res.writeHead(problem.status, headers);
  res.end(req.method === 'HEAD' ? undefined : payload);
}
