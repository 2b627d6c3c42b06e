import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import busboy from 'busboy';
import OpenAI, { toFile } from 'openai';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { events, subscribe, type ModelCallEvent } from '../../src/core/events.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import {
  refusedPort,
  startUpstream,
  type RecordedCall,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #16 part 4, pass-through with governance: moderations, images, speech, transcriptions and
 * legacy completions through the official OpenAI SDK (v6), against a local upstream that speaks
 * OpenAI's wire format. Each call is priced and recorded by the pipeline, and quotas apply.
 */
const MB = 1_048_576;
const CAP = 4 * MB;
/** Deterministic bytes (no two 4-byte words alike in the first GB): corruption cannot hide. */
function bytesOf(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE((i * 2_654_435_761 + seed) >>> 0, i);
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const AUDIO = bytesOf(300_000, 7);

interface Form {
  readonly fields: Record<string, string>;
  readonly files: Record<string, { bytes: Buffer; filename: string; mimeType: string }>;
}

/** Parses a recorded multipart body as an OpenAI server would. */
function parseForm(call: RecordedCall): Promise<Form> {
  return new Promise((resolve, reject) => {
    const form: Form = { fields: {}, files: {} };
    const bb = busboy({ headers: call.headers, limits: { fileSize: 64 * MB } });
    bb.on('field', (name, value) => (form.fields[name] = value));
    bb.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        form.files[name] = {
          bytes: Buffer.concat(chunks),
          filename: info.filename ?? '',
          mimeType: info.mimeType,
        };
      });
    });
    bb.on('close', () => resolve(form));
    bb.on('error', reject);
    bb.end(call.bytes);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  const raw = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(raw);
}

const completionChunk = (text: string, finish: string | null): string =>
  `data: ${JSON.stringify({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'm', choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] })}\n\n`;

/** An OpenAI server: each pass-through endpoint answers as the API reference shows. */
async function openAiServer(req: IncomingMessage, res: ServerResponse, call: RecordedCall) {
  const path = call.path;
  if (path === '/v1/moderations') {
    const body = JSON.parse(call.body) as { input: string };
    return sendJson(res, 200, {
      id: 'modr-1',
      model: 'omni-moderation-latest',
      results: [{ flagged: body.input.includes('bad'), categories: {}, category_scores: {} }],
    });
  }
  if (path === '/v1/images/generations') {
    const body = JSON.parse(call.body) as { n?: number; size?: string };
    if (body.size === '7x7')
      return sendJson(
        res,
        400,
        {
          error: {
            message: 'Invalid size',
            type: 'invalid_request_error',
            param: 'size',
            code: 'invalid_size',
          },
        },
        { 'x-ratelimit-remaining-requests': '41' },
      );
    const n = body.n ?? 1;
    return sendJson(res, 200, {
      created: 1,
      data: Array.from({ length: n }, (_, i) => ({
        b64_json: Buffer.from(`img${i}`).toString('base64'),
      })),
    });
  }
  if (path === '/v1/audio/speech') {
    res.writeHead(200, { 'content-type': 'audio/mpeg' });
    if ((JSON.parse(call.body) as { model: string }).model === 'cut') {
      // Half the audio, then a reset.
      res.write(AUDIO.subarray(0, 100_000));
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    // In several writes, so the gateway relays chunks as they come.
    for (let at = 0; at < AUDIO.length; at += 65_536) {
      res.write(AUDIO.subarray(at, at + 65_536));
      await new Promise((r) => setImmediate(r));
    }
    res.end();
    return;
  }
  if (path === '/v1/audio/transcriptions') {
    const form = await parseForm(call);
    if (form.fields['model'] === 'fail-me')
      return sendJson(res, 503, { error: { message: 'overloaded', type: 'server_error' } });
    const file = form.files['file'];
    if (form.fields['response_format'] === 'text') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`plain ${file?.bytes.length ?? 0}\n`);
      return;
    }
    return sendJson(res, 200, {
      text: `${form.fields['model']} heard ${file?.bytes.length ?? 0} bytes, sha ${file === undefined ? '' : sha(file.bytes)}`,
      usage: { type: 'duration', seconds: 12 },
    });
  }
  if (path === '/v1/completions') {
    const body = JSON.parse(call.body) as {
      stream?: boolean;
      stream_options?: { include_usage?: boolean };
    };
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const piece of ['Once ', 'upon ', 'a time']) res.write(completionChunk(piece, null));
      res.write(completionChunk('', 'stop'));
      if (body.stream_options?.include_usage === true)
        res.write(
          `data: ${JSON.stringify({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 } })}\n\n`,
        );
      res.end('data: [DONE]\n\n');
      return;
    }
    return sendJson(res, 200, {
      id: 'cmpl-1',
      object: 'text_completion',
      created: 1,
      model: 'davinci-002',
      choices: [{ text: 'Once upon a time', index: 0, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
    });
  }
  return sendJson(res, 404, {
    error: { message: `no route ${path}`, type: 'invalid_request_error' },
  });
}

