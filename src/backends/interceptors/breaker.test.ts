import { describe, expect, it } from 'vitest';
import type { Clock } from '../../core/clock.js';
import { syError } from '../../core/errors.js';
import { CircuitBreaker, type BreakerSettings } from './breaker.js';

function manualClock(): Clock & { advance(ms: number): void } {
  let t = 1_000;
  return { now: () => t, wall: () => t, advance: (ms) => (t += ms) };
}

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
    const b = new CircuitBreaker('m', SETTINGS, manualClock());
    for (let i = 0; i < 4; i++) call(b, FAIL);
    expect(b.state).toBe('closed');
    call(b, FAIL);
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
  });

  it('opens on the failure ratio once enough calls were seen in the window', () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock());
    for (let i = 0; i < 9; i++) call(b, i % 2 === 0 ? FAIL : undefined);
    expect(b.state).toBe('closed'); // 5/9 failed but fewer than min_calls
    call(b, undefined);
    call(b, FAIL);
    expect(b.state).toBe('open'); // 6/11 >= 0.5
  });

  it('forgets failures that aged out of the window', () => {
    const clock = manualClock();
    const b = new CircuitBreaker('m', { ...SETTINGS, consecutive_failures: 100 }, clock);
    for (let i = 0; i < 9; i++) call(b, FAIL);
    clock.advance(11_000);
    for (let i = 0; i < 9; i++) call(b, undefined);
    call(b, FAIL);
    expect(b.state).toBe('closed'); // 1/10 in the window
  });

  it('counts 4xx answers as successes and abandoned calls as nothing', () => {
    const b = new CircuitBreaker('m', SETTINGS, manualClock());
    for (let i = 0; i < 20; i++) call(b, syError('SY_ERR_UPSTREAM_REJECTED'));
    for (let i = 0; i < 20; i++) call(b, syError('SY_ERR_CLIENT_CLOSED'));
    for (let i = 0; i < 4; i++) call(b, FAIL);
    call(b, syError('SY_ERR_DEADLINE_EXCEEDED'));
    expect(b.state).toBe('closed');
  });

  it('lets a limited number of probes through when half-open, and closes after as many successes', () => {
    const clock = manualClock();
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
    const clock = manualClock();
    const b = new CircuitBreaker('m', SETTINGS, clock);
    for (let i = 0; i < 5; i++) call(b, FAIL);
    clock.advance(1_000);
    call(b, FAIL);
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
  });
});
