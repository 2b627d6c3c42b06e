import { setPriority } from 'node:os';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import {
  claimStage,
  sharedNow,
  stageDueIn,
  watchStage,
  type StageLayout,
  type StagePolicy,
} from './stage.js';
import type { OrtType, Tensor, TensorSpec } from './tensors.js';
import { extend } from '../../core/objects.js';

/**
 * A worker thread that owns ONNX Runtime sessions. The main thread never runs inference: it
 * sends `run` messages with tensors whose buffers are transferred (not copied), and gets the
 * outputs back the same way.
 */
export type WorkerRequest =
  | {
      readonly kind: 'load';
      readonly id: number;
      readonly key: string;
      readonly path: string;
      readonly intraOpThreads: number;
    }
  | { readonly kind: 'unload'; readonly id: number; readonly key: string }
  | {
      readonly kind: 'run';
      readonly id: number;
      readonly key: string;
      readonly feeds: readonly (Tensor & { readonly name: string })[];
      readonly outputs: readonly string[];
    }
  | {
      /** The next batch of `key` is being staged in `sab` (stage.ts); no answer is sent. */
      readonly kind: 'stage';
      readonly id: number;
      readonly key: string;
      readonly stageId: number;
      readonly sab: SharedArrayBuffer;
      readonly layout: StageLayout;
      readonly policy: StagePolicy;
      readonly outputs: readonly string[];
    };

/**
 * A staged batch the worker took (stage.ts). `at`: when, in `sharedNow()` ms (the same clock on
 * every thread). `included`: the stage entries it kept, in row
 * order; when none, nothing runs and no answer with `-stageId` follows.
 */
export interface Claimed {
  readonly stageId: number;
  readonly at: number;
  readonly included: readonly number[];
}

export interface LoadResult {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

export type WorkerResponse =
  | {
      readonly id: number;
      readonly ok: true;
      readonly load?: LoadResult;
      readonly outputs?: (Tensor & { readonly name: string })[];
      readonly ms?: number;
      /** After this run the worker took the model's staged batch; its answer has id `-stageId`. */
      readonly claimed?: Claimed;
    }
  | { readonly id: number; readonly ok: false; readonly error: string };

const sessions = new Map<string, ort.InferenceSession>();

function specs(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => {
    if (!m.isTensor)
      throw new Error(`${m.name} is not a tensor; only tensor inputs and outputs are served`);
    const type = m.type as OrtType;
    return {
      name: m.name,
      type,
      shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    };
  });
}

/** A zero-filled feed of batch 1 for each input, to prove a freshly loaded graph really runs. */
function warmupFeeds(inputs: readonly TensorSpec[]): Record<string, ort.Tensor> | undefined {
  const feeds: Record<string, ort.Tensor> = {};
  for (const s of inputs) {
    if (s.shape.slice(1).some((d) => d < 0) || s.type === 'string') return undefined;
    const dims = s.shape.length === 0 ? [] : [1, ...s.shape.slice(1)];
    const n = dims.reduce((a, b) => a * b, 1);
    const data =
      s.type === 'int64'
        ? new BigInt64Array(n)
        : s.type === 'uint64'
          ? new BigUint64Array(n)
          : s.type === 'float64'
            ? new Float64Array(n)
            : s.type === 'int32'
              ? new Int32Array(n)
              : s.type === 'float32'
                ? new Float32Array(n)
                : undefined;
    if (data === undefined) return undefined;
    feeds[s.name] = new ort.Tensor(s.type, data, dims);
  }
  return feeds;
}

type Work = Exclude<WorkerRequest, { kind: 'stage' }>;

