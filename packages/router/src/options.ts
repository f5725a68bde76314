import { METHODS } from 'node:http';
import {
  ConfigError,
  array,
  boolean,
  either,
  fn,
  number,
  object,
  parseTarget,
  record,
  string,
  join,
  logger,
  type Check,
  type Shape,
} from '@turnpike/core';
import { HOP_BY_HOP, canonicalName, compileTrust } from './headers';
import { checkPath } from './path-policy';
import { compileRoute, type CompiledRoute } from './route';
import type {
  AgentOptions,
  HeaderTransform,
  HedgeOptions,
  ProxySettings,
  RetryOptions,
  RouteOptions,
  RouterExtensions,
  RouterOptions,
  ServiceOptions,
  TrustProxy,
} from './types';

/** Every default of the router, in one place. */
export const DEFAULTS = Object.freeze({
  timeoutMs: 30_000,
  connectTimeoutMs: 5_000,
  maxSockets: 256,
  freeSocketTimeoutMs: 4_000,
  preserveHost: false,
  trustProxy: false,
  identityHeaders: Object.freeze(['x-user-id', 'x-user-roles', 'x-consumer-id']),
  bodyLimit: 10 * 1024 * 1024,
  maxHeaderCount: 100,
  requestBuffer: 64 * 1024,
  stripHeaders: Object.freeze(['x-original-url', 'x-rewrite-url', 'x-http-method-override']),
});

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const headerName = string({ pattern: TOKEN, expected: 'an HTTP header name' });
// Header values: visible ASCII and spaces/tabs, no CR/LF (no header injection).
const headerValue = string({
  pattern: /^[\t\x20-\x7e]*$/,
  expected: 'a header value without control characters',
});
const KNOWN_METHODS = new Set(METHODS);
const methodName = string({
  pattern: /^[A-Z]+$/,
  expected: 'an upper-case HTTP method such as "GET"',
});
/** A method Node's HTTP parser accepts: any other could never arrive. */
const method: Check<string> = (value, path) => {
  const m = methodName(value, path);
  if (!KNOWN_METHODS.has(m)) {
    throw new ConfigError(path, `an HTTP method Node knows (one of ${METHODS.join(', ')})`, m);
  }
  return m;
};
const ms = (max: number) => number({ min: 1, max, integer: true });
const bytes = either<number, false>(
  { when: (v) => typeof v === 'number', check: number({ min: 0, integer: true }) },
  { when: (v) => v === false, check: (v) => v as false },
  'a byte count (integer >= 0) or false',
);

/** Headers a transform may not touch: they frame the message or belong to one hop. */
const FRAMING_OR_HOP = new Set([...HOP_BY_HOP, 'host', 'content-length']);

const transformName: Check<string> = (value, path) => {
  const name = headerName(value, path);
  if (FRAMING_OR_HOP.has(canonicalName(name))) {
    throw new ConfigError(
      path,
      'a header other than Host, Content-Length and the hop-by-hop headers (the proxy frames the message itself)',
      name,
    );
  }
  return name;
};

function transformMap(path: string, value: unknown): Record<string, string> {
  const out = record(headerValue)(value, path);
  for (const key of Object.keys(out)) transformName(key, join(path, key));
  return out;
}

const headerTransform: Check<HeaderTransform> = object<HeaderTransform>({
  remove: array(transformName),
  set: (v, p) => transformMap(p, v),
  add: (v, p) => transformMap(p, v),
});

const agentOptions = object<AgentOptions>({
  maxSockets: number({ min: 1, integer: true }),
  freeSocketTimeoutMs: ms(3_600_000),
});

const upstreamStatus = number({ min: 500, max: 599, integer: true });

const backoff = object<NonNullable<RetryOptions['backoff']>>({
  baseMs: ms(60_000),
  maxMs: ms(600_000),
});

