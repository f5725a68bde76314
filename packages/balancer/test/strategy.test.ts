import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { parseTarget, type TargetInput } from '@turnpike/core';
import {
  hashStrategy,
  ipHash,
  leastConnections,
  p2c,
  random,
  resolveStrategy,
  roundRobin,
  strategies,
  weightedRoundRobin,
} from '../src/strategy';
import { HashRing, MAX_RING_POINTS, POINTS_PER_WEIGHT, hash32 } from '../src/ring';
import type { Member, StrategyFactory } from '../src/types';
import { configErrorOf } from '../../../test/helpers/expectations';

/** A member whose state a test can set, as the balancer does. */
type TestMember = { -readonly [K in keyof Member]: Member[K] };

/** Members at positions 0..n-1 over `inputs` (a bare name `a` is `http://a`). */
function membersOf(inputs: readonly (TargetInput | string)[]): TestMember[] {
  return inputs.map((input, index) => {
    const normal = typeof input === 'string' && !input.includes('://') ? `http://${input}` : input;
    const target = parseTarget(normal, `targets[${index}]`);
    return {
      target,
      index,
      weight: target.weight,
      inFlight: 0,
      latencyMs: 0,
      healthy: true,
      ejectedUntil: 0,
      slot: 0,
    };
  });
}

/** The same member objects at their new positions (as the balancer's setTargets does). */
function reindexed(members: TestMember[]): TestMember[] {
  members.forEach((m, i) => (m.index = i));
  return members;
}

function request(
  options: { headers?: Record<string, string | string[]>; url?: string; clientIp?: string } = {},
): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.headers = { ...(options.headers ?? {}) };
  req.url = options.url ?? '/';
  if (options.clientIp !== undefined) (req as { clientIp?: string }).clientIp = options.clientIp;
  return req;
}

const healthy = (m: Member): boolean => m.healthy;
const all = (): boolean => true;

/** Host names of `n` picks. */
function pickNames(
  factory: StrategyFactory,
  members: TestMember[],
  n: number,
  usable: (m: Member) => boolean = healthy,
  req: IncomingMessage = request(),
): (string | undefined)[] {
  const strategy = factory(members);
  const out: (string | undefined)[] = [];
  for (let i = 0; i < n; i++) out.push(strategy.pick(members, usable, req)?.target.hostname);
  return out;
}

function counts(names: readonly (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of names) out[String(name)] = (out[String(name)] ?? 0) + 1;
  return out;
}

describe('strategies record', () => {
  it('names the six strategies and is frozen', () => {
    expect(Object.keys(strategies).sort()).toEqual(
      [
        'ip-hash',
        'least-connections',
        'p2c',
        'random',
        'round-robin',
        'weighted-round-robin',
      ].sort(),
    );
    expect(Object.isFrozen(strategies)).toBe(true);
    expect(strategies['round-robin']).toBe(roundRobin);
    expect(strategies['ip-hash']).toBe(ipHash);
  });

  it.each(Object.entries(strategies))('%s returns undefined when nothing is usable', (_, f) => {
    const members = membersOf(['a', 'b', 'c']);
    for (const m of members) m.healthy = false;
    expect(pickNames(f, members, 5, healthy, request({ clientIp: '10.0.0.1' }))).toEqual(
      Array(5).fill(undefined),
    );
    expect(f([]).pick([], all, request())).toBeUndefined();
  });

  it.each(Object.entries(strategies))('%s never picks an unusable member', (_, f) => {
    const members = membersOf(['a', 'b', 'c', 'd']);
    members[1]!.healthy = false;
    members[3]!.healthy = false;
    const strategy = f(members);
    for (let i = 0; i < 200; i++) {
      const picked = strategy.pick(members, healthy, request({ clientIp: `10.0.0.${i}` }));
      expect(['a', 'c']).toContain(picked?.target.hostname);
    }
  });
});

