import type { AuthIdentity, AuthMethod, ClaimPaths } from './types';

/** A dotted path, split once: `realm_access.roles` → `['realm_access', 'roles']`. */
export type Path = readonly string[];

export function splitPath(path: string): Path {
  return path.split('.');
}

/** The value at `path` in `claims`, own properties only (never a prototype's). */
export function at(claims: Readonly<Record<string, unknown>>, path: Path): unknown {
  let v: unknown = claims;
  for (const key of path) {
    if (typeof v !== 'object' || v === null || !Object.prototype.hasOwnProperty.call(v, key)) {
      return undefined;
    }
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

const EMPTY: readonly string[] = Object.freeze([]);

/** A list of names: a list of strings, or one space-separated string (`scope`). Others: none. */
export function names(value: unknown): readonly string[] {
  if (typeof value === 'string') {
    const parts = value.split(' ').filter((s) => s !== '');
    return parts.length === 0 ? EMPTY : Object.freeze(parts);
  }
  if (Array.isArray(value)) {
    const parts = value.filter((s): s is string => typeof s === 'string' && s !== '');
    return parts.length === 0 ? EMPTY : Object.freeze(parts);
  }
  return EMPTY;
}

/** The claim paths, compiled once. */
export interface CompiledPaths {
  readonly roles: Path;
  readonly scopes: readonly Path[];
  readonly subject: Path;
  readonly consumer: readonly Path[];
}

export function compilePaths(p: ClaimPaths = {}): CompiledPaths {
  return {
    roles: splitPath(p.roles ?? 'roles'),
    scopes: p.scopes === undefined ? [['scope'], ['scp']] : [splitPath(p.scopes)],
    subject: splitPath(p.subject ?? 'sub'),
    consumer: p.consumer === undefined ? [['client_id'], ['azp']] : [splitPath(p.consumer)],
  };
}

function first(claims: Readonly<Record<string, unknown>>, paths: readonly Path[]): unknown {
  for (const p of paths) {
    const v = at(claims, p);
    if (v !== undefined) return v;
  }
  return undefined;
}

/** The identity of verified claims; undefined when they name no subject. */
export function identityOf(
  claims: Readonly<Record<string, unknown>>,
  paths: CompiledPaths,
  method: AuthMethod,
): AuthIdentity | undefined {
  const sub = at(claims, paths.subject);
  const subject = typeof sub === 'string' ? sub : typeof sub === 'number' ? String(sub) : '';
  if (subject === '') return undefined;
  const consumer = first(claims, paths.consumer);
  return Object.freeze({
    subject,
    roles: names(at(claims, paths.roles)),
    scopes: names(first(claims, paths.scopes)),
    claims: Object.freeze({ ...claims }),
    method,
    consumer: typeof consumer === 'string' && consumer !== '' ? consumer : undefined,
  });
}
