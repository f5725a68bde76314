import type { IncomingMessage, ServerResponse } from 'node:http';
import { exchangeOf } from './exchange';

/**
 * Answers an upstream failure of one request instead of the router's problem: called when
 * every try failed (after retries) before the client got a response head, or when the
 * upstream answered with a status the stage asked for. It must answer `res` and not throw
 * (one that throws is answered with a 500 problem, logged).
 */
export type FailureAnswer = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Lets a stage answer this request's upstream failure itself (a fallback): `answer` runs
 * instead of the 502/504 problem, and instead of an upstream response whose status
 * `statuses` accepts (decided before its head is written; retries come first). The outcome
 * is still the upstream's kind, with `fallback: 'upstream-failure'` and the fallback's
 * status. Build `answer` and `statuses` once per route: calling this allocates nothing.
 * Returns false when the request is not one the router forwards (no exchange, or ended).
 */
export function answerFailure(
  req: IncomingMessage,
  answer: FailureAnswer,
  statuses?: (status: number) => boolean,
): boolean {
  const ex = exchangeOf(req);
  if (ex === undefined || ex.state === 'settled') return false;
  ex.onFailure = answer;
  ex.failureStatus = statuses;
  return true;
}

/**
 * Marks this request's outcome as answered by a fallback, for `reason` (a stage that answers
 * with one calls it before answering: `Outcome.fallback`). Returns false when the router is
 * not handling the request.
 */
export function markFallback(req: IncomingMessage, reason: string): boolean {
  const ex = exchangeOf(req);
  if (ex === undefined || ex.state === 'settled') return false;
  ex.fallback = reason;
  return true;
}
