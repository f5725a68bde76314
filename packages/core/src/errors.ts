/** Every error code Turnpike raises at request time, with its HTTP status and generic text. */
const CATALOGUE = {
  ERR_TURNPIKE_BAD_REQUEST: [400, 'Bad Request', 'bad-request', 'The request is malformed.'],
  ERR_TURNPIKE_PATH_REJECTED: [
    400,
    'Bad Request',
    'path-rejected',
    'The request path contains a form the gateway does not forward.',
  ],
  ERR_TURNPIKE_ROUTE_NOT_FOUND: [
    404,
    'Not Found',
    'route-not-found',
    'No route matches the request.',
  ],
  ERR_TURNPIKE_METHOD_NOT_ALLOWED: [
    405,
    'Method Not Allowed',
    'method-not-allowed',
    'The route does not accept this method.',
  ],
  ERR_TURNPIKE_REQUEST_TIMEOUT: [
    408,
    'Request Timeout',
    'request-timeout',
    'The request body did not arrive in time.',
  ],
  ERR_TURNPIKE_BODY_TOO_LARGE: [
    413,
    'Content Too Large',
    'body-too-large',
    'The request body exceeds the limit of this route.',
  ],
  ERR_TURNPIKE_UNAUTHENTICATED: [
    401,
    'Unauthorized',
    'unauthenticated',
    'The request has no valid credentials for this route.',
  ],
  ERR_TURNPIKE_FORBIDDEN: [
    403,
    'Forbidden',
    'forbidden',
    'The credentials are valid but do not grant access to this route.',
  ],
  ERR_TURNPIKE_RATE_LIMITED: [
    429,
    'Too Many Requests',
    'rate-limited',
    'The client has sent more requests than its rate limit allows; retry after Retry-After seconds.',
  ],
  ERR_TURNPIKE_HEADERS_TOO_LARGE: [
    431,
    'Request Header Fields Too Large',
    'headers-too-large',
    'The request has more or larger header fields than the gateway accepts.',
  ],
  ERR_TURNPIKE_INTERNAL: [
    500,
    'Internal Server Error',
    'internal',
    'The gateway failed to handle the request.',
  ],
  ERR_TURNPIKE_NOT_IMPLEMENTED: [
    501,
    'Not Implemented',
    'not-implemented',
    'The gateway does not support a feature the request uses.',
  ],
  ERR_TURNPIKE_UPSTREAM_FAILED: [
    502,
    'Bad Gateway',
    'upstream-failed',
    'The upstream service failed to respond.',
  ],
  ERR_TURNPIKE_NO_TARGET: [
    503,
    'Service Unavailable',
    'no-target',
    'No upstream target is available for this service.',
  ],
  ERR_TURNPIKE_CIRCUIT_OPEN: [
    503,
    'Service Unavailable',
    'circuit-open',
    'The service is failing; the gateway is not sending it requests for now.',
  ],
  ERR_TURNPIKE_OVERLOADED: [
    503,
    'Service Unavailable',
    'overloaded',
    'The service has as many requests in flight as it is allowed.',
  ],
  ERR_TURNPIKE_LIMITER_UNAVAILABLE: [
    503,
    'Service Unavailable',
    'limiter-unavailable',
    'The rate limiter cannot count requests right now.',
  ],
  ERR_TURNPIKE_AUTH_UNAVAILABLE: [
    503,
    'Service Unavailable',
    'auth-unavailable',
    'The credentials cannot be checked right now (the token issuer does not answer).',
  ],
  ERR_TURNPIKE_UPSTREAM_TIMEOUT: [
    504,
    'Gateway Timeout',
    'upstream-timeout',
    'The upstream service did not respond in time.',
  ],
} as const satisfies Record<string, readonly [number, string, string, string]>;

/** A request-time error code: `ERR_TURNPIKE_<AREA>_<WHAT>`. */
export type GatewayErrorCode = keyof typeof CATALOGUE;

/** Options of a {@link GatewayError}; all optional. */
export interface GatewayErrorOptions {
  /** Generic text for the problem's `detail`. Never a stack, an address or a piece of the request. Default: the code's own text. */
  detail?: string;
  /** Extra response headers, e.g. `Allow` or `Retry-After`. Default: none. */
  headers?: Readonly<Record<string, string>>;
  /** The underlying error, kept for logs; never sent to the client. */
  cause?: unknown;
}

const BRAND = Symbol.for('turnpike.GatewayError');

/** An error that maps to one HTTP status and one problem+json response. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  /** Stable machine-readable code. */
  readonly code: GatewayErrorCode;
  /** HTTP status sent to the client. */
  readonly status: number;
  /** Short, generic, human-readable summary (the status phrase). */
  readonly title: string;
  /** Problem type URI. */
  readonly type: string;
  /** Generic explanation sent as `detail`. */
  readonly detail: string;
  /** Extra headers sent with the problem response. */
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly [BRAND] = true;

  constructor(code: GatewayErrorCode, options: GatewayErrorOptions = {}) {
    const [status, title, slug, detail] = CATALOGUE[code];
    super(
      options.detail ?? detail,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    this.status = status;
    this.title = title;
    this.type = `urn:turnpike:problem:${slug}`;
    this.detail = options.detail ?? detail;
    this.headers = options.headers;
  }
}

/** True for a {@link GatewayError}, also one made by another copy of this package. */
export function isGatewayError(value: unknown): value is GatewayError {
  return (
    typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true
  );
}
