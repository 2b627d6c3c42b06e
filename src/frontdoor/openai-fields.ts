import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';

/**
 * The OpenAI request fields the gateway forwards, checked against the ranges the OpenAI API
 * reference documents (create chat completion, create embeddings). A value out of range is a
 * 400 `SY_ERR_INVALID_REQUEST` naming the field in `param`, before any quota is taken or any
 * upstream called (#13: a negative `max_tokens` used to be forwarded and answered 200). Fields
 * not listed pass through untouched: upstreams add their own, and enums that OpenAI grows
 * (`reasoning_effort`, `service_tier`, ...) are only checked for their type. Numbers are finite
 * already: the JSON parser refuses anything that overflows.
 */

type Check = (value: JsonValue, param: string) => void;

function invalid(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

const integer =
  (min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): Check =>
  (v, param) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      const range =
        max === Number.MAX_SAFE_INTEGER
          ? min === Number.MIN_SAFE_INTEGER
            ? 'an integer'
            : `an integer >= ${min}`
          : `an integer from ${min} to ${max}`;
      invalid(`"${param}" must be ${range}`, param);
    }
  };

const number =
  (min: number, max: number): Check =>
  (v, param) => {
    if (typeof v !== 'number' || v < min || v > max)
      invalid(`"${param}" must be a number from ${min} to ${max}`, param);
  };

const boolean: Check = (v, param) => {
  if (typeof v !== 'boolean') invalid(`"${param}" must be a boolean`, param);
};

const string: Check = (v, param) => {
  if (typeof v !== 'string') invalid(`"${param}" must be a string`, param);
};

const object: Check = (v, param) => {
  if (!isJsonObject(v)) invalid(`"${param}" must be an object`, param);
};

const oneOf =
  (...allowed: string[]): Check =>
  (v, param) => {
    if (typeof v !== 'string' || !allowed.includes(v))
      invalid(`"${param}" must be one of ${allowed.join(', ')}`, param);
  };

/** `null` is accepted where the reference marks the field nullable (it means "unset"). */
const nullable =
  (check: Check): Check =>
  (v, param) => {
    if (v !== null) check(v, param);
  };

/** Up to 4 stop sequences: a string or an array of 1-4 strings. */
const stop: Check = (v, param) => {
  if (typeof v === 'string') return;
  if (!Array.isArray(v) || v.length === 0 || v.length > 4)
    invalid(`"${param}" must be a string or an array of 1 to 4 strings`, param);
  v.forEach((s, i) => string(s, `${param}[${i}]`));
};

/** Token ids (as keys) to a bias from -100 to 100. */
const logitBias: Check = (v, param) => {
  if (!isJsonObject(v)) invalid(`"${param}" must be an object of token ids to biases`, param);
  for (const [token, bias] of Object.entries(v)) {
    if (!/^\d{1,10}$/.test(token))
      invalid(`"${param}" keys must be token ids (whole numbers)`, `${param}.${token}`);
    number(-100, 100)(bias, `${param}.${token}`);
  }
};

/** At most 16 keys of up to 64 characters, each a string of up to 512. */
const metadata: Check = (v, param) => {
  if (!isJsonObject(v)) invalid(`"${param}" must be an object of strings`, param);
  const entries = Object.entries(v);
  if (entries.length > 16) invalid(`"${param}" may hold at most 16 keys`, param);
  for (const [k, s] of entries) {
    if (k.length > 64) invalid(`"${param}" keys are at most 64 characters`, param);
    if (typeof s !== 'string' || s.length > 512)
      invalid(`"${param}" values must be strings of at most 512 characters`, `${param}.${k}`);
  }
};

const responseFormat: Check = (v, param) => {
  if (!isJsonObject(v)) invalid(`"${param}" must be an object`, param);
  oneOf('text', 'json_object', 'json_schema')(v['type'] ?? null, `${param}.type`);
  if (v['type'] === 'json_schema') {
    const schema = v['json_schema'];
    if (!isJsonObject(schema) || typeof schema['name'] !== 'string')
      invalid(`"${param}.json_schema" must be an object with a "name"`, `${param}.json_schema`);
  }
};

