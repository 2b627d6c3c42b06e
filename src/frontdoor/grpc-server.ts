import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AttemptRecord, CallContext } from '../contracts/backend.js';
import type { JsonObject } from '../contracts/json.js';
import type { Clock } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../core/errors.js';
import { requestId } from '../core/ids.js';
import { events, publish } from '../core/events.js';
import { compactAttempts } from '../pipeline/model-pipeline.js';
import { unitOf } from '../pipeline/unit.js';
import { CLASS_HEADER } from '../admission/classes.js';
import type { Principal } from './auth.js';
import {
  inferRequestToJson,
  inferResponseFromJson,
  type GrpcInferRequest,
} from './grpc-tensors.js';
import { SERVER_VERSION, validateInferRequest } from './routes/kserve.js';
import type { GatewayState, ModelHandle, Runtime } from './runtime.js';

/**
 * The KServe v2 gRPC front door (`inference.GRPCInferenceService`, proto/kserve/): the same
 * models, auth and model-call pipeline as the REST routes, on its own port. The key comes in the
 * `authorization: Bearer <key>` (or `x-api-key`) metadata; the call's gRPC deadline is its
 * deadline, clamped like `x-switchyard-timeout-ms`. Errors carry the registry code in the
 * status details and in the `switchyard-code` trailer.
 */
const PROTO = fileURLToPath(new URL('../../proto/kserve/grpc_predict_v2.proto', import.meta.url));

export interface GrpcFrontDoor {
  readonly port: number;
  close(): Promise<void>;
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** What one RPC's `requestDone` event says, filled in as the call goes. */
interface GrpcRecord {
  readonly requestId: string;
  model: string;
  tenant: string;
  keyFingerprint: string;
  trafficClass: string;
  readonly attempts: AttemptRecord[];
}

export async function startGrpcFrontDoor(
  state: GatewayState,
  clock: Clock,
  host: string,
  port: number,
): Promise<GrpcFrontDoor> {
  const definition = protoLoader.loadSync(PROTO, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: { service: grpc.ServiceDefinition } };
  };
  const server = new grpc.Server();
  server.addService(pkg.inference.GRPCInferenceService.service, handlers(state, clock));
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  );
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), 2_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

function handlers(state: GatewayState, clock: Clock): grpc.UntypedServiceImplementation {
  /**
   * Every RPC answers through here, and each one ends in one `requestDone` event (route
   * `grpc:<method>`), as an HTTP request does: the request log and the metrics see gRPC too.
   */
  const unary =
    <Req, Res>(
      method: string,
      fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>, rec: GrpcRecord) => Promise<Res>,
    ): Unary<Req, Res> =>
    (call, callback) => {
      const started = clock.now();
      const rec: GrpcRecord = {
        requestId: requestId(one(call.metadata, 'x-request-id')),
        model: '',
        tenant: '',
        keyFingerprint: '',
        trafficClass: 'interactive',
        attempts: [],
      };
      const done = (err: SwitchyardError | undefined): void =>
        publish(events.requestDone, {
          requestId: rec.requestId,
          method: 'GRPC',
          route: `grpc:${method}`,
          model: rec.model,
          tenant: rec.tenant,
          keyFingerprint: rec.keyFingerprint,
          trafficClass: rec.trafficClass,
          status: err === undefined ? 200 : err.status,
          code: err?.code,
          durationMs: clock.now() - started,
          stream: false,
          path: compactAttempts(rec.attempts),
          ...(err?.code === 'SY_ERR_INTERNAL' ? { error: err } : {}),
        });
      fn(call.request, call, rec).then(
        (res) => {
          done(undefined);
          callback(null, res);
        },
        (thrown: unknown) => {
          const err = toSwitchyardError(thrown);
          done(err);
          callback(statusOf(err));
        },
      );
    };
  const ServerLive: Unary<object, object> = unary('ServerLive', () =>
    Promise.resolve({ live: true }),
  );
  const ServerReady: Unary<object, object> = unary('ServerReady', () =>
    Promise.resolve({ ready: state.ready() }),
  );
  const ServerMetadata: Unary<object, object> = unary('ServerMetadata', () =>
    Promise.resolve({
      name: 'switchyard',
      version: SERVER_VERSION,
      extensions: ['binary_tensor_data'],
    }),
  );
  const ModelReady: Unary<{ name: string; version: string }, object> = unary(
    'ModelReady',
    async (req, call, rec) => {
      const { runtime, model } = authorized(state, call.metadata, req.name, rec);
      const ctx = shortCall(runtime, clock);
      try {
        return { ready: await model.backend.ready(version(req.version), ctx.call) };
      } catch {
        return { ready: false };
      } finally {
        ctx.deadline.dispose();
      }
    },
  );
  const ModelMetadata: Unary<{ name: string; version: string }, object> = unary(
    'ModelMetadata',
    async (req, call, rec) => {
      const { runtime, model } = authorized(state, call.metadata, req.name, rec);
      const ctx = shortCall(runtime, clock);
      try {
        const meta = await model.backend.metadata(version(req.version), ctx.call);
        return metadataMessage(meta);
      } finally {
        ctx.deadline.dispose();
      }
    },
  );
  const ModelInfer: Unary<GrpcInferRequest, object> = unary(
    'ModelInfer',
    async (req, call, rec) => {
      const { runtime, principal, model } = authorized(state, call.metadata, req.model_name, rec);
      const body = inferRequestToJson(req);
      validateInferRequest(body);
      const answer = await infer(
        runtime,
        principal,
        model.name,
        body,
        version(req.model_version),
        call,
        clock,
        rec,
      );
      return inferResponseFromJson(answer, model.name);
    },
  );
  return { ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelInfer };
}

