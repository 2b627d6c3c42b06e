import type { ClusterPeer } from '../contracts/cluster.js';
import type {
  QuotaCharge,
  QuotaDecision,
  QuotaLimiter,
  QuotaReceipt,
  QuotaWindow,
} from '../contracts/limiter.js';
import type { MemoryLimiter } from './memory-limiter.js';

/** One limiter operation, as a worker sends it to the primary. */
export type LimiterOp =
  | { readonly op: 'reserve'; readonly charges: readonly QuotaCharge[] }
  | { readonly op: 'settle'; readonly receipt: QuotaReceipt; readonly actual: number }
  | { readonly op: 'usage'; readonly key: string; readonly window: QuotaWindow };

export const LIMITER_TOPIC = 'limiter';

/** The primary's side: runs a batch of operations, in order, on the one in-process limiter. */
export function runLimiterOps(limiter: MemoryLimiter, ops: readonly LimiterOp[]): unknown[] {
  return ops.map((o) => {
    switch (o.op) {
      case 'reserve':
        return limiter.reserveSync(o.charges);
      case 'settle':
        limiter.settleSync(o.receipt, o.actual);
        return null;
      case 'usage':
        return limiter.usageSync(o.key, o.window);
    }
  });
}

interface Waiting {
  readonly op: LimiterOp;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/**
 * The embedded quota limiter of a worker process (`serve --workers N`, #17): every operation is
 * decided by the one `MemoryLimiter` the primary process holds, so N workers count exactly what
 * one process would. Operations started in one turn of the event loop go out as one message
 * (one IPC round trip for a burst of requests). A worker whose primary is gone refuses (it is
 * about to exit with it): it never counts on its own.
 */
export class PeerLimiter implements QuotaLimiter {
  private batch: Waiting[] = [];

  constructor(private readonly peer: ClusterPeer) {}

  reserve(charges: readonly QuotaCharge[]): Promise<QuotaDecision> {
    return this.enqueue({ op: 'reserve', charges }).then(
      (d) => d as QuotaDecision,
      (): QuotaDecision => ({
        allowed: false,
        refused: charges[0]?.key ?? '',
        retryAfterMs: 1_000,
        receipts: [],
        shared: true,
      }),
    );
  }

  async settle(receipt: QuotaReceipt, actual: number): Promise<void> {
    if (actual === receipt.amount) return;
    await this.enqueue({ op: 'settle', receipt, actual }).catch(() => undefined);
  }

  usage(key: string, window: QuotaWindow): Promise<number> {
    return this.enqueue({ op: 'usage', key, window }).then(
      (n) => n as number,
      () => 0,
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private enqueue(op: LimiterOp): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) setImmediate(() => this.flush());
      this.batch.push({ op, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    this.peer
      .request(
        LIMITER_TOPIC,
        batch.map((w) => w.op),
      )
      .then(
        (results) => {
          const list = results as unknown[];
          batch.forEach((w, i) => w.resolve(list[i]));
        },
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          for (const w of batch) w.reject(e);
        },
      );
  }
}
