import { deepFreeze } from '@turnpike/core';
import { parseRouterOptions } from '../src/options';
import { configErrorOf } from '../../../test/helpers/expectations';

const services = { users: { target: 'http://127.0.0.1:8001' } };

/** Options with one route; `route` adds to or overrides its fields. */
function withRoute(route: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { routes: [{ path: '/users/**', service: 'users', ...route }], services, ...extra };
}

/** The field path of the ConfigError thrown for `options`. */
function refusedAt(options: unknown): string {
  return configErrorOf(() => parseRouterOptions(options)).path;
}

describe('parseRouterOptions: defaults', () => {
  it('accepts minimal options', () => {
    expect(parseRouterOptions(withRoute({})).routes).toEqual([
      { path: '/users/**', service: 'users' },
    ]);
  });

  it('trusts no proxy by default', () => {
    expect(parseRouterOptions(withRoute({})).trustProxy).toBe(false);
  });

  it('has the default identity headers', () => {
    expect(parseRouterOptions(withRoute({})).identityHeaders).toEqual([
      'x-user-id',
      'x-user-roles',
      'x-consumer-id',
    ]);
  });

  it('has a 10 MiB body limit by default', () => {
    expect(parseRouterOptions(withRoute({})).bodyLimit).toBe(10 * 1024 * 1024);
  });

  it('keeps a body limit of false', () => {
    expect(parseRouterOptions(withRoute({}, { bodyLimit: false })).bodyLimit).toBe(false);
  });
});

describe('parseRouterOptions: trustProxy', () => {
  it('refuses true with a message naming trustProxy', () => {
    const error = configErrorOf(() => parseRouterOptions(withRoute({}, { trustProxy: true })));
    expect(error.path).toBe('trustProxy');
    expect(error.message).toContain('trustProxy');
    expect(error.message).toContain('true (boolean)');
  });

  it('explains why true is refused', () => {
    const error = configErrorOf(() => parseRouterOptions(withRoute({}, { trustProxy: true })));
    expect(error.expected).toContain('true trusts every client and is refused');
  });

  test.each<[string, unknown]>([
    ['a string', 'loopback'],
    ['a negative hop count', -1],
    ['a fractional hop count', 1.5],
    ['more than 100 hops', 101],
    ['a list with an empty entry', ['10.0.0.0/8', '']],
    ['a list with a number', [10]],
    ['0.0.0.0/0 (every IPv4 address, the same as true)', ['0.0.0.0/0']],
    ['::/0 (every IPv6 address, the same as true)', ['10.0.0.0/8', '::/0']],
  ])('refuses %s', (_label, trustProxy) => {
    expect(refusedAt(withRoute({}, { trustProxy }))).toMatch(/^trustProxy/);
  });

  test.each<[string, unknown]>([
    ['false', false],
    ['a hop count', 2],
    ['zero', 0],
    ['a CIDR list', ['10.0.0.0/8', '127.0.0.1']],
    ['IPv6 CIDRs', ['fd00::/8', '::1/128']],
  ])('accepts %s', (_label, trustProxy) => {
    expect(parseRouterOptions(withRoute({}, { trustProxy })).trustProxy).toEqual(trustProxy);
  });
});

describe('parseRouterOptions: unknown and missing keys', () => {
  it('refuses an unknown route key, naming it', () => {
    const error = configErrorOf(() => parseRouterOptions(withRoute({ strip: '/users' })));
    expect(error.path).toBe('routes[0].strip');
    expect(error.message).toContain('routes[0].strip');
  });

  it('refuses an unknown top-level key, naming it', () => {
    expect(refusedAt(withRoute({}, { trustproxy: 1 }))).toBe('trustproxy');
  });

  it('refuses an unknown service key, naming it', () => {
    expect(
      refusedAt({
        routes: [],
        services: { users: { target: 'http://h', timeout: 5 } },
      }),
    ).toBe('services.users.timeout');
  });

  it('refuses a route without a path', () => {
    expect(refusedAt({ routes: [{ service: 'users' }], services })).toBe('routes[0].path');
  });

  it('refuses a route without a service', () => {
    expect(refusedAt({ routes: [{ path: '/' }], services })).toBe('routes[0].service');
  });

  it('refuses options without routes', () => {
    expect(refusedAt({ services })).toBe('routes');
  });

  it('refuses a service without a target', () => {
    expect(refusedAt({ routes: [], services: { users: {} } })).toBe('services.users.target');
  });
});

