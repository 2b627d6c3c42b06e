import {
  COUNT_FIELDS,
  NO_COUNTS,
  type CostCounts,
  type CostDelta,
  type CostKey,
  type CostLedgerStore,
  type SpendBudget,
} from '../contracts/cost-ledger.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import { RecentAttributions } from './recent-attributions.js';
import {
  events,
  publish,
  subscribe,
  type ModelCallEvent,
  type RequestDoneEvent,
} from '../core/events.js';

export const NANOS = 1e9;

export interface CostRecorderOptions {
  readonly store: CostLedgerStore;
  readonly clock: Clock;
  /** How often the batch is written (and budget totals re-read from the store). */
  readonly flushMs: number;
  /** Tenants' daily spend budgets, in the config's currency unit. */
  readonly budgets: () => ReadonlyMap<string, number>;
  readonly logger?: Logger;
  /** Requests awaiting their end, and ended ones remembered for feedback (each bounded). */
  readonly maxOpen?: number;
  readonly maxRecent?: number;
}

/** Where an ended request's cost went, and when it ended (epoch ms). */
export interface Attribution {
  readonly key: CostKey;
  readonly at: number;
}

type Counts = { -readonly [K in keyof CostCounts]: number };

const DAY_MS = 86_400_000;
/** The last day asked for: every request of a day asks for the same one. */
let lastDay = { start: 0, end: 0, name: '1970-01-01' };

/** UTC day of an epoch ms. */
export function dayOf(ms: number): string {
  if (ms >= lastDay.start && ms < lastDay.end) return lastDay.name;
  const start = Math.floor(ms / DAY_MS) * DAY_MS;
  lastDay = { start, end: start + DAY_MS, name: new Date(start).toISOString().slice(0, 10) };
  return lastDay.name;
}

/**
 * The cost ledger's writer (#15): subscribes to the model-call record and to request ends,
 * attributes each call to its request's journey, and adds the totals to the store in batches
 * every `flushMs`, never on the request path. It is also the tenants' daily spend budget: the
 * store's totals for today (re-read at each flush, so other replicas' spend counts) plus what
 * this replica recorded since.
 */
