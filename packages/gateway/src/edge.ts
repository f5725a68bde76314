import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import compression from 'compression';
import cors from 'cors';
import helmet, { type HelmetOptions } from 'helmet';
import {
  ConfigError,
  array,
  boolean,
  join,
  number,
  object,
  string,
  type Check,
  type Logger,
} from '@turnpike/core';
import { checkPath, tapResponse, type Middleware, type RouteInfo } from '@turnpike/router';
import type { Handler } from './direct';
import { isNextError, type Next } from './next';

/**
 * The edge (DESIGN.md: `helmet → cors → compression`, gateway-wide): security headers, CORS
 * and response compression, with the helmet, cors and compression packages. It runs inside
 * the gateway's own request function, before the health endpoints and the router, so every
 * lane (Express, direct, listen()) has it. See docs/edge.md.
 *
 * Helmet and CORS headers are put on a response when its head is written (the edge wraps
 * `res.writeHead` once per request), not when the request arrives: the edge does not yet
 * know then whether the head will be the gateway's own answer or the upstream's, nor which
 * route (with `cors: false`) the request will take. Preflights are the exception: they are
 * answered when they arrive, before route matching and before auth.
 */

/** The gateway-wide `cors`. */
export interface CorsConfig {
  /**
   * The allowed origins, an exact allowlist: strings as browsers send them
   * (`'https://app.example.com'`, `'http://localhost:3000'`: scheme, host, a non-default
   * port; no path, no trailing `/`), RegExps anchored with `^…$`, or `'*'` for any origin
   * (not with `credentials: true`). At least one. Required.
   */
  origins: readonly (string | RegExp)[];
  /** `Access-Control-Allow-Methods` of a preflight. Default `GET,HEAD,PUT,PATCH,POST,DELETE`. */
  methods?: readonly string[];
  /** `Access-Control-Allow-Headers` of a preflight. Default: the headers the preflight asks for. */
  allowedHeaders?: readonly string[];
  /** `Access-Control-Expose-Headers`. Default: none. */
  exposedHeaders?: readonly string[];
  /** `Access-Control-Allow-Credentials: true` (cookies, `Authorization`). Default false. */
  credentials?: boolean;
  /** `Access-Control-Max-Age` of a preflight, in seconds. Default: none (the browser's, 5 s). */
  maxAgeSec?: number;
}

/**
 * The gateway-wide `helmet`: true (helmet's defaults), false (none), or helmet's options
 * plus `proxied` (also on proxied responses, the upstream's own headers winning).
 */
export type HelmetConfig = boolean | (HelmetOptions & { proxied?: boolean });

/** A route's `compress`: true (threshold 1024 bytes), false, or `{ thresholdBytes }`. */
export type RouteCompress = boolean | { thresholdBytes?: number };

type WriteHead = (this: ServerResponse, ...args: unknown[]) => ServerResponse;

/** On `res`: the `writeHead` the edge's wraps (the prototype's, a host middleware's, compression's). */
const INNER = Symbol('turnpike.edge.writeHead');
/** On `res`: the request left the gateway for the host app; the edge leaves its response alone. */
const LEFT = Symbol('turnpike.edge.left');
/** On `req`: the head being written is the upstream's (the router's response tap fired). */
const UPSTREAM = Symbol('turnpike.edge.upstream');
/** On `req`: CORS for this request is off (the route's `cors: false`) or already done (a preflight). */
const CORS_STATE = Symbol('turnpike.edge.cors');
/** On `req`: a preflight the edge left to the route (its path may be a `cors: false` route's). */
const DEFERRED = Symbol('turnpike.edge.preflight');

const CORS_OFF = 1;
const CORS_DONE = 2;

type EdgeResponse = ServerResponse & { [INNER]?: WriteHead; [LEFT]?: true };
type EdgeRequest = IncomingMessage & {
  [UPSTREAM]?: boolean;
  [CORS_STATE]?: number;
  [DEFERRED]?: true;
};

