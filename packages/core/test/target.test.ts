import { parseTarget } from '@turnpike/core';
import { configErrorOf } from '../../../test/helpers/expectations';

const PATH = 'services.users.targets[0]';

describe('parseTarget', () => {
  it('parses an http URL with a port', () => {
    expect(parseTarget('http://10.0.0.1:8000', PATH)).toEqual({
      url: 'http://10.0.0.1:8000',
      weight: 1,
      protocol: 'http:',
      hostname: '10.0.0.1',
      host: '10.0.0.1:8000',
      port: 8000,
      path: '',
    });
  });

  it('parses an https URL', () => {
    const target = parseTarget('https://users.internal:8443', PATH);
    expect(target.protocol).toBe('https:');
    expect(target.port).toBe(8443);
  });

  it('defaults the port of http to 80', () => {
    const target = parseTarget('http://users.internal', PATH);
    expect(target.port).toBe(80);
    expect(target.host).toBe('users.internal');
  });

  it('defaults the port of https to 443', () => {
    const target = parseTarget('https://users.internal', PATH);
    expect(target.port).toBe(443);
    expect(target.host).toBe('users.internal');
  });

  it('treats an explicit default port like the default', () => {
    expect(parseTarget('https://users.internal:443', PATH).port).toBe(443);
  });

  it('gives an IPv6 host name without brackets and the Host value with them', () => {
    const target = parseTarget('http://[::1]:8080', PATH);
    expect(target.hostname).toBe('::1');
    expect(target.host).toBe('[::1]:8080');
    expect(target.port).toBe(8080);
  });

  it('gives an IPv6 host in brackets, without the default port', () => {
    expect(parseTarget('https://[2001:db8::1]', PATH).host).toBe('[2001:db8::1]');
  });

  it('keeps the URL as configured', () => {
    expect(parseTarget('http://Users.Internal:8000/api/', PATH).url).toBe(
      'http://Users.Internal:8000/api/',
    );
  });

  test.each<[string, string]>([
    ['http://h', ''],
    ['http://h/', ''],
    ['http://h/api', '/api'],
    ['http://h/api/', '/api'],
    ['http://h/api/v2', '/api/v2'],
  ])('takes %s to the base path %j', (url, base) => {
    expect(parseTarget(url, PATH).path).toBe(base);
  });

  it('gives weight 1 to a URL string', () => {
    expect(parseTarget('http://h', PATH).weight).toBe(1);
  });

  it('takes the weight of { url, weight }', () => {
    const target = parseTarget({ url: 'http://h:81', weight: 3 }, PATH);
    expect(target.weight).toBe(3);
    expect(target.port).toBe(81);
  });

  it('gives weight 1 to { url } without a weight', () => {
    expect(parseTarget({ url: 'http://h' }, PATH).weight).toBe(1);
  });

  test.each<[string, unknown]>([
    ['a negative number', -1],
    ['a fraction', 1.5],
    ['more than 1000', 1001],
    ['a numeric string', '2'],
    ['null', null],
  ])('refuses a weight of %s, naming the weight', (_label, weight) => {
    const error = configErrorOf(() => parseTarget({ url: 'http://h', weight }, PATH));
    expect(error.path).toBe(`${PATH}.weight`);
    expect(error.expected).toBe('an integer from 0 (draining) to 1000');
  });

  test.each([0, 1000])('accepts the weight bound %i', (weight) => {
    expect(parseTarget({ url: 'http://h', weight }, PATH).weight).toBe(weight);
  });

  it('refuses an unknown key of { url, weight }, naming it', () => {
    const error = configErrorOf(() => parseTarget({ url: 'http://h', wieght: 2 }, PATH));
    expect(error.path).toBe(`${PATH}.wieght`);
  });

  it('names the url field when { url } is not a URL', () => {
    const error = configErrorOf(() => parseTarget({ url: 'nope' }, PATH));
    expect(error.path).toBe(`${PATH}.url`);
  });

  it('refuses { weight } without a url, naming the url field', () => {
    const error = configErrorOf(() => parseTarget({ weight: 2 }, PATH));
    expect(error.path).toBe(`${PATH}.url`);
  });

  test.each<[string, unknown]>([
    ['a number', 8080],
    ['null', null],
    ['an array', ['http://h']],
    ['a boolean', true],
  ])('refuses %s as a target', (_label, input) => {
    expect(configErrorOf(() => parseTarget(input, PATH)).path).toBe(PATH);
  });

  test.each<[string, string]>([
    ['a relative path', '/users'],
    ['a host without a scheme', 'users.internal:8000'],
    ['an empty string', ''],
    ['text', 'not a url'],
    ['a port out of range', 'http://h:70000'],
    ['an empty host', 'http://'],
    ['an ftp URL', 'ftp://h'],
    ['a ws URL', 'ws://h'],
    ['a file URL', 'file:///etc/passwd'],
    ['a javascript URL', 'javascript:alert(1)'],
    ['credentials', 'http://user:secret@h'],
    ['a user name only', 'http://user@h'],
    ['a password only', 'http://:secret@h'],
    ['a query', 'http://h/?a=1'],
    ['a fragment', 'http://h/#top'],
  ])('refuses %s, naming the path and the value', (_label, url) => {
    const error = configErrorOf(() => parseTarget(url, PATH));
    expect(error.path).toBe(PATH);
    expect(error.value).toBe(url);
    expect(error.message).toContain(PATH);
  });

  it('shows an example of a valid target in the message', () => {
    const error = configErrorOf(() => parseTarget('ftp://h', PATH));
    expect(error.message).toContain("Example: 'http://10.0.0.1:8000'");
  });

  it('returns a frozen target', () => {
    expect(Object.isFrozen(parseTarget('http://h', PATH))).toBe(true);
  });

  it('does not modify a { url, weight } input', () => {
    const input = { url: 'http://h/api/', weight: 2 };
    parseTarget(input, PATH);
    expect(input).toEqual({ url: 'http://h/api/', weight: 2 });
  });
});