const tools: Check = (v, param) => {
  if (!Array.isArray(v)) invalid(`"${param}" must be an array of tools`, param);
  v.forEach((tool, i) => {
    const at = `${param}[${i}]`;
    if (!isJsonObject(tool) || typeof tool['type'] !== 'string')
      invalid('each tool must be an object with a "type"', at);
    if (tool['type'] === 'function') {
      const fn = tool['function'];
      if (!isJsonObject(fn) || typeof fn['name'] !== 'string' || fn['name'] === '')
        invalid('a function tool needs "function.name"', `${at}.function`);
    }
  });
};

/** `none`, `auto`, `required`, or an object naming the tool. */
const toolChoice: Check = (v, param) => {
  if (typeof v === 'string') return oneOf('none', 'auto', 'required')(v, param);
  if (!isJsonObject(v) || typeof v['type'] !== 'string')
    invalid(`"${param}" must be none, auto, required or an object with a "type"`, param);
};

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];

const messages: Check = (v, param) => {
  if (!Array.isArray(v) || v.length === 0) invalid(`"${param}" must be a non-empty array`, param);
  v.forEach((m, i) => {
    const at = `${param}[${i}]`;
    if (!isJsonObject(m)) invalid('each message must be an object', at);
    oneOf(...ROLES)(m['role'] ?? null, `${at}.role`);
    const content = m['content'];
    if (content !== undefined && content !== null && typeof content !== 'string') {
      if (!Array.isArray(content) || !content.every(isJsonObject))
        invalid('"content" must be a string or an array of content parts', `${at}.content`);
    }
    if (m['name'] !== undefined) string(m['name'], `${at}.name`);
  });
};

const model: Check = (v, param) => {
  if (typeof v !== 'string' || v === '') invalid(`"${param}" must be a non-empty string`, param);
};

/** Chat completions: https://platform.openai.com/docs/api-reference/chat/create */
const CHAT: Readonly<Record<string, Check>> = {
  model,
  messages,
  max_tokens: nullable(integer(1)),
  max_completion_tokens: nullable(integer(1)),
  temperature: nullable(number(0, 2)),
  top_p: nullable(number(0, 1)),
  n: nullable(integer(1, 128)),
  presence_penalty: nullable(number(-2, 2)),
  frequency_penalty: nullable(number(-2, 2)),
  logprobs: nullable(boolean),
  top_logprobs: nullable(integer(0, 20)),
  seed: nullable(integer()),
  stop: nullable(stop),
  logit_bias: nullable(logitBias),
  user: string,
  safety_identifier: nullable(string),
  prompt_cache_key: nullable(string),
  metadata: nullable(metadata),
  response_format: responseFormat,
  tools,
  tool_choice: toolChoice,
  parallel_tool_calls: boolean,
  stream: nullable(boolean),
  stream_options: nullable(object),
  store: nullable(boolean),
  modalities: nullable((v, param) => {
    if (!Array.isArray(v)) invalid(`"${param}" must be an array`, param);
    v.forEach((m, i) => oneOf('text', 'audio')(m, `${param}[${i}]`));
  }),
  reasoning_effort: nullable(string),
  service_tier: nullable(string),
  verbosity: nullable(string),
  audio: nullable(object),
  prediction: nullable(object),
  web_search_options: object,
  functions: (v, param) => {
    if (!Array.isArray(v)) invalid(`"${param}" must be an array`, param);
    v.forEach((f, i) => {
      if (!isJsonObject(f) || typeof f['name'] !== 'string')
        invalid('each function needs a "name"', `${param}[${i}]`);
    });
  },
  function_call: (v, param) => {
    if (typeof v === 'string') return oneOf('none', 'auto')(v, param);
    if (!isJsonObject(v) || typeof v['name'] !== 'string')
      invalid(`"${param}" must be none, auto or {"name": ...}`, param);
  },
};

