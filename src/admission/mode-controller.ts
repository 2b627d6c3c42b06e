import type { AuditSink } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { events, publish } from '../core/events.js';
import {
  MODE_LEVEL,
  NORMAL_SWITCHES,
  type ModeName,
  type ModeSpec,
  type ModeSwitches,
  type ModesSpec,
  type ModeThresholds,
} from './settings.js';

export interface ModeSignals {
  /** Typical wait in the concurrency queues, ms (the worst gate's). */
  readonly queueDelayMs: number;
  /** In flight and queued over the concurrency limit (the worst gate's); > 1 means queueing. */
  readonly saturation: number;
  /** Share of finished requests that failed upstream. */
  readonly errorRate: number;
  /**
   * Share of calls the gates refused over the sample (queue full, would not start in time, shed
   * curve): overload that gates absorb by shedding early shows here even when queues stay short.
   */
  readonly shedRate: number;
}

export interface ModeState {
  readonly mode: ModeName;
  /** A short code: `start`, `queue_delay`, `saturation`, `error_rate`, `recovered`, `forced`, `released`. */
  readonly reason: string;
  /** What happened, in words. */
  readonly detail: string;
  /** Wall-clock ms when the mode was entered. */
  readonly since: number;
  readonly forced: boolean;
  /** Wall-clock ms when a forced mode ends by itself, if it does. */
  readonly forcedUntil: number | undefined;
  readonly signals: ModeSignals;
}

const SIGNALS: readonly [keyof ModeThresholds, keyof ModeSignals, string][] = [
  ['queue_delay_ms', 'queueDelayMs', 'queue_delay'],
  ['saturation', 'saturation', 'saturation'],
  ['error_rate', 'errorRate', 'error_rate'],
  ['shed_rate', 'shedRate', 'shed_rate'],
];

/** An operator's override as the workers of one gateway hand it to each other (#17). */
export interface SharedOverride {
  readonly mode: ModeName | 'auto';
  readonly reason: string;
  readonly actor: string;
  /** Wall-clock ms when it ends by itself: the same instant in every worker. */
  readonly forcedUntil?: number;
  /** Wall-clock ms when it was made: the `since` every worker shows. */
  readonly at: number;
}

const ZERO: ModeSignals = { queueDelayMs: 0, saturation: 0, errorRate: 0, shedRate: 0 };

/** The first signal at or over its threshold, as [reason, detail]; undefined when none is. */
function breach(t: ModeThresholds, s: ModeSignals): [string, string] | undefined {
  for (const [th, sig, reason] of SIGNALS) {
    const limit = t[th];
    if (limit !== undefined && s[sig] >= limit)
      return [reason, `${th} ${round(s[sig])} >= ${limit}`];
  }
  return undefined;
}

