import type { JsonObject, JsonValue } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { withScope } from '../scope.js';
import { sendBytes, sendJson } from '../respond.js';
import {
  BINARY_CONTENT_TYPE,
  BINARY_HEADER,
  decodeBinaryRequest,
  encodeBinaryResponse,
  headerLength,
  takeBinaryWish,
} from '../kserve-binary.js';
import { resolveModel } from './models.js';

/** Open Inference Protocol (KServe v2) REST routes. */

const DATATYPES = new Set([
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
  'BF16',
]);

export const SERVER_VERSION = '0.1.0';

/** `GET /v2`: server metadata. */
export function serverMetadata(ctx: RequestContext): Promise<void> {
  sendJson(ctx, 200, {
    name: 'switchyard',
    version: SERVER_VERSION,
    extensions: ['binary_tensor_data'],
  });
  return Promise.resolve();
}

function version(ctx: RequestContext): string | undefined {
  return ctx.params['version'];
}

/** `GET /v2/models/{name}[/versions/{v}]`. */
export async function modelMetadata(ctx: RequestContext): Promise<void> {
  const model = resolveModel(ctx, ctx.params['name'] ?? '', 'infer');
  const meta = await model.backend.metadata(version(ctx), ctx.startDeadline());
  sendJson(ctx, 200, meta);
}

/** `GET /v2/models/{name}[/versions/{v}]/ready`: 200 when ready, 503 when not. */
export async function modelReady(ctx: RequestContext): Promise<void> {
  const model = resolveModel(ctx, ctx.params['name'] ?? '', 'infer');
  // Outside the try: a bad deadline header is the client's error (400), not "not ready".
  const call = ctx.startDeadline();
  let ready: boolean;
  try {
    ready = await model.backend.ready(version(ctx), call);
  } catch {
    ready = false;
  }
  sendJson(ctx, ready ? 200 : 503, { name: model.name, ready });
}

/**
 * `POST /v2/models/{name}[/versions/{v}]/infer`, in JSON or with the binary tensor data extension
 * (see kserve-binary.ts): binary when `Inference-Header-Content-Length` is present, JSON otherwise
 * whatever the content type says (#16: Triton's client labels JSON `application/octet-stream`).
 */
export async function modelInfer(ctx: RequestContext): Promise<void> {
  const name = ctx.params['name'] ?? '';
  const pipeline = ctx.runtime.pipeline;
  ctx.model = name;
  pipeline.preflight(ctx.principal?.tenant ?? '', name, 'infer');
  const jsonLength = ctx.req.headers[BINARY_HEADER];
  let body: JsonObject;
  if (jsonLength === undefined) body = await ctx.readJson(true);
  else {
    const raw = await ctx.readBytes();
    body = decodeBinaryRequest(raw, headerLength(jsonLength, raw.length));
  }
  validateInferRequest(body);
  const wish = takeBinaryWish(body);
  const v = version(ctx);
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('infer', body, name) },
    async (scope) => {
      // A version in the path pins it; otherwise the model's release slot decides.
      const r = await pipeline.call(scope, {
        op: 'infer',
        model: name,
        body,
        direct: true,
        ...(v === undefined ? {} : { opts: { version: v } }),
      });
      ctx.model = r.model;
      ctx.release = r.reason;
      if (payloadWanted(ctx)) keepPayload(ctx, body, r.response.json);
      if (wish === undefined) {
        sendJson(ctx, 200, r.response.raw ?? r.response.json);
        return;
      }
      const out = encodeBinaryResponse(r.response.json, wish);
      sendBytes(ctx, 200, BINARY_CONTENT_TYPE, out.body, {
        [BINARY_HEADER]: String(out.jsonLength),
      });
    },
  );
}

function invalid(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

/**
 * The shape of an inference request (names, datatypes, shapes, data present). Whether the
 * tensors fit a model's inputs is the backend's call: it knows the model's metadata.
 */
export function validateInferRequest(body: Readonly<Record<string, JsonValue>>): void {
  const inputs = body['inputs'];
  if (!Array.isArray(inputs) || inputs.length === 0)
    invalid('"inputs" must be a non-empty array', 'inputs');
  inputs.forEach((input, i) => {
    const at = `inputs[${i}]`;
    if (!isJsonObject(input)) invalid('each input must be an object', at);
    if (typeof input['name'] !== 'string' || input['name'] === '')
      invalid('"name" must be a non-empty string', `${at}.name`);
    const dt = input['datatype'];
    if (typeof dt !== 'string' || !DATATYPES.has(dt))
      invalid(`"datatype" must be one of ${[...DATATYPES].join(', ')}`, `${at}.datatype`);
    const shape = input['shape'];
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)
    ) {
      invalid('"shape" must be an array of non-negative integers', `${at}.shape`);
    }
    if (!Array.isArray(input['data'])) invalid('"data" must be an array', `${at}.data`);
    if (input['parameters'] !== undefined && !isJsonObject(input['parameters']))
      invalid('"parameters" must be an object', `${at}.parameters`);
  });
  const outputs = body['outputs'];
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) invalid('"outputs" must be an array', 'outputs');
    outputs.forEach((o, i) => {
      if (!isJsonObject(o) || typeof o['name'] !== 'string')
        invalid('each output needs a "name" string', `outputs[${i}]`);
    });
  }
  if (body['id'] !== undefined && typeof body['id'] !== 'string')
    invalid('"id" must be a string', 'id');
  if (body['parameters'] !== undefined && !isJsonObject(body['parameters']))
    invalid('"parameters" must be an object', 'parameters');
}
