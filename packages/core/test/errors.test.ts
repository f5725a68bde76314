import { GatewayError, isGatewayError, type GatewayErrorCode } from '@turnpike/core';

describe('GatewayError', () => {
  test.each<[GatewayErrorCode, number, string, string]>([
    ['ERR_TURNPIKE_BAD_REQUEST', 400, 'Bad Request', 'bad-request'],
    ['ERR_TURNPIKE_PATH_REJECTED', 400, 'Bad Request', 'path-rejected'],
    ['ERR_TURNPIKE_ROUTE_NOT_FOUND', 404, 'Not Found', 'route-not-found'],
    ['ERR_TURNPIKE_METHOD_NOT_ALLOWED', 405, 'Method Not Allowed', 'method-not-allowed'],
    ['ERR_TURNPIKE_BODY_TOO_LARGE', 413, 'Content Too Large', 'body-too-large'],
    ['ERR_TURNPIKE_RATE_LIMITED', 429, 'Too Many Requests', 'rate-limited'],
    ['ERR_TURNPIKE_INTERNAL', 500, 'Internal Server Error', 'internal'],
    ['ERR_TURNPIKE_UPSTREAM_FAILED', 502, 'Bad Gateway', 'upstream-failed'],
    ['ERR_TURNPIKE_NO_TARGET', 503, 'Service Unavailable', 'no-target'],
    ['ERR_TURNPIKE_CIRCUIT_OPEN', 503, 'Service Unavailable', 'circuit-open'],
    ['ERR_TURNPIKE_OVERLOADED', 503, 'Service Unavailable', 'overloaded'],
    ['ERR_TURNPIKE_LIMITER_UNAVAILABLE', 503, 'Service Unavailable', 'limiter-unavailable'],
    ['ERR_TURNPIKE_UNAUTHENTICATED', 401, 'Unauthorized', 'unauthenticated'],
    ['ERR_TURNPIKE_FORBIDDEN', 403, 'Forbidden', 'forbidden'],
    ['ERR_TURNPIKE_AUTH_UNAVAILABLE', 503, 'Service Unavailable', 'auth-unavailable'],
    ['ERR_TURNPIKE_UPSTREAM_TIMEOUT', 504, 'Gateway Timeout', 'upstream-timeout'],
  ])('%s maps to status %i, title %j and type slug %j', (code, status, title, slug) => {
    const error = new GatewayError(code);
    expect(error.code).toBe(code);
    expect(error.status).toBe(status);
    expect(error.title).toBe(title);
    expect(error.type).toBe(`urn:turnpike:problem:${slug}`);
  });

  it('uses the code’s generic text as detail and message when no detail is given', () => {
    const error = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');
    expect(error.detail).toBe('No route matches the request.');
    expect(error.message).toBe('No route matches the request.');
  });

  it('uses a given detail for both detail and message', () => {
    const error = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', { detail: 'Two Host headers.' });
    expect(error.detail).toBe('Two Host headers.');
    expect(error.message).toBe('Two Host headers.');
  });

  it('carries the extra response headers it was given', () => {
    const error = new GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED', {
      headers: { allow: 'GET, HEAD' },
    });
    expect(error.headers).toEqual({ allow: 'GET, HEAD' });
  });

  it('has no extra headers by default', () => {
    expect(new GatewayError('ERR_TURNPIKE_INTERNAL').headers).toBeUndefined();
  });

  it('keeps the cause for logs without putting it into the detail', () => {
    const cause = new Error('connect ECONNREFUSED 10.0.0.7:8080');
    const error = new GatewayError('ERR_TURNPIKE_UPSTREAM_FAILED', { cause });
    expect(error.cause).toBe(cause);
    expect(error.detail).not.toContain('10.0.0.7');
    expect(error.message).not.toContain('10.0.0.7');
  });

  it('has no cause property when none is given', () => {
    expect('cause' in new GatewayError('ERR_TURNPIKE_INTERNAL')).toBe(false);
  });

  it('is an Error named GatewayError', () => {
    const error = new GatewayError('ERR_TURNPIKE_INTERNAL');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('GatewayError');
  });
});

describe('isGatewayError', () => {
  it('is true for a GatewayError', () => {
    expect(isGatewayError(new GatewayError('ERR_TURNPIKE_NO_TARGET'))).toBe(true);
  });

  it('is true for an error branded by another copy of the package', () => {
    const foreign = Object.assign(new Error('x'), { [Symbol.for('turnpike.GatewayError')]: true });
    expect(isGatewayError(foreign)).toBe(true);
  });

  test.each<[string, unknown]>([
    ['a plain Error', new Error('boom')],
    ['an object shaped like a GatewayError', { code: 'ERR_TURNPIKE_INTERNAL', status: 500 }],
    ['an object whose brand is not true', { [Symbol.for('turnpike.GatewayError')]: 'yes' }],
    ['null', null],
    ['undefined', undefined],
    ['a string', 'ERR_TURNPIKE_INTERNAL'],
  ])('is false for %s', (_label, value) => {
    expect(isGatewayError(value)).toBe(false);
  });
});
