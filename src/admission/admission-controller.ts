import type { AuditSink } from '../contracts/audit.js';
import type { QuotaLimiter, QuotaReceipt, QuotaWindow } from '../contracts/limiter.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import type { Random } from '../core/random.js';
import { resolveClass } from './classes.js';
import { ConcurrencyGate, type GateObserver, type Permit } from './concurrency-gate.js';
import { ModeController, type ModeSignals } from './mode-controller.js';
import { actualFor, quotaCharges, type Estimate, type QuotaKind } from './quotas.js';
import type {
  AdmissionSpec,
  ClassSpec,
  ModesSpec,
  ModeSwitches,
  TenantAdmission,
} from './settings.js';

export interface AdmissionSettings {
  readonly classes: Readonly<Record<string, ClassSpec>>;
  readonly admission: AdmissionSpec;
  readonly modes: ModesSpec;
  readonly tenants: Readonly<Record<string, TenantAdmission>>;
}

export interface AdmissionDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly limiter: QuotaLimiter;
  readonly audit: AuditSink;
  readonly logger: Logger;
}

export interface AdmitRequest {
  readonly tenant: string;
  readonly keyId: string;
  readonly trafficClass: string;
  /** The concurrency gate to pass (the model's name); none for models that queue themselves. */
  readonly gate: string | undefined;
  readonly estimate: Estimate;
  /** Monotonic ms. */
  readonly deadlineAt: number;
  readonly budgetMs: number;
  readonly signal: AbortSignal;
}

/**
 * An admitted request's hold on its quotas and its concurrency slot. `settle` corrects the token
 * and spend reservations to the actual usage; `release` frees the slot. Both are idempotent and
 * never throw; call `release` when the answer is complete (for a stream: when it ends).
 */
export interface Ticket {
  readonly trafficClass: string;
  settle(actual: Estimate): void;
  release(outcome: { readonly ok: boolean; readonly dropped?: boolean }): void;
}

const NO_PERMIT: Permit = { release: () => undefined };

/**
 * Admission control, in the order that makes refusing cheapest: the mode's shed classes, the
 * shed curve (a class is shed with a probability that rises with the model's queue pressure,
 * lowest priority first), then quotas (one atomic reserve over the tenant's and the key's
 * counters), then the model's adaptive concurrency limit and priority queue.
 */
export class AdmissionController {
  private settings: AdmissionSettings;
  private readonly gates = new Map<string, ConcurrencyGate>();
  readonly modes: ModeController;
  private timer: NodeJS.Timeout | undefined;
  private readonly observer: GateObserver = {
    queued: (req) =>
      publish(events.admission, {
        trafficClass: req.trafficClass,
        outcome: 'queued',
        reason: 'limit',
      }),
    refused: (req, why) =>
      publish(events.admission, {
        trafficClass: req.trafficClass,
        outcome: why === 'deadline' || why === 'cancelled' ? 'expired' : 'shed',
        reason: why,
      }),
  };

  constructor(
    settings: AdmissionSettings,
    private readonly deps: AdmissionDeps,
  ) {
    this.settings = settings;
    this.modes = new ModeController(settings.modes, deps.clock, deps.audit, deps.logger);
    this.startSampling();
  }

  get clock(): Clock {
    return this.deps.clock;
  }

  /** A new config: classes, quotas and modes apply to the next request; gates keep their limits. */
  configure(settings: AdmissionSettings): void {
    const resample = settings.modes.sample_ms !== this.settings.modes.sample_ms;
    this.settings = settings;
    this.modes.configure(settings.modes);
    for (const g of this.gates.values())
      g.configure(settings.admission.concurrency, settings.admission.shed_retry_after_s);
    if (resample) this.startSampling();
  }

  get enabled(): boolean {
    return this.settings.admission.enabled;
  }

  classify(tenant: string, requested: string | undefined, configured: string | undefined): string {
    const s = this.settings;
    return resolveClass(
      s.classes,
      s.tenants[tenant],
      requested,
      configured,
      s.admission.default_class,
    );
  }

  classSpec(name: string): ClassSpec | undefined {
    return this.settings.classes[name];
  }

  /** Scheduling priority of a class (lower runs first); unknown classes sort after all others. */
  priorityOf(name: string): number {
    return this.settings.classes[name]?.priority ?? Number.MAX_SAFE_INTEGER;
  }

  switches(): ModeSwitches {
    return this.modes.switches();
  }

  settingsView(): AdmissionSettings {
    return this.settings;
  }

