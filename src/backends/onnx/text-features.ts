/**
 * `hashing-v1`: how the demo text models turn text into their input tensor, the same at training
 * and at serving time. Word unigrams, word bigrams and character trigrams (with word-boundary
 * marks, for typo robustness) are hashed (FNV-1a, 32 bit) into `dims` buckets with a hashed
 * sign, weighted by log(1 + count), and the vector is L2-normalised. No vocabulary file is
 * needed, so a model is one ONNX file plus its `model.json`.
 */
export interface TextFeaturizerSpec {
  readonly featurizer: 'hashing-v1';
  readonly dims: number;
}

function fnv1a(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Lower-cased word tokens, after Unicode normalisation. */
export function tokens(text: string): string[] {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t !== '');
}

/** The features of one text, written into `out` (length `dims`) at `offset`. */
export function featurizeInto(text: string, dims: number, out: Float32Array, offset = 0): void {
  const counts = new Map<number, number>();
  const add = (feature: string): void => {
    const h = fnv1a(feature, 0);
    const bucket = h % dims;
    const sign = fnv1a(feature, 0x9e3779b9) & 1 ? 1 : -1;
    counts.set(bucket, (counts.get(bucket) ?? 0) + sign);
  };
  const words = tokens(text);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    add(`w:${w}`);
    if (i + 1 < words.length) add(`b:${w} ${words[i + 1]!}`);
    const marked = `<${w}>`;
    for (let j = 0; j + 3 <= marked.length; j++) add(`c:${marked.slice(j, j + 3)}`);
  }
  let norm = 0;
  for (let i = 0; i < dims; i++) out[offset + i] = 0;
  for (const [bucket, c] of counts) {
    const v = Math.sign(c) * Math.log1p(Math.abs(c));
    out[offset + bucket] = v;
    norm += v * v;
  }
  if (norm > 0) {
    const inv = 1 / Math.sqrt(norm);
    for (let i = 0; i < dims; i++) out[offset + i] = (out[offset + i] ?? 0) * inv;
  }
}

/** Features for a batch of texts as one [texts.length, dims] row-major Float32Array. */
export function featurize(texts: readonly string[], spec: TextFeaturizerSpec): Float32Array {
  const out = new Float32Array(texts.length * spec.dims);
  texts.forEach((t, i) => featurizeInto(t, spec.dims, out, i * spec.dims));
  return out;
}
