import http, { type IncomingMessage, type Server } from 'node:http';
import type net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import express from 'express';
import { isConfigError, type ConfigError } from '@turnpike/core';
import {
  createRouter,
  type Outcome,
  type RouterOptions,
  type TurnpikeRouter,
} from '@turnpike/router';
import { listen, type Running } from './servers';

/** Every outcome a router reported, in order. */
export interface OutcomeLog {
  readonly list: Outcome[];
  /** The outcomes reported for one request. */
  of(req: IncomingMessage): Outcome[];
  /** Stops recording. */
  dispose(): void;
}

/** Records every outcome `router` reports from now on. */
export function recordOutcomes(router: Pick<TurnpikeRouter, 'onOutcome'>): OutcomeLog {
  const list: Outcome[] = [];
  const dispose = router.onOutcome((o) => list.push(o));
  return { list, of: (req) => list.filter((o) => o.req === req), dispose };
}

/** A server's connections as counted from its 'connection' events. */
export interface ConnectionCount {
  /** Open now. */
  readonly open: number;
  /** The most open at once since counting started. */
  readonly max: number;
  /** Accepted since counting started. */
  readonly total: number;
  /** Closed since counting started. */
  readonly closed: number;
}

/** Counts the connections `server` accepts from now on. */
export function countConnections(server: Server | net.Server): ConnectionCount {
  const state = { open: 0, max: 0, total: 0, closed: 0 };
  server.on('connection', (socket: net.Socket) => {
    state.open++;
    state.total++;
    if (state.open > state.max) state.max = state.open;
    socket.once('close', () => {
      state.open--;
      state.closed++;
    });
  });
  return state;
}

/** The ConfigError `promise` rejects with; fails the test when it rejects with something else or resolves. */
export async function configErrorOfAsync(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but the promise resolved');
}

/** A router mounted at /api in a plain Express app, on port 0. */
export interface RouterHarness {
  router: TurnpikeRouter;
  running: Running;
  /** The mount's URL: `http://127.0.0.1:PORT/api`. */
  url: string;
  close(): Promise<void>;
}

/**
 * Creates a router from `options`, mounts it at /api (`app.use('/api', router)`, or with
 * `host: 'node'` a bare node:http server that strips /api itself) and starts it; `close()`
 * may be called more than once.
 */
export async function startRouter(
  options: RouterOptions,
  host: 'express' | 'node' = 'express',
): Promise<RouterHarness> {
  const router = createRouter(options);
  let running: Running;
  if (host === 'express') {
    const app = express();
    app.use('/api', router);
    running = await listen(http.createServer(app));
  } else {
    // No Express: nothing but the router writes headers (no X-Powered-By).
    running = await listen((req, res) => {
      const url = req.url ?? '/';
      if (url !== '/api' && !url.startsWith('/api/') && !url.startsWith('/api?')) {
        res.statusCode = 404;
        return void res.end();
      }
      req.url = url.slice(4) || '/';
      router(req, res, () => {
        res.statusCode = 404;
        res.end();
      });
    });
  }
  let closing: Promise<void> | undefined;
  return {
    router,
    running,
    url: `${running.url}/api`,
    close() {
      closing ??= router.close().then(() => running.close());
      return closing;
    },
  };
}

/** What a client received of one response. */
export interface Received {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  /** The response ended cleanly (its framing was complete). */
  clean: boolean;
}

/**
 * Sends one request with node:http and reads the whole response (a fresh connection each, closed
 * after). Rejects when the request fails before any response; an error while the body is still
 * being written after the response arrived is ignored.
 */
export function fetchResponse(
  url: string,
  options: http.RequestOptions & { body?: string | Buffer } = {},
): Promise<Received> {
  const { body, ...rest } = options;
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url, { agent: false, ...rest }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      const done = (clean: boolean): void =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          clean,
        });
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(res.complete));
      res.on('aborted', () => done(false));
      res.on('error', () => done(false));
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.end(body);
  });
}

/** A signal to hold responses until the test lets them go. */
export interface Gate {
  readonly promise: Promise<void>;
  readonly opened: boolean;
  open(): void;
}

/** A gate, closed until `open()`. */
export function gate(): Gate {
  let release!: () => void;
  const state = { opened: false };
  const promise = new Promise<void>((resolve) => (release = resolve));
  return {
    promise,
    get opened() {
      return state.opened;
    },
    open() {
      state.opened = true;
      release();
    },
  };
}

let collector: (() => void) | undefined;

/**
 * A full garbage collection, also when node was started without --expose-gc: the flag is set
 * at run time and `gc` is taken from a fresh context.
 */
export function collectGarbage(): void {
  if (collector === undefined) {
    const own = (globalThis as { gc?: () => void }).gc;
    if (typeof own === 'function') collector = own;
    else {
      v8.setFlagsFromString('--expose-gc');
      collector = vm.runInNewContext('gc') as () => void;
    }
  }
  collector();
}

/** heapUsed after full collections (a few, with turns of the event loop between, so finalizers run). */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    collectGarbage();
    await new Promise((r) => setImmediate(r));
  }
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** One entry a recording logger kept. */
export interface LogEntry {
  level: 'error' | 'warn' | 'info' | 'debug';
  message: string;
  meta?: Record<string, unknown>;
}

/** A logger that keeps every entry, in order. */
export function recordingLogger(): {
  entries: LogEntry[];
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
} {
  const entries: LogEntry[] = [];
  const at =
    (level: LogEntry['level']) =>
    (message: string, meta?: Record<string, unknown>): void =>
      void entries.push({ level, message, meta });
  return { entries, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

/** Runs the closers pushed on the returned list after every test, last first, each once. */
export function closersAfterEach(): (() => Promise<void> | void)[] {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  return closers;
}