/** An error for a log line. */
function describeError(err: unknown): string {
  return err instanceof Error
    ? `${err.name}: ${err.message}`
    : typeof err === 'string'
      ? err
      : 'unknown';
}

/** The `writeHead` a response has now (its own, a wrapper's, or the prototype's), to call later with `res` as `this`. */
function writeHeadOf(res: ServerResponse): WriteHead {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- kept, and called on res
  return res.writeHead as unknown as WriteHead;
}

/** What the packages' middleware (synchronous with these options) is called with as `next`. */
const NOOP = (): void => {};

/** Access-Control-* response headers: the gateway's alone while its CORS applies to a response. */
const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-expose-headers',
  'access-control-max-age',
  'access-control-allow-private-network',
];
const VARY_ORIGIN = /(?:^|,)\s*(?:origin|\*)\s*(?:,|$)/i;
const EVENT_STREAM = /^\s*text\/event-stream\s*(?:;|$)/i;

// ---------------------------------------------------------------------------------------------
// Config checks
// ---------------------------------------------------------------------------------------------

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Whether a RegExp source is anchored as a whole: `^` first, an unescaped `$` last, and no
 * `|` outside a group or class (`^a|b$` matches any origin that starts with `a`).
 */
function anchored(source: string): boolean {
  if (!source.startsWith('^') || !source.endsWith('$')) return false;
  let slashes = 0;
  for (let i = source.length - 2; i >= 0 && source[i] === '\\'; i--) slashes++;
  if (slashes % 2 === 1) return false;
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return false;
  }
  return true;
}

const ORIGIN_EXPECTED =
  'an origin exactly as browsers send it: "scheme://host[:port]" (http or https, lower case, ' +
  'no default port, no path, no trailing "/"), "*", or an anchored RegExp';

const originCheck: Check<string | RegExp> = (value, path) => {
  if (value instanceof RegExp) {
    if (value.global || value.sticky) {
      throw new ConfigError(
        path,
        'a RegExp without the g or y flag (they make test() stateful)',
        value,
      );
    }
    if (!anchored(value.source)) {
      throw new ConfigError(
        path,
        'an anchored RegExp: ^ at the start and $ at the end of the whole pattern (alternatives ' +
          'in a group), so that no other origin can contain a match',
        value,
        '/^https:\\/\\/(?:app|admin)\\.example\\.com$/',
      );
    }
    return value;
  }
  if (value === '*') return value;
  let url: URL | undefined;
  if (typeof value === 'string') {
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
  }
  if (
    url === undefined ||
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    url.origin !== value
  ) {
    throw new ConfigError(path, ORIGIN_EXPECTED, value, '"https://app.example.com"');
  }
  return value;
};

