import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { bufferedJsonLogger, directBuffer, jsonLogger, type LineBuffer } from './json-logger';
import {
  array,
  logger as loggerCheck,
  number,
  object,
  boolean,
  string,
  type Check,
  type Logger,
} from '@turnpike/core';

/** Options of {@link createAccessLog}. */
export interface AccessLogOptions {
  /** Where the lines go: a winston logger, or any {@link Logger} (its `info`). Default: a winston JSON logger on stdout. */
  logger?: Logger;
  /**
   * The share of requests logged, from 0 to 1. Requests answered 5xx, or that failed
   * upstream or lost their client, are always logged. Default 1.
   */
  sampleRate?: number;
  /** Log the query string (its redacted parameters' values replaced). Default false: the path only. */
  query?: boolean;
  /** Query parameters whose values never appear, beside {@link REDACTED_QUERY} (case-insensitive). Default none. */
  redactQuery?: readonly string[];
}

/** Query parameters always redacted: credentials that clients put in URLs. */
export const REDACTED_QUERY: readonly string[] = Object.freeze([
  'access_token',
  'access-token',
  'api_key',
  'apikey',
  'x-api-key',
  'key',
  'token',
  'auth',
  'auth_token',
  'authorization',
  'jwt',
  'id_token',
  'refresh_token',
  'private_token',
  'code',
  'password',
  'pass',
  'passwd',
  'secret',
  'client_secret',
  'session',
  'sessionid',
  'session_id',
  'signature',
  'sig',
  'x-amz-signature',
  'x-amz-credential',
  'x-amz-security-token',
  'x-goog-signature',
  'x-goog-credential',
]);

/** Longest path logged, in characters; a longer one is cut and marked with `…`. */
export const MAX_LOGGED_PATH = 2048;

/**
 * A query parameter's name as it is compared: decoded, lower case, an array suffix (`[]`,
 * `[0]`) removed, and `.`, `-` and spaces read as `_` (as PHP and Rails read them), so
 * `API_KEY`, `api%5Fkey`, `api.key` and `api_key[]` are all `api_key`.
 */
export function queryNameKey(name: string): string {
  return name
    .toLowerCase()
    .replace(/\[[^\]]*\]$/, '')
    .replace(/[.\- ]/g, '_');
}

/** One access log line's fields (the message is `request`). Headers are never logged. */
export interface AccessLogEntry {
  /** ISO 8601 time the request ended. */
  time: string;
  requestId: string | undefined;
  traceId: string | undefined;
  method: string | undefined;
  /** The path as the client sent it (the mount prefix included); the query only with `query: true`, redacted. */
  path: string;
  /** The route's name; '' when none matched. */
  route: string;
  /** The service; '' for a handler route or none. */
  service: string;
  /** The URL of the target that answered (the last one called); '' when none was called. */
  target: string;
  status: number;
  /** How the request ended: an outcome kind of @turnpike/router, or `unrouted` (404, 405, a refused path). */
  outcome: string;
  durationMs: number;
  /** The answering upstream call, to its response head; null when none was made. */
  upstreamMs: number | null;
  /** The client's request body bytes (its Content-Length, else what went upstream). */
  bytesIn: number;
  /** The upstream's response body bytes relayed to the client; 0 for the gateway's own answers. */
  bytesOut: number;
  /** The client address, as the gateway's `trustProxy` computed it. */
  client: string | undefined;
  /** `req.auth.subject`, when a credential was proven. */
  subject: string | undefined;
  retries: number;
}

const REDACTED = '[REDACTED]';

/** Checks createAccessLog()'s options (a ConfigError naming the field). */
export const accessLogOptionsCheck: Check<AccessLogOptions> = object<AccessLogOptions>({
  logger: loggerCheck,
  sampleRate: number({ min: 0, max: 1 }),
  query: boolean,
  redactQuery: array(string({ minLength: 1, expected: 'a query parameter name' })),
});

/** The default logger: winston, one JSON line per entry on stdout, the lines of 100 ms written together. */
export function defaultAccessLogger(): Logger {
  return jsonLogger();
}

/** The default logger and its buffer. */
function ownLogger(): { logger: Logger; buffer: LineBuffer } {
  return bufferedJsonLogger(process.stdout, {});
}

/** Writes access log lines; built once by {@link createAccessLog}. */
export class AccessLog {
  readonly logger: Logger;
  /** The default logger's buffer, when the logger is the default one (closed by close()). */
  private readonly buffer: LineBuffer | undefined;
  private readonly sampleRate: number;
  private readonly query: boolean;
  private readonly redact: ReadonlySet<string>;

