import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Middleware } from './types';

/** A composed route chain: runs the stages, then the terminal. */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What the chain calls when a stage fails. */
export type OnError = (req: IncomingMessage, res: ServerResponse, err: unknown) => void;

/**
 * Composes a route's stages and its terminal once, at creation. With no stages the terminal
 * is the chain itself. A stage may call `next(err)`, throw, or return a rejected promise (an
 * async Express 5 middleware): each ends in `onError`.
 */
export function compose(
  stages: readonly Middleware[],
  terminal: Handler,
  onError: OnError,
): Handler {
  if (stages.length === 0) return terminal;
  const list = [...stages];
  return function routeChain(req, res) {
    let i = 0;
    let ended = false;
    const next = (err?: unknown): void => {
      // A stage that calls next() twice must not send the request upstream twice.
      if (ended) return;
      if (err !== undefined && err !== null) {
        ended = true;
        return onError(req, res, err);
      }
      const stage = list[i++];
      if (stage === undefined) {
        ended = true;
        return terminal(req, res);
      }
      try {
        const result = stage(req, res, next) as unknown;
        if (result instanceof Promise) result.catch((e: unknown) => onError(req, res, e));
      } catch (e) {
        onError(req, res, e);
      }
    };
    next();
  };
}
