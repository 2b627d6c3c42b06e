import type { AuditSink } from '../contracts/audit.js';
import type { BackendStream, Interceptor } from '../contracts/backend.js';
import type { QuotaLimiter, QuotaReceipt, QuotaWindow } from '../contracts/limiter.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { syError, toSwitchyardError } from '../core/errors.js';
import { loopLag } from '../core/loop-lag.js';
import { events, publish } from '../core/events.js';
import type { Random } from '../core/random.js';
import { resolveClass } from './classes.js';
import { ConcurrencyGate, type GateObserver, type Permit } from './concurrency-gate.js';
import { ModeController, type ModeSignals } from './mode-controller.js';
import { actualFor, quotaCharges, type Estimate, type QuotaKind } from './quotas.js';
import type {
  AdmissionSpec,
  ClassSpec,
  ConcurrencySpec,
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

/** A client request asking to be let in: who, at which class, expecting to use what. */
export interface BeginRequest {
  readonly tenant: string;
  readonly keyId: string;
  readonly trafficClass: string;
  /** The request's expected usage, reserved against token and spend quotas. */
  readonly estimate: Estimate;
  /** A request that calls no model (a data route): only request-rate quotas apply. */
  readonly requestsOnly?: boolean;
}

/**
 * An admitted request's hold on its quotas. Model calls made for it `charge` what they really
 * used (a journey makes several); `settle` corrects the reservations to the sum, once. Both never
 * throw; `settle` is idempotent and is called when the request's life ends, whatever ended it.
 */
export interface Ticket {
  readonly trafficClass: string;
  charge(actual: Estimate): void;
  /** Settles to what was charged, or to `actual` when given (replacing the charges). */
  settle(actual?: Estimate): void;
}

/** One call passing a backend's concurrency gate: its class, budget and signal. */
export interface GateCall {
  readonly trafficClass: string;
  /** Monotonic ms. */
  readonly deadlineAt: number;
  readonly signal: AbortSignal;
}

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
    this.stopLag = loopLag.acquire();
    this.startSampling();
  }

  private readonly stopLag: () => void;

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

  /**
   * Lets a client request in, or refuses it: the mode's shed classes, the gateway's own CPU
   * overload on the class's shed curve, then its quotas (one atomic reserve over the tenant's and
   * the key's counters). Backends' concurrency gates are passed per model call
   * (`gateInterceptor`), so every call a request makes (a journey makes several) is gated.
   */
  async begin(req: BeginRequest): Promise<Ticket> {
    loopLag.wake();
    const s = this.settings;
    const cls = s.classes[req.trafficClass];
    if (!s.admission.enabled || cls === undefined) return openTicket(req.trafficClass);
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
    const cpu = this.cpuPressure();
    if (cpu > 0 && this.deps.random() < shedProbability(cpu, cls)) {
      this.refused(req.trafficClass, 'shed', 'cpu');
      throw syError(
        'SY_ERR_SHED',
        `the gateway is overloaded (event loop ${Math.round(loopLag.sustainedMs())} ms late)`,
        { retryAfterS },
      );
    }

    const charges = quotaCharges(
      req.tenant,
      s.tenants[req.tenant],
      req.keyId,
      req.estimate,
      req.requestsOnly === true,
    );
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
    publish(events.admission, { trafficClass: req.trafficClass, outcome: 'admitted', reason: '' });
    return this.ticket(req.trafficClass, receipts, kinds);
  }

  /**
   * A permit of a backend's concurrency gate for one call: shed at once on the class's curve
   * when the gate (plus the mode's boost and the gateway's CPU pressure) is under pressure,
   * else a slot now or a wait in the gate's priority queue. Refusals are 503 SY_ERR_SHED.
   * (The gateway's own CPU overload is shed once per request, at `begin`.)
   */
  async acquireGate(name: string, call: GateCall, spec?: ConcurrencySpec): Promise<Permit> {
    return this.gateNow(name, call, spec) ?? this.gateWait(name, call, spec);
  }

  /**
   * The synchronous part of passing a gate: NO_PERMIT when admission is off, a shed (thrown),
   * a permit when a slot is free, or undefined when the call must wait (`gateWait`).
   */
  private gateNow(name: string, call: GateCall, spec?: ConcurrencySpec): Permit | undefined {
    const s = this.settings;
    const cls = s.classes[call.trafficClass];
    if (!s.admission.enabled || cls === undefined) return NO_PERMIT;
    const gate = this.gate(name, spec);
    const pressure = gate.pressure() + this.modes.switches().shed_boost;
    if (pressure > 0 && this.deps.random() < shedProbability(pressure, cls)) {
      gate.noteShed();
      this.refused(call.trafficClass, 'shed', 'curve');
      throw syError('SY_ERR_SHED', `${name} is overloaded`, {
        retryAfterS: s.admission.shed_retry_after_s,
      });
    }
    return gate.tryAcquire(call);
  }

  private gateWait(name: string, call: GateCall, spec?: ConcurrencySpec): Promise<Permit> {
    const s = this.settings;
    const cls = s.classes[call.trafficClass]!;
    const gate = this.gate(name, spec);
    const now = this.deps.clock.now();
    return gate.acquire({
      trafficClass: call.trafficClass,
      priority: cls.priority,
      deadlineAt: call.deadlineAt,
      budgetMs: Math.max(0, call.deadlineAt - now),
      maxWaitMs: cls.queue_timeout_ms,
      signal: call.signal,
    });
  }

  /**
   * The gate of one backend as an interceptor, for every model (HTTP upstreams and in-process
   * models alike): each attempt holds a permit while it runs; a stream holds it until it ends.
   * The limit learns from the attempt's time minus how late the event loop runs (the answer's
   * callback waited that long behind other work), so the gateway's own CPU queueing is not
   * blamed on the upstream (the front door sheds that).
   */
  gateInterceptor(name: string, spec?: () => ConcurrencySpec | undefined): Interceptor {
    const clock = this.deps.clock;
    const outcomeOf = (err: unknown): { ok: boolean; dropped: boolean } => {
      const e = toSwitchyardError(err);
      return {
        ok: e.status < 500 || e.code === 'SY_ERR_CLIENT_CLOSED',
        dropped: DROPS.has(e.code),
      };
    };
    return (next) => ({
      call: async (request, ctx) => {
        const want = spec?.();
        const permit = this.gateNow(name, ctx, want) ?? (await this.gateWait(name, ctx, want));
        const t0 = clock.now();
        let outcome = { ok: true, dropped: false };
        try {
          return await next.call(request, ctx);
        } catch (err) {
          outcome = outcomeOf(err);
          throw err;
        } finally {
          const rttMs = upstreamMs(clock.now() - t0, loopLag.lagMs());
          permit.release(
            rttMs === undefined
              ? { ok: outcome.ok, dropped: outcome.dropped, latency: false }
              : { ok: outcome.ok, dropped: outcome.dropped, rttMs },
          );
        }
      },
      stream: async (request, ctx) => {
        const permit = await this.acquireGate(name, ctx, spec?.());
        let stream: BackendStream;
        try {
          stream = await next.stream(request, ctx);
        } catch (err) {
          permit.release(outcomeOf(err));
          throw err;
        }
        // The slot is held until the stream ends. Its time to first event is no latency for the
        // limit to learn: a burst of stream starts queues on this loop before any byte leaves
        // (8 streams at once pinned the limit below 8 and shed them, bench:stream). The limit
        // learns streams from drops and demand (PermitOutcome.latency).
        let done = false;
        const end = (outcome: { ok: boolean; dropped: boolean }): void => {
          if (done) return;
          done = true;
          permit.release({ ok: outcome.ok, dropped: outcome.dropped, latency: false });
        };
        return {
          ...stream,
          usage: () => stream.usage(),
          chunks: releaseAtEnd(stream.chunks, end, outcomeOf),
          cancel: () => {
            stream.cancel();
            end({ ok: true, dropped: false });
          },
        };
      },
    });
  }

  /** Samples the gates' signals and feeds the mode controller (every `modes.sample_ms`). */
  sample(): ModeSignals {
    let signals: ModeSignals = { queueDelayMs: 0, saturation: 0, errorRate: 0, shedRate: 0 };
    for (const g of this.gates.values()) {
      const s = g.takeSample();
      signals = {
        queueDelayMs: Math.max(signals.queueDelayMs, s.queueDelayMs),
        saturation: Math.max(signals.saturation, s.saturation),
        errorRate: Math.max(signals.errorRate, s.errorRate),
        shedRate: Math.max(signals.shedRate, s.shedRate),
      };
    }
    this.modes.observe(signals);
    return signals;
  }

  /** What a quota counter holds now (for the admin API and tests). */
  quotaUsage(key: string, window: QuotaWindow): Promise<number> {
    return this.deps.limiter.usage(key, window);
  }

  /**
   * Free slots of a model's concurrency gate now (its limit less the calls in flight; none while
   * calls queue): the batch runner starts a line only when some are left for other traffic (#16).
   * Infinity when admission is off or no call has made the gate yet.
   */
  spare(name: string): number {
    const g = this.gates.get(name);
    if (!this.settings.admission.enabled || g === undefined) return Infinity;
    const s = g.stats();
    return s.queued > 0 ? 0 : Math.max(0, s.limit - s.inFlight);
  }

  gateStats(): Record<string, ReturnType<ConcurrencyGate['stats']>> {
    const out: Record<string, ReturnType<ConcurrencyGate['stats']>> = {};
    for (const [name, g] of this.gates) out[name] = g.stats();
    return out;
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.stopLag();
  }

  /**
   * Pressure from the gateway's own CPU: sustained event-loop lateness over its target, 0 below
   * it (and when off). At the target it is 1 on every class's shed curve, so the classes that
   * shed first under queue pressure shed first here too; interactive traffic is shed only when
   * the loop is many times later than the target.
   */
  cpuPressure(): number {
    const target = this.settings.admission.overload.loop_delay_ms;
    if (target <= 0) return 0;
    const lag = loopLag.sustainedMs();
    return lag < target ? 0 : lag / target;
  }

  private gate(name: string, spec?: ConcurrencySpec): ConcurrencyGate {
    let g = this.gates.get(name);
    const a = this.settings.admission;
    if (g === undefined) {
      g = new ConcurrencyGate(
        name,
        spec ?? a.concurrency,
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
    receipts: readonly QuotaReceipt[],
    kinds: readonly QuotaKind[],
  ): Ticket {
    let settled = false;
    let tokens = 0;
    let spend = 0;
    const limiter = this.deps.limiter;
    const logger = this.deps.logger;
    return {
      trafficClass,
      charge: (actual) => {
        tokens += actual.tokens;
        spend += actual.spend;
      },
      settle: (actual) => {
        if (settled) return;
        settled = true;
        const total = actual ?? { tokens, spend };
        receipts.forEach((r, i) => {
          const target = actualFor(kinds[i]!, r, total);
          if (target === r.amount) return;
          limiter.settle(r, target).catch((err: unknown) => {
            logger.debug({ err: String(err) }, 'quota settle failed');
          });
        });
      },
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

const NO_PERMIT: Permit = { release: () => undefined };

/** Upstream outcomes that mean "too much load": the concurrency limit backs off on them. */
const DROPS = new Set<string>([
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_DEADLINE_EXCEEDED',
  'SY_ERR_UPSTREAM_RATE_LIMITED',
  'SY_ERR_QUEUE_FULL',
]);

/** The loop's lateness, as a share of a round trip, past which the round trip is not used. */
const MAX_LAG_SHARE = 0.25;

/**
 * A round trip as the limit may learn it, or undefined when the gateway's own loop ran too late
 * to tell (a CPU-bound gateway whose loop runs 5-30 ms late in front of a 20 ms upstream: such a
 * sample is the gateway's queueing, not the upstream's). Otherwise the round trip as measured,
 * the loop's share included: the limit takes the smallest of a window's round trips, the answer
 * that waited least for the loop. Subtracting the loop's lateness instead (a smoothed estimate
 * that overshoots any one answer's wait) read a 20 ms upstream as a 16 ms one at times; that
 * became the no-load latency, every true round trip then looked like a queue, and the limit held
 * near 30 at 200 connections: 45% of the throughput with admission off (bench:overhead case e).
 */
export function upstreamMs(rttMs: number, lagMs: number): number | undefined {
  return lagMs > rttMs * MAX_LAG_SHARE ? undefined : rttMs;
}

function openTicket(trafficClass: string): Ticket {
  return { trafficClass, charge: () => undefined, settle: () => undefined };
}

async function* releaseAtEnd(
  chunks: AsyncIterable<Buffer>,
  end: (outcome: { ok: boolean; dropped: boolean }) => void,
  outcomeOf: (err: unknown) => { ok: boolean; dropped: boolean },
): AsyncGenerator<Buffer> {
  try {
    yield* chunks;
    end({ ok: true, dropped: false });
  } catch (err) {
    end(outcomeOf(err));
    throw err;
  } finally {
    end({ ok: true, dropped: false });
  }
}

/** The shed curve: 0 below `shed_from`, rising linearly to 1 at `shed_full`. */
export function shedProbability(pressure: number, cls: ClassSpec): number {
  if (pressure <= cls.shed_from) return 0;
  if (pressure >= cls.shed_full) return 1;
  return (pressure - cls.shed_from) / (cls.shed_full - cls.shed_from);
}
