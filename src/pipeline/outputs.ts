import type { Operation } from '../contracts/backend.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import type { SlotOutput } from '../contracts/slot-resolver.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';

/** Reading answers: what a chat said, an embedding's vector, a classifier's labels. */

export const CLASSIFY_PROMPT =
  'Classify the user message. Answer with JSON only: {"label": "<label>", "confidence": <0..1>}.';

/** The text of a chat completion's first choice, or undefined. */
export function chatText(json: JsonObject): string | undefined {
  const choices = json['choices'];
  const first = Array.isArray(choices) && isJsonObject(choices[0]) ? choices[0] : undefined;
  const msg = first !== undefined && isJsonObject(first['message']) ? first['message'] : undefined;
  const content = msg?.['content'];
  return typeof content === 'string' ? content : undefined;
}

/** The first embedding of an embeddings answer, or undefined. */
export function firstEmbedding(json: JsonObject): number[] | undefined {
  const data = json['data'];
  const first = Array.isArray(data) && isJsonObject(data[0]) ? data[0] : undefined;
  const v = first?.['embedding'];
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? v : undefined;
}

/**
 * The comparable part of an answer, for shadow agreement: a chat's text as its label, an
 * embedding's vector, or a KServe answer's first output (its data as the vector, and for a
 * single-row classifier the arg-max index as the label and its value as the score).
 */
export function comparableOutput(op: Operation | 'responses', json: JsonObject): SlotOutput {
  if (op === 'responses') return {}; // a pass-through Response: not compared
  if (op !== 'chat' && op !== 'embeddings' && op !== 'infer') return {}; // pass-through (#16 part 4)
  if (op === 'chat') {
    const text = chatText(json);
    return text === undefined ? {} : { label: text };
  }
  if (op === 'embeddings') {
    const v = firstEmbedding(json);
    return v === undefined ? {} : { vector: v };
  }
  const outputs = json['outputs'];
  const first = Array.isArray(outputs) && isJsonObject(outputs[0]) ? outputs[0] : undefined;
  const data = first?.['data'];
  if (!Array.isArray(data) || data.length === 0 || !data.every((x) => typeof x === 'number'))
    return {};
  const values = data;
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return { vector: values, label: String(best), score: values[best]! };
}

/** Class probabilities of a KServe classifier answer, labelled and sorted, best first. */
export function rankedScores(
  model: string,
  json: JsonObject,
  labels: readonly string[],
): { label: string; score: number }[] {
  const outputs = json['outputs'];
  const out = Array.isArray(outputs) ? outputs.find(isJsonObject) : undefined;
  const probs = out?.['data'];
  if (!Array.isArray(probs))
    throw syError('SY_ERR_INFERENCE_FAILED', `${model}: no class probabilities`);
  return probs
    .map((p, i) => ({ label: labels[i] ?? String(i), score: typeof p === 'number' ? p : 0 }))
    .sort((a, b) => b.score - a.score);
}

/** A chat model's classification: JSON `{label, confidence}` in its content, or a bare label. */
export function parseLabel(json: JsonObject): { label: string; score: number }[] {
  const content = chatText(json)?.trim() ?? '';
  let parsed: JsonValue | undefined;
  try {
    parsed = JSON.parse(content) as JsonValue;
  } catch {
    parsed = undefined;
  }
  if (isJsonObject(parsed) && typeof parsed['label'] === 'string') {
    const c = parsed['confidence'];
    const score = typeof c === 'number' && c >= 0 && c <= 1 ? c : 1;
    return [{ label: parsed['label'], score }];
  }
  if (content === '') throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', 'the classifier gave no label');
  return [{ label: content.slice(0, 100), score: 1 }];
}
