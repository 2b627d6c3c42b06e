import type { CostKey, CostLedgerStore } from '../contracts/cost-ledger.js';
import type { InferenceLogReader, RequestRecord } from '../contracts/inference-log.js';
import type { Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import { WriteBehindWait } from '../core/write-behind-wait.js';
import { dayOf } from './cost-recorder.js';

/** What became of a `/v1/feedback` outcome in the ledger. */
export type OutcomeResult = 'counted' | 'duplicate' | 'unknown';

/** What became of it, and the request's cost key when one was found. */
export interface OutcomeClaim {
  readonly result: OutcomeResult;
  readonly key?: CostKey;
}

/** What the ledger knows of a request before its feedback is counted (`peek`). */
export interface OutcomePeek {
  /** The request's cost key; undefined when the ledger knows no such request for this tenant. */
  readonly key?: CostKey;
  /** Its outcome is counted already (on any replica): a claim now would be a duplicate. */
  readonly counted: boolean;
  /** When the request ended (epoch ms). */
  readonly at?: number;
}

export interface OutcomeJoinOptions {
  readonly store: Pick<CostLedgerStore, 'addOutcome' | 'hasOutcome'>;
  readonly clock: Clock;
  /** This replica's memory of the requests it served (`CostRecorder.attribution`). */
  readonly local: (tenant: string, requestId: string) => { key: CostKey; at: number } | undefined;
  /**
   * The inference log shared by every replica, when it is on, and how long a record may sit in
   * the serving replica's buffer before it is written (`inference_log.flush_ms`).
   */
  readonly log: () => { readonly reader: InferenceLogReader; readonly flushMs: number } | undefined;
}

/**
 * Joins `/v1/feedback` outcomes to the cost ledger (#15), whichever replica receives them. The
 * request's cost key (tenant, journey, class, experiment arm, day) comes from this replica's
 * memory when it served the request, else from the shared inference log; the outcome is then
 * counted by the ledger store in one transaction with a unique (tenant, request id) row, so a
 * feedback repeated on any replica counts once. The key is looked up by the caller's tenant
 * only: another tenant's request id is unknown to it.
 *
 * A record still in the serving replica's write buffer is waited for, bounded (`WriteBehindWait`:
 * one flush interval and a margin, 5 s at most). The answer stays synchronous and honest (counted
 * or not), and nothing runs behind it; a client told `recorded: false` may send the feedback
 * again. `peek` tells what a claim would commit to without counting, so the caller can make sure
 * of the experiment's exposure first: a counted feedback's retry is a duplicate.
 */
export class OutcomeJoin {
  private readonly wait: WriteBehindWait;

  constructor(private readonly o: OutcomeJoinOptions) {
    this.wait = new WriteBehindWait(o.clock);
  }

  /** Throws SY_ERR_FEEDBACK_STORE_FAILED when the log or the ledger fails: nothing is counted. */
  async record(
    tenant: string,
    requestId: string,
    reward: number,
    /** The client went away: a wait for the record stops (nothing is counted). */
    signal?: AbortSignal,
  ): Promise<OutcomeResult> {
    return (await this.claim(tenant, requestId, reward, signal)).result;
  }

  /**
   * As `record`, with the request's cost key: its experiment arm tells the release manager
   * whether an experiment's reward is owed (#15). `counted` is the claim that this feedback is
   * the request's first, on any replica. Given what `peek` found, the key is not looked up again.
   */
  async claim(
    tenant: string,
    requestId: string,
    reward: number,
    signal?: AbortSignal,
    peeked?: OutcomePeek,
  ): Promise<OutcomeClaim> {
    try {
      const key =
        peeked === undefined ? (await this.keyOf(tenant, requestId, signal)).key : peeked.key;
      if (key === undefined) return { result: 'unknown' };
      const counted = await this.o.store.addOutcome({
        requestId,
        key,
        reward,
        at: this.o.clock.wall(),
      });
      return { result: counted ? 'counted' : 'duplicate', key };
    } catch (err) {
      throw storeFailed(err);
    }
  }

  /**
   * The request's cost key and whether its outcome is counted already, counting nothing: the
   * caller makes sure of what the count commits it to (the experiment's exposure) before it
   * claims (#15). Throws SY_ERR_FEEDBACK_STORE_FAILED when the log or the ledger fails.
   */
  async peek(tenant: string, requestId: string, signal?: AbortSignal): Promise<OutcomePeek> {
    try {
      const { key, at } = await this.keyOf(tenant, requestId, signal);
      if (key === undefined) return { counted: false };
      const counted = await this.o.store.hasOutcome(tenant, requestId);
      return at === undefined ? { key, counted } : { key, counted, at };
    } catch (err) {
      throw storeFailed(err);
    }
  }

  private async keyOf(
    tenant: string,
    requestId: string,
    signal: AbortSignal | undefined,
  ): Promise<{ key?: CostKey; at?: number }> {
    return this.o.local(tenant, requestId) ?? this.fromLog(tenant, requestId, signal);
  }

  private async fromLog(
    tenant: string,
    requestId: string,
    signal: AbortSignal | undefined,
  ): Promise<{ key?: CostKey; at?: number }> {
    const log = this.o.log();
    if (log === undefined) return {};
    const r = await this.wait.find(
      async () => (await log.reader.query({ tenant, requestId, limit: 1 })).records[0],
      log.flushMs,
      signal,
    );
    if (r === undefined) return {};
    const key = await keyOfRecord(r, log.reader);
    return key === undefined ? {} : { key, at: r.at };
  }
}

const storeFailed = (err: unknown) =>
  syError('SY_ERR_FEEDBACK_STORE_FAILED', 'the inference log or cost ledger failed', {
    cause: err,
  });

/**
 * The cost key `CostRecorder` gave the request's own row, rebuilt from its record: the day of
 * its first model call (else of its end), its first experiment assignment. Undefined when the
 * ledger kept no row for it (no model called, no journey run).
 */
async function keyOfRecord(
  r: RequestRecord,
  reader: InferenceLogReader,
): Promise<CostKey | undefined> {
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
