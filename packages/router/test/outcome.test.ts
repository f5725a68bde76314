import { isUpstreamFailure, Outcomes, type Outcome, type OutcomeKind } from '../src/outcome';

/** A stand-in outcome: the registry passes it on as it is. */
const outcome = (kind: OutcomeKind = 'complete'): Outcome => ({ kind }) as Outcome;

function registry(): { outcomes: Outcomes; errors: unknown[] } {
  const errors: unknown[] = [];
  return { outcomes: new Outcomes((err) => errors.push(err)), errors };
}

describe('Outcomes', () => {
  it('is not listening until a listener subscribes, and again once it disposed', () => {
    const { outcomes } = registry();
    expect(outcomes.listening).toBe(false);
    const dispose = outcomes.on(() => {});
    expect(outcomes.listening).toBe(true);
    dispose();
    expect(outcomes.listening).toBe(false);
  });

  it('delivers each outcome to every listener, in subscription order', () => {
    const { outcomes } = registry();
    const calls: string[] = [];
    outcomes.on((o) => calls.push(`a:${o.kind}`));
    outcomes.on((o) => calls.push(`b:${o.kind}`));
    outcomes.emit(outcome('refused'));
    expect(calls).toEqual(['a:refused', 'b:refused']);
  });

  it('passes the same outcome object to every listener', () => {
    const { outcomes } = registry();
    const seen: Outcome[] = [];
    outcomes.on((o) => seen.push(o));
    outcomes.on((o) => seen.push(o));
    const o = outcome();
    outcomes.emit(o);
    expect(seen).toEqual([o, o]);
    expect(seen[0]).toBe(o);
  });

  it('copy-on-write: a listener disposed during an emit still gets that emit, not the next', () => {
    const { outcomes } = registry();
    const calls: string[] = [];
    let disposeB = (): void => {};
    outcomes.on(() => {
      calls.push('a');
      disposeB();
    });
    disposeB = outcomes.on(() => calls.push('b'));
    outcomes.emit(outcome());
    expect(calls).toEqual(['a', 'b']);
    outcomes.emit(outcome());
    expect(calls).toEqual(['a', 'b', 'a']);
  });

  it('copy-on-write: a listener subscribed during an emit gets the next emit, not that one', () => {
    const { outcomes } = registry();
    const calls: string[] = [];
    let added = false;
    outcomes.on(() => {
      calls.push('a');
      if (!added) {
        added = true;
        outcomes.on(() => calls.push('late'));
      }
    });
    outcomes.emit(outcome());
    expect(calls).toEqual(['a']);
    outcomes.emit(outcome());
    expect(calls).toEqual(['a', 'a', 'late']);
  });

  it('a listener disposing itself during an emit does not make the next one skipped', () => {
    const { outcomes } = registry();
    const calls: string[] = [];
    const disposeA = outcomes.on(() => {
      calls.push('a');
      disposeA();
    });
    outcomes.on(() => calls.push('b'));
    outcomes.emit(outcome());
    outcomes.emit(outcome());
    expect(calls).toEqual(['a', 'b', 'b']);
  });

  it('disposing twice is a no-op: it does not remove another subscription of the same function', () => {
    const { outcomes } = registry();
    let calls = 0;
    const listener = (): void => void calls++;
    const first = outcomes.on(listener);
    outcomes.on(listener);
    outcomes.emit(outcome());
    expect(calls).toBe(2);
    first();
    first();
    outcomes.emit(outcome());
    expect(calls).toBe(3);
    expect(outcomes.listening).toBe(true);
  });

  it.each([undefined, null, 'listener', 42, {}])('refuses %p as a listener', (value) => {
    const { outcomes } = registry();
    expect(() => outcomes.on(value as never)).toThrow(TypeError);
    expect(() => outcomes.on(value as never)).toThrow(/onOutcome\(\) takes a function/);
    expect(outcomes.listening).toBe(false);
  });

  it('a listener that throws is reported to the error callback and the others still run', () => {
    const { outcomes, errors } = registry();
    const boom = new Error('boom');
    const calls: string[] = [];
    outcomes.on(() => {
      throw boom;
    });
    outcomes.on(() => calls.push('b'));
    expect(() => outcomes.emit(outcome())).not.toThrow();
    expect(calls).toEqual(['b']);
    expect(errors).toEqual([boom]);
  });

  it('emitting with no listener does nothing', () => {
    const { outcomes, errors } = registry();
    expect(() => outcomes.emit(outcome())).not.toThrow();
    expect(errors).toEqual([]);
  });
});

describe('isUpstreamFailure', () => {
  const failures: OutcomeKind[] = [
    'cut-off',
    'refused',
    'dns',
    'connect-timeout',
    'reset',
    'timeout',
    'protocol',
    'bad-status',
  ];
  const others: OutcomeKind[] = [
    'complete',
    'upgraded',
    'client-gone',
    'stage',
    'rejected',
    'handled',
  ];

  it.each(failures)('%s is an upstream failure', (kind) => {
    expect(isUpstreamFailure(kind)).toBe(true);
  });

  it.each(others)('%s is not', (kind) => {
    expect(isUpstreamFailure(kind)).toBe(false);
  });

  it('knows nothing else', () => {
    expect(isUpstreamFailure('error' as OutcomeKind)).toBe(false);
  });
});
