import type {
  Backend,
  BackendDescription,
  BackendHealth,
  BackendRequest,
  BackendResponse,
  BackendStream,
  CallContext,
  Tier,
} from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';
import {
  exchange,
  expectEventStream,
  firstEvent,
  joinPath,
  relay,
  parseUpstreamJson,
  readCapped,
  upstreamStatusError,
  type Exchange,
  type HttpUpstreamOptions,
} from './http-upstream.js';
import { ChatChunks, chatToAnthropic, messageToChat } from './anthropic-wire.js';
import { eventData, SseSplitter } from './sse.js';
import { extend } from '../../core/objects.js';

export const ANTHROPIC_OPERATIONS = ['chat'] as const;

export interface AnthropicBackendOptions extends Omit<HttpUpstreamOptions, 'headers'> {
  readonly upstreamModel: string;
  readonly apiKey: string | undefined;
  readonly extraHeaders: Readonly<Record<string, string>>;
  readonly tier: Tier;
  /** The `anthropic-version` header sent upstream. */
  readonly anthropicVersion: string;
  /** max_tokens for chat requests that set none: the Messages API requires one. */
  readonly defaultMaxTokens: number;
}

/**
 * An upstream that speaks the Anthropic Messages API (`POST {url}/messages`, `x-api-key`,
 * `anthropic-version`), serving the chat operation (#16). Requests go out translated from the
 * chat form; answers and streams come back translated into it, so every route (chat, Messages,
 * journeys) and the pipeline's usage and cost see one shape. The HTTP exchange, caps, timeouts
 * and the status → error mapping are the shared upstream base's.
 */
export class AnthropicBackend implements Backend {
  readonly name: string;
  private readonly http: HttpUpstreamOptions;
  private readonly path: string;

  constructor(private readonly opts: AnthropicBackendOptions) {
    this.name = opts.name;
    this.path = joinPath(new URL(opts.baseUrl).pathname, '/messages');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.extraHeaders)) headers[k.toLowerCase()] = v;
    headers['content-type'] = 'application/json';
    headers['anthropic-version'] = opts.anthropicVersion;
    if (opts.apiKey !== undefined) headers['x-api-key'] = opts.apiKey;
    this.http = extend(opts, { headers });
  }

  describe(): BackendDescription {
    return {
      name: this.name,
      kind: 'anthropic',
      tier: this.opts.tier,
      upstream: this.opts.baseUrl,
      operations: ANTHROPIC_OPERATIONS,
    };
  }

  health(): BackendHealth {
    return { state: 'healthy' };
  }

  async call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse> {
    const payload = this.payload(request, false);
    const ex = await exchange(this.http, 'POST', this.path, JSON.stringify(payload), ctx);
    if (ex.status !== 200) throw await upstreamStatusError(ex, this.name);
    let raw: Buffer;
    try {
      raw = await readCapped(ex, this.opts.maxResponseBytes);
    } finally {
      ex.done();
    }
    const json = messageToChat(parseUpstreamJson(raw, this.name), this.name, Date.now());
    const u = json['usage'] as JsonObject;
    return {
      json,
      usage: {
        inputTokens: u['prompt_tokens'] as number,
        outputTokens: u['completion_tokens'] as number,
      },
    };
  }

  async stream(request: BackendRequest, ctx: CallContext): Promise<BackendStream> {
    const started = this.opts.clock.now();
    const payload = this.payload(request, true);
    const options = request.body['stream_options'];
    const includeUsage = isJsonObject(options) && options['include_usage'] === true;
    const ex = await exchange(this.http, 'POST', this.path, JSON.stringify(payload), ctx);
    if (ex.status !== 200) throw await upstreamStatusError(ex, this.name);
    expectEventStream(ex, this.name);
    const reader = new EventReader(
      ex,
      this.opts.maxResponseBytes,
      this.name,
      includeUsage,
      ctx.stream?.idleMs,
    );
    const first = await firstEvent(reader, ex, this.opts, ctx, this.name);
    return {
      contentType: 'text/event-stream; charset=utf-8',
      chunks: reader.iterate(first),
      usage: () => reader.chunks.usage,
      finishReasons: () => reader.chunks.finishReasons,
      firstEventMs: this.opts.clock.now() - started,
      cancel: () => reader.cancel(),
    };
  }

  metadata(): Promise<JsonObject> {
    return Promise.reject(
      syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} is not a KServe model`),
    );
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private payload(request: BackendRequest, stream: boolean): JsonObject {
    if (request.op !== 'chat')
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} does not serve ${request.op}`);
    return chatToAnthropic(request.body, {
      upstreamModel: this.opts.upstreamModel,
      defaultMaxTokens: this.opts.defaultMaxTokens,
      stream,
    });
  }
}

/** Reads an Anthropic SSE body under a byte cap, translating whole events as they come. */
class EventReader {
  readonly chunks: ChatChunks;
  private readonly splitter = new SseSplitter();
  private readonly source: AsyncIterator<Buffer>;
  private bytes = 0;
  private finished = false;

  constructor(
    private readonly ex: Exchange,
    private readonly cap: number,
    private readonly name: string,
    includeUsage: boolean,
    /** Longest wait for the next event once the stream is under way (#16); none if undefined. */
    private readonly idleMs: number | undefined,
  ) {
    this.chunks = new ChatChunks(name, Math.floor(Date.now() / 1000), includeUsage);
    this.source = (ex.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** The chat events for the next block that yields any, or undefined at a whole end. */
  async next(): Promise<Buffer | undefined> {
    for (;;) {
      const step = await this.source.next();
      if (step.done === true) {
        this.finished = true;
        this.ex.done();
        if (!this.chunks.done)
          throw syError(
            'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
            `${this.name} ended the stream before message_stop`,
          );
        return undefined;
      }
      this.bytes += step.value.length;
      if (this.bytes > this.cap)
        throw syError('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE', String(this.cap));
      const block = this.splitter.push(step.value);
      if (block === undefined) continue;
      let out = '';
      for (const data of eventData(block)) out += this.chunks.push(data);
      if (out !== '') return Buffer.from(out);
    }
  }

  iterate(first: Buffer): AsyncGenerator<Buffer> {
    return relay(this, first, this.ex, this.name, this.idleMs);
  }

  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    this.ex.discard();
  }
}
