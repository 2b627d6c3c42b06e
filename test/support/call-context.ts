import type { CallContext } from '../../src/contracts/backend.js';
import type { Clock } from '../../src/core/clock.js';

/** For the interceptors' unit tests: a clock that moves only when told. */
export function manualClock(start = 0): Clock & { advance(ms: number): void } {
  let t = start;
  return { now: () => t, wall: () => t, advance: (ms) => (t += ms) };
}

/** For the interceptors' unit tests: a call context with no deadline unless one is given. */
export function testContext(overrides: Partial<CallContext> = {}): CallContext {
  return {
    requestId: 'r',
    tenant: 't',
    trafficClass: 'interactive',
    signal: new AbortController().signal,
    deadlineAt: Number.POSITIVE_INFINITY,
    attempts: [],
    ...overrides,
  };
}