function version(v: string): string | undefined {
  return v === '' ? undefined : v;
}

function one(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === 'string' ? v : undefined;
}

/** The caller's principal and the model, as the REST routes check them (401, 403, 404, 400). */
function authorized(
  state: GatewayState,
  md: grpc.Metadata,
  name: string,
  rec: GrpcRecord,
): { runtime: Runtime; principal: Principal; model: ModelHandle } {
  const runtime = state.runtime();
  const authorization = one(md, 'authorization');
  const apiKey = one(md, 'x-api-key');
  const principal = runtime.keys.authenticate({
    ...(authorization === undefined ? {} : { authorization }),
    ...(apiKey === undefined ? {} : { 'x-api-key': apiKey }),
  });
  rec.tenant = principal.tenant;
  rec.keyFingerprint = principal.fingerprint;
  rec.model = name;
  runtime.pipeline.preflight(principal.tenant, name, 'infer');
  const model = runtime.models.get(name)!;
  return { runtime, principal, model };
}

/** A deadline for a metadata or readiness call: the server's default budget. */
function shortCall(runtime: Runtime, clock: Clock): { deadline: Deadline; call: CallContext } {
  const deadline = new Deadline(runtime.snapshot.config.server.deadline.default_ms, clock);
  return {
    deadline,
    call: {
      requestId: requestId(),
      tenant: '',
      trafficClass: 'interactive',
      signal: deadline.signal,
      deadlineAt: deadline.at,
      attempts: [],
    },
  };
}

/** One inference through the pipeline: class, deadline, admission, call, settle. */
async function infer(
  runtime: Runtime,
  principal: Principal,
  name: string,
  body: JsonObject,
  v: string | undefined,
  call: grpc.ServerUnaryCall<GrpcInferRequest, object>,
  clock: Clock,
  rec: GrpcRecord,
): Promise<JsonObject> {
  const pipeline = runtime.pipeline;
  const ac = runtime.admission;
  const trafficClass =
    ac === undefined
      ? 'interactive'
      : ac.classify(principal.tenant, one(call.metadata, CLASS_HEADER), undefined);
  rec.trafficClass = trafficClass;
  const limits = runtime.snapshot.config.server.deadline;
  const asked = call.getDeadline();
  const askedMs = asked instanceof Date ? asked.getTime() - Date.now() : Number(asked);
  const classMs = ac?.classSpec(trafficClass)?.deadline_ms ?? limits.default_ms;
  const budget = Number.isFinite(askedMs)
    ? Math.min(limits.max_ms, Math.max(limits.min_ms, askedMs))
    : classMs;
  const deadline = new Deadline(Math.max(1, budget), clock);
  const onCancel = (): void => deadline.abort(syError('SY_ERR_CLIENT_CLOSED'));
  call.once('cancelled', onCancel);
  const scope = await pipeline.open({
    requestId: rec.requestId,
    tenant: principal.tenant,
    keyId: principal.keyId,
    trafficClass,
    signal: deadline.signal,
    deadlineAt: deadline.at,
    origin: 'direct',
    attempts: rec.attempts,
    unit: unitOf({}),
    estimate: pipeline.estimate('infer', body, name),
  });
  try {
    const r = await pipeline.call(scope, {
      op: 'infer',
      model: name,
      body,
      direct: true,
      ...(v === undefined ? {} : { opts: { version: v } }),
    });
    rec.model = r.model;
    return r.response.json;
  } finally {
    pipeline.close(scope);
    deadline.dispose();
    call.off('cancelled', onCancel);
  }
}

function metadataMessage(meta: JsonObject): Record<string, unknown> {
  const tensors = (v: unknown): unknown[] =>
    Array.isArray(v)
      ? v.map((t: Record<string, unknown>) => ({
          name: t['name'],
          datatype: t['datatype'],
          shape: t['shape'],
        }))
      : [];
  return {
    name: meta['name'],
    versions: Array.isArray(meta['versions']) ? meta['versions'] : [],
    platform: typeof meta['platform'] === 'string' ? meta['platform'] : '',
    inputs: tensors(meta['inputs']),
    outputs: tensors(meta['outputs']),
  };
}

/** The gRPC status of a registry error (by its HTTP status, as gRPC's HTTP mapping reads it). */
function statusOf(err: SwitchyardError): Partial<grpc.StatusObject> {
  const s = err.status;
  const code =
    s === 400 || s === 413 || s === 415
      ? grpc.status.INVALID_ARGUMENT
      : s === 401
        ? grpc.status.UNAUTHENTICATED
        : s === 403
          ? grpc.status.PERMISSION_DENIED
          : s === 404
            ? grpc.status.NOT_FOUND
            : s === 429
              ? grpc.status.RESOURCE_EXHAUSTED
              : s === 502 || s === 503
                ? grpc.status.UNAVAILABLE
                : s === 504
                  ? grpc.status.DEADLINE_EXCEEDED
                  : s === 499
                    ? grpc.status.CANCELLED
                    : grpc.status.INTERNAL;
  const metadata = new grpc.Metadata();
  metadata.set('switchyard-code', err.code);
  return { code, details: `${err.code}: ${err.message}`, metadata };
}
