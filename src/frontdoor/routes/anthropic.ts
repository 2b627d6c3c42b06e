import type { JsonObject } from '../../contracts/json.js';
import { demandOf } from '../../core/cost.js';
import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { withScope } from '../scope.js';
import { anthropicErrorBody, sendJson, sendStream, type StreamShape } from '../respond.js';
import { chatToMessage, MessageEvents, sseEvent } from '../anthropic-answer.js';
import { messagesToChat } from '../anthropic-request.js';

/** The `anthropic-version` values the Messages API has published; Switchyard speaks the one shape. */
const VERSION_HEADER = 'anthropic-version';

function checkVersion(ctx: RequestContext): void {
  const v = ctx.req.headers[VERSION_HEADER];
  if (v !== undefined && (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v)))
    throw syError('SY_ERR_INVALID_REQUEST', `${VERSION_HEADER} must be a date such as 2023-06-01`, {
      param: VERSION_HEADER,
    });
}

/**
 * `POST /v1/messages` (Anthropic Messages API, #16) for any chat model: the request is translated
 * to the chat form, goes through the one model-call pipeline like a chat completion, and the
 * answer (or stream) is translated back.
 */
export async function createMessage(ctx: RequestContext): Promise<void> {
  checkVersion(ctx);
  const body = await ctx.readJson();
  const chat = messagesToChat(body);
  const name = chat['model'] as string;
  const pipeline = ctx.runtime.pipeline;
  ctx.model = name;
  pipeline.preflight(ctx.principal?.tenant ?? '', name, 'chat');
  const user = typeof chat['user'] === 'string' ? chat['user'] : undefined;
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('chat', chat, name), user },
    async (scope) => {
      if (chat['stream'] === true) {
        ctx.stream = true;
        const r = await pipeline.stream(scope, {
          op: 'chat',
          model: name,
          body: chat,
          direct: true,
        });
        ctx.model = r.model;
        ctx.release = r.reason;
        // A stream's answer is never buffered: its record keeps the request only (#15).
        if (payloadWanted(ctx)) keepPayload(ctx, body);
        const estimate = demandOf('chat', chat, 0).inputTokens;
        await sendStream(ctx, r.stream, messageStream(name, ctx.requestId, estimate));
        return;
      }
      const r = await pipeline.call(scope, { op: 'chat', model: name, body: chat, direct: true });
      ctx.model = r.model;
      ctx.release = r.reason;
      const message = chatToMessage(r.response.json, name, ctx.requestId);
      if (payloadWanted(ctx)) keepPayload(ctx, body, message);
      sendJson(ctx, 200, message);
    },
  );
}

function messageStream(model: string, requestId: string, estimate: number): StreamShape {
  const events = new MessageEvents(model, requestId, estimate);
  return {
    contentType: 'text/event-stream; charset=utf-8',
    transform: (chunk) => events.push(chunk),
    end: () => events.end(),
    // An `error` event the SDKs raise as their typed error (#16: never a clean end).
    error: (err, id) => {
      const b = anthropicErrorBody(err, id);
      return sseEvent('error', { error: b['error']!, request_id: id });
    },
  };
}

/**
 * `POST /v1/messages/count_tokens`: the input tokens of a Messages request, counted locally with
 * a BPE tokenizer (cl100k/o200k family). Exact for no model Switchyard serves; an estimate, as
 * docs/api.md says. It calls no model, so only request-rate quotas apply.
 */
export async function countMessageTokens(ctx: RequestContext): Promise<void> {
  checkVersion(ctx);
  const body = await ctx.readJson();
  // Validated like a create call; max_tokens is not part of a count request.
  const chat = messagesToChat({ ...body, max_tokens: 1 });
  const name = chat['model'] as string;
  ctx.model = name;
  ctx.runtime.pipeline.preflight(ctx.principal?.tenant ?? '', name, 'chat');
  const count = await tokenizer();
  await withScope(
    ctx,
    { origin: 'direct', estimate: { tokens: 0, spend: 0 }, requestsOnly: true },
    () => {
      sendJson(ctx, 200, { input_tokens: inputTokens(chat, count) });
      return Promise.resolve();
    },
  );
}

/** Special-token text in a prompt is counted as plain text, never refused. */
const PLAIN = { disallowedSpecial: new Set<string>() };
/** What one image is counted as: Anthropic's own estimate for a ~1.15 megapixel image. */
const IMAGE_TOKENS = 1_600;

type Count = (text: string) => number;
let loaded: Promise<Count> | undefined;

/**
 * The tokenizer, loaded on the first count: its BPE tables take seconds to load on a busy
 * machine, a cost every process start (and every CLI command) would pay if it were imported.
 */
function tokenizer(): Promise<Count> {
  loaded ??= import('gpt-tokenizer').then(
    (m) => (text: string) => m.countTokens(text, PLAIN),
    (err: unknown) => {
      loaded = undefined; // the next count tries again
      throw err;
    },
  );
  return loaded;
}

/** Tokens of the messages and tools as a chat template frames them (3 per message, 3 to prime). */
function inputTokens(chat: JsonObject, count: Count): number {
  let n = 3;
  for (const m of chat['messages'] as JsonObject[]) {
    n += 3;
    const c = m['content'];
    if (typeof c === 'string') n += count(c);
    else if (Array.isArray(c))
      for (const p of c as JsonObject[])
        n += typeof p['text'] === 'string' ? count(p['text']) : IMAGE_TOKENS;
    if (m['tool_calls'] !== undefined) n += count(JSON.stringify(m['tool_calls']));
  }
  if (chat['tools'] !== undefined) n += count(JSON.stringify(chat['tools']));
  return n;
}
