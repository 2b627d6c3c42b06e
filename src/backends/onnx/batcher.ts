import type { Clock } from '../../core/clock.js';
import { abortReason } from '../../core/deadline.js';
import { syError, type SwitchyardError } from '../../core/errors.js';
import { allocateRows, rowElements, sliceRows, type Tensor } from './tensors.js';

export interface BatcherSettings {
  /** Largest batch, in rows along dimension 0. */
  readonly max: number;
  /** How long the oldest queued request may wait for company, in microseconds. */
  readonly delay_us: number;
  /** Batch sizes worth dispatching at once, without waiting out the delay (Triton's preferred_batch_size). */
  readonly preferred: readonly number[];
  /** Most rows that may wait; beyond it requests are refused with SY_ERR_QUEUE_FULL. */
  readonly queue: number;
}

export interface BatchStats {
  readonly rows: number;
  readonly requests: number;
  /** Each request's wait in the queue, ms. */
  readonly queueDelaysMs: readonly number[];
  readonly inferMs: number;
  /** Clock ms: when the batch left the queue, and when its answer was back. */
  readonly startedAt: number;
  readonly finishedAt: number;
}

export interface BatcherHooks {
  onBatch?(stats: BatchStats): void;
  onDepth?(rows: number): void;
  onRejected?(reason: 'queue_full'): void;
  onExpired?(reason: 'deadline' | 'cancelled'): void;
}

/** Runs one batch: named inputs (rows concatenated) → named outputs with the same rows. */
export type RunBatch = (
  feeds: Map<string, Tensor>,
) => Promise<{ outputs: Map<string, Tensor>; ms: number }>;

export interface BatchRequest {
  readonly feeds: Map<string, Tensor>;
  readonly rows: number;
  /** Lower runs first (traffic class priority). */
  readonly priority: number;
  readonly signal: AbortSignal;
  readonly deadlineAt: number;
}

interface Queued extends BatchRequest {
  readonly signature: string;
  readonly enqueuedAt: number;
  done: boolean;
  /** In a batch that is running: a cancel then only stops waiting for the answer. */
  running: boolean;
  resolve(outputs: Map<string, Tensor>): void;
  reject(err: SwitchyardError): void;
  cleanup(): void;
}

/** Requests batch together only when every input has the same type and non-batch dimensions. */
function signatureOf(feeds: Map<string, Tensor>): string {
  let s = '';
  for (const [name, t] of feeds) s += `${name}:${t.type}:${t.dims.slice(1).join('x')};`;
  return s;
}

/**
 * A dynamic batcher for one model version, configured as Triton's: requests queue by priority;
 * a batch goes out as soon as it reaches `max` rows or a preferred size, or when the oldest
 * request has waited `delay_us`. At most `maxInFlight` batches run at once, so a busy model
 * naturally batches more. Requests whose deadline passed or whose client left are dropped before
 * they run; each caller gets exactly its own rows back.
 */
