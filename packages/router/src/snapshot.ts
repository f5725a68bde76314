import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import {
  GatewayError,
  isGatewayError,
  sendProblem,
  type Listeners,
  type Logger,
} from '@turnpike/core';
import { compose, type Handler } from './chain';
import { exchangeOf, type Exchange } from './exchange';
import { answerError, forwarder, type ForwardContext } from './forward';
import { createHygiene } from './headers';
import type { ParsedRouterOptions } from './options';
import type { AttemptInfo, Outcome, OutcomeKind, Outcomes } from './outcome';
import type { CompiledRoute } from './route';
import { RouteTable } from './route-table';
import { compileService, type CompiledService } from './service';
import type { Middleware, RouteInfo, RoutedRequest, UnroutedEvent } from './types';
import { upgrader } from './websocket';

/** What a route runs once matched: its chain for HTTP, and one for WebSocket upgrades. */
export interface RouteChains {
  readonly http: Handler;
  readonly upgrade: Handler | undefined;
}

/** A stage with a `close()`: called when its snapshot is retired or the router closes. */
type Closable = Middleware & { close?: () => unknown };

const NO_ATTEMPTS: readonly never[] = Object.freeze([]);
const ROUTE_NOT_FOUND = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');

/**
 * One request's outcome, built once per request while someone listens. A class rather than a
 * literal so that `attempts` is made only when a listener reads it: most requests have one
 * attempt, and most listeners never ask for the list.
 */
class SettledOutcome implements Outcome {
  readonly route: RouteInfo;
  readonly service: string | undefined;
  readonly req: IncomingMessage;
  readonly status: number;
  readonly attempt: AttemptInfo | undefined;
  readonly retries: number;
  readonly hedges: number;
  readonly fallback: string | undefined;
  readonly durationMs: number;
  private readonly list: readonly AttemptInfo[] | undefined;

  constructor(
    ex: Exchange,
    readonly kind: OutcomeKind,
    readonly error: GatewayError | undefined,
    readonly cause: unknown,
  ) {
    const res = ex.res;
    this.route = ex.route.info;
    this.service = ex.route.service;
    this.req = ex.req;
    // Settled before a problem answer is written: that answer's status is the error's. A
    // complete response has had its head written (the common case skips the headersSent
    // getter, which Express's swapped prototype makes a slow lookup).
    this.status =
      kind === 'complete'
        ? res.statusCode
        : kind === 'upgraded'
          ? 101
          : res.headersSent
            ? res.statusCode
            : kind === 'client-gone' || error === undefined
              ? 0
              : error.status;
    this.attempt = ex.attempt;
    this.list = ex.attempts;
    this.retries = ex.retries;
    this.hedges = ex.hedges;
    this.fallback = ex.fallback;
    this.durationMs = performance.now() - ex.startedAt;
  }

  get attempts(): readonly AttemptInfo[] {
    return this.list ?? (this.attempt === undefined ? NO_ATTEMPTS : [this.attempt]);
  }
}

/** Runs a stage of the router's own on the request's exchange. */
function onExchange(stage: (ex: Exchange) => void): Handler {
  return function terminal(req) {
    const ex = exchangeOf(req)!;
    // Settled while the stages ran (the client left while one waited, e.g. a rate limit on
    // Redis): nothing goes upstream for a request no one waits for.
    if (ex.state === 'settled') return;
    stage(ex);
  };
}

/**
 * Everything compiled from one set of router options, frozen: the route table, hygiene,
 * services and each route's chains. The router reads its one current snapshot once per
 * request; a reload builds a new one (throwing before anything changes) and swaps it in,
 * while requests in flight finish on the old one, which closes once the last of them ends.
 */
export class Snapshot {
  readonly table: RouteTable<CompiledRoute>;
  readonly hygiene: ReturnType<typeof createHygiene>;
  readonly chains: ReadonlyMap<CompiledRoute, RouteChains>;
  readonly routes: readonly CompiledRoute[];
  private readonly services: ReadonlyMap<string, CompiledService>;
  private readonly stages: Closable[];
  private readonly methodErrors = new Map<string, GatewayError>();
  /** Requests matched on this snapshot and not settled yet. */
  private inflight = 0;
  /** Set once the snapshot is retired: releases it when called. */
  private onDrained: (() => void) | undefined = undefined;
  /** Resolves once released; set by the first retire(). */
  private released: Promise<void> | undefined = undefined;
  /** Whether the release waits for requests in flight and lets pools drain. */
  private graceful = true;

  constructor(
    readonly options: ParsedRouterOptions,
    private readonly outcomes: Outcomes,
    private readonly logger: Logger,
    sockets: Set<Duplex>,
    events: Pick<ForwardContext, 'retried' | 'hedged' | 'attempted'>,
    /** Hears the requests this snapshot answers before a route takes them. */
    readonly unrouted: Listeners<UnroutedEvent>,
  ) {
    this.hygiene = createHygiene(options);
    const services = new Map<string, CompiledService>();
    for (const [name, s] of Object.entries(options.services))
      services.set(name, compileService(name, s));
    this.services = services;
    const ctx: ForwardContext = { logger, bufferBytes: options.requestBuffer, ...events };
    const onError = (req: RoutedRequest, res: ServerResponse, err: unknown): void =>
      this.onRouteError(req, res, err);
    const onExit = (req: RoutedRequest, res: ServerResponse): void => this.onExit(req, res);
    this.routes = options.compiled;
    const chains = new Map<CompiledRoute, RouteChains>();
    const stages: Closable[] = [];
    this.stages = stages;
    try {
      this.build(ctx, sockets, services, chains, stages, onError, onExit);
    } catch (err) {
      // A stage factory threw: what was built so far is let go before the error goes on.
      void this.release(false);
      throw err;
    }
    this.chains = chains;
    this.table = new RouteTable(this.routes);
  }

