import {
  ConfigError,
  array,
  boolean,
  deepFreeze,
  describe as describeValue,
  either,
  fn,
  isConfigError,
  join,
  number,
  object,
  oneOf,
  record,
  string,
  type Check,
  logger,
  redisConnection,
} from '@turnpike/core';
import { configErrorOf } from '../../../test/helpers/expectations';

/** Runs `check` and returns the ConfigError it throws; fails the test when it throws nothing. */
interface Server {
  host: string;
  port?: number;
  tags?: string[];
  limits?: { rps?: number };
}

const server: Check<Server> = object<Server>(
  {
    host: string({ minLength: 1, expected: 'a host name' }),
    port: number({ min: 1, max: 65535, integer: true }),
    tags: array(string()),
    limits: object<{ rps?: number }>({ rps: number({ min: 1 }) }),
  },
  ['host'],
);

describe('ConfigError', () => {
  it('names the field path, the value and what was expected in its message', () => {
    const error = configErrorOf(() => server({ host: 'a', port: 70000 }, 'services.users'));
    expect(error.message).toBe(
      'Invalid Turnpike config at services.users.port: expected an integer >= 1 <= 65535, got 70000 (number)',
    );
  });

  it('exposes the path, the expectation and the value as fields', () => {
    const error = configErrorOf(() => server({ host: 'a', port: 'http' }, 'svc'));
    expect(error.path).toBe('svc.port');
    expect(error.expected).toBe('an integer >= 1 <= 65535');
    expect(error.value).toBe('http');
  });

  it('has the code ERR_TURNPIKE_CONFIG_INVALID and the name ConfigError', () => {
    const error = new ConfigError('a', 'b', 1);
    expect(error.code).toBe('ERR_TURNPIKE_CONFIG_INVALID');
    expect(error.name).toBe('ConfigError');
    expect(error).toBeInstanceOf(Error);
  });

  it('appends an example when one is given', () => {
    const error = new ConfigError('trustProxy', 'a hop count', true, 'trustProxy: 1');
    expect(error.message).toBe(
      'Invalid Turnpike config at trustProxy: expected a hop count, got true (boolean). Example: trustProxy: 1',
    );
  });

  it('shortens a long string value in the message', () => {
    const long = 'x'.repeat(500);
    const error = new ConfigError('name', 'a short name', long);
    expect(error.message).toContain(`"${'x'.repeat(57)}..." (string)`);
    expect(error.message).not.toContain('x'.repeat(58));
  });
});

describe('isConfigError', () => {
  it('is true for a ConfigError', () => {
    expect(isConfigError(new ConfigError('a', 'b', 1))).toBe(true);
  });

  it('is true for an Error with the code from another copy of the package', () => {
    const foreign = Object.assign(new Error('x'), { code: 'ERR_TURNPIKE_CONFIG_INVALID' });
    expect(isConfigError(foreign)).toBe(true);
  });

  test.each<[string, unknown]>([
    ['a plain Error', new Error('x')],
    ['a non-Error with the code', { code: 'ERR_TURNPIKE_CONFIG_INVALID' }],
    ['null', null],
  ])('is false for %s', (_label, value) => {
    expect(isConfigError(value)).toBe(false);
  });
});

describe('describe (value rendering)', () => {
  test.each<[string, unknown, string]>([
    ['undefined', undefined, 'undefined'],
    ['null', null, 'null'],
    ['a string', 'abc', '"abc" (string)'],
    ['a number', 3, '3 (number)'],
    ['a boolean', false, 'false (boolean)'],
    ['a function', () => 1, 'a function'],
    ['an array', [1, 2], 'an array of 2'],
    ['a RegExp', /^a$/i, 'the RegExp /^a$/i'],
    ['an object, without its contents', { password: 'hunter2' }, 'an object'],
  ])('renders %s', (_label, value, shown) => {
    expect(describeValue(value)).toBe(shown);
  });
});

describe('join', () => {
  it('joins a key below a path with a dot', () => {
    expect(join('services.users', 'targets')).toBe('services.users.targets');
  });

  it('gives the key alone at the root', () => {
    expect(join('', 'routes')).toBe('routes');
  });
});

