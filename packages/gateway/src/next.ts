import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, isGatewayError, sendProblem, type Logger } from '@turnpike/core';
import { assignRequestId } from '@turnpike/metrics';

/** The request as Express leaves it after a mount (set by the direct lane and upgrades too). */
export type MountedRequest = IncomingMessage & {
  originalUrl?: string;
  baseUrl?: string;
  id?: string;
};

/** What the router calls when it leaves a request: Express's `next`, in its own words. */
export type Next = (err?: unknown) => void;

/** Built once: an Error's stack capture costs more than the rest of the answer. */
const ROUTE_NOT_FOUND = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');

/** As Express reads next()'s argument: anything truthy but 'route' and 'router' is an error. */
export function isNextError(err: unknown): boolean {
  return Boolean(err) && err !== 'route' && err !== 'router';
}

/**
 * Answers an error given to next() where no Express error handler exists: a GatewayError with
 * its own status, anything else a 500 whose message is only logged.
 */
export function answerNextError(
  req: MountedRequest,
  res: ServerResponse,
  err: unknown,
  logger: Logger,
): void {
  if (!isGatewayError(err) || err.status >= 500) {
    logger.error('request failed', {
      requestId: req.id,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    });
  }
  sendProblem(req, res, err);
}

/**
 * The `next` of a gateway with nothing behind it (`listen()`, or the gateway called as a bare
 * request listener): leaving the gateway is a 404 problem, an error its problem.
 */
export function notFoundNext(req: MountedRequest, res: ServerResponse, logger: Logger): Next {
  return (err) => {
    if (isNextError(err)) answerNextError(req, res, err, logger);
    else sendProblem(req, res, ROUTE_NOT_FOUND);
  };
}

/** A 404 problem for a request that no one else can answer, with a request id as every answer of the gateway. */
export function sendNotFound(req: MountedRequest, res: ServerResponse): void {
  if (req.id === undefined) assignRequestId(req, res);
  sendProblem(req, res, ROUTE_NOT_FOUND);
}