async function handle(msg: Work): Promise<{ response: WorkerResponse; transfer: ArrayBuffer[] }> {
  switch (msg.kind) {
    case 'load': {
      const session = await ort.InferenceSession.create(msg.path, {
        intraOpNumThreads: msg.intraOpThreads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      const load = { inputs: specs(session.inputMetadata), outputs: specs(session.outputMetadata) };
      const warm = warmupFeeds(load.inputs);
      if (warm !== undefined) await session.run(warm);
      const old = sessions.get(msg.key);
      sessions.set(msg.key, session);
      if (old !== undefined) await old.release();
      return { response: { id: msg.id, ok: true, load }, transfer: [] };
    }
    case 'unload': {
      const s = sessions.get(msg.key);
      sessions.delete(msg.key);
      stages.delete(msg.key);
      if (s !== undefined) await s.release();
      return { response: { id: msg.id, ok: true }, transfer: [] };
    }
    case 'run': {
      const session = sessions.get(msg.key);
      if (session === undefined) throw new Error(`model ${msg.key} is not loaded in this worker`);
      const feeds: Record<string, ort.Tensor> = {};
      for (const f of msg.feeds) feeds[f.name] = new ort.Tensor(f.type, f.data, [...f.dims]);
      const t0 = performance.now();
      const result = await session.run(feeds, [...msg.outputs]);
      const ms = performance.now() - t0;
      const outputs: (Tensor & { name: string })[] = [];
      const transfer: ArrayBuffer[] = [];
      for (const name of msg.outputs) {
        const t = result[name]!;
        const data = t.data as Float32Array;
        outputs.push({ name, type: t.type as OrtType, dims: [...t.dims], data });
        if (
          ArrayBuffer.isView(data) &&
          data.buffer instanceof ArrayBuffer &&
          !transfer.includes(data.buffer)
        )
          transfer.push(data.buffer);
      }
      return { response: { id: msg.id, ok: true, outputs, ms }, transfer };
    }
  }
}

/**
 * How much lower this thread's CPU priority is than the event loop's. On Linux the nice value is
 * per thread, so this lowers only the inference thread: when cores are short, the event loop
 * (which admits, batches and answers requests) runs first and inference takes the rest, keeping
 * the loop's p99 delay low under saturation (DESIGN.md: ≤ 20 ms). bench/onnx.ts measures it.
 */
const INFERENCE_NICE = 5;

/** The latest stage of each model (stage.ts): its next batch, taken when it is due and this worker is free. */
const stages = new Map<
  string,
  {
    stageId: number;
    sab: SharedArrayBuffer;
    layout: StageLayout;
    policy: StagePolicy;
    outputs: readonly string[];
  }
>();
/** This worker's tag, written into the stages it claims (the pool tells dead workers' claims apart). */
const TAG = typeof workerData === 'number' ? workerData : 0;

const port = parentPort;
if (port !== null) {
  try {
    setPriority(INFERENCE_NICE); // pid 0: this thread only
  } catch {
    // Not permitted (some containers): run at the process's priority.
  }
  // One piece of work at a time: a run blocks this thread (that is why it is not the main thread).
  const queue: Work[] = [];
  let pumping = false;
  const accept = (msg: WorkerRequest): void => {
    if (msg.kind === 'stage') stages.set(msg.key, msg);
    else queue.push(msg);
  };
  /** Messages that arrived while a run held the thread, in order, without a trip round the loop. */
  const drain = (): void => {
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port))
      accept(m.message as WorkerRequest);
  };
  /**
   * Takes the model's stage if it is due, unless other work is waiting (that came first; the
   * stage is looked at again when the queue is empty).
   */
  const claimNext = (key: string): Claimed | undefined => {
    drain();
    const stage = stages.get(key);
    if (stage === undefined || queue.length > 0) return undefined;
    const at = sharedNow();
    if (stageDueIn(stage.sab, stage.layout, stage.policy, at) !== 0) return undefined;
    const taken = claimStage(stage.sab, stage.layout, TAG, at);
    if (taken === undefined) return undefined;
    stages.delete(key);
    if (taken.rows > 0)
      queue.unshift({
        kind: 'run',
        id: -stage.stageId,
        key,
        feeds: taken.feeds,
        outputs: stage.outputs,
      });
    return { stageId: stage.stageId, at, included: taken.included };
  };
  const pump = async (): Promise<void> => {
    if (pumping) return;
    pumping = true;
    for (let msg = queue.shift(); msg !== undefined; msg = queue.shift()) {
      try {
        const { response, transfer } = await handle(msg);
        const claimed = msg.kind === 'run' ? claimNext(msg.key) : undefined;
        const answer = claimed === undefined ? response : extend(response, { claimed });
        try {
          port.postMessage(answer, transfer);
        } catch {
          // Not transferable: copied instead. The claim must reach the pool either way.
          port.postMessage(answer);
        }
      } catch (err) {
        port.postMessage({
          id: msg.id,
          ok: false,
          error: err instanceof Error ? err.message : String(err),
        } satisfies WorkerResponse);
      }
    }
    pumping = false;
    watchStages();
  };
  /**
   * Idle: wait on every known stage (stage.ts) and take one when it is due: woken by the main
   * thread when it appends, or by the timeout when the oldest request's delay runs out.
   */
  const watched = new WeakSet<SharedArrayBuffer>();
  const watchStages = (): void => {
    for (const [key, stage] of stages) {
      if (watched.has(stage.sab)) continue;
      const wake = (): void => {
        watched.delete(stage.sab);
        // Busy: watched again when the queue empties. Replaced: the newer stage is watched.
        if (pumping || queue.length > 0 || stages.get(key) !== stage) return;
        const claimed = claimNext(key);
        if (claimed !== undefined)
          port.postMessage({ id: 0, ok: true, claimed } satisfies WorkerResponse);
        // Runs what claimNext took or drained, then watches again.
        void pump();
      };
      const due = stageDueIn(stage.sab, stage.layout, stage.policy, sharedNow());
      if (due === 0) {
        wake();
        continue;
      }
      // Until the count changes (an append, or the main thread closing it), or the delay is up.
      const changed = watchStage(stage.sab, due ?? Infinity);
      if (changed === undefined) {
        stages.delete(key); // closed: the main thread dispatched it
        continue;
      }
      watched.add(stage.sab);
      void changed.then(wake);
    }
  };
  port.on('message', (msg: WorkerRequest) => {
    accept(msg);
    void pump();
  });
}
