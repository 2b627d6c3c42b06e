import { describe, expect, it } from 'vitest';
import type { Clock } from '../core/clock.js';
import { ModeController, type ModeSignals } from './mode-controller.js';
import { TEST_MODES, ListAudit, silentLogger } from '../../test/support/admission-settings.js';

class ManualClock implements Clock {
  t = Date.UTC(2030, 0, 1);
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.t;
  }
}

const delay = (ms: number): ModeSignals => ({
  queueDelayMs: ms,
  saturation: 0,
  errorRate: 0,
  shedRate: 0,
});

function setup() {
  const clock = new ManualClock();
  const audit = new ListAudit();
  const modes = new ModeController(TEST_MODES, clock, audit, silentLogger);
  const tick = (s: ModeSignals, n = 1): void => {
    for (let i = 0; i < n; i++) {
      clock.t += 1_000;
      modes.observe(s);
    }
  };
  return { clock, audit, modes, tick };
}

describe('ModeController', () => {
  it('enters surge on the gates’ shed rate when a mode sets shed_rate, and not without it', () => {
    const clock = new ManualClock();
    const withRate = new ModeController(
      { ...TEST_MODES, surge: { ...TEST_MODES.surge, enter: { shed_rate: 0.2 } } },
      clock,
      new ListAudit(),
      silentLogger,
    );
    const without = new ModeController(TEST_MODES, clock, new ListAudit(), silentLogger);
    const shedding: ModeSignals = { queueDelayMs: 1, saturation: 1, errorRate: 0, shedRate: 0.6 };
    for (let i = 0; i < 3; i++) {
      clock.t += 1_000;
      withRate.observe(shedding);
      without.observe(shedding);
    }
    expect(withRate.current()).toMatchObject({ mode: 'surge', reason: 'shed_rate' });
    expect(without.current().mode).toBe('normal');
  });

  it('enters surge only after the enter threshold held for enter_samples samples in a row', () => {
    const { modes, tick } = setup();
    tick(delay(80), 2);
    tick(delay(5)); // the streak breaks
    tick(delay(80), 2);
    expect(modes.current().mode).toBe('normal');
    tick(delay(80));
    expect(modes.current()).toMatchObject({ mode: 'surge', reason: 'queue_delay', forced: false });
    expect(modes.switches().shed_classes).toEqual(['batch']);
  });

  it('does not flap: a signal between the exit and enter thresholds keeps the mode', () => {
    const { modes, tick } = setup();
    tick(delay(80), 3);
    expect(modes.current().mode).toBe('surge');
    // 30 ms is under surge's enter (50) but over its exit (10): no change either way.
    tick(delay(30), 100);
    expect(modes.current().mode).toBe('surge');
    tick(delay(5), 4);
    expect(modes.current().mode).toBe('surge');
    tick(delay(5)); // 5 samples under exit, and min_hold_ms (10 s) long passed
    expect(modes.current()).toMatchObject({ mode: 'normal', reason: 'recovered' });
  });

  it('stays in a mode for at least min_hold_ms even when the signals recover at once', () => {
    const { modes, tick } = setup();
    tick(delay(80), 3);
    tick(delay(0), 5); // 5 s after entering: exit_samples met, hold not
    expect(modes.current().mode).toBe('surge');
    tick(delay(0), 5);
    expect(modes.current().mode).toBe('normal');
  });

  it('steps down one level at a time from emergency', () => {
    const { modes, tick } = setup();
    tick(delay(500), 3);
    expect(modes.current().mode).toBe('emergency');
    tick(delay(0), 10);
    expect(modes.current().mode).toBe('surge');
    tick(delay(0), 10);
    expect(modes.current().mode).toBe('normal');
  });

  it('keeps a forced mode whatever the signals say, and audits the override with its actor', async () => {
    const { modes, tick, audit } = setup();
    modes.force('emergency', 'key:abcd', 'promo launch');
    tick(delay(0), 50);
    expect(modes.current()).toMatchObject({ mode: 'emergency', forced: true, reason: 'forced' });
    modes.force('auto', 'key:abcd', 'promo over');
    expect(modes.current().forced).toBe(false);
    const entries = await audit.list({ action: 'mode.' });
    expect(entries.map((e) => [e.actor, e.action, e.reason])).toEqual([
      ['key:abcd', 'mode.override', 'back to automatic: promo over'],
      ['key:abcd', 'mode.override', 'promo launch'],
    ]);
    expect(entries[1]!.detail).toMatchObject({ from: 'normal', to: 'emergency', forced: true });
  });

  it('ends a forced mode with a time limit by itself', () => {
    const { modes, tick } = setup();
    modes.force('surge', 'key:abcd', 'for a minute', 60_000);
    tick(delay(0), 59);
    expect(modes.current().forced).toBe(true);
    tick(delay(0), 1);
    expect(modes.current()).toMatchObject({ forced: false, reason: 'released' });
  });

  it('audits automatic switches as the system', async () => {
    const { tick, audit } = setup();
    tick(delay(80), 3);
    const [entry] = await audit.list({ action: 'mode.auto' });
    expect(entry).toMatchObject({ actor: 'system', target: 'admission.mode' });
    expect(entry!.reason).toContain('queue_delay_ms');
  });
});
