import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Target } from '@turnpike/core';
import {
  createBalancer,
  parseTargets,
  roundRobin,
  strategies,
  type Balancer,
  type StrategyFactory,
  type StrategyName,
} from '@turnpike/balancer';
import { configErrorOf } from '../../../test/helpers/expectations';

/** A request object for pick(); round-robin does not look at it. */
function newRequest(): IncomingMessage {
  return new IncomingMessage(new Socket());
}

function picks(balancer: Balancer, n: number): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  for (let i = 0; i < n; i++) out.push(balancer.pick(newRequest())?.url);
  return out;
}

describe('createBalancer', () => {
  it('refuses an unknown option key, naming it', () => {
    const error = configErrorOf(() =>
      createBalancer({ targets: ['http://a'], stratgy: 'round-robin' } as never),
    );
    expect(error.path).toBe('balancer.stratgy');
  });

  it('refuses a strategy factory that returns no pick()', () => {
    const error = configErrorOf(() =>
      createBalancer({ targets: ['http://a'], strategy: (() => ({})) as never }),
    );
    expect(error.path).toBe('balancer.strategy');
  });

  it('picks the targets in turn, round-robin, by default', () => {
    const balancer = createBalancer({ targets: ['http://a', 'http://b', 'http://c'] });
    expect(picks(balancer, 7)).toEqual([
      'http://a',
      'http://b',
      'http://c',
      'http://a',
      'http://b',
      'http://c',
      'http://a',
    ]);
  });

  it('picks the same order with the strategy named "round-robin"', () => {
    const balancer = createBalancer({
      targets: ['http://a', 'http://b'],
      strategy: 'round-robin',
    });
    expect(picks(balancer, 4)).toEqual(['http://a', 'http://b', 'http://a', 'http://b']);
  });

  it('always picks the only target of a one-target service', () => {
    const balancer = createBalancer({ targets: ['http://only'] });
    expect(picks(balancer, 3)).toEqual(['http://only', 'http://only', 'http://only']);
  });

  it('ignores weights in round-robin', () => {
    const balancer = createBalancer({
      targets: [{ url: 'http://heavy', weight: 5 }, 'http://light'],
    });
    expect(picks(balancer, 4)).toEqual([
      'http://heavy',
      'http://light',
      'http://heavy',
      'http://light',
    ]);
  });

  it('keeps a separate rotation per balancer', () => {
    const first = createBalancer({ targets: ['http://a', 'http://b'] });
    const second = createBalancer({ targets: ['http://a', 'http://b'] });
    first.pick(newRequest());
    expect(second.pick(newRequest())?.url).toBe('http://a');
  });

  it('exposes the parsed targets', () => {
    const balancer = createBalancer({
      targets: ['https://a', { url: 'http://b:81/v1', weight: 2 }],
    });
    expect(balancer.targets.map((t) => [t.host, t.path, t.weight])).toEqual([
      ['a', '', 1],
      ['b:81', '/v1', 2],
    ]);
  });

  it('freezes its target list', () => {
    const balancer = createBalancer({ targets: ['http://a'] });
    expect(Object.isFrozen(balancer.targets)).toBe(true);
  });

  it('is named "service" by default', () => {
    expect(createBalancer({ targets: ['http://a'] }).name).toBe('service');
  });

  it('keeps the name it is given', () => {
    expect(createBalancer({ name: 'users', targets: ['http://a'] }).name).toBe('users');
  });

  it('builds a custom strategy factory once over the parsed targets', () => {
    const seen: (readonly Target[])[] = [];
    const factory: StrategyFactory = (targets) => {
      seen.push(targets);
      return { pick: () => targets[targets.length - 1] };
    };
    createBalancer({ targets: ['http://a', 'http://b:9000'], strategy: factory });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.map((t) => t.host)).toEqual(['a', 'b:9000']);
  });

  it('answers pick() with the custom strategy’s choice', () => {
    const factory: StrategyFactory = (targets) => ({ pick: () => targets[1] });
    const balancer = createBalancer({ targets: ['http://a', 'http://b'], strategy: factory });
    expect(picks(balancer, 3)).toEqual(['http://b', 'http://b', 'http://b']);
  });

  it('passes the request to the custom strategy', () => {
    const received: IncomingMessage[] = [];
    const factory: StrategyFactory = (targets) => ({
      pick: (req) => {
        received.push(req);
        return targets[0];
      },
    });
    const balancer = createBalancer({ targets: ['http://a'], strategy: factory });
    const req = newRequest();
    balancer.pick(req);
    expect(received).toHaveLength(1);
    expect(received[0]).toBe(req);
  });

  it('answers undefined when the custom strategy has no target', () => {
    const factory: StrategyFactory = () => ({ pick: () => undefined });
    const balancer = createBalancer({ targets: ['http://a'], strategy: factory });
    expect(balancer.pick(newRequest())).toBeUndefined();
  });

  test.each<[string, unknown]>([
    ['an unknown name', 'random'],
    ['a differently spelled name', 'roundrobin'],
    ['an inherited property name', 'constructor'],
    ['__proto__', '__proto__'],
    ['a number', 1],
    ['null', null],
  ])('refuses %s as a strategy, naming the path', (_label, strategy) => {
    const error = configErrorOf(() =>
      createBalancer(
        { targets: ['http://a'], strategy: strategy as StrategyName },
        'services.users',
      ),
    );
    expect(error.path).toBe('services.users.strategy');
    expect(error.message).toContain('services.users.strategy');
    expect(error.message).toContain('round-robin');
  });

  it('names the default path "balancer" in its errors', () => {
    const error = configErrorOf(() =>
      createBalancer({ targets: ['http://a'], strategy: 'random' as StrategyName }),
    );
    expect(error.path).toBe('balancer.strategy');
  });

  it('refuses an empty target list, naming the path', () => {
    const error = configErrorOf(() => createBalancer({ targets: [] }, 'services.users'));
    expect(error.path).toBe('services.users.targets');
  });

  it('refuses a bad target, naming its index', () => {
    const error = configErrorOf(() =>
      createBalancer({ targets: ['http://a', 'ftp://b'] }, 'services.users'),
    );
    expect(error.path).toBe('services.users.targets[1]');
  });

  it('refuses options that are not an object', () => {
    const error = configErrorOf(() =>
      createBalancer(null as unknown as { targets: string[] }, 'services.users'),
    );
    expect(error.path).toBe('services.users');
  });
});

describe('roundRobin', () => {
  it('answers undefined for an empty target list', () => {
    expect(roundRobin([]).pick(newRequest())).toBeUndefined();
  });

  it('is the strategy named "round-robin"', () => {
    expect(strategies['round-robin']).toBe(roundRobin);
  });
});

describe('parseTargets', () => {
  it('parses every target of a list', () => {
    expect(parseTargets(['http://a', 'https://b'], 't').map((t) => t.port)).toEqual([80, 443]);
  });

  it('refuses a non-array, naming the path', () => {
    expect(configErrorOf(() => parseTargets('http://a', 'services.users.targets')).path).toBe(
      'services.users.targets',
    );
  });
});