const PRICES = {
  moderate: { per_call: 0.001, in_per_1k: 1 },
  image: { per_image: 0.04, per_call: 0.01 },
  speak: { in_per_1k: 15 },
  transcribe: { per_audio_second: 0.0001 },
  complete: { in_per_1k: 2, out_per_1k: 3 },
};

const KEYS = { user: generateKey('sk'), metered: generateKey('sk'), admin: generateKey('sk') };

describe('pass-through endpoints through the OpenAI SDK (#16 part 4)', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let client: OpenAI;
  const seen: ModelCallEvent[] = [];
  let off: () => void;

  beforeAll(async () => {
    up = await startUpstream(openAiServer);
    const model = (op: string, cost: Record<string, number>, extra = {}) =>
      openaiModel(up.url, { operations: [op], cost, ...extra });
    const down = `http://127.0.0.1:${await refusedPort()}`;
    gw = await startTestGateway({
      config: {
        server: { host: '127.0.0.1', port: 0, limits: { upload_bytes: CAP } },
        tenants: {
          acme: {
            keys: [
              { id: 'k1', hash: hashKey(KEYS.user, TEST_SECRET) },
              { id: 'ops', hash: hashKey(KEYS.admin, TEST_SECRET), admin: true },
            ],
            models: ['*'],
          },
          // Two requests a day, whatever they call.
          metered: {
            keys: [{ id: 'k', hash: hashKey(KEYS.metered, TEST_SECRET) }],
            models: ['*'],
            quotas: { window_s: 86_400, requests: 2 },
          },
        },
        models: {
          moderate: model('moderations', PRICES.moderate),
          image: model('images', PRICES.image),
          speak: model('speech', PRICES.speak),
          transcribe: model('transcriptions', PRICES.transcribe, { upstream_model: 'whisper-1' }),
          complete: model('completions', PRICES.complete),
          'speak-cut': model('speech', PRICES.speak, { upstream_model: 'cut' }),
          // Nothing listens: the upload was never sent, so it may fall back.
          'transcribe-down': {
            ...openaiModel(down, { operations: ['transcriptions'] }),
            retry: { max_attempts: 1 },
            fallback: ['transcribe'],
          },
          // Retries on, to show an upload is never sent twice.
          'transcribe-retry': model('transcriptions', PRICES.transcribe, {
            upstream_model: 'fail-me',
            retry: { max_attempts: 3, base_delay_ms: 1, max_delay_ms: 2 },
          }),
          chat: openaiModel(up.url),
        },
      },
    });
    client = new OpenAI({ apiKey: KEYS.user, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    off = subscribe(events.modelCall, (e) => seen.push(e));
  });
  afterAll(async () => {
    off?.();
    await gw?.close();
    await up?.close();
  });
  afterEach(() => {
    seen.length = 0;
    up.calls.length = 0;
  });

  /** The record of the last call (a stream's is published when it ends). */
  async function recorded(): Promise<ModelCallEvent> {
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toHaveLength(1);
    return seen[0]!;
  }

  it('moderations.create reaches the upstream and is priced per call and per input token', async () => {
    const r = await client.moderations.create({ model: 'moderate', input: 'a bad word' });
    expect(r.results[0]!.flagged).toBe(true);
    expect(up.calls[0]!.path).toBe('/v1/moderations');
    const e = await recorded();
    expect(e).toMatchObject({
      op: 'moderations',
      model: 'moderate',
      tenant: 'acme',
      outcome: 'ok',
    });
    // The API reports no usage: the input is counted by the gateway's tokenizer.
    expect(e.inputTokens).toBeGreaterThan(0);
    expect(e.estimated).toBe(true);
    expect(e.cost).toBeCloseTo(0.001 + e.inputTokens / 1000, 9);
  });

  it('images.generate is priced per image the upstream returned', async () => {
    const r = await client.images.generate({ model: 'image', prompt: 'a lighthouse', n: 3 });
    expect(r.data).toHaveLength(3);
    expect(Buffer.from(r.data![2]!.b64_json!, 'base64').toString()).toBe('img2');
    const e = await recorded();
    expect(e.op).toBe('images');
    expect(e.cost).toBeCloseTo(0.01 + 3 * 0.04, 9);
  });

  it("keeps an upstream image error's param and code and its rate-limit headers", async () => {
    const err = await client.images
      .generate({ model: 'image', prompt: 'x', size: '7x7' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.param).toBe('size');
    expect(e.code).toBe('invalid_size');
    expect((e.error as Record<string, unknown>)['switchyard_code']).toBe(
      'SY_ERR_UPSTREAM_REJECTED',
    );
    expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('41');
    expect(e.headers?.get('x-should-retry')).toBe('false');
  });

  it('audio.speech.create streams the upstream audio back byte for byte', async () => {
    const res = await client.audio.speech.create({
      model: 'speak',
      input: 'The harbour wakes slowly.',
      voice: 'alloy',
    });
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    const got = Buffer.from(await res.arrayBuffer());
    expect(got.length).toBe(AUDIO.length);
    expect(sha(got)).toBe(sha(AUDIO));
    const e = await recorded();
    expect(e).toMatchObject({ op: 'speech', stream: true, outcome: 'ok' });
    expect(e.inputTokens).toBeGreaterThan(0);
    expect(e.cost).toBeCloseTo((15 * e.inputTokens) / 1000, 9);
  });

  it('audio.transcriptions.create uploads a multi-MB file intact, under the upstream model name', async () => {
    const audio = bytesOf(3 * MB + 17, 3);
    const r = await client.audio.transcriptions.create({
      file: await toFile(audio, 'meeting.mp3', { type: 'audio/mpeg' }),
      model: 'transcribe',
      language: 'en',
    });
    expect(r.text).toBe(`whisper-1 heard ${audio.length} bytes, sha ${sha(audio)}`);
    const form = await parseForm(up.calls[0]!);
    expect(form.fields).toMatchObject({ model: 'whisper-1', language: 'en' });
    expect(form.files['file']).toMatchObject({ filename: 'meeting.mp3', mimeType: 'audio/mpeg' });
    const e = await recorded();
    expect(e).toMatchObject({ op: 'transcriptions', model: 'transcribe', outcome: 'ok' });
    // 12 seconds of audio, as the upstream reported them.
    expect(e.cost).toBeCloseTo(12 * 0.0001, 9);
  });

  it('refuses an upload over the cap with 413 before the upstream sees any of it', async () => {
    const before = up.started();
    const err = await client.audio.transcriptions
      .create({
        file: await toFile(bytesOf(CAP + 1, 5), 'long.mp3', { type: 'audio/mpeg' }),
        model: 'transcribe',
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(413);
    expect(e.code).toBe('SY_ERR_BODY_TOO_LARGE');
    expect(up.started()).toBe(before);
    expect(seen).toHaveLength(0);
  });

  it('cuts a chunked upload at the cap with 413: the upstream never gets a whole form', async () => {
    const boundary = 'b0undary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntranscribe\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n` +
        'Content-Type: audio/mpeg\r\n\r\n',
    );
    const total = CAP + 2 * MB;
    let sent = 0;
    // No content-length: the cap can only be found while reading.
    const body = Readable.from(
      (function* () {
        yield head;
        while (sent < total) {
          const chunk = bytesOf(65_536, sent);
          sent += chunk.length;
          yield chunk;
        }
        yield Buffer.from(`\r\n--${boundary}--\r\n`);
      })(),
    );
    const res = await request(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEYS.user}`,
        'content-type': `multipart/form-data; boundary=${boundary}`,
      },
      body,
    });
    const answer = (await res.body.json()) as { error: { code: string } };
    expect(res.statusCode).toBe(413);
    expect(answer.error.code).toBe('SY_ERR_BODY_TOO_LARGE');
    // The upstream's request was cut part-way: it never completed.
    await new Promise((r) => setTimeout(r, 50));
    expect(up.calls.filter((c) => c.path === '/v1/audio/transcriptions')).toHaveLength(0);
  });

  it('completions.create answers plain and priced by the reported tokens', async () => {
    const r = await client.completions.create({ model: 'complete', prompt: 'Once', max_tokens: 8 });
    expect(r.choices[0]!.text).toBe('Once upon a time');
    expect(r.usage?.total_tokens).toBe(9);
    const e = await recorded();
    expect(e).toMatchObject({ op: 'completions', inputTokens: 5, outputTokens: 4 });
    expect(e.cost).toBeCloseTo((2 * 5 + 3 * 4) / 1000, 9);
  });

  it('completions.create streams, priced from the usage chunk it asked the upstream for', async () => {
    const stream = await client.completions.create({
      model: 'complete',
      prompt: 'Once',
      stream: true,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      // The usage chunk was not asked for by the client: it is not forwarded.
      expect(chunk.usage ?? undefined).toBeUndefined();
    }
    expect(text).toBe('Once upon a time');
    expect(finish).toBe('stop');
    const sentUp = JSON.parse(up.calls[0]!.body) as Record<string, unknown>;
    expect(sentUp['stream_options']).toEqual({ include_usage: true });
    const e = await recorded();
    expect(e).toMatchObject({ op: 'completions', stream: true, inputTokens: 5, outputTokens: 4 });
  });

  it('refuses an operation the model does not serve with 400 SY_ERR_OPERATION_UNSUPPORTED', async () => {
    const err = await client.moderations
      .create({ model: 'chat', input: 'hello' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('SY_ERR_OPERATION_UNSUPPORTED');
    expect(up.calls).toHaveLength(0);
  });

  it('refuses a tenant over its quota before the upstream is called', async () => {
    const metered = new OpenAI({ apiKey: KEYS.metered, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await metered.moderations.create({ model: 'moderate', input: 'one' });
    await metered.images.generate({ model: 'image', prompt: 'two' });
    const calls = up.calls.length;
    const err = await metered.audio.transcriptions
      .create({ file: await toFile(AUDIO, 'a.mp3'), model: 'transcribe' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('SY_ERR_RATE_LIMITED');
    const speech = await metered.audio.speech
      .create({ model: 'speak', input: 'x', voice: 'alloy' })
      .catch((e: unknown) => e);
    expect(speech).toBeInstanceOf(OpenAI.RateLimitError);
    expect(up.calls.length).toBe(calls);
  });

  it('never sends an upload twice: a failed transcription is not retried', async () => {
    const err = await client.audio.transcriptions
      .create({ file: await toFile(AUDIO, 'a.mp3'), model: 'transcribe-retry' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    expect(up.calls.filter((c) => c.path === '/v1/audio/transcriptions')).toHaveLength(1);
    // The same model retries a request it can send again (the retry layer is on).
    const before = up.calls.length;
    await client.moderations.create({ model: 'moderate', input: 'fine' });
    expect(up.calls.length).toBe(before + 1);
  });

  it("lands every pass-through call's cost in the ledger, per model", async () => {
    await client.images.generate({ model: 'image', prompt: 'ledger', n: 2 });
    await gw.gateway.runtime().costs!.recorder.flush();
    const res = await request(`${gw.url}/admin/costs?group_by=model&tenant=acme`, {
      headers: { authorization: `Bearer ${KEYS.admin}` },
    });
    expect(res.statusCode).toBe(200);
    const groups = (
      (await res.body.json()) as { groups: { key: string; cost: number; calls: number }[] }
    ).groups;
    const image = groups.find((g) => g.key === 'image');
    // Two generations so far in this file: 3 images, then 2 (the failed one cost nothing).
    expect(image?.cost).toBeCloseTo(0.01 + 3 * 0.04 + 0.01 + 2 * 0.04, 9);
    for (const m of ['moderate', 'speak', 'transcribe', 'complete'])
      expect(groups.find((g) => g.key === m)?.cost ?? 0, m).toBeGreaterThan(0);
  });

  it('answers a body that is not a form 415, and a form without a model 400, naming the field', async () => {
    const post = async (type: string, body: string) => {
      const res = await request(`${gw.url}/v1/audio/transcriptions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEYS.user}`, 'content-type': type },
        body,
      });
      return {
        status: res.statusCode,
        error: ((await res.body.json()) as { error: Record<string, unknown> }).error,
      };
    };
    const json = await post('application/json', '{"model":"transcribe"}');
    expect(json.status).toBe(415);
    expect(json.error['code']).toBe('SY_ERR_MULTIPART_REQUIRED');
    const form = await post(
      'multipart/form-data; boundary=x',
      '--x\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n--x--\r\n',
    );
    expect(form.status).toBe(400);
    expect(form.error).toMatchObject({ code: 'SY_ERR_INVALID_REQUEST', param: 'model' });
    expect(up.calls).toHaveLength(0);
  });

  it('streams an upload whose model comes first: the upstream is called before the client has sent it all', async () => {
    const boundary = 'streamb';
    const file = bytesOf(2 * MB, 11);
    const body = new Readable({ read: () => undefined });
    body.push(
      `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntranscribe\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.mp3"\r\n` +
        'Content-Type: audio/mpeg\r\n\r\n',
    );
    body.push(file.subarray(0, MB));
    const before = up.started();
    const answer = request(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEYS.user}`,
        'content-type': `multipart/form-data; boundary=${boundary}`,
      },
      body,
    });
    // The rest is sent only once the upstream's request has begun.
    for (let i = 0; i < 500 && up.started() === before; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(up.started()).toBe(before + 1);
    expect(up.calls.filter((c) => c.path === '/v1/audio/transcriptions')).toHaveLength(0);
    body.push(file.subarray(MB));
    body.push(`\r\n--${boundary}--\r\n`);
    body.push(null);
    const res = await answer;
    expect(res.statusCode).toBe(200);
    const r = (await res.body.json()) as { text: string };
    expect(r.text).toBe(`whisper-1 heard ${file.length} bytes, sha ${sha(file)}`);
  });

  it('cuts the connection when the speech upstream fails mid-audio: partial audio never ends cleanly', async () => {
    const res = await client.audio.speech.create({
      model: 'speak-cut',
      input: 'x',
      voice: 'alloy',
    });
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
    const e = await recorded();
    expect(e).toMatchObject({ op: 'speech', outcome: 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED' });
  });

  it('forwards a transcription answered as text in its own media type', async () => {
    const text = await client.audio.transcriptions.create({
      file: await toFile(AUDIO, 'a.mp3'),
      model: 'transcribe',
      response_format: 'text',
    });
    expect(text).toBe(`plain ${AUDIO.length}\n`);
    const e = await recorded();
    expect(e).toMatchObject({ op: 'transcriptions', outcome: 'ok' });
  });

  it('falls back with an upload that no upstream has read yet (a refused connection)', async () => {
    const res = await client.audio.transcriptions
      .create({ file: await toFile(AUDIO, 'a.mp3'), model: 'transcribe-down' })
      .withResponse();
    expect(res.data.text).toBe(`whisper-1 heard ${AUDIO.length} bytes, sha ${sha(AUDIO)}`);
    expect(res.response.headers.get('x-switchyard-route')).toMatch(
      /^transcribe-down#1:UPSTREAM_UNREACHABLE>transcribe#1:ok$/,
    );
  });
});
