import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { silentLogger, type Logger } from '@turnpike/core';
import { dispatch } from './dispatch';
import { parseRouterOptions } from './options';
import { Listeners, Outcomes, type OutcomeListener } from './outcome';
import { Snapshot } from './snapshot';
import type {
  AttemptEvent,
  HedgeEvent,
  Middleware,
  RetryEvent,
  RouteInfo,
  RouterOptions,
  UnroutedEvent,
} from './types';

/** The router: an Express-compatible middleware plus WebSocket upgrades, outcomes, reload and shutdown. */
export interface TurnpikeRouter extends Middleware {
  /**
   * Routes a WebSocket upgrade whose `req.url` is relative to the mount, through the same
   * per-route chain as HTTP. `res` (from {@link createUpgradeResponse}) answers refusals.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, res?: ServerResponse): void;
  /**
   * Subscribes to every request's outcome (see {@link Outcome}); returns the disposer. Costs
   * nothing per request while no one listens.
   */
  onOutcome(listener: OutcomeListener): () => void;
  /** Subscribes to retries (a failed try and the next on its way); returns the disposer. */
  onRetry(listener: (event: RetryEvent) => void): () => void;
  /** Subscribes to hedges sent; returns the disposer. */
  onHedge(listener: (event: HedgeEvent) => void): () => void;
  /**
   * Subscribes to each upstream call as it is about to be sent (its headers can still be
   * set: trace context); returns the disposer. Costs nothing per call while no one listens.
   */
  onAttempt(listener: (event: AttemptEvent) => void): () => void;
  /**
   * Subscribes to the requests the router answers before a route takes them (a refused path,
   * 404, 405, a bad Host, too many headers); returns the disposer. They have no outcome.
   */
  onUnrouted(listener: (event: UnroutedEvent) => void): () => void;
  /**
   * Replaces the routes, services and stages in one step: the new options are validated and
   * compiled first (a ConfigError leaves everything as it was); requests in flight finish on
   * the old ones, which close once the last of them has ended. `logger` and `extensions`
   * stay those given at creation.
   */
  reload(options: RouterOptions): Promise<void>;
  /** Closes connection pools, open WebSockets and stages. */
  close(): Promise<void>;
  /** The compiled routes of the current snapshot, in configured order. */
  readonly routes: readonly RouteInfo[];
}

/**
 * Creates the router: the route table, path policy, header hygiene and the forwarder, all
 * compiled once into one snapshot. Use it alone (`app.use('/api', createRouter({...}))`) or
 * through `createGateway()`. Throws a ConfigError naming the field for options that cannot work.
 */
export function createRouter(options: RouterOptions): TurnpikeRouter {
  const first = parseRouterOptions(options);
  const logger: Logger = first.logger ?? silentLogger;
  const extensions = first.extensions;
  const outcomes = new Outcomes((err) =>
    logger.error('outcome listener failed', { error: String(err) }),
  );
  const onListenerError = (what: string) => (err: unknown) =>
    logger.error(`${what} listener failed`, { error: String(err) });
  const events = {
    retried: new Listeners<RetryEvent>(onListenerError('retry'), 'onRetry'),
    hedged: new Listeners<HedgeEvent>(onListenerError('hedge'), 'onHedge'),
    attempted: new Listeners<AttemptEvent>(onListenerError('attempt'), 'onAttempt'),
  };
  const unrouted = new Listeners<UnroutedEvent>(onListenerError('unrouted'), 'onUnrouted');
  const sockets = new Set<Duplex>();
  let current = new Snapshot(first, outcomes, logger, sockets, events, unrouted);
  let infos = Object.freeze(current.routes.map((r) => r.info));
  /** Snapshots a reload replaced whose requests are still in flight. */
  const retiring = new Set<Snapshot>();
  let closed = false;

  const router = function turnpikeRouter(
    req: IncomingMessage,
    res: ServerResponse,
    next?: (err?: unknown) => void,
  ): void {
    dispatch(current, req, res, undefined, undefined, next);
  } as unknown as TurnpikeRouter;

  router.upgrade = function upgrade(req, socket, head, res = createUpgradeResponse(req, socket)) {
    socket.on('error', onSocketError);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    dispatch(current, req, res, socket, head, undefined);
  };

  router.onOutcome = (listener) => outcomes.on(listener);
  router.onRetry = (listener) => events.retried.on(listener);
  router.onHedge = (listener) => events.hedged.on(listener);
  router.onAttempt = (listener) => events.attempted.on(listener);
  router.onUnrouted = (listener) => unrouted.on(listener);

  router.reload = async function reload(next) {
    if (closed) throw new Error('Turnpike: reload() after close()');
    const parsed = parseRouterOptions({ ...next, logger: first.logger, extensions });
    const snapshot = new Snapshot(parsed, outcomes, logger, sockets, events, unrouted);
    const old = current;
    current = snapshot;
    infos = Object.freeze(snapshot.routes.map((r) => r.info));
    retiring.add(old);
    await old.retire(true);
    retiring.delete(old);
  };

  router.close = async function close() {
    closed = true;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await Promise.all([current, ...retiring].map((s) => s.retire(false)));
  };

  Object.defineProperty(router, 'routes', { get: () => infos, enumerable: true });
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

function onSocketError(this: Duplex): void {
  this.destroy();
}