describe('object', () => {
  it('returns the known keys, checked', () => {
    expect(server({ host: 'a', port: 80, tags: ['x'] }, '')).toEqual({
      host: 'a',
      port: 80,
      tags: ['x'],
    });
  });

  it('refuses an unknown key by name', () => {
    const error = configErrorOf(() => server({ host: 'a', colour: 'red' }, 'svc'));
    expect(error.path).toBe('svc.colour');
    expect(error.message).toContain('svc.colour');
    expect(error.message).toContain('"colour"');
    expect(error.message).toContain('one of host, port, tags, limits');
  });

  it('refuses an unknown key at the root by its bare name', () => {
    const error = configErrorOf(() => server({ host: 'a', colour: 'red' }, ''));
    expect(error.path).toBe('colour');
  });

  it('refuses an unknown key in a nested object with the full path', () => {
    const error = configErrorOf(() => server({ host: 'a', limits: { rpm: 5 } }, 'svc'));
    expect(error.path).toBe('svc.limits.rpm');
  });

  it('refuses a missing required key, naming it', () => {
    const error = configErrorOf(() => server({ port: 80 }, 'svc'));
    expect(error.path).toBe('svc.host');
    expect(error.message).toContain('required');
  });

  test.each<[string, unknown]>([
    ['an array', []],
    ['a string', 'host=a'],
    ['null', null],
    ['a class instance', new Date(0)],
  ])('refuses %s where an object is expected', (_label, value) => {
    const error = configErrorOf(() => server(value, 'svc'));
    expect(error.path).toBe('svc');
    expect(error.expected).toBe('an object');
  });

  it('names the root "(root)" when the whole input is not an object', () => {
    expect(configErrorOf(() => server(42, '')).path).toBe('(root)');
  });

  it('accepts an object without a prototype', () => {
    const input = Object.assign(Object.create(null) as object, { host: 'a' });
    expect(server(input, '')).toEqual({ host: 'a' });
  });

  test.each(['__proto__', 'constructor', 'prototype'])('refuses an own key named %s', (key) => {
    const input = JSON.parse(`{"host": "a", "${key}": {"polluted": true}}`) as unknown;
    expect(Object.keys(input as object)).toContain(key);
    const error = configErrorOf(() => server(input, 'svc'));
    expect(error.path).toBe(`svc.${key}`);
    expect(error.message).toContain('__proto__, constructor or prototype');
  });

  it('refuses a __proto__ key in a nested object', () => {
    const input = JSON.parse('{"host": "a", "limits": {"__proto__": {"rps": 1}}}') as unknown;
    expect(configErrorOf(() => server(input, '')).path).toBe('limits.__proto__');
  });

  it('does not let a __proto__ key pollute Object.prototype', () => {
    const input = JSON.parse('{"host": "a", "__proto__": {"pollutedByTest": true}}') as unknown;
    configErrorOf(() => server(input, ''));
    expect(({} as Record<string, unknown>).pollutedByTest).toBeUndefined();
  });

  it('returns a new object and never modifies the input', () => {
    const input = { host: 'a', port: 80, tags: ['x', 'y'], limits: { rps: 5 } };
    const before = structuredClone(input);
    const out = server(input, '');
    expect(input).toEqual(before);
    expect(out).not.toBe(input);
    expect(out.tags).not.toBe(input.tags);
    expect(out.limits).not.toBe(input.limits);
  });

  it('leaves the input untouched when it refuses it', () => {
    const input = { host: 'a', tags: ['x', 7] };
    const before = structuredClone(input);
    configErrorOf(() => server(input, ''));
    expect(input).toEqual(before);
  });

  it('accepts a deep-frozen input', () => {
    const input = deepFreeze({ host: 'a', port: 80, tags: ['x'], limits: { rps: 5 } });
    expect(server(input, '')).toEqual({ host: 'a', port: 80, tags: ['x'], limits: { rps: 5 } });
  });

  it('omits keys whose value is undefined', () => {
    expect(Object.keys(server({ host: 'a', port: undefined }, ''))).toEqual(['host']);
  });
});

describe('record', () => {
  const ports = record(number({ integer: true }), {
    keyPattern: /^[a-z]+$/,
    keyExpected: 'a lower-case name',
    minSize: 1,
  });

  it('checks every value under its own path', () => {
    const error = configErrorOf(() => ports({ web: 80, api: 'x' }, 'ports'));
    expect(error.path).toBe('ports.api');
  });

  it('refuses a key that does not match the pattern, naming it', () => {
    const error = configErrorOf(() => ports({ Web: 80 }, 'ports'));
    expect(error.path).toBe('ports.Web');
    expect(error.expected).toBe('a lower-case name');
    expect(error.value).toBe('Web');
  });

  it('refuses fewer entries than the minimum', () => {
    const error = configErrorOf(() => ports({}, 'ports'));
    expect(error.path).toBe('ports');
    expect(error.expected).toBe('at least 1 entry');
  });

  test.each(['__proto__', 'constructor', 'prototype'])(
    'refuses an own key named %s even when the pattern would allow it',
    (key) => {
      const any = record(number());
      const input = JSON.parse(`{"${key}": 1}`) as unknown;
      expect(configErrorOf(() => any(input, 'ports')).path).toBe(`ports.${key}`);
    },
  );

  it('returns a new object and never modifies the input', () => {
    const input = { web: 80 };
    const out = ports(input, 'ports');
    expect(out).toEqual({ web: 80 });
    expect(out).not.toBe(input);
    expect(input).toEqual({ web: 80 });
  });
});

