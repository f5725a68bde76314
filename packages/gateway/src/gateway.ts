import { METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import express from 'express';
import { object, string } from '@turnpike/core';
import { createBalancer, type Balancer } from '@turnpike/balancer';
import { createRouter, createUpgradeResponse, type ServiceOptions } from '@turnpike/router';
import { validateConfig, type GatewayConfig } from './config';
import { appsOf, findMount, isMounted, type ExpressAppLike } from './mount';
import { assignRequestId } from './request-id';

/** Options of {@link Gateway.attach}. */
export interface AttachOptions {
  /** The mount prefix, when it cannot be discovered from the server's Express app (e.g. a sub-app). Default: discovered. */
  path?: string;
}

/** The gateway: an Express router to mount, plus WebSocket attachment and shutdown. */
export interface Gateway extends express.Router {
  /** Routes WebSocket upgrades that arrive under the gateway's mount prefix; others are left to the host. */
  attach(server: Server, options?: AttachOptions): void;
  /** Stops everything the gateway started: keep-alive sockets, WebSockets, listeners. Idempotent. */
  close(): Promise<void>;
}

function noop(): void {}

const attachOptions = object<AttachOptions>({
  path: string({
    pattern: /^(?:\/[^/?#]+)*\/?$/,
    expected: 'the mount path, starting with "/", e.g. "/api"',
  }),
});

/** The Router methods that add layers: refused on the gateway. */
const ROUTER_METHODS = ['use', 'route', 'param', 'all', ...METHODS.map((m) => m.toLowerCase())];

/**
 * Creates the gateway from a config, validated here: a config that cannot work throws a
 * ConfigError naming the field. Everything per route is compiled now, not per request.
 */
export function createGateway(config: GatewayConfig): Gateway {
  const cfg = validateConfig(config);
  const balancers: Balancer[] = [];
  const services: Record<string, ServiceOptions> = {};
  for (const [name, { targets, balancer: strategy, ...proxy }] of Object.entries(cfg.services)) {
    const balancer = createBalancer({ name, targets, strategy }, `services.${name}`);
    balancers.push(balancer);
    // The balancer supplies the target function; every proxy setting passes through as is.
    services[name] = { ...proxy, target: balancer.pick };
  }
  const { services: _configured, ...routerOptions } = cfg;
  const router = createRouter({ ...routerOptions, services });

  // The gateway answers every request under its mount, so it is its own handler: Express
  // calls it directly, with no router layer walk. It is shaped as an express Router (its
  // prototype is one), but adding routes or middleware to it is refused: they could never
  // run. Gateway-wide middleware goes on the host app before the gateway.
  const gateway = function turnpikeGateway(req: IncomingMessage, res: ServerResponse): void {
    assignRequestId(req, res);
    router(req, res, noop);
  } as unknown as Gateway;
  Object.setPrototypeOf(gateway, express.Router());
  for (const method of ROUTER_METHODS) {
    Object.defineProperty(gateway, method, {
      value: () => {
        throw new TypeError(
          `Turnpike: gateway.${method}() is not supported: the gateway answers every request ` +
            'under its mount, so nothing added to it would run. Add middleware to the host app ' +
            "before the gateway (app.use('/api', mw, gateway)), and routes to the config.",
        );
      },
    });
  }

  const attached: [Server, (req: IncomingMessage, socket: Duplex, head: Buffer) => void][] = [];
  let closed = false;

  gateway.attach = function attach(server, options = {}) {
    if (closed) throw new Error('Turnpike: attach() after close()');
    const { path } = attachOptions(options, 'attach.options');
    const fixed = path?.replace(/\/$/, '');
    if (fixed === undefined && !appsOf(server).some((app) => isMounted(app, gateway))) {
      throw new Error(
        'Turnpike: attach(server) found no Express app on this server with the gateway mounted. ' +
          "Mount it first (app.use('/api', gateway)), or pass attach(server, { path: '/api' }).",
      );
    }
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const pathname = q === -1 ? url : url.slice(0, q);
      let mount = fixed;
      let app: ExpressAppLike | undefined;
      if (mount === undefined) {
        for (const candidate of appsOf(server)) {
          mount = findMount(candidate, gateway, pathname);
          if (mount !== undefined) {
            app = candidate;
            break;
          }
        }
      }
      if (mount === undefined) return; // not under the gateway: the host's to handle
      if (mount !== '' && pathname !== mount && !pathname.startsWith(`${mount}/`)) return;
      const rest = url.slice(mount.length);
      const r = req as IncomingMessage & { originalUrl?: string; baseUrl?: string; id?: string };
      r.originalUrl = url;
      r.baseUrl = mount;
      req.url = rest === '' || rest.startsWith('?') ? `/${rest}` : rest;
      const res = createUpgradeResponse(req, socket);
      if (app?.request && app.response) {
        // Express-style stages (req.ip, res.status, …) work on upgrades too.
        Object.setPrototypeOf(req, app.request);
        Object.setPrototypeOf(res, app.response);
        Object.assign(req, { res, app });
      }
      assignRequestId(req, res);
      router.upgrade(req, socket, head, res);
    };
    server.on('upgrade', onUpgrade);
    attached.push([server, onUpgrade]);
  };

  gateway.close = async function close() {
    if (closed) return;
    closed = true;
    for (const [server, listener] of attached) server.off('upgrade', listener);
    attached.length = 0;
    for (const b of balancers) b.close();
    await router.close();
  };

  return gateway;
}
