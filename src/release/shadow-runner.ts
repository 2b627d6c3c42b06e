import type { ShadowInvoke, SlotOutcome, SlotOutput } from '../contracts/slot-resolver.js';
import type { Clock } from '../core/clock.js';
import { events, publish } from '../core/events.js';
import type { CounterBuffer } from './counter-buffer.js';
import { RequestAbortController } from '../core/abort.js';
import { loopLag } from '../core/loop-lag.js';

export interface ShadowOptions {
  /** Shadow calls in flight at most; beyond it copies are shed (shadow load goes first). */
  readonly maxInFlight: number;
  readonly timeoutMs: number;
  /** True while the gateway is under pressure (admission surge/emergency): shed every copy. */
  readonly shed?: () => boolean;
  /**
   * Shed while the event loop lags more than this (ms, from the shared probe in core/loop-lag), so
   * shadow work never queues in front of user requests. 0 disables the check.
   */
  readonly maxLagMs?: number;
}

export interface ShadowAgreement {
  readonly agree: boolean | undefined;
  readonly scoreDelta: number | undefined;
  readonly cosine: number | undefined;
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number | undefined {
  if (a.length !== b.length || a.length === 0) return undefined;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na === 0 || nb === 0 ? undefined : dot / Math.sqrt(na * nb);
}

export function compareOutputs(
  primary: SlotOutput | undefined,
  shadow: SlotOutput,
): ShadowAgreement {
  return {
    agree:
      primary?.label !== undefined && shadow.label !== undefined
        ? primary.label === shadow.label
        : undefined,
    scoreDelta:
      primary?.score !== undefined && shadow.score !== undefined
        ? shadow.score - primary.score
        : undefined,
    cosine:
      primary?.vector !== undefined && shadow.vector !== undefined
        ? cosine(primary.vector, shadow.vector)
        : undefined,
  };
}

/**
 * Mirrors requests to shadow targets after the user's answer: scheduled with `setImmediate`
 * (never on the caller's stack), bounded in flight, with a timeout, and shed first under
 * pressure. Results only ever feed statistics; nothing flows back to the response.
 */
export class ShadowRunner {
  private inFlight = 0;
  /** Releases the shared loop probe (held only when `maxLagMs` is set). */
  private readonly releaseLag: (() => void) | undefined;
  shedCount = 0;

  constructor(
    private readonly opts: ShadowOptions,
    private readonly clock: Clock,
    private readonly counters: CounterBuffer,
    private readonly onAgreement: (experiment: string, agree: boolean) => void,
  ) {
    this.releaseLag = (opts.maxLagMs ?? 0) > 0 ? loopLag.acquire() : undefined;
  }

  close(): void {
    this.releaseLag?.();
  }

  running(): number {
    return this.inFlight;
  }

  mirror(outcome: SlotOutcome, invoke: ShadowInvoke): void {
    const targets = outcome.assignment.shadow;
    if (targets === undefined) return;
    for (const target of targets) {
      const exp = target.experiment;
      if (
        this.inFlight >= this.opts.maxInFlight ||
        this.opts.shed?.() === true ||
        (this.releaseLag !== undefined && loopLag.lagMs() > this.opts.maxLagMs!)
      ) {
        this.shedCount++;
        this.counters.add(exp, 'shadow', '', 'shadow_shed');
        publish(events.shadowCopy, { experiment: exp, result: 'shed' });
        continue;
      }
      this.inFlight++;
      setImmediate(() => {
        const ac = new RequestAbortController();
        const timer = setTimeout(() => ac.abort(), this.opts.timeoutMs);
        const t0 = this.clock.now();
        let call: Promise<SlotOutput>;
        try {
          call = invoke(target, ac.signal);
        } catch (err) {
          call = Promise.reject(err instanceof Error ? err : new Error(String(err)));
        }
        call
          .then((out) => {
            const ms = this.clock.now() - t0;
            const c = compareOutputs(outcome.output, out);
            this.counters.add(exp, 'shadow', '', 'shadow_latency_ms', ms);
            this.counters.add(exp, 'shadow', '', 'primary_latency_ms', outcome.ms);
            if (c.agree !== undefined) {
              this.counters.add(exp, 'shadow', '', 'shadow_agree', c.agree ? 1 : 0);
              this.onAgreement(exp, c.agree);
            }
            publish(events.shadowCopy, {
              experiment: exp,
              result: c.agree === undefined ? 'compared' : c.agree ? 'agree' : 'disagree',
              ms,
            });
            if (c.scoreDelta !== undefined)
              this.counters.add(exp, 'shadow', '', 'shadow_score_delta', c.scoreDelta);
            if (c.cosine !== undefined)
              this.counters.add(exp, 'shadow', '', 'shadow_cosine', c.cosine);
          })
          .catch(() => {
            this.counters.add(exp, 'shadow', '', 'shadow_errors');
            publish(events.shadowCopy, { experiment: exp, result: 'error' });
          })
          .finally(() => {
            clearTimeout(timer);
            this.inFlight--;
          });
      });
    }
  }
}