describe('roundRobin', () => {
  it('cycles exactly through the members', () => {
    expect(pickNames(roundRobin, membersOf(['a', 'b', 'c']), 9)).toEqual([
      'a',
      'b',
      'c',
      'a',
      'b',
      'c',
      'a',
      'b',
      'c',
    ]);
  });

  it('skips unusable members and resumes after the one picked', () => {
    const members = membersOf(['a', 'b', 'c']);
    const strategy = roundRobin(members);
    const names = (): string | undefined =>
      strategy.pick(members, healthy, request())?.target.hostname;
    expect(names()).toBe('a');
    members[1]!.healthy = false;
    expect([names(), names(), names()]).toEqual(['c', 'a', 'c']);
    members[1]!.healthy = true;
    expect([names(), names(), names()]).toEqual(['a', 'b', 'c']);
  });

  it('keeps going when the list shrinks under the cursor', () => {
    const members = membersOf(['a', 'b', 'c']);
    const strategy = roundRobin(members);
    strategy.pick(members, all, request());
    strategy.pick(members, all, request());
    const fewer = reindexed([members[0]!]);
    expect(strategy.pick(fewer, all, request())?.target.hostname).toBe('a');
  });
});

describe('weightedRoundRobin', () => {
  it('gives weights 5, 1, 1 the smooth sequence a a b a c a a, over and over', () => {
    const members = membersOf([
      { url: 'http://a', weight: 5 },
      { url: 'http://b', weight: 1 },
      { url: 'http://c', weight: 1 },
    ]);
    const cycle = ['a', 'a', 'b', 'a', 'c', 'a', 'a'];
    const names = pickNames(weightedRoundRobin, members, 700);
    for (let i = 0; i < 700; i += 7) expect(names.slice(i, i + 7)).toEqual(cycle);
    expect(counts(names)).toEqual({ a: 500, b: 100, c: 100 });
  });

  it('keeps ratios 3:2 and skips an unusable member without bursts', () => {
    const members = membersOf([
      { url: 'http://a', weight: 3 },
      { url: 'http://b', weight: 2 },
      { url: 'http://c', weight: 4 },
    ]);
    members[2]!.healthy = false;
    const names = pickNames(weightedRoundRobin, members, 500);
    expect(counts(names)).toEqual({ a: 300, b: 200 });
    // Smooth: never three of the same in a row at 3:2.
    for (let i = 2; i < names.length; i++) {
      expect(names[i] === names[i - 1] && names[i] === names[i - 2]).toBe(false);
    }
  });
});

describe('leastConnections', () => {
  it('avoids the member with many attempts in flight', () => {
    const members = membersOf(['a', 'b', 'c']);
    members[0]!.inFlight = 10;
    members[1]!.inFlight = 2;
    members[2]!.inFlight = 1;
    expect(new Set(pickNames(leastConnections, members, 50))).toEqual(new Set(['c']));
  });

  it('rotates ties', () => {
    const members = membersOf(['a', 'b', 'c', 'd']);
    members[3]!.inFlight = 5;
    expect(pickNames(leastConnections, members, 8)).toEqual([
      'a',
      'b',
      'c',
      'a',
      'a',
      'b',
      'c',
      'a',
    ]);
  });

  it('follows in-flight counts as they change', () => {
    const members = membersOf(['a', 'b']);
    const strategy = leastConnections(members);
    for (let i = 0; i < 100; i++) {
      const picked = strategy.pick(members, all, request());
      members[picked!.index]!.inFlight++;
    }
    expect(members.map((m) => m.inFlight)).toEqual([50, 50]);
  });
});

