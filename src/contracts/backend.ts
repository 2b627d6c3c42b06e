import type { JsonObject } from './json.js';
import type { TraceSpan } from './trace.js';

/** Where a model runs, cheapest and closest first. */
export type Tier = 'edge' | 'regional' | 'central';

/**
 * What a backend can be asked to do. Besides chat, embeddings and KServe inference, an OpenAI
 * upstream may pass through legacy completions, moderations, image generation, text to speech
 * and transcription (#16 part 4).
 */
export type Operation =
  | 'chat'
  | 'embeddings'
  | 'infer'
  | 'completions'
  | 'moderations'
  | 'images'
  | 'speech'
  | 'transcriptions';

/** The OpenAI pass-through operations whose body is JSON (`transcriptions` is an upload). */
export type JsonPassOperation = 'completions' | 'moderations' | 'images' | 'speech';

/**
 * A multipart upload on its way to an upstream (`POST /v1/audio/transcriptions`): read from the
 * client as the upstream takes it, never whole in memory once the target is known.
 */
export interface UploadBody {
  /** The form's text fields read so far (`model` and every field before the file). */
  readonly fields: Readonly<Record<string, string>>;
  /**
   * The form re-encoded for the upstream, with `override` fields replaced (the upstream's
   * model name). Once one of its bytes went out, the upload cannot be sent again.
   */
  open(override: Readonly<Record<string, string>>): {
    readonly contentType: string;
    readonly body: AsyncIterable<Buffer>;
  };
  /** True once a byte went to an upstream: the upload is a one-shot body, never retried after. */
  readonly sent: boolean;
}

/** Token usage, read from the upstream answer (non-streamed and streamed alike). */
export interface Usage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Counted by the gateway's tokenizer (the upstream reported none), not reported upstream. */
  readonly estimated?: boolean;
  /** Images generated (`POST /v1/images/generations`), priced by `cost.per_image`. */
  readonly images?: number;
  /** Seconds of audio the upstream reported (transcription), priced by `cost.per_audio_second`. */
  readonly audioSeconds?: number;
}

/** One upstream attempt, appended by the call chain; it becomes part of the route of a request. */
export interface AttemptRecord {
  readonly backend: string;
  readonly attempt: number;
  /** `ok`, or the error code the attempt ended with. */
  readonly outcome: string;
  readonly ms: number;
  /** A parent gateway's own route for this attempt (`backend: switchyard`, #17), folded in. */
  readonly remote?: string;
  /** Why this attempt's answer is degraded (parent unreachable, stale cache...), when it is. */
  readonly degraded?: string;
}

/** What travels to the next gateway of the tree (#17) besides the deadline, class and request id. */
export interface HopContext {
  /** The caller's W3C trace context (`traceparent`), passed through. */
  readonly traceparent?: string;
  /** The data headers the caller declared (`x-switchyard-jurisdiction`, ...): re-checked there. */
  readonly dataHeaders?: Readonly<Record<string, string>>;
}

/** What every backend call gets besides its request. */
export interface CallContext {
  readonly requestId: string;
  readonly tenant: string;
  readonly trafficClass: string;
  /** Aborts on deadline or client disconnect; its reason is a SwitchyardError. */
  readonly signal: AbortSignal;
  /** Monotonic ms (Clock.now) at which the caller's budget runs out. */
  readonly deadlineAt: number;
  /** The call chain appends one record per attempt (retries and fallbacks included). */
  readonly attempts: AttemptRecord[];
  /**
   * Monotonic ms by which the upstream must have sent its first byte (response headers; for a
   * stream, its first event). A fallback chain sets it on every link but the last, so the next
   * model keeps time to answer within the deadline (#13). Unset: the deadline and the model's
   * own caps apply.
   */
  readonly firstByteBy?: number;
  /** The span this call's work hangs under (#15); undefined when the request is not traced. */
  readonly span?: TraceSpan;
  /**
   * Set on a streamed call (#16): once its first event is in hand, a stream is bounded by these,
   * not by the deadline meant for unary calls (which still bounds the wait for the first event).
   */
  readonly stream?: StreamLimits;
  /** Trace context and declared data for the next gateway (#17); unset on untagged calls. */
  readonly hop?: HopContext;
  /**
   * Whether the call's input may go to another model (a fallback link): undefined when it may,
   * else the reason it may not (residency, #17). Unset: every link may be tried.
   */
  readonly refuses?: (model: string) => string | undefined;
}

/** The bounds of a stream after its first event. */
export interface StreamLimits {
  /** Longest wait for the upstream's next event. */
  readonly idleMs: number;
  /** Longest life of the whole stream, from the request's start. */
  readonly maxMs: number;
}

