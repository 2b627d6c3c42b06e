import type { AuditEntry } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type {
  ExperimentRecord,
  ExperimentSpec,
  ExperimentStatus,
  RegistryStore,
  VariantSpec,
} from '../contracts/registry-store.js';
import type {
  AssignmentUnit,
  ReleaseSlotResolver,
  ShadowInvoke,
  SlotAssignment,
  SlotOutcome,
} from '../contracts/slot-resolver.js';
import type { Clock } from '../core/clock.js';
import { isSwitchyardError, syError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import type { Random } from '../core/random.js';
import { WriteBehindWait } from '../core/write-behind-wait.js';
import type { ArmPosterior } from './bandit.js';
import { CounterBuffer } from './counter-buffer.js';
import { buildReport, type ExperimentReport } from './experiment-report.js';
import { segmentOf, unitIdOf } from './eligibility.js';
import { checkSpec } from './experiment-spec.js';
import { LiveWindow } from './live-window.js';
import { judge, type RuleVerdict } from './rollback-rules.js';
import { ShadowRunner, type ShadowOptions } from './shadow-runner.js';
import { allocate, SlotTable, type BanditState } from './slot-table.js';

export interface ReleaseManagerOptions {
  readonly store: RegistryStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger?: Logger;
  /** How often rollback rules and ramps are evaluated. */
  readonly evaluateMs: number;
  /** How often counters and exposures are written behind. */
  readonly flushMs: number;
  /** How often the store is polled for changes made elsewhere (CLI, other replicas); 0: never. */
  readonly pollMs: number;
  readonly shadow: ShadowOptions;
  /** Layer holdouts, in percent of the layer's units. */
  readonly layers?: Readonly<Record<string, { readonly holdout: number }>>;
  /** How long (and how many) inference ids stay open for `POST /v1/feedback`. */
  readonly feedbackTtlMs: number;
  readonly feedbackCapacity: number;
  /**
   * How long after a request feedback elsewhere waits for its experiment exposure (answering a
   * retryable 503) before it counts the outcome without the reward: by then the serving replica
   * is taken to have lost the exposure (it died before writing it). Default: 5 minutes.
   */
  readonly exposureWaitMs?: number;
  /**
   * Has the other processes sharing this store write their buffered exposures now (`serve
   * --workers N`), so a reward given to one worker finds the exposure another just made.
   */
  readonly flushElsewhere?: () => Promise<void>;
  /** Told about automatic decisions (rollbacks, ramp steps), for metrics and logs. */
  readonly onDecision?: (d: { experiment: string; action: string; reason: string }) => void;
  /**
   * Completes a canary whose ramp reached 100% and held with guardrails ok: promotes the
   * candidate (the last variant) and says what it did. Absent: canaries stay at 100% until an
   * operator acts. A throw pauses the experiment (traffic goes back to the stable variant).
   */
  readonly complete?: (record: ExperimentRecord, candidate: VariantSpec) => Promise<string>;
}

export interface Actor {
  readonly actor: string;
  readonly reason: string;
}

/** An inference awaiting its reward: the experiment, variant and bandit segment it credits. */
export interface FeedbackTarget {
  /** The tenant whose request it was, when resolve saw its request id: only it gives feedback. */
  readonly tenant: string | undefined;
  readonly experiment: string;
  readonly variant: string;
  readonly segment: string;
  readonly at: number;
}

class Posteriors implements BanditState {
  readonly segments = new Map<string, ArmPosterior[]>();
  constructor(readonly arms_: readonly string[]) {}
  arms(segment: string): ArmPosterior[] {
    let a = this.segments.get(segment);
    if (a === undefined) {
      a = this.arms_.map(() => ({ alpha: 1, beta: 1 }));
      this.segments.set(segment, a);
    }
    return a;
  }
}

/**
 * Release management at run time: resolves slots from the live experiments, records exposures
 * and outcomes behind the hot path, mirrors shadow traffic, updates bandit posteriors from
 * feedback, advances canary ramps while guardrails hold and rolls back when a rule breaks.
 * Every decision is written to the audit trail before it takes effect elsewhere.
 */
export class ReleaseManager implements ReleaseSlotResolver {
  private records = new Map<string, ExperimentRecord>();
  private table: SlotTable;
  private readonly bandits = new Map<string, Posteriors>();
  private readonly windows = new Map<string, LiveWindow>();
  private readonly feedbackIds = new Map<string, FeedbackTarget>();
  readonly counters = new CounterBuffer();
  readonly shadow: ShadowRunner;
  private timers: NodeJS.Timeout[] = [];
  private lastChange = -1;
  private evaluating = false;
  /** Running minimum of each always-valid p-value (experiment/variant/metric). */
  readonly minP = new Map<string, number>();
  private readonly exposureWait: WriteBehindWait;

  constructor(private readonly opts: ReleaseManagerOptions) {
    this.exposureWait = new WriteBehindWait(opts.clock);
    this.table = new SlotTable([], this.bandits, opts.random);
    this.shadow = new ShadowRunner(opts.shadow, opts.clock, this.counters, (exp, agree) =>
      this.window(exp, 'shadow')?.recordShadow(opts.clock.now(), agree),
    );
  }

  get store(): RegistryStore {
    return this.opts.store;
  }

  /** Loads experiments and bandit posteriors and starts the evaluation, flush and poll loops. */
  async start(): Promise<void> {
    await this.reload();
    const every = (ms: number, fn: () => Promise<unknown>): void => {
      if (ms <= 0) return;
      const t = setInterval(() => {
        fn().catch((err: unknown) =>
          this.opts.logger?.error({ err: String(err) }, 'release loop failed'),
        );
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.opts.evaluateMs, () => this.evaluate());
    every(this.opts.flushMs, () => this.flush());
    every(this.opts.pollMs, () => this.poll());
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.shadow.close();
    await this.flush().catch(() => undefined);
  }

  /** Re-reads experiments (and posteriors of new bandits) from the store. */
  async reload(): Promise<void> {
    this.lastChange = await this.opts.store.changeCounter();
    const list = await this.opts.store.listExperiments();
    for (const r of list)
      if (r.spec.kind === 'bandit' && !this.bandits.has(r.spec.id)) await this.loadPosterior(r);
    this.install(list);
  }

  /** Re-reads the experiments when the store changed since (another process or replica wrote). */
  async refresh(): Promise<void> {
    const c = await this.opts.store.changeCounter();
    if (c !== this.lastChange) await this.reload();
  }

  private async poll(): Promise<void> {
    await this.refresh();
    await this.refreshPosteriors();
  }

  /**
   * Rebuilds every bandit's posteriors from the stored rewards (every replica's, as flushed) plus
   * this replica's not yet flushed (#15): a reward credited on another replica reaches this one's
   * sampling within a flush and a poll.
   */
  async refreshPosteriors(): Promise<void> {
    for (const r of this.records.values())
      if (r.spec.kind === 'bandit') await this.loadPosterior(r, true);
  }

  private install(list: readonly ExperimentRecord[]): void {
    this.records = new Map(list.map((r) => [r.spec.id, r]));
    this.table = new SlotTable(list, this.bandits, this.opts.random);
  }

  private async loadPosterior(r: ExperimentRecord, withPending = false): Promise<void> {
    const p = new Posteriors(r.spec.variants.map((v) => v.name));
    const stored = await this.opts.store.readCounters(r.spec.id);
    // Read after the store answered: deltas flushed meanwhile are in `stored`, not here, or (while
    // a flush is in flight) in neither until the next pass.
    const rows = withPending ? [...stored, ...this.counters.pending(r.spec.id)] : stored;
    for (const row of rows) {
      if (row.metric !== 'reward') continue;
      const i = r.spec.variants.findIndex((v) => v.name === row.variant);
      if (i < 0) continue;
      const arm = p.arms(row.segment)[i]!;
      arm.alpha += row.sum;
      arm.beta += row.n - row.sum;
    }
    this.bandits.set(r.spec.id, p);
  }

  // ---- hot path ----

  report(outcome: SlotOutcome, invoke?: ShadowInvoke): void {
    const a = outcome.assignment;
    if (a.experiment !== undefined && a.variant !== undefined) {
      const exp = a.experiment;
      const r = this.records.get(exp);
      const segment = '';
      const c = this.counters;
      c.add(exp, a.variant, segment, 'exposures');
      publish(events.experimentExposure, { experiment: exp, variant: a.variant });
      // Per ramp step too: the sample ratio is only comparable within one step.
      if (r?.spec.kind === 'canary') c.add(exp, a.variant, segment, `exposures_step_${r.step}`);
      c.add(exp, a.variant, segment, 'latency_ms', outcome.ms);
      c.add(exp, a.variant, segment, 'errors', outcome.outcome === 'ok' ? 0 : 1);
      c.add(exp, a.variant, segment, 'fallbacks', outcome.fallback === true ? 1 : 0);
      c.add(exp, a.variant, segment, 'policy_exceptions', outcome.policyException === true ? 1 : 0);
      if (a.holdout !== true)
        this.window(exp, a.variant)?.record(
          this.opts.clock.now(),
          outcome.ms,
          outcome.outcome !== 'ok',
          outcome.fallback === true,
          outcome.policyException === true,
        );
      const unit = this.units.get(outcome.inferenceId);
      const rewardSegment = r?.spec.kind === 'bandit' ? (unit?.segment ?? '') : '';
      // The tenant and segment let any replica credit the inference's reward (#15).
      c.exposure({
        inferenceId: outcome.inferenceId,
        at: this.opts.clock.wall(),
        experiment: exp,
        variant: a.variant,
        seed: a.seed ?? '',
        bucket: a.bucket ?? -1,
        model: a.model,
        version: a.version ?? '',
        unit: a.unit ?? '',
        tenant: unit?.tenant ?? '',
        segment: rewardSegment,
      });
      this.openFeedback(outcome.inferenceId, {
        tenant: unit?.tenant,
        experiment: exp,
        variant: a.variant,
        segment: rewardSegment,
        at: this.opts.clock.now(),
      });
      this.units.delete(outcome.inferenceId);
    }
    if (a.shadow !== undefined && a.shadow.length > 0 && invoke !== undefined)
      this.shadow.mirror(outcome, invoke);
  }

  /** Tenants and bandit segments remembered between resolve and report (keyed by inference id). */
  private readonly units = new Map<string, { tenant: string; segment: string }>();

  /**
   * Which version serves `slot` for this unit. With a request id, the unit's tenant is remembered
   * so that only it may give the inference's reward (#15), and for a bandit its segment, so a
   * later reward (`feedback`) credits the right per-segment posterior.
   */
  resolve(slot: string, unit: AssignmentUnit): SlotAssignment | undefined {
    const a = this.table.resolve(slot, unit);
    if (a?.experiment !== undefined && unit.requestId !== undefined) {
      const r = this.records.get(a.experiment);
      const segment = r?.spec.kind === 'bandit' ? segmentOf(r.spec.bandit?.segment_by, unit) : '';
      this.units.set(unit.requestId, { tenant: unit.tenant, segment });
      if (this.units.size > this.opts.feedbackCapacity)
        this.units.delete(this.units.keys().next().value!);
    }
    return a;
  }

  private openFeedback(id: string, p: FeedbackTarget): void {
    this.feedbackIds.delete(id);
    this.feedbackIds.set(id, p);
    if (this.feedbackIds.size > this.opts.feedbackCapacity)
      this.feedbackIds.delete(this.feedbackIds.keys().next().value!);
  }

  /**
   * A reward in [0, 1] for an inference this replica served (bandit posterior and experiment
   * metric), once: without a shared claim (no cost ledger), only the serving replica takes it.
   * Given `tenant`, another tenant's inference is unknown to it.
   */
  feedback(
    inferenceId: string,
    reward: number,
    tenant?: string,
  ): { experiment: string; variant: string } {
    checkReward(reward);
    const p = this.ownPending(inferenceId, tenant);
    if (p === undefined) throw unknownInference(inferenceId);
    this.feedbackIds.delete(inferenceId); // one reward per inference
    return this.credit(p, reward);
  }

  /**
   * Where the reward of a feedback goes, found before the shared cost ledger counts it (#15):
   * this replica's memory, else the inference's newest exposure of `tenant` in the shared store.
   * When `assigned` (the request's record names an experiment), a reward is owed, so an exposure
   * still in the serving replica's buffer is waited for, bounded (`release.flush_ms` and a
   * margin), and SY_ERR_FEEDBACK_STORE_FAILED (retryable) is thrown when the store fails or the
   * exposure is not written within the wait: the caller must not count the feedback then, so
   * that the client's retry still credits it. Undefined: nothing to credit (no experiment, an
   * inference past `feedback_ttl_s`, or an exposure still missing `exposureWaitMs` after the
   * request, at `requestAt`, was served: lost with the replica that served it, so the retries
   * end and the outcome counts without the reward, logged and counted as lost).
   */
  async feedbackTarget(
    inferenceId: string,
    tenant: string,
    assigned: boolean,
    signal?: AbortSignal,
    requestAt?: number,
  ): Promise<FeedbackTarget | undefined> {
    const own = this.ownPending(inferenceId, tenant);
    if (own !== undefined) return own;
    const read = async () => {
      await this.opts.flushElsewhere?.();
      return (await this.opts.store.listExposures({ inferenceId, tenant, limit: 1 }))[0];
    };
    // One flush interval: by then the serving replica has written its buffer.
    const retryAfterS = Math.max(1, Math.ceil(this.opts.flushMs / 1000));
    let row;
    try {
      row = assigned ? await this.exposureWait.find(read, this.opts.flushMs, signal) : await read();
    } catch (err) {
      this.opts.logger?.warn({ err: String(err) }, 'release: the exposure lookup failed');
      if (!assigned) return undefined; // the ledger owes no experiment a reward
      throw syError('SY_ERR_FEEDBACK_STORE_FAILED', 'the exposure lookup failed', {
        cause: err,
        retryAfterS,
      });
    }
    if (row === undefined) {
      if (!assigned) return undefined;
      const waitMs = this.opts.exposureWaitMs ?? 300_000;
      if (requestAt !== undefined && this.opts.clock.wall() - requestAt > waitMs) {
        this.opts.logger?.warn(
          { inference_id: inferenceId, tenant, waited_ms: this.opts.clock.wall() - requestAt },
          'release: the exposure was never written; the feedback counts without its reward',
        );
        publish(events.feedbackRewardLost, { tenant });
        return undefined;
      }
      throw syError('SY_ERR_FEEDBACK_STORE_FAILED', 'the exposure is not written yet', {
        retryAfterS,
      });
    }
    if (this.opts.clock.wall() - row.at > this.opts.feedbackTtlMs) return undefined;
    const { experiment, variant, segment } = row;
    return { tenant, experiment, variant, segment, at: this.opts.clock.now() };
  }

  /**
   * The reward of a feedback the shared cost ledger has judged (#15): `first` (the ledger
   * counted it: no replica took this inference's feedback before) credits it to `target`, found
   * by `feedbackTarget` before the claim, whichever replica served the inference; no store is
   * read. Either way this replica forgets the inference. Throws SY_ERR_INFERENCE_UNKNOWN when
   * nothing was credited.
   */
  claimedFeedback(
    inferenceId: string,
    reward: number,
    tenant: string,
    first: boolean,
    target: FeedbackTarget | undefined,
  ): { experiment: string; variant: string } {
    checkReward(reward);
    if (this.ownPending(inferenceId, tenant) !== undefined) this.feedbackIds.delete(inferenceId);
    if (!first || target === undefined) throw unknownInference(inferenceId);
    return this.credit(target, reward);
  }

  /** This replica's open inference, unless expired or another tenant's. */
  private ownPending(inferenceId: string, tenant: string | undefined): FeedbackTarget | undefined {
    const p = this.feedbackIds.get(inferenceId);
    if (
      p === undefined ||
      this.opts.clock.now() - p.at > this.opts.feedbackTtlMs ||
      (tenant !== undefined && p.tenant !== undefined && p.tenant !== tenant)
    )
      return undefined;
    return p;
  }

  /** The reward counter (per segment: shared counters reach the store) and this posterior. */
  private credit(p: FeedbackTarget, reward: number): { experiment: string; variant: string } {
    this.counters.add(p.experiment, p.variant, p.segment, 'reward', reward);
    const b = this.bandits.get(p.experiment);
    const r = this.records.get(p.experiment);
    if (b !== undefined && r !== undefined) {
      const i = r.spec.variants.findIndex((v) => v.name === p.variant);
      if (i >= 0) {
        const arm = b.arms(p.segment)[i]!;
        arm.alpha += reward;
        arm.beta += 1 - reward;
      }
    }
    return { experiment: p.experiment, variant: p.variant };
  }

  private window(exp: string, variant: string): LiveWindow | undefined {
    const key = `${exp}\u0000${variant}`;
    let w = this.windows.get(key);
    if (w === undefined) {
      const r = this.records.get(exp);
      if (r === undefined) return undefined;
      w = new LiveWindow((r.spec.rules?.window_s ?? 60) * 1000);
      this.windows.set(key, w);
    }
    return w;
  }

  // ---- control plane ----

  experiments(): ExperimentRecord[] {
    return [...this.records.values()];
  }

  experiment(id: string): ExperimentRecord | undefined {
    return this.records.get(id);
  }

  /**
   * Creates an experiment declared in config unless it exists. One that another process on the
   * same store (a worker of `serve --workers N` starting beside this one, a replica) created
   * between this one's read and its write stands: two workers starting at once otherwise both
   * created it, and the second failed its start with SY_ERR_REGISTRY_CONFLICT.
   */
  async ensure(spec: ExperimentSpec, by: Actor): Promise<void> {
    if (this.experiment(spec.id) !== undefined) return;
    try {
      await this.create(spec, by);
    } catch (err) {
      if (!isSwitchyardError(err) || err.code !== 'SY_ERR_REGISTRY_CONFLICT') throw err;
      await this.refresh();
      if (this.experiment(spec.id) === undefined) throw err;
    }
  }

  async create(spec: ExperimentSpec, by: Actor): Promise<ExperimentRecord> {
    checkSpec(spec);
    const all = await this.opts.store.listExperiments();
    if (all.some((r) => r.spec.id === spec.id))
      throw syError('SY_ERR_REGISTRY_CONFLICT', `experiment ${spec.id} exists`);
    const size = Math.round(spec.traffic * 100);
    const allocation =
      spec.kind === 'shadow'
        ? { start: 0, end: 0 }
        : allocate(spec.layer, size, all, this.opts.layers?.[spec.layer]?.holdout ?? 0);
    if (allocation === undefined)
      throw syError(
        'SY_ERR_REGISTRY_CONFLICT',
        `layer ${spec.layer} has no free ${spec.traffic}% for ${spec.id}`,
      );
    const now = this.opts.clock.wall();
    const out = await this.opts.store.putExperiment(
      {
        spec,
        status: 'running',
        allocation,
        step: 0,
        stepSince: now,
        reason: by.reason,
        createdAt: now,
        updatedAt: now,
      },
      0,
    );
    if (out === undefined)
      throw syError('SY_ERR_REGISTRY_CONFLICT', `experiment ${spec.id} exists`);
    await this.audit(
      by.actor,
      'experiment.create',
      spec.id,
      by.reason,
      { kind: spec.kind, slot: spec.slot, layer: spec.layer, allocation },
      { before: null, after: experimentView(out) },
    );
    await this.reload();
    return out;
  }

  /** Pause, resume, complete or roll back by hand. */
  async setStatus(id: string, status: ExperimentStatus, by: Actor): Promise<ExperimentRecord> {
    return this.change(
      id,
      by.actor,
      `experiment.${status === 'running' ? 'resume' : status}`,
      by.reason,
      (r) => ({
        ...r,
        status,
        reason: by.reason,
      }),
    );
  }

  async remove(id: string, by: Actor): Promise<void> {
    const cur = await this.opts.store.getExperiment(id);
    if (cur === undefined || !(await this.opts.store.deleteExperiment(id)))
      throw syError('SY_ERR_REGISTRY_NOT_FOUND', `experiment ${id}`);
    await this.audit(by.actor, 'experiment.delete', id, by.reason, undefined, {
      before: experimentView(cur),
      after: null,
    });
    await this.reload();
  }

  private async change(
    id: string,
    actor: string,
    action: string,
    reason: string,
    fn: (r: ExperimentRecord) => Omit<ExperimentRecord, 'revision'>,
    detail?: Record<string, unknown>,
  ): Promise<ExperimentRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.opts.store.getExperiment(id);
      if (cur === undefined) throw syError('SY_ERR_REGISTRY_NOT_FOUND', `experiment ${id}`);
      const out = await this.opts.store.putExperiment(
        { ...fn(cur), updatedAt: this.opts.clock.wall() },
        cur.revision,
      );
      if (out === undefined) continue;
      await this.audit(actor, action, id, reason, detail, {
        before: experimentView(cur),
        after: experimentView(out),
      });
      await this.reload();
      return out;
    }
    throw syError('SY_ERR_REGISTRY_CONFLICT', `experiment ${id} kept changing underneath`);
  }

  private async audit(
    actor: string,
    action: string,
    target: string,
    reason: string,
    detail?: Record<string, unknown>,
    change?: Pick<AuditEntry, 'before' | 'after'>,
  ): Promise<void> {
    await this.opts.store.appendAudit({
      at: this.opts.clock.wall(),
      actor,
      action,
      target,
      reason,
      ...change,
      ...(detail === undefined ? {} : { detail }),
    });
  }

  /** Exposures, metrics, SRM and sequential tests of one experiment (stored plus unflushed). */
  async stats(id: string): Promise<ExperimentReport> {
    const r = this.records.get(id) ?? (await this.opts.store.getExperiment(id));
    if (r === undefined) throw syError('SY_ERR_REGISTRY_NOT_FOUND', `experiment ${id}`);
    const rows = [...(await this.opts.store.readCounters(id)), ...this.counters.pending(id)];
    return buildReport(r, rows, this.minP);
  }

  /** Writes buffered counters and exposures. */
  flush(): Promise<void> {
    return this.counters.flush(this.opts.store);
  }

  /** One pass of the rules and ramps over the live windows (the loop calls this). */
  async evaluate(): Promise<void> {
    if (this.evaluating) return;
    this.evaluating = true;
    try {
      for (const r of this.records.values()) {
        if (r.status !== 'running') continue;
        const verdict = this.verdict(r);
        if (verdict?.kind === 'breach') {
          await this.rollback(r, verdict);
          continue;
        }
        const ramp = r.spec.ramp;
        if (ramp === undefined) continue;
        const held = this.opts.clock.wall() - r.stepSince >= ramp.hold_s * 1000;
        // Without rules there are no guardrails to wait for; with rules they must be judged ok.
        const healthy = r.spec.rules === undefined || verdict?.kind === 'ok';
        if (r.step >= ramp.steps.length - 1) {
          if (held && healthy && ramp.steps.at(-1) === 100 && r.spec.kind === 'canary')
            await this.completeRamp(r);
          continue;
        }
        if (held && healthy) {
          const next = r.step + 1;
          await this.change(
            r.spec.id,
            'system',
            'experiment.ramp',
            `held ${ramp.hold_s}s with guardrails ok`,
            (cur) => ({ ...cur, step: next, stepSince: this.opts.clock.wall() }),
            { from_percent: ramp.steps[r.step], to_percent: ramp.steps[next] },
          );
          this.decided({ experiment: r.spec.id, action: 'ramp', reason: `${ramp.steps[next]}%` });
        }
      }
    } finally {
      this.evaluating = false;
    }
  }

  /** The ramp is done: promote the candidate (the configured hook) and complete the experiment. */
  private async completeRamp(r: ExperimentRecord): Promise<void> {
    const complete = this.opts.complete;
    if (complete === undefined) return;
    const candidate = r.spec.variants[r.spec.variants.length - 1]!;
    const held = `held 100% for ${r.spec.ramp!.hold_s}s with guardrails ok`;
    let did: string;
    try {
      did = await complete(r, candidate);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      await this.change(
        r.spec.id,
        'system',
        'experiment.pause',
        `${held}, but the promotion failed: ${why}`,
        (cur) => ({ ...cur, status: 'paused', reason: `promotion failed: ${why}` }),
      );
      this.opts.logger?.error({ experiment: r.spec.id, err: why }, 'canary promotion failed');
      this.decided({ experiment: r.spec.id, action: 'pause', reason: 'promotion failed' });
      return;
    }
    await this.change(
      r.spec.id,
      'system',
      'experiment.complete',
      `${held}; ${did}`,
      (cur) => ({ ...cur, status: 'completed', reason: `${held}; ${did}` }),
      {
        model: candidate.model,
        ...(candidate.version === undefined ? {} : { version: candidate.version }),
      },
    );
    this.decided({ experiment: r.spec.id, action: 'complete', reason: did });
  }

  private verdict(r: ExperimentRecord): RuleVerdict | undefined {
    const rules = r.spec.rules;
    if (rules === undefined) return undefined;
    const now = this.opts.clock.now();
    const control = this.window(r.spec.id, r.spec.variants[0]!.name)!.stats(now);
    if (r.spec.kind === 'shadow')
      return judge(rules, control, this.window(r.spec.id, 'shadow')!.stats(now));
    let worst: RuleVerdict | undefined;
    for (const v of r.spec.variants.slice(1)) {
      const res = judge(rules, control, this.window(r.spec.id, v.name)!.stats(now));
      if (res.kind === 'breach') return res;
      if (worst === undefined || res.kind === 'insufficient') worst = res;
    }
    return worst;
  }

  private async rollback(
    r: ExperimentRecord,
    v: Extract<RuleVerdict, { kind: 'breach' }>,
  ): Promise<void> {
    await this.change(
      r.spec.id,
      'system',
      'experiment.rollback',
      `${v.rule}: ${v.detail}`,
      (cur) => ({ ...cur, status: 'rolled_back', reason: `${v.rule}: ${v.detail}` }),
      { rule: v.rule, observed: v.observed, step: r.step },
    );
    this.opts.logger?.warn(
      { experiment: r.spec.id, rule: v.rule, detail: v.detail },
      'experiment rolled back automatically',
    );
    this.decided({ experiment: r.spec.id, action: 'rollback', reason: v.rule });
  }

  private decided(d: { experiment: string; action: string; reason: string }): void {
    publish(events.releaseDecision, d);
    this.opts.onDecision?.(d);
  }

  /** Unit id as used for hashing (exported for replay tools). */
  static unitId(unit: AssignmentUnit): string {
    return unitIdOf(unit);
  }
}

function checkReward(reward: number): void {
  if (!(reward >= 0 && reward <= 1))
    throw syError('SY_ERR_REGISTRY_INVALID', 'reward must be in [0, 1]');
}

const unknownInference = (id: string) => syError('SY_ERR_INFERENCE_UNKNOWN', id.slice(0, 128));

/** An experiment as the audit trail shows it, before and after a change. */
const experimentView = (r: ExperimentRecord) => ({
  status: r.status,
  step: r.step,
  percent: r.spec.ramp?.steps[r.step] ?? null,
  revision: r.revision,
});
