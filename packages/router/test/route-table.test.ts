import { IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import { compileRoute, type CompiledRoute } from '../src/route';
import { RouteTable, splitPath, type Lookup } from '../src/route-table';
import type { RouteOptions } from '../src/types';

type Spec = Omit<RouteOptions, 'service'> & { service?: string };

function table(specs: readonly Spec[]): RouteTable<CompiledRoute> {
  return new RouteTable(
    specs.map((spec, i) => compileRoute({ service: 'svc', ...spec }, i, false)),
  );
}

function request(headers: IncomingHttpHeaders = {}): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.headers = headers;
  return req;
}

function lookup(
  specs: readonly Spec[],
  path: string,
  options: { method?: string; headers?: IncomingHttpHeaders } = {},
): Lookup<CompiledRoute> {
  return table(specs).lookup(options.method ?? 'GET', path, request(options.headers));
}

/** The name of the route that serves `path`, or the lookup's kind when none does. */
function served(
  specs: readonly Spec[],
  path: string,
  options: { method?: string; headers?: IncomingHttpHeaders } = {},
): string {
  const found = lookup(specs, path, options);
  return found.kind === 'route' ? found.route.info.name : `(${found.kind})`;
}

describe('splitPath', () => {
  test.each<[string, string[]]>([
    ['/', []],
    ['/a', ['a']],
    ['/a/b', ['a', 'b']],
    ['/a/b/', ['a', 'b']],
    ['/:id/**', [':id', '**']],
  ])('splits %j into %j', (path, segments) => {
    expect(splitPath(path)).toEqual(segments);
  });
});

describe('RouteTable: exact paths', () => {
  const routes: Spec[] = [{ path: '/users', name: 'users' }];

  it('matches the exact path', () => {
    expect(served(routes, '/users')).toBe('users');
  });

  it('does not match a longer path', () => {
    expect(served(routes, '/users/1')).toBe('(none)');
  });

  it('does not match a shorter path', () => {
    expect(served([{ path: '/users/all', name: 'all' }], '/users')).toBe('(none)');
  });

  it('matches the root route at the root', () => {
    expect(served([{ path: '/', name: 'root' }], '/')).toBe('root');
  });

  it('does not match the root route below the root', () => {
    expect(served([{ path: '/', name: 'root' }], '/a')).toBe('(none)');
  });

  it('matches a multi-segment exact path', () => {
    expect(served([{ path: '/api/v1/users', name: 'v1' }], '/api/v1/users')).toBe('v1');
  });

  it('answers none when nothing matches', () => {
    expect(lookup(routes, '/orders')).toEqual({ kind: 'none' });
  });
});

describe('RouteTable: params and wildcards', () => {
  it('matches ":param" against one segment', () => {
    expect(served([{ path: '/users/:id', name: 'user' }], '/users/42')).toBe('user');
  });

  it('returns the path segments with a ":param" match', () => {
    const found = lookup([{ path: '/users/:id' }], '/users/42');
    expect(found.kind === 'route' && found.segments).toEqual(['users', '42']);
  });

  it('does not match ":param" against zero segments', () => {
    expect(served([{ path: '/users/:id', name: 'user' }], '/users')).toBe('(none)');
  });

  it('does not match ":param" against two segments', () => {
    expect(served([{ path: '/users/:id', name: 'user' }], '/users/42/orders')).toBe('(none)');
  });

  it('matches "*" against one segment', () => {
    expect(served([{ path: '/files/*', name: 'file' }], '/files/a.txt')).toBe('file');
  });

  it('does not match "*" against two segments', () => {
    expect(served([{ path: '/files/*', name: 'file' }], '/files/a/b.txt')).toBe('(none)');
  });

  it('does not match "*" against zero segments', () => {
    expect(served([{ path: '/files/*', name: 'file' }], '/files')).toBe('(none)');
  });

  test.each(['/static', '/static/', '/static/a', '/static/a/b/c.css'])(
    'matches "**" against %j (zero or more segments)',
    (path) => {
      expect(served([{ path: '/static/**', name: 'static' }], path)).toBe('static');
    },
  );

  test.each(['/', '/a', '/a/b/c'])('matches "/**" against %j', (path) => {
    expect(served([{ path: '/**', name: 'all' }], path)).toBe('all');
  });

  it('matches params and a final "**" together', () => {
    expect(served([{ path: '/t/:tenant/**', name: 't' }], '/t/acme/x/y')).toBe('t');
  });
});

