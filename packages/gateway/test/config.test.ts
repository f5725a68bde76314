import { deepFreeze } from '@turnpike/core';
import { validateConfig } from '@turnpike/gateway';
import { configErrorOf } from '../../../test/helpers/expectations';

/** A complete, valid config; a new object on every call. */
function validConfig() {
  return {
    services: {
      users: {
        targets: ['http://10.0.0.1:8001', { url: 'http://10.0.0.2:8001', weight: 2 }],
        balancer: 'round-robin' as const,
        timeoutMs: 10_000,
        agent: { maxSockets: 10 },
      },
      orders: { targets: ['https://orders.internal'] },
    },
    routes: [
      {
        path: '/users/**',
        service: 'users',
        methods: ['GET', 'POST'],
        stripPrefix: '/users',
        requestHeaders: { set: { 'x-from': 'gateway' }, remove: ['x-debug'] },
      },
      { path: '/orders/:id', service: 'orders', headers: { 'x-tenant': 'acme' } },
    ],
    trustProxy: ['10.0.0.0/8'],
    identityHeaders: ['x-user-id'],
    bodyLimit: 1024,
  };
}

/** The field path of the ConfigError thrown for `config`. */
function refusedAt(config: unknown): string {
  return configErrorOf(() => validateConfig(config)).path;
}

