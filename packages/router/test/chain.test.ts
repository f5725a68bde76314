import type { IncomingMessage, ServerResponse } from 'node:http';
import { compose } from '../src/chain';
import type { Middleware } from '../src/types';

const req = {} as IncomingMessage;
const res = {} as ServerResponse;

function run(stages: Middleware[]) {
  const calls = { terminal: 0, errors: [] as unknown[] };
  const chain = compose(
    stages,
    () => void calls.terminal++,
    (_req, _res, err) => void calls.errors.push(err),
  );
  chain(req, res);
  return calls;
}

describe('compose', () => {
  it('is the terminal itself when there are no stages', () => {
    const terminal = () => {};
    expect(compose([], terminal, () => {})).toBe(terminal);
  });

  it('runs the stages in order, then the terminal once', () => {
    const order: number[] = [];
    const calls = run([
      (_q, _s, next) => (order.push(1), next()),
      (_q, _s, next) => (order.push(2), next()),
    ]);
    expect(order).toEqual([1, 2]);
    expect(calls.terminal).toBe(1);
  });

  it('sends the request on once when a stage calls next() twice', () => {
    const calls = run([
      (_q, _s, next) => {
        next();
        next();
      },
    ]);
    expect(calls.terminal).toBe(1);
  });

  it('does not let a stage calling next() twice skip a later async stage', async () => {
    let release: () => void = () => {};
    const order: string[] = [];
    const calls = run([
      (_q, _s, next) => {
        next();
        next();
      },
      (_q, _s, next) => {
        order.push('async stage');
        release = () => next();
      },
      (_q, _s, next) => (order.push('last stage'), next()),
    ]);
    expect(calls.terminal).toBe(0);
    release();
    await Promise.resolve();
    expect(order).toEqual(['async stage', 'last stage']);
    expect(calls.terminal).toBe(1);
  });

  it('ends in onError for next(err), and ignores a next() after it', () => {
    const boom = new Error('boom');
    const calls = run([
      (_q, _s, next) => {
        next(boom);
        next();
      },
    ]);
    expect(calls).toEqual({ terminal: 0, errors: [boom] });
  });

  it('ends in onError when a stage throws', () => {
    const boom = new Error('thrown');
    const calls = run([
      () => {
        throw boom;
      },
    ]);
    expect(calls).toEqual({ terminal: 0, errors: [boom] });
  });

  it('ends in onError when an async stage rejects', async () => {
    const boom = new Error('rejected');
    const calls = run([() => Promise.reject(boom)]);
    await Promise.resolve();
    await Promise.resolve();
    expect(calls.errors).toEqual([boom]);
  });
});
