import { setTimeout as sleep } from 'node:timers/promises';
import type { CostKey, CostLedgerStore } from '../contracts/cost-ledger.js';
import type { InferenceLogReader, RequestRecord } from '../contracts/inference-log.js';
import type { Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import { dayOf } from './cost-recorder.js';

/** What became of a `/v1/feedback` outcome in the ledger. */
export type OutcomeResult = 'counted' | 'duplicate' | 'unknown';

export interface OutcomeJoinOptions {
  readonly store: Pick<CostLedgerStore, 'addOutcome'>;
  readonly clock: Clock;
  /** This replica's memory of the requests it served (`CostRecorder.attribution`). */
  readonly local: (tenant: string, requestId: string) => CostKey | undefined;
  /**
   * The inference log shared by every replica, when it is on, and how long a record may sit in
   * the serving replica's buffer before it is written (`inference_log.flush_ms`).
   */
  readonly log: () => { readonly reader: InferenceLogReader; readonly flushMs: number } | undefined;
}

/** The first pause before the log is read again; each next pause doubles. */
const FIRST_PAUSE_MS = 50;
/** Beyond one flush interval: the serving replica's write itself takes time. */
const WRITE_MARGIN_MS = 500;
/** The longest a feedback waits, whatever the flush interval (a long one would hold it minutes). */
const MAX_WAIT_MS = 5_000;
/** Feedback waiting for a record at once; past it, the log is read once (no waiting). */
const MAX_WAITING = 64;

/**
 * Joins `/v1/feedback` outcomes to the cost ledger (#15), whichever replica receives them. The
 * request's cost key (tenant, journey, class, experiment arm, day) comes from this replica's
 * memory when it served the request, else from the shared inference log; the outcome is then
 * counted by the ledger store in one transaction with a unique (tenant, request id) row, so a
 * feedback repeated on any replica counts once. The key is looked up by the caller's tenant
 * only: another tenant's request id is unknown to it.
 *
 * A record still in the serving replica's write buffer is waited for, bounded: the log is read
 * again after 50, 100, 200 ... ms until one flush interval and a margin have passed (5 s at
 * most; 64 feedback requests at most waiting at once, past which the log is read once). The answer
 * stays synchronous and honest (counted or not), and nothing runs behind it; a client told
 * `recorded: false` may send the feedback again.
 */
export class OutcomeJoin {
  private waiting = 0;

  constructor(private readonly o: OutcomeJoinOptions) {}

  /** Throws SY_ERR_FEEDBACK_STORE_FAILED when the log or the ledger fails: nothing is counted. */
  async record(
    tenant: string,
    requestId: string,
    reward: number,
    /** The client went away: a wait for the record stops (nothing is counted). */
    signal?: AbortSignal,
  ): Promise<OutcomeResult> {
    try {
      const key =
        this.o.local(tenant, requestId) ?? (await this.fromLog(tenant, requestId, signal));
      if (key === undefined) return 'unknown';
      const counted = await this.o.store.addOutcome({
        requestId,
        key,
        reward,
        at: this.o.clock.wall(),
      });
      return counted ? 'counted' : 'duplicate';
    } catch (err) {
      throw syError('SY_ERR_FEEDBACK_STORE_FAILED', 'the inference log or cost ledger failed', {
        cause: err,
      });
    }
  }

  private async fromLog(
    tenant: string,
    requestId: string,
    signal: AbortSignal | undefined,
  ): Promise<CostKey | undefined> {
    const log = this.o.log();
    if (log === undefined) return undefined;
    const budget =
      this.waiting < MAX_WAITING ? Math.min(log.flushMs + WRITE_MARGIN_MS, MAX_WAIT_MS) : 0;
    const start = this.o.clock.now();
    this.waiting++;
    try {
      for (let pause = FIRST_PAUSE_MS; ; pause *= 2) {
        const page = await log.reader.query({ tenant, requestId, limit: 1 });
        const r = page.records[0];
        if (r !== undefined) return await keyOf(r, log.reader);
        const left = budget - (this.o.clock.now() - start);
        if (left <= 0 || signal?.aborted === true) return undefined;
        await sleep(Math.min(pause, left), undefined, { signal }).catch(() => undefined);
      }
    } finally {
      this.waiting--;
    }
  }
}

/**
 * The cost key `CostRecorder` gave the request's own row, rebuilt from its record: the day of
 * its first model call (else of its end), its first experiment assignment. Undefined when the
 * ledger kept no row for it (no model called, no journey run).
 */
async function keyOf(r: RequestRecord, reader: InferenceLogReader): Promise<CostKey | undefined> {
  if (r.journey === undefined && r.versions.length === 0) return undefined;
  let day = dayOf(r.at);
  if (r.versions.length > 0 && dayOf(r.at - r.durationMs) !== day) {
    // The request spanned midnight: its row is the day its first model call ended.
    const detail = await reader.get(r.id);
    const first = detail?.calls
      .filter((c) => c.tenant === r.tenant && c.origin !== 'shadow' && c.origin !== 'replay')
      .reduce((min, c) => Math.min(min, c.at), Infinity);
    if (first !== undefined && Number.isFinite(first)) day = dayOf(first);
  }
  const assignment = r.experiments[0] ?? '';
  const slash = assignment.indexOf('/');
  return {
    day,
    tenant: r.tenant,
    journey: r.journey ?? '',
    model: '',
    trafficClass: r.trafficClass,
    experiment: slash < 0 ? '' : assignment.slice(0, slash),
    arm: slash < 0 ? '' : assignment.slice(slash + 1),
  };
}
