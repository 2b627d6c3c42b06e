import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { OrtType, Tensor, TensorSpec } from './tensors.js';

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
    };

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

async function handle(
  msg: WorkerRequest,
): Promise<{ response: WorkerResponse; transfer: ArrayBuffer[] }> {
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

const port = parentPort;
if (port !== null) {
  try {
    setPriority(INFERENCE_NICE); // pid 0: this thread only
  } catch {
    // Not permitted (some containers): run at the process's priority.
  }
  // One message at a time: a run blocks this thread (that is why it is not the main thread).
  let chain = Promise.resolve();
  port.on('message', (msg: WorkerRequest) => {
    chain = chain.then(async () => {
      try {
        const { response, transfer } = await handle(msg);
        port.postMessage(response, transfer);
      } catch (err) {
        port.postMessage({
          id: msg.id,
          ok: false,
          error: err instanceof Error ? err.message : String(err),
        } satisfies WorkerResponse);
      }
    });
  });
}
