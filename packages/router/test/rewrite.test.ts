import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { compileRoute } from '../src/route';
import { RouteTable } from '../src/route-table';
import type { RouteOptions } from '../src/types';
import { configErrorOf } from '../../../test/helpers/expectations';

function compile(route: Omit<RouteOptions, 'service'>) {
  return compileRoute({ service: 'svc', ...route }, 0, false);
}

/**
 * The forwarded path for `path` (already checked, without the query), the way the router
 * computes it: the route is looked up in a table, then its rewrite gets the path and the
 * segments of the match.
 */
function forwarded(route: Omit<RouteOptions, 'service'>, path: string): string {
  const compiled = compile(route);
  const found = new RouteTable([compiled]).lookup('GET', path, new IncomingMessage(new Socket()));
  if (found.kind !== 'route') throw new Error(`${route.path} does not match ${path}`);
  return compiled.rewrite!(path, found.segments);
}

describe('stripPrefix', () => {
  it('removes the prefix in front of the rest of the path', () => {
    expect(forwarded({ path: '/users/**', stripPrefix: '/users' }, '/users/1')).toBe('/1');
  });

  it('removes the prefix once, never every occurrence', () => {
    expect(forwarded({ path: '/users/**', stripPrefix: '/users' }, '/users/users/1')).toBe(
      '/users/1',
    );
  });

  it('removes only the leading occurrence when the prefix appears later too', () => {
    expect(forwarded({ path: '/api/**', stripPrefix: '/api' }, '/api/v1/api/x')).toBe('/v1/api/x');
  });

  it('gives "/" when the whole path is the prefix', () => {
    expect(forwarded({ path: '/users/**', stripPrefix: '/users' }, '/users')).toBe('/');
  });

  it('gives "/" when the path is the prefix with a trailing slash', () => {
    expect(forwarded({ path: '/users/**', stripPrefix: '/users' }, '/users/')).toBe('/');
  });

  it('keeps a trailing slash after the rest', () => {
    expect(forwarded({ path: '/users/**', stripPrefix: '/users' }, '/users/1/')).toBe('/1/');
  });

  it('removes a multi-segment prefix', () => {
    expect(forwarded({ path: '/api/v1/**', stripPrefix: '/api/v1' }, '/api/v1/users/7')).toBe(
      '/users/7',
    );
  });

  it('removes a prefix in front of a param', () => {
    expect(forwarded({ path: '/users/:id', stripPrefix: '/users' }, '/users/42')).toBe('/42');
  });

  it('removes a prefix that is the whole exact path', () => {
    expect(forwarded({ path: '/health', stripPrefix: '/health' }, '/health')).toBe('/');
  });

  it('returns a path only: the query is the caller’s to append', () => {
    const out = forwarded({ path: '/users/**', stripPrefix: '/users' }, '/users/1');
    expect(out).not.toContain('?');
  });

  it('refuses a prefix that is not a prefix of the route path, naming the field', () => {
    const error = configErrorOf(() => compile({ path: '/users/**', stripPrefix: '/accounts' }));
    expect(error.path).toBe('routes[0].stripPrefix');
    expect(error.value).toBe('/accounts');
    expect(error.message).toContain('/users/**');
  });

  it('refuses a prefix that ends inside a segment of the route path', () => {
    const error = configErrorOf(() => compile({ path: '/users/**', stripPrefix: '/use' }));
    expect(error.path).toBe('routes[0].stripPrefix');
  });

  it('refuses a prefix longer than the route path', () => {
    const error = configErrorOf(() => compile({ path: '/users', stripPrefix: '/users/all' }));
    expect(error.path).toBe('routes[0].stripPrefix');
  });

  it('refuses a prefix that differs from the route path only in case', () => {
    const error = configErrorOf(() => compile({ path: '/users/**', stripPrefix: '/Users' }));
    expect(error.path).toBe('routes[0].stripPrefix');
  });

  test.each<[string, string, string]>([
    ['a ":param" segment', '/:tenant/users/**', '/:tenant'],
    ['a "*" segment', '/files/*/raw', '/files/*'],
    ['a "**" segment', '/static/**', '/static/**'],
  ])('refuses a prefix containing %s, which is not literal', (_label, routePath, stripPrefix) => {
    const error = configErrorOf(() => compile({ path: routePath, stripPrefix }));
    expect(error.path).toBe('routes[0].stripPrefix');
  });
});

