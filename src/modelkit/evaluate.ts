import { readFile } from 'node:fs/promises';
import type { HeldOut, ModelCard } from '../backends/onnx/model-card.js';
import {
  accuracy,
  argmaxRows,
  auc,
  cosineRows,
  embeddingQuality,
  lowConfidenceShare,
} from './metrics.js';
import { measureThroughput, openSession, runRows } from './ort-session.js';
import type { Matrix, Session } from './ort-session.js';
import { heldoutMatrix } from './store-io.js';

/**
 * Measuring a model on its held-out split with ONNX Runtime (on the calling thread: an offline
 * tool), and comparing a quantized variant with the float model it was made from.
 */

/** A classifier row whose top probability is below this counts as low-confidence (escalated). */
export const LOW_CONFIDENCE = 0.6;

export interface Evaluation {
  readonly task: ModelCard['task'];
  readonly rows: number;
  /** The metric a variant is judged by: accuracy, recall_at_1 or auc. */
  readonly primary: string;
  readonly metrics: Readonly<Record<string, number>>;
  /** The model's output on the held-out rows. */
  readonly output: Matrix;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`heldout.json has no ${what}`);
  return value;
}

/** Task metrics of a model output on the held-out split. */
export function taskMetrics(
  task: ModelCard['task'],
  output: Matrix,
  heldout: HeldOut,
): { primary: string; metrics: Record<string, number> } {
  const { data, rows, cols } = output;
  switch (task) {
    case 'classifier': {
      const labels = need(heldout.labels, 'labels');
      const predicted = argmaxRows(data, rows, cols);
      let confident = 0;
      let confidentHits = 0;
      for (let r = 0; r < rows; r++) {
        if (data[r * cols + predicted[r]!]! >= LOW_CONFIDENCE) {
          confident++;
          if (predicted[r] === labels[r]) confidentHits++;
        }
      }
      return {
        primary: 'accuracy',
        metrics: {
          accuracy: accuracy(predicted, labels),
          low_confidence_share: lowConfidenceShare(data, rows, cols, LOW_CONFIDENCE),
          accuracy_when_confident: confident === 0 ? 0 : confidentHits / confident,
        },
      };
    }
    case 'embedding': {
      const q = embeddingQuality(data, rows, cols, need(heldout.labels, 'labels'));
      return {
        primary: 'recall_at_1',
        metrics: {
          recall_at_1: q.recallAt1,
          centroid_recall_at_1: q.centroidRecallAt1,
          same_topic_cosine: q.meanSameCosine,
          different_topic_cosine: q.meanDifferentCosine,
          cosine_gap: q.meanSameCosine - q.meanDifferentCosine,
        },
      };
    }
    case 'ranker':
      return { primary: 'auc', metrics: { auc: auc(data, need(heldout.targets, 'targets')) } };
    case 'generic':
      throw new Error('a generic model has no task metric');
  }
}

function heldoutInputs(session: Session, heldout: HeldOut): Record<string, Matrix> {
  return Object.fromEntries(session.inputNames.map((name) => [name, heldoutMatrix(heldout, name)]));
}

function outputName(session: Session, card: ModelCard): string {
  const name = card.output ?? session.outputNames[0];
  if (name === undefined || !session.outputNames.includes(name)) {
    throw new Error(`the model has no output ${name ?? '(none)'}`);
  }
  return name;
}

/** Runs the model on every held-out row (ONNX Runtime, one thread) and measures it for the card's task. */
export async function evaluateModel(
  model: Uint8Array | string,
  heldout: HeldOut,
  card: ModelCard,
): Promise<Evaluation> {
  const session = await openSession(model);
  try {
    const output = await runRows(
      session,
      heldoutInputs(session, heldout),
      outputName(session, card),
    );
    return {
      task: card.task,
      rows: output.rows,
      output,
      ...taskMetrics(card.task, output, heldout),
    };
  } finally {
    await session.release();
  }
}

export interface VariantStats {
  /** The primary metric's value; `metricName` says which. */
  readonly metric: number;
  readonly metricName: string;
  readonly metrics: Readonly<Record<string, number>>;
  readonly sizeBytes: number;
  /** Held-out rows per second at batch 32, one intra-op thread. */
  readonly throughputRowsPerS: number;
}

export interface VariantComparison {
  readonly float: VariantStats;
  readonly int8: VariantStats;
  /** int8 metric − float metric. */
  readonly delta: number;
  /** Classifiers: the share of rows where both pick the same class. */
  readonly top1Agreement?: number;
  /** Embedding models: mean cosine between the two models' vectors for the same row. */
  readonly meanCosine?: number;
  /** Rankers: the largest score difference on any row. */
  readonly maxScoreDiff?: number;
}

/** How the two models agree row by row, as fits the task. */
export function agreement(
  task: ModelCard['task'],
  a: Matrix,
  b: Matrix,
): { top1Agreement?: number; meanCosine?: number; maxScoreDiff?: number } {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('outputs differ in shape');
  if (task === 'classifier') {
    const pa = argmaxRows(a.data, a.rows, a.cols);
    const pb = argmaxRows(b.data, b.rows, b.cols);
    return { top1Agreement: accuracy(pa, pb) };
  }
  if (task === 'embedding') {
    let sum = 0;
    for (let r = 0; r < a.rows; r++) sum += cosineRows(a.data, r, b.data, r, a.cols);
    return { meanCosine: sum / a.rows };
  }
  let max = 0;
  for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i]! - b.data[i]!));
  return { maxScoreDiff: max };
}

async function stats(
  model: Uint8Array,
  heldout: HeldOut,
  card: ModelCard,
  minMs: number,
): Promise<{ stats: VariantStats; output: Matrix }> {
  const session = await openSession(model);
  try {
    const inputs = heldoutInputs(session, heldout);
    const name = outputName(session, card);
    const output = await runRows(session, inputs, name);
    const { primary, metrics } = taskMetrics(card.task, output, heldout);
    const throughputRowsPerS = await measureThroughput(session, inputs, name, { batch: 32, minMs });
    return {
      output,
      stats: {
        metric: metrics[primary]!,
        metricName: primary,
        metrics,
        sizeBytes: model.byteLength,
        throughputRowsPerS,
      },
    };
  } finally {
    await session.release();
  }
}

const load = async (m: Uint8Array | string): Promise<Uint8Array> =>
  typeof m === 'string' ? new Uint8Array(await readFile(m)) : m;

/**
 * The float model and its int8 variant side by side on the held-out split: task metric, file
 * size, throughput at batch 32 on one intra-op thread, and row-by-row agreement.
 */
export async function compareVariants(
  floatModel: Uint8Array | string,
  int8Model: Uint8Array | string,
  heldout: HeldOut,
  card: ModelCard,
  options: { readonly minMs?: number } = {},
): Promise<VariantComparison> {
  const minMs = options.minMs ?? 500;
  const f = await stats(await load(floatModel), heldout, card, minMs);
  const q = await stats(await load(int8Model), heldout, card, minMs);
  return {
    float: f.stats,
    int8: q.stats,
    delta: q.stats.metric - f.stats.metric,
    ...agreement(card.task, f.output, q.output),
  };
}