describe('parseRouterOptions: services', () => {
  it('refuses a route naming an unknown service at routes[0].service', () => {
    const error = configErrorOf(() => parseRouterOptions(withRoute({ service: 'accounts' })));
    expect(error.path).toBe('routes[0].service');
    expect(error.message).toContain('routes[0].service');
    expect(error.message).toContain('"accounts"');
  });

  it('lists the configured services when a route names an unknown one', () => {
    const error = configErrorOf(() => parseRouterOptions(withRoute({ service: 'accounts' })));
    expect(error.expected).toContain('one of users');
  });

  it('names the index of the route with the unknown service', () => {
    const options = {
      routes: [
        { path: '/a', service: 'users' },
        { path: '/b', service: 'nope' },
      ],
      services,
    };
    expect(refusedAt(options)).toBe('routes[1].service');
  });

  it('refuses a route naming an inherited property as its service', () => {
    expect(refusedAt(withRoute({ service: 'toString' }))).toBe('routes[0].service');
  });

  it('refuses a bad target URL, naming the service', () => {
    expect(refusedAt({ routes: [], services: { users: { target: 'ftp://h' } } })).toBe(
      'services.users.target',
    );
  });

  it('accepts a target function', () => {
    const target = () => undefined;
    expect(parseRouterOptions({ routes: [], services: { s: { target } } }).services.s!.target).toBe(
      target,
    );
  });

  it('refuses a service name with a space', () => {
    expect(refusedAt({ routes: [], services: { 'my users': { target: 'http://h' } } })).toBe(
      'services.my users',
    );
  });
});

