import type { Server } from 'node:http';

interface Layer {
  handle: unknown;
  route?: unknown;
  path?: string;
  /** Express 5 (router 2): a match object or false. Express 4: a boolean, setting `path`. */
  match(path: string): boolean | { path: string };
}

/** An Express app as far as mount discovery needs it (Express 4 and 5). */
export interface ExpressAppLike {
  (req: unknown, res: unknown, next?: unknown): void;
  request?: object;
  response?: object;
}

function stackOf(value: unknown): Layer[] | undefined {
  const v = value as {
    router?: { stack?: unknown };
    _router?: { stack?: unknown };
    stack?: unknown;
  } | null;
  const stack = v?.stack ?? v?._router?.stack ?? v?.router?.stack;
  return Array.isArray(stack) ? (stack as Layer[]) : undefined;
}

/** The Express apps that handle a server's requests. */
export function appsOf(server: Server): ExpressAppLike[] {
  return server
    .listeners('request')
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
    const m = layer.match(pathname);
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
