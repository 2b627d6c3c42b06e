import type { Clock } from '../../core/clock.js';
import { abortReason } from '../../core/deadline.js';
import { syError, type SwitchyardError } from '../../core/errors.js';
import type { StageHandle, StagePolicy } from './stage.js';
import { allocateRows, rowElements, sliceRows, type Tensor } from './tensors.js';
import { extend } from '../../core/objects.js';

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
  /** Who started it: a worker taking its stage, or this thread dispatching it. */
  readonly startedBy: 'worker' | 'gateway';
}

export interface BatcherHooks {
  onBatch?(stats: BatchStats): void;
  onDepth?(rows: number): void;
  onRejected?(reason: 'queue_full'): void;
  onExpired?(reason: 'deadline' | 'cancelled'): void;
}

/** A batch's outputs; `next` when a worker took the staged batch as soon as this one ended. */
export interface BatchResult {
  readonly outputs: Map<string, Tensor>;
  readonly ms: number;
  readonly next?: ClaimedBatch | undefined;
}

export interface ClaimedBatch {
  readonly stageId: number;
  /** When the worker took it, on the batcher's clock. */
  readonly startedAt: number;
  /** The stage entries it kept, in row order (expired and dropped requests left out). */
  readonly included: readonly number[];
  readonly result: Promise<BatchResult>;
}

/** Runs one batch: named inputs (rows concatenated) → named outputs with the same rows. */
export type RunBatch = (feeds: Map<string, Tensor>) => Promise<BatchResult>;

/**
 * Opens a stage (stage.ts) for the next batch, shaped like `like`, holding up to `capacity` rows;
 * undefined when these inputs cannot be staged. `onIdleTake` is called when an idle worker takes
 * it (a worker that takes it at the end of a batch says so in that batch's result instead).
 */
export type OpenStage = (
  like: Map<string, Tensor>,
  capacity: number,
  policy: StagePolicy,
  onIdleTake: (taken: ClaimedBatch) => void,
) => StageHandle | undefined;

export interface BatchRequest {
  readonly feeds: Map<string, Tensor>;
  readonly rows: number;
  /** Lower runs first (traffic class priority). */
  readonly priority: number;
  readonly signal: AbortSignal;
  readonly deadlineAt: number;
}

/** Requests copied into a stage, in row order. */
interface Staged {
  readonly handle: StageHandle;
  readonly signature: string;
  readonly requests: Queued[];
  rows: number;
  /** When this thread dispatches it if no worker has taken it (set once it is due). */
  fallbackAt?: number;
}

/**
 * How long after a stage is due this thread leaves it to the workers. A worker watching it
 * takes it on time; the fallback is for one that cannot (replaced after dying, say). Dispatching
 * sooner from here would bring back the event-loop trip the stage exists to avoid.
 */
const STAGE_FALLBACK_GRACE_MS = 5;

/**
 * Batches must take at least this long (recent average) for staging to pay. A stage costs a few
 * cross-thread messages per batch and wakes the worker more often; it saves an event-loop trip
 * per batch, which matters when the worker would sit idle for a sizeable part of a batch's time.
 * For sub-millisecond models (bench:onnx `intent-size`) the traffic cost the gateway more
 * throughput than the trip did, so their batches are dispatched from here.
 */
const STAGE_MIN_INFER_MS = 1;

interface Queued extends BatchRequest {
  readonly signature: string;
  readonly enqueuedAt: number;
  done: boolean;
  /** In a batch that is running: a cancel then only stops waiting for the answer. */
  running: boolean;
  /** The stage holding this request (still waiting, counted in the queue), and its entry. */
  stagedIn: Staged | undefined;
  stageIndex: number;
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
 *
 * With `openStage` (batching on, max > 1, and batches taking STAGE_MIN_INFER_MS or more on
 * average), waiting requests are copied into a stage in shared
 * memory (stage.ts), in queue order, up to `max` rows, and the workers apply the policy above
 * themselves: a free worker takes the stage the moment it is due, whether it just finished a
 * batch or sat idle, so no trip through this thread's event loop (busy parsing HTTP) sits between
 * a batch ending and the next starting. This thread keeps the same policy on its own timer and
 * dispatches a due stage no worker took. Staged requests still count as queued: one whose client
 * leaves or whose deadline passes is marked in the stage and left out when it is taken. A more
 * urgent request arriving once the stage is full waits for the batch after it.
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
  /** The stage being filled, if any. */
  private staged: Staged | undefined;
  /** Stages a worker closed (took), whose run this batcher has not yet been told about. */
  private readonly claimed = new Map<number, Staged>();
  /** Recent inference time per batch (exponentially weighted), ms; 0 before the first. */
  private inferMsAverage = 0;

