import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Middleware } from './types';

/** A composed route chain: runs the stages, then the terminal. */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What the chain calls when a stage fails. */
export type OnError = (req: IncomingMessage, res: ServerResponse, err: unknown) => void;

/** What the chain calls when a stage passes the request on with `next('route')` or `next('router')`. */
export type OnExit = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Composes a route's stages and its terminal once, at creation. With no stages the terminal
 * is the chain itself. A stage may call `next(err)`, throw, or return a rejected promise (an
 * async Express 5 middleware): each ends in `onError`. `next('route')` and `next('router')`
 * (Express's "skip the rest") end in `onExit`.
 */
export function compose(
  stages: readonly Middleware[],
  terminal: Handler,
  onError: OnError,
  onExit: OnExit = (req, res) => onError(req, res, new Error('next("route") from a stage')),
): Handler {
  if (stages.length === 0) return terminal;
  const list = [...stages];
  return function routeChain(req, res) {
    // Each stage gets a next() of its own that works once (as koa-compose): a stage calling
    // it twice cannot skip the stages after it or send the request upstream twice.
    let reached = -1;
    const step = (i: number, err: unknown): void => {
      if (i <= reached) return;
      reached = i;
      if (err !== undefined && err !== null) {
        reached = list.length;
        if (err === 'route' || err === 'router') return onExit(req, res);
        return onError(req, res, err);
      }
      const stage = list[i];
      if (stage === undefined) return terminal(req, res);
      try {
        const result = stage(req, res, (e?: unknown) => step(i + 1, e)) as unknown;
        if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
          (result as PromiseLike<unknown>).then(undefined, (e: unknown) => onError(req, res, e));
        }
      } catch (e) {
        onError(req, res, e);
      }
    };
    step(0, undefined);
  };
}
