import { describe, expect, it } from 'vitest';
import { syError } from '../../core/errors.js';
import type {
  BackendCall,
  BackendRequest,
  BackendStream,
  CallContext,
} from '../../contracts/backend.js';
import { breakerInterceptor, CircuitBreaker, type BreakerSettings } from './breaker.js';
import { manualClock, testContext } from '../../../test/support/call-context.js';

const SETTINGS: BreakerSettings = {
  min_calls: 10,
  failure_ratio: 0.5,
  consecutive_failures: 5,
  window_ms: 10_000,
  cooldown_ms: 1_000,
  half_open_probes: 2,
};
const FAIL = syError('SY_ERR_UPSTREAM_ERROR');

function call(b: CircuitBreaker, err?: Error): boolean {
  if (!b.tryAcquire()) return false;
  b.settle(err);
  return true;
}

describe('circuit breaker', () => {
  it('opens on a run of consecutive failures', () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock(1_000));
    for (let i = 0; i < 4; i++) call(b, FAIL);
    expect(b.state).toBe('closed');
    call(b, FAIL);
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
  });

  it('opens on the failure ratio once enough calls were seen in the window', () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock(1_000));
    for (let i = 0; i < 9; i++) call(b, i % 2 === 0 ? FAIL : undefined);
    expect(b.state).toBe('closed'); // 5/9 failed but fewer than min_calls
    call(b, undefined);
    call(b, FAIL);
    expect(b.state).toBe('open'); // 6/11 >= 0.5
  });

  it('forgets failures that aged out of the window', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', { ...SETTINGS, consecutive_failures: 100 }, clock);
    for (let i = 0; i < 9; i++) call(b, FAIL);
    clock.advance(11_000);
    for (let i = 0; i < 9; i++) call(b, undefined);
    call(b, FAIL);
    expect(b.state).toBe('closed'); // 1/10 in the window
  });

  it('counts 4xx answers as successes and calls the client abandoned as nothing', () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock(1_000));
    for (let i = 0; i < 20; i++) call(b, syError('SY_ERR_UPSTREAM_REJECTED'));
    for (let i = 0; i < 20; i++) call(b, syError('SY_ERR_CLIENT_CLOSED'));
    for (let i = 0; i < 4; i++) call(b, FAIL);
    expect(b.state).toBe('closed');
    call(b, syError('SY_ERR_CLIENT_CLOSED'));
    expect(b.state).toBe('closed');
  });

  it('counts calls cut off by the deadline as failures when the upstream answered nobody meanwhile (#13)', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    call(b, undefined);
    clock.advance(1);
    for (let i = 0; i < 5; i++) {
      expect(b.tryAcquire()).toBe(true);
      const startedAt = clock.now();
      clock.advance(1_000);
      b.settle(syError('SY_ERR_DEADLINE_EXCEEDED', '1000'), startedAt);
    }
    expect(b.state).toBe('open');
  });

  it('counts an attempt cut at its fallback share of the deadline like a deadline', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 5; i++) {
      b.tryAcquire();
      const startedAt = clock.now();
      clock.advance(500);
      b.settle(syError('SY_ERR_ATTEMPT_TIMEOUT'), startedAt);
    }
    expect(b.state).toBe('open');
  });

  it('does not count a deadline cut while the upstream answered other calls: tiny client budgets cannot open it', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 50; i++) {
      b.tryAcquire();
      const startedAt = clock.now();
      clock.advance(5);
      call(b, undefined); // another client's call was answered while this one waited
      clock.advance(5);
      b.settle(syError('SY_ERR_DEADLINE_EXCEEDED', '10'), startedAt);
    }
    expect(b.state).toBe('closed');
  });

  it('opens again when a half-open probe is cut off by the deadline of an upstream that answers nobody', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 5; i++) call(b, FAIL);
    clock.advance(1_000);
    expect(b.tryAcquire()).toBe(true);
    const startedAt = clock.now();
    clock.advance(300);
    b.settle(syError('SY_ERR_DEADLINE_EXCEEDED', '300'), startedAt);
    expect(b.state).toBe('open');
  });

  it('lets a limited number of probes through when half-open, and closes after as many successes', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 5; i++) call(b, FAIL);
    clock.advance(999);
    expect(b.tryAcquire()).toBe(false);
    clock.advance(1);
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(false); // only two probes at once
    b.settle(undefined);
    expect(b.state).toBe('half_open');
    b.settle(undefined);
    expect(b.state).toBe('closed');
  });

  it('opens again when a half-open probe fails', () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 5; i++) call(b, FAIL);
    clock.advance(1_000);
    call(b, FAIL);
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
  });
});

describe('breaker interceptor', () => {
  const REQ: BackendRequest = { op: 'chat', body: {} };
  const ctx = (deadlineAt = Number.POSITIVE_INFINITY): CallContext => testContext({ deadlineAt });
  /** A stream whose chunks are `parts`, then `end` thrown (or a clean end). */
  const streaming = (parts: string[], end?: Error): BackendCall => ({
    call: () => Promise.reject(syError('SY_ERR_OPERATION_UNSUPPORTED')),
    stream: () =>
      Promise.resolve({
        contentType: 'text/event-stream',
        firstEventMs: 1,
        usage: () => undefined,
        cancel: () => undefined,
        chunks: (async function* () {
          for (const p of parts) yield await Promise.resolve(Buffer.from(p));
          if (end !== undefined) throw end;
        })(),
      }),
  });
  const drain = async (s: BackendStream): Promise<void> => {
    for await (const _ of s.chunks);
  };

  it('counts a stream that fails after its first event against the upstream (#13 finding 4)', async () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock(1_000));
    const call = breakerInterceptor(b)(
      streaming(['a', 'b', 'c'], syError('SY_ERR_UPSTREAM_STREAM_INTERRUPTED')),
    );
    for (let i = 0; i < 5; i++) {
      const stream = await call.stream(REQ, ctx());
      await expect(drain(stream)).rejects.toMatchObject({
        code: 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
      });
    }
    expect(b.state).toBe('open');
    await expect(call.stream(REQ, ctx())).rejects.toMatchObject({ code: 'SY_ERR_CIRCUIT_OPEN' });
  });

  it('settles a half-open probe whose stream was cancelled before it was read', async () => {
    const clock = manualClock(1_000);
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 5; i++) call(b, FAIL);
    clock.advance(1_000);
    const wrapped = breakerInterceptor(b)(streaming(['a']));
    const probes = [await wrapped.stream(REQ, ctx()), await wrapped.stream(REQ, ctx())];
    for (const p of probes) p.cancel();
    expect(b.state).toBe('closed'); // two probes settled as successes, none left holding a slot
  });

  it('leaves a call that cannot start to the deadline guard, out of the count', async () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock(1_000));
    const target: BackendCall = {
      call: () => Promise.reject(syError('SY_ERR_DEADLINE_EXCEEDED', '0')),
      stream: () => Promise.reject(syError('SY_ERR_DEADLINE_EXCEEDED', '0')),
    };
    const wrapped = breakerInterceptor(b)(target);
    for (let i = 0; i < 20; i++)
      await expect(wrapped.call(REQ, ctx(0))).rejects.toMatchObject({
        code: 'SY_ERR_DEADLINE_EXCEEDED',
      });
    expect(b.state).toBe('closed');
  });
});