const retryShape = object<RetryOptions>({
  attempts: number({ min: 1, max: 10, integer: true }),
  statuses: array(upstreamStatus),
  idempotencyKey: boolean,
  bodyLimit: number({ min: 0, max: 64 * 1024 * 1024, integer: true }),
  backoff: (v, p) => {
    const b = backoff(v, p);
    if ((b.maxMs ?? 250) < (b.baseMs ?? 25)) {
      throw new ConfigError(
        join(p, 'maxMs'),
        `a time no shorter than baseMs (${b.baseMs ?? 25})`,
        b.maxMs,
      );
    }
    return b;
  },
  perTryTimeoutMs: ms(24 * 3_600_000),
  budget: object<NonNullable<RetryOptions['budget']>>({
    ratio: number({ min: 0, max: 1 }),
    minPerSecond: number({ min: 0, max: 1_000_000 }),
    windowMs: number({ min: 1000, max: 600_000, integer: true }),
  }),
});

const retries: Check<RetryOptions | false> = (value, path) =>
  value === false ? false : retryShape(value, path);

const hedgeShape = object<HedgeOptions>(
  { afterMs: ms(600_000), maxHedges: number({ min: 1, max: 5, integer: true }) },
  ['afterMs'],
);

/** The proxy fields of a service; the gateway's service config reuses them. */
export const proxySettingsShape: Shape<ProxySettings> = {
  timeoutMs: ms(24 * 3_600_000),
  connectTimeoutMs: ms(600_000),
  agent: agentOptions,
  preserveHost: boolean,
  retries,
};

const targetSource: Check<ServiceOptions['target']> = (value, path) => {
  if (typeof value === 'function') return value as ServiceOptions['target'];
  if (typeof value === 'string') {
    parseTarget(value, path);
    return value;
  }
  if (typeof (value as { pick?: unknown } | null)?.pick === 'function') {
    return value as ServiceOptions['target'];
  }
  throw new ConfigError(
    path,
    'a target URL, a function (req, tried) => target, or a picker { pick(req, tried) } such as a balancer',
    value,
  );
};

