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
  Usage,
} from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import { inputTextTokens, streamedUsage } from '../../core/cost.js';
import { syError } from '../../core/errors.js';
import { isJsonObject, JSON_MEDIA_TYPE as JSON_TYPE } from '../../core/safe-json.js';
import {
  exchange,
  expectEventStream,
  firstEvent,
  joinPath,
  relay,
  parseUpstreamJson,
  passThroughHeaders,
  readCapped,
  upstreamStatusError,
  type Exchange,
  type HttpUpstreamOptions,
  type StreamedBody,
} from './http-upstream.js';
import { eventData, SseSplitter } from './sse.js';
import { extend } from '../../core/objects.js';

export interface OpenAiBackendOptions extends Omit<HttpUpstreamOptions, 'headers'> {
  /** The model name the upstream knows. */
  readonly upstreamModel: string;
  readonly apiKey: string | undefined;
  readonly extraHeaders: Readonly<Record<string, string>>;
  readonly tier: Tier;
  readonly operations: readonly Operation[];
  /** The upstream speaks the Responses API (`/responses`): requests of op `responses` go there. */
  readonly responses?: boolean;
}

/**
 * Any OpenAI-compatible upstream (OpenAI, Azure-style proxies, vLLM, llama.cpp, TGI, Ollama...):
 * configured, never copied per vendor. Non-streamed answers are read under a size cap, checked
 * to be JSON and forwarded byte for byte; streams are forwarded event by event as they arrive,
 * with usage read from the stream (the upstream is asked to include it).
 */
export class OpenAiBackend implements Backend {
  readonly name: string;
  private readonly http: HttpUpstreamOptions;
  private readonly basePath: string;

  constructor(private readonly opts: OpenAiBackendOptions) {
    this.name = opts.name;
    const url = new URL(opts.baseUrl);
    this.basePath = url.pathname;
    const headers: Record<string, string> = extend(lowerKeys(opts.extraHeaders), {
      'content-type': 'application/json',
    });
    if (opts.apiKey !== undefined) headers['authorization'] = `Bearer ${opts.apiKey}`;
    this.http = extend(opts, { headers });
  }

  describe(): BackendDescription {
    return {
      name: this.name,
      kind: 'openai',
      tier: this.opts.tier,
      upstream: this.opts.baseUrl,
      operations: this.opts.operations,
    };
  }

  health(): BackendHealth {
    return { state: 'healthy' };
  }

  async call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse> {
    const path = this.pathFor(request);
    const model = this.opts.upstreamModel;
    let body: string | StreamedBody;
    if (request.op === 'transcriptions') body = request.upload.open({ model });
    else {
      const payload: JsonObject = { ...request.body, model };
      if (STREAMABLE.has(request.op) && payload['stream'] !== undefined) payload['stream'] = false;
      body = JSON.stringify(payload);
    }
    const ex = await exchange(this.http, 'POST', path, body, ctx);
    if (ex.status !== 200) throw await upstreamStatusError(ex, this.name);
    let raw: Buffer;
    try {
      raw = await readCapped(ex, this.opts.maxResponseBytes);
    } finally {
      ex.done();
    }
    const headers = passThroughHeaders(ex.headers);
    const contentType = String(ex.headers['content-type'] ?? '');
    // A transcription as text, srt or vtt, or speech called unary: forwarded as it came.
    const media = request.op === 'transcriptions' || request.op === 'speech';
    if (media && !JSON_TYPE.test(contentType)) {
      const usage = passUsage(request, undefined);
      return {
        json: {},
        raw,
        contentType: contentType || 'application/octet-stream',
        ...(usage === undefined ? {} : { usage }),
        ...(headers === undefined ? {} : { headers }),
      };
    }
    const json = parseUpstreamJson(raw, this.name);
    const usage = passUsage(request, json);
    return {
      json,
      raw,
      ...(usage === undefined ? {} : { usage }),
      ...(headers === undefined ? {} : { headers }),
    };
  }