describe('validateConfig', () => {
  it('accepts a valid config and returns its fields', () => {
    const config = validConfig();
    expect(validateConfig(config)).toEqual(config);
  });

  it('returns a copy, not the caller’s object', () => {
    const config = validConfig();
    const out = validateConfig(config);
    expect(out).not.toBe(config);
    expect(out.routes).not.toBe(config.routes);
    expect(out.services).not.toBe(config.services);
  });

  it('never modifies the caller’s object', () => {
    const config = validConfig();
    const before = structuredClone(config);
    validateConfig(config);
    expect(config).toEqual(before);
  });

  it('never modifies the caller’s object when it refuses it', () => {
    const config = { ...validConfig(), bodyLimit: -5 };
    const before = structuredClone(config);
    configErrorOf(() => validateConfig(config));
    expect(config).toEqual(before);
  });

  it('accepts a deep-frozen config', () => {
    const config = deepFreeze(validConfig());
    expect(validateConfig(config)).toEqual(validConfig());
  });

  it('refuses an unknown top-level key, naming it', () => {
    const error = configErrorOf(() => validateConfig({ ...validConfig(), rotues: [] }));
    expect(error.path).toBe('rotues');
    expect(error.message).toContain('rotues');
  });

  it('refuses the router-only stages option at the top level', () => {
    expect(refusedAt({ ...validConfig(), stages: () => [] })).toBe('stages');
  });

  it('refuses a config without services', () => {
    const config: Record<string, unknown> = validConfig();
    delete config.services;
    expect(refusedAt(config)).toBe('services');
  });

  it('refuses a config without routes', () => {
    const config: Record<string, unknown> = validConfig();
    delete config.routes;
    expect(refusedAt(config)).toBe('routes');
  });

  it('refuses an empty services map', () => {
    const error = configErrorOf(() => validateConfig({ ...validConfig(), services: {} }));
    expect(error.path).toBe('services');
    expect(error.expected).toBe('at least 1 entry');
  });

  test.each<[string, Record<string, unknown>, string]>([
    ['services as an array', { services: [] }, 'services'],
    ['routes as an object', { routes: {} }, 'routes'],
    ['bodyLimit as a string', { bodyLimit: '10mb' }, 'bodyLimit'],
    ['trustProxy as a string', { trustProxy: 'loopback' }, 'trustProxy'],
    ['identityHeaders as a string', { identityHeaders: 'x-user-id' }, 'identityHeaders'],
    ['logger without methods', { logger: {} }, 'logger'],
  ])('refuses %s, naming the field', (_label, override, path) => {
    expect(refusedAt({ ...validConfig(), ...override })).toBe(path);
  });

  test.each<[string, Record<string, unknown>, string]>([
    ['timeoutMs as a string', { timeoutMs: '5000' }, 'services.users.timeoutMs'],
    ['timeoutMs of 0', { timeoutMs: 0 }, 'services.users.timeoutMs'],
    ['preserveHost as a string', { preserveHost: 'yes' }, 'services.users.preserveHost'],
    ['an unknown balancer', { balancer: 'fastest' }, 'services.users.balancer'],
    ['a balancer of the wrong type', { balancer: 42 }, 'services.users.balancer'],
    ['a hash balancer with no key', { balancer: { hash: {} } }, 'services.users.balancer.hash'],
    [
      'a healthCheck without a path',
      { healthCheck: { intervalMs: 1000 } },
      'services.users.healthCheck.path',
    ],
    [
      'a healthCheck intervalMs of 0',
      { healthCheck: { path: '/health', intervalMs: 0 } },
      'services.users.healthCheck.intervalMs',
    ],
    [
      'a healthCheck with an unknown key',
      { healthCheck: { path: '/health', every: 5 } },
      'services.users.healthCheck.every',
    ],
    ['outlier as true', { outlier: true }, 'services.users.outlier'],
    [
      'an outlier consecutiveFailures of 0',
      { outlier: { consecutiveFailures: 0 } },
      'services.users.outlier.consecutiveFailures',
    ],
    [
      'an outlier maxEjectionPercent above 100',
      { outlier: { maxEjectionPercent: 150 } },
      'services.users.outlier.maxEjectionPercent',
    ],
    ['panic as a string', { panic: 'yes' }, 'services.users.panic'],
    ['retries as a number', { retries: 3 }, 'services.users.retries'],
    ['an unknown agent key', { agent: { sockets: 1 } }, 'services.users.agent.sockets'],
    ['targets as a string', { targets: 'http://h' }, 'services.users.targets'],
    ['an empty target list', { targets: [] }, 'services.users.targets'],
    ['the router’s target field', { target: 'http://h' }, 'services.users.target'],
  ])('refuses a service with %s, naming the field', (_label, override, path) => {
    const config = validConfig();
    const users = { ...config.services.users, ...override };
    expect(refusedAt({ ...config, services: { ...config.services, users } })).toBe(path);
  });

  it('refuses a route naming an unknown service at routes[0].service', () => {
    const config = validConfig();
    config.routes[0]!.service = 'accounts';
    const error = configErrorOf(() => validateConfig(config));
    expect(error.path).toBe('routes[0].service');
    expect(error.message).toContain('"accounts"');
    expect(error.message).toContain('one of users, orders');
  });

  it('refuses a route with a bad path, naming the route', () => {
    const config = validConfig();
    config.routes[1]!.path = '/orders/**/x';
    expect(refusedAt(config)).toBe('routes[1].path');
  });

  it('refuses a bad target URL, naming services.users.targets[1]', () => {
    const config = validConfig();
    config.services.users.targets[1] = 'ftp://10.0.0.2';
    const error = configErrorOf(() => validateConfig(config));
    expect(error.path).toBe('services.users.targets[1]');
    expect(error.message).toContain('services.users.targets[1]');
    expect(error.message).toContain('"ftp://10.0.0.2"');
  });

  it('refuses a target URL with credentials', () => {
    const config = validConfig();
    config.services.users.targets[0] = 'http://admin:secret@10.0.0.1';
    expect(refusedAt(config)).toBe('services.users.targets[0]');
  });

  it('refuses a bad { url } target, naming its url field', () => {
    const config = validConfig();
    config.services.users.targets[1] = { url: 'not a url', weight: 2 };
    expect(refusedAt(config)).toBe('services.users.targets[1].url');
  });

  it('refuses a bad target weight, naming its weight field', () => {
    const config = validConfig();
    config.services.users.targets[1] = { url: 'http://10.0.0.2', weight: -1 };
    expect(refusedAt(config)).toBe('services.users.targets[1].weight');
  });

  it('refuses a service name with a slash', () => {
    const config = validConfig();
    expect(
      refusedAt({ ...config, services: { ...config.services, 'a/b': config.services.orders } }),
    ).toBe('services.a/b');
  });

  test.each<[string, string, string]>([
    [
      'at the top level',
      '{"__proto__": {"polluted": true}, "services": {"s": {"targets": ["http://h"]}}, "routes": []}',
      '__proto__',
    ],
    [
      'as a service name',
      '{"services": {"s": {"targets": ["http://h"]}, "__proto__": {"targets": ["http://h"]}}, "routes": []}',
      'services.__proto__',
    ],
    [
      'in a service',
      '{"services": {"s": {"targets": ["http://h"], "__proto__": {}}}, "routes": []}',
      'services.s.__proto__',
    ],
    [
      'in a route',
      '{"services": {"s": {"targets": ["http://h"]}}, "routes": [{"path": "/", "service": "s", "__proto__": {}}]}',
      'routes[0].__proto__',
    ],
    [
      'in a target object',
      '{"services": {"s": {"targets": [{"url": "http://h", "__proto__": {}}]}}, "routes": []}',
      'services.s.targets[0].__proto__',
    ],
    [
      'in a header transform',
      '{"services": {"s": {"targets": ["http://h"]}}, "routes": [{"path": "/", "service": "s", "requestHeaders": {"set": {"__proto__": "x"}}}]}',
      'routes[0].requestHeaders.set.__proto__',
    ],
  ])('refuses a __proto__ key %s', (_label, json, path) => {
    expect(refusedAt(JSON.parse(json))).toBe(path);
  });

  test.each(['constructor', 'prototype'])('refuses a top-level %s key', (key) => {
    const config = JSON.parse(
      `{"services": {"s": {"targets": ["http://h"]}}, "routes": [], "${key}": {}}`,
    ) as unknown;
    expect(refusedAt(config)).toBe(key);
  });

  test.each(['constructor', 'prototype'])('refuses a service named %s', (key) => {
    const config = JSON.parse(
      `{"services": {"${key}": {"targets": ["http://h"]}}, "routes": []}`,
    ) as unknown;
    expect(refusedAt(config)).toBe(`services.${key}`);
  });

  it('does not pollute Object.prototype through a __proto__ key', () => {
    const config = JSON.parse(
      '{"services": {"s": {"targets": ["http://h"], "__proto__": {"pollutedByConfigTest": 1}}}, "routes": []}',
    ) as unknown;
    configErrorOf(() => validateConfig(config));
    expect(({} as Record<string, unknown>).pollutedByConfigTest).toBeUndefined();
  });

  it('refuses a config that is not an object', () => {
    expect(refusedAt('services: {}')).toBe('(root)');
  });

  it('accepts every balancer variant and the balancing keys', () => {
    const config = validConfig();
    for (const balancer of [
      'round-robin',
      'weighted-round-robin',
      'least-connections',
      'p2c',
      'random',
      'ip-hash',
      { hash: { header: 'x-user-id' } },
      { hash: { cookie: 'sid' } },
      { hash: { query: 'key' } },
    ] as const) {
      const users = {
        ...config.services.users,
        balancer,
        healthCheck: { path: '/healthz', intervalMs: 1000 },
        outlier: { consecutiveFailures: 3 },
        panic: true,
      };
      const out = validateConfig({ ...config, services: { ...config.services, users } });
      expect(out.services.users!.balancer).toEqual(balancer);
      expect(out.services.users!.healthCheck).toMatchObject({ path: '/healthz', intervalMs: 1000 });
    }
    const users = { ...config.services.users, outlier: false as const };
    expect(
      validateConfig({ ...config, services: { ...config.services, users } }).services.users!
        .outlier,
    ).toBe(false);
  });

  it('accepts health as true, false, or { path, details }', () => {
    for (const health of [true, false, {}, { path: '/status' }, { path: '/a/b', details: true }]) {
      expect(validateConfig({ ...validConfig(), health }).health).toEqual(health);
    }
  });

  test.each<[string, unknown, string]>([
    ['a string', 'yes', 'health'],
    ['a path without a leading slash', { path: 'health' }, 'health.path'],
    ['a path with a trailing slash', { path: '/health/' }, 'health.path'],
    ['a path with a parameter', { path: '/:x' }, 'health.path'],
    ['a path with a wildcard', { path: '/health/**' }, 'health.path'],
    ['details as a string', { details: 'on' }, 'health.details'],
    ['an unknown key', { paths: '/health' }, 'health.paths'],
  ])('refuses health with %s, naming the field', (_label, health, path) => {
    expect(refusedAt({ ...validConfig(), health })).toBe(path);
  });

  test.each<[string, string, unknown]>([
    ['/**', '/**', true],
    ['/health/**', '/health/**', true],
    ['/:x/live', '/:x/live', true],
    ['/*/ready', '/*/ready', true],
    ['/health/services/:name', '/health/services/:name', { details: false }],
    ['the health path itself', '/health', true],
    ['/:x, which matches the health path itself', '/:x', true],
    ['a custom path under **', '/internal/**', { path: '/internal/health' }],
  ])('refuses a route %s that overlaps the health endpoints', (_label, pattern, health) => {
    const config = validConfig();
    config.routes.push({ path: pattern, service: 'orders' } as never);
    const error = configErrorOf(() => validateConfig({ ...config, health }));
    expect(error.path).toBe('routes[2].path');
    expect(error.message).toContain('health');
  });

  test.each<[string, unknown]>([
    ['/healthy/**', true],
    ['/health-check', true],
    ['/users/**', true],
    ['/**', false],
    ['/health/**', { path: '/status' }],
    ['/:a/:b/:c/:d', true],
  ])('accepts a route %s that does not overlap the health endpoints', (pattern, health) => {
    const config = validConfig();
    config.routes.push({ path: pattern, service: 'orders' } as never);
    expect(() => validateConfig({ ...config, health })).not.toThrow();
  });
});
