import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import { GatewayError, sendProblem } from '@turnpike/core';
import type { Balancer, TargetStatus } from '@turnpike/balancer';
import type { MountedRequest } from './next';

/** `GET {path}/live`: the process serves requests. */
export interface LiveBody {
  status: 'ok';
}

/** `GET {path}/ready`: every service has a usable target (200), or the ones without one (503). */
export type ReadyBody = { status: 'ready' } | { status: 'not-ready'; services: string[] };

/** One service in `GET {path}/services` and `GET {path}/services/:name`. */
export interface ServiceHealth {
  /** Some target is usable now (healthy, not ejected, not draining). */
  ready: boolean;
  /** Each target's state, in configured order. */
  targets: TargetStatus[];
}

/** `GET {path}/services/:name`. */
export interface ServiceHealthBody extends ServiceHealth {
  name: string;
}

/** `GET {path}/services`: every service by name. */
export interface ServicesHealthBody {
  services: Record<string, ServiceHealth>;
}

const NOT_FOUND = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');
const STATS_FAILED = new GatewayError('ERR_TURNPIKE_INTERNAL');
const METHOD_NOT_ALLOWED = new GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED', {
  headers: { allow: 'GET, HEAD' },
});

/** The health endpoints over a gateway's balancers; the same handlers serve every lane and healthRouter(). */
export class HealthEndpoints {
  constructor(
    private readonly balancers: ReadonlyMap<string, Balancer>,
    private readonly stats: () => Promise<object>,
  ) {}

  /**
   * Answers a request whose path, below the health path, is `rest` ('/live', '/ready', and with
   * details '/services', '/services/:name'; the query removed, one trailing slash ignored).
   * Returns false for any other path, which goes on to the routes: only the endpoints are
   * taken from them (and a route that could match one is refused at creation).
   */
  serve(rest: string, req: MountedRequest, res: ServerResponse, details: boolean): boolean {
    const path = rest.length > 1 && rest.endsWith('/') ? rest.slice(0, -1) : rest;
    if (path === '/live') this.live(req, res);
    else if (path === '/ready') this.ready(req, res);
    else if (details && path === '/services') this.services(req, res);
    else if (details && path === '/stats') this.statsOf(req, res);
    else if (details && path.startsWith('/services/') && !path.includes('/', 10)) {
      this.service(decode(path.slice('/services/'.length)), req, res);
    } else return false;
    return true;
  }

  live(req: MountedRequest, res: ServerResponse): void {
    if (allowed(req, res)) send(req, res, 200, { status: 'ok' } satisfies LiveBody);
  }

  ready(req: MountedRequest, res: ServerResponse): void {
    if (!allowed(req, res)) return;
    const down: string[] = [];
    for (const [name, balancer] of this.balancers) if (!balancer.hasHealthy()) down.push(name);
    if (down.length === 0) send(req, res, 200, { status: 'ready' } satisfies ReadyBody);
    else send(req, res, 503, { status: 'not-ready', services: down } satisfies ReadyBody);
  }

  services(req: MountedRequest, res: ServerResponse): void {
    if (!allowed(req, res)) return;
    const services: Record<string, ServiceHealth> = {};
    for (const [name, balancer] of this.balancers) services[name] = healthOf(balancer);
    send(req, res, 200, { services } satisfies ServicesHealthBody);
  }

  /** `GET {path}/stats`: the gateway's stats (see `Gateway.stats()`). */
  statsOf(req: MountedRequest, res: ServerResponse): void {
    if (!allowed(req, res)) return;
    this.stats().then(
      (body) => send(req, res, 200, body),
      () => sendProblem(req, res, STATS_FAILED),
    );
  }

  service(name: string | undefined, req: MountedRequest, res: ServerResponse): void {
    if (!allowed(req, res)) return;
    const balancer = name === undefined ? undefined : this.balancers.get(name);
    if (balancer === undefined) return sendProblem(req, res, NOT_FOUND);
    send(req, res, 200, { name: name!, ...healthOf(balancer) } satisfies ServiceHealthBody);
  }

  /**
   * The same endpoints as an Express router, to mount wherever the host likes (e.g. on an
   * internal port): `/live`, `/ready`, and with `details` `/services` and `/services/:name`.
   */
  router(details: boolean): express.Router {
    const router = express.Router();
    router.all('/live', (req, res) => this.live(req, res));
    router.all('/ready', (req, res) => this.ready(req, res));
    if (details) {
      router.all('/services', (req, res) => this.services(req, res));
      router.all('/stats', (req, res) => this.statsOf(req, res));
      router.all('/services/:name', (req, res) => this.service(String(req.params.name), req, res));
    }
    return router;
  }
}

function healthOf(balancer: Balancer): ServiceHealth {
  return { ready: balancer.hasHealthy(), targets: balancer.status() };
}

function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** GET and HEAD only; anything else is answered 405 with Allow here. */
function allowed(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  sendProblem(req, res, METHOD_NOT_ALLOWED);
  return false;
}

/** A JSON answer that no cache keeps: health is about now. */
function send(req: IncomingMessage, res: ServerResponse, status: number, body: object): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : payload);
}