export class DynamicBatcher {
  /** One FIFO per priority level. */
  private readonly levels = new Map<number, Queued[]>();
  private queuedRows = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private settings: BatcherSettings,
    private readonly maxInFlight: number,
    private readonly run: RunBatch,
    private readonly clock: Clock,
    private readonly hooks: BatcherHooks = {},
  ) {}

  configure(settings: BatcherSettings): void {
    this.settings = settings;
  }

  get depth(): number {
    return this.queuedRows;
  }

  get running(): number {
    return this.inFlight;
  }

  submit(req: BatchRequest): Promise<Map<string, Tensor>> {
    if (this.closed)
      return Promise.reject(syError('SY_ERR_MODEL_NOT_READY', 'the model version is unloading'));
    if (req.signal.aborted) return Promise.reject(abortReason(req.signal));
    if (this.queuedRows + req.rows > this.settings.queue) {
      this.hooks.onRejected?.('queue_full');
      return Promise.reject(
        syError('SY_ERR_QUEUE_FULL', `${this.queuedRows} rows are already waiting`, {
          retryAfterS: 1,
        }),
      );
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        if (q.done) return;
        if (!q.running) {
          this.remove(q);
          this.hooks.onExpired?.(
            abortReason(req.signal).code === 'SY_ERR_DEADLINE_EXCEEDED' ? 'deadline' : 'cancelled',
          );
        }
        q.reject(abortReason(req.signal));
      };
      const q: Queued = {
        ...req,
        signature: signatureOf(req.feeds),
        enqueuedAt: this.clock.now(),
        done: false,
        running: false,
        resolve: (v) => {
          q.done = true;
          q.cleanup();
          resolve(v);
        },
        reject: (e) => {
          q.done = true;
          q.cleanup();
          reject(e);
        },
        cleanup: () => req.signal.removeEventListener('abort', onAbort),
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      let level = this.levels.get(req.priority);
      if (level === undefined) {
        level = [];
        this.levels.set(req.priority, level);
      }
      level.push(q);
      this.queuedRows += req.rows;
      this.hooks.onDepth?.(this.queuedRows);
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or running (used before unloading a version). */
  drain(): Promise<void> {
    if (this.queuedRows === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuses new work; queued and running work still completes. */
  close(): void {
    this.closed = true;
  }

  private remove(q: Queued): void {
    const level = this.levels.get(q.priority);
    const i = level?.indexOf(q) ?? -1;
    if (level !== undefined && i >= 0) {
      level.splice(i, 1);
      this.queuedRows -= q.rows;
      this.hooks.onDepth?.(this.queuedRows);
      this.checkIdle();
    }
  }

  private checkIdle(): void {
    if (this.queuedRows === 0 && this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Requests in run order: priority first, then arrival. Drops the expired ones on the way. */
  private *ordered(): Generator<Queued, void, undefined> {
    const priorities = [...this.levels.keys()].sort((a, b) => a - b);
    const now = this.clock.now();
    for (const p of priorities) {
      const level = this.levels.get(p)!;
      for (let i = 0; i < level.length;) {
        const q = level[i]!;
        if (q.deadlineAt <= now) {
          level.splice(i, 1);
          this.queuedRows -= q.rows;
          this.hooks.onExpired?.('deadline');
          q.reject(syError('SY_ERR_DEADLINE_EXCEEDED', 'expired while queued for inference'));
          continue;
        }
        yield q;
        i++;
      }
    }
  }

  private schedule(): void {
    while (this.inFlight < this.maxInFlight && this.queuedRows > 0) {
      const first = this.ordered().next();
      if (first.done === true) break;
      const head: Queued = first.value;
      let compatible = 0;
      let oldest = head.enqueuedAt;
      for (const q of this.ordered()) {
        if (q.signature !== head.signature) continue;
        compatible += q.rows;
        if (q.enqueuedAt < oldest) oldest = q.enqueuedAt;
      }
      const { max, delay_us, preferred } = this.settings;
      const waited = (this.clock.now() - oldest) * 1000;
      let target = 0;
      if (compatible >= max) target = max;
      else {
        for (const p of preferred) if (p <= compatible && p > target) target = p;
        if (target === 0 && waited >= delay_us) target = compatible;
      }
      if (target === 0) {
        this.arm(oldest + delay_us / 1000);
        break;
      }
      this.dispatch(head.signature, target);
    }
    this.hooks.onDepth?.(this.queuedRows);
    this.checkIdle();
  }

  private arm(at: number): void {
    if (this.timer !== undefined && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.schedule();
      },
      Math.max(0, at - this.clock.now()),
    );
  }

  /** Takes requests of one signature, in order, up to `target` rows (a lone oversized request goes alone). */
  private dispatch(signature: string, target: number): void {
    const batch: Queued[] = [];
    let rows = 0;
    for (const q of this.ordered()) {
      if (q.signature !== signature) continue;
      if (rows > 0 && rows + q.rows > target) continue;
      batch.push(q);
      rows += q.rows;
      if (rows >= target) break;
    }
    for (const q of batch) {
      const level = this.levels.get(q.priority)!;
      level.splice(level.indexOf(q), 1);
      this.queuedRows -= q.rows;
      q.running = true;
    }
    if (batch.length === 0) return;
    this.inFlight++;
    const started = this.clock.now();
    const queueDelaysMs = batch.map((q) => started - q.enqueuedAt);
    void this.execute(batch, rows).then((result) => {
      if (result === undefined) return;
      this.hooks.onBatch?.({
        rows,
        requests: batch.length,
        queueDelaysMs,
        inferMs: result.ms,
        startedAt: started,
        finishedAt: result.finishedAt,
      });
    });
  }

  /** A batch came back: the next one goes to the worker before this one's callers are answered. */
  private finished(): void {
    this.inFlight--;
    this.schedule();
  }

  private async execute(
    batch: readonly Queued[],
    rows: number,
  ): Promise<{ ms: number; finishedAt: number } | undefined> {
    let result;
    try {
      result = await this.run(concatenate(batch, rows));
    } catch (err) {
      this.finished();
      const e =
        err instanceof Error && 'code' in err
          ? (err as SwitchyardError)
          : syError('SY_ERR_INFERENCE_FAILED', String(err));
      for (const q of batch) if (!q.done) q.reject(e);
      return undefined;
    }
    const finishedAt = this.clock.now();
    this.finished();
    const { outputs, ms } = result;
    let at = 0;
    for (const q of batch) {
      const mine = new Map<string, Tensor>();
      for (const [name, t] of outputs)
        mine.set(name, t.dims.length > 0 && t.dims[0] === rows ? sliceRows(t, at, q.rows) : t);
      at += q.rows;
      if (!q.done) q.resolve(mine);
    }
    return { ms, finishedAt };
  }
}

/** The batch's inputs, rows of each request one after another (a lone request's as they are). */
function concatenate(batch: readonly Queued[], rows: number): Map<string, Tensor> {
  const first = batch[0]!;
  if (batch.length === 1) return first.feeds;
  const feeds = new Map<string, Tensor>();
  for (const [name, like] of first.feeds) {
    const out = allocateRows(like, rows);
    const size = rowElements(like.dims);
    let at = 0;
    for (const q of batch) {
      const src = q.feeds.get(name)!;
      if (Array.isArray(out.data))
        out.data.splice(at * size, q.rows * size, ...(src.data as string[]));
      else (out.data as Float32Array).set(src.data as Float32Array, at * size);
      at += q.rows;
    }
    feeds.set(name, out);
  }
  return feeds;
}
