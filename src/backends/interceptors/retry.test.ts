import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BackendCall, BackendRequest, CallContext } from '../../contracts/backend.js';
import { syError, type ErrorCode } from '../../core/errors.js';
import { seededRandom } from '../../core/random.js';
import { RetryBudget, retryInterceptor, type RetrySettings } from './retry.js';
import { manualClock, testContext } from '../../../test/support/call-context.js';

const SETTINGS: RetrySettings = {
  max_attempts: 3,
  base_delay_ms: 0,
  max_delay_ms: 0,
  budget_ratio: 0.1,
  budget_tokens: 10,
};
const REQ: BackendRequest = { op: 'chat', body: {} };

function ctx(deadlineAt = Number.POSITIVE_INFINITY, firstByteBy?: number): CallContext {
  return testContext(firstByteBy === undefined ? { deadlineAt } : { deadlineAt, firstByteBy });
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

/** An upstream whose attempts fail with probability `p` (a seeded draw per attempt). */
function flaky(p: number, seed: number): BackendCall & { calls: number } {
  const draw = seededRandom(seed);
  const target = {
    calls: 0,
    call() {
      target.calls++;
      return draw() < p
        ? Promise.reject(syError('SY_ERR_UPSTREAM_ERROR'))
        : Promise.resolve({ json: {} });
    },
    stream() {
      return Promise.reject(syError('SY_ERR_OPERATION_UNSUPPORTED'));
    },
  };
  return target;
}

async function send(call: BackendCall, n: number): Promise<number> {
  let answered = 0;
  for (let i = 0; i < n; i++) {
    await call.call(REQ, ctx()).then(
      () => answered++,
      () => undefined,
    );
  }
  return answered;
}

function interceptor(budget: RetryBudget, settings: RetrySettings = SETTINGS) {
  return retryInterceptor('m', () => settings, budget, manualClock(), seededRandom(1));
}

describe('retry budget', () => {
  it('starts full, and stops retries once failures have spent half the tokens', () => {
    const budget = new RetryBudget(SETTINGS);
    const allowed: boolean[] = [];
    for (let i = 0; i < 8; i++) {
      budget.record('SY_ERR_UPSTREAM_ERROR');
      allowed.push(budget.allowsRetry());
    }
    expect(allowed).toEqual([true, true, true, true, false, false, false, false]);
  });

  it('refills from answered attempts only, never with time alone (#13 finding 10)', () => {
    const budget = new RetryBudget(SETTINGS);
    for (let i = 0; i < 10; i++) budget.record('SY_ERR_UPSTREAM_ERROR');
    expect(budget.allowsRetry()).toBe(false);
    // The former budget granted a floor of retries per second: waiting was enough to retry again.
    // Here only answers refill it: 0.1 per answered attempt, past half of 10 tokens.
    for (let i = 0; i < 50; i++) budget.record(undefined);
    expect(budget.allowsRetry()).toBe(false);
    budget.record('SY_ERR_UPSTREAM_REJECTED'); // a 4xx is an answer: the upstream is alive
    expect(budget.allowsRetry()).toBe(true);
  });

  it('is neither spent nor refilled by attempts that say nothing of the upstream', () => {
    const budget = new RetryBudget(SETTINGS);
    for (const code of [
      'SY_ERR_CIRCUIT_OPEN',
      'SY_ERR_CLIENT_CLOSED',
      'SY_ERR_DEADLINE_EXCEEDED',
      'SY_ERR_ATTEMPT_TIMEOUT',
    ] as const)
      for (let i = 0; i < 20; i++) budget.record(code);
    expect(budget.balance).toBe(10);
  });

  it('sizes its reserve by budget_tokens', async () => {
    // Through the interceptor, against an upstream that always fails: retries granted in all.
    const retriesWith = async (tokens: number): Promise<number> => {
      const target = failing('SY_ERR_UPSTREAM_ERROR');
      const settings = { ...SETTINGS, budget_tokens: tokens, max_attempts: 2 };
      await send(interceptor(new RetryBudget(settings), settings)(target), 100);
      return target.calls - 100;
    };
    // Each request fails twice (two tokens) for one retry, until half the tokens are gone.
    expect(await retriesWith(4)).toBe(1);
    expect(await retriesWith(40)).toBe(10);
  });

  it('earns budget_ratio tokens per answered attempt', () => {
    // Drained by an outage, then healthy again: how many answers until a retry is allowed?
    const answersToRetry = (ratio: number): number => {
      const budget = new RetryBudget({ ...SETTINGS, budget_ratio: ratio });
      for (let i = 0; i < 10; i++) budget.record('SY_ERR_UPSTREAM_ERROR');
      let n = 0;
      while (!budget.allowsRetry()) {
        budget.record(undefined);
        n++;
      }
      return n;
    };
    expect(answersToRetry(0.1)).toBe(51);
    expect(answersToRetry(0.5)).toBe(11);
  });

  it('keeps attempts per request under 1 + budget_ratio at any failure rate, after the first reserve', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.constantFrom(0.05, 0.1, 0.2),
        async (p, seed, ratio) => {
          const settings = { ...SETTINGS, budget_ratio: ratio };
          const target = flaky(p, seed);
          const requests = 2_000;
          const answered = await send(
            interceptor(new RetryBudget(settings), settings)(target),
            requests,
          );
          const retries = target.calls - requests;
          // Half the bucket once, then at most budget_ratio per answered request.
          return retries <= settings.budget_tokens / 2 + 1 + ratio * answered;
        },
      ),
      { seed: 13, numRuns: 40 },
    );
  });
});

