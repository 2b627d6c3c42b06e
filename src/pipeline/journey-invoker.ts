import type { CallContext, Operation } from '../contracts/backend.js';
import type { ModelCard } from '../backends/onnx/model-card.js';
import type { JsonObject } from '../contracts/json.js';
import type {
  ClassifyResult,
  EmbedResult,
  InvokeOptions,
  InvokeResult,
  ModelInfo,
  ModelInvoker,
} from '../contracts/stage.js';
import { syError } from '../core/errors.js';
import { OnnxBackend } from '../backends/onnx/onnx-backend.js';
import { extend } from '../core/objects.js';
import type { CallResult, CallScope, CallSpec, ModelPipeline } from './model-pipeline.js';
import { firstEmbedding } from './outputs.js';

type Info = Omit<ModelInfo, 'version' | 'available'>;

/**
 * What journeys know of models without calling them (operations, tier, price, latency prior),
 * built once per runtime: in-process models learn their card only once loaded, so an answer
 * without one is not kept.
 */
export class ModelCatalog {
  private readonly infos = new Map<string, Info>();
  /** The last answer per model: reused while its version and availability hold (hot path). */
  private readonly last = new Map<string, ModelInfo>();

  constructor(
    private readonly pipeline: ModelPipeline,
    private readonly priorMs: (model: string) => number | undefined,
    private readonly available: (model: string) => boolean,
  ) {}

  info(model: string): ModelInfo | undefined {
    const version = this.pipeline.versionOf(model);
    const available = this.available(model);
    const seen = this.last.get(model);
    if (seen !== undefined && seen.version === version && seen.available === available) return seen;
    const handle = this.pipeline.models.get(model);
    const facts = this.pipeline.facts(model);
    if (handle === undefined || facts === undefined) return undefined;
    let base = this.infos.get(model);
    if (base === undefined) {
      const card = cardOf(handle.backend);
      base = {
        name: model,
        tier: facts.tier,
        operations: journeyOperations(handle.operations, card),
        cost: facts.price,
        priorMs: this.priorMs(model),
      };
      if (!(handle.backend instanceof OnnxBackend) || card !== undefined)
        this.infos.set(model, base);
    }
    const info: ModelInfo = extend(base, { version, available });
    if (this.infos.get(model) === base) this.last.set(model, info);
    return info;
  }

  /** The pipeline bound to one journey request: what its stages call models through. */
  invoker(scope: CallScope): ModelInvoker {
    const pipeline = this.pipeline;
    // A parallel branch has its own signal: each call runs under the signal its stage gave, and
    // under its stage's span (#15).
    const under = (call: CallContext): CallScope =>
      call.signal === scope.signal && call.deadlineAt >= scope.deadlineAt && call.span === undefined
        ? scope
        : extend(scope, {
            signal: call.signal,
            deadlineAt: Math.min(call.deadlineAt, scope.deadlineAt),
            ...(call.span === undefined ? {} : { span: call.span }),
          });
    const run = async (call: CallContext, spec: CallSpec): Promise<CallResult> =>
      pipeline.call(under(call), spec);
    return {
      info: (model) => this.info(model),
      placement: (model, inputs) => pipeline.residencyOf(scope, model, inputs),
      chat: async (model, body, call, opts) =>
        invokeResult(await run(call, { op: 'chat', model, body, ...withOpts(opts) })),
      embed: async (model, text, call, opts): Promise<EmbedResult> => {
        const r = await run(call, { op: 'embeddings', model, text, ...withOpts(opts) });
        const v = firstEmbedding(r.response.json);
        if (v === undefined)
          throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${model}: no embedding in the answer`);
        return extend(invokeResult(r), { vector: Float32Array.from(v) });
      },
      classify: async (model, text, call, opts): Promise<ClassifyResult> => {
        const r = await run(call, { op: 'classify', model, text, ...withOpts(opts) });
        return extend(invokeResult(r), { scores: r.scores ?? [] });
      },
      infer: async (model, body: JsonObject, call, opts) =>
        invokeResult(await run(call, { op: 'infer', model, body, ...withOpts(opts) })),
    };
  }
}

/** What journey stages may ask of a model: its operations, and `classify` when it can label text. */
export function journeyOperations(
  operations: Iterable<Operation>,
  card: ModelCard | undefined,
): ModelInfo['operations'] {
  const ops = new Set<'chat' | 'embeddings' | 'infer' | 'classify'>();
  // Journey stages call chat, embeddings and infer; the pass-through operations are direct only.
  for (const op of operations)
    if (op === 'chat' || op === 'embeddings' || op === 'infer') ops.add(op);
  if (ops.has('chat') || card?.task === 'classifier') ops.add('classify');
  return ops;
}

function withOpts(opts: InvokeOptions | undefined): { opts?: InvokeOptions } {
  return opts === undefined ? {} : { opts };
}

function invokeResult(r: CallResult): InvokeResult {
  return {
    json: r.response.json,
    usage: r.response.usage,
    servedBy: r.servedBy,
    version: r.version,
    tier: r.tier,
    cost: r.cost,
    attempts: r.attempts,
    reason: r.reason,
    withheld: r.withheld,
  };
}

function cardOf(backend: unknown) {
  if (!(backend instanceof OnnxBackend)) return undefined;
  try {
    return backend.current().card;
  } catch {
    return undefined;
  }
}
