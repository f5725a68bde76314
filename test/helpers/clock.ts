/**
 * Fakes only the clock (`Date`), at `now`: timers, sockets and supertest stay real, so real
 * requests run while `jest.setSystemTime()` moves time. Undo with `jest.useRealTimers()`.
 */
export function fakeClock(now: number): void {
  jest.useFakeTimers({
    now,
    doNotFake: [
      'hrtime',
      'nextTick',
      'performance',
      'queueMicrotask',
      'setImmediate',
      'clearImmediate',
      'setInterval',
      'clearInterval',
      'setTimeout',
      'clearTimeout',
    ],
  });
}