  constructor(
    private settings: BatcherSettings,
    private readonly maxInFlight: number,
    private readonly run: RunBatch,
    private readonly clock: Clock,
    private readonly hooks: BatcherHooks = {},
    private readonly openStage?: OpenStage,
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
        if (q.stagedIn !== undefined) {
          q.stagedIn.handle.drop(q.stageIndex);
          this.unstage(q);
          this.hooks.onDepth?.(this.queuedRows);
          this.hooks.onExpired?.(
            abortReason(req.signal).code === 'SY_ERR_DEADLINE_EXCEEDED' ? 'deadline' : 'cancelled',
          );
          this.checkIdle();
        } else if (!q.running) {
          this.remove(q);
          this.hooks.onExpired?.(
            abortReason(req.signal).code === 'SY_ERR_DEADLINE_EXCEEDED' ? 'deadline' : 'cancelled',
          );
        }
        q.reject(abortReason(req.signal));
      };
      // extend, not a spread: nine keys the request lacks (core/objects.ts).
      const q: Queued = extend<BatchRequest, Omit<Queued, keyof BatchRequest>>(req, {
        signature: signatureOf(req.feeds),
        enqueuedAt: this.clock.now(),
        done: false,
        running: false,
        stagedIn: undefined,
        stageIndex: -1,
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
      });
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
    if (this.idle()) return Promise.resolve();
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