describe('p2c', () => {
  it('with two members always takes the idle one', () => {
    const members = membersOf(['a', 'b']);
    members[1]!.inFlight = 3;
    expect(counts(pickNames(p2c, members, 500))).toEqual({ a: 500 });
  });

  it('never takes the busiest member, and takes the idle one about 2/3 of the time of 3', () => {
    const members = membersOf(['a', 'b', 'c']);
    members[1]!.inFlight = 4;
    members[2]!.inFlight = 8;
    const c = counts(pickNames(p2c, members, 500));
    expect(c.c).toBeUndefined();
    // P(a) = P(a is one of the two) = 2/3; sd over 500 picks ≈ 2.1 points: ±10 points is ~4.7 sd.
    expect(c.a! / 500).toBeGreaterThan(2 / 3 - 0.1);
    expect(c.a! / 500).toBeLessThan(2 / 3 + 0.1);
  });

  it('prefers the fast member at equal load (> 80 % of 500 picks; exact here: 100 %)', () => {
    const members = membersOf(['a', 'b']);
    members[0]!.latencyMs = 200;
    members[1]!.latencyMs = 20;
    members[0]!.inFlight = 1;
    members[1]!.inFlight = 1;
    expect(counts(pickNames(p2c, members, 500)).b! / 500).toBeGreaterThan(0.8);
  });

  it('weighs load against latency: 5 in flight at 10 ms beats 1 in flight at 100 ms', () => {
    const members = membersOf(['a', 'b']);
    members[0]!.latencyMs = 10;
    members[0]!.inFlight = 5; // cost 60
    members[1]!.latencyMs = 100;
    members[1]!.inFlight = 1; // cost 200
    expect(counts(pickNames(p2c, members, 100))).toEqual({ a: 100 });
  });

  it('compares in-flight counts when a member has no latency sample yet', () => {
    const members = membersOf(['a', 'b']);
    members[0]!.latencyMs = 0;
    members[0]!.inFlight = 4;
    members[1]!.latencyMs = 300;
    members[1]!.inFlight = 0;
    expect(counts(pickNames(p2c, members, 100))).toEqual({ b: 100 });
  });

  it('spreads evenly among equal members and returns a single usable one', () => {
    const members = membersOf(['a', 'b', 'c']);
    const c = counts(pickNames(p2c, members, 1500));
    // Each 1/3; sd ≈ 1.2 points: ±6 points is ~5 sd.
    for (const name of ['a', 'b', 'c'])
      expect(Math.abs(c[name]! / 1500 - 1 / 3)).toBeLessThan(0.06);
    members[0]!.healthy = false;
    members[2]!.healthy = false;
    expect(counts(pickNames(p2c, members, 20))).toEqual({ b: 20 });
  });

  it('finds the one usable member among many unusable ones (scan fallback)', () => {
    const members = membersOf(Array.from({ length: 50 }, (_, i) => `h${i}`));
    for (const m of members) m.healthy = m.index === 37;
    expect(counts(pickNames(p2c, members, 50))).toEqual({ h37: 50 });
  });
});

describe('random', () => {
  it('picks in proportion to weight (±5 points over 2000 picks)', () => {
    const members = membersOf([
      { url: 'http://a', weight: 1 },
      { url: 'http://b', weight: 2 },
      { url: 'http://c', weight: 3 },
      { url: 'http://d', weight: 4 },
    ]);
    members[3]!.healthy = false;
    const c = counts(pickNames(random, members, 2000));
    expect(c.d).toBeUndefined();
    // Largest sd is at p = 1/2: sqrt(0.25 / 2000) ≈ 1.1 points, so ±5 points is ≥ 4.4 sd.
    expect(Math.abs(c.a! / 2000 - 1 / 6)).toBeLessThan(0.05);
    expect(Math.abs(c.b! / 2000 - 2 / 6)).toBeLessThan(0.05);
    expect(Math.abs(c.c! / 2000 - 3 / 6)).toBeLessThan(0.05);
  });
});