/** What one embeddings input may be: 2048 items at most, no empty strings, token ids >= 0. */
const embeddingInput: Check = (v, param) => {
  const tokens = (a: JsonValue[]): boolean =>
    a.length > 0 && a.every((t) => typeof t === 'number' && Number.isInteger(t) && t >= 0);
  const ok =
    (typeof v === 'string' && v !== '') ||
    (Array.isArray(v) &&
      v.length > 0 &&
      v.length <= 2048 &&
      (v.every((x) => typeof x === 'string' && x !== '') ||
        tokens(v) ||
        v.every((x) => Array.isArray(x) && tokens(x))));
  if (!ok)
    invalid(
      `"${param}" must be a non-empty string, or an array of at most 2048 non-empty strings or token arrays`,
      param,
    );
};

/** Embeddings: https://platform.openai.com/docs/api-reference/embeddings/create */
const EMBEDDINGS: Readonly<Record<string, Check>> = {
  model,
  input: embeddingInput,
  dimensions: integer(1),
  encoding_format: oneOf('float', 'base64'),
  user: string,
};

function check(
  body: JsonObject,
  fields: Readonly<Record<string, Check>>,
  required: string[],
): void {
  for (const name of required) {
    if (body[name] === undefined) fields[name]!(null, name);
  }
  // The body's keys (a few), not the table's (dozens): fields are checked in the body's order.
  for (const name in body) {
    const v = body[name];
    if (v !== undefined && Object.hasOwn(fields, name)) fields[name]!(v, name);
  }
}

/** Checks a chat completion request; everything not listed passes through to the upstream. */
export function validateChat(body: JsonObject): void {
  check(body, CHAT, ['model', 'messages']);
  const top = body['top_logprobs'];
  // The reference: "logprobs must be set to true if this parameter is used".
  if (top !== undefined && top !== null && body['logprobs'] !== true)
    invalid('"top_logprobs" needs "logprobs": true', 'top_logprobs');
}

/** Checks an embeddings request. */
export function validateEmbeddings(body: JsonObject): void {
  check(body, EMBEDDINGS, ['model', 'input']);
}

const present: Check = (v, param) => {
  if (v === null) invalid(`"${param}" is required`, param);
};

/**
 * The pass-through operations (#16 part 4), from the OpenAI API reference (create completion,
 * create moderation, create image, create speech): the fields the gateway reads for routing
 * and pricing; the rest is the upstream's to judge.
 */
const PASS: Readonly<Record<JsonPassOp, Readonly<Record<string, Check>>>> = {
  completions: {
    model,
    prompt: present,
    max_tokens: nullable(integer(0)),
    n: nullable(integer(1, 128)),
    stream: nullable(boolean),
    stream_options: nullable(object),
    user: string,
  },
  moderations: { model, input: present },
  images: { model, prompt: string, n: nullable(integer(1, 10)), user: string },
  speech: { model, input: string, voice: present, speed: number(0.25, 4) },
};
const PASS_REQUIRED: Readonly<Record<JsonPassOp, string[]>> = {
  completions: ['model', 'prompt'],
  moderations: ['model', 'input'],
  images: ['model', 'prompt'],
  speech: ['model', 'input', 'voice'],
};
type JsonPassOp = 'completions' | 'moderations' | 'images' | 'speech';

/** Checks a pass-through request (completions, moderations, images, speech). */
export function validatePassThrough(op: JsonPassOp, body: JsonObject): void {
  check(body, PASS[op], PASS_REQUIRED[op]);
}

/** Checks a transcription form's `model` field (the only field the gateway reads). */
export function validateUploadModel(value: string | undefined): string {
  if (value === undefined || value === '') invalid('"model" must be a non-empty string', 'model');
  return value;
}
