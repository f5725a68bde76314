import type { Server } from 'node:http';

interface Layer {
  handle: unknown;
  route?: unknown;
  path?: string;
  /** Express 5 (router 2.3+): the path the layer was created with. */
  rawPath?: unknown;
  /** Express 4: the compiled path and its parameter names. */
  regexp?: RegExp & { fast_slash?: boolean };
  keys?: unknown[];
  /** Express 5 (router 2): a match object or false. Express 4: a boolean, setting `path`. */
  match(path: string): boolean | { path: string };
}

/** An Express app as far as mount discovery needs it (Express 4 and 5). */
export interface ExpressAppLike {
  (req: unknown, res: unknown, next?: unknown): void;
  request?: object;
  response?: object;
}

/**
 * On the direct lane's dispatcher: the request listeners it stands in front of, so that mount
 * discovery still finds the host's Express app behind it.
 */
export const HOST_LISTENERS = Symbol('turnpike.hostListeners');

function stackOf(value: unknown): Layer[] | undefined {
  const v = value as {
    router?: { stack?: unknown };
    _router?: { stack?: unknown };
    stack?: unknown;
  } | null;
  const stack = v?.stack ?? v?._router?.stack ?? v?.router?.stack;
  return Array.isArray(stack) ? (stack as Layer[]) : undefined;
}

/** The Express apps that handle a server's requests (behind a direct lane too). */
export function appsOf(server: Server): ExpressAppLike[] {
  return server
    .listeners('request')
    .flatMap((l) => (l as { [HOST_LISTENERS]?: unknown[] })[HOST_LISTENERS] ?? [l])
    .filter(
      (l) => typeof l === 'function' && stackOf(l) !== undefined,
    ) as unknown as ExpressAppLike[];
}

/** True when `target` is mounted somewhere in the app's router tree. */
export function isMounted(app: unknown, target: unknown): boolean {
  const stack = stackOf(app);
  if (!stack) return false;
  return stack.some(
    (layer) => !layer.route && (layer.handle === target || isMounted(layer.handle, target)),
  );
}

/**
 * Where `target` is mounted for this path: the mount prefix, or undefined when the path does
 * not reach it. Walks the app's router tree with Express's own layer matching.
 */
export function findMount(
  app: unknown,
  target: unknown,
  pathname: string,
  base = '',
): string | undefined {
  const stack = stackOf(app);
  if (!stack) return undefined;
  for (const layer of stack) {
    if (layer.route || typeof layer.match !== 'function') continue;
    let m: ReturnType<Layer['match']>;
    try {
      m = layer.match(pathname);
    } catch {
      // Express throws (URIError, 400) on a bad escape in a param: not a mount this path
      // reaches; the host's own handling answers it.
      continue;
    }
    if (!m) continue;
    const matched = (typeof m === 'object' ? m.path : layer.path) ?? '';
    if (layer.handle === target) return base + matched;
    if (stackOf(layer.handle)) {
      const rest = pathname.slice(matched.length);
      const found = findMount(
        layer.handle,
        target,
        rest.startsWith('/') ? rest : `/${rest}`,
        base + matched,
      );
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** Where an app mounts the gateway, as far as a prefix can tell without a request. */
export type FixedMount =
  /** Mounted once, under a path without parameters: every path under `prefix` reaches it. */
  | { kind: 'fixed'; prefix: string }
  /** Mounted, but which paths reach it depends on the path: ask Express per request. */
  | { kind: 'dynamic'; reason: string }
  /** Not mounted in this app. */
  | { kind: 'absent' };

/** A path-to-regexp 8 string without parameters, wildcards, optional parts or escapes. */
const LITERAL = /^\/[^:*?+()[\]{}!\\]*$/;
/** Express 4's `app.use()` regexp for a literal path: `^\/api\/v1\/?(?=\/|$)`. */
const EXPRESS4_USE = /^\^((?:\\[/.]|[\w~%@=,;-])*)\\\/\?\(\?=\\\/\|\$\)$/;

/** The literal path a `use()` layer was created with, when Express keeps it and it has no parameters. */
function literalPath(layer: Layer): string | undefined {
  let path: string | undefined;
  if (typeof layer.rawPath === 'string') {
    if (LITERAL.test(layer.rawPath)) path = layer.rawPath;
  } else if (layer.regexp instanceof RegExp && layer.keys?.length === 0) {
    if (layer.regexp.fast_slash) path = '/';
    else path = EXPRESS4_USE.exec(layer.regexp.source)?.[1]?.replace(/\\(.)/g, '$1');
  }
  // Router 2.0 to 2.2 (Express 5.0, 5.1) keep only compiled matchers: undefined.
  return path?.replace(/\/+$/, '');
}

function collectMounts(value: unknown, target: unknown, base: string, out: unknown[]): void {
  for (const layer of stackOf(value) ?? []) {
    if (layer.route) continue;
    const leads = layer.handle === target;
    if (!leads && !isMounted(layer.handle, target)) continue;
    const path = literalPath(layer);
    if (path === undefined) out.push(undefined);
    else if (leads) out.push(base + path);
    else collectMounts(layer.handle, target, base + path, out);
  }
}

/**
 * The gateway's mount prefix in an app when it is one fixed string (`app.use('/api', gateway)`,
 * also through nested routers), read from the app's router tree without a request. Checked
 * against Express's own matching: the prefix itself must reach the gateway with that mount.
 */
export function fixedMount(app: unknown, target: unknown): FixedMount {
  const mounts: unknown[] = [];
  collectMounts(app, target, '', mounts);
  if (mounts.length === 0) return { kind: 'absent' };
  if (mounts.length > 1) return { kind: 'dynamic', reason: 'it is mounted more than once' };
  const prefix = mounts[0];
  if (typeof prefix !== 'string' || findMount(app, target, prefix || '/') !== prefix) {
    return {
      kind: 'dynamic',
      reason:
        'its mount path has parameters, is a RegExp or a list, or cannot be read from this ' +
        'version of Express (5.0 and 5.1 do not keep it)',
    };
  }
  return { kind: 'fixed', prefix };
}

/** True when `pathname` is `prefix` or below it, on a segment boundary ('' is everything). */
export function isUnder(pathname: string, prefix: string): boolean {
  return (
    pathname.startsWith(prefix) &&
    (pathname.length === prefix.length || pathname.charCodeAt(prefix.length) === 47) // '/'
  );
}
