import { METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express from 'express';
import { object, silentLogger, string } from '@turnpike/core';
import { createBalancer, type Balancer } from '@turnpike/balancer';
import { createRouter, type ServiceOptions } from '@turnpike/router';
import { validateConfig, type GatewayConfig } from './config';
import { appsOf, findMount, fixedMount, isMounted, isUnder, type ExpressAppLike } from './mount';
import { notFoundNext, type Next } from './next';
import { assignRequestId } from './request-id';
import { createUpgradeListener, type UpgradeMount } from './upgrade';

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

const attachOptions = object<AttachOptions>({
  path: string({
    pattern: /^(?:\/[^/?#]+)*\/?$/,
    expected: 'the mount path, starting with "/", e.g. "/api"',
  }),
});

/** The Router methods that add layers: refused on the gateway. */
const ROUTER_METHODS = ['use', 'route', 'param', 'all', ...METHODS.map((m) => m.toLowerCase())];

/** Where an app mounts the gateway, once known: a fixed prefix, or per request (`DYNAMIC`). */
const DYNAMIC = Symbol('dynamic mount');

/**
 * Creates the gateway from a config, validated here: a config that cannot work throws a
 * ConfigError naming the field. Everything per route is compiled now, not per request.
 */
export function createGateway(config: GatewayConfig): Gateway {
  const cfg = validateConfig(config);
  const logger = cfg.logger ?? silentLogger;
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
  // run. Gateway-wide middleware goes on the host app before the gateway. Express's own
  // `next` goes to the router, so that leaving the gateway (a stage's next('route')) goes on
  // to the host app's later handlers; called without one, leaving it is a 404 problem.
  const gateway = function turnpikeGateway(
    req: IncomingMessage,
    res: ServerResponse,
    next?: Next,
  ): void {
    assignRequestId(req, res);
    router(req, res, next ?? notFoundNext(req, res, logger));
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

  /** What close() undoes: the upgrade listeners off. */
  const disposers: (() => void)[] = [];
  /** The servers this gateway is attached to: one attachment each. */
  const servers = new WeakSet<Server>();
  let closed = false;

  // Mount discovery for upgrades, cached per app. A plain `app.use('/api', gateway)`, also
  // through nested routers, puts the gateway at one fixed prefix whatever the path, so the
  // prefix is read from the app's router tree on the first upgrade and kept (a WeakMap: the
  // app can go). A mount whose paths cannot be told by a prefix (parameters, a RegExp, several
  // mounts, an Express that does not keep the path) is DYNAMIC: Express's matching is asked on
  // every upgrade, as before. Apps that do not mount the gateway are not cached (it may be
  // mounted later). What the cache does not see: a second mount of the gateway added to the
  // app after its first upgrade (attach() after the app is complete).
  const mounts = new WeakMap<ExpressAppLike, string | typeof DYNAMIC>();
  function mountIn(app: ExpressAppLike, pathname: string): string | undefined {
    let known = mounts.get(app);
    if (known === undefined) {
      const fixed = fixedMount(app, gateway);
      if (fixed.kind === 'absent') return undefined;
      known = fixed.kind === 'fixed' ? fixed.prefix : DYNAMIC;
      mounts.set(app, known);
    }
    if (known !== DYNAMIC) {
      if (isUnder(pathname, known)) return known;
      // Express matches mount paths case-insensitively unless told otherwise: let it decide
      // for a path that differs from the prefix in case only.
      if (!isUnder(pathname.toLowerCase(), known.toLowerCase())) return undefined;
    }
    const mount = findMount(app, gateway, pathname);
    return mount !== undefined && isUnder(pathname, mount) ? mount : undefined;
  }

  gateway.attach = function attach(server, options = {}) {
    if (closed) throw new Error('Turnpike: attach() after close()');
    const { path } = attachOptions(options, 'attach.options');
    if (servers.has(server)) {
      throw new Error('Turnpike: this gateway is already attached to this server.');
    }
    const fixed = path?.replace(/\/$/, '');
    if (fixed === undefined && !appsOf(server).some((app) => isMounted(app, gateway))) {
      throw new Error(
        'Turnpike: attach(server) found no Express app on this server with the gateway mounted. ' +
          "Mount it first (app.use('/api', gateway)), or pass attach(server, { path: '/api' }).",
      );
    }
    let resolve: (pathname: string) => UpgradeMount | undefined;
    if (fixed !== undefined) {
      const mount = fixed;
      const at: UpgradeMount = { mount };
      resolve = (pathname) => (isUnder(pathname, mount) ? at : undefined);
    } else {
      resolve = (pathname) => {
        for (const app of appsOf(server)) {
          const mount = mountIn(app, pathname);
          if (mount !== undefined) return { mount, app };
        }
        return undefined;
      };
    }
    const onUpgrade = createUpgradeListener(server, resolve, router);
    server.on('upgrade', onUpgrade);
    servers.add(server);
    disposers.push(() => server.off('upgrade', onUpgrade));
  };

  gateway.close = async function close() {
    if (closed) return;
    closed = true;
    for (const dispose of disposers.splice(0)) dispose();
    for (const b of balancers) b.close();
    await router.close();
  };

  return gateway;
}
