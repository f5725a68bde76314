import type { IncomingMessage } from 'node:http';
import type { Target } from './target';

/** The logger every package accepts; winston's and pino's loggers fit it, and so does `console`. */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
}

/** A logger that drops everything: the default where none is given. */
export const silentLogger: Logger = Object.freeze({
  error() {},
  warn() {},
  info() {},
  debug() {},
});

/** A small key/value store with expiry; memory and Redis back it in later packages. */
export interface KeyValueStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<void>;
  close?(): Promise<void>;
}

/** A request that carries the id the gateway assigned (`req.id`). */
export type RequestWithId = IncomingMessage & { id?: string; trace?: { readonly traceId: string } };

/**
 * How one upstream attempt ended, as the router reports it to a {@link TargetPicker}:
 * - `complete`: the response head arrived (any status: the picker judges `status`) and the
 *   response went to the client whole, or was dropped because its status is retried;
 * - `cut-off`: the response head arrived, the body ended early;
 * - `refused`, `dns`, `connect-timeout`: no connection (no byte of the request was sent);
 * - `reset`: the connection broke before the response head;
 * - `timeout`: no response head within the deadline (the total one, or a retry's per-try one);
 * - `protocol`, `bad-status`: the answer was not HTTP the gateway forwards;
 * - `upgraded`: a WebSocket handshake succeeded;
 * - `cancelled`: the router stopped it (a hedge lost to another try's head, or the request
 *   ended another way first): neither a success nor a failure of the target;
 * - `client-gone`: the client left first: neither a success nor a failure of the target.
 */
export type AttemptEnd =
  | 'complete'
  | 'cut-off'
  | 'refused'
  | 'dns'
  | 'connect-timeout'
  | 'reset'
  | 'timeout'
  | 'protocol'
  | 'bad-status'
  | 'upgraded'
  | 'cancelled'
  | 'client-gone';

/** The ends in which the upstream itself failed: what passive health, breakers and p2c count. */
const FAILED_ENDS: ReadonlySet<string> = new Set<AttemptEnd>([
  'cut-off',
  'refused',
  'dns',
  'connect-timeout',
  'reset',
  'timeout',
  'protocol',
  'bad-status',
]);

/** True when an attempt (or a request) that ended so is a failure of its upstream. */
export function isFailedEnd(end: string): boolean {
  return FAILED_ENDS.has(end);
}

/** One finished upstream attempt, reported to the target picker that chose its target. */
export interface AttemptReport {
  readonly end: AttemptEnd;
  /** The upstream's status; 0 when no response head arrived. */
  readonly status: number;
  /** From the attempt's start to its response head, or to its end when no head arrived, in ms. */
  readonly latencyMs: number;
}

/**
 * What the router asks of a service's target source beyond a pick (a balancer implements it):
 * the router calls `attemptStarted` when an attempt to a picked target starts and
 * `attemptEnded` exactly once when it ends, so the picker can count requests in flight,
 * measure latency and judge health from real traffic.
 */
export interface TargetPicker {
  /** The target of the next attempt; `tried` lists the targets earlier attempts of this request used. */
  pick(req: IncomingMessage, tried: readonly Target[]): Target | undefined;
  attemptStarted?(target: Target): void;
  attemptEnded?(target: Target, report: AttemptReport): void;
  /** When pick() found no target: whole seconds until one may be usable again (Retry-After), at least 1. */
  retryAfter?(): number;
}
