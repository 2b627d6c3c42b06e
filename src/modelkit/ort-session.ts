import ort from 'onnxruntime-node';

/**
 * ONNX Runtime for offline tools (build verification, evaluation, benchmarks): one intra-op
 * thread, run on the calling thread. The gateway's request path uses its worker pool instead.
 */
export type Session = ort.InferenceSession;

/** Rows of equal width, row-major. */
export interface Matrix {
  readonly data: Float32Array;
  readonly rows: number;
  readonly cols: number;
}

export async function openSession(model: Uint8Array | string): Promise<Session> {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  return typeof model === 'string'
    ? ort.InferenceSession.create(model, options)
    : ort.InferenceSession.create(model, options);
}

function feedsFor(inputs: Readonly<Record<string, Matrix>>, start: number, end: number) {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, m] of Object.entries(inputs)) {
    feeds[name] = new ort.Tensor('float32', m.data.subarray(start * m.cols, end * m.cols), [
      end - start,
      m.cols,
    ]);
  }
  return feeds;
}

function rowCount(inputs: Readonly<Record<string, Matrix>>): number {
  const counts = new Set(Object.values(inputs).map((m) => m.rows));
  const [rows] = counts;
  if (counts.size !== 1 || rows === undefined)
    throw new Error('inputs need the same, non-zero row count');
  return rows;
}

/** Runs all rows through the session in batches and returns the float32 output `output`. */
export async function runRows(
  session: Session,
  inputs: Readonly<Record<string, Matrix>>,
  output: string,
  batch = 256,
): Promise<Matrix> {
  const rows = rowCount(inputs);
  let out: Float32Array | undefined;
  let cols = 0;
  for (let start = 0; start < rows; start += batch) {
    const end = Math.min(rows, start + batch);
    const result = await session.run(feedsFor(inputs, start, end), [output]);
    const t = result[output];
    if (t === undefined || t.type !== 'float32') throw new Error(`output ${output} is not float32`);
    const data = t.data as Float32Array;
    if (out === undefined) {
      cols = data.length / (end - start);
      out = new Float32Array(rows * cols);
    }
    out.set(data, start * cols);
  }
  return { data: out!, rows, cols };
}

/**
 * Rows per second at a fixed batch size, one session run at a time, after a warm-up. Runs for
 * at least `minMs` and at least `minRuns` runs, cycling over the given rows.
 */
export async function measureThroughput(
  session: Session,
  inputs: Readonly<Record<string, Matrix>>,
  output: string,
  options: { readonly batch?: number; readonly minMs?: number; readonly minRuns?: number } = {},
): Promise<number> {
  const batch = options.batch ?? 32;
  const rows = rowCount(inputs);
  // Whole batches only; repeat rows when there are fewer than one batch.
  const padded: Record<string, Matrix> = {};
  const use = Math.max(batch, rows - (rows % batch));
  for (const [name, m] of Object.entries(inputs)) {
    const data = new Float32Array(use * m.cols);
    for (let r = 0; r < use; r++)
      data.set(m.data.subarray((r % rows) * m.cols, ((r % rows) + 1) * m.cols), r * m.cols);
    padded[name] = { data, rows: use, cols: m.cols };
  }
  const feeds = Array.from({ length: use / batch }, (_, i) =>
    feedsFor(padded, i * batch, (i + 1) * batch),
  );
  for (let i = 0; i < Math.min(10, feeds.length * 2); i++)
    await session.run(feeds[i % feeds.length]!, [output]);
  const minMs = options.minMs ?? 500;
  const minRuns = options.minRuns ?? 20;
  let runs = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (runs < minRuns || elapsed < minMs) {
    await session.run(feeds[runs % feeds.length]!, [output]);
    runs++;
    elapsed = performance.now() - t0;
  }
  return (runs * batch * 1000) / elapsed;
}
