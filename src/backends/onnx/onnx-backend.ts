import { watch, type FSWatcher } from 'node:fs';
import type {
  Backend,
  BackendDescription,
  BackendHealth,
  BackendRequest,
  BackendResponse,
  BackendStream,
  CallContext,
  Operation,
  Tier,
} from '../../contracts/backend.js';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import type { Logger } from '../../contracts/logger.js';
import type { Clock } from '../../core/clock.js';
import { syError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import {
  DynamicBatcher,
  type BatcherSettings,
  type BatchResult,
  type ClaimedBatch,
} from './batcher.js';
import type { ModelCard } from './model-card.js';
import {
  scanStore,
  selectVersions,
  compareVersions,
  type StoredVersion,
  type VersionPolicy,
} from './model-store.js';
import { featurize, tokens } from './text-features.js';
import {
  kserveDatatype,
  requestedOutputs,
  tensorsFromKServe,
  tensorToKServe,
  type Tensor,
  type TensorSpec,
} from './tensors.js';
import type { ClaimedRun, PoolRunResult, WorkerPool } from './worker-pool.js';

export interface OnnxBackendOptions {
  readonly name: string;
  /** Absolute path of the model store. */
  readonly store: string;
  readonly policy: VersionPolicy;
  readonly defaultVersion: string | undefined;
  readonly batch: BatcherSettings;
  readonly allowNonFinite: boolean;
  readonly tier: Tier;
  readonly pool: WorkerPool;
  readonly clock: Clock;
  readonly log: Logger;
  /** Batch priority of a traffic class (lower runs first). */
  readonly priorityOf: (trafficClass: string) => number;
  /** Watch the store for new, changed and removed versions. */
  readonly watch: boolean;
}

interface LiveVersion {
  readonly version: string;
  readonly stamp: string;
  readonly key: string;
  readonly card: ModelCard | undefined;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  readonly batcher: DynamicBatcher;
}

let generation = 0;
/** Store changes come in bursts (a copy writes several files); one sync per burst. */
const WATCH_DEBOUNCE_MS = 200;
const INCOMPLETE_RECHECK_MS = 500;

/**
 * In-process ONNX models: every version in the store the version policy selects is loaded into
 * the worker pool and gets its own dynamic batcher. New versions load without a restart; a
 * version that fails to load is refused and the serving versions stay; a version leaving the
 * policy finishes its queued work before it is unloaded.
 */
export class OnnxBackend implements Backend {
  readonly name: string;
  private readonly live = new Map<string, LiveVersion>();
  /** Stamps that failed to load, so a broken file is not retried until it changes. */
  private readonly failed = new Map<string, string>();
  private syncing: Promise<void> = Promise.resolve();
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private opts: OnnxBackendOptions) {
    this.name = opts.name;
  }

  /** Loads the store's versions; resolves once the first sync is done (even if some failed). */
  async start(): Promise<void> {
    await this.sync();
    if (this.opts.watch) {
      const onChange = (): void => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.sync(), WATCH_DEBOUNCE_MS);
      };
      try {
        // Recursive, so a model file written or replaced inside a version directory is seen too.
        this.watcher = watch(this.opts.store, { recursive: true }, onChange);
      } catch {
        try {
          this.watcher = watch(this.opts.store, { recursive: false }, onChange);
        } catch (err) {
          this.opts.log.warn(
            { model: this.name, err: String(err) },
            'cannot watch the model store; new versions need a reload',
          );
        }
      }
      this.watcher?.on('error', (err) =>
        this.opts.log.warn({ model: this.name, err: String(err) }, 'model store watch failed'),
      );
      this.watcher?.unref();
    }
  }

  /** New batching settings (config reload); loaded versions keep serving. */
  reconfigure(opts: OnnxBackendOptions): void {
    this.opts = opts;
    for (const v of this.live.values()) v.batcher.configure(opts.batch);
  }

  /** Brings the loaded versions in line with the store and the policy. Calls are serialised. */
  sync(): Promise<void> {
    this.syncing = this.syncing
      .then(() => this.doSync())
      .catch((err: unknown) => {
        this.opts.log.error({ model: this.name, err: String(err) }, 'model store sync failed');
      });
    return this.syncing;
  }

  private async doSync(): Promise<void> {
    if (this.closed) return;
    const { versions, problems, incomplete } = await scanStore(this.opts.store);
    for (const p of problems)
      this.opts.log.error({ model: this.name, problem: p }, 'model store problem');
    // A version directory still being copied in has no model.onnx yet: look again shortly.
    clearTimeout(this.recheck);
    if (this.opts.watch && incomplete.length > 0) {
      this.recheck = setTimeout(() => void this.sync(), INCOMPLETE_RECHECK_MS);
      this.recheck.unref();
    }
    // The policy chooses among the versions that can serve: a file that failed to load is out
    // (until it changes), so `latest: 1` keeps the serving version when a newer one is broken.
    // A loaded version whose file was replaced by a broken one keeps serving its old session.
    let wanted: StoredVersion[];
    for (;;) {
      const usable = versions.filter(
        (v) => this.live.has(v.version) || this.failed.get(v.version) !== v.stamp,
      );
      wanted = selectVersions(usable, this.opts.policy);
      let refused = false;
      for (const v of wanted) {
        const current = this.live.get(v.version);
        if (current?.stamp === v.stamp || this.failed.get(v.version) === v.stamp) continue;
        if (!(await this.load(v)) && !this.live.has(v.version)) refused = true;
      }
      if (!refused || this.closed) break;
    }
    const keep = new Set(wanted.map((v) => v.version));
    for (const v of [...this.live.values()]) if (!keep.has(v.version)) void this.retire(v);
  }

  /** Loads one version into the worker pool; false when it was refused. */
  private async load(v: StoredVersion): Promise<boolean> {
    const key = `${this.name}@${v.version}#${++generation}`;
    let specs;
    try {
      specs = await this.opts.pool.load(key, v.modelPath);
      checkCard(v.card, specs.inputs, specs.outputs);
    } catch (err) {
      this.failed.set(v.version, v.stamp);
      await this.opts.pool.unload(key);
      publish(events.modelLoad, { model: this.name, version: v.version, result: 'failed' });
      const serving = this.live.has(v.version)
        ? `version ${v.version} keeps its previous file`
        : 'the other versions keep serving';
      this.opts.log.error(
        {
          model: this.name,
          version: v.version,
          err: err instanceof Error ? err.message : String(err),
        },
        `model version refused; ${serving}`,
      );
      return false;
    }
    this.failed.delete(v.version);
    const version = v.version;
    const outputNames = specs.outputs.map((o) => o.name);
    const batcher = new DynamicBatcher(
      this.opts.batch,
      this.opts.pool.size,
      async (feeds) => {
        const named = [...feeds].map(([name, t]) => ({ name, ...t }));
        return batchResult(await this.opts.pool.run(key, named, outputNames));
      },
      this.opts.clock,
      {
        onBatch: (s) => publish(events.modelBatch, { model: this.name, version, ...s }),
        onDepth: (depth) => publish(events.modelQueue, { model: this.name, version, depth }),
        onRejected: (reason) => publish(events.modelDrop, { model: this.name, version, reason }),
        onExpired: (reason) => publish(events.modelDrop, { model: this.name, version, reason }),
      },
      (like, capacity, policy, onIdleTake) =>
        this.opts.pool.openStage(key, like, capacity, policy, outputNames, (run) =>
          onIdleTake(claimedBatch(run)),
        ),
    );
    const previous = this.live.get(version);
    this.live.set(version, {
      version,
      stamp: v.stamp,
      key,
      card: v.card,
      inputs: specs.inputs,
      outputs: specs.outputs,
      batcher,
    });
    publish(events.modelLoad, { model: this.name, version, result: 'loaded' });
    this.opts.log.info(
      { model: this.name, version, task: v.card?.task ?? 'generic' },
      'model version loaded',
    );
    if (previous !== undefined) void this.retire(previous, false);
    return true;
  }

  /** Stops routing to a version, lets its queued and running work finish, then unloads it. */
  private async retire(v: LiveVersion, removeFromRoutes = true): Promise<void> {
    if (removeFromRoutes && this.live.get(v.version) === v) this.live.delete(v.version);
    v.batcher.close();
    await v.batcher.drain();
    await this.opts.pool.unload(v.key);
    if (removeFromRoutes) {
      publish(events.modelLoad, { model: this.name, version: v.version, result: 'unloaded' });
      this.opts.log.info({ model: this.name, version: v.version }, 'model version unloaded');
    }
  }

  /** Loaded versions, oldest first. */
  versions(): string[] {
    return [...this.live.keys()].sort(compareVersions);
  }

  private pick(version: string | undefined): LiveVersion {
    if (version !== undefined) {
      const v = this.live.get(version);
      if (v === undefined)
        throw syError('SY_ERR_MODEL_NOT_FOUND', `${this.name} has no loaded version ${version}`);
      return v;
    }
    const wanted = this.opts.defaultVersion;
    const v =
      (wanted !== undefined ? this.live.get(wanted) : undefined) ??
      this.live.get(this.versions().at(-1) ?? '');
    if (v === undefined)
      throw syError('SY_ERR_MODEL_NOT_READY', `${this.name} has no loaded version`, {
        retryAfterS: 1,
      });
    return v;
  }

  describe(): BackendDescription {
    return {
      name: this.name,
      kind: 'onnx',
      tier: this.opts.tier,
      upstream: 'in-process',
      operations: onnxOperations(this.live.size > 0 ? this.pick(undefined).card : undefined),
    };
  }

  health(): BackendHealth {
    return this.live.size > 0
      ? { state: 'healthy' }
      : { state: 'unhealthy', detail: 'no version loaded' };
  }

  async call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse> {
    if (request.op === 'infer')
      return { json: await this.infer(request.body, request.version, ctx) };
    if (request.op === 'embeddings') return this.embeddings(request.body, ctx);
    throw syError(
      'SY_ERR_OPERATION_UNSUPPORTED',
      `${this.name} is an in-process ${this.pick(undefined).card?.task ?? 'tensor'} model`,
    );
  }

  stream(): Promise<BackendStream> {
    return Promise.reject(syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} cannot stream`));
  }

  /** Runs rows through a version's batcher. Buffers in `feeds` are transferred to a worker. */
  async runRows(
    v: LiveVersion,
    feeds: Map<string, Tensor>,
    rows: number,
    ctx: CallContext,
  ): Promise<Map<string, Tensor>> {
    return v.batcher.submit({
      feeds,
      rows,
      priority: this.opts.priorityOf(ctx.trafficClass),
      signal: ctx.signal,
      deadlineAt: ctx.deadlineAt,
    });
  }

  private async infer(
    body: JsonObject,
    version: string | undefined,
    ctx: CallContext,
  ): Promise<JsonObject> {
    const v = this.pick(version);
    const wanted = requestedOutputs(body, v.outputs);
    const { feeds, rows } = tensorsFromKServe(body, v.inputs, this.opts.allowNonFinite);
    const outputs = await this.runRows(v, feeds, rows, ctx);
    const answer: JsonObject = {
      model_name: this.name,
      model_version: v.version,
      outputs: wanted.map((name) => tensorToKServe(name, outputs.get(name)!)),
    };
    if (typeof body['id'] === 'string') answer['id'] = body['id'];
    return answer;
  }

  private async embeddings(body: JsonObject, ctx: CallContext): Promise<BackendResponse> {
    const v = this.pick(undefined);
    const card = v.card;
    if (card?.task !== 'embedding' || card.text === undefined) {
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} is not a text embedding model`);
    }
    const input = body['input'];
    const texts = typeof input === 'string' ? [input] : (input as JsonValue[]);
    if (!texts.every((t): t is string => typeof t === 'string')) {
      throw syError(
        'SY_ERR_INVALID_REQUEST',
        `${this.name} embeds text; token arrays are not supported`,
        { param: 'input' },
      );
    }
    const out = this.output(v, card);
    const dims = out.shape.at(-1) ?? -1;
    if (body['dimensions'] !== undefined && body['dimensions'] !== dims) {
      throw syError('SY_ERR_INVALID_REQUEST', `${this.name} makes ${dims}-dimensional embeddings`, {
        param: 'dimensions',
      });
    }
    const features: Tensor = {
      type: 'float32',
      dims: [texts.length, card.text.dims],
      data: featurize(texts, card.text),
    };
    const outputs = await this.runRows(
      v,
      new Map([[card.text.input, features]]),
      texts.length,
      ctx,
    );
    const vectors = outputs.get(out.name)!;
    const width = vectors.dims.at(-1)!;
    const base64 = body['encoding_format'] === 'base64';
    const data = texts.map((_, i) => {
      const row = (vectors.data as Float32Array).subarray(i * width, (i + 1) * width);
      return {
        object: 'embedding',
        index: i,
        embedding: base64
          ? Buffer.from(row.buffer, row.byteOffset, row.byteLength).toString('base64')
          : Array.from(row),
      };
    });
    const promptTokens = texts.reduce((n, t) => n + tokens(t).length, 0);
    return {
      json: {
        object: 'list',
        model: this.name,
        data,
        usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
      },
      usage: { inputTokens: promptTokens, outputTokens: 0 },
    };
  }

  private output(v: LiveVersion, card: ModelCard): TensorSpec {
    const name = card.output ?? v.outputs[0]?.name;
    const spec = v.outputs.find((o) => o.name === name);
    if (spec === undefined)
      throw syError('SY_ERR_INFERENCE_FAILED', `${this.name} has no output ${String(name)}`);
    return spec;
  }

  metadata(version: string | undefined): Promise<JsonObject> {
    const v = this.pick(version);
    const tensor = (t: TensorSpec): JsonObject => ({
      name: t.name,
      datatype: kserveDatatype(t.type),
      shape: [...t.shape],
    });
    const meta: JsonObject = {
      name: this.name,
      versions: this.versions(),
      platform: 'onnxruntime_onnx',
      inputs: v.inputs.map(tensor),
      outputs: v.outputs.map(tensor),
    };
    if (v.card !== undefined) {
      const params: JsonObject = { task: v.card.task, version: v.version };
      if (v.card.labels !== undefined) params['labels'] = [...v.card.labels];
      meta['parameters'] = params;
    }
    return Promise.resolve(meta);
  }

  ready(version: string | undefined): Promise<boolean> {
    return Promise.resolve(version === undefined ? this.live.size > 0 : this.live.has(version));
  }

  /** The live version a request would get, for stages that call the model directly. */
  current(version?: string): LiveVersion {
    return this.pick(version);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.debounce);
    clearTimeout(this.recheck);
    this.watcher?.close();
    await Promise.all([...this.live.values()].map((v) => this.retire(v)));
  }
}

