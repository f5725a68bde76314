import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { parseTarget, type AttemptEnd, type Target, type TargetPicker } from '@turnpike/core';
import type { RetryOptions, RouterOptions } from '@turnpike/router';
import {
  closersAfterEach,
  fetchResponse,
  recordOutcomes,
  startRouter,
  type OutcomeLog,
  type RouterHarness,
} from './outcomes';
import type { GatewayConfig } from '@turnpike/gateway';
import { listen, startGateway, waitFor, type GatewayHarness, type Running } from './servers';

/** One try a {@link Walk} heard end. */
export interface EndedTry {
  readonly url: string;
  readonly end: AttemptEnd;
  readonly status: number;
}

/**
 * A target picker that walks a list: each try of a request gets the first target its earlier
 * tries did not use (compared by URL), the first of the list once all were used. It records
 * every pick and every attemptStarted / attemptEnded call.
 */
export interface Walk extends TargetPicker {
  readonly targets: readonly Target[];
  /** Every pick: the URLs the router said were tried, and the URL picked. */
  readonly picks: { tried: string[]; picked: string | undefined }[];
  /** The URL of every attemptStarted call, in order. */
  readonly started: string[];
  /** Every attemptEnded call, in order. */
  readonly ended: EndedTry[];
}

/** A {@link Walk} over `urls`. */
export function walk(urls: readonly string[]): Walk {
  const targets = urls.map((u, i) => parseTarget(u, `targets[${i}]`));
  const picks: Walk['picks'] = [];
  const started: string[] = [];
  const ended: EndedTry[] = [];
  return {
    targets,
    picks,
    started,
    ended,
    pick(_req, tried) {
      const target = nextOf(targets, tried);
      picks.push({ tried: tried.map((t) => t.url), picked: target?.url });
      return target;
    },
    attemptStarted(target) {
      started.push(target.url);
    },
    attemptEnded(target, report) {
      ended.push({ url: target.url, end: report.end, status: report.status });
    },
  };
}

/** The same walk as a plain function (the `(req, tried) => target` form), recording `tried`. */
export function walkFunction(urls: readonly string[]): {
  pick: (req: IncomingMessage, tried: readonly Target[]) => Target | undefined;
  picks: { tried: string[]; picked: string | undefined }[];
} {
  const targets = urls.map((u, i) => parseTarget(u, `targets[${i}]`));
  const picks: { tried: string[]; picked: string | undefined }[] = [];
  return {
    picks,
    pick: (_req, tried) => {
      const target = nextOf(targets, tried);
      picks.push({ tried: tried.map((t) => t.url), picked: target?.url });
      return target;
    },
  };
}

function nextOf(targets: readonly Target[], tried: readonly Target[]): Target | undefined {
  return targets.find((t) => !tried.some((x) => x.url === t.url)) ?? targets[0];
}

/** One request an {@link Upstream} received. */
export interface Hit {
  /** The upstream's name. */
  readonly upstream: string;
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  /** The body bytes received so far. */
  body: Buffer;
  /** The whole body arrived. */
  complete: boolean;
  /** The response closed (answered, or the connection went away). */
  closed: boolean;
  /** The response closed before it was ended: the gateway went away (aborted the request). */
  aborted: boolean;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

/** What an upstream does with a request, called when its head arrives. */
export type Answer = (hit: Hit) => void;

/** An HTTP upstream that records every request it gets. */
export interface Upstream extends Running {
  readonly name: string;
  readonly hits: Hit[];
}

/** Starts an upstream called `name` that records each request and answers it with `answer`. */
export function upstream(name: string, answer: Answer = reply()): Promise<Upstream> {
  const hits: Hit[] = [];
  return listen((req, res) => {
    const hit: Hit = {
      upstream: name,
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      body: Buffer.alloc(0),
      complete: false,
      closed: false,
      aborted: false,
      req,
      res,
    };
    hits.push(hit);
    req.on('data', (c: Buffer) => (hit.body = Buffer.concat([hit.body, c])));
    req.on('end', () => (hit.complete = true));
    res.on('close', () => {
      hit.closed = true;
      hit.aborted = !res.writableEnded;
    });
    answer(hit);
  }).then((running) => ({ ...running, name, hits }));
}

/** Runs `then` once the whole request body has arrived. */
function afterBody(hit: Hit, then: () => void): void {
  if (hit.complete) return then();
  hit.req.once('end', then);
  hit.req.resume();
}

/** Answers `status` once the body has arrived, with JSON naming the upstream and what it got. */
export function reply(status = 200, headers: Record<string, string> = {}): Answer {
  return (hit) =>
    afterBody(hit, () => {
      if (hit.closed) return;
      hit.res.writeHead(status, {
        'content-type': 'application/json',
        'x-upstream': hit.upstream,
        ...headers,
      });
      hit.res.end(
        JSON.stringify({ upstream: hit.upstream, method: hit.method, bodyLength: hit.body.length }),
      );
    });
}

/** Never answers (the request is held until the gateway or the test closes it). */
export const hold: Answer = () => {};

/** Answers like {@link reply} `ms` after the body arrived (unless the request is gone by then). */
export function replyAfter(ms: number, status = 200): Answer {
  const answer = reply(status);
  return (hit) =>
    afterBody(hit, () => {
      const timer = setTimeout(() => answer(hit), ms);
      hit.res.once('close', () => clearTimeout(timer));
    });
}

/** Reads the whole body, then resets the connection without an answer. */
export const resetAfterBody: Answer = (hit) =>
  afterBody(hit, () => hit.req.socket.resetAndDestroy());

/** What the client got. `error` is set when the request failed without a response. */
export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The response ended cleanly (its framing was complete). */
  clean: boolean;
  error?: Error;
}