const PATTERN_SEGMENT = /^(?:[A-Za-z0-9\-._~!$&'()+,=@]|%[0-9A-F]{2})+$/;
const routePath = string({
  pattern: /^\/(?:[^/]+(?:\/[^/]+)*)?$/,
  expected: 'a path starting with "/" without empty segments, e.g. "/users/:id" or "/static/**"',
});

function patternPath(value: unknown, path: string): string {
  const s = routePath(value, path);
  const segments = s === '/' ? [] : s.slice(1).split('/');
  segments.forEach((seg, i) => {
    if (seg === '**') {
      if (i !== segments.length - 1)
        throw new ConfigError(path, '"**" only as the last segment', s);
    } else if (seg === '*' || /^:[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) {
      // one-segment wildcard or a named param
    } else if (!PATTERN_SEGMENT.test(seg) || seg === '.' || seg === '..') {
      throw new ConfigError(
        path,
        'segments of unreserved characters, ":name", "*" or a final "**"',
        s,
        '"/users/:id/orders/**"',
      );
    } else if (checkPath(`/${seg}`) !== `/${seg}`) {
      // Request paths are normalised before matching (%41 -> A, %2a -> %2A): a segment
      // written otherwise could never match.
      throw new ConfigError(
        path,
        'segments written as the path policy forwards them: unreserved characters unescaped, other escapes in upper case',
        s,
        '"/caf%C3%A9" rather than "/caf%c3%a9", "/a" rather than "/%61"',
      );
    }
  });
  return s;
}

const hostName = string({
  pattern:
    /^(?:\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(?::[1-9]\d{0,4})?$/,
  expected:
    'a lower-case host name, optionally "*." in front and ":port" after, e.g. "api.example.com" or "*.example.com:8443"',
});
const hostPattern: Check<string> = (value, path) => {
  const s = hostName(value, path);
  const colon = s.lastIndexOf(':');
  if (colon !== -1 && Number(s.slice(colon + 1)) > 65535) {
    throw new ConfigError(path, 'a port from 1 to 65535', s);
  }
  return s;
};

const headerMatchers: Check<Record<string, string | RegExp>> = (value, path) => {
  const out = record<string | RegExp>((v, p) => {
    if (v instanceof RegExp) return v;
    return headerValue(v, p);
  })(value, path);
  const lower: Record<string, string | RegExp> = {};
  for (const key of Object.keys(out))
    lower[headerName(key, join(path, key)).toLowerCase()] = out[key]!;
  return lower;
};

/** The router's own route keys. */
const routeShape: Shape<RouteOptions> = {
  path: patternPath,
  service: string({ minLength: 1, expected: 'a service name' }),
  handler: fn<NonNullable<RouteOptions['handler']>>(),
  name: string({ minLength: 1, expected: 'a non-empty route name' }),
  methods: array(method, { min: 1 }),
  host: either<string, string[]>(
    { when: (v) => typeof v === 'string', check: hostPattern },
    { when: Array.isArray, check: array(hostPattern, { min: 1 }) },
    'a host name or a list of host names',
  ),
  headers: headerMatchers,
  stripPrefix: string({
    pattern: /^\/[^/]+(?:\/[^/]+)*$/,
    expected: 'a path prefix starting with "/" and not ending with "/", e.g. "/users"',
  }),
  rewrite: patternPath,
  requestHeaders: headerTransform,
  responseHeaders: headerTransform,
  bodyLimit: bytes,
  websocket: boolean,
  hedge: (v, p) => (v === false ? false : hedgeShape(v, p)),
};

/** The shape with the keys extensions add; an extension may not redefine one of the router's. */
function extended<T>(
  own: Shape<T>,
  extra: RouterExtensions['route'] | undefined,
  path: string,
): Shape<T> {
  if (extra === undefined) return own;
  for (const key of Object.keys(extra)) {
    if (Object.prototype.hasOwnProperty.call(own, key)) {
      throw new ConfigError(join(path, key), 'a key the router does not define itself', key);
    }
  }
  return { ...own, ...extra };
}

/** The check of a route list, with the keys extensions add. */
export function routesCheck(extensions?: RouterExtensions): Check<RouteOptions[]> {
  return array(
    object<RouteOptions>(extended(routeShape, extensions?.route, 'extensions.route'), ['path']),
  );
}

/** The check of one service's proxy settings plus `target`, with the keys extensions add. */
function servicesCheck(extensions?: RouterExtensions): Check<Record<string, ServiceOptions>> {
  const own: Shape<ServiceOptions> = { ...proxySettingsShape, target: targetSource };
  return record(
    object<ServiceOptions>(extended(own, extensions?.service, 'extensions.service'), ['target']),
    { keyPattern: /^[A-Za-z0-9_.-]+$/, keyExpected: 'a service name of [A-Za-z0-9_.-]' },
  );
}

const extensionKeys = record<(value: unknown, path: string) => unknown>(fn(), {
  keyPattern: /^[A-Za-z][A-Za-z0-9]*$/,
  keyExpected: 'an option key of letters and digits',
});
const extensionsCheck = object<RouterExtensions>({ route: extensionKeys, service: extensionKeys });

const trustProxy: Check<TrustProxy> = (value, path) => {
  if (value === false) return false;
  if (typeof value === 'number') return number({ min: 0, max: 100, integer: true })(value, path);
  if (Array.isArray(value)) {
    return array(
      string({
        // "/0" is every address: the same as true, which is refused.
        pattern: /^[^/]+(?:\/(?:[1-9]\d*))?$/,
        expected: 'an IP address or CIDR narrower than /0 (trusting every address is refused)',
      }),
    )(value, path);
  }
  throw new ConfigError(
    path,
    'false, a hop count, or a list of trusted addresses/CIDRs (true trusts every client and is refused)',
    value,
    "trustProxy: 1 or trustProxy: ['10.0.0.0/8']",
  );
};

/** The normalised router options: defaults applied, routes and services checked. */
export interface ParsedRouterOptions {
  routes: RouteOptions[];
  /** The routes compiled while they were checked: compiled once, used as they are. */
  compiled: readonly CompiledRoute[];
  services: Record<string, ServiceOptions>;
  trustProxy: TrustProxy;
  identityHeaders: readonly string[];
  stripHeaders: readonly string[];
  bodyLimit: number | false;
  maxHeaderCount: number;
  requestBuffer: number;
  stages: RouterOptions['stages'];
  logger: RouterOptions['logger'];
  extensions: RouterExtensions | undefined;
}

/** The shape of RouterOptions; exported so the gateway validates the same fields the same way. */
export const routerShape: Shape<RouterOptions> = {
  routes: routesCheck(),
  services: servicesCheck(),
  trustProxy,
  identityHeaders: array(headerName),
  stripHeaders: array(headerName),
  bodyLimit: bytes,
  // Node keeps at most maxHeadersCount (2000 by default) in req.headers: the limit stays below.
  maxHeaderCount: number({ min: 1, max: 1000, integer: true }),
  requestBuffer: number({ min: 0, max: 64 * 1024 * 1024, integer: true }),
  extensions: extensionsCheck,
  stages: fn<NonNullable<RouterOptions['stages']>>(),
  logger,
};

/** Checks the routes against the services: each names one that exists, or has a handler instead. */
export function checkRouteServices(
  routes: readonly RouteOptions[],
  services: Readonly<Record<string, unknown>>,
  path = 'routes',
): void {
  routes.forEach((route, i) => {
    if (route.handler !== undefined) {
      if (route.service !== undefined) {
        throw new ConfigError(
          `${path}[${i}].handler`,
          'either service or handler, not both',
          route.handler,
        );
      }
      if (route.websocket === true) {
        throw new ConfigError(
          `${path}[${i}].websocket`,
          'websocket only on a route with a service (a handler answers HTTP)',
          true,
        );
      }
      return;
    }
    if (route.service === undefined) {
      throw new ConfigError(
        `${path}[${i}].service`,
        'a value (a route needs a service or a handler)',
        undefined,
      );
    }
    if (!Object.prototype.hasOwnProperty.call(services, route.service)) {
      throw new ConfigError(
        `${path}[${i}].service`,
        `the name of a configured service (one of ${Object.keys(services).join(', ') || 'none'})`,
        route.service,
      );
    }
  });
}

/**
 * The checks that need more than one field: each route names a configured service, the
 * trusted proxies parse, and each route compiles (its rewrite fits its path); returns the
 * compiled routes. Without side effects: the gateway's validateConfig runs it too, so both
 * refuse the same.
 */
export function checkRouterConfig(
  config: Pick<RouterOptions, 'routes' | 'trustProxy' | 'bodyLimit'> & {
    services: Readonly<Record<string, unknown>>;
  },
  path = '',
): CompiledRoute[] {
  checkRouteServices(config.routes, config.services, join(path, 'routes'));
  compileTrust(config.trustProxy ?? DEFAULTS.trustProxy, join(path, 'trustProxy'));
  return config.routes.map((route, i) =>
    compileRoute(route, i, config.bodyLimit ?? DEFAULTS.bodyLimit, join(path, 'routes')),
  );
}

/** Validates router options; throws a ConfigError naming the field. The input is never modified. */
export function parseRouterOptions(options: unknown, path = ''): ParsedRouterOptions {
  const given = (options as { extensions?: unknown } | null)?.extensions;
  const extensions =
    given === undefined ? undefined : extensionsCheck(given, join(path, 'extensions'));
  const shape: Shape<RouterOptions> =
    extensions === undefined
      ? routerShape
      : { ...routerShape, routes: routesCheck(extensions), services: servicesCheck(extensions) };
  const parsed = object<RouterOptions>(shape, ['routes', 'services'])(options, path);
  const compiled = checkRouterConfig(parsed, path);
  return {
    routes: parsed.routes as RouteOptions[],
    compiled,
    services: parsed.services,
    trustProxy: parsed.trustProxy ?? DEFAULTS.trustProxy,
    identityHeaders: parsed.identityHeaders ?? DEFAULTS.identityHeaders,
    stripHeaders: parsed.stripHeaders ?? DEFAULTS.stripHeaders,
    bodyLimit: parsed.bodyLimit ?? DEFAULTS.bodyLimit,
    maxHeaderCount: parsed.maxHeaderCount ?? DEFAULTS.maxHeaderCount,
    requestBuffer: parsed.requestBuffer ?? DEFAULTS.requestBuffer,
    stages: parsed.stages,
    logger: parsed.logger,
    extensions,
  };
}