export class CostRecorder implements SpendBudget {
  private readonly open = new Map<string, { day: string; calls: ModelCallEvent[] }>();
  /** Where each ended request's cost went, and when it ended: feedback on it joins that row. */
  private readonly recent: RecentAttributions;
  private batch = new Map<string, { key: CostKey; counts: Counts }>();
  /** tenant|day → nano-units recorded here and not yet in `stored`. */
  private readonly unflushed = new Map<string, number>();
  /** tenant|day → the store's total at the last read. */
  private readonly stored = new Map<string, number>();
  private readonly unsubscribe: (() => void)[];
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: CostRecorderOptions) {
    this.recent = new RecentAttributions(o.maxRecent ?? 100_000);
    this.unsubscribe = [
      subscribe(events.modelCall, (e) => this.onModelCall(e)),
      subscribe(events.requestDone, (e) => this.onRequestDone(e)),
    ];
    this.timer = setInterval(() => void this.flush(), o.flushMs);
    this.timer.unref();
  }

  // ---- the budget (on the request path: memory only) ----

  admit(tenant: string): void {
    const budget = this.o.budgets().get(tenant);
    if (budget === undefined) return;
    const wall = this.o.clock.wall();
    const id = `${tenant}|${dayOf(wall)}`;
    const spent = (this.stored.get(id) ?? 0) + (this.unflushed.get(id) ?? 0);
    if (spent < Math.round(budget * NANOS)) return;
    publish(events.admission, { trafficClass: '', outcome: 'quota_exceeded', reason: 'budget' });
    const midnight = Math.ceil((wall + 1) / 86_400_000) * 86_400_000;
    throw syError(
      'SY_ERR_BUDGET_EXHAUSTED',
      `tenant ${tenant} spent ${(spent / NANOS).toFixed(6)} of its ${budget} daily budget`,
      { retryAfterS: Math.max(1, Math.ceil((midnight - wall) / 1000)) },
    );
  }

  /** A tenant's spend today as this replica knows it (the store's last total plus since). */
  spentToday(tenant: string): number {
    const id = `${tenant}|${dayOf(this.o.clock.wall())}`;
    return ((this.stored.get(id) ?? 0) + (this.unflushed.get(id) ?? 0)) / NANOS;
  }

  // ---- the record (event subscribers: memory only) ----

  private onModelCall(e: ModelCallEvent): void {
    // A replay is a what-if (#15): it spends nothing against budgets and adds nothing to the ledger.
    if (e.origin === 'replay') return;
    const day = dayOf(this.o.clock.wall());
    const nanos = Math.round(e.cost * NANOS);
    const id = `${e.tenant}|${day}`;
    this.unflushed.set(id, (this.unflushed.get(id) ?? 0) + nanos);
    const done = this.recent.get(e.requestId);
    if (e.origin === 'shadow' || done !== undefined) {
      // No request end will come (shadow copies), or it came first (a stream settled late).
      this.addCall(e, day, done?.key.journey ?? '');
      return;
    }
    let o = this.open.get(e.requestId);
    if (o === undefined) {
      o = { day, calls: [] };
      this.open.set(e.requestId, o);
      if (this.open.size > (this.o.maxOpen ?? 100_000)) {
        // A request that never ended (should not happen): its calls count without a journey.
        const [oldest, left] = this.open.entries().next().value!;
        this.open.delete(oldest);
        for (const c of left.calls) this.addCall(c, left.day, '');
      }
    }
    o.calls.push(e);
  }

  private onRequestDone(e: RequestDoneEvent): void {
    const o = this.open.get(e.requestId);
    this.open.delete(e.requestId);
    const journey = e.journey ?? '';
    if (o === undefined && journey === '') return; // no model was called
    const day = o?.day ?? dayOf(this.o.clock.wall());
    const first = o?.calls.find((c) => c.experiment !== undefined);
    const key: CostKey = {
      day,
      tenant: e.tenant,
      journey,
      model: '',
      trafficClass: e.trafficClass,
      experiment: first?.experiment ?? '',
      arm: first?.variant ?? '',
    };
    const route = e.journeyRoute as { cache?: unknown; stages?: unknown } | undefined;
    const cache = typeof route?.cache === 'string' ? route.cache : 'none';
    const row = this.row(key);
    const counts = row.counts;
    counts.requests++;
    if (cache !== 'none') counts.cacheLookups++;
    if (cache === 'hit' || cache === 'semantic_hit' || cache === 'stale') counts.cacheHits++;
    counts.vectorReads += retrievals(route?.stages);
    for (const c of o?.calls ?? []) this.addCall(c, day, journey);
    this.recent.add(e.requestId, row.key, this.o.clock.wall());
  }

  /**
   * The cost key of a request this replica served (its own row, model `''`) and when it ended,
   * when `tenant` owns it: `/v1/feedback` adds the outcome there without a store read. Undefined
   * when the request is not known here (ended too long ago, served by another replica, or
   * another tenant's).
   */
  attribution(tenant: string, requestId: string): Attribution | undefined {
    const a = this.recent.get(requestId);
    return a?.key.tenant === tenant ? a : undefined;
  }

  private addCall(e: ModelCallEvent, day: string, journey: string): void {
    const { counts } = this.row({
      day,
      tenant: e.tenant,
      journey,
      model: e.servedBy,
      trafficClass: e.trafficClass,
      experiment: e.experiment ?? '',
      arm: e.variant ?? '',
    });
    counts.calls++;
    counts.inputTokens += e.inputTokens;
    counts.outputTokens += e.outputTokens;
    if (e.estimated) counts.estimatedCalls++;
    counts.costNanos += Math.round(e.cost * NANOS);
    if (e.tier === 'edge') counts.edgeCalls++;
    if (e.servedBy !== e.model) counts.fallbackCalls++;
    if (e.outcome !== 'ok') counts.failedCalls++;
  }

  private row(key: CostKey): { readonly key: CostKey; readonly counts: Counts } {
    const id = [
      key.day,
      key.tenant,
      key.journey,
      key.model,
      key.trafficClass,
      key.experiment,
      key.arm,
    ].join('\u0000');
    let r = this.batch.get(id);
    if (r === undefined) {
      r = { key, counts: { ...NO_COUNTS } };
      this.batch.set(id, r);
    }
    return r;
  }

  // ---- the writer (off the request path) ----

  /** Writes what was recorded so far; resolves once it is in the store (or failed and logged). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.write());
    return this.flushing;
  }

  private async write(): Promise<void> {
    const taken = this.batch;
    this.batch = new Map();
    const deltas: CostDelta[] = [];
    const spent = new Map<string, number>();
    for (const { key, counts } of taken.values()) {
      if (COUNT_FIELDS.every((f) => counts[f] === 0)) continue;
      deltas.push({ ...key, ...counts });
      const id = `${key.tenant}|${key.day}`;
      spent.set(id, (spent.get(id) ?? 0) + counts.costNanos);
    }
    try {
      await this.o.store.add(deltas);
    } catch (err) {
      // Kept for the next flush: totals are late, never lost while the process lives.
      for (const [id, r] of taken) {
        const into = this.batch.get(id);
        if (into === undefined) this.batch.set(id, r);
        else for (const f of COUNT_FIELDS) into.counts[f] += r.counts[f];
      }
      this.o.logger?.warn({ err }, 'cost ledger write failed; retrying at the next flush');
      return;
    }
    // Today's totals, re-read, replace what was written (and other replicas' spend with them) in
    // one synchronous step: the budget never sees the written spend twice, nor zero times.
    const day = dayOf(this.o.clock.wall());
    const read = new Map<string, number>();
    for (const tenant of this.o.budgets().keys()) {
      try {
        read.set(`${tenant}|${day}`, await this.o.store.spentNanos(tenant, day));
      } catch (err) {
        this.o.logger?.warn({ err, tenant }, 'cost ledger read failed; the budget adds locally');
      }
    }
    for (const [id, n] of spent) {
      this.unflushed.set(id, (this.unflushed.get(id) ?? 0) - n);
      if (!read.has(id)) this.stored.set(id, (this.stored.get(id) ?? 0) + n);
    }
    for (const [id, n] of read) this.stored.set(id, n);
    for (const id of this.stored.keys()) if (!id.endsWith(`|${day}`)) this.stored.delete(id);
    for (const [id, n] of this.unflushed)
      if (n === 0 && !id.endsWith(`|${day}`)) this.unflushed.delete(id);
  }

  /** Stops recording, attributes requests still open (without a journey), writes everything. */
  async close(): Promise<void> {
    if (this.closed) return this.flushing;
    this.closed = true;
    clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
    for (const o of this.open.values()) for (const c of o.calls) this.addCall(c, o.day, '');
    this.open.clear();
    await this.flush();
  }
}

/** Retrieval stages in a journey route (children included): the request's vector reads. */
function retrievals(stages: unknown): number {
  if (!Array.isArray(stages)) return 0;
  let n = 0;
  for (const s of stages as { kind?: unknown; children?: unknown }[]) {
    if (s.kind === 'retrieve') n++;
    n += retrievals(s.children);
  }
  return n;
}