describe('array', () => {
  const list = array(number(), { min: 2 });

  it('names the index of a bad item', () => {
    expect(configErrorOf(() => list([1, 'two', 3], 'weights')).path).toBe('weights[1]');
  });

  it('refuses a non-array', () => {
    expect(configErrorOf(() => list({ 0: 1 }, 'weights')).expected).toBe('an array');
  });

  it('refuses fewer items than the minimum', () => {
    expect(configErrorOf(() => list([1], 'weights')).expected).toBe('an array of at least 2');
  });

  it('returns a new array', () => {
    const input = [1, 2];
    const out = list(input, 'weights');
    expect(out).toEqual([1, 2]);
    expect(out).not.toBe(input);
  });
});

describe('string', () => {
  const name = string({ pattern: /^[a-z]+$/, minLength: 2, expected: 'a lower-case name' });

  test.each<[string, unknown]>([
    ['a number', 5],
    ['too short a string', 'a'],
    ['a string not matching the pattern', 'Ab'],
  ])('refuses %s with the expectation given', (_label, value) => {
    expect(configErrorOf(() => name(value, 'n')).expected).toBe('a lower-case name');
  });

  it('accepts a matching string', () => {
    expect(name('ab', 'n')).toBe('ab');
  });
});

describe('number', () => {
  test.each<[string, unknown]>([
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['a numeric string', '5'],
    ['a fraction where an integer is expected', 1.5],
    ['a value below the minimum', 0],
    ['a value above the maximum', 11],
  ])('refuses %s', (_label, value) => {
    const check = number({ min: 1, max: 10, integer: true });
    expect(configErrorOf(() => check(value, 'n')).path).toBe('n');
  });

  test.each([1, 10])('accepts the bound %i', (value) => {
    expect(number({ min: 1, max: 10, integer: true })(value, 'n')).toBe(value);
  });
});

describe('boolean, fn, oneOf and either', () => {
  it('boolean refuses a truthy string', () => {
    expect(configErrorOf(() => boolean('true', 'b')).expected).toBe('true or false');
  });

  it('fn refuses a non-function', () => {
    expect(configErrorOf(() => fn()({}, 'f')).expected).toBe('a function');
  });

  it('fn returns the function as given', () => {
    const f = () => 1;
    expect(fn<typeof f>()(f, 'f')).toBe(f);
  });

  it('oneOf refuses a value outside the list and lists the allowed ones', () => {
    const error = configErrorOf(() => oneOf(['a', 'b'] as const)('c', 'mode'));
    expect(error.expected).toBe('one of "a", "b"');
  });

  describe('either', () => {
    const limit = either<number, false>(
      { when: (v) => typeof v === 'number', check: number({ min: 0 }) },
      { when: (v) => v === false, check: (v) => v as false },
      'a number or false',
    );

    it('takes the check whose guard accepts the value', () => {
      expect(limit(false, 'l')).toBe(false);
    });

    it('reports the chosen check’s own expectation', () => {
      expect(configErrorOf(() => limit(-1, 'l')).expected).toBe('a number >= 0');
    });

    it('reports the combined expectation when no guard accepts the value', () => {
      expect(configErrorOf(() => limit(true, 'l')).expected).toBe('a number or false');
    });
  });
});

describe('deepFreeze', () => {
  it('freezes nested objects and arrays', () => {
    const value = deepFreeze({ a: { b: [{ c: 1 }] } });
    expect(Object.isFrozen(value)).toBe(true);
    expect(Object.isFrozen(value.a)).toBe(true);
    expect(Object.isFrozen(value.a.b)).toBe(true);
    expect(Object.isFrozen(value.a.b[0])).toBe(true);
  });
});

describe('logger', () => {
  it('takes an object with error, warn, info and debug functions, and nothing else', () => {
    expect(logger(console, 'logger')).toBe(console);
    const err = configErrorOf(() => logger({ error() {}, warn() {}, info() {} }, 'x.logger'));
    expect(err.path).toBe('x.logger');
    expect(err.expected).toBe('a logger with error, warn, info and debug methods');
    expect(configErrorOf(() => logger(null, 'logger')).path).toBe('logger');
  });
});

describe('redisConnection', () => {
  const check = redisConnection<{ duplicate(): unknown }>(['duplicate']);
  it.each(['redis://127.0.0.1:6379', 'rediss://user:pw@cache.example.com:6380/2'])(
    'takes the URL %s',
    (url) => {
      expect(check(url, 'redis')).toBe(url);
    },
  );
  it.each<[string, unknown]>([
    ['a URL without a host', 'redis://'],
    ['another scheme', 'http://127.0.0.1:6379'],
    ['not a URL', 'localhost:6379'],
    ['an object without the methods', { call() {} }],
    ['a number', 6379],
  ])('refuses %s, naming the field', (_what, value) => {
    const err = configErrorOf(() => check(value, 'services.a.breaker.shared.redis'));
    expect(err.path).toBe('services.a.breaker.shared.redis');
    expect(err.expected).toBe('a redis:// or rediss:// URL with a host, or an ioredis client');
  });
  it('takes a client with the methods asked for', () => {
    const client = { duplicate: () => client };
    expect(check(client, 'redis')).toBe(client);
  });
});
