import type { CallContext, Tier } from '../../src/contracts/backend.js';
import type { JsonObject } from '../../src/contracts/json.js';
import type {
  ClassifyResult,
  CostModel,
  EmbedResult,
  InvokeResult,
  ModelInfo,
  ModelInvoker,
} from '../../src/contracts/stage.js';
import { callCost } from '../../src/core/cost.js';
import { abortReason } from '../../src/core/deadline.js';

type Op = 'chat' | 'embeddings' | 'infer' | 'classify';

/** What a scripted model answers; throw (a SwitchyardError) to fail. */
export interface ScriptedAnswer {
  readonly label?: string;
  readonly confidence?: number;
  readonly text?: string;
  readonly vector?: readonly number[];
  readonly json?: JsonObject;
  readonly inputTokens?: number;
  readonly outputTokens?: number;
}

export interface ScriptedModel {
  readonly tier: Tier;
  readonly ops: readonly Op[];
  readonly cost?: Partial<CostModel>;
  readonly priorMs?: number;
  readonly version?: string;
  available?: boolean;
  /** Model time: advances the injected clock by this much per call (no real waiting). */
  readonly latencyMs?: number;
  answer(
    input: { readonly op: Op; readonly text: string; readonly body: JsonObject },
    call: CallContext,
  ): ScriptedAnswer | Promise<ScriptedAnswer>;
}

export interface ScriptedCall {
  readonly model: string;
  readonly op: Op;
  readonly text: string;
  readonly signal: AbortSignal;
}

/**
 * An in-memory ModelInvoker with scripted models: for orchestrator tests and for the journeys
 * bench, where model time must be excluded (answers are immediate unless the script waits).
 * It stands in for the model-call pipeline (which the gateway tests exercise for real); it
 * prices calls with the same cost function.
 */
export class ScriptedInvoker implements ModelInvoker {
  readonly calls: ScriptedCall[] = [];

  constructor(
    readonly models: Record<string, ScriptedModel>,
    private readonly advance?: (ms: number) => void,
    private readonly record = true,
  ) {}

  info(model: string): ModelInfo | undefined {
    const m = this.models[model];
    if (m === undefined) return undefined;
    return {
      name: model,
      tier: m.tier,
      operations: new Set(m.ops),
      version: m.version ?? '1',
      cost: { inPer1k: 0, outPer1k: 0, perCall: 0, perSecond: 0, ...m.cost },
      priorMs: m.priorMs,
      available: m.available !== false,
    };
  }

  private async run(
    model: string,
    op: Op,
    text: string,
    body: JsonObject,
    call: CallContext,
  ): Promise<ScriptedAnswer> {
    const m = this.models[model];
    if (m === undefined) throw new Error(`no scripted model ${model}`);
    if (this.record) this.calls.push({ model, op, text, signal: call.signal });
    if (call.signal.aborted) throw abortReason(call.signal);
    if (m.latencyMs !== undefined) this.advance?.(m.latencyMs);
    return m.answer({ op, text, body }, call);
  }

  private result(model: string, a: ScriptedAnswer, json: JsonObject): InvokeResult {
    const usage =
      a.inputTokens === undefined && a.outputTokens === undefined
        ? undefined
        : { inputTokens: a.inputTokens ?? 0, outputTokens: a.outputTokens ?? 0 };
    const info = this.info(model);
    return {
      json,
      usage,
      servedBy: model,
      version: this.models[model]?.version ?? '1',
      tier: info?.tier ?? 'central',
      cost: info === undefined ? 0 : callCost(info.cost, usage, this.models[model]?.latencyMs ?? 0),
      attempts: `${model}#1:ok`,
      reason: 'default',
      withheld: [],
    };
  }

  async chat(model: string, body: JsonObject, call: CallContext): Promise<InvokeResult> {
    const msgs = body['messages'];
    const last = Array.isArray(msgs) ? (msgs.at(-1) as JsonObject | undefined) : undefined;
    const text = typeof last?.['content'] === 'string' ? last['content'] : '';
    const a = await this.run(model, 'chat', text, body, call);
    return this.result(model, a, {
      object: 'chat.completion',
      model,
      choices: [
        { index: 0, message: { role: 'assistant', content: a.text ?? '' }, finish_reason: 'stop' },
      ],
    });
  }

  async embed(model: string, text: string, call: CallContext): Promise<EmbedResult> {
    const a = await this.run(model, 'embeddings', text, {}, call);
    return { ...this.result(model, a, {}), vector: Float32Array.from(a.vector ?? []) };
  }

  async classify(model: string, text: string, call: CallContext): Promise<ClassifyResult> {
    const a = await this.run(model, 'classify', text, {}, call);
    const label = a.label ?? 'unknown';
    const score = a.confidence ?? 1;
    return { ...this.result(model, a, { label, score }), scores: [{ label, score }] };
  }

  async infer(model: string, body: JsonObject, call: CallContext): Promise<InvokeResult> {
    const a = await this.run(model, 'infer', '', body, call);
    return this.result(model, a, a.json ?? {});
  }
}
