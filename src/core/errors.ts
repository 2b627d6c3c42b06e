import type { JsonObject } from '../contracts/json.js';
/**
 * The one registry of Switchyard error codes. Every error a client can see is listed here with
 * its HTTP status, OpenAI-style error type, retryable flag and message template. Codes are never
 * reused; callers match on `code`, never on a message. `docs/errors.md` mirrors this table and a
 * test keeps the two in sync.
 */
export interface ErrorSpec {
  readonly status: number;
  /** OpenAI-compatible `error.type`, so OpenAI SDKs classify the error sensibly. */
  readonly type: ErrorType;
  /** True when the same request may succeed later or on another upstream. */
  readonly retryable: boolean;
  /** `{detail}` is replaced by the specific detail given when the error is raised. */
  readonly message: string;
}

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'upstream_error'
  | 'overloaded_error'
  | 'server_error';

export const ERROR_REGISTRY = {
  // 400: the request itself is wrong.
  SY_ERR_INVALID_JSON: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The request body is not valid JSON: {detail}',
  },
  SY_ERR_INVALID_REQUEST: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The request is invalid: {detail}',
  },
  SY_ERR_MALFORMED_HTTP: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The HTTP request could not be parsed: {detail}',
  },
  SY_ERR_OPERATION_UNSUPPORTED: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The model does not support this operation: {detail}',
  },
  SY_ERR_INVALID_TENSOR: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The tensor does not fit the model: {detail}',
  },
  SY_ERR_UPSTREAM_REJECTED: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The upstream refused the request as invalid: {detail}',
  },
  // 401 / 403: who is calling, and what they may use.
  SY_ERR_AUTH_MISSING: {
    status: 401,
    type: 'authentication_error',
    retryable: false,
    message: 'An API key is required: send "Authorization: Bearer <key>".',
  },
  SY_ERR_AUTH_INVALID: {
    status: 401,
    type: 'authentication_error',
    retryable: false,
    message: 'The API key is not valid: {detail}',
  },
  // The gateway tree (#17): a child gateway's signed tenant assertion.
  SY_ERR_ASSERTION_INVALID: {
    status: 401,
    type: 'authentication_error',
    retryable: false,
    message: 'The tenant assertion is not valid: {detail}',
  },
  SY_ERR_MODEL_FORBIDDEN: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'This tenant may not use the model: {detail}',
  },
  // 404 / 405: what is being asked for does not exist.
  SY_ERR_ROUTE_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such route: {detail}',
  },
  SY_ERR_MODEL_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such model: {detail}',
  },
  SY_ERR_METHOD_NOT_ALLOWED: {
    status: 405,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Method not allowed: {detail}',
  },
  // 408 / 413 / 415 / 431: the HTTP exchange itself broke a limit.
  SY_ERR_REQUEST_TIMEOUT: {
    status: 408,
    type: 'timeout_error',
    retryable: true,
    message: 'The request was not received in time: {detail}',
  },
  SY_ERR_BODY_TOO_LARGE: {
    status: 413,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The request body is larger than the limit of {detail} bytes.',
  },
  SY_ERR_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Unsupported content type: {detail}. Send application/json.',
  },
  SY_ERR_MULTIPART_REQUIRED: {
    status: 415,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Unsupported content type: {detail}. This endpoint takes multipart/form-data.',
  },
  SY_ERR_HEADERS_TOO_LARGE: {
    status: 431,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The request headers are larger than the limit.',
  },
  // 429: the caller, or the upstream on its behalf, is over a limit.
  SY_ERR_UPSTREAM_RATE_LIMITED: {
    status: 429,
    type: 'rate_limit_error',
    retryable: true,
    message: 'The upstream is rate limiting: {detail}',
  },
  // Admission control: classes, quotas, shedding, the admin mode API (#5).
  SY_ERR_RATE_LIMITED: {
    status: 429,
    type: 'rate_limit_error',
    retryable: true,
    message: 'Too many requests: {detail}',
  },
  SY_ERR_QUOTA_EXCEEDED: {
    status: 429,
    type: 'rate_limit_error',
    retryable: true,
    message: 'The quota is spent: {detail}',
  },
  SY_ERR_BUDGET_EXHAUSTED: {
    // The tenant's daily spend budget, enforced from the cost ledger's totals (#15). Retryable:
    // the budget renews at 00:00 UTC (Retry-After says when).
    status: 429,
    type: 'rate_limit_error',
    retryable: true,
    message: 'The spend budget is exhausted: {detail}',
  },
  SY_ERR_TENANT_STORAGE_FULL: {
    // 429, not 507: the tenant's own allowance is used up (like a quota), the server did not fail.
    // A 5xx would be retried by clients, count against breakers, and reach a calling node's
    // RemoteShard as "shard unavailable" instead of this code. Not retryable: only deletes, purges
    // or expiry free room, never time alone.
    status: 429,
    type: 'rate_limit_error',
    retryable: false,
    message: 'The tenant stores as much as it may on this node: {detail}',
  },
  SY_ERR_SHED: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'The gateway is shedding load: {detail}',
  },
  SY_ERR_CLASS_FORBIDDEN: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'This tenant may not use the traffic class: {detail}',
  },
  SY_ERR_ADMIN_REQUIRED: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'The admin API needs an admin key: {detail}',
  },
  // 502: the upstream answered badly or not at all.
  // The gateway tree (#17): a parent gateway shed the call (429/503 with Retry-After). Not
  // retried on the parent and not a breaker failure; a fallback (a local model) may answer.
  SY_ERR_PARENT_SHED: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'The parent gateway shed the call: {detail}',
  },
  SY_ERR_UPSTREAM_UNREACHABLE: {
    status: 502,
    type: 'upstream_error',
    retryable: true,
    message: 'The upstream could not be reached: {detail}',
  },
  SY_ERR_UPSTREAM_ERROR: {
    status: 502,
    type: 'upstream_error',
    retryable: true,
    message: 'The upstream failed: {detail}',
  },
  SY_ERR_UPSTREAM_REFUSED: {
    status: 502,
    type: 'upstream_error',
    retryable: false,
    message: 'The upstream refused the gateway (check its URL, model name and key): {detail}',
  },
  SY_ERR_UPSTREAM_BAD_RESPONSE: {
    status: 502,
    type: 'upstream_error',
    retryable: true,
    message: 'The upstream answer could not be read: {detail}',
  },
  SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE: {
    status: 502,
    type: 'upstream_error',
    retryable: false,
    message: 'The upstream answer is larger than the limit of {detail} bytes.',
  },
  SY_ERR_INFERENCE_FAILED: {
    status: 502,
    type: 'upstream_error',
    retryable: true,
    message: 'In-process inference failed: {detail}',
  },
  SY_ERR_UPSTREAM_STREAM_INTERRUPTED: {
    status: 502,
    type: 'upstream_error',
    retryable: false,
    message: 'The upstream stream ended early: {detail}',
  },
  // Streams after their first event (#16): sent as the stream's last event, never as a status.
  SY_ERR_STREAM_IDLE_TIMEOUT: {
    status: 504,
    type: 'timeout_error',
    retryable: true,
    message: 'The upstream stream stalled: {detail}',
  },
  SY_ERR_STREAM_MAX_DURATION: {
    status: 504,
    type: 'timeout_error',
    retryable: false,
    message: 'The stream reached its maximum duration of {detail} ms.',
  },
  // 503: nothing healthy can take the request now.
  SY_ERR_CIRCUIT_OPEN: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'The upstream is failing and its circuit breaker is open: {detail}',
  },
  SY_ERR_NO_HEALTHY_BACKEND: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'No healthy backend could serve the model: {detail}',
  },
  SY_ERR_QUEUE_FULL: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'The model is saturated and its queue is full: {detail}',
  },
  SY_ERR_MODEL_NOT_READY: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'The model version is not loaded: {detail}',
  },
  SY_ERR_NOT_READY: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'Not ready: {detail}',
  },
  // 504: time ran out.
  SY_ERR_DEADLINE_EXCEEDED: {
    status: 504,
    type: 'timeout_error',
    retryable: false,
    message: 'The request deadline of {detail} ms was exceeded.',
  },
  SY_ERR_UPSTREAM_TIMEOUT: {
    status: 504,
    type: 'timeout_error',
    retryable: true,
    message: 'The upstream did not answer in time: {detail}',
  },
  SY_ERR_ATTEMPT_TIMEOUT: {
    status: 504,
    type: 'timeout_error',
    retryable: true,
    message:
      'The upstream sent nothing within its share of the deadline; the next model of the fallback chain was tried: {detail}',
  },
  // 499 is never sent (the client is gone); it names the outcome in logs and metrics.
  SY_ERR_CLIENT_CLOSED: {
    status: 499,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The client closed the connection before the answer was ready.',
  },
  // 500: a bug in Switchyard. Never expected; always logged with a stack.
  SY_ERR_INTERNAL: {
    status: 500,
    type: 'server_error',
    retryable: true,
    message: 'Internal error (request id in the body; see the gateway log).',
  },
  // Stored Responses (#16).
  SY_ERR_RESPONSE_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such response: {detail}',
  },
  SY_ERR_RESPONSE_STORE_FAILED: {
    status: 503,
    type: 'server_error',
    retryable: true,
    message: 'The response could not be stored or read: {detail}',
  },
  // Files and batches (#16).
  SY_ERR_FILE_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such file: {detail}',
  },
  SY_ERR_FILE_TOO_LARGE: {
    status: 413,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The file is larger than the limit of {detail} bytes.',
  },
  SY_ERR_FILE_IN_USE: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The file is the input of a batch still running: {detail}',
  },
  SY_ERR_BATCH_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such batch: {detail}',
  },
  SY_ERR_BATCH_NOT_CANCELLABLE: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The batch cannot be cancelled: {detail}',
  },
  SY_ERR_BATCHES_DISABLED: {
    status: 404,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Files and batches are off on this gateway (batches.enabled: false).',
  },
  SY_ERR_BATCH_STORE_FAILED: {
    status: 503,
    type: 'server_error',
    retryable: true,
    message: 'The file or batch could not be stored or read: {detail}',
  },
  // Journeys: the orchestration graph (#4).
  SY_ERR_JOURNEY_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such journey: {detail}',
  },
  SY_ERR_JOURNEY_FORBIDDEN: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'This tenant may not use the journey: {detail}',
  },
  SY_ERR_STAGE_FAILED: {
    status: 502,
    type: 'upstream_error',
    retryable: true,
    message: 'A journey stage failed with nowhere left to go: {detail}',
  },
  // Feature store, consent, policy labels and residency (#7).
  SY_ERR_FEATURE_INVALID: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Invalid feature values: {detail}',
  },
  SY_ERR_FEATURE_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such feature: {detail}',
  },
  SY_ERR_CONSENT_REQUIRED: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: "The user's consent does not allow this: {detail}",
  },
  SY_ERR_POLICY_DENIED: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'The policy label does not allow this: {detail}',
  },
  SY_ERR_RESIDENCY: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'The data may not be held or processed on this node: {detail}',
  },
  SY_ERR_FEATURE_STORE_UNAVAILABLE: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'The feature store is unavailable: {detail}',
  },
  SY_ERR_CONSENT_UNAVAILABLE: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'Consent records cannot be changed now (their store is unavailable): {detail}',
  },
  // Vector retrieval: collections, shards and the shard API (#7).
  SY_ERR_VECTOR_INVALID: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Invalid vector request: {detail}',
  },
  SY_ERR_VECTOR_NO_SHARD: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'No shard of the collection may hold this vector: {detail}',
  },
  SY_ERR_VECTOR_COLLECTION_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such vector collection: {detail}',
  },
  SY_ERR_VECTOR_SHARD_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such vector shard on this node: {detail}',
  },
  SY_ERR_VECTOR_SHARD_UNAVAILABLE: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'A vector shard could not answer: {detail}',
  },
  SY_ERR_VECTOR_FORBIDDEN: {
    status: 403,
    type: 'permission_error',
    retryable: false,
    message: 'This key may not do this on vector data: {detail}',
  },
  // Release management: registry, signed artifacts, experiments, feedback (#6).
  SY_ERR_ARTIFACT_UNSIGNED: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The model version is not signed, so it may not be loaded: {detail}',
  },
  SY_ERR_ARTIFACT_TAMPERED: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The artifact does not match its recorded digest and was refused: {detail}',
  },
  SY_ERR_SIGNATURE_INVALID: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The artifact signature does not verify against a pinned key: {detail}',
  },
  SY_ERR_VERSION_DOWNGRADE: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Refusing to downgrade production without force: {detail}',
  },
  SY_ERR_REGISTRY_CONFLICT: {
    status: 409,
    type: 'invalid_request_error',
    retryable: false,
    message: 'The registry refused a conflicting change: {detail}',
  },
  SY_ERR_REGISTRY_INVALID: {
    status: 400,
    type: 'invalid_request_error',
    retryable: false,
    message: 'Invalid registry or experiment request: {detail}',
  },
  SY_ERR_REGISTRY_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such model, version or experiment: {detail}',
  },
  SY_ERR_INFERENCE_UNKNOWN: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No recent inference with this id is awaiting feedback: {detail}',
  },
  SY_ERR_RELEASE_UNAVAILABLE: {
    status: 503,
    type: 'overloaded_error',
    retryable: true,
    message: 'Release management is not available: {detail}',
  },
  // The inference log (#15).
  SY_ERR_REQUEST_RECORD_NOT_FOUND: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'No such request in the inference log: {detail}',
  },
  SY_ERR_INFERENCE_LOG_OFF: {
    status: 404,
    type: 'not_found_error',
    retryable: false,
    message: 'The inference log is off (inference_log.enabled): {detail}',
  },
  SY_ERR_FEEDBACK_STORE_FAILED: {
    // `/v1/feedback` could not read the request's cost key, count its outcome, or find the exposure
    // its reward goes to (#15): nothing was counted, and the same feedback sent again counts once.
    status: 503,
    type: 'server_error',
    retryable: true,
    message: 'The feedback outcome could not be recorded: {detail}',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_REGISTRY;

export interface ErrorOptions {
  /** The `param` OpenAI clients show, such as `messages[0].role`. */
  readonly param?: string;
  /** Seconds for a `Retry-After` header (429 and 503). */
  readonly retryAfterS?: number;
  readonly cause?: unknown;
  /** The upstream's own error fields, kept in the client's answer beside our code (#16). */
  readonly upstream?: UpstreamErrorFields;
  /** Upstream headers the answer passes through (rate limits, request id; #16). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * What an upstream said of its own error (OpenAI's `{error:{message,type,code,param}}`). A field
 * the upstream sent as null stays null; one it did not send is undefined (ours is used then).
 */
export interface UpstreamErrorFields {
  readonly message?: string;
  readonly type?: string | null;
  readonly code?: string | number | null;
  readonly param?: string | null;
}

/** The one error class of the data plane. Thrown or returned, it always maps to one response. */
export class SwitchyardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: ErrorType;
  readonly retryable: boolean;
  readonly param: string | undefined;
  readonly retryAfterS: number | undefined;
  readonly upstream: UpstreamErrorFields | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  /**
   * Set when a client retry cannot help: the gateway already spent its retry budget on this
   * upstream. The answer then says `x-should-retry: false` (#16: SDK retries stacked on ours).
   */
  noClientRetry = false;

  constructor(code: ErrorCode, detail = '', options: ErrorOptions = {}) {
    const spec: ErrorSpec = ERROR_REGISTRY[code];
    super(spec.message.replace('{detail}', detail), { cause: options.cause });
    this.name = 'SwitchyardError';
    this.code = code;
    this.status = spec.status;
    this.type = spec.type;
    this.retryable = spec.retryable;
    this.param = options.param;
    this.retryAfterS = options.retryAfterS;
    this.upstream = options.upstream;
    this.headers = options.headers;
  }
}

export function syError(code: ErrorCode, detail = '', options: ErrorOptions = {}): SwitchyardError {
  return new SwitchyardError(code, detail, options);
}

export function isSwitchyardError(err: unknown): err is SwitchyardError {
  return err instanceof SwitchyardError;
}

/** Anything thrown becomes a SwitchyardError; unknown throwables are internal errors. */
export function toSwitchyardError(err: unknown): SwitchyardError {
  if (err instanceof SwitchyardError) return err;
  return new SwitchyardError('SY_ERR_INTERNAL', '', { cause: err });
}

/**
 * The OpenAI-style error body: the upstream's own type, code and param when it gave them, with
 * Switchyard's code beside them (#16). The front door's answers and batch error lines use it.
 */
export function openAiErrorBody(err: SwitchyardError, requestId: string): JsonObject {
  const up = err.upstream;
  return {
    error: {
      code: up?.code !== undefined ? up.code : err.code,
      message: up?.message ?? err.message,
      type: up?.type !== undefined ? up.type : err.type,
      param: up?.param !== undefined ? up.param : (err.param ?? null),
      switchyard_code: err.code,
      request_id: requestId,
    },
  };
}