describe('hash ring', () => {
  const five = (): TestMember[] => membersOf(['h0', 'h1', 'h2', 'h3', 'h4']);
  const keys = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
  const byHeader = hashStrategy({ header: 'x-user' }, 'services.api.balancer');
  const pickKey = (
    strategy: ReturnType<StrategyFactory>,
    members: TestMember[],
    key: string,
    usable: (m: Member) => boolean = healthy,
  ): string | undefined =>
    strategy.pick(members, usable, request({ headers: { 'x-user': key } }))?.target.hostname;

  it('hash32 is a stable 32-bit hash that spreads similar strings', () => {
    expect(hash32('http://a#1')).toBe(hash32('http://a#1'));
    expect(hash32('http://a#1')).not.toBe(hash32('http://a#2'));
    const top = new Set(Array.from({ length: 64 }, (_, i) => hash32(`x#${i}`) >>> 28));
    expect(top.size).toBeGreaterThan(10);
    for (let i = 0; i < 64; i++) {
      const h = hash32(`k${i}`);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
    }
  });

  it('gives each member POINTS_PER_WEIGHT points per weight, none at weight 0', () => {
    const members = membersOf([
      { url: 'http://a', weight: 1 },
      { url: 'http://b', weight: 3 },
      { url: 'http://c', weight: 0 },
    ]);
    expect(new HashRing(members).size).toBe(4 * POINTS_PER_WEIGHT);
  });

  it('caps the ring, scaling every member down in proportion', () => {
    const members = membersOf(
      Array.from({ length: 1000 }, (_, i) => ({ url: `http://h${i}`, weight: 1 + (i % 2) })),
    );
    const size = new HashRing(members).size;
    expect(size).toBeLessThanOrEqual(MAX_RING_POINTS);
    expect(size).toBeGreaterThan(MAX_RING_POINTS * 0.9);
  });

  it('maps the same key to the same member, and keys spread over all members', () => {
    const members = five();
    const strategy = byHeader(members);
    const first = keys.map((k) => pickKey(strategy, members, k));
    const rebuilt = byHeader(members);
    const again = keys.map((k) => pickKey(rebuilt, members, k));
    expect(again).toEqual(first);
    const c = counts(first);
    for (const name of ['h0', 'h1', 'h2', 'h3', 'h4']) expect(c[name]).toBeGreaterThan(100);
  });

  it('moves only the keys of a removed target (about 1/5 of them)', () => {
    const members = five();
    const strategy = byHeader(members);
    const before = keys.map((k) => pickKey(strategy, members, k));
    const fewer = reindexed(members.filter((m) => m.target.hostname !== 'h2'));
    strategy.update!(fewer);
    const after = keys.map((k) => pickKey(strategy, fewer, k));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] === 'h2') {
        moved++;
        expect(after[i]).not.toBe('h2');
      } else {
        expect(after[i]).toBe(before[i]);
      }
    }
    expect(moved / keys.length).toBeGreaterThan(0.1);
    expect(moved / keys.length).toBeLessThan(0.3);
  });

  it('moves a key off an unusable member and back when it is usable again', () => {
    const members = five();
    const strategy = byHeader(members);
    const home = pickKey(strategy, members, 'user-7')!;
    const member = members.find((m) => m.target.hostname === home)!;
    member.healthy = false;
    const away = pickKey(strategy, members, 'user-7');
    expect(away).toBeDefined();
    expect(away).not.toBe(home);
    expect(pickKey(strategy, members, 'user-7')).toBe(away);
    member.healthy = true;
    expect(pickKey(strategy, members, 'user-7')).toBe(home);
  });

  it('still finds the last usable member on the ring', () => {
    const members = five();
    const strategy = byHeader(members);
    for (const m of members) m.healthy = m.target.hostname === 'h3';
    for (const k of keys.slice(0, 50)) expect(pickKey(strategy, members, k)).toBe('h3');
  });

  it('gives a weight-2 member about twice the keys of a weight-1 member', () => {
    const members = membersOf([
      { url: 'http://a', weight: 1 },
      { url: 'http://b', weight: 2 },
      { url: 'http://c', weight: 1 },
    ]);
    const strategy = byHeader(members);
    const c = counts(Array.from({ length: 4000 }, (_, i) => pickKey(strategy, members, `k${i}`)));
    const ratio = c.b! / ((c.a! + c.c!) / 2);
    expect(ratio).toBeGreaterThan(1.5);
    expect(ratio).toBeLessThan(2.5);
  });

  it('gives a weight-0 member no keys', () => {
    const members = membersOf([
      { url: 'http://a', weight: 1 },
      { url: 'http://b', weight: 0 },
    ]);
    const strategy = byHeader(members);
    expect(new Set(keys.map((k) => pickKey(strategy, members, k, all)))).toEqual(new Set(['a']));
  });

  it('falls back to round-robin among usable members without the key', () => {
    const members = five();
    members[1]!.healthy = false;
    const strategy = byHeader(members);
    const names = Array.from(
      { length: 8 },
      () => strategy.pick(members, healthy, request())?.target.hostname,
    );
    expect(names).toEqual(['h0', 'h2', 'h3', 'h4', 'h0', 'h2', 'h3', 'h4']);
    expect(pickKey(strategy, members, '')).toBe('h0'); // an empty key is no key
  });

  it('ip-hash keys by req.clientIp, else the socket address', () => {
    const members = five();
    const strategy = ipHash(members);
    const ip = (clientIp: string): string | undefined =>
      strategy.pick(members, healthy, request({ clientIp }))?.target.hostname;
    const homes = Array.from({ length: 200 }, (_, i) => ip(`10.1.${i >> 8}.${i & 255}`));
    expect(Array.from({ length: 200 }, (_, i) => ip(`10.1.${i >> 8}.${i & 255}`))).toEqual(homes);
    expect(new Set(homes).size).toBe(5);

    const req = request();
    Object.defineProperty(req.socket, 'remoteAddress', { value: '10.1.0.9' });
    expect(strategy.pick(members, healthy, req)?.target.hostname).toBe(ip('10.1.0.9'));
  });

  it('ip-hash without any address falls back to round-robin', () => {
    expect(pickNames(ipHash, five(), 6)).toEqual(['h0', 'h1', 'h2', 'h3', 'h4', 'h0']);
  });

  it('hashes a header by its first value, whatever the configured case', () => {
    const members = five();
    const strategy = hashStrategy({ header: 'X-User' }, 'p')(members);
    const one = (headers: Record<string, string | string[]>): string | undefined =>
      strategy.pick(members, healthy, request({ headers }))?.target.hostname;
    const lower = byHeader(members);
    for (const k of keys.slice(0, 30)) {
      expect(one({ 'x-user': [k, 'other'] })).toBe(one({ 'x-user': k }));
      expect(one({ 'x-user': k })).toBe(pickKey(lower, members, k));
    }
  });

  it('hashes a cookie found by a scan of the Cookie header', () => {
    const members = five();
    const strategy = hashStrategy({ cookie: 'sid' }, 'p')(members);
    const header = byHeader(members);
    const one = (cookie: string): string | undefined =>
      strategy.pick(members, healthy, request({ headers: { cookie } }))?.target.hostname;
    for (const k of keys.slice(0, 30)) {
      const expected = pickKey(header, members, k);
      expect(one(`sid=${k}`)).toBe(expected);
      expect(one(`a=1; xsid=zzz; sid=${k}; b=2`)).toBe(expected);
      expect(one(`sid="${k}"`)).toBe(expected);
    }
    // Without the cookie (only a longer name): round-robin.
    expect([one('xsid=1'), one('xsid=1'), one('sidx=1')]).toEqual(['h0', 'h1', 'h2']);
  });

  it('hashes a query parameter: first occurrence, decoded', () => {
    const members = five();
    const strategy = hashStrategy({ query: 'user' }, 'p')(members);
    const header = byHeader(members);
    const one = (url: string): string | undefined =>
      strategy.pick(members, healthy, request({ url }))?.target.hostname;
    for (const k of keys.slice(0, 30)) {
      const expected = pickKey(header, members, k);
      expect(one(`/x?user=${k}`)).toBe(expected);
      expect(one(`/x?a=1&xuser=2&user=${k}&user=zzz#frag`)).toBe(expected);
      expect(one(`/x?user=${encodeURIComponent(k).replace('-', '%2D')}`)).toBe(expected);
    }
    expect(one('/x?user=a%20b')).toBe(pickKey(header, members, 'a b'));
    expect(one('/x?user=a+b')).toBe(pickKey(header, members, 'a b'));
    expect(one('/x?user=%E0%A4%A')).toBe(pickKey(header, members, '%E0%A4%A')); // malformed: raw
    // No such parameter, or no query: round-robin.
    expect([one('/x'), one('/x?users=1'), one('/x#user=1')]).toEqual(['h0', 'h1', 'h2']);
  });

  it('rebuilds on update: a new target takes keys, and only from others', () => {
    const members = membersOf(['h0', 'h1', 'h2', 'h3']);
    const strategy = byHeader(members);
    const before = keys.map((k) => pickKey(strategy, members, k));
    const more = reindexed([...membersOf(['h9']), ...members]);
    strategy.update!(more);
    const after = keys.map((k) => pickKey(strategy, more, k));
    let taken = 0;
    for (let i = 0; i < keys.length; i++) {
      if (after[i] === 'h9') taken++;
      else expect(after[i]).toBe(before[i]);
    }
    expect(taken / keys.length).toBeGreaterThan(0.1);
    expect(taken / keys.length).toBeLessThan(0.3);
  });
});

