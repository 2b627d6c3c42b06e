import { createRequire } from 'node:module';
import type * as Tokenizer from 'gpt-tokenizer';
import type { Usage } from '../contracts/backend.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import type { CostModel } from '../contracts/stage.js';

/**
 * The one cost function (DESIGN.md: "Cost and token estimation live in one pure module"). Every
 * route, stage, quota and ledger prices work through here, so the same work costs the same
 * whichever path it took. Prices are in the config's currency units.
 */
export type Price = CostModel;

export const FREE: Price = { inPer1k: 0, outPer1k: 0, perCall: 0, perSecond: 0 };

/** A model's `cost:` config block as a Price (absent fields cost nothing). */
export function priceOf(
  cost:
    | {
        readonly in_per_1k?: number;
        readonly out_per_1k?: number;
        readonly per_call?: number;
        readonly per_second?: number;
        readonly per_image?: number;
        readonly per_audio_second?: number;
      }
    | undefined,
): Price {
  if (cost === undefined) return FREE;
  return {
    inPer1k: cost.in_per_1k ?? 0,
    outPer1k: cost.out_per_1k ?? 0,
    perCall: cost.per_call ?? 0,
    perSecond: cost.per_second ?? 0,
    ...(cost.per_image === undefined || cost.per_image === 0 ? {} : { perImage: cost.per_image }),
    ...(cost.per_audio_second === undefined || cost.per_audio_second === 0
      ? {}
      : { perAudioSecond: cost.per_audio_second }),
  };
}

/**
 * What one call cost: tokens in and out, the per-call price, model time, and for media calls
 * (#16 part 4) the images generated and the seconds of audio transcribed.
 */
export function callCost(price: Price, usage: Usage | undefined, ms: number): number {
  let cost = price.perCall + (price.perSecond * Math.max(0, ms)) / 1000;
  if (usage === undefined) return cost;
  cost += (price.inPer1k * usage.inputTokens + price.outPer1k * usage.outputTokens) / 1000;
  if (usage.images !== undefined) cost += (price.perImage ?? 0) * usage.images;
  if (usage.audioSeconds !== undefined) cost += (price.perAudioSecond ?? 0) * usage.audioSeconds;
  return cost;
}

/** Rough token count of a text (≈ 4 characters a token), for estimates before a call. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

function textTokens(v: JsonValue | undefined): number {
  if (typeof v === 'string') return estimateTokens(v);
  if (Array.isArray(v)) return v.reduce<number>((n, x) => n + textTokens(x), 0);
  if (v !== null && typeof v === 'object') return textTokens(v['text'] ?? v['content']);
  return 0;
}

/** What a request is expected to use before it runs: tokens in, and a cap or guess out. */
export interface Demand {
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Images asked for (`n` of an image generation). */
  readonly images?: number;
}

/**
 * A request body's likely usage, by operation: chat counts its messages (plus 4 a message) and
 * reserves `max_completion_tokens`/`max_tokens` (or `defaultOutput`) per choice; embeddings count
 * their input (token arrays as they are); anything else (KServe tensors) uses no tokens.
 */
export function demandOf(op: string, body: JsonObject, defaultOutput: number): Demand {
  if (op === 'chat') {
    const messages = body['messages'];
    const input = Array.isArray(messages)
      ? messages.reduce<number>((n, m) => n + textTokens(m) + 4, 0)
      : 0;
    const max = body['max_completion_tokens'] ?? body['max_tokens'];
    const n = body['n'];
    const choices = typeof n === 'number' && n > 1 ? Math.floor(n) : 1;
    const out = (typeof max === 'number' && max >= 0 ? max : defaultOutput) * choices;
    return { inputTokens: input, outputTokens: out };
  }
  if (op === 'embeddings') {
    const input = body['input'];
    let tokens = 0;
    if (Array.isArray(input) && input.every((x) => typeof x === 'number')) tokens = input.length;
    else if (Array.isArray(input))
      tokens = input.reduce<number>((n, x) => n + (Array.isArray(x) ? x.length : textTokens(x)), 0);
    else tokens = textTokens(input);
    return { inputTokens: tokens, outputTokens: 0 };
  }
  // The pass-through operations (#16 part 4): their text input, and the output they cap.
  if (op === 'completions') {
    const max = body['max_tokens'];
    const n = body['n'];
    const choices = typeof n === 'number' && n > 1 ? Math.floor(n) : 1;
    const out = (typeof max === 'number' && max >= 0 ? max : defaultOutput) * choices;
    return { inputTokens: textTokens(body['prompt']), outputTokens: out };
  }
  if (op === 'moderations' || op === 'speech')
    return { inputTokens: textTokens(body['input']), outputTokens: 0 };
  if (op === 'images') {
    const n = body['n'];
    const images = typeof n === 'number' && n > 1 ? Math.floor(n) : 1;
    return { inputTokens: textTokens(body['prompt']), outputTokens: 0, images };
  }
  return { inputTokens: 0, outputTokens: 0 };
}