describe('RouteTable: precedence', () => {
  it('prefers a static segment to a param, whatever the order', () => {
    const routes: Spec[] = [
      { path: '/users/:id', name: 'param' },
      { path: '/users/me', name: 'static' },
    ];
    expect(served(routes, '/users/me')).toBe('static');
  });

  it('still uses the param for other values', () => {
    const routes: Spec[] = [
      { path: '/users/:id', name: 'param' },
      { path: '/users/me', name: 'static' },
    ];
    expect(served(routes, '/users/you')).toBe('param');
  });

  it('prefers a param to "**", whatever the order', () => {
    const routes: Spec[] = [
      { path: '/users/**', name: 'rest' },
      { path: '/users/:id', name: 'param' },
    ];
    expect(served(routes, '/users/1')).toBe('param');
  });

  it('prefers a static path to "**", whatever the order', () => {
    const routes: Spec[] = [
      { path: '/users/**', name: 'rest' },
      { path: '/users/me', name: 'static' },
    ];
    expect(served(routes, '/users/me')).toBe('static');
  });

  it('falls back to "**" when the param route does not reach the end', () => {
    const routes: Spec[] = [
      { path: '/users/:id', name: 'param' },
      { path: '/users/**', name: 'rest' },
    ];
    expect(served(routes, '/users/1/orders')).toBe('rest');
  });

  it('backtracks from a static branch that does not match further', () => {
    const routes: Spec[] = [
      { path: '/a/b/c', name: 'static' },
      { path: '/a/:x/d', name: 'param' },
    ];
    expect(served(routes, '/a/b/d')).toBe('param');
  });

  it('prefers a deeper "**" to a shallower one', () => {
    const routes: Spec[] = [
      { path: '/**', name: 'all' },
      { path: '/api/**', name: 'api' },
    ];
    expect(served(routes, '/api/x')).toBe('api');
  });

  it('uses the configured order between routes with the same pattern', () => {
    const routes: Spec[] = [
      { path: '/users/:id', name: 'first' },
      { path: '/users/:id', name: 'second' },
    ];
    expect(served(routes, '/users/1')).toBe('first');
  });

  it('uses the configured order between ":param" and "*"', () => {
    const routes: Spec[] = [
      { path: '/users/*', name: 'star' },
      { path: '/users/:id', name: 'param' },
    ];
    expect(served(routes, '/users/1')).toBe('star');
  });

  it('uses the configured order between two exact routes', () => {
    const routes: Spec[] = [
      { path: '/health', name: 'first' },
      { path: '/health', name: 'second' },
    ];
    expect(served(routes, '/health')).toBe('first');
  });

  it('uses the configured order between two "**" routes', () => {
    const routes: Spec[] = [
      { path: '/api/**', name: 'first' },
      { path: '/api/**', name: 'second' },
    ];
    expect(served(routes, '/api/x')).toBe('first');
  });

  it('moves to the next route with the same pattern when the first does not match the request', () => {
    const routes: Spec[] = [
      { path: '/users', name: 'beta', headers: { 'x-beta': '1' } },
      { path: '/users', name: 'default' },
    ];
    expect(served(routes, '/users')).toBe('default');
  });
});

describe('RouteTable: segments and slashes', () => {
  it('is case-sensitive', () => {
    expect(served([{ path: '/users', name: 'users' }], '/Users')).toBe('(none)');
  });

  it('is case-sensitive below a "**"', () => {
    expect(served([{ path: '/users/**', name: 'users' }], '/USERS/1')).toBe('(none)');
  });

  it('does not match "/users/**" against "/usersx"', () => {
    expect(served([{ path: '/users/**', name: 'users' }], '/usersx')).toBe('(none)');
  });

  it('does not match "/users/**" against "/usersx/1"', () => {
    expect(served([{ path: '/users/**', name: 'users' }], '/usersx/1')).toBe('(none)');
  });

  it('does not match "/users" against "/user"', () => {
    expect(served([{ path: '/users', name: 'users' }], '/user')).toBe('(none)');
  });

  it('ignores one trailing slash on an exact path', () => {
    expect(served([{ path: '/users', name: 'users' }], '/users/')).toBe('users');
  });

  it('ignores one trailing slash on a param path', () => {
    expect(served([{ path: '/users/:id', name: 'user' }], '/users/1/')).toBe('user');
  });

  it('ignores a trailing slash in the pattern', () => {
    expect(served([{ path: '/users/', name: 'users' }], '/users')).toBe('users');
  });

  it('does not ignore two trailing slashes', () => {
    expect(served([{ path: '/users', name: 'users' }], '/users//')).toBe('(none)');
  });
});

