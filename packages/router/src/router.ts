import { ServerResponse, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  GatewayError,
  isGatewayError,
  parseTarget,
  sendProblem,
  silentLogger,
  type Logger,
  type Target,
} from '@turnpike/core';
import { createAgents } from './agent';
import { BodyLimitStream, bufferStream, parsedBody } from './body';
import { compose, type Handler } from './chain';
import { Exchange, exchangeOf, setExchange } from './exchange';
import { createHygiene, hasDuplicateHost, responseHeaders, transformRequest } from './headers';
import { DEFAULTS, parseRouterOptions } from './options';
import { checkPath } from './path-policy';
import { createProxyServer, type ProxyCallOptions, type ProxyServer } from './proxy';
import { compileRoute, type CompiledRoute } from './route';
import { RouteTable } from './route-table';
import type { Middleware, RouteInfo, RoutedRequest, RouterOptions, ServiceOptions } from './types';
import { upstreamError } from './upstream-errors';

/**
 * The answers that carry nothing of the request, built once: an Error's stack capture costs
 * more than the rest of a rejection, and a flood of bad requests should not pay it each time.
 */
const PATH_REJECTED = new GatewayError('ERR_TURNPIKE_PATH_REJECTED');
const DUPLICATE_HOST = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', {
  detail: 'The request has more than one Host header.',
});
const ROUTE_NOT_FOUND = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');
const UPSTREAM_TIMEOUT = new GatewayError('ERR_TURNPIKE_UPSTREAM_TIMEOUT');
const BODY_TOO_LARGE = new GatewayError('ERR_TURNPIKE_BODY_TOO_LARGE');
const NO_TARGET = new GatewayError('ERR_TURNPIKE_NO_TARGET', { headers: { 'retry-after': '1' } });

/** The router: an Express-compatible middleware plus WebSocket upgrades and shutdown. */
export interface TurnpikeRouter extends Middleware {
  /**
   * Routes a WebSocket upgrade whose `req.url` is relative to the mount, through the same
   * per-route chain as HTTP. `res` (from {@link createUpgradeResponse}) answers refusals.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, res?: ServerResponse): void;
  /** Closes keep-alive sockets and open WebSockets. */
  close(): Promise<void>;
  /** The compiled routes, in configured order. */
  readonly routes: readonly RouteInfo[];
}

interface CompiledService {
  readonly name: string;
  readonly pick: (req: IncomingMessage) => Target | undefined;
  readonly timeoutMs: number;
  readonly optionsFor: (target: Target) => ProxyCallOptions;
  readonly close: () => void;
}

