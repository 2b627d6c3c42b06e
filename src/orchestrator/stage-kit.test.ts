import { describe, expect, it } from 'vitest';
import type { JourneyState, Stage, StageContext, StageServices } from '../contracts/stage.js';
import { syError } from '../core/errors.js';
import { result, runStage } from './stage-kit.js';

function context(now: () => number, deadlineAt = 1_000): StageContext {
  const signal = new AbortController().signal;
  return {
    requestId: 'r1',
    tenant: 't',
    trafficClass: 'interactive',
    signal,
    deadlineAt,
    origin: 0,
    remainingMs: () => deadlineAt - now(),
    now,
    wall: now,
    call: () => ({
      requestId: 'r1',
      tenant: 't',
      trafficClass: 'interactive',
      signal,
      deadlineAt,
      attempts: [],
    }),
    services: {} as StageServices,
  };
}

const state = {} as JourneyState;

describe('runStage', () => {
  it('describes a synchronous stage without a promise, timed by the clock', () => {
    let t = 10;
    const stage: Stage = {
      id: 'route',
      kind: 'branch',
      run: () => {
        t += 2;
        return result.next('to:x', 'went to x', { next: 'x' });
      },
    };
    const ran = runStage(
      stage,
      context(() => t),
      state,
    );
    expect(ran).not.toBeInstanceOf(Promise);
    expect(ran).toMatchObject({
      result: { kind: 'continue', code: 'to:x', next: 'x' },
      entry: { stage: 'route', kind: 'branch', outcome: 'continue', at: 10, ms: 2, cost: 0 },
    });
  });

  it('turns a synchronous throw and an asynchronous rejection alike into a fail', async () => {
    const boom = (): never => {
      throw syError('SY_ERR_STAGE_FAILED', 'boom');
    };
    const sync: Stage = { id: 's', kind: 'transform', run: boom };
    const late: Stage = { id: 'a', kind: 'cache', run: () => Promise.resolve().then(boom) };
    const ctx = context(() => 0);
    const a = runStage(sync, ctx, state);
    const b = await runStage(late, ctx, state);
    for (const ran of [a, b]) {
      expect(ran).not.toBeInstanceOf(Promise);
      if (ran instanceof Promise || ran.result === undefined) throw new Error('no result');
      expect(ran.result.kind).toBe('fail');
      expect(ran.result.code).toBe('STAGE_FAILED');
      expect(ran.result.reason).toMatch(/^threw: .*boom$/);
      expect(ran.entry.outcome).toBe('fail');
    }
  });

  it('does not start a stage once the deadline has passed', () => {
    let started = false;
    const stage: Stage = {
      id: 'late',
      kind: 'respond',
      run: () => {
        started = true;
        return result.respond('respond', 'answered', null);
      },
    };
    const ran = runStage(
      stage,
      context(() => 1_000, 1_000),
      state,
    );
    expect(started).toBe(false);
    expect(ran).toMatchObject({ result: undefined, error: { code: 'SY_ERR_DEADLINE_EXCEEDED' } });
  });
});