describe('rewrite templates', () => {
  it('replaces a literal path', () => {
    expect(forwarded({ path: '/status', rewrite: '/internal/health' }, '/status')).toBe(
      '/internal/health',
    );
  });

  it('fills in a param', () => {
    expect(forwarded({ path: '/users/:id', rewrite: '/v2/accounts/:id' }, '/users/42')).toBe(
      '/v2/accounts/42',
    );
  });

  it('fills in several params in any order', () => {
    expect(
      forwarded(
        { path: '/users/:user/orders/:order', rewrite: '/orders/:order/by/:user' },
        '/users/7/orders/99',
      ),
    ).toBe('/orders/99/by/7');
  });

  it('fills in the same param twice', () => {
    expect(forwarded({ path: '/u/:id', rewrite: '/a/:id/b/:id' }, '/u/3')).toBe('/a/3/b/3');
  });

  it('fills in "**" with the rest of the path', () => {
    expect(forwarded({ path: '/files/**', rewrite: '/blob/**' }, '/files/a/b/c.txt')).toBe(
      '/blob/a/b/c.txt',
    );
  });

  it('fills in "**" with nothing when the rest is empty', () => {
    expect(forwarded({ path: '/files/**', rewrite: '/blob/**' }, '/files')).toBe('/blob');
  });

  it('gives "/" for "/**" when the rest is empty', () => {
    expect(forwarded({ path: '/api/**', rewrite: '/**' }, '/api')).toBe('/');
  });

  it('gives the rest for "/**"', () => {
    expect(forwarded({ path: '/api/**', rewrite: '/**' }, '/api/users/1')).toBe('/users/1');
  });

  it('fills in params and "**" together', () => {
    expect(
      forwarded({ path: '/t/:tenant/api/**', rewrite: '/:tenant/**' }, '/t/acme/api/x/y'),
    ).toBe('/acme/x/y');
  });

  it('keeps a trailing slash the client sent', () => {
    expect(forwarded({ path: '/users/:id', rewrite: '/v2/users/:id' }, '/users/42/')).toBe(
      '/v2/users/42/',
    );
  });

  it('keeps percent-encoded param values as they are', () => {
    expect(forwarded({ path: '/u/:name', rewrite: '/v2/:name' }, '/u/a%20b')).toBe('/v2/a%20b');
  });

  it('returns a path only: the query is the caller’s to append', () => {
    const out = forwarded({ path: '/users/:id', rewrite: '/v2/users/:id' }, '/users/42');
    expect(out).not.toContain('?');
  });

  it('refuses a template naming an unknown param, naming the field', () => {
    const error = configErrorOf(() => compile({ path: '/users/:id', rewrite: '/v2/:userId' }));
    expect(error.path).toBe('routes[0].rewrite');
    expect(error.value).toBe('/v2/:userId');
    expect(error.message).toContain('/users/:id');
  });

  it('refuses "**" in a template when the route path has no "**"', () => {
    const error = configErrorOf(() => compile({ path: '/users/:id', rewrite: '/v2/**' }));
    expect(error.path).toBe('routes[0].rewrite');
  });

  it('refuses "*" in a template', () => {
    const error = configErrorOf(() => compile({ path: '/users/*', rewrite: '/v2/*' }));
    expect(error.path).toBe('routes[0].rewrite');
  });

  it('refuses stripPrefix and rewrite together, naming rewrite', () => {
    const error = configErrorOf(() =>
      compile({ path: '/users/**', stripPrefix: '/users', rewrite: '/v2/**' }),
    );
    expect(error.path).toBe('routes[0].rewrite');
    expect(error.expected).toBe('either stripPrefix or rewrite, not both');
  });

  it('names the route index in the field path', () => {
    const error = configErrorOf(() =>
      compileRoute({ path: '/a/:id', service: 's', rewrite: '/:nope' }, 3, false),
    );
    expect(error.path).toBe('routes[3].rewrite');
  });
});

describe('routes without a rewrite', () => {
  it('have no rewrite function', () => {
    expect(compile({ path: '/users/**' }).rewrite).toBeUndefined();
  });
});