describe('hashStrategy validation', () => {
  const pathOf = (key: unknown): string =>
    configErrorOf(() => hashStrategy(key as never, 'services.api.balancer')).path;

  it('refuses a hash on nothing, on two keys, or not an object', () => {
    expect(pathOf({})).toBe('services.api.balancer.hash');
    expect(pathOf({ header: 'x-a', cookie: 'sid' })).toBe('services.api.balancer.hash');
    expect(pathOf('x-user')).toBe('services.api.balancer.hash');
    expect(pathOf(null)).toBe('services.api.balancer.hash');
    expect(pathOf(['x'])).toBe('services.api.balancer.hash');
  });

  it('refuses an unknown key, by name', () => {
    expect(pathOf({ haeder: 'x' })).toBe('services.api.balancer.hash.haeder');
  });

  it('refuses a bad header, cookie or query name, naming it', () => {
    expect(pathOf({ header: '' })).toBe('services.api.balancer.hash.header');
    expect(pathOf({ header: 'x user' })).toBe('services.api.balancer.hash.header');
    expect(pathOf({ header: 42 })).toBe('services.api.balancer.hash.header');
    expect(pathOf({ cookie: '' })).toBe('services.api.balancer.hash.cookie');
    expect(pathOf({ cookie: 'a;b' })).toBe('services.api.balancer.hash.cookie');
    expect(pathOf({ query: '' })).toBe('services.api.balancer.hash.query');
    expect(pathOf({ query: 'a=b' })).toBe('services.api.balancer.hash.query');
  });

  it('accepts one key, ignoring undefined others', () => {
    expect(typeof hashStrategy({ header: 'x-user', cookie: undefined }, 'p')).toBe('function');
  });
});

