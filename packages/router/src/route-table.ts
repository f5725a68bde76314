import type { IncomingMessage } from 'node:http';

/** What the table needs of a route: its pattern and its request predicates. */
export interface TableRoute {
  readonly path: string;
  /** Host and header matchers. */
  matchesRequest(req: IncomingMessage): boolean;
  /** Method check. */
  allowsMethod(method: string): boolean;
  /** The methods for an `Allow` header, or undefined for all. */
  readonly allow: readonly string[] | undefined;
}

/** The result of a lookup. */
export type Lookup<R> =
  | { kind: 'route'; route: R; segments: readonly string[] }
  | { kind: 'method'; allow: string }
  | { kind: 'none' };

class Node<R> {
  readonly statics = new Map<string, Node<R>>();
  any: Node<R> | undefined;
  /** Routes whose pattern ends at this node. */
  readonly ends: R[] = [];
  /** Routes whose pattern ends with `**` at this node. */
  readonly rest: R[] = [];
}

const NONE = Object.freeze({ kind: 'none' as const });
const EMPTY: readonly string[] = Object.freeze([]);

/** The segments of a pattern or a path: no leading slash, one trailing slash ignored. */
export function splitPath(path: string): string[] {
  const end =
    path.length > 1 && path.charCodeAt(path.length - 1) === 47 ? path.length - 1 : path.length;
  return end <= 1 ? [] : path.slice(1, end).split('/');
}

/**
 * A route table compiled once: a segment trie searched static child first, then a
 * one-segment wildcard (`:param` or `*`), then `**` (the rest, zero or more segments).
 * Routes with the same pattern keep their configured order. Matching is case-sensitive and
 * on whole segments; one trailing slash is ignored.
 */
export class RouteTable<R extends TableRoute> {
  private readonly root = new Node<R>();
  /** Patterns without wildcards, by path, with their lookup result built once. */
  private readonly exact = new Map<string, Lookup<R>[]>();
  /** "method" results by Allow list: a finite set, built once each. */
  private readonly methods = new Map<string, Lookup<R>>();

  constructor(routes: readonly R[]) {
    for (const route of routes) this.add(route);
  }

  private add(route: R): void {
    const segments = splitPath(route.path);
    let node = this.root;
    let wild = false;
    for (const seg of segments) {
      if (seg === '**') {
        node.rest.push(route);
        return;
      }
      if (seg === '*' || seg.startsWith(':')) {
        wild = true;
        node = node.any ??= new Node<R>();
      } else {
        let child = node.statics.get(seg);
        if (!child) node.statics.set(seg, (child = new Node<R>()));
        node = child;
      }
    }
    node.ends.push(route);
    if (!wild) {
      const key = segments.length === 0 ? '/' : `/${segments.join('/')}`;
      const result: Lookup<R> = Object.freeze({ kind: 'route' as const, route, segments: EMPTY });
      const list = this.exact.get(key);
      if (list) list.push(result);
      else this.exact.set(key, [result]);
    }
  }

  /** Finds the route for a request; `path` is the checked path without the query. */
  lookup(method: string, path: string, req: IncomingMessage): Lookup<R> {
    const key =
      path.length > 1 && path.charCodeAt(path.length - 1) === 47 ? path.slice(0, -1) : path;
    const exact = this.exact.get(key);
    if (exact) {
      for (const result of exact) {
        const route = (result as { route: R }).route;
        if (route.allowsMethod(method) && route.matchesRequest(req)) return result;
      }
    }
    const segments = splitPath(path);
    const route = this.find(this.root, segments, 0, method, req);
    if (route) return { kind: 'route', route, segments };
    // Slow path, for the error only: which methods would the path accept?
    const allowed = new Set<string>();
    let any = false;
    this.collect(this.root, segments, 0, (r) => {
      if (r.matchesRequest(req)) {
        any = true;
        if (r.allow) for (const m of r.allow) allowed.add(m);
      }
    });
    if (!any) return NONE;
    const allow = [...allowed].join(', ');
    let result = this.methods.get(allow);
    if (result === undefined) {
      result = Object.freeze({ kind: 'method' as const, allow });
      this.methods.set(allow, result);
    }
    return result;
  }

  private find(
    node: Node<R>,
    segs: readonly string[],
    i: number,
    method: string,
    req: IncomingMessage,
  ): R | undefined {
    if (i === segs.length) {
      for (const r of node.ends) if (r.allowsMethod(method) && r.matchesRequest(req)) return r;
    } else {
      const child = node.statics.get(segs[i]!);
      if (child) {
        const r = this.find(child, segs, i + 1, method, req);
        if (r) return r;
      }
      if (node.any) {
        const r = this.find(node.any, segs, i + 1, method, req);
        if (r) return r;
      }
    }
    for (const r of node.rest) if (r.allowsMethod(method) && r.matchesRequest(req)) return r;
    return undefined;
  }

  /** Visits every route whose pattern matches the path. */
  private collect(node: Node<R>, segs: readonly string[], i: number, visit: (r: R) => void): void {
    if (i === segs.length) node.ends.forEach(visit);
    else {
      const child = node.statics.get(segs[i]!);
      if (child) this.collect(child, segs, i + 1, visit);
      if (node.any) this.collect(node.any, segs, i + 1, visit);
    }
    node.rest.forEach(visit);
  }
}