  async admit(req: AdmitRequest): Promise<Ticket> {
    const s = this.settings;
    const cls = s.classes[req.trafficClass];
    if (!s.admission.enabled || cls === undefined) {
      return { trafficClass: req.trafficClass, settle: () => undefined, release: () => undefined };
    }
    const retryAfterS = s.admission.shed_retry_after_s;
    const switches = this.modes.switches();
    if (switches.shed_classes.includes(req.trafficClass)) {
      this.refused(req.trafficClass, 'shed', 'mode');
      throw syError(
        'SY_ERR_SHED',
        `class ${req.trafficClass} is shed in ${this.modes.current().mode} mode`,
        { retryAfterS },
      );
    }
    const gate = req.gate === undefined ? undefined : this.gate(req.gate);
    const pressure = (gate?.pressure() ?? 0) + switches.shed_boost;
    if (this.deps.random() < shedProbability(pressure, cls)) {
      this.refused(req.trafficClass, 'shed', 'curve');
      throw syError('SY_ERR_SHED', `${req.gate ?? 'the gateway'} is overloaded`, { retryAfterS });
    }

    const charges = quotaCharges(req.tenant, s.tenants[req.tenant], req.keyId, req.estimate);
    let receipts: readonly QuotaReceipt[] = [];
    const kinds: QuotaKind[] = charges.map((c) => c.kind);
    if (charges.length > 0) {
      const d = await this.deps.limiter.reserve(charges);
      if (!d.allowed) {
        const kind = charges.find((c) => c.key === d.refused)?.kind ?? 'requests';
        const code = kind === 'requests' ? 'SY_ERR_RATE_LIMITED' : 'SY_ERR_QUOTA_EXCEEDED';
        this.refused(
          req.trafficClass,
          code === 'SY_ERR_RATE_LIMITED' ? 'rate_limited' : 'quota_exceeded',
          kind,
        );
        throw syError(
          code,
          `${kind} of ${d.refused?.startsWith('k:') ? 'the key' : 'the tenant'}`,
          {
            retryAfterS: Math.max(1, Math.ceil(d.retryAfterMs / 1000)),
          },
        );
      }
      receipts = d.receipts;
    }

    let permit: Permit = NO_PERMIT;
    try {
      if (gate !== undefined)
        permit = await gate.acquire({
          trafficClass: req.trafficClass,
          priority: cls.priority,
          deadlineAt: req.deadlineAt,
          budgetMs: req.budgetMs,
          maxWaitMs: cls.queue_timeout_ms,
          signal: req.signal,
        });
    } catch (err) {
      // Refused after the quotas were taken: give them back.
      for (const r of receipts) void this.deps.limiter.settle(r, 0).catch(() => undefined);
      throw err;
    }
    publish(events.admission, { trafficClass: req.trafficClass, outcome: 'admitted', reason: '' });
    return this.ticket(req.trafficClass, permit, receipts, kinds);
  }

  /** Samples the gates' signals and feeds the mode controller (every `modes.sample_ms`). */
  sample(): ModeSignals {
    let signals: ModeSignals = { queueDelayMs: 0, saturation: 0, errorRate: 0 };
    for (const g of this.gates.values()) {
      const s = g.takeSample();
      signals = {
        queueDelayMs: Math.max(signals.queueDelayMs, s.queueDelayMs),
        saturation: Math.max(signals.saturation, s.saturation),
        errorRate: Math.max(signals.errorRate, s.errorRate),
      };
    }
    this.modes.observe(signals);
    return signals;
  }

  /** What a quota counter holds now (for the admin API and tests). */
  quotaUsage(key: string, window: QuotaWindow): Promise<number> {
    return this.deps.limiter.usage(key, window);
  }

  gateStats(): Record<string, ReturnType<ConcurrencyGate['stats']>> {
    const out: Record<string, ReturnType<ConcurrencyGate['stats']>> = {};
    for (const [name, g] of this.gates) out[name] = g.stats();
    return out;
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private gate(name: string): ConcurrencyGate {
    let g = this.gates.get(name);
    if (g === undefined) {
      const a = this.settings.admission;
      g = new ConcurrencyGate(
        name,
        a.concurrency,
        this.deps.clock,
        this.observer,
        a.shed_retry_after_s,
      );
      this.gates.set(name, g);
    }
    return g;
  }

  private ticket(
    trafficClass: string,
    permit: Permit,
    receipts: readonly QuotaReceipt[],
    kinds: readonly QuotaKind[],
  ): Ticket {
    let settled = false;
    const limiter = this.deps.limiter;
    const logger = this.deps.logger;
    return {
      trafficClass,
      settle: (actual) => {
        if (settled) return;
        settled = true;
        receipts.forEach((r, i) => {
          const target = actualFor(kinds[i]!, r, actual);
          if (target === r.amount) return;
          limiter.settle(r, target).catch((err: unknown) => {
            logger.debug({ err: String(err) }, 'quota settle failed');
          });
        });
      },
      release: (outcome) => permit.release(outcome),
    };
  }

  private refused(
    trafficClass: string,
    outcome: 'shed' | 'rate_limited' | 'quota_exceeded',
    reason: string,
  ): void {
    publish(events.admission, { trafficClass, outcome, reason });
  }

  private startSampling(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = setInterval(() => this.sample(), this.settings.modes.sample_ms);
    this.timer.unref();
  }
}

/** The shed curve: 0 below `shed_from`, rising linearly to 1 at `shed_full`. */
export function shedProbability(pressure: number, cls: ClassSpec): number {
  if (pressure <= cls.shed_from) return 0;
  if (pressure >= cls.shed_full) return 1;
  return (pressure - cls.shed_from) / (cls.shed_full - cls.shed_from);
}
