import { randomFillSync } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A request's W3C trace context (https://www.w3.org/TR/trace-context/), as `req.trace`:
 * the trace it belongs to, the span the gateway is in for it, and what the caller sent.
 */
export interface TraceContext {
  /** 32 lower-case hex digits: the caller's trace when its `traceparent` was valid, else a new one. */
  readonly traceId: string;
  /** 16 hex digits: the gateway's span for this request (the parent of its upstream calls). */
  spanId: string;
  /** The caller's span id, from a valid `traceparent`; undefined when the trace started here. */
  readonly parentSpanId: string | undefined;
  /** The trace flags, 2 hex digits (`01`: sampled). */
  readonly flags: string;
  /** The caller's `tracestate`, passed on unchanged with a valid `traceparent`. */
  readonly tracestate: string | undefined;
}

/** A request that carries its trace context. */
export type TracedRequest = IncomingMessage & { trace?: TraceContext };

const HEX = /^[0-9a-f]+$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** The parts of a valid `traceparent` header, or undefined for anything else (W3C Trace Context, level 1). */
export function parseTraceparent(
  value: string | string[] | undefined,
): { version: string; traceId: string; parentId: string; flags: string } | undefined {
  if (typeof value !== 'string' || value.length < 55) return undefined;
  const version = value.slice(0, 2);
  // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (
    version === 'ff' ||
    (version === '00' ? value.length !== 55 : value.length > 55 && value[55] !== '-')
  )
    return undefined;
  if (value[2] !== '-' || value[35] !== '-' || value[52] !== '-') return undefined;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!HEX.test(version) || !HEX.test(traceId) || !HEX.test(parentId) || !HEX.test(flags))
    return undefined;
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  return { version, traceId, parentId, flags };
}

/** List members: `key=value`, key and value as the specification's grammar allows them. */
const TRACESTATE_MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** Longest `tracestate` passed on: the specification asks to propagate at least 512 characters. */
export const MAX_TRACESTATE = 512;

/**
 * A `tracestate` to pass on, or undefined: at most 32 members of valid syntax and at most
 * {@link MAX_TRACESTATE} characters; anything else is dropped whole (it is the caller's
 * vendors' data, not the gateway's to repair).
 */
export function validTracestate(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string' || value.length > MAX_TRACESTATE) return undefined;
  const members = value
    .split(',')
    .map((m) => m.trim())
    .filter((m) => m !== '');
  if (members.length === 0 || members.length > 32) return undefined;
  return members.every((m) => TRACESTATE_MEMBER.test(m)) ? members.join(',') : undefined;
}

// Ids come from one random buffer, refilled when used up: one syscall per 256 span ids.
const POOL = Buffer.allocUnsafe(4096);
let offset = POOL.length;

function randomHex(bytes: number, zero: string): string {
  for (;;) {
    if (offset + bytes > POOL.length) {
      randomFillSync(POOL);
      offset = 0;
    }
    const id = POOL.toString('hex', offset, offset + bytes);
    offset += bytes;
    if (id !== zero) return id;
  }
}

/** A new span id: 16 hex digits, never all zeros. */
export function newSpanId(): string {
  return randomHex(8, ZERO_SPAN);
}

/** A new trace id: 32 hex digits, never all zeros. */
export function newTraceId(): string {
  return randomHex(16, ZERO_TRACE);
}

/** The `traceparent` value (version 00) for a span of a trace. */
export function formatTraceparent(traceId: string, spanId: string, flags: string): string {
  return `00-${traceId}-${spanId}-${flags}`;
}

/**
 * Reads the caller's trace context, or starts a trace: sets `req.trace`, and the request's
 * `traceparent` (and `tracestate`) headers as they go upstream: the same trace, the gateway's
 * span as the parent. An invalid `traceparent` is replaced, and its `tracestate` dropped (the
 * specification's rule: a vendor that cannot read the parent does not pass its state on).
 */
export function assignTraceContext(req: TracedRequest): TraceContext {
  const h = req.headers;
  const given = parseTraceparent(h.traceparent);
  let trace: TraceContext;
  if (given === undefined) {
    if (h.tracestate !== undefined) delete h.tracestate;
    trace = {
      traceId: newTraceId(),
      spanId: newSpanId(),
      parentSpanId: undefined,
      flags: '01',
      tracestate: undefined,
    };
  } else {
    const state = validTracestate(h.tracestate);
    if (state === undefined && h.tracestate !== undefined) delete h.tracestate;
    else if (state !== undefined) h.tracestate = state;
    trace = {
      traceId: given.traceId,
      spanId: newSpanId(),
      parentSpanId: given.parentId,
      // Only the sampled bit is defined; other bits of a later version are not passed on.
      flags: (parseInt(given.flags, 16) & 1) === 1 ? '01' : '00',
      tracestate: state,
    };
  }
  req.trace = trace;
  h.traceparent = formatTraceparent(trace.traceId, trace.spanId, trace.flags);
  return trace;
}

/**
 * {@link assignTraceContext} as Express middleware: `app.use(traceContext())` gives every
 * request `req.trace`, and a proxy behind it sends the trace on as a child of this hop.
 */
export function traceContext(): (
  req: IncomingMessage,
  res: ServerResponse,
  next: () => void,
) => void {
  return function turnpikeTraceContext(req, _res, next) {
    assignTraceContext(req);
    next();
  };
}