  private build(
    ctx: ForwardContext,
    sockets: Set<Duplex>,
    services: ReadonlyMap<string, CompiledService>,
    chains: Map<CompiledRoute, RouteChains>,
    stages: Closable[],
    onError: (req: RoutedRequest, res: ServerResponse, err: unknown) => void,
    onExit: (req: RoutedRequest, res: ServerResponse) => void,
  ): void {
    const options = this.options;
    for (const route of this.routes) {
      const list = options.stages ? [...options.stages(route.info)] : [];
      stages.push(...list);
      const service = route.service === undefined ? undefined : services.get(route.service)!;
      const http = service ? forwarder(ctx, route, service) : this.handlerStage(route);
      const ws = service && route.websocket ? upgrader(ctx, route, service, sockets) : undefined;
      chains.set(route, {
        http: compose(list, onExchange(http), onError, onExit),
        upgrade: ws ? compose(list, onExchange(ws), onError, onExit) : undefined,
      });
    }
  }

  /** The 405 for an Allow list, built once per list. */
  methodError(allow: string): GatewayError {
    let err = this.methodErrors.get(allow);
    if (err === undefined) {
      err = new GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED', { headers: { allow } });
      this.methodErrors.set(allow, err);
    }
    return err;
  }

  /** A picker's attemptStarted/attemptEnded threw: logged; the request goes on. */
  pickerFailed(err: unknown): void {
    this.logger.error('target picker failed', { error: String(err) });
  }

  /** A request matched: it is in flight on this snapshot until its exchange settles. */
  enter(): void {
    this.inflight++;
  }

  /** Called by {@link Exchange.settle}, once per exchange: the outcome goes to the listeners. */
  report(ex: Exchange, kind: OutcomeKind, error: GatewayError | undefined, cause: unknown): void {
    this.inflight--;
    if (this.outcomes.listening) this.outcomes.emit(new SettledOutcome(ex, kind, error, cause));
    if (this.inflight === 0) this.onDrained?.();
  }

  /**
   * Stops this snapshot. Graceful (a reload): once its requests in flight have ended, its
   * pools close and its stages' close() run. Not graceful (the router's close): at once,
   * sockets destroyed.
   */
  retire(graceful: boolean): Promise<void> {
    if (this.released === undefined) {
      this.released = new Promise<void>((resolve) => {
        this.onDrained = () => {
          this.onDrained = undefined;
          void this.release(this.graceful).then(resolve);
        };
      });
    }
    // A close() while a reload's retirement still waits for its requests: now, not later.
    this.graceful &&= graceful;
    if (!this.graceful || this.inflight === 0) this.onDrained?.();
    return this.released;
  }

  private async release(graceful: boolean): Promise<void> {
    const jobs: Promise<unknown>[] = [];
    for (const s of this.services.values()) jobs.push(s.close(graceful));
    for (const stage of this.stages) {
      if (typeof stage.close !== 'function') continue;
      jobs.push(
        Promise.resolve()
          .then(() => stage.close!())
          .catch((err: unknown) => this.logger.error('stage close failed', { error: String(err) })),
      );
    }
    await Promise.all(jobs);
  }

  /** A `handler` route's terminal: the handler answers, with the route's stages in front. */
  private handlerStage(route: CompiledRoute): (ex: Exchange) => void {
    const handler = route.handler!;
    return (ex) => {
      ex.state = 'forwarding';
      const { req, res } = ex;
      const next = (err?: unknown): void => {
        if (err === undefined || err === null || err === 'route' || err === 'router') {
          this.onExit(req, res);
        } else this.onRouteError(req, res, err);
      };
      try {
        const result = handler(req, res, next) as unknown;
        if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
          (result as PromiseLike<unknown>).then(undefined, (e: unknown) =>
            this.onRouteError(req, res, e),
          );
        }
      } catch (e) {
        this.onRouteError(req, res, e);
      }
    };
  }

  /**
   * A stage (or a handler) passed the request on (`next('route')`, or a handler's `next()`):
   * it leaves the router for the host's next middleware, or a 404 where there is none.
   */
  private onExit(req: RoutedRequest, res: ServerResponse): void {
    const ex = exchangeOf(req);
    if (
      ex === undefined ||
      !ex.settle(ex.route.handler !== undefined && ex.state === 'forwarding' ? 'handled' : 'stage')
    )
      return;
    if (ex.exit !== undefined) ex.exit();
    else sendProblem(req, res, ROUTE_NOT_FOUND);
  }

  /** A stage failed (next(err), a throw, a rejected promise): one problem answer. */
  private onRouteError(req: RoutedRequest, _res: ServerResponse, err: unknown): void {
    const known = isGatewayError(err);
    const gatewayError = known ? err : new GatewayError('ERR_TURNPIKE_INTERNAL', { cause: err });
    const ex = exchangeOf(req);
    if (!known || gatewayError.status >= 500) {
      this.logger.error('route failed', {
        requestId: req.id,
        route: ex?.route.info.name,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      });
    }
    if (ex === undefined) return;
    const kind =
      ex.state === 'stages' ? 'stage' : ex.route.handler !== undefined ? 'handled' : 'rejected';
    if (ex.settle(kind, gatewayError, err)) answerError(ex, gatewayError);
  }
}
