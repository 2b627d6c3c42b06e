/**
 * Held-out metrics shared by the demo-model build and the quantizer's evaluation. Matrices are
 * row-major Float32Arrays of `rows × cols`.
 */

/** The index of the largest value in each row. */
export function argmaxRows(m: Float32Array, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < cols; j++) if (m[r * cols + j]! > m[r * cols + best]!) best = j;
    out[r] = best;
  }
  return out;
}

export function accuracy(predicted: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (predicted.length !== labels.length) throw new Error('accuracy: length mismatch');
  let hit = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) hit++;
  return labels.length === 0 ? 0 : hit / labels.length;
}

/** The share of rows whose largest probability is below `threshold`. */
export function lowConfidenceShare(
  probs: Float32Array,
  rows: number,
  cols: number,
  threshold: number,
): number {
  let low = 0;
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let j = 0; j < cols; j++) max = Math.max(max, probs[r * cols + j]!);
    if (max < threshold) low++;
  }
  return rows === 0 ? 0 : low / rows;
}

/** ROC AUC: the probability that a random positive outscores a random negative (ties count half). */
export function auc(scores: ArrayLike<number>, targets: ArrayLike<number>): number {
  const n = scores.length;
  if (n !== targets.length) throw new Error('auc: length mismatch');
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let rankSumPos = 0;
  let pos = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[idx[j + 1]!] === scores[idx[i]!]) j++;
    const midRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (targets[idx[k]!] === 1) {
        rankSumPos += midRank;
        pos++;
      }
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return 0.5;
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
}

export function dot(
  a: Float32Array,
  ai: number,
  b: Float32Array,
  bi: number,
  dims: number,
): number {
  let s = 0;
  for (let k = 0; k < dims; k++) s += a[ai + k]! * b[bi + k]!;
  return s;
}

/** Cosine similarity of row `i` of `a` and row `j` of `b`. */
export function cosineRows(
  a: Float32Array,
  i: number,
  b: Float32Array,
  j: number,
  dims: number,
): number {
  const na = Math.sqrt(dot(a, i * dims, a, i * dims, dims));
  const nb = Math.sqrt(dot(b, j * dims, b, j * dims, dims));
  return na === 0 || nb === 0 ? 0 : dot(a, i * dims, b, j * dims, dims) / (na * nb);
}

export interface EmbeddingQuality {
  /** Leave-one-out: the share of rows whose nearest other row (cosine) has the same label. */
  readonly recallAt1: number;
  /** Leave-one-out: the share of rows nearest (cosine) to their own label's centroid of the other rows. */
  readonly centroidRecallAt1: number;
  readonly meanSameCosine: number;
  readonly meanDifferentCosine: number;
}

/** How well embeddings group by label, measured within one labelled set (no outside reference needed). */
export function embeddingQuality(
  emb: Float32Array,
  rows: number,
  dims: number,
  labels: ArrayLike<number>,
): EmbeddingQuality {
  const unit = new Float32Array(emb.length);
  for (let r = 0; r < rows; r++) {
    const n = Math.sqrt(dot(emb, r * dims, emb, r * dims, dims)) || 1;
    for (let k = 0; k < dims; k++) unit[r * dims + k] = emb[r * dims + k]! / n;
  }
  let nnHit = 0;
  let same = 0;
  let sameN = 0;
  let diff = 0;
  let diffN = 0;
  for (let i = 0; i < rows; i++) {
    let best = -Infinity;
    let bestLabel = -1;
    for (let j = 0; j < rows; j++) {
      if (j === i) continue;
      const c = dot(unit, i * dims, unit, j * dims, dims);
      if (c > best) {
        best = c;
        bestLabel = labels[j]!;
      }
      if (j > i) {
        if (labels[i] === labels[j]) {
          same += c;
          sameN++;
        } else {
          diff += c;
          diffN++;
        }
      }
    }
    if (bestLabel === labels[i]) nnHit++;
  }
  // Centroids as sums; a row is taken out of its own label's sum before comparing.
  const labelSet = [...new Set(Array.from(labels))];
  const sums = new Map<number, Float64Array>();
  for (const l of labelSet) sums.set(l, new Float64Array(dims));
  for (let r = 0; r < rows; r++) {
    const s = sums.get(labels[r]!)!;
    for (let k = 0; k < dims; k++) s[k] = s[k]! + unit[r * dims + k]!;
  }
  let centroidHit = 0;
  for (let i = 0; i < rows; i++) {
    let best = -Infinity;
    let bestLabel = -1;
    for (const l of labelSet) {
      const s = sums.get(l)!;
      let d = 0;
      let n = 0;
      for (let k = 0; k < dims; k++) {
        const c = s[k]! - (l === labels[i] ? unit[i * dims + k]! : 0);
        d += c * unit[i * dims + k]!;
        n += c * c;
      }
      const cos = n === 0 ? -Infinity : d / Math.sqrt(n);
      if (cos > best) {
        best = cos;
        bestLabel = l;
      }
    }
    if (bestLabel === labels[i]) centroidHit++;
  }
  return {
    recallAt1: rows === 0 ? 0 : nnHit / rows,
    centroidRecallAt1: rows === 0 ? 0 : centroidHit / rows,
    meanSameCosine: sameN === 0 ? 0 : same / sameN,
    meanDifferentCosine: diffN === 0 ? 0 : diff / diffN,
  };
}