describe('RouteTable: methods', () => {
  it('matches an allowed method', () => {
    expect(served([{ path: '/u', name: 'u', methods: ['POST'] }], '/u', { method: 'POST' })).toBe(
      'u',
    );
  });

  it('answers kind "method" with the Allow list for a method the route refuses', () => {
    expect(lookup([{ path: '/u', methods: ['POST', 'PUT'] }], '/u', { method: 'GET' })).toEqual({
      kind: 'method',
      allow: 'POST, PUT',
    });
  });

  it('lists HEAD in Allow when GET is allowed', () => {
    expect(lookup([{ path: '/u', methods: ['GET'] }], '/u', { method: 'POST' })).toEqual({
      kind: 'method',
      allow: 'GET, HEAD',
    });
  });

  it('serves HEAD on a GET route', () => {
    expect(served([{ path: '/u', name: 'u', methods: ['GET'] }], '/u', { method: 'HEAD' })).toBe(
      'u',
    );
  });

  it('does not serve HEAD on a route without GET', () => {
    expect(lookup([{ path: '/u', methods: ['POST'] }], '/u', { method: 'HEAD' }).kind).toBe(
      'method',
    );
  });

  it('merges the Allow lists of every route on the path', () => {
    const routes: Spec[] = [
      { path: '/u/:id', methods: ['GET'] },
      { path: '/u/**', methods: ['DELETE'] },
    ];
    expect(lookup(routes, '/u/1', { method: 'PATCH' })).toEqual({
      kind: 'method',
      allow: 'GET, HEAD, DELETE',
    });
  });

  it('moves to a less specific route that allows the method', () => {
    const routes: Spec[] = [
      { path: '/u/me', name: 'me', methods: ['GET'] },
      { path: '/u/:id', name: 'any', methods: ['POST'] },
    ];
    expect(served(routes, '/u/me', { method: 'POST' })).toBe('any');
  });

  it('serves every method when no methods are given', () => {
    expect(served([{ path: '/u', name: 'u' }], '/u', { method: 'PROPFIND' })).toBe('u');
  });

  it('answers none, not "method", when the path matches but the host does not', () => {
    const routes: Spec[] = [{ path: '/u', methods: ['GET'], host: 'api.example.com' }];
    expect(lookup(routes, '/u', { method: 'POST', headers: { host: 'www.example.com' } })).toEqual({
      kind: 'none',
    });
  });
});