  /** Nothing queued or staged, nothing running, no taken stage unreported. */
  private idle(): boolean {
    return this.queuedRows === 0 && this.inFlight === 0 && this.claimed.size === 0;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length > 0 && this.idle()) {
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
    this.stageQueued();
    this.reclaim();
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

  /** Copies what waits into the stage, in run order, while it has room. */
  private stageQueued(): void {
    if (
      this.openStage === undefined ||
      this.settings.max <= 1 ||
      this.inferMsAverage < STAGE_MIN_INFER_MS
    )
      return;
    for (const q of [...this.ordered()]) {
      // It can only go alone, dispatched from here: stop filling stages ahead of it, or workers
      // that keep taking them would keep it waiting while new work arrives.
      if (q.rows > this.settings.max) break;
      if (!this.stageOne(q)) continue;
      // Out of its level, still counted in queuedRows until its batch starts.
      const level = this.levels.get(q.priority)!;
      level.splice(level.indexOf(q), 1);
    }
  }

  private stageOne(q: Queued): boolean {
    // Twice at most: the stage may have been taken by a worker a moment ago.
    for (let attempt = 0; attempt < 2; attempt++) {
      let st = this.staged;
      if (st === undefined) {
        const { max, delay_us, preferred } = this.settings;
        const handle = this.openStage!(
          q.feeds,
          max,
          { delayMs: delay_us / 1000, preferred },
          (taken) => this.takenWhileIdle(taken),
        );
        if (handle === undefined) return false;
        st = { handle, signature: q.signature, requests: [], rows: 0 };
        this.staged = st;
      }
      if (q.signature !== st.signature || st.rows + q.rows > this.settings.max) return false;
      const index = st.handle.tryAppend(q.feeds, q.rows, q.deadlineAt, q.enqueuedAt);
      if (index >= 0) {
        st.requests[index] = q;
        st.rows += q.rows;
        q.stagedIn = st;
        q.stageIndex = index;
        return true;
      }
      if (!st.handle.closed) return false;
      // A worker took the stage; its report is on the way.
      this.staged = undefined;
      if (st.rows > 0) this.claimed.set(st.handle.id, st);
    }
    return false;
  }

  /** A staged request stops counting as queued (its batch started, or it was dropped). */
  private unstage(q: Queued): void {
    if (q.stagedIn === undefined) return;
    q.stagedIn = undefined;
    this.queuedRows -= q.rows;
  }

  /** The stage a worker reports it took. */
  private takeClaimed(stageId: number): Staged | undefined {
    const st = this.staged;
    if (st !== undefined && st.handle.id === stageId) {
      this.staged = undefined;
      return st;
    }
    const taken = this.claimed.get(stageId);
    this.claimed.delete(stageId);
    return taken;
  }

  /** An idle worker took a stage: that batch is now running. */
  private takenWhileIdle(next: ClaimedBatch): void {
    const taken = this.takeClaimed(next.stageId);
    const batch = taken === undefined ? [] : this.startTaken(taken, next.included);
    if (batch.length === 0) {
      next.result.catch(() => undefined);
      this.checkIdle();
      return;
    }
    let rows = 0;
    for (const q of batch) rows += q.rows;
    this.inFlight++;
    void this.follow(batch, rows, next.startedAt, 'worker', next.result);
  }

  /**
   * A worker took `st` and kept the entries `included`, in row order: those are the batch. The
   * others expired before it was taken (their clients were answered already if they left).
   */
  private startTaken(st: Staged, included: readonly number[]): Queued[] {
    const batch = included.map((i) => st.requests[i]!);
    for (const q of batch) q.running = true;
    for (const q of st.requests) {
      if (q === undefined || q.stagedIn !== st) continue;
      this.unstage(q);
      if (q.running) continue;
      this.hooks.onExpired?.('deadline');
      q.reject(syError('SY_ERR_DEADLINE_EXCEEDED', 'expired while queued for inference'));
    }
    this.hooks.onDepth?.(this.queuedRows);
    return batch;
  }

  /**
   * The fallback for a stage no worker took: when a worker is free and the stage has been due for
   * STAGE_FALLBACK_GRACE_MS, close it and dispatch it from here; until then, wake up when it will
   * have been. Then fail the stages taken by a worker that died before saying so (their answers
   * will never come).
   */
  private reclaim(): void {
    this.dispatchStage();
    for (const [id, st] of this.claimed) {
      if (!st.handle.abandoned()) continue;
      this.claimed.delete(id);
      const e = syError('SY_ERR_INFERENCE_FAILED', 'the inference worker running this batch died');
      for (const q of st.requests) {
        if (q === undefined) continue;
        this.unstage(q);
        if (!q.done) q.reject(e);
      }
    }
  }

  private dispatchStage(): void {
    const st = this.staged;
    if (st === undefined || this.inFlight >= this.maxInFlight) return;
    const now = this.clock.now();
    const dueAt = this.stageDueAt(st);
    if (dueAt > now) {
      this.arm(dueAt + STAGE_FALLBACK_GRACE_MS);
      return;
    }
    // Due by size (-Infinity): from now. Overdue by more than the grace already: now.
    const dueSince = dueAt === -Infinity ? now : Math.max(dueAt, now - STAGE_FALLBACK_GRACE_MS);
    st.fallbackAt ??= dueSince + STAGE_FALLBACK_GRACE_MS;
    if (st.fallbackAt > now) {
      this.arm(st.fallbackAt);
      return;
    }
    this.staged = undefined;
    if (!st.handle.close()) {
      // A worker took it; its report is on the way.
      if (st.rows > 0) this.claimed.set(st.handle.id, st);
      return;
    }
    const batch: Queued[] = [];
    let rows = 0;
    for (const q of st.requests) {
      if (q === undefined || q.stagedIn !== st) continue;
      this.unstage(q);
      if (q.deadlineAt <= now) {
        this.hooks.onExpired?.('deadline');
        q.reject(syError('SY_ERR_DEADLINE_EXCEEDED', 'expired while queued for inference'));
        continue;
      }
      q.running = true;
      batch.push(q);
      rows += q.rows;
    }
    if (batch.length > 0) this.launch(batch, rows);
  }

  /** When the stage is due by the batching policy (the workers apply the same one). */
  private stageDueAt(st: Staged): number {
    let rows = 0;
    let oldest = Infinity;
    for (const q of st.requests) {
      if (q === undefined || q.stagedIn !== st) continue;
      rows += q.rows;
      if (q.enqueuedAt < oldest) oldest = q.enqueuedAt;
    }
    const { max, delay_us, preferred } = this.settings;
    // Nothing live in it, or due by size: due now.
    if (rows === 0 || rows >= max || preferred.some((p) => p <= rows)) return -Infinity;
    return oldest + delay_us / 1000;
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
    this.launch(batch, rows);
  }

  private launch(batch: readonly Queued[], rows: number): void {
    this.inFlight++;
    void this.follow(batch, rows, this.clock.now(), 'gateway', this.run(concatenate(batch, rows)));
  }

  /** A batch came back: the next one goes to the worker before this one's callers are answered. */
  private finished(): void {
    this.inFlight--;
    this.schedule();
  }

  /**
   * Waits for a running batch and answers its callers. When a worker took the stage right after
   * it, that batch is followed the same way and the in-flight count stays as it is.
   */
  private async follow(
    batch: readonly Queued[],
    rows: number,
    startedAt: number,
    startedBy: BatchStats['startedBy'],
    running: Promise<BatchResult>,
  ): Promise<void> {
    let result: BatchResult;
    try {
      result = await running;
    } catch (err) {
      this.finished();
      const e =
        err instanceof Error && 'code' in err
          ? (err as SwitchyardError)
          : syError('SY_ERR_INFERENCE_FAILED', String(err));
      for (const q of batch) if (!q.done) q.reject(e);
      return;
    }
    const finishedAt = this.clock.now();
    const next = result.next;
    const taken = next === undefined ? undefined : this.takeClaimed(next.stageId);
    const nextBatch = taken === undefined ? [] : this.startTaken(taken, next!.included);
    if (nextBatch.length > 0) {
      let nextRows = 0;
      for (const q of nextBatch) nextRows += q.rows;
      void this.follow(nextBatch, nextRows, next!.startedAt, 'worker', next!.result);
    } else {
      // A run this batcher does not know of (or an empty one) is only waited out.
      next?.result.catch(() => undefined);
      this.finished();
    }
    const { outputs, ms } = result;
    this.inferMsAverage = this.inferMsAverage === 0 ? ms : 0.8 * this.inferMsAverage + 0.2 * ms;
    let at = 0;
    for (const q of batch) {
      const mine = new Map<string, Tensor>();
      for (const [name, t] of outputs)
        mine.set(name, t.dims.length > 0 && t.dims[0] === rows ? sliceRows(t, at, q.rows) : t);
      at += q.rows;
      if (!q.done) q.resolve(mine);
    }
    this.hooks.onBatch?.({
      rows,
      requests: batch.length,
      queueDelaysMs: batch.map((q) => startedAt - q.enqueuedAt),
      inferMs: ms,
      startedAt,
      finishedAt,
      startedBy,
    });
    this.checkIdle();
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
