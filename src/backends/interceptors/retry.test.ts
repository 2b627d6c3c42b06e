import { describe, expect, it } from 'vitest';
import type { BackendCall, BackendRequest, CallContext } from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { syError, type ErrorCode } from '../../core/errors.js';
import { seededRandom } from '../../core/random.js';
import { RetryBudget, retryInterceptor, type RetrySettings } from './retry.js';

function manualClock(): Clock & { advance(ms: number): void } {
  let t = 0;
  return { now: () => t, wall: () => t, advance: (ms) => (t += ms) };
}

const SETTINGS: RetrySettings = {
  max_attempts: 3,
  base_delay_ms: 0,
  max_delay_ms: 0,
  budget_ratio: 0.1,
  budget_min_per_s: 0,
  budget_window_s: 10,
};
const REQ: BackendRequest = { op: 'chat', body: {} };

function ctx(deadlineAt = Number.POSITIVE_INFINITY): CallContext {
  return {
    requestId: 'r',
    tenant: 't',
    trafficClass: 'interactive',
    signal: new AbortController().signal,
    deadlineAt,
    attempts: [],
  };
}

function failing(code: ErrorCode): BackendCall & { calls: number } {
  const target = {
    calls: 0,
    call() {
      target.calls++;
      return Promise.reject(syError(code));
    },
    stream() {
      target.calls++;
      return Promise.reject(syError(code));
    },
  };
  return target;
}

describe('retry budget', () => {
  it('allows retries up to the ratio of requests in the window, plus the floor', () => {
    const clock = manualClock();
    const budget = new RetryBudget({ ...SETTINGS, budget_min_per_s: 1 }, clock);
    for (let i = 0; i < 100; i++) budget.deposit();
    let granted = 0;
    while (budget.tryWithdraw()) granted++;
    expect(granted).toBe(10 + 10); // 10% of 100, plus 1/s over a 10 s window
  });

  it('refills as old requests leave the window', () => {
    const clock = manualClock();
    const budget = new RetryBudget(SETTINGS, clock);
    for (let i = 0; i < 100; i++) budget.deposit();
    while (budget.tryWithdraw());
    expect(budget.tryWithdraw()).toBe(false);
    clock.advance(11_000);
    for (let i = 0; i < 10; i++) budget.deposit();
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
  });
});

describe('retry interceptor', () => {
  it('retries retryable upstream failures up to max_attempts', async () => {
    const clock = manualClock();
    const budget = new RetryBudget({ ...SETTINGS, budget_min_per_s: 100 }, clock);
    const target = failing('SY_ERR_UPSTREAM_ERROR');
    const call = retryInterceptor('m', () => SETTINGS, budget, clock, seededRandom(1))(target);
    await expect(call.call(REQ, ctx())).rejects.toMatchObject({ code: 'SY_ERR_UPSTREAM_ERROR' });
    expect(target.calls).toBe(3);
  });

  it('does not retry what another attempt cannot fix', async () => {
    const clock = manualClock();
    const budget = new RetryBudget({ ...SETTINGS, budget_min_per_s: 100 }, clock);
    for (const code of [
      'SY_ERR_UPSTREAM_REJECTED',
      'SY_ERR_CIRCUIT_OPEN',
      'SY_ERR_UPSTREAM_RATE_LIMITED',
      'SY_ERR_DEADLINE_EXCEEDED',
    ] as const) {
      const target = failing(code);
      const call = retryInterceptor('m', () => SETTINGS, budget, clock, seededRandom(1))(target);
      await expect(call.call(REQ, ctx())).rejects.toMatchObject({ code });
      expect(target.calls).toBe(1);
    }
  });

  it('does not retry when the backoff would end past the deadline', async () => {
    const clock = manualClock();
    const budget = new RetryBudget({ ...SETTINGS, budget_min_per_s: 100 }, clock);
    const target = failing('SY_ERR_UPSTREAM_ERROR');
    const settings = { ...SETTINGS, base_delay_ms: 1_000, max_delay_ms: 1_000 };
    const call = retryInterceptor(
      'm',
      () => settings,
      budget,
      clock,
      () => 0.5,
    )(target);
    await expect(call.call(REQ, ctx(100))).rejects.toMatchObject({ code: 'SY_ERR_UPSTREAM_ERROR' });
    expect(target.calls).toBe(1);
  });

  it('draws each backoff uniformly from zero to the exponential cap (full jitter)', async () => {
    const clock = manualClock();
    const budget = new RetryBudget({ ...SETTINGS, budget_min_per_s: 100 }, clock);
    const draws: number[] = [];
    const random = (): number => {
      draws.push(1);
      return 0; // a zero delay keeps the test instant; the cap is checked through the deadline below
    };
    const settings = { ...SETTINGS, base_delay_ms: 40, max_delay_ms: 1_000, max_attempts: 4 };
    const target = failing('SY_ERR_UPSTREAM_UNREACHABLE');
    await expect(
      retryInterceptor('m', () => settings, budget, clock, random)(target).call(REQ, ctx()),
    ).rejects.toBeDefined();
    expect(draws).toHaveLength(3);
    // With random() → 0.999 the delay approaches the cap 40·2^(n-1): the second retry needs > 79 ms left.
    const t2 = failing('SY_ERR_UPSTREAM_UNREACHABLE');
    let n = 0;
    const nearCap = (): number => (n++ === 0 ? 0 : 0.999);
    await expect(
      retryInterceptor('m', () => settings, budget, clock, nearCap)(t2).call(REQ, ctx(79)),
    ).rejects.toBeDefined();
    expect(t2.calls).toBe(2);
  });
});