/**
 * Sends one request (a fresh connection, closed after) and reads the whole response, with
 * {@link fetchResponse}. An error while the body is still being written after the response
 * arrived is ignored; an error before any response resolves with status 0 and `error`.
 */
export function send(
  url: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<Response> {
  return fetchResponse(url, options).then(
    ({ status, headers, body, clean }) => ({ status, headers, body, clean }),
    (error: Error) => ({ status: 0, headers: {}, body: Buffer.alloc(0), clean: false, error }),
  );
}

/** The JSON body {@link reply} answers with. */
export function answeredBy(res: Response): string | undefined {
  try {
    return (JSON.parse(res.body.toString('utf8')) as { upstream?: string }).upstream;
  } catch {
    return undefined;
  }
}

/** What {@link AttemptsHarness.walkRouter} sets on the service `svc` besides its target. */
export interface WalkService {
  retries?: RetryOptions | false;
  timeoutMs?: number;
}

/** The setup of a test file on retries or hedging; what it starts is closed after each test. */
export interface AttemptsHarness {
  /** Run after every test, last first (see {@link closersAfterEach}). */
  readonly closers: (() => Promise<void> | void)[];
  /** Starts an {@link upstream}. */
  readonly up: (name: string, answer?: Answer) => Promise<Upstream>;
  /** Starts a gateway in a host app at /api (see {@link startGateway}). */
  readonly gateway: (config: GatewayConfig) => Promise<GatewayHarness>;
  /**
   * Starts a router at /api (see {@link startRouter}) with one catch-all route (unless `router`
   * has `routes`) to service `svc`, whose target walks `urls` (see {@link walk}); outcomes
   * recorded.
   */
  readonly walkRouter: (
    urls: readonly string[],
    service?: WalkService,
    router?: Partial<RouterOptions>,
  ) => Promise<{ h: RouterHarness; picker: Walk; log: OutcomeLog }>;
}

/** An {@link AttemptsHarness} for this test file (call it at the top level). */
export function attemptsAfterEach(): AttemptsHarness {
  const closers = closersAfterEach();
  return {
    closers,
    async up(name, answer) {
      const u = await upstream(name, answer);
      closers.push(() => u.close());
      return u;
    },
    async gateway(config) {
      const g = await startGateway(config);
      closers.push(() => g.close());
      return g;
    },
    async walkRouter(urls, service = {}, router = {}) {
      const picker = walk(urls);
      const h = await startRouter({
        services: { svc: { target: picker, ...service } },
        routes: [{ path: '/**', service: 'svc' }],
        ...router,
      });
      closers.push(() => h.close());
      return { h, picker, log: recordOutcomes(h.router) };
    },
  };
}

/** Waits until every try `picker` saw start has ended, and at least `tries` started. */
export async function settled(picker: Walk, tries = 0): Promise<void> {
  await waitFor(
    () => picker.started.length >= tries && picker.ended.length === picker.started.length,
  );
}