/** The expected cost of a demand, with a predicted model time (ms) for per-second prices. */
export function expectedCost(price: Price, demand: Demand, predictedMs = 0): number {
  return callCost(
    price,
    {
      inputTokens: demand.inputTokens,
      outputTokens: demand.outputTokens,
      ...(demand.images === undefined ? {} : { images: demand.images }),
    },
    predictedMs,
  );
}

/**
 * The input tokens of a request whose upstream reports no usage (moderations, speech): its
 * `input` text (a string or an array of strings and text parts) counted by the tokenizer.
 */
export function inputTextTokens(input: JsonValue | undefined): number {
  if (typeof input === 'string') return tokenCount(input);
  if (Array.isArray(input)) return input.reduce<number>((n, x) => n + inputTextTokens(x), 0);
  if (input !== null && typeof input === 'object' && typeof input['text'] === 'string')
    return tokenCount(input['text']);
  return 0;
}

/**
 * Exact token count of a text with a real BPE tokenizer (`gpt-tokenizer`, o200k_base), for
 * usage an upstream did not report (a stream without a usage chunk, a cut stream; #15).
 */
export function tokenCount(text: string): number {
  if (text === '') return 0;
  counter ??= (createRequire(import.meta.url)('gpt-tokenizer') as typeof Tokenizer).countTokens;
  return counter(text);
}

/**
 * The tokenizer is loaded on first use, not at import: its BPE tables take ~0.4 s of CPU to load,
 * which every CLI command and every gateway start would pay, though only streams whose upstream
 * reports no usage need it (the first such stream pays it once).
 */
let counter: ((text: string) => number) | undefined;

/** The text of a message's `content` (a string, or the `text` parts of a content array). */
function contentText(v: JsonValue | undefined): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v))
    return v
      .map((p) => (p !== null && typeof p === 'object' && !Array.isArray(p) ? p['text'] : p))
      .filter((t): t is string => typeof t === 'string')
      .join('');
  return '';
}

/**
 * A chat request's prompt tokens as OpenAI counts them for its chat models: each message costs
 * its role's and content's (and name's) tokens plus 3, and the reply is primed with 3 more
 * (openai-cookbook, "How to count tokens with tiktoken").
 */
export function chatPromptTokens(body: JsonObject): number {
  const messages = body['messages'];
  if (!Array.isArray(messages)) return 0;
  let n = 3;
  for (const m of messages) {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) continue;
    n += 3;
    const role = m['role'];
    if (typeof role === 'string') n += tokenCount(role);
    n += tokenCount(contentText(m['content']));
    const name = m['name'];
    if (typeof name === 'string') n += tokenCount(name) + 1;
  }
  return n;
}

/**
 * The usage of a streamed chat call whose upstream reported none: the prompt counted from the
 * request, the completion from the text actually delivered. Marked `estimated`.
 */
export function streamedUsage(body: JsonObject, deliveredText: string): Usage {
  return {
    // A legacy completion's prompt is `prompt`, not messages (#16 part 4).
    inputTokens:
      body['messages'] === undefined ? inputTextTokens(body['prompt']) : chatPromptTokens(body),
    outputTokens: tokenCount(deliveredText),
    estimated: true,
  };
}