describe('resolveStrategy', () => {
  it('defaults to round-robin and resolves names, hashes and factories', () => {
    expect(resolveStrategy(undefined, 'p')).toBe(roundRobin);
    for (const [name, factory] of Object.entries(strategies)) {
      expect(resolveStrategy(name, 'p')).toBe(factory);
    }
    const mine: StrategyFactory = () => ({ pick: () => undefined });
    expect(resolveStrategy(mine, 'p')).toBe(mine);
    const hashed = resolveStrategy({ hash: { cookie: 'sid' } }, 'p');
    const members = membersOf(['a', 'b']);
    const strategy = hashed(members);
    expect(typeof strategy.update).toBe('function');
    const sid = (k: string): string | undefined =>
      strategy.pick(members, all, request({ headers: { cookie: `sid=${k}` } }))?.target.hostname;
    // Keyed, not round-robin: each key keeps its member.
    for (const k of ['k1', 'k2', 'k3', 'k4']) expect(sid(k)).toBe(sid(k));
  });

  it('refuses anything else at the path, listing the names', () => {
    for (const bad of ['round_robin', 'toString', 42, null, [], {}, true]) {
      const error = configErrorOf(() => resolveStrategy(bad, 'services.api.balancer'));
      expect(error.path).toBe('services.api.balancer');
      expect(error.expected).toContain('"least-connections"');
      expect(error.expected).toContain('hash');
    }
  });

  it('refuses a key beside hash, and passes hash errors through', () => {
    expect(
      configErrorOf(() => resolveStrategy({ hash: { header: 'x' }, extra: 1 }, 'b')).path,
    ).toBe('b.extra');
    expect(configErrorOf(() => resolveStrategy({ hash: {} }, 'b')).path).toBe('b.hash');
    expect(configErrorOf(() => resolveStrategy({ hash: { query: '' } }, 'b')).path).toBe(
      'b.hash.query',
    );
  });
});