function compileService(name: string, s: ServiceOptions): CompiledService {
  const agents = createAgents({
    maxSockets: s.agent?.maxSockets ?? DEFAULTS.maxSockets,
    maxFreeSockets: s.agent?.maxFreeSockets ?? DEFAULTS.maxFreeSockets,
    freeSocketTimeoutMs: s.agent?.freeSocketTimeoutMs ?? DEFAULTS.freeSocketTimeoutMs,
    connectTimeoutMs: s.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
  });
  const changeOrigin = !(s.preserveHost ?? DEFAULTS.preserveHost);
  const cache = new WeakMap<Target, ProxyCallOptions>();
  const optionsFor = (target: Target): ProxyCallOptions => {
    let options = cache.get(target);
    if (options === undefined) {
      options = Object.freeze({
        target,
        agent: agents[target.protocol],
        changeOrigin,
        selfHandleResponse: true,
        toProxy: true,
        xfwd: false,
      });
      cache.set(target, options);
    }
    return options;
  };
  let pick: (req: IncomingMessage) => Target | undefined;
  if (typeof s.target === 'string') {
    const fixed = parseTarget(s.target, `services.${name}.target`);
    pick = function fixedTarget() {
      return fixed;
    };
  } else {
    pick = s.target;
  }
  return {
    name,
    pick,
    timeoutMs: s.timeoutMs ?? DEFAULTS.timeoutMs,
    optionsFor,
    close() {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}

/**
 * Creates the router: the route table, path policy, header hygiene and the proxy, all
 * compiled once. Use it alone (`app.use('/api', createRouter({...}))`) or through
 * `createGateway()`. Throws a ConfigError naming the field for options that cannot work.
 */
export function createRouter(options: RouterOptions): TurnpikeRouter {
  const opts = parseRouterOptions(options);
  const logger: Logger = opts.logger ?? silentLogger;
  const hygiene = createHygiene(opts);
  const services = new Map<string, CompiledService>();
  for (const [name, s] of Object.entries(opts.services))
    services.set(name, compileService(name, s));
  const sockets = new Set<Duplex>();

  // ---- failure paths ------------------------------------------------------------------

  /** Ends the exchange with an error: a problem response, or an unclean end once the head is out. */
  function fail(req: IncomingMessage, res: ServerResponse, ex: Exchange, err: GatewayError): void {
    if (ex.settled) return;
    ex.settled = true;
    if (ex.timer !== undefined) clearTimeout(ex.timer);
    ex.proxyReq?.destroy();
    // A body still arriving is no longer read (it was being piped upstream): the connection
    // cannot carry another request. A request without a body, or fully received, keeps it.
    if (!req.complete && hasBody(req)) res.shouldKeepAlive = false;
    sendProblem(req, res, err);
  }

  function onRouteError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const ex = exchangeOf(req);
    const known = isGatewayError(err);
    const gatewayError = known ? err : new GatewayError('ERR_TURNPIKE_INTERNAL', { cause: err });
    if (!known || gatewayError.status >= 500) {
      logger.error('route failed', {
        requestId: (req as RoutedRequest).id,
        route: ex?.route.info.name,
        error: errorText(err),
      });
    }
    if (ex) fail(req, res, ex, gatewayError);
    else sendProblem(req, res, gatewayError);
  }

  function onDeadline(res: ServerResponse): void {
    const req = res.req;
    const ex = exchangeOf(req);
    if (!ex) return;
    ex.timer = undefined;
    logger.warn('upstream deadline passed', {
      requestId: (req as RoutedRequest).id,
      route: ex.route.info.name,
    });
    fail(req, res, ex, UPSTREAM_TIMEOUT);
  }

  /**
   * The client's side closed: stop the deadline, and when the outcome was not decided yet
   * (response incomplete, handshake unanswered) abandon the upstream request.
   */
  function onClientGone(ex: Exchange): void {
    if (ex.timer !== undefined) clearTimeout(ex.timer);
    ex.timer = undefined;
    if (!ex.settled) {
      ex.settled = true;
      ex.proxyReq?.destroy();
    }
  }

  function onResClose(this: ServerResponse): void {
    const ex = exchangeOf(this.req);
    if (!ex) return;
    if (this.writableFinished) ex.settled = true; // complete: nothing to abandon
    onClientGone(ex);
  }

  function onProxyError(err: Error, req: IncomingMessage): void {
    const ex = exchangeOf(req);
    if (!ex || ex.settled) return;
    logger.warn('upstream request failed', {
      requestId: (req as RoutedRequest).id,
      route: ex.route.info.name,
      service: ex.route.service,
      code: (err as { code?: unknown }).code,
      error: err.message,
    });
    fail(req, ex.res, ex, upstreamError(err));
  }

  function onBodyTooLarge(req: IncomingMessage, res: ServerResponse): void {
    const ex = exchangeOf(req);
    if (!ex) return;
    // The rest of the body is not read: close the connection after the answer.
    res.shouldKeepAlive = false;
    fail(req, res, ex, BODY_TOO_LARGE);
  }

  // ---- proxy listeners (installed once) -------------------------------------------------

  const server: ProxyServer = createProxyServer({
    proxyReq(proxyReq: ClientRequest, req: IncomingMessage) {
      const ex = exchangeOf(req);
      if (!ex) return;
      if (ex.settled) return void proxyReq.destroy();
      ex.proxyReq = proxyReq;
      if (ex.path !== undefined) proxyReq.path = ex.path;
    },
    proxyReqWs(proxyReq: ClientRequest, req: IncomingMessage) {
      const ex = exchangeOf(req);
      if (!ex) return;
      if (ex.settled) return void proxyReq.destroy();
      ex.proxyReq = proxyReq;
      if (ex.path !== undefined) proxyReq.path = ex.path;
      // http-proxy writes a refusal's head verbatim and the 101 from the upstream's headers:
      // both go through the same response hygiene as HTTP instead. Its listeners are added
      // after this event, in the same tick; the answer cannot arrive before the next one.
      process.nextTick(takeOverHandshake, proxyReq, ex);
    },
    proxyRes: onProxyRes,
  });

  function onProxyRes(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse): void {
    const ex = exchangeOf(req);
    if (!ex || ex.settled || res.headersSent || res.destroyed) {
      proxyRes.destroy();
      return;
    }
    const status = proxyRes.statusCode ?? 0;
    if (status < 100 || status > 999) {
      // Node's parser takes any three digits; writeHead() would throw on "099".
      proxyRes.destroy();
      return onProxyError(
        Object.assign(new Error('invalid upstream status'), { code: 'HPE_INVALID_STATUS' }),
        req,
      );
    }
    // A body cut off by the upstream must reach the client as an unclean end.
    proxyRes.on('error', (err: Error) => onProxyError(err, req));
    try {
      res.writeHead(
        status,
        responseHeaders(proxyRes.rawHeaders, ex.route.responseHeaders, (req as RoutedRequest).id),
      );
    } catch (err) {
      proxyRes.destroy();
      return onProxyError(err as Error, req);
    }
    proxyRes.pipe(res);
  }

  function takeOverHandshake(proxyReq: ClientRequest, ex: Exchange): void {
    proxyReq.removeAllListeners('response');
    proxyReq.removeAllListeners('upgrade');
    proxyReq.on('response', (proxyRes: IncomingMessage) => onProxyRes(proxyRes, ex.req, ex.res));
    proxyReq.once('upgrade', (proxyRes: IncomingMessage, upstream: Socket, head: Buffer) =>
      onUpgraded(ex, proxyRes, upstream, head),
    );
  }

  /** The upstream accepted a WebSocket upgrade: answer 101 and join the two sockets. */
  function onUpgraded(
    ex: Exchange,
    proxyRes: IncomingMessage,
    upstream: Socket,
    head: Buffer,
  ): void {
    const client = ex.socket!;
    if (ex.settled || client.destroyed) {
      upstream.destroy();
      return;
    }
    ex.settled = true;
    if (ex.timer !== undefined) clearTimeout(ex.timer);
    ex.timer = undefined;
    // Tie the two lives together: a pipe only passes on a clean end.
    sockets.add(upstream);
    upstream.on('error', onSocketError);
    upstream.once('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.once('close', () => upstream.destroy());
    upstream.setTimeout(0);
    upstream.setNoDelay(true);
    if (head.length > 0) upstream.unshift(head);
    const headers = responseHeaders(
      proxyRes.rawHeaders,
      ex.route.responseHeaders,
      (ex.req as RoutedRequest).id,
    );
    let text = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n';
    text += `Upgrade: ${String(proxyRes.headers.upgrade ?? 'websocket')}\r\n`;
    for (let i = 0; i < headers.length; i += 2) {
      const value = headers[i + 1]!;
      for (const v of Array.isArray(value) ? value : [value])
        text += `${headers[i] as string}: ${v}\r\n`;
    }
    client.write(`${text}\r\n`);
    upstream.pipe(client).pipe(upstream);
  }

  function onUpgradeClientClose(this: Duplex): void {
    const ex = exchangeOf((this as Duplex & { [UPGRADE_REQ]?: IncomingMessage })[UPGRADE_REQ]!);
    if (ex) onClientGone(ex);
  }

  // ---- the terminal stage: the proxy --------------------------------------------------------

  function terminalFor(route: CompiledRoute): Handler {
    const service = services.get(route.service)!;
    const limit = route.bodyLimit;
    return function proxy(req, res) {
      const ex = exchangeOf(req)!;
      const h = req.headers;
      if (limit !== Infinity) {
        const length = h['content-length'];
        if (length !== undefined && Number(length) > limit) return onBodyTooLarge(req, res);
      }
      const target = service.pick(req);
      if (target === undefined) {
        return fail(req, res, ex, NO_TARGET);
      }
      if (route.rewrite !== undefined) {
        const url = req.url!;
        const q = url.indexOf('?');
        const path = q === -1 ? url : url.slice(0, q);
        req.url = route.rewrite(path, ex.segments) + (q === -1 ? '' : url.slice(q));
      }
      // http-proxy's URL join turns "http:/" inside a path into "http://": send the path as
      // checked. (The header is written lazily, so setting proxyReq.path in time works.)
      if (req.url!.indexOf(':/') !== -1) ex.path = target.path + req.url!;
      if (route.requestHeaders !== undefined) transformRequest(h, route.requestHeaders);
      const id = (req as RoutedRequest).id;
      if (id !== undefined) h['x-request-id'] = id;

      let options = service.optionsFor(target);
      if (req.readableEnded) {
        // A body parser ran before the gateway: send what it parsed.
        let body: Buffer;
        try {
          body = parsedBody(req);
        } catch (err) {
          return onRouteError(req, res, err);
        }
        if (body.length > limit) return onBodyTooLarge(req, res);
        options = { ...options, buffer: bufferStream(body) };
      } else if (limit !== Infinity && h['transfer-encoding'] !== undefined) {
        options = {
          ...options,
          buffer: req.pipe(new BodyLimitStream(limit, req, res, onBodyTooLarge)),
        };
      }

      ex.timer = setTimeout(onDeadline, service.timeoutMs, res);
      ex.timer.unref(); // the sockets keep the process up while the request is live
      const socket = ex.socket;
      if (socket !== undefined) {
        // The deadline bounds the handshake; it ends when the upstream answers 101.
        if (socket.destroyed) return onUpgradeClientClose.call(socket);
        socket.once('close', onUpgradeClientClose);
        server.ws(req, socket, ex.head, options, onProxyError);
        return;
      }
      res.on('close', onResClose); // res is this request's alone: no once() wrapper
      server.web(req, res, options, onProxyError);
    };
  }

  // ---- compile routes -------------------------------------------------------------------------

  const compiled: CompiledRoute[] = opts.routes.map((r, i) => compileRoute(r, i, opts.bodyLimit));
  const chains = new Map<CompiledRoute, Handler>();
  for (const route of compiled) {
    const stages = opts.stages ? opts.stages(route.info) : [];
    chains.set(route, compose(stages, terminalFor(route), onRouteError));
  }
  const table = new RouteTable(compiled);

  // ---- dispatch ---------------------------------------------------------------------------------

  function dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    upgrade: Exchange['socket'],
    head?: Buffer,
  ): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const raw = q === -1 ? url : url.slice(0, q);
    const path = checkPath(raw);
    if (path === undefined) return sendProblem(req, res, PATH_REJECTED);
    if (path !== raw) req.url = q === -1 ? path : path + url.slice(q);
    if (hasDuplicateHost(req)) return sendProblem(req, res, DUPLICATE_HOST);
    // Hygiene first: host and header matchers see only what the gateway vouches for.
    hygiene(req, upgrade !== undefined);
    const found = table.lookup(req.method ?? 'GET', path, req);
    if (
      found.kind === 'none' ||
      (found.kind === 'route' && upgrade !== undefined && !found.route.websocket)
    ) {
      return sendProblem(req, res, ROUTE_NOT_FOUND);
    }
    if (found.kind === 'method') {
      return sendProblem(
        req,
        res,
        new GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED', { headers: { allow: found.allow } }),
      );
    }
    const ex = new Exchange(found.route, found.segments, req, res);
    if (upgrade !== undefined) {
      ex.socket = upgrade;
      ex.head = head;
    }
    setExchange(req, ex);
    chains.get(found.route)!(req, res);
  }

  const router = function turnpikeRouter(req: IncomingMessage, res: ServerResponse): void {
    dispatch(req, res, undefined);
  } as unknown as TurnpikeRouter;

  router.upgrade = function upgrade(req, socket, head, res = createUpgradeResponse(req, socket)) {
    (socket as Duplex & { [UPGRADE_REQ]?: IncomingMessage })[UPGRADE_REQ] = req;
    socket.on('error', onSocketError);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    dispatch(req, res, socket, head);
  };

  router.close = async function close() {
    for (const s of services.values()) s.close();
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    server.close();
    await Promise.resolve();
  };

  Object.defineProperty(router, 'routes', {
    value: Object.freeze(compiled.map((r) => r.info)),
    enumerable: true,
  });
  return router;
}

/**
 * A response bound to an upgrade's raw socket, so that stages and problems answer a refused
 * upgrade the way they answer HTTP: status, headers, problem body, then the socket closes.
 */
export function createUpgradeResponse(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.assignSocket(socket as never);
  res.shouldKeepAlive = false;
  // End, then destroy once the end is written: a client that keeps its side open must not
  // hold the socket (the server no longer times it out after 'upgrade').
  res.once('finish', () => (socket as Socket).destroySoon());
  return res;
}

/** Whether the request carries a body (RFC 9112 §6.3: only Content-Length or Transfer-Encoding). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The upgrade request a client socket belongs to. */
const UPGRADE_REQ = Symbol('turnpike.upgradeRequest');

function onSocketError(this: Duplex): void {
  this.destroy();
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
