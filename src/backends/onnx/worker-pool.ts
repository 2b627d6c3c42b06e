import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../contracts/logger.js';
import { syError } from '../../core/errors.js';
import type { Tensor } from './tensors.js';
import type { LoadResult, WorkerRequest, WorkerResponse } from './worker.js';

type Named = Tensor & { readonly name: string };

interface Pending {
  resolve(r: WorkerResponse & { ok: true }): void;
  reject(err: Error): void;
}

interface Slot {
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

  constructor(
    readonly size: number,
    private readonly intraOpThreads: number,
    private readonly log: Logger,
  ) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const { script, eval: isEval } = workerScript();
    const worker = new Worker(script, { eval: isEval });
    worker.unref();
    const slot: Slot = { worker, busy: 0, pending: new Map(), dead: false };
    // A worker counts as started once it has answered a message.
    let started = false;
    worker.on('message', (msg: WorkerResponse) => {
      started = true;
      const p = slot.pending.get(msg.id);
      if (p === undefined) return;
      slot.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg);
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

  private send(
    slot: Slot,
    msg: WorkerRequest,
    transfer: ArrayBuffer[] = [],
  ): Promise<WorkerResponse & { ok: true }> {
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
  ): Promise<{ outputs: Named[]; ms: number }> {
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
      const res = await this.send(slot, { kind: 'run', id: 0, key, feeds, outputs }, transfer);
      return { outputs: res.outputs ?? [], ms: res.ms ?? 0 };
    } catch (err) {
      if (err instanceof Error && err.name === 'SwitchyardError') throw err;
      throw syError('SY_ERR_INFERENCE_FAILED', err instanceof Error ? err.message : String(err));
    } finally {
      slot.busy--;
    }
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