describe('RouteTable: host matchers', () => {
  const exact: Spec[] = [{ path: '/', name: 'api', host: 'api.example.com' }];
  const wildcard: Spec[] = [{ path: '/', name: 'sub', host: '*.example.com' }];

  test.each(['api.example.com', 'api.example.com:8080', 'API.Example.COM'])(
    'an exact host matches Host %j',
    (host) => {
      expect(served(exact, '/', { headers: { host } })).toBe('api');
    },
  );

  test.each(['www.example.com', 'example.com', 'api.example.com.evil.net', 'xapi.example.com'])(
    'an exact host does not match Host %j',
    (host) => {
      expect(served(exact, '/', { headers: { host } })).toBe('(none)');
    },
  );

  it('a host matcher does not match a request without Host', () => {
    expect(served(exact, '/')).toBe('(none)');
  });

  it('an exact host with a port matches that port', () => {
    const routes: Spec[] = [{ path: '/', name: 'p', host: 'api.example.com:8443' }];
    expect(served(routes, '/', { headers: { host: 'api.example.com:8443' } })).toBe('p');
  });

  it('an exact host with a port does not match another port', () => {
    const routes: Spec[] = [{ path: '/', name: 'p', host: 'api.example.com:8443' }];
    expect(served(routes, '/', { headers: { host: 'api.example.com:9000' } })).toBe('(none)');
  });

  test.each(['a.example.com', 'a.example.com:8443', 'A.EXAMPLE.com', 'a.b.example.com'])(
    '"*.example.com" matches Host %j',
    (host) => {
      expect(served(wildcard, '/', { headers: { host } })).toBe('sub');
    },
  );

  test.each(['example.com', 'example.com:80', 'evilexample.com', 'a.example.com.evil.net'])(
    '"*.example.com" does not match Host %j',
    (host) => {
      expect(served(wildcard, '/', { headers: { host } })).toBe('(none)');
    },
  );

  it('"*.example.com:8443" matches a sub-domain on port 8443', () => {
    const routes: Spec[] = [{ path: '/', name: 'sub', host: '*.example.com:8443' }];
    expect(served(routes, '/', { headers: { host: 'a.example.com:8443' } })).toBe('sub');
  });

  it('"*.example.com:8443" does not match a sub-domain on another port', () => {
    const routes: Spec[] = [{ path: '/', name: 'sub', host: '*.example.com:8443' }];
    expect(served(routes, '/', { headers: { host: 'a.example.com:9000' } })).toBe('(none)');
  });

  it('a host list matches any of its hosts', () => {
    const routes: Spec[] = [{ path: '/', name: 'l', host: ['a.test', '*.b.test'] }];
    expect(served(routes, '/', { headers: { host: 'x.b.test' } })).toBe('l');
  });

  it('a host list does not match a host outside it', () => {
    const routes: Spec[] = [{ path: '/', name: 'l', host: ['a.test', '*.b.test'] }];
    expect(served(routes, '/', { headers: { host: 'c.test' } })).toBe('(none)');
  });

  it('routes by host between routes with the same path', () => {
    const routes: Spec[] = [
      { path: '/x', name: 'a', host: 'a.test' },
      { path: '/x', name: 'b', host: 'b.test' },
    ];
    expect(served(routes, '/x', { headers: { host: 'b.test' } })).toBe('b');
  });
});

describe('RouteTable: header matchers', () => {
  it('a string matcher matches the exact value', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', headers: { 'x-tenant': 'acme' } }];
    expect(served(routes, '/', { headers: { 'x-tenant': 'acme' } })).toBe('h');
  });

  it('a string matcher does not match another value', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', headers: { 'x-tenant': 'acme' } }];
    expect(served(routes, '/', { headers: { 'x-tenant': 'acme2' } })).toBe('(none)');
  });

  it('a string matcher does not match a missing header', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', headers: { 'x-tenant': 'acme' } }];
    expect(served(routes, '/')).toBe('(none)');
  });

  it('a RegExp matcher matches a value it accepts', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', headers: { 'x-version': /^v[23]$/ } }];
    expect(served(routes, '/', { headers: { 'x-version': 'v3' } })).toBe('h');
  });

  it('a RegExp matcher does not match a value it refuses', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', headers: { 'x-version': /^v[23]$/ } }];
    expect(served(routes, '/', { headers: { 'x-version': 'v4' } })).toBe('(none)');
  });

  it('a RegExp matcher gives the same answer to every request, even with the g flag', () => {
    const t = table([{ path: '/items/:id', name: 'h', headers: { 'x-version': /^v2$/g } }]);
    const kinds = [1, 2, 3].map(
      () => t.lookup('GET', '/items/1', request({ 'x-version': 'v2' })).kind,
    );
    expect(kinds).toEqual(['route', 'route', 'route']);
  });

  it('every header matcher must match', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', headers: { 'x-a': '1', 'x-b': /^2$/ } }];
    expect(served(routes, '/', { headers: { 'x-a': '1', 'x-b': '3' } })).toBe('(none)');
  });

  it('host and header matchers must both match', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', host: 'a.test', headers: { 'x-a': '1' } }];
    expect(served(routes, '/', { headers: { host: 'b.test', 'x-a': '1' } })).toBe('(none)');
  });

  it('host and header matchers together match a request that has both', () => {
    const routes: Spec[] = [{ path: '/', name: 'h', host: 'a.test', headers: { 'x-a': '1' } }];
    expect(served(routes, '/', { headers: { host: 'a.test', 'x-a': '1' } })).toBe('h');
  });
});
