import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from '@turnpike/core';
import { HOST_LISTENERS } from './mount';
import { answerNextError, isNextError, sendNotFound, type MountedRequest, type Next } from './next';
import { assignRequestId } from '@turnpike/metrics';

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** What a lane hands a request to, relative to the mount: the router, or health checks in front of it. */
export type Handler = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

const SLASH = 47;
const QUESTION = 63;

/** The host's request listeners as one function, called as Node would call them. */
function hostOf(server: Server, listeners: readonly RequestListener[]): RequestListener {
  if (listeners.length === 0) return sendNotFound; // the host would never have answered
  if (listeners.length === 1) {
    const only = listeners[0]!;
    return (req, res) => only.call(server, req, res);
  }
  return (req, res) => {
    for (const listener of listeners) listener.call(server, req, res);
  };
}

/**
 * Puts the direct lane in front of a server: its request listeners are replaced by one
 * dispatcher that gives requests under `prefix` (the path, or the path followed by '/' or
 * '?') to the gateway, with `req.url` made relative and `originalUrl`/`baseUrl` set as Express
 * sets them, and every other request to the host's listeners, untouched. No Express on the
 * gateway's requests: no prototype swap, no layer walk. A request the router leaves (its
 * `next`) goes to the host's listeners with its URL restored and `left` set on it. Returns
 * the disposer that puts the host's listeners back where the dispatcher was.
 */
export function installDirect(
  server: Server,
  prefix: string,
  router: Handler,
  left: symbol,
  logger: Logger,
): () => void {
  const listeners = server.rawListeners('request') as RequestListener[];
  const host = hostOf(server, listeners);
  const length = prefix.length;
  let bypass = false;

  function serve(req: MountedRequest, res: ServerResponse, url: string): void {
    req.originalUrl = url;
    req.baseUrl = prefix;
    const rest = url.slice(length);
    req.url = rest === '' ? '/' : rest.charCodeAt(0) === QUESTION ? `/${rest}` : rest;
    assignRequestId(req, res);
    router(req, res, (err?: unknown) => {
      if (isNextError(err)) return answerNextError(req, res, err, logger);
      // Leaving the gateway (next(), next('route'), next('router')): the host gets the
      // request with the URL it arrived with. Marked, so that the gateway, mounted in the
      // host app too, passes it on instead of running it through its stages again.
      req.url = url;
      delete req.originalUrl;
      delete req.baseUrl;
      (req as unknown as Record<symbol, unknown>)[left] = true;
      host(req, res);
    });
  }

  const dispatch = function turnpikeDirect(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url!; // always set on a server's request
    if (!bypass && url.startsWith(prefix)) {
      if (url.length === length) return serve(req, res, url);
      const next = url.charCodeAt(length);
      if (next === SLASH || next === QUESTION) return serve(req, res, url);
    }
    host(req, res);
  };
  Object.defineProperty(dispatch, HOST_LISTENERS, { value: listeners });

  server.removeAllListeners('request');
  server.on('request', dispatch);

  return function restore() {
    bypass = true; // a copy kept elsewhere (another gateway's direct lane) passes everything on
    const now = server.rawListeners('request');
    if (!now.includes(dispatch)) return;
    server.removeAllListeners('request');
    for (const listener of now) {
      if (listener !== dispatch) server.on('request', listener as RequestListener);
      else for (const original of listeners) server.on('request', original);
    }
  };
}