const methodCheck = string({
  pattern: /^[A-Z]+$/,
  expected: 'an upper-case HTTP method, e.g. "GET"',
});
const headerNameCheck = string({
  pattern: /^(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/,
  expected: 'a header name (an HTTP token), e.g. "X-Request-ID"',
});

const corsShape = object<CorsConfig>(
  {
    origins: array(originCheck, { min: 1 }),
    methods: array(methodCheck, { min: 1 }),
    allowedHeaders: array(headerNameCheck),
    exposedHeaders: array(headerNameCheck),
    credentials: boolean,
    maxAgeSec: number({ min: 0, max: 86400, integer: true }),
  },
  ['origins'],
);

/** The top-level `cors`: an object with `origins`, or false. */
export const corsCheck: Check<CorsConfig | false> = (value, path) => {
  if (value === false) return false;
  if (!isPlainObject(value)) {
    throw new ConfigError(
      path,
      'false, or an object with origins',
      value,
      "cors: { origins: ['https://app.example.com'] }",
    );
  }
  const parsed = corsShape(value, path);
  if (parsed.credentials === true) {
    // The browser refuses a wildcard with credentials: listed names only.
    const lists = [
      ['origins', parsed.origins],
      ['methods', parsed.methods],
      ['allowedHeaders', parsed.allowedHeaders],
      ['exposedHeaders', parsed.exposedHeaders],
    ] as const;
    for (const [key, list] of lists) {
      const i = list?.indexOf('*') ?? -1;
      if (i !== -1) {
        throw new ConfigError(
          `${join(path, key)}[${i}]`,
          `a listed value, not "*": with credentials: true a browser does not take "*" (list the ${key})`,
          '*',
        );
      }
    }
  }
  return parsed;
};

/** Helmet's options that take no settings: only true or false (helmet would warn on an object). */
const HELMET_SWITCHES = [
  'originAgentCluster',
  'xContentTypeOptions',
  'noSniff',
  'xDownloadOptions',
  'ieNoOpen',
  'xPoweredBy',
  'hidePoweredBy',
  'xXssProtection',
  'xssFilter',
];
/** Helmet's options that take true, false or their settings. */
const HELMET_SETTINGS = [
  'contentSecurityPolicy',
  'crossOriginEmbedderPolicy',
  'crossOriginOpenerPolicy',
  'crossOriginResourcePolicy',
  'referrerPolicy',
  'strictTransportSecurity',
  'hsts',
  'xDnsPrefetchControl',
  'dnsPrefetchControl',
  'xFrameOptions',
  'frameguard',
  'xPermittedCrossDomainPolicies',
  'permittedCrossDomainPolicies',
];

/** Builds helmet's middleware, a ConfigError at `path` for options it refuses. */
function buildHelmet(options: HelmetOptions, path: string, value: unknown): Middleware {
  try {
    return helmet(options);
  } catch (err) {
    throw new ConfigError(
      path,
      `options helmet accepts (helmet says: ${err instanceof Error ? err.message : String(err)})`,
      value,
    );
  }
}

/** The top-level `helmet`: true, false, or helmet's options plus `proxied`. */
export const helmetCheck: Check<HelmetConfig> = (value, path) => {
  if (typeof value === 'boolean') return value;
  if (!isPlainObject(value)) {
    throw new ConfigError(path, "true, false, or helmet's options with proxied", value);
  }
  for (const key of Object.keys(value)) {
    const given = value[key];
    const at = join(path, key);
    if (key === 'proxied' || HELMET_SWITCHES.includes(key)) {
      boolean(given, at);
    } else if (!HELMET_SETTINGS.includes(key)) {
      throw new ConfigError(
        at,
        `a known key (proxied, or one of helmet's: ${[...HELMET_SETTINGS, ...HELMET_SWITCHES].join(', ')})`,
        key,
      );
    } else if (given !== undefined && typeof given !== 'boolean' && !isPlainObject(given)) {
      throw new ConfigError(at, `true, false, or helmet's settings of ${key}`, given);
    } else if (given !== undefined) {
      buildHelmet({ [key]: given }, at, given); // names the key helmet refuses
    }
  }
  const { proxied: _proxied, ...options } = value as HelmetOptions & { proxied?: boolean };
  buildHelmet(options, path, value); // what helmet refuses only together (hsts and strictTransportSecurity)
  return { ...(value as HelmetOptions & { proxied?: boolean }) };
};

/** A route's `cors`: true (the gateway's, the default) or false (none on this route). */
export const routeCorsCheck: Check<boolean> = boolean;

const compressShape = object<{ thresholdBytes?: number }>({
  thresholdBytes: number({ min: 0, max: 1073741824, integer: true }),
});

/** A route's `compress`. */
export const routeCompressCheck: Check<RouteCompress> = (value, path) => {
  if (typeof value === 'boolean') return value;
  if (!isPlainObject(value)) {
    throw new ConfigError(path, 'true, false, or { thresholdBytes }', value, 'compress: true');
  }
  return compressShape(value, path);
};

// ---------------------------------------------------------------------------------------------
// Per request
// ---------------------------------------------------------------------------------------------

/** `Vary: Origin` added to what the response varies on already (none of it lost). */
function varyOrigin(res: ServerResponse): void {
  const vary = res.getHeader('vary');
  if (vary === undefined) res.setHeader('Vary', 'Origin');
  else {
    const value = Array.isArray(vary) ? vary.join(', ') : String(vary);
    if (!VARY_ORIGIN.test(value))
      res.setHeader('Vary', value === '' ? 'Origin' : `${value}, Origin`);
  }
}

/**
 * Puts a `writeHead` argument's headers on `res` as Node 20's writeHead does when headers were
 * set before: each name of a list (name, value, …) or key of an object set, replacing what
 * `res` had. The router's lists give a repeated name once, with all its values (Set-Cookie).
 */
function applyHeaders(res: ServerResponse, headers: unknown): void {
  if (Array.isArray(headers)) {
    const list = headers as (string | string[])[];
    for (let i = 0; i < list.length; i += 2) res.setHeader(list[i] as string, list[i + 1]!);
  } else if (typeof headers === 'object' && headers !== null) {
    const object = headers as OutgoingHttpHeaders;
    for (const name of Object.keys(object)) {
      const value = object[name];
      if (value !== undefined) res.setHeader(name, value);
    }
  }
}

/** The response tap of a forwarded request: it fires just before the upstream's head is written. */
function markUpstream(_head: unknown, req: IncomingMessage): undefined {
  (req as EdgeRequest)[UPSTREAM] = true;
  return undefined;
}

/** Marks a forwarded request so that the head written for the upstream's response is known. */
const markUpstreamStage: Middleware = function turnpikeEdgeUpstream(req, _res, next) {
  tapResponse(req, markUpstream);
  next();
};

/** A route's `cors: false`: the gateway writes no CORS header on its responses. */
const corsOffStage: Middleware = function turnpikeEdgeCorsOff(req, _res, next) {
  (req as EdgeRequest)[CORS_STATE] = CORS_OFF;
  next();
};

/** Whether a request is a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
function isPreflight(req: IncomingMessage): boolean {
  const h = req.headers;
  return (
    req.method === 'OPTIONS' &&
    h.origin !== undefined &&
    h['access-control-request-method'] !== undefined
  );
}

/** A route pattern matcher (`patternMatches` of config.ts). */
export type PatternMatcher = (pattern: string, path: string) => boolean;

/** The edge of one gateway: everything compiled at creation, one wrapper function for every request. */
export class Edge {
  /** Whether the edge wraps requests at all (helmet or CORS on). */
  private readonly active: boolean;
  private readonly helmet: Middleware | undefined;
  private readonly helmetProxied: boolean;
  private readonly cors: boolean;
  private readonly anyOrigin: boolean;
  private readonly exact: ReadonlySet<string>;
  private readonly patterns: readonly RegExp[];
  /** The cors package, answering a preflight. */
  private readonly corsPreflight: Middleware | undefined;
  /** The cors package, setting its headers on any other request (an OPTIONS too) and going on. */
  private readonly corsContinue: Middleware | undefined;
  /** With `cors: false` routes: whether a preflight's path may be one of theirs. */
  private readonly deferral: ((req: IncomingMessage) => boolean) | undefined;
  /** The `res.writeHead` of every request the edge wraps. */
  readonly writeHead: WriteHead;
  private readonly compressors = new Map<number, Middleware>();

  constructor(
    corsConfig: CorsConfig | false | undefined,
    helmetConfig: HelmetConfig | undefined,
    routes: readonly { path: string; cors?: boolean }[],
    matches: PatternMatcher,
    logger: Logger,
  ) {
    const h = helmetConfig ?? true;
    if (h === false) {
      this.helmet = undefined;
      this.helmetProxied = false;
    } else {
      const { proxied = false, ...options } = h === true ? {} : h;
      this.helmet = buildHelmet(options, 'helmet', h);
      this.helmetProxied = proxied;
    }
    this.cors = corsConfig !== undefined && corsConfig !== false;
    const c: CorsConfig = this.cors ? (corsConfig as CorsConfig) : { origins: [] };
    this.anyOrigin = c.origins.includes('*');
    this.exact = new Set(c.origins.filter((o): o is string => typeof o === 'string'));
    this.patterns = c.origins.filter((o): o is RegExp => o instanceof RegExp);
    if (this.cors) {
      // The allowlist is the edge's (above): the cors package is only called for an allowed
      // origin, and reflects it (or answers `*`). Called for a disallowed one it would still
      // send Allow-Methods, Allow-Headers and Allow-Credentials.
      const options: cors.CorsOptions = {
        origin: this.anyOrigin && c.credentials !== true ? '*' : true,
        credentials: c.credentials === true,
        optionsSuccessStatus: 204,
      };
      if (c.methods !== undefined) options.methods = [...c.methods];
      if (c.allowedHeaders !== undefined) options.allowedHeaders = [...c.allowedHeaders];
      if (c.exposedHeaders !== undefined) options.exposedHeaders = [...c.exposedHeaders];
      if (c.maxAgeSec !== undefined) options.maxAge = c.maxAgeSec;
      this.corsPreflight = cors({ ...options, preflightContinue: false }) as Middleware;
      // An OPTIONS that is not a preflight goes on to its route: cors's headers, no answer.
      this.corsContinue = cors({ ...options, preflightContinue: true }) as Middleware;
    }
    const off = this.cors ? routes.filter((r) => r.cors === false).map((r) => r.path) : [];
    this.deferral =
      off.length === 0
        ? undefined
        : (req) => {
            const url = req.url ?? '/';
            const q = url.indexOf('?');
            const path = checkPath(q === -1 ? url : url.slice(0, q));
            // A path the router refuses goes to it for its answer.
            return path === undefined || off.some((pattern) => matches(pattern, path));
          };
    this.active = this.helmet !== undefined || this.cors;

    const applyCors = this.applyCors;
    const helmetMw = this.helmet;
    const helmetProxied = this.helmetProxied;
    const corsOn = this.cors;
    const onHelmetError = (err?: unknown): void => {
      if (err !== undefined) logger.error('helmet failed', { error: describeError(err) });
    };
    // One function for every request: what it needs is on req and res.
    this.writeHead = function turnpikeEdgeWriteHead(this: ServerResponse, ...args: unknown[]) {
      const res = this as EdgeResponse;
      const inner = res[INNER]!;
      if (res[LEFT] === true || res.headersSent) return inner.apply(res, args);
      const req = res.req as EdgeRequest;
      const upstream = req[UPSTREAM] === true;
      if (helmetMw !== undefined && (helmetProxied || !upstream)) helmetMw(req, res, onHelmetError);
      const state = corsOn ? (req[CORS_STATE] ?? 0) : CORS_OFF;
      try {
        if (state === CORS_OFF) return inner.apply(res, args); // its headers over helmet's
        if (state === CORS_DONE) {
          varyOrigin(res); // a preflight: the cors package set the rest
          return inner.apply(res, args);
        }
        // The gateway's CORS owns the Access-Control-* headers: an upstream's or a handler's
        // are dropped (an upstream's `*` would undo the allowlist), then the edge's set.
        const headerAt = typeof args[1] === 'string' ? 2 : 1;
        applyHeaders(res, args[headerAt]);
        for (const name of CORS_HEADERS) if (res.hasHeader(name)) res.removeHeader(name);
        applyCors(req, res);
        return headerAt === 2 ? inner.call(res, args[0], args[1]) : inner.call(res, args[0]);
      } catch (err) {
        req[UPSTREAM] = false; // the gateway answers instead (a 502)
        throw err;
      }
    };
  }

  /** Whether CORS allows this origin. */
  private readonly allows = (origin: string): boolean => {
    if (this.anyOrigin || this.exact.has(origin)) return true;
    for (const re of this.patterns) if (re.test(origin)) return true;
    return false;
  };

  /** CORS headers of a response that is not a preflight; `Vary: Origin` always. */
  private readonly applyCors = (req: IncomingMessage, res: ServerResponse): void => {
    varyOrigin(res);
    const origin = req.headers.origin;
    if (origin === undefined || !this.allows(origin)) return;
    this.corsContinue!(req, res, NOOP);
  };

  /**
   * Answers a preflight: 204 with the cors package's headers for an allowed origin; a plain
   * 204 without any Access-Control-* header for another (the browser then refuses the call).
   */
  private readonly preflight = (req: IncomingMessage, res: ServerResponse): void => {
    (req as EdgeRequest)[CORS_STATE] = CORS_DONE;
    if (this.allows(req.headers.origin!)) return this.corsPreflight!(req, res, NOOP);
    res.statusCode = 204;
    res.setHeader('Content-Length', '0');
    res.end();
  };

  /**
   * The lanes' handler with the edge in front: `res.writeHead` wrapped, preflights answered.
   * With `leaves`, a request the gateway passes on (`next()`, `next('route')`) goes to the
   * host app without the edge's headers. Without helmet and CORS it is `inner` itself.
   */
  handler(inner: Handler, leaves: boolean): Handler {
    if (!this.active) return inner;
    const preflight = this.preflight;
    const writeHead = this.writeHead as ServerResponse['writeHead'];
    const corsOn = this.cors;
    const deferral = this.deferral;
    return function turnpikeEdge(req, res, next) {
      (res as EdgeResponse)[INNER] = writeHeadOf(res);
      res.writeHead = writeHead;
      if (corsOn && isPreflight(req)) {
        if (deferral === undefined || !deferral(req)) return preflight(req, res);
        (req as EdgeRequest)[DEFERRED] = true;
      }
      inner(req, res, leaves ? leaving(res, next) : next);
    };
  }

  /** The stages the edge adds in front of a route's others. */
  stagesFor(route: RouteInfo): Middleware[] {
    const options = route.options as { cors?: boolean; compress?: RouteCompress };
    const stages: Middleware[] = [];
    if (this.cors) {
      if (options.cors === false) stages.push(corsOffStage);
      else if (this.deferral !== undefined) stages.push(this.deferredPreflight);
    }
    if (this.helmet !== undefined && !this.helmetProxied && route.service !== undefined) {
      stages.push(markUpstreamStage);
    }
    const compress = options.compress;
    if (compress !== undefined && compress !== false) {
      stages.push(this.compressor(compress === true ? 1024 : (compress.thresholdBytes ?? 1024)));
    }
    return stages;
  }

  /** On a route with CORS, a preflight the edge left to routing (its path is also a `cors: false` route's). */
  private readonly deferredPreflight: Middleware = (req, res, next) => {
    if ((req as EdgeRequest)[DEFERRED] === true) return this.preflight(req, res);
    next();
  };

  /** The compression stage of a threshold, built once per threshold. */
  private compressor(threshold: number): Middleware {
    const known = this.compressors.get(threshold);
    if (known !== undefined) return known;
    const mw = compression({ threshold, filter: compressible }) as unknown as Middleware;
    const writeHead = this.writeHead as ServerResponse['writeHead'];
    const stage: Middleware = function turnpikeCompress(req, res, next) {
      const r = res as EdgeResponse;
      if (res.writeHead !== writeHead) return mw(req, res, next);
      // compression wraps writeHead (on-headers) inside the edge's, so that the edge still
      // sees the upstream's header list and compression sees the headers as finally sent.
      res.writeHead = r[INNER] as unknown as ServerResponse['writeHead'];
      mw(req, res, NOOP); // synchronous: it calls next() before it returns
      r[INNER] = writeHeadOf(res);
      res.writeHead = writeHead;
      next();
    };
    this.compressors.set(threshold, stage);
    return stage;
  }
}

/** compression's own filter (compressible types), and never an event stream. */
function compressible(req: IncomingMessage, res: ServerResponse): boolean {
  const type = res.getHeader('content-type');
  if (typeof type === 'string' && EVENT_STREAM.test(type)) return false;
  return compression.filter(req as never, res as never);
}

/** `next` of a lane with a host behind: leaving the gateway, the edge lets go of the response. */
function leaving(res: ServerResponse, next: Next): Next {
  return (err) => {
    if (!isNextError(err)) (res as EdgeResponse)[LEFT] = true;
    next(err);
  };
}