/**
 * What an in-process model serves, from the card of the version a request gets: every model
 * serves `infer`; a text embedding model also serves `embeddings`.
 */
export function onnxOperations(card: ModelCard | undefined): Operation[] {
  return card?.task === 'embedding' && card.text !== undefined
    ? ['infer', 'embeddings']
    : ['infer'];
}

/** A card must match the model it describes: its text input and task output must exist. */
function checkCard(
  card: ModelCard | undefined,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): void {
  if (card === undefined) return;
  if (card.text !== undefined && !inputs.some((i) => i.name === card.text!.input)) {
    throw new Error(
      `model.json names text input ${card.text.input}, which the model does not have`,
    );
  }
  if (card.output !== undefined && !outputs.some((o) => o.name === card.output)) {
    throw new Error(`model.json names output ${card.output}, which the model does not have`);
  }
  if (card.task === 'classifier' && card.labels !== undefined) {
    const out = outputs.find((o) => o.name === (card.output ?? outputs[0]?.name));
    const k = out?.shape.at(-1) ?? -1;
    if (k >= 0 && k !== card.labels.length)
      throw new Error(
        `model.json has ${card.labels.length} labels but the model outputs ${k} classes`,
      );
  }
}

/** The pool's answer as the batcher takes it (outputs by name), staged runs included. */
function batchResult(res: PoolRunResult): BatchResult {
  const outputs = new Map(res.outputs.map((o) => [o.name, o as Tensor]));
  if (res.next === undefined) return { outputs, ms: res.ms };
  return { outputs, ms: res.ms, next: claimedBatch(res.next) };
}

function claimedBatch(run: ClaimedRun): ClaimedBatch {
  return {
    stageId: run.stageId,
    startedAt: run.startedAt,
    included: run.included,
    result: run.result.then(batchResult),
  };
}
