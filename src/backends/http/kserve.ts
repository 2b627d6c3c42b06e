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
import type { JsonObject } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import {
  exchange,
  joinPath,
  parseUpstreamJson,
  readCapped,
  upstreamStatusError,
  type HttpUpstreamOptions,
} from './http-upstream.js';
import { extend } from '../../core/objects.js';

export interface KServeBackendOptions extends Omit<HttpUpstreamOptions, 'headers'> {
  readonly upstreamModel: string;
  readonly apiKey: string | undefined;
  readonly extraHeaders: Readonly<Record<string, string>>;
  readonly tier: Tier;
}

/** A KServe v2 model serves tensor inference only. */
export const KSERVE_OPERATIONS: readonly Operation[] = ['infer'];

/**
 * A KServe v2 / Open Inference Protocol server over REST (Triton, KServe, MLServer, OpenVINO
 * Model Server...). JSON tensors only; the binary tensor extension is refused by the front door.
 * Answers carry this gateway's model name, not the upstream's.
 */
export class KServeBackend implements Backend {
  readonly name: string;
  private readonly http: HttpUpstreamOptions;
  private readonly basePath: string;

  constructor(private readonly opts: KServeBackendOptions) {
    this.name = opts.name;
    this.basePath = new URL(opts.baseUrl).pathname;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    for (const [k, v] of Object.entries(opts.extraHeaders)) headers[k.toLowerCase()] = v;
    if (opts.apiKey !== undefined) headers['authorization'] = `Bearer ${opts.apiKey}`;
    this.http = extend(opts, { headers });
  }

  describe(): BackendDescription {
    return {
      name: this.name,
      kind: 'kserve',
      tier: this.opts.tier,
      upstream: this.opts.baseUrl,
      operations: KSERVE_OPERATIONS,
    };
  }

  health(): BackendHealth {
    return { state: 'healthy' };
  }

  async call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse> {
    if (request.op !== 'infer') {
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} serves KServe inference only`);
    }
    const path = this.modelPath(request.version) + '/infer';
    const json = await this.getJson(
      'POST',
      path,
      JSON.stringify(request.body),
      ctx,
      request.version,
    );
    if (!Array.isArray(json['outputs'])) {
      throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${this.name}: the answer has no outputs`);
    }
    if (json['model_name'] !== undefined) json['model_name'] = this.name;
    return { json };
  }

  stream(): Promise<BackendStream> {
    return Promise.reject(syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} cannot stream`));
  }

  async metadata(version: string | undefined, ctx: CallContext): Promise<JsonObject> {
    const json = await this.getJson('GET', this.modelPath(version), undefined, ctx, version);
    return { ...json, name: this.name };
  }

  async ready(version: string | undefined, ctx: CallContext): Promise<boolean> {
    const ex = await exchange(this.http, 'GET', this.modelPath(version) + '/ready', undefined, ctx);
    ex.discard();
    return ex.status === 200;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private modelPath(version: string | undefined): string {
    const model = encodeURIComponent(this.opts.upstreamModel);
    const v = version === undefined ? '' : `/versions/${encodeURIComponent(version)}`;
    return joinPath(this.basePath, `/v2/models/${model}${v}`);
  }

  private async getJson(
    method: 'GET' | 'POST',
    path: string,
    body: string | undefined,
    ctx: CallContext,
    version: string | undefined,
  ): Promise<JsonObject> {
    const ex = await exchange(this.http, method, path, body, ctx);
    if (ex.status === 404 && version !== undefined) {
      ex.discard();
      throw syError('SY_ERR_MODEL_NOT_FOUND', `${this.name} has no version ${version}`);
    }
    if (ex.status !== 200) throw await upstreamStatusError(ex, this.name);
    let raw: Buffer;
    try {
      raw = await readCapped(ex, this.opts.maxResponseBytes);
    } finally {
      ex.done();
    }
    return parseUpstreamJson(raw, this.name);
  }
}
