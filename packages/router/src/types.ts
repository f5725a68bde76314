import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AttemptEnd, GatewayError, Logger, Target, TargetPicker } from '@turnpike/core';
import type { AttemptInfo } from './outcome';

/** An Express-style middleware; a per-route stage has this shape. */
export type Middleware = (
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

/**
 * Picks the upstream target for one attempt: a URL string; a function that gets the targets
 * earlier attempts of this request used, to skip them on a retry; or a {@link TargetPicker}
 * (a balancer), which also hears when each attempt starts and ends.
 */
export type TargetSource =
  string | ((req: IncomingMessage, tried: readonly Target[]) => Target | undefined) | TargetPicker;

/**
 * Retries of a service. Whatever is set, a try is retried only when the client has had no
 * byte of the response, the request body can be sent again (none, or buffered within
 * `bodyLimit`), the total deadline has time left, and the retry budget allows it. A try that
 * failed before any byte of the request was sent (refused, DNS, connect timeout) is retried
 * for any method; after bytes were sent only idempotent methods are (GET, HEAD, OPTIONS, PUT,
 * DELETE, TRACE), and others that carry an `Idempotency-Key` when `idempotencyKey` is set.
 */
export interface RetryOptions {
  /** Retries after the first try. Default 2. */
  attempts?: number;
  /** Upstream statuses retried (when the method allows it), decided before the head is written. Default [502, 503, 504]. */
  statuses?: readonly number[];
  /** Retry non-idempotent requests that carry an `Idempotency-Key` header. Default false. */
  idempotencyKey?: boolean;
  /** Largest request body replayed, in bytes; larger bodies stream once and are not retried. Default 65536. */
  bodyLimit?: number;
  /** Exponential backoff with full jitter: a random wait up to min(maxMs, baseMs × 2^(n-1)) before retry n. Default { baseMs: 25, maxMs: 250 }. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** A try with no response head after this many ms fails as a timeout (and may be retried). Default: none (the total deadline only). */
  perTryTimeoutMs?: number;
  /**
   * Retries and hedges of the service stay within `ratio` × its requests over the last
   * `windowMs`, plus `minPerSecond` × the window's seconds. Default { ratio: 0.2, minPerSecond: 5, windowMs: 10000 }.
   */
  budget?: { ratio?: number; minPerSecond?: number; windowMs?: number };
}

/** Hedged requests of a route: GET and HEAD only. */
export interface HedgeOptions {
  /** A second try goes to another target when the first has no response head after this many ms. Required. */
  afterMs: number;
  /** Most hedges per request, each after another `afterMs` without a head. Default 1. */
  maxHedges?: number;
}

/** A try failed and another is on its way (after `delayMs`). */
export interface RetryEvent {
  readonly service: string;
  readonly route: RouteInfo;
  readonly req: IncomingMessage;
  /** The target that failed. */
  readonly target: Target;
  /** How the try failed; `status` names an upstream status in `retries.statuses`. */
  readonly reason: AttemptEnd | 'status';
  /** The upstream status with reason `status`, else 0. */
  readonly status: number;
  /** Which retry this is: 1 for the first. */
  readonly retry: number;
  readonly delayMs: number;
}

/** An upstream call is about to be sent: its headers (`req.headers`) can still be set. */
export interface AttemptEvent {
  readonly service: string;
  readonly route: RouteInfo;
  readonly req: IncomingMessage;
  /** The call, before it is dispatched (its `end` and `status` come later). */
  readonly attempt: AttemptInfo;
}

/**
 * A request the router answered before any route took it: a path it refuses (400), no route
 * (404), a method the path's routes do not accept (405), a bad or duplicate Host, too many
 * headers (431), a transfer coding it does not understand (501).
 */
export interface UnroutedEvent {
  readonly req: IncomingMessage;
  readonly status: number;
  readonly error: GatewayError;
  /** From the router taking the request to its answer, in ms. */
  readonly durationMs: number;
}

/** A hedge was sent. */
export interface HedgeEvent {
  readonly service: string;
  readonly route: RouteInfo;
  readonly req: IncomingMessage;
  /** The target of the hedge. */
  readonly target: Target;
  /** Which hedge of the request this is: 1 for the first. */
  readonly hedge: number;
}

/** Header changes applied on the way through. Names are case-insensitive. */
export interface HeaderTransform {
  /** Headers removed. Default: none. */
  remove?: readonly string[];
  /** Headers set, replacing any value. Default: none. */
  set?: Readonly<Record<string, string>>;
  /** Values appended to any existing value. Default: none. */
  add?: Readonly<Record<string, string>>;
}

/** Connection pool limits, per target of a service (an undici Pool each). */
export interface AgentOptions {
  /** Connections open at once per target; requests beyond wait for one. Default 256. */
  maxSockets?: number;
  /** How long an idle connection is kept, in ms; keep it below the upstream's keep-alive timeout. Default 4000. */
  freeSocketTimeoutMs?: number;
}

/** How the proxy talks to one service. Shared with the gateway's service config. */
export interface ProxySettings {
  /**
   * Total deadline for one request, in ms: from the proxy stage (after the route's stages)
   * to the last byte of the response; a trickling upstream cannot outlive it. 504 before the
   * response head, an unclean end after it. For a WebSocket upgrade it bounds the handshake,
   * until the upstream's 101 (504 if it passes first); an open WebSocket has no deadline.
   * Default 30000.
   */
  timeoutMs?: number;
  /** Deadline for opening a connection to a target, in ms. Default 5000. */
  connectTimeoutMs?: number;
  /** Connection pool limits. Default: see {@link AgentOptions}. */
  agent?: AgentOptions;
  /** Send the client's `Host` upstream instead of the target's. Default false. */
  preserveHost?: boolean;
  /**
   * Retries, or false for none. Default (unset): one retry of a try that failed before any
   * byte was sent (refused, DNS, connect timeout), on another target, for any method; see
   * {@link RetryOptions}.
   */
  retries?: RetryOptions | false;
}

/** A service as the router sees it: where to send requests and how. */
export interface ServiceOptions extends ProxySettings {
  /** The target URL, or a function that picks one per request. Required. */
  target: TargetSource;
}

/**
 * One route. Packages that add per-route keys (`auth`, `rateLimit`, `cache` …) declare them
 * by module augmentation of this interface and validate them through
 * {@link RouterOptions.extensions}.
 */
export interface RouteOptions {
  /** Pattern relative to the mount: `/users`, `/users/:id`, `/files/*`, `/static/**`. Required. */
  path: string;
  /** The service that serves it. Required unless `handler` is given. */
  service?: string;
  /**
   * An Express-style handler that answers instead of a service (a local endpoint, or an
   * existing `createProxyMiddleware()` being migrated), with the route's stages in front.
   * Its `next()` (or `next('route')`) passes the request on to the host app. Default: none.
   */
  handler?: Middleware;
  /** Name for logs and metrics. Default: the path pattern. */
  name?: string;
  /** Methods served; HEAD comes with GET. Default: all. */
  methods?: readonly string[];
  /** Host matcher: exact name or `*.example.com`, or a list. Default: any host. */
  host?: string | readonly string[];
  /** Header matchers: exact value or RegExp. Default: none. */
  headers?: Readonly<Record<string, string | RegExp>>;
  /** Prefix removed from the path before forwarding, on a segment boundary. Default: none. */
  stripPrefix?: string;
  /** Path template for the forwarded path, from the route's params: `/v2/users/:id/**`. Default: none. */
  rewrite?: string;
  /** Header changes on the request sent upstream. Default: none. */
  requestHeaders?: HeaderTransform;
  /** Header changes on the response sent to the client. Default: none. */
  responseHeaders?: HeaderTransform;
  /** Largest request body in bytes, or false for no limit. Default: the router's `bodyLimit`. */
  bodyLimit?: number | false;
  /** Accept WebSocket upgrades on this route. Default false. */
  websocket?: boolean;
  /** Hedged requests (GET and HEAD), or false. Default: none. */
  hedge?: HedgeOptions | false;
}

/** Which proxies in front of the gateway are trusted for `X-Forwarded-*`. */
export type TrustProxy = false | number | readonly string[];

/** What a stage factory learns about the route it builds for. */
export interface RouteInfo {
  readonly index: number;
  readonly name: string;
  readonly path: string;
  /** The service, or undefined for a `handler` route. */
  readonly service: string | undefined;
  readonly options: Readonly<RouteOptions>;
}

/** Options of {@link createRouter}. */
export interface RouterOptions {
  /** The route table; order breaks ties between equally specific routes. Required. */
  routes: readonly RouteOptions[];
  /** Services by name. Required. */
  services: Readonly<Record<string, ServiceOptions>>;
  /** Trusted proxies in front of the gateway: false (none), a hop count, or a list of addresses/CIDRs. `true` is refused. Default false. */
  trustProxy?: TrustProxy;
  /** Headers only the gateway may set upstream; removed from every client request, `-`/`_` spellings alike. Default `['x-user-id', 'x-user-roles', 'x-consumer-id']`. */
  identityHeaders?: readonly string[];
  /** Default largest request body in bytes, or false for no limit. Default 10485760 (10 MiB). */
  bodyLimit?: number | false;
  /**
   * Builds the per-route stages that run between matching and the proxy (auth, limits,
   * cache, breaker). Called once per route at creation (and at each reload). A stage with a
   * `close()` method has it called when its router closes or its snapshot is replaced.
   * Default: none.
   */
  stages?: (route: RouteInfo) => readonly Middleware[];
  /** Headers a request may carry at most; more is answered 431. Default 100. */
  maxHeaderCount?: number;
  /**
   * Request bodies up to this many bytes are read whole before an upstream connection is
   * taken, so slow uploads hold no upstream socket (larger ones stream); 0 streams every
   * body at once. Default 65536.
   */
  requestBuffer?: number;
  /**
   * Client headers removed from every request (every `-`/`_` spelling): upstreams that honour
   * them would bypass the path and method policy. Default
   * `['x-original-url', 'x-rewrite-url', 'x-http-method-override']`.
   */
  stripHeaders?: readonly string[];
  /** Keys other packages add to routes and services, each with its own check. Default: none. */
  extensions?: RouterExtensions;
  /** Where proxy failures are logged. Default: silent. */
  logger?: Logger;
}

/** Checks for the keys a package adds to routes or services: each returns the normalised value or throws a ConfigError. */
export interface RouterExtensions {
  readonly route?: Readonly<Record<string, (value: unknown, path: string) => unknown>>;
  readonly service?: Readonly<Record<string, (value: unknown, path: string) => unknown>>;
}

/** A request augmented by the router. */
export type RoutedRequest = IncomingMessage & {
  id?: string;
  /** The client address the router computed from `trustProxy`: see {@link clientIp}. */
  clientIp?: string;
  body?: unknown;
  originalUrl?: string;
};
