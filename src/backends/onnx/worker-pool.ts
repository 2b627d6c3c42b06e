import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../contracts/logger.js';
import { syError } from '../../core/errors.js';
import {
  sharedNow,
  stageLayout,
  StageWriter,
  type StageHandle,
  type StagePolicy,
} from './stage.js';
import type { Tensor } from './tensors.js';
import type { Claimed, LoadResult, WorkerRequest, WorkerResponse } from './worker.js';

type Named = Tensor & { readonly name: string };

/** A batch's answer; `next`, when a worker took the model's staged batch right after it. */
export interface PoolRunResult {
  readonly outputs: Named[];
  readonly ms: number;
  readonly next?: ClaimedRun;
}

/** A staged batch a worker took and is running. */
export interface ClaimedRun {
  readonly stageId: number;
  /** When the worker took it, on this thread's performance.now() scale. */
  readonly startedAt: number;
  /** The stage entries it kept (dropped and expired requests left out), in row order. */
  readonly included: readonly number[];
  /** Its answer (nothing runs when `included` is empty: an empty answer). */
  readonly result: Promise<PoolRunResult>;
}

interface Pending {
  resolve(r: PoolRunResult & { readonly load?: LoadResult }): void;
  reject(err: Error): void;
}

interface Slot {
  /** Unique per started worker; written into the stages it claims. */
  readonly tag: number;
  worker: Worker;
  /** Run messages sent and not answered: the pool sends work to the least loaded worker. */
  busy: number;
  readonly pending: Map<number, Pending>;
  /** The worker died and will not be replaced: calls to it fail at once. */
  dead: boolean;
}

/**
 * How to start the worker: the compiled `worker.js`, or (tests and `tsx` runs from src/) a small
 * bootstrap that registers tsx inside the worker and then imports `worker.ts`. Node 20 ignores
 * `--import tsx` in a worker's execArgv, so the loader has to be registered from inside.
 */