describe('parseRouterOptions: requestHeaders and responseHeaders', () => {
  test.each<[string, Record<string, unknown>, string]>([
    ['set Content-Length', { set: { 'Content-Length': '0' } }, 'set.Content-Length'],
    ['add Transfer-Encoding', { add: { 'transfer-encoding': 'chunked' } }, 'add.transfer-encoding'],
    ['set Host', { set: { host: 'internal' } }, 'set.host'],
    ['remove Connection', { remove: ['connection'] }, 'remove[0]'],
    ['set Keep_Alive (any spelling)', { set: { keep_alive: '1' } }, 'set.keep_alive'],
  ])('refuses a transform that would %s', (_label, transform, at) => {
    expect(refusedAt(withRoute({ requestHeaders: transform }))).toBe(
      `routes[0].requestHeaders.${at}`,
    );
    expect(refusedAt(withRoute({ responseHeaders: transform }))).toBe(
      `routes[0].responseHeaders.${at}`,
    );
  });

  test.each<[string, string]>([
    ['CRLF', 'a\r\nX-Injected: 1'],
    ['a bare LF', 'a\nb'],
    ['a bare CR', 'a\rb'],
    ['NUL', 'a\u0000b'],
    ['DEL', 'a\u007fb'],
    ['non-ASCII', 'caf\u00e9'],
  ])('refuses a set value with %s', (_label, value) => {
    const options = withRoute({ requestHeaders: { set: { 'x-a': value } } });
    expect(refusedAt(options)).toBe('routes[0].requestHeaders.set.x-a');
  });

  it('refuses an add value with CRLF', () => {
    const options = withRoute({ requestHeaders: { add: { via: '1.1 a\r\nX-Injected: 1' } } });
    expect(refusedAt(options)).toBe('routes[0].requestHeaders.add.via');
  });

  it('refuses a response header value with CRLF', () => {
    const options = withRoute({ responseHeaders: { set: { 'x-a': 'a\r\nSet-Cookie: s=1' } } });
    expect(refusedAt(options)).toBe('routes[0].responseHeaders.set.x-a');
  });

  test.each<[string, string]>([
    ['a space', 'x a'],
    ['a colon', 'x:a'],
    ['CRLF', 'x-a\r\nx-b'],
    ['an empty name', ''],
    ['non-ASCII', 'x-caf\u00e9'],
    ['parentheses', 'x(a)'],
  ])('refuses a set name with %s', (_label, name) => {
    const options = withRoute({ requestHeaders: { set: { [name]: 'v' } } });
    expect(refusedAt(options)).toBe(`routes[0].requestHeaders.set.${name}`);
  });

  it('refuses a bad name in remove, naming its index', () => {
    const options = withRoute({ requestHeaders: { remove: ['x-ok', 'x bad'] } });
    expect(refusedAt(options)).toBe('routes[0].requestHeaders.remove[1]');
  });

  it('refuses an unknown key of a header transform', () => {
    const options = withRoute({ requestHeaders: { delete: ['x-a'] } });
    expect(refusedAt(options)).toBe('routes[0].requestHeaders.delete');
  });

  it('accepts tabs and spaces in a value', () => {
    const options = withRoute({ requestHeaders: { set: { 'x-a': 'a b\tc' } } });
    expect(parseRouterOptions(options).routes[0]!.requestHeaders!.set).toEqual({
      'x-a': 'a b\tc',
    });
  });

  it('refuses an identity header name that is not a token', () => {
    expect(refusedAt(withRoute({}, { identityHeaders: ['x user'] }))).toBe('identityHeaders[0]');
  });
});

describe('parseRouterOptions: path patterns', () => {
  test.each<[string, string]>([
    ['"**" not last', '/static/**/x'],
    ['"**" twice', '/**/**'],
    ['an empty segment in the middle', '/a//b'],
    ['an empty segment at the start', '//a'],
    ['a trailing slash (an empty last segment)', '/a/'],
    ['no leading slash', 'users'],
    ['an empty string', ''],
    ['a "." segment', '/a/./b'],
    ['a ".." segment', '/a/../b'],
    ['a space', '/a b'],
    ['a backslash', '/a\\b'],
    ['a "?" query', '/a?b=1'],
    ['a ";" parameter', '/a;b'],
    ['a param without a name', '/users/:'],
    ['a param name starting with a digit', '/users/:1d'],
    ['"**" glued to text', '/static**'],
    ['a lower-case escape', '/caf%c3%a9'],
    ['an escaped unreserved character, which requests never carry after normalising', '/%61dmin'],
    ['an escaped slash, which the path policy refuses in requests', '/a%2Fb'],
  ])('refuses a path with %s', (_label, path) => {
    const error = configErrorOf(() => parseRouterOptions(withRoute({ path })));
    expect(error.path).toBe('routes[0].path');
  });

  test.each(['/', '/users', '/users/:id', '/files/*', '/static/**', '/**', '/a/:b/c/**'])(
    'accepts the path %j',
    (path) => {
      expect(parseRouterOptions(withRoute({ path })).routes[0]!.path).toBe(path);
    },
  );

  it('refuses a rewrite template with an empty segment', () => {
    expect(refusedAt(withRoute({ rewrite: '/v2//x' }))).toBe('routes[0].rewrite');
  });

  test.each<[string, string]>([
    ['CRLF', '/v2\r\nX-Injected: 1'],
    ['a space', '/v2/a b'],
    ['a ".." segment', '/v2/../admin'],
    ['a "?" query', '/v2?debug=1'],
  ])('refuses a rewrite template with %s, like a route path', (_label, rewrite) => {
    expect(refusedAt(withRoute({ rewrite }))).toBe('routes[0].rewrite');
  });

  test.each(['users', '/users/', '/'])('refuses the stripPrefix %j', (stripPrefix) => {
    expect(refusedAt(withRoute({ stripPrefix }))).toBe('routes[0].stripPrefix');
  });
});

