import type { AttemptRecord, BackendResponse, CallContext } from '../contracts/backend.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import type {
  ClassifyResult,
  EmbedResult,
  InvokeResult,
  ModelInfo,
  ModelInvoker,
} from '../contracts/stage.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import { OnnxBackend } from '../backends/onnx/onnx-backend.js';
import { featurize } from '../backends/onnx/text-features.js';
import type { FrozenConfig } from '../config/load.js';
import type { ModelHandle } from './runtime.js';

const CLASSIFY_PROMPT =
  'Classify the user message. Answer with JSON only: {"label": "<label>", "confidence": <0..1>}.';

/**
 * The journeys' model port over the runtime's model handles: every call goes through the
 * model's interceptor chain (deadline, retry, breaker, fallback), and the route learns which
 * model actually answered from the attempts the chain recorded. Text classification runs an
 * in-process classifier through its model card (featurizer, labels), or asks a chat model for a
 * JSON label.
 */
export class RuntimeModelInvoker implements ModelInvoker {
  private readonly infos = new Map<string, Omit<ModelInfo, 'version' | 'available'>>();

  constructor(
    private readonly models: ReadonlyMap<string, ModelHandle>,
    private readonly config: FrozenConfig,
    private readonly available: (model: string) => boolean,
  ) {}

  info(model: string): ModelInfo | undefined {
    const handle = this.models.get(model);
    const mc = this.config.models[model];
    if (handle === undefined || mc === undefined) return undefined;
    let base = this.infos.get(model);
    if (base === undefined) {
      const ops = new Set<'chat' | 'embeddings' | 'infer' | 'classify'>(handle.operations);
      if (ops.has('chat') || this.card(handle)?.task === 'classifier') ops.add('classify');
      base = {
        name: model,
        tier: mc.tier,
        operations: ops,
        cost: {
          inPer1k: mc.cost?.in_per_1k ?? 0,
          outPer1k: mc.cost?.out_per_1k ?? 0,
          perCall: mc.cost?.per_call ?? 0,
          perSecond: mc.cost?.per_second ?? 0,
        },
        priorMs: mc.latency?.prior_ms,
      };
      // In-process models learn their card only once loaded: do not cache an empty answer.
      if (!(handle.backend instanceof OnnxBackend) || this.card(handle) !== undefined)
        this.infos.set(model, base);
    }
    return { ...base, version: this.version(model), available: this.available(model) };
  }

  private version(model: string): string {
    const handle = this.models.get(model);
    const mc = this.config.models[model];
    if (handle?.backend instanceof OnnxBackend) {
      try {
        return handle.backend.current().version;
      } catch {
        return '';
      }
    }
    return mc !== undefined && mc.backend !== 'onnx' ? (mc.upstream_model ?? model) : model;
  }

  private card(handle: ModelHandle) {
    if (!(handle.backend instanceof OnnxBackend)) return undefined;
    try {
      return handle.backend.current().card;
    } catch {
      return undefined;
    }
  }

  private handle(model: string): ModelHandle {
    const h = this.models.get(model);
    if (h === undefined) throw syError('SY_ERR_MODEL_NOT_FOUND', model);
    return h;
  }

  private result(model: string, r: BackendResponse, call: CallContext): InvokeResult {
    const served = lastOk(call.attempts) ?? model;
    const json = r.json;
    const version =
      typeof json['model_version'] === 'string' ? json['model_version'] : this.version(served);
    return {
      json,
      usage: r.usage,
      servedBy: served,
      version,
      attempts: compact(call.attempts),
    };
  }

  async chat(model: string, body: JsonObject, call: CallContext): Promise<InvokeResult> {
    const r = await this.handle(model).call.call({ op: 'chat', body: { ...body, model } }, call);
    return this.result(model, r, call);
  }

  async embed(model: string, text: string, call: CallContext): Promise<EmbedResult> {
    const r = await this.handle(model).call.call(
      { op: 'embeddings', body: { model, input: text } },
      call,
    );
    const data = r.json['data'];
    const first = Array.isArray(data) && isJsonObject(data[0]) ? data[0] : undefined;
    const emb = first?.['embedding'];
    if (!Array.isArray(emb) || !emb.every((x) => typeof x === 'number'))
      throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${model}: no embedding in the answer`);
    return { ...this.result(model, r, call), vector: Float32Array.from(emb) };
  }

  async classify(
    model: string,
    text: string,
    call: CallContext,
    version?: string,
  ): Promise<ClassifyResult> {
    const handle = this.handle(model);
    const card = this.card(handle);
    if (
      card?.task === 'classifier' &&
      card.text !== undefined &&
      handle.backend instanceof OnnxBackend
    ) {
      const features = featurize([text], card.text);
      const body: JsonObject = {
        inputs: [
          {
            name: card.text.input,
            datatype: 'FP32',
            shape: [1, card.text.dims],
            data: Array.from(features),
          },
        ],
        ...(card.output === undefined ? {} : { outputs: [{ name: card.output }] }),
      };
      const r = await handle.call.call(
        { op: 'infer', body, ...(version === undefined ? {} : { version }) },
        call,
      );
      const outputs = r.json['outputs'];
      const out = Array.isArray(outputs) ? outputs.find(isJsonObject) : undefined;
      const probs = out?.['data'];
      if (!Array.isArray(probs))
        throw syError('SY_ERR_INFERENCE_FAILED', `${model}: no class probabilities`);
      const labels = card.labels ?? [];
      const scores = probs
        .map((p, i) => ({ label: labels[i] ?? String(i), score: typeof p === 'number' ? p : 0 }))
        .sort((a, b) => b.score - a.score);
      return { ...this.result(model, r, call), scores };
    }
    if (!handle.operations.has('chat'))
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${model} cannot classify text`);
    const r = await handle.call.call(
      {
        op: 'chat',
        body: {
          model,
          messages: [
            { role: 'system', content: CLASSIFY_PROMPT },
            { role: 'user', content: text },
          ],
        },
      },
      call,
    );
    return { ...this.result(model, r, call), scores: parseLabel(r.json) };
  }

  async infer(
    model: string,
    body: JsonObject,
    call: CallContext,
    version?: string,
  ): Promise<InvokeResult> {
    const r = await this.handle(model).call.call(
      { op: 'infer', body, ...(version === undefined ? {} : { version }) },
      call,
    );
    return this.result(model, r, call);
  }
}

/** A chat model's classification: JSON `{label, confidence}` in its content, or a bare label. */
function parseLabel(json: JsonObject): { label: string; score: number }[] {
  const choices = json['choices'];
  const first = Array.isArray(choices) && isJsonObject(choices[0]) ? choices[0] : undefined;
  const msg = first !== undefined && isJsonObject(first['message']) ? first['message'] : undefined;
  const content = typeof msg?.['content'] === 'string' ? msg['content'].trim() : '';
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

function lastOk(attempts: readonly AttemptRecord[]): string | undefined {
  for (let i = attempts.length - 1; i >= 0; i--)
    if (attempts[i]!.outcome === 'ok') return attempts[i]!.backend;
  return undefined;
}

function compact(attempts: readonly AttemptRecord[]): string {
  return attempts
    .map((a) => `${a.backend}#${a.attempt}:${a.outcome.replace(/^SY_ERR_/, '')}`)
    .join('>');
}