function under(t: ModeThresholds, s: ModeSignals): boolean {
  return SIGNALS.every(([th, sig]) => t[th] === undefined || s[sig] < t[th]);
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

/**
 * Normal, surge and emergency: which declared switches are on. The mode follows the signals
 * with hysteresis: a mode is entered only after its `enter` thresholds held for `enter_samples`
 * samples in a row, left only after every `exit` threshold (set lower) held for `exit_samples`
 * samples and `min_hold_ms` passed, one level at a time. An operator can force a mode; while
 * forced the signals are still sampled but switch nothing. Every change is logged, published
 * (metrics) and audited.
 */
export class ModeController {
  private state: ModeState;
  private upStreak = 0;
  private upWanted: ModeName = 'normal';
  private downStreak = 0;
  private lastReason: [string, string] = ['start', ''];
  private share: ((o: SharedOverride) => Promise<void>) | undefined;

  constructor(
    private spec: ModesSpec,
    private readonly clock: Clock,
    private readonly audit: AuditSink,
    private readonly logger: Logger,
  ) {
    this.state = {
      mode: 'normal',
      reason: 'start',
      detail: 'the gateway started',
      since: clock.wall(),
      forced: false,
      forcedUntil: undefined,
      signals: ZERO,
    };
    publish(events.admissionMode, {
      mode: 'normal',
      previous: 'normal',
      reason: 'start',
      forced: false,
    });
  }

  configure(spec: ModesSpec): void {
    this.spec = spec;
  }

  current(): ModeState {
    return this.state;
  }

  switches(): ModeSwitches {
    const m = this.state.mode;
    return m === 'normal' ? NORMAL_SWITCHES : this.spec[m].switches;
  }

  /** One sample of the signals (every `modes.sample_ms`). */
  observe(signals: ModeSignals): void {
    const now = this.clock.wall();
    this.state = { ...this.state, signals };
    if (this.state.forced) {
      if (this.state.forcedUntil !== undefined && now >= this.state.forcedUntil) {
        this.change(
          this.state.mode,
          'released',
          'the forced mode expired',
          false,
          undefined,
          'system',
        );
      }
      return;
    }
    const level = MODE_LEVEL[this.state.mode];
    // Up: the highest mode whose enter thresholds the signals reach, held for enter_samples.
    let wanted: ModeName = this.state.mode;
    let why: [string, string] | undefined;
    for (const m of ['emergency', 'surge'] as const) {
      if (MODE_LEVEL[m] <= level) break;
      why = breach(this.spec[m].enter, signals);
      if (why !== undefined) {
        wanted = m;
        break;
      }
    }
    if (wanted !== this.state.mode && why !== undefined) {
      // A streak counts toward the lowest mode wanted throughout it.
      this.upStreak++;
      if (this.upStreak === 1 || MODE_LEVEL[wanted] < MODE_LEVEL[this.upWanted])
        this.upWanted = wanted;
      this.lastReason = why;
      this.downStreak = 0;
      if (this.upStreak >= this.spec.enter_samples) {
        this.upStreak = 0;
        this.change(
          this.upWanted,
          this.lastReason[0],
          this.lastReason[1],
          false,
          undefined,
          'system',
        );
      }
      return;
    }
    this.upStreak = 0;
    if (this.state.mode === 'normal') return;
    const spec: ModeSpec = this.spec[this.state.mode];
    if (!under(spec.exit, signals)) {
      this.downStreak = 0;
      return;
    }
    this.downStreak++;
    if (
      this.downStreak >= this.spec.exit_samples &&
      now - this.state.since >= this.spec.min_hold_ms
    ) {
      this.downStreak = 0;
      const down: ModeName = this.state.mode === 'emergency' ? 'surge' : 'normal';
      this.change(
        down,
        'recovered',
        `signals under the ${this.state.mode} exit thresholds`,
        false,
        undefined,
        'system',
      );
    }
  }

  /**
   * How an override reaches the other workers of this gateway (`serve --workers N`, #17); each
   * worker's automatic mode follows its own gates and signals.
   */
  shareOverrides(share: (o: SharedOverride) => Promise<void>): void {
    this.share = share;
  }

  /** An operator's override, in force in every worker of this gateway once it resolves. */
  async override(
    mode: ModeName | 'auto',
    actor: string,
    reason: string,
    ttlMs?: number,
  ): Promise<ModeState> {
    const state = this.force(mode, actor, reason, ttlMs);
    await this.share?.({
      mode,
      reason,
      actor,
      at: state.since,
      ...(state.forcedUntil === undefined ? {} : { forcedUntil: state.forcedUntil }),
    });
    return state;
  }

  /** An override another worker made (and audited): applied here as it was there. */
  applyShared(o: SharedOverride): void {
    if (o.mode === 'auto') {
      this.change(
        this.state.mode,
        'released',
        `back to automatic: ${o.reason}`,
        false,
        undefined,
        o.actor,
        false,
      );
    } else {
      if (o.forcedUntil !== undefined && o.forcedUntil <= this.clock.wall()) return;
      this.change(o.mode, 'forced', o.reason, true, o.forcedUntil, o.actor, false, o.at);
    }
    this.upStreak = 0;
    this.downStreak = 0;
  }

  /** An operator's override; `auto` hands the mode back to the signals. */
  force(mode: ModeName | 'auto', actor: string, reason: string, ttlMs?: number): ModeState {
    if (mode === 'auto') {
      this.change(
        this.state.mode,
        'released',
        `back to automatic: ${reason}`,
        false,
        undefined,
        actor,
      );
    } else {
      const until = ttlMs === undefined ? undefined : this.clock.wall() + ttlMs;
      this.change(mode, 'forced', reason, true, until, actor);
    }
    this.upStreak = 0;
    this.downStreak = 0;
    return this.state;
  }

  private change(
    mode: ModeName,
    reason: string,
    detail: string,
    forced: boolean,
    forcedUntil: number | undefined,
    actor: string,
    audited = true,
    at?: number,
  ): void {
    const previous = this.state.mode;
    const before = modeView(this.state.mode, this.state.forced, this.state.forcedUntil);
    this.state = {
      mode,
      reason,
      detail,
      since: at ?? (previous === mode ? this.state.since : this.clock.wall()),
      forced,
      forcedUntil,
      signals: this.state.signals,
    };
    this.logger.warn(
      { mode, previous, reason, detail, forced, actor },
      previous === mode ? `admission mode stays ${mode}` : `admission mode ${previous} -> ${mode}`,
    );
    publish(events.admissionMode, { mode, previous, reason, forced });
    if (!audited) return;
    this.audit.record({
      at: this.clock.wall(),
      actor,
      action: actor === 'system' ? 'mode.auto' : 'mode.override',
      target: 'admission.mode',
      reason: detail,
      before,
      after: modeView(mode, forced, forcedUntil),
      detail: {
        from: previous,
        to: mode,
        forced,
        ...(forcedUntil === undefined ? {} : { until: forcedUntil }),
      },
    });
  }
}

/** A mode as the audit trail shows it, before and after a change. */
const modeView = (mode: ModeName, forced: boolean, until: number | undefined) => ({
  mode,
  forced,
  forced_until: until === undefined ? null : new Date(until).toISOString(),
});