describe('parseRouterOptions: other route fields', () => {
  it('refuses a lower-case method', () => {
    expect(refusedAt(withRoute({ methods: ['get'] }))).toBe('routes[0].methods[0]');
  });

  it('refuses an empty method list', () => {
    expect(refusedAt(withRoute({ methods: [] }))).toBe('routes[0].methods');
  });

  it('refuses an upper-case host', () => {
    expect(refusedAt(withRoute({ host: 'API.example.com' }))).toBe('routes[0].host');
  });

  test.each(['api.example.com:0', 'api.example.com:65536', 'api.example.com:99999', 'a.test:080'])(
    'refuses the host %j (port not from 1 to 65535 as written)',
    (host) => {
      expect(refusedAt(withRoute({ host }))).toBe('routes[0].host');
    },
  );

  it('accepts a host with a port', () => {
    expect(() => parseRouterOptions(withRoute({ host: '*.example.com:8443' }))).not.toThrow();
  });

  it('refuses a host with a path', () => {
    expect(refusedAt(withRoute({ host: 'api.example.com/x' }))).toBe('routes[0].host');
  });

  it('names the index of a bad host in a list', () => {
    expect(refusedAt(withRoute({ host: ['a.test', 'b test'] }))).toBe('routes[0].host[1]');
  });

  it('lower-cases header matcher names', () => {
    const options = withRoute({ headers: { 'X-Tenant': 'acme' } });
    expect(parseRouterOptions(options).routes[0]!.headers).toEqual({ 'x-tenant': 'acme' });
  });

  it('keeps a RegExp header matcher', () => {
    const matcher = /^v[23]$/;
    const options = withRoute({ headers: { 'x-version': matcher } });
    expect(parseRouterOptions(options).routes[0]!.headers!['x-version']).toBe(matcher);
  });

  it('refuses a header matcher value with CRLF', () => {
    const options = withRoute({ headers: { 'x-tenant': 'a\r\nb' } });
    expect(refusedAt(options)).toBe('routes[0].headers.x-tenant');
  });

  it('refuses a negative body limit', () => {
    expect(refusedAt(withRoute({ bodyLimit: -1 }))).toBe('routes[0].bodyLimit');
  });

  it('refuses a non-boolean websocket flag', () => {
    expect(refusedAt(withRoute({ websocket: 'yes' }))).toBe('routes[0].websocket');
  });
});

describe('parseRouterOptions: input handling', () => {
  test.each(['__proto__', 'constructor', 'prototype'])('refuses a %s key in a route', (key) => {
    const options = JSON.parse(
      `{"routes": [{"path": "/", "service": "users", "${key}": {}}], "services": {"users": {"target": "http://h"}}}`,
    ) as unknown;
    expect(refusedAt(options)).toBe(`routes[0].${key}`);
  });

  it('never modifies the input', () => {
    const options = withRoute({
      methods: ['GET'],
      headers: { 'X-Tenant': 'acme' },
      requestHeaders: { set: { 'x-a': '1' }, remove: ['x-b'] },
    });
    const before = structuredClone(options);
    parseRouterOptions(options);
    expect(options).toEqual(before);
  });

  it('accepts deep-frozen input', () => {
    const options = deepFreeze(
      withRoute({ methods: ['GET'], requestHeaders: { set: { 'x-a': '1' } } }, { trustProxy: 1 }),
    );
    expect(parseRouterOptions(options).trustProxy).toBe(1);
  });

  it('refuses options that are not an object', () => {
    expect(refusedAt([])).toBe('(root)');
  });
});
