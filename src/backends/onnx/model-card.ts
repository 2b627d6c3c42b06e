import type { TextFeaturizerSpec } from './text-features.js';

/**
 * `model.json`, the card beside each `model.onnx` in a model store
 * (`<store>/<version>/model.onnx`). It says what the model is for and how text becomes its input;
 * a model without a card is served as a generic tensor model (KServe v2 only).
 */
export interface ModelCard {
  /** `classifier`: probabilities over `labels`; `embedding`: a vector per row; `ranker`: a score per row. */
  readonly task: 'classifier' | 'embedding' | 'ranker' | 'generic';
  /** How text becomes the input tensor `text.input` (classifiers and embedding models). */
  readonly text?: TextFeaturizerSpec & { readonly input: string };
  /** The output tensor the task reads (probabilities, embedding or score). */
  readonly output?: string;
  /** Class labels, by output index (classifiers). */
  readonly labels?: readonly string[];
  readonly description?: string;
  /** Quality on the held-out split (`heldout.json` beside the model), as measured when built. */
  readonly metrics?: Readonly<Record<string, number>>;
  /** Where the model came from: data source, trainer, seed, base version for variants. */
  readonly lineage?: Readonly<Record<string, string | number>>;
  /** Set on a quantized variant: its precision and the version it was made from. */
  readonly variant?: { readonly precision: 'int8'; readonly from_version: string };
}

/**
 * `heldout.json`: the held-out split a model was measured on, used again to measure a variant.
 * `inputs` maps input names to rows; `labels` (class index) or `targets` (0/1) give the truth.
 */
export interface HeldOut {
  readonly inputs: Readonly<Record<string, readonly (readonly number[])[]>>;
  readonly labels?: readonly number[];
  readonly targets?: readonly number[];
  /** For text models: the raw texts the rows were made from. */
  readonly texts?: readonly string[];
}