  async stream(request: BackendRequest, ctx: CallContext): Promise<BackendStream> {
    if (request.op === 'speech') return this.audio(request.body, ctx);
    if (request.op !== 'chat' && request.op !== 'responses' && request.op !== 'completions') {
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${request.op} cannot be streamed`);
    }
    const responses = request.op === 'responses';
    const started = this.opts.clock.now();
    const streamOptions = isJsonObject(request.body['stream_options'])
      ? request.body['stream_options']
      : {};
    const clientWantsUsage = streamOptions['include_usage'] === true;
    // Ask for usage so tokens and cost are known for streams too (a Response always has it).
    const payload: JsonObject = responses
      ? extend(request.body, { model: this.opts.upstreamModel, stream: true })
      : extend(request.body, {
          model: this.opts.upstreamModel,
          stream: true,
          stream_options: extend(streamOptions, { include_usage: true }),
        });
    const path = this.pathFor(request);
    const ex = await exchange(this.http, 'POST', path, JSON.stringify(payload), ctx);
    if (ex.status !== 200) throw await upstreamStatusError(ex, this.name);
    expectEventStream(ex, this.name);
    const reader = new SseReader(
      ex,
      this.opts.maxResponseBytes,
      clientWantsUsage,
      this.name,
      responses ? 0 : choiceCount(request.body),
      request.body,
      ctx.stream?.idleMs,
    );
    const first = await firstEvent(reader, ex, this.opts, ctx, this.name);
    const firstEventMs = this.opts.clock.now() - started;
    const headers = passThroughHeaders(ex.headers);
    // The literal's own keys before the spread: see core/objects.ts.
    return {
      contentType: 'text/event-stream; charset=utf-8',
      chunks: reader.iterate(first),
      usage: () => reader.usage(),
      finishReasons: () => reader.finishReasons,
      firstEventMs,
      cancel: () => reader.cancel(),
      ...(headers === undefined ? {} : { headers }),
    };
  }

  /**
   * Text to speech (#16 part 4): the upstream's audio bytes forwarded as they arrive, of its
   * media type, under the answer cap and the stream's idle bound. Its input is counted as usage.
   */
  private async audio(body: JsonObject, ctx: CallContext): Promise<BackendStream> {
    const started = this.opts.clock.now();
    const payload = JSON.stringify({ ...body, model: this.opts.upstreamModel });
    const ex = await exchange(
      this.http,
      'POST',
      this.pathFor({ op: 'speech', body }),
      payload,
      ctx,
    );
    if (ex.status !== 200) throw await upstreamStatusError(ex, this.name);
    const contentType = String(ex.headers['content-type'] ?? '');
    // Audio of any format, or its SSE form (`stream_format: "sse"`); a JSON answer is not audio.
    if (contentType === '' || JSON_TYPE.test(contentType)) {
      ex.discard();
      throw syError(
        'SY_ERR_UPSTREAM_BAD_RESPONSE',
        `${this.name} answered ${contentType || 'no content type'} to a speech request`,
      );
    }
    const reader = new BytesReader(ex, this.opts.maxResponseBytes, this.name, ctx.stream?.idleMs);
    const first = await firstEvent(reader, ex, this.opts, ctx, this.name);
    const firstEventMs = this.opts.clock.now() - started;
    const headers = passThroughHeaders(ex.headers);
    const usage: Usage = {
      inputTokens: inputTextTokens(body['input']),
      outputTokens: 0,
      estimated: true,
    };
    return {
      contentType,
      chunks: reader.iterate(first),
      usage: () => usage,
      firstEventMs,
      cancel: () => reader.cancel(),
      ...(headers === undefined ? {} : { headers }),
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

  private pathFor(request: BackendRequest): string {
    if (request.op === 'responses') {
      if (this.opts.responses !== true)
        throw syError(
          'SY_ERR_OPERATION_UNSUPPORTED',
          `${this.name} does not speak the Responses API`,
        );
      return joinPath(this.basePath, '/responses');
    }
    if (!this.opts.operations.includes(request.op)) {
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} does not serve ${request.op}`);
    }
    const sub = PATHS[request.op];
    if (sub === undefined)
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} does not serve ${request.op}`);
    return joinPath(this.basePath, sub);
  }
}

/** The upstream path of each operation an OpenAI upstream serves. */
const PATHS: Readonly<Partial<Record<Operation, string>>> = {
  chat: '/chat/completions',
  embeddings: '/embeddings',
  completions: '/completions',
  moderations: '/moderations',
  images: '/images/generations',
  speech: '/audio/speech',
  transcriptions: '/audio/transcriptions',
};

/** Operations whose `stream: true` a unary call turns off. */
const STREAMABLE: ReadonlySet<string> = new Set(['chat', 'responses', 'completions']);

/**
 * The usage of a unary answer, by operation: the upstream's token usage where it reports one;
 * moderations count their input (the API reports none); images add the images generated;
 * transcriptions the seconds of audio (`usage.type: "duration"` or a verbose answer's
 * `duration`) or their token usage.
 */
function passUsage(request: BackendRequest, json: JsonObject | undefined): Usage | undefined {
  const reported = json === undefined ? undefined : readUsage(json['usage']);
  switch (request.op) {
    case 'moderations':
    case 'speech':
      return {
        inputTokens: inputTextTokens(request.body['input']),
        outputTokens: 0,
        estimated: true,
      };
    case 'images': {
      const data = json?.['data'];
      const images = Array.isArray(data) ? data.length : 0;
      return { ...(reported ?? { inputTokens: 0, outputTokens: 0 }), images };
    }
    case 'transcriptions': {
      const u = json?.['usage'];
      const seconds =
        isJsonObject(u) && u['type'] === 'duration' && typeof u['seconds'] === 'number'
          ? u['seconds']
          : typeof json?.['duration'] === 'number'
            ? json['duration']
            : undefined;
      if (seconds === undefined) return reported;
      return { ...(reported ?? { inputTokens: 0, outputTokens: 0 }), audioSeconds: seconds };
    }
    default:
      return reported;
  }
}

const USAGE_MARK = /"usage"\s*:\s*\{/;
/** The events that end a Responses stream (OpenAI API reference, "Streaming events"). */
const TERMINAL_MARK = /"type"\s*:\s*"(response\.(completed|incomplete|failed)|error)"/;
/** A non-null finish_reason (a null one, in every other chunk, does not match). */
const FINISH_MARK = /"finish_reason"\s*:\s*"/;

/**
 * Reads an upstream SSE body as whole-event blocks, under a byte cap, noting usage on the way,
 * and whether the stream said it was whole: an OpenAI stream ends with `data: [DONE]`, and each
 * of its choices ends with a finish_reason. A body that ends cleanly without either was cut
 * short somewhere upstream (#13 finding 4): it ends in SY_ERR_UPSTREAM_STREAM_INTERRUPTED, never
 * as a clean end the client would take for a whole answer.
 *
 * Usage is the upstream's usage chunk when it sent one; otherwise (no usage chunk, or a stream
 * cut before it) the tokenizer counts the prompt and the text of the events the consumer took,
 * marked `estimated` (#15).
 */
class SseReader {
  /** Usage the upstream reported in the stream. */
  private reported: Usage | undefined;
  /** Blocks the consumer took (kept only to count them if no usage chunk comes; capped). */
  private taken: Buffer[] = [];
  private counted: Usage | undefined;
  private readonly splitter = new SseSplitter();
  private readonly source: AsyncIterator<Buffer>;
  private bytes = 0;
  private finished = false;
  private delivered = false;
  private sawDone = false;
  /** Indexes of the choices whose finish_reason came. */
  private readonly finishedChoices = new Set<number>();
  /** Finish reasons in the order the choices ended (the call span reports them, #15). */
  readonly finishReasons: string[] = [];

  constructor(
    private readonly ex: Exchange,
    private readonly cap: number,
    private readonly clientWantsUsage: boolean,
    private readonly name: string,
    /** Choices the request asked for (`n`): each must finish, unless `[DONE]` comes. */
    private readonly choices: number,
    private readonly body: JsonObject,
    /** Longest wait for the next event once the stream is under way (#16); none if undefined. */
    private readonly idleMs: number | undefined,
  ) {
    this.source = (ex.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** A Responses stream (`choices` 0) is whole once its terminal event came. */
  private sawTerminal = false;

  private get complete(): boolean {
    if (this.choices === 0) return this.sawTerminal;
    return this.sawDone || this.finishedChoices.size >= this.choices;
  }

  /**
   * The next block of whole events, or undefined at the end of a whole stream (or of a body
   * with no event at all: the caller refuses that as a bad response).
   */
  async next(): Promise<Buffer | undefined> {
    for (;;) {
      const step = await this.source.next();
      if (step.done === true) {
        this.finished = true;
        this.ex.done();
        if (this.splitter.remainder > 0) {
          throw syError('SY_ERR_UPSTREAM_STREAM_INTERRUPTED', `${this.name} cut an event short`);
        }
        if (this.delivered && !this.complete) {
          throw syError(
            'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
            `${this.name} ended the stream without a finish_reason or [DONE]`,
          );
        }
        return undefined;
      }
      this.bytes += step.value.length;
      if (this.bytes > this.cap) {
        throw syError('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE', String(this.cap));
      }
      const block = this.splitter.push(step.value);
      if (block === undefined) continue;
      const text = block.toString('latin1');
      if (this.choices === 0) {
        if (!this.sawTerminal && TERMINAL_MARK.test(text)) this.sawTerminal = true;
      } else if (!this.complete && (FINISH_MARK.test(text) || text.includes('[DONE]')))
        this.noteEnds(block);
      const out = USAGE_MARK.test(text) ? this.takeUsage(block) : block;
      if (out.length > 0) {
        this.delivered = true;
        return out;
      }
    }
  }

  /** The reported usage, else the tokenizer's count of what was delivered (once, when asked). */
  usage(): Usage | undefined {
    if (this.reported !== undefined) return this.reported;
    if (this.counted !== undefined && this.finished) return this.counted;
    const counted = streamedUsage(this.body, deliveredText(this.taken));
    if (this.finished) {
      this.counted = counted;
      this.taken = [];
    }
    return counted;
  }

  iterate(first: Buffer): AsyncGenerator<Buffer> {
    return relay(this, first, this.ex, this.name, this.idleMs, (b) => this.took(b));
  }

  /** The consumer asked for the next block: it has the previous one. */
  private took(block: Buffer): void {
    if (this.reported === undefined) this.taken.push(block);
  }

  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    this.ex.discard();
  }

  /** Notes `[DONE]` and the choices a finish_reason ended (only blocks that may hold them). */
  private noteEnds(block: Buffer): void {
    for (const data of eventData(block)) {
      if (data === '[DONE]') {
        this.sawDone = true;
        continue;
      }
      if (!FINISH_MARK.test(data)) continue;
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue; // Not JSON: it ends nothing.
      }
      const choices = isJsonObject(chunk) ? chunk['choices'] : undefined;
      if (!Array.isArray(choices)) continue;
      for (const c of choices) {
        if (!isJsonObject(c) || typeof c['finish_reason'] !== 'string') continue;
        const index = typeof c['index'] === 'number' ? c['index'] : 0;
        if (!this.finishedChoices.has(index)) this.finishReasons.push(c['finish_reason']);
        this.finishedChoices.add(index);
      }
    }
  }

  /** Records usage; drops the usage-only final chunk when the client did not ask for it. */
  private takeUsage(block: Buffer): Buffer {
    const kept: string[] = [];
    let dropped = false;
    for (const data of eventData(block)) {
      let keep = true;
      if (data !== '[DONE]' && USAGE_MARK.test(data)) {
        try {
          const chunk = JSON.parse(data) as unknown;
          if (isJsonObject(chunk)) {
            this.reported =
              readUsage(chunk['usage']) ??
              (isJsonObject(chunk['response'])
                ? readUsage(chunk['response']['usage'])
                : undefined) ??
              this.reported;
            if (this.reported !== undefined) this.taken = [];
            const choices = chunk['choices'];
            if (!this.clientWantsUsage && Array.isArray(choices) && choices.length === 0)
              keep = false;
          }
        } catch {
          // Not JSON: forward it untouched; the client sees what the upstream sent.
        }
      }
      if (keep) kept.push(`data: ${data}\n\n`);
      else dropped = true;
    }
    return dropped ? Buffer.from(kept.join('')) : block;
  }
}

/** Reads a binary answer (speech audio) chunk by chunk, under a byte cap. */
class BytesReader {
  private readonly source: AsyncIterator<Buffer>;
  private bytes = 0;
  private finished = false;

  constructor(
    private readonly ex: Exchange,
    private readonly cap: number,
    private readonly name: string,
    private readonly idleMs: number | undefined,
  ) {
    this.source = (ex.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async next(): Promise<Buffer | undefined> {
    for (;;) {
      const step = await this.source.next();
      if (step.done === true) {
        this.finished = true;
        this.ex.done();
        return undefined;
      }
      this.bytes += step.value.length;
      if (this.bytes > this.cap)
        throw syError('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE', String(this.cap));
      if (step.value.length > 0) return step.value;
    }
  }

  iterate(first: Buffer): AsyncGenerator<Buffer> {
    return relay(this, first, this.ex, this.name, this.idleMs, () => undefined);
  }

  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    this.ex.discard();
  }
}

/**
 * OpenAI usage as Usage, if present and numeric: chat and embeddings (`prompt_tokens`,
 * `completion_tokens`) or a Response (`input_tokens`, `output_tokens`).
 */
export function readUsage(value: unknown): Usage | undefined {
  if (!isJsonObject(value)) return undefined;
  const input = value['prompt_tokens'] ?? value['input_tokens'];
  const output = value['completion_tokens'] ?? value['output_tokens'];
  if (typeof input !== 'number') return undefined;
  return { inputTokens: input, outputTokens: typeof output === 'number' ? output : 0 };
}

/** The text of the content (and tool-call arguments) deltas in SSE blocks. */
function deliveredText(blocks: readonly Buffer[]): string {
  let text = '';
  for (const block of blocks)
    for (const data of eventData(block)) {
      if (data === '[DONE]') continue;
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      const choices = isJsonObject(chunk) ? chunk['choices'] : undefined;
      if (!Array.isArray(choices)) continue;
      for (const c of choices) {
        // A legacy completion's chunk carries its text on the choice (#16 part 4).
        if (isJsonObject(c) && typeof c['text'] === 'string') text += c['text'];
        const delta = isJsonObject(c) ? c['delta'] : undefined;
        if (!isJsonObject(delta)) continue;
        if (typeof delta['content'] === 'string') text += delta['content'];
        const calls = delta['tool_calls'];
        if (Array.isArray(calls))
          for (const call of calls) {
            const fn = isJsonObject(call) ? call['function'] : undefined;
            if (isJsonObject(fn) && typeof fn['arguments'] === 'string') text += fn['arguments'];
          }
      }
    }
  return text;
}

/** How many choices a chat request asks for (OpenAI `n`, 1 by default). */
function choiceCount(body: JsonObject): number {
  const n = body['n'];
  return typeof n === 'number' && Number.isInteger(n) && n > 1 ? n : 1;
}

function lowerKeys(h: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}