describe('retry interceptor', () => {
  it('retries retryable upstream failures up to max_attempts', async () => {
    const clock = manualClock();
    const budget = new RetryBudget(SETTINGS);
    const target = failing('SY_ERR_UPSTREAM_ERROR');
    const call = retryInterceptor('m', () => SETTINGS, budget, clock, seededRandom(1))(target);
    await expect(call.call(REQ, ctx())).rejects.toMatchObject({ code: 'SY_ERR_UPSTREAM_ERROR' });
    expect(target.calls).toBe(3);
  });

  it('does not retry what another attempt cannot fix', async () => {
    const clock = manualClock();
    const budget = new RetryBudget(SETTINGS);
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
    const budget = new RetryBudget(SETTINGS);
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
    const budget = new RetryBudget(SETTINGS);
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
      retryInterceptor(
        'm',
        () => settings,
        new RetryBudget(SETTINGS),
        clock,
        nearCap,
      )(t2).call(REQ, ctx(79)),
    ).rejects.toBeDefined();
    expect(t2.calls).toBe(2);
  });

  it('does not retry past the first-byte share a fallback chain left the link', async () => {
    const clock = manualClock();
    const settings = { ...SETTINGS, base_delay_ms: 100, max_delay_ms: 100 };
    const call = (by: number | undefined) => {
      const target = failing('SY_ERR_UPSTREAM_ERROR');
      const wrapped = retryInterceptor(
        'm',
        () => settings,
        new RetryBudget(SETTINGS),
        clock,
        () => 0.5,
      );
      return wrapped(target)
        .call(REQ, ctx(10_000, by))
        .catch(() => target.calls);
    };
    expect(await call(undefined)).toBe(3); // 50 ms waits fit in the deadline
    expect(await call(40)).toBe(1); // but not in a share that ends after 40 ms
  });

  it('hands a timeout to the fallback rather than waiting on the same upstream again', async () => {
    const timingOut = (by: number | undefined) => {
      const target = failing('SY_ERR_UPSTREAM_TIMEOUT');
      const wrapped = retryInterceptor(
        'm',
        () => SETTINGS,
        new RetryBudget(SETTINGS),
        manualClock(),
        () => 0,
      );
      return wrapped(target)
        .call(REQ, ctx(10_000, by))
        .catch(() => target.calls);
    };
    expect(await timingOut(undefined)).toBe(3); // no fallback: retried
    expect(await timingOut(9_000)).toBe(1); // a fallback follows (the chain set firstByteBy)
  });
});
