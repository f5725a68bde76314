import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * The part of `@opentelemetry/api` the gateway uses, typed here so that the package's types
 * do not need the API installed (it is an optional peer dependency).
 */
export interface OtelApi {
  readonly trace: {
    getTracer(name: string, version?: string): OtelTracer;
    setSpan(context: unknown, span: OtelSpan): unknown;
    setSpanContext(context: unknown, spanContext: OtelSpanContext): unknown;
    /** The global provider: a proxy whose delegate is the registered SDK's, or a no-op one. */
    getTracerProvider?(): { getDelegate?(): object };
  };
  readonly ROOT_CONTEXT: unknown;
  createTraceState?(raw?: string): unknown;
}

export interface OtelSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: unknown;
}

export type OtelAttributes = Record<string, string | number | boolean | undefined>;

export interface OtelSpan {
  spanContext(): OtelSpanContext;
  isRecording(): boolean;
  setAttributes(attributes: OtelAttributes): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  updateName(name: string): unknown;
  end(endTime?: number): void;
}

export interface OtelTracer {
  startSpan(
    name: string,
    options?: { kind?: number; startTime?: number; attributes?: OtelAttributes },
    context?: unknown,
  ): OtelSpan;
}

/** SpanKind and SpanStatusCode values of the API (stable numbers). */
export const SPAN_KIND_SERVER = 1;
export const SPAN_KIND_CLIENT = 2;
export const STATUS_ERROR = 2;

/**
 * `@opentelemetry/api` when the application has it installed, else undefined. Resolved from
 * this package, then from the working directory (an ESM build has no `__filename`).
 */
export function loadOtelApi(): OtelApi | undefined {
  const from = [
    typeof __filename === 'string' ? __filename : undefined,
    path.join(process.cwd(), 'index.js'),
  ];
  for (const base of from) {
    if (base === undefined) continue;
    try {
      return createRequire(base)('@opentelemetry/api') as OtelApi;
    } catch {
      // not installed where this base resolves
    }
  }
  return undefined;
}