  constructor(options: AccessLogOptions = {}, path = 'accessLog') {
    const o = accessLogOptionsCheck(options, path);
    if (o.logger !== undefined) this.logger = o.logger;
    else ({ logger: this.logger, buffer: this.buffer } = ownLogger());
    this.sampleRate = o.sampleRate ?? 1;
    this.query = o.query ?? false;
    this.redact = new Set([...REDACTED_QUERY, ...(o.redactQuery ?? [])].map(queryNameKey));
  }

  /**
   * Whether a request that ended so is logged: always when it failed (5xx, no answer, an
   * upstream failure), else with the sample rate.
   */
  wants(status: number, failed: boolean): boolean {
    if (failed || status >= 500 || status === 0) return true;
    const rate = this.sampleRate;
    return rate >= 1 || (rate > 0 && Math.random() < rate);
  }

  /** The path to log for a request URL: without the query, or with it redacted. */
  pathOf(url: string): string {
    const q = url.indexOf('?');
    let path = url;
    if (q !== -1) {
      path = this.query
        ? url.slice(0, q + 1) + this.redactQuery(url.slice(q + 1))
        : url.slice(0, q);
    }
    if (path.length > MAX_LOGGED_PATH) path = `${path.slice(0, MAX_LOGGED_PATH)}…`;
    return path;
  }

  private redactQuery(query: string): string {
    // `&` and `;` both separate parameters (some servers read either).
    return query.replace(/[^&;]+/g, (part) => {
      const eq = part.indexOf('=');
      const raw = eq === -1 ? part : part.slice(0, eq);
      let name: string;
      try {
        name = decodeURIComponent(raw.replace(/\+/g, ' '));
      } catch {
        // A name that does not decode cannot be checked: its value is not shown.
        return `${raw}=${REDACTED}`;
      }
      return this.redact.has(queryNameKey(name)) ? `${raw}=${REDACTED}` : part;
    });
  }

  /**
   * Logs any Express app's requests (`app.use(log.middleware)`), one line each once the
   * response ends: the fields the gateway writes, from what Express knows (`route` is the
   * matched pattern, `client` is `req.ip`, the bytes are the bodies' Content-Length).
   */
  readonly middleware = (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    const start = performance.now();
    res.once('close', () => {
      const finished = res.writableFinished;
      const status = res.headersSent ? res.statusCode : 0;
      if (!this.wants(status, !finished)) return;
      const r = req as IncomingMessage & {
        id?: string;
        trace?: { traceId: string };
        originalUrl?: string;
        baseUrl?: string;
        ip?: string;
        route?: { path?: string | RegExp | (string | RegExp)[] };
        auth?: { subject?: string };
      };
      this.write({
        time: new Date().toISOString(),
        requestId: r.id,
        traceId: r.trace?.traceId,
        method: req.method,
        path: this.pathOf(r.originalUrl ?? req.url ?? '/'),
        route: r.route?.path === undefined ? '' : `${r.baseUrl ?? ''}${String(r.route.path)}`,
        service: '',
        target: '',
        status,
        outcome: finished ? 'complete' : 'client-gone',
        durationMs: Math.round((performance.now() - start) * 1000) / 1000,
        upstreamMs: null,
        bytesIn: Number(req.headers['content-length']) || 0,
        bytesOut: Number(res.getHeader('content-length')) || 0,
        client: r.ip ?? req.socket.remoteAddress,
        subject: r.auth?.subject,
        retries: 0,
      });
    });
    next();
  };

  /** Writes what is buffered and lets the default logger go; a logger that was given is left to its owner. */
  close(): void {
    this.buffer?.destroy();
  }

  /** Writes one line. A logger that throws is not the request's problem: the line is dropped. */
  write(entry: AccessLogEntry): void {
    // A jsonLogger() as it was made: the line goes straight into its buffer.
    const direct = directBuffer(this.logger);
    if (direct !== undefined) {
      // winston's fields first, then the entry's, as one JSON object: no copy of the entry.
      direct.write(`{"level":"info","message":"request",${JSON.stringify(entry).slice(1)}\n`);
      return;
    }
    try {
      const done = this.logger.info(
        'request',
        entry as unknown as Record<string, unknown>,
      ) as unknown;
      // A logger whose info() returns a promise: its rejection is the line's loss, not the process's.
      if (typeof (done as PromiseLike<unknown> | undefined)?.then === 'function') {
        (done as PromiseLike<unknown>).then(undefined, () => {});
      }
    } catch {
      // dropped
    }
  }
}

/**
 * The access log, usable alone: `createAccessLog({ logger })` and then `log.write(entry)`; the
 * gateway's `accessLog` writes one line per request from its outcomes. Throws a ConfigError
 * naming the field for bad options.
 */
export function createAccessLog(options: AccessLogOptions = {}): AccessLog {
  return new AccessLog(options, 'accessLog');
}
