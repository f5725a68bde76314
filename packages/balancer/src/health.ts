import http from 'node:http';
import https from 'node:https';
import type { Target } from '@turnpike/core';
import type { NormalisedHealthCheck } from './options';

/** Most bytes of a check's body read (and discarded) before it is judged by its status. */
const BODY_CAP = 64 * 1024;
/** Each interval is shortened by a random part of up to this fraction. */
const JITTER = 0.15;

function noop(): void {}

/** Whether `status` passes the check. */
export function statusPasses(
  expect: NormalisedHealthCheck['expectStatus'],
  status: number,
): boolean {
  if (Array.isArray(expect)) return (expect as readonly number[]).includes(status);
  const range = expect as { min: number; max: number };
  return status >= range.min && status <= range.max;
}

function errorDetail(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return err instanceof Error && err.message ? err.message : 'error';
}

/**
 * One active check: a request on a fresh connection (`agent: false`), the whole of it (connect,
 * head, body) within `timeoutMs`. Calls `done(ok, detail)` exactly once unless aborted; never
 * throws. Returns an abort function (after which `done` is not called).
 */
export function checkOnce(
  target: Target,
  options: NormalisedHealthCheck,
  done: (ok: boolean, detail: string) => void,
): () => void {
  const headers: Record<string, string> = {};
  let hasHost = false;
  for (const [name, value] of Object.entries(options.headers)) {
    if (name.toLowerCase() === 'host') hasHost = true;
    headers[name] = value;
  }
  if (!hasHost) headers.host = target.host;
  let req: http.ClientRequest;
  try {
    const request = target.protocol === 'https:' ? https.request : http.request;
    req = request({
      protocol: target.protocol,
      hostname: target.hostname,
      port: target.port,
      method: options.method,
      path: options.path,
      headers,
      agent: false,
    });
  } catch (err) {
    // A request that cannot even be built (it should not happen after validation) fails.
    let aborted = false;
    queueMicrotask(() => {
      if (!aborted) done(false, errorDetail(err));
    });
    return () => {
      aborted = true;
    };
  }
  let finished = false;
  const finish = (ok: boolean, detail: string): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req.destroy();
    done(ok, detail);
  };
  const timer = setTimeout(() => finish(false, 'timeout'), options.timeoutMs);
  timer.unref();
  req.on('error', (err) => finish(false, errorDetail(err)));
  req.on('socket', (socket) => {
    socket.on('error', noop);
  });
  req.on('response', (res) => {
    res.on('error', (err) => finish(false, errorDetail(err)));
    const ok = statusPasses(options.expectStatus, res.statusCode ?? 0);
    const detail = `status ${res.statusCode ?? 0}`;
    let read = 0;
    res.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (read > BODY_CAP) finish(ok, detail);
    });
    res.on('end', () => finish(ok, detail));
    res.on('close', () => finish(false, 'cut-off'));
  });
  req.end();
  return () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req.destroy();
  };
}

/**
 * The active checks of one target: the first at once, then one every `intervalMs` (each
 * shortened by a random part of up to 15 %, so never later), at most one in flight. Results
 * go to `onResult`; timers are unref()ed.
 */
export class Prober {
  /** When the next check is due (ms). */
  nextAt = 0;
  /** Checks started so far. */
  checks = 0;
  private timer: NodeJS.Timeout | undefined;
  private abort: (() => void) | undefined;
  private due = false;
  private stopped = false;

  constructor(
    private readonly target: () => Target,
    private readonly options: NormalisedHealthCheck,
    private readonly onResult: (ok: boolean, detail: string) => void,
  ) {}

  start(): void {
    if (this.stopped) return;
    this.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort?.();
    this.abort = undefined;
  }

  private run(): void {
    if (this.stopped) return;
    if (this.abort) {
      this.due = true;
      return;
    }
    this.due = false;
    this.checks++;
    const delay = Math.max(1, Math.round(this.options.intervalMs * (1 - Math.random() * JITTER)));
    this.nextAt = Date.now() + delay;
    this.timer = setTimeout(() => this.run(), delay);
    this.timer.unref();
    this.abort = checkOnce(this.target(), this.options, (ok, detail) => {
      this.abort = undefined;
      if (this.stopped) return;
      try {
        this.onResult(ok, detail);
      } finally {
        if (this.due) this.run();
      }
    });
  }
}