function workerScript(): { script: string | URL; eval: boolean } {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return { script: js, eval: false };
  const ts = new URL('./worker.ts', import.meta.url).href;
  // import.meta.resolve picks tsx's ESM build; where it is missing, resolve from the cwd.
  const tsx =
    typeof import.meta.resolve === 'function' ? import.meta.resolve('tsx/esm/api') : 'tsx/esm/api';
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); }).catch((err) => { throw err; });`;
  return { script: code, eval: true };
}

/** A worker that dies before it is up this many times in a row is not started again. */
const MAX_START_FAILURES = 3;

/**
 * A fixed pool of worker threads, each holding a session for every loaded model version. A
 * worker that dies fails its in-flight runs (as SY_ERR_INFERENCE_FAILED), is replaced, and the
 * replacement loads every model again.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  /** What every worker must have loaded: key → path. */
  private readonly loaded = new Map<string, string>();
  private closed = false;
  private startFailures = 0;
  private nextTag = 1;
  private nextStageId = 1;
  /** Open stages' owners, told when an idle worker takes their stage. */
  private readonly stageOwners = new Map<number, (run: ClaimedRun) => void>();

  constructor(
    readonly size: number,
    private readonly intraOpThreads: number,
    private readonly log: Logger,
  ) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const { script, eval: isEval } = workerScript();
    const tag = this.nextTag++;
    const worker = new Worker(script, { eval: isEval, workerData: tag });
    worker.unref();
    const slot: Slot = { tag, worker, busy: 0, pending: new Map(), dead: false };
    // A worker counts as started once it has answered a message.
    let started = false;
    worker.on('message', (msg: WorkerResponse) => {
      started = true;
      const p = slot.pending.get(msg.id);
      if (p === undefined && msg.ok && msg.claimed !== undefined) {
        // An idle worker took a stage on its own (or the run it followed is no longer awaited).
        const run = this.claimedRun(slot, msg.claimed);
        const owner = this.stageOwners.get(msg.claimed.stageId);
        this.stageOwners.delete(msg.claimed.stageId);
        if (owner !== undefined) owner(run);
        else run.result.catch(() => undefined);
        return;
      }
      if (p === undefined) return;
      slot.pending.delete(msg.id);
      if (msg.ok) p.resolve(this.resultOf(slot, msg));
      else p.reject(new Error(msg.error));
    });
    const fail = (why: string): void => {
      if (this.closed || slot.dead) return;
      slot.dead = true;
      for (const p of slot.pending.values())
        p.reject(syError('SY_ERR_INFERENCE_FAILED', `the inference worker ${why}`));
      slot.pending.clear();
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      // A worker that cannot even start (a broken install) would be replaced forever: stop.
      this.startFailures = started ? 0 : this.startFailures + 1;
      if (this.startFailures >= MAX_START_FAILURES) {
        this.log.error({ why }, 'inference worker cannot start; not starting it again');
        return;
      }
      this.log.error({ why }, 'inference worker died; starting a new one');
      const fresh = this.spawn();
      this.slots[i] = fresh;
      for (const [key, path] of this.loaded) {
        void this.send(fresh, {
          kind: 'load',
          id: 0,
          key,
          path,
          intraOpThreads: this.intraOpThreads,
        }).catch((err: unknown) =>
          this.log.error({ key, err: String(err) }, 'reloading a model in a new worker failed'),
        );
      }
    };
    worker.on('error', (err) => fail(`failed: ${err.message}`));
    worker.on('exit', (code) => fail(`exited with code ${code}`));
    return slot;
  }

  /**
   * A run's answer. When the worker took a staged batch right after it, the answer to that one
   * is awaited from here on, before any later message can arrive.
   */
  private resultOf(
    slot: Slot,
    msg: WorkerResponse & { ok: true },
  ): PoolRunResult & { readonly load?: LoadResult } {
    const outputs = msg.outputs ?? [];
    const ms = msg.ms ?? 0;
    if (msg.claimed === undefined)
      return msg.load === undefined ? { outputs, ms } : { outputs, ms, load: msg.load };
    this.stageOwners.delete(msg.claimed.stageId);
    return { outputs, ms, next: this.claimedRun(slot, msg.claimed) };
  }

  /** A stage `slot` took: its answer will come with id `-stageId` (none when it kept nothing). */
  private claimedRun(slot: Slot, claimed: Claimed): ClaimedRun {
    let result: Promise<PoolRunResult> = Promise.resolve({ outputs: [], ms: 0 });
    if (claimed.included.length > 0 && slot.dead) {
      // The worker died after posting the claim ('error' can overtake its last messages).
      result = Promise.reject(
        syError('SY_ERR_INFERENCE_FAILED', 'the inference worker running this batch died'),
      );
    } else if (claimed.included.length > 0) {
      slot.busy++;
      const running = new Promise<PoolRunResult>((resolve, reject) => {
        slot.pending.set(-claimed.stageId, { resolve, reject });
      }).finally(() => slot.busy--);
      result = running.catch((err: unknown) => {
        throw asInferenceError(err);
      });
      // Whoever follows the batch handles its failure; this chain only keeps `busy` right.
      running.catch(() => undefined);
    }
    return {
      stageId: claimed.stageId,
      startedAt: claimed.at - sharedNow() + performance.now(),
      included: claimed.included,
      result,
    };
  }

  private send(
    slot: Slot,
    msg: WorkerRequest,
    transfer: ArrayBuffer[] = [],
  ): Promise<PoolRunResult & { load?: LoadResult }> {
    const id = this.nextId++;
    const withId = { ...msg, id } as WorkerRequest;
    if (slot.dead)
      return Promise.reject(syError('SY_ERR_INFERENCE_FAILED', 'no inference worker is running'));
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      try {
        slot.worker.postMessage(withId, transfer);
      } catch {
        // A buffer that cannot be transferred is copied instead.
        slot.worker.postMessage(withId);
      }
    });
  }

  /** Loads a model into every worker; resolves with its inputs and outputs, or rejects. */
  async load(key: string, path: string): Promise<LoadResult> {
    const results = await Promise.all(
      this.slots.map((s) =>
        this.send(s, { kind: 'load', id: 0, key, path, intraOpThreads: this.intraOpThreads }),
      ),
    );
    this.loaded.set(key, path);
    return results[0]!.load!;
  }

  async unload(key: string): Promise<void> {
    this.loaded.delete(key);
    await Promise.all(
      this.slots.map((s) => this.send(s, { kind: 'unload', id: 0, key }).catch(() => undefined)),
    );
  }

  /** Runs one batch on the least busy worker. Input buffers are transferred, so the caller must not reuse them. */
  async run(
    key: string,
    feeds: readonly Named[],
    outputs: readonly string[],
  ): Promise<PoolRunResult> {
    if (this.closed) throw syError('SY_ERR_NOT_READY', 'the inference pool is closed');
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.busy < slot.busy) slot = s;
    const transfer: ArrayBuffer[] = [];
    for (const f of feeds) {
      const buf = (f.data as Float32Array).buffer;
      if (buf instanceof ArrayBuffer && !transfer.includes(buf)) transfer.push(buf);
    }
    slot.busy++;
    try {
      return await this.send(slot, { kind: 'run', id: 0, key, feeds, outputs }, transfer);
    } catch (err) {
      throw asInferenceError(err);
    } finally {
      slot.busy--;
    }
  }

  /**
   * Opens a stage for the next batch of `key` (stage.ts) and shows it to every worker: the first
   * to finish a batch of `key`, or an idle one, takes it (`onIdleTake` hears of the latter).
   * Undefined when the inputs cannot be staged (strings, booleans); the batcher then dispatches as
   * usual.
   */
  openStage(
    key: string,
    like: Map<string, Tensor>,
    capacity: number,
    policy: StagePolicy,
    outputs: readonly string[],
    onIdleTake: (run: ClaimedRun) => void,
  ): StageHandle | undefined {
    if (this.closed) return undefined;
    const layout = stageLayout(like, capacity);
    if (layout === undefined) return undefined;
    const writer = new StageWriter(layout, policy);
    const stageId = this.nextStageId++;
    this.stageOwners.set(stageId, onIdleTake);
    for (const slot of this.slots) {
      if (slot.dead) continue;
      slot.worker.postMessage({
        kind: 'stage',
        id: 0,
        key,
        stageId,
        sab: writer.sab,
        layout,
        policy,
        outputs,
      } satisfies WorkerRequest);
    }
    return {
      id: stageId,
      get closed() {
        return writer.closed;
      },
      tryAppend: (feeds, rows, deadlineAt, enqueuedAt) => {
        // performance.now() scale → the clock the workers read.
        const shift = sharedNow() - performance.now();
        return writer.tryAppend(feeds, rows, deadlineAt + shift, enqueuedAt + shift);
      },
      drop: (index) => writer.drop(index),
      close: () => {
        if (!writer.close()) return false;
        this.stageOwners.delete(stageId);
        return true;
      },
      abandoned: () => {
        const tag = writer.claimer;
        const lost = tag !== 0 && !this.slots.some((s) => s.tag === tag && !s.dead);
        if (lost) this.stageOwners.delete(stageId);
        return lost;
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    // A dead worker is not terminated again (its terminate() may never settle).
    await Promise.all(this.slots.filter((s) => !s.dead).map((s) => s.worker.terminate()));
    for (const s of this.slots)
      for (const p of s.pending.values())
        p.reject(syError('SY_ERR_NOT_READY', 'the inference pool closed'));
  }
}

function asInferenceError(err: unknown): Error {
  if (err instanceof Error && err.name === 'SwitchyardError') return err;
  return syError('SY_ERR_INFERENCE_FAILED', err instanceof Error ? err.message : String(err));
}