/**
 * A request for a backend. The model has been resolved by the front door; bodies are the
 * public wire formats (OpenAI chat/embeddings, KServe v2 inference request), already parsed
 * and validated for shape. A backend rewrites only what it owns (such as the upstream model name).
 */
export type BackendRequest =
  | { readonly op: 'chat'; readonly body: JsonObject }
  | { readonly op: 'embeddings'; readonly body: JsonObject }
  | { readonly op: 'infer'; readonly body: JsonObject; readonly version?: string }
  /**
   * An OpenAI Responses API request passed through to an upstream that speaks it (#16); not an
   * `Operation`: a model that serves it serves `chat` too, and only such upstreams take it.
   */
  | { readonly op: 'responses'; readonly body: JsonObject }
  /** OpenAI pass-through requests with a JSON body (#16 part 4). */
  | { readonly op: JsonPassOperation; readonly body: JsonObject }
  /** A transcription: the form's text fields, and the upload streamed to the upstream. */
  | { readonly op: 'transcriptions'; readonly body: JsonObject; readonly upload: UploadBody };

/** A complete (non-streamed) answer. */
export interface BackendResponse {
  /** The answer in its public wire format. */
  readonly json: JsonObject;
  /** The exact upstream bytes of `json`, when it can be forwarded unchanged. */
  readonly raw?: Buffer;
  /**
   * Set when the answer is not JSON (a transcription as `text`, `srt` or `vtt`): `raw` is the
   * answer, of this media type, and `json` is empty.
   */
  readonly contentType?: string;
  readonly usage?: Usage;
  /** Upstream headers a client may see (rate limits, request id), lower-case names. */
  readonly headers?: Readonly<Record<string, string>>;
  /** A parent gateway's `x-switchyard-route` for this call (#17). */
  readonly route?: string;
  /** A parent gateway's `x-switchyard-degraded` for this call (#17). */
  readonly degraded?: string;
}

/**
 * A streamed answer (OpenAI server-sent events). `stream()` resolves only once the upstream has
 * accepted the request and its first event is in hand, so everything before the first byte can
 * still be retried or fall back; nothing after it is.
 */
export interface BackendStream {
  readonly contentType: string;
  /** Ready-to-forward SSE bytes, whole events only; the first chunk is already buffered. */
  readonly chunks: AsyncIterable<Buffer>;
  /** Usage seen in the stream so far (final once `chunks` is exhausted). */
  usage(): Usage | undefined;
  /** Finish reasons seen so far, one per choice that ended (the call's span reports them). */
  finishReasons?(): readonly string[];
  /** Monotonic ms from the call's start to the first content event. */
  readonly firstEventMs: number;
  /** Upstream headers a client may see (rate limits, request id), lower-case names. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Stops reading and releases the upstream connection. */
  cancel(): void;
  /** A parent gateway's `x-switchyard-route` for this call (#17). */
  readonly route?: string;
  /** A parent gateway's `x-switchyard-degraded` for this call (#17). */
  readonly degraded?: string;
}

export interface BackendDescription {
  readonly name: string;
  readonly kind: string;
  readonly tier: Tier;
  /** The upstream the breaker guards, such as `http://127.0.0.1:9100/v1`, or `in-process`. */
  readonly upstream: string;
  readonly operations: readonly Operation[];
  readonly location?: string;
}

export type HealthState = 'healthy' | 'degraded' | 'unhealthy';

export interface BackendHealth {
  readonly state: HealthState;
  readonly detail?: string;
}

/** The callable part of a backend: what interceptors wrap. */
export interface BackendCall {
  call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse>;
  stream(request: BackendRequest, ctx: CallContext): Promise<BackendStream>;
}

/**
 * A model server: an HTTP upstream (OpenAI-compatible, KServe v2), an in-process runtime, or
 * the next gateway tier. Every implementation passes `test/contract/backend.contract.ts`.
 * Failures are thrown as SwitchyardErrors with registry codes.
 */
export interface Backend extends BackendCall {
  readonly name: string;
  describe(): BackendDescription;
  health(): BackendHealth;
  /** KServe v2 model metadata (`GET /v2/models/{name}[/versions/{v}]`). */
  metadata(version: string | undefined, ctx: CallContext): Promise<JsonObject>;
  /** KServe v2 model readiness. */
  ready(version: string | undefined, ctx: CallContext): Promise<boolean>;
  close(): Promise<void>;
}

/** Wraps a backend call: retry, breaker, deadline and metrics are interceptors, never `if`s. */
export type Interceptor = (next: BackendCall) => BackendCall;
