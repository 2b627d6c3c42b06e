import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import type { Clock } from '../../src/core/clock.js';
import { SqliteBatchStore } from '../../src/state/sqlite-batch-store.js';
import { metric } from '../support/http-call.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import {
  chatCompletion,
  embeddingList,
  json,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #16 item 3: files and batches through the official OpenAI SDK (v6). The upstream is a real
 * local HTTP server; every batch line reaches it through the gateway's one model pipeline.
 */

/** What a chat line asked: the content of its last message (each test line says its custom_id). */
function askedOf(body: string): string {
  const b = JSON.parse(body || '{}') as {
    messages?: { content?: string }[];
    input?: string;
  };
  return b.messages?.at(-1)?.content ?? b.input ?? '';
}

/** Chat answers echo the line; `fail-*` lines get an upstream 400; `hold` lines wait for `release`. */
function upstreamFor(state: { hold: Promise<void> }): Behaviour {
  return async (req, res, call) => {
    if (call.path.endsWith('/embeddings'))
      return json(200, embeddingList([0.5, 0.25]))(req, res, call);
    const body = (call.body === '' ? {} : JSON.parse(call.body)) as Record<string, unknown>;
    if (call.path.endsWith('/v1/completions'))
      return json(200, {
        id: 'cmpl-1',
        object: 'text_completion',
        created: 1,
        model: 'legacy-up',
        choices: [{ index: 0, text: `echo ${String(body['prompt'])}`, finish_reason: 'stop' }],
        usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
      })(req, res, call);
    if (call.path.endsWith('/v1/moderations'))
      return json(200, {
        id: 'modr-1',
        model: 'moderation-up',
        results: [{ flagged: String(body['input']).includes('bad'), categories: {} }],
      })(req, res, call);
    const asked = askedOf(call.body);
    if (asked.startsWith('hold')) await state.hold;
    if (asked.startsWith('fail'))
      return json(400, {
        error: {
          message: 'bad temperature',
          type: 'invalid_request_error',
          param: 'temperature',
          code: 'invalid_value',
        },
      })(req, res, call);
    return json(200, chatCompletion(`echo ${asked}`, { prompt_tokens: 10, completion_tokens: 5 }))(
      req,
      res,
      call,
    );
  };
}

const chatLine = (customId: string, content = customId): string =>
  JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'chat', messages: [{ role: 'user', content }] },
  });

const jsonl = (lines: readonly string[]): Buffer => Buffer.from(lines.join('\n') + '\n');

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`condition not met: ${JSON.stringify(v).slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A line of a batch's output or error file. */
interface LineOut {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

/** The `switchyard_code` of an SDK error. */
function syCode(e: unknown): unknown {
  return e instanceof OpenAI.APIError
    ? (e.error as { switchyard_code?: string } | undefined)?.switchyard_code
    : undefined;
}

async function linesOf(client: OpenAI, id: string): Promise<LineOut[]> {
  const text = await (await client.files.content(id)).text();
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LineOut);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Setup {
  up: TestUpstream;
  gw: TestGateway;
  client: OpenAI;
  other: OpenAI;
  release: () => void;
  /** Upstream chat calls per asked content. */
  hits(): Map<string, number>;
}

async function setup(
  batches: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
  chatExtra: Record<string, unknown> = {},
  options: { clock?: Clock; models?: (upstreamUrl: string) => Record<string, unknown> } = {},
): Promise<Setup> {
  let release: () => void = () => undefined;
  const state = { hold: new Promise<void>((r) => (release = r)) };
  const up = await startUpstream(upstreamFor(state));
  const otherKey = generateKey('sk');
  const gw = await startTestGateway({
    config: {
      models: {
        chat: openaiModel(up.url, { cost: { in_per_1k: 1, out_per_1k: 2 }, ...chatExtra }),
        embed: openaiModel(up.url, { operations: ['embeddings'] }),
        legacy: openaiModel(up.url, { operations: ['completions', 'moderations'] }),
        ...options.models?.(up.url),
      },
      batches: { poll_ms: 20, ...batches },
      costs: { flush_ms: 50 },
      inference_log: { enabled: true, flush_ms: 50 },
      ...extra,
    },
    options: options.clock === undefined ? {} : { clock: options.clock },
  });
  // A second tenant, on the same gateway.
  const cfg = gw.gateway.runtime().snapshot.config;
  gw.writeConfig({
    models: cfg.models,
    batches: { poll_ms: 20, ...batches },
    costs: { flush_ms: 50 },
    inference_log: { enabled: true, flush_ms: 50 },
    ...extra,
    tenants: {
      acme: { keys: [{ id: 'k1', hash: hashKey(gw.key, TEST_SECRET) }], models: ['*'] },
      globex: { keys: [{ id: 'g1', hash: hashKey(otherKey, TEST_SECRET) }], models: ['*'] },
    },
  });
  expect((await gw.gateway.reload()).result).toBe('applied');
  const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const other = new OpenAI({ apiKey: otherKey, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  return {
    up,
    gw,
    client,
    other,
    release: () => release(),
    hits: () => {
      const m = new Map<string, number>();
      for (const c of up.calls)
        if (c.path.endsWith('/chat/completions')) {
          const a = askedOf(c.body);
          m.set(a, (m.get(a) ?? 0) + 1);
        }
      return m;
    },
  };
}

async function upload(client: OpenAI, lines: readonly string[]) {
  return client.files.create({ file: await toFile(jsonl(lines), 'input.jsonl'), purpose: 'batch' });
}

describe('files and batches through the OpenAI SDK (#16)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  afterAll(async () => {
    s.release();
    await s.gw.close();
    await s.up.close();
  });
  afterEach(() => {
    s.gw.gateway.admission.modes.force('auto', 'test', 'reset');
  });

  it('runs a chat batch: files.create, batches.create, retrieve, files.content of the output and error files', async () => {
    const file = await upload(s.client, [chatLine('a'), chatLine('b'), chatLine('fail-c')]);
    expect(file).toMatchObject({
      object: 'file',
      purpose: 'batch',
      filename: 'input.jsonl',
      status: 'processed',
    });
    expect(file.id).toMatch(/^file-/);
    expect(file.bytes).toBe(jsonl([chatLine('a'), chatLine('b'), chatLine('fail-c')]).length);
    const created = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { job: 'nightly' },
    });
    expect(created).toMatchObject({
      object: 'batch',
      status: 'in_progress',
      endpoint: '/v1/chat/completions',
      input_file_id: file.id,
      completion_window: '24h',
      output_file_id: null,
      error_file_id: null,
      errors: null,
      metadata: { job: 'nightly' },
      request_counts: { total: 3, completed: 0, failed: 0 },
    });
    expect(created.expires_at).toBe(created.created_at + 86_400);
    expect(created).not.toHaveProperty('switchyard_key_id');
    const done = await until(
      () => s.client.batches.retrieve(created.id),
      (b) => b.status === 'completed',
    );
    expect(done.request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
    expect(done.completed_at).toBeGreaterThanOrEqual(done.created_at);
    expect(done.finalizing_at).not.toBeNull();
    const out = await linesOf(s.client, done.output_file_id!);
    expect(out.map((l) => l.custom_id)).toEqual(['a', 'b']);
    for (const l of out) {
      expect(l.id).toMatch(/^batch_req_/);
      expect(l.error).toBeNull();
      expect(l.response?.status_code).toBe(200);
      expect(l.response?.request_id).toBe(l.id);
      expect(l.response?.body).toMatchObject({
        choices: [{ message: { content: `echo ${l.custom_id}` } }],
      });
    }
    const errs = await linesOf(s.client, done.error_file_id!);
    expect(errs).toHaveLength(1);
    expect(errs[0]!.custom_id).toBe('fail-c');
    expect(errs[0]!.response?.status_code).toBe(400);
    expect(errs[0]!.response?.body['error']).toMatchObject({
      code: 'invalid_value',
      param: 'temperature',
    });
    // The output files are files of the tenant, with their own purposes.
    expect(await s.client.files.retrieve(done.output_file_id!)).toMatchObject({
      purpose: 'batch_output',
    });
    expect(await s.client.files.retrieve(done.error_file_id!)).toMatchObject({
      purpose: 'batch_error',
    });
    // Each line reached the upstream once.
    const hits = s.hits();
    expect(['a', 'b', 'fail-c'].map((c) => hits.get(c))).toEqual([1, 1, 1]);
  });

  it('runs an embeddings batch', async () => {
    const line = (id: string) =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/embeddings',
        body: { model: 'embed', input: id },
      });
    const file = await upload(s.client, [line('e1'), line('e2')]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/embeddings',
      completion_window: '24h',
    });
    const done = await until(
      () => s.client.batches.retrieve(b.id),
      (x) => x.status === 'completed',
    );
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const out = await linesOf(s.client, done.output_file_id!);
    expect(out.map((l) => l.response?.body['data'])).toEqual([
      [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }],
      [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }],
    ]);
    expect(done.error_file_id).toBeNull();
  });

  it('runs a legacy completions batch and a moderations batch, each line sent to its endpoint upstream', async () => {
    const line = (id: string, url: string, body: Record<string, unknown>) =>
      JSON.stringify({ custom_id: id, method: 'POST', url, body: { model: 'legacy', ...body } });
    const before = s.up.calls.length;
    const cf = await upload(s.client, [
      line('c1', '/v1/completions', { prompt: 'one' }),
      line('c2', '/v1/completions', { prompt: 'two' }),
    ]);
    const mf = await upload(s.client, [
      line('m1', '/v1/moderations', { input: 'fine' }),
      line('m2', '/v1/moderations', { input: 'bad words' }),
    ]);
    const cb = await s.client.batches.create({
      input_file_id: cf.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    const mb = await s.client.batches.create({
      input_file_id: mf.id,
      endpoint: '/v1/moderations',
      completion_window: '24h',
    });
    const [cd, md] = await Promise.all(
      [cb, mb].map((b) =>
        until(
          () => s.client.batches.retrieve(b.id),
          (x) => x.status === 'completed',
        ),
      ),
    );
    expect(cd!.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const cout = await linesOf(s.client, cd!.output_file_id!);
    expect(cout.map((l) => [l.custom_id, l.response?.status_code])).toEqual([
      ['c1', 200],
      ['c2', 200],
    ]);
    expect(
      cout.map((l) => (l.response?.body['choices'] as { text: string }[] | undefined)?.[0]?.text),
    ).toEqual(['echo one', 'echo two']);
    const mout = await linesOf(s.client, md!.output_file_id!);
    expect(
      mout.map((l) => (l.response?.body['results'] as { flagged: boolean }[] | undefined)?.[0]),
    ).toEqual([
      { flagged: false, categories: {} },
      { flagged: true, categories: {} },
    ]);
    // Each line went to its own endpoint upstream, once.
    const paths = s.up.calls.slice(before).map((c) => c.path.replace(/^.*\/v1/, '/v1'));
    expect(paths.filter((p) => p === '/v1/completions')).toHaveLength(2);
    expect(paths.filter((p) => p === '/v1/moderations')).toHaveLength(2);
    // Counted per endpoint: lines and the batches that ended.
    const m = (line: RegExp) => metric(s.gw.gateway, line);
    expect(
      await m(/^switchyard_batch_lines_total\{endpoint="\/v1\/completions",outcome="completed"\}/),
    ).toBe(2);
    expect(
      await m(/^switchyard_batch_lines_total\{endpoint="\/v1\/moderations",outcome="completed"\}/),
    ).toBe(2);
    expect(
      await m(/^switchyard_batches_total\{endpoint="\/v1\/moderations",status="completed"\}/),
    ).toBe(1);
  });

  it('checks completions and moderations lines as their endpoints do, at create time', async () => {
    const file = await upload(s.client, [
      JSON.stringify({
        custom_id: 'no-prompt',
        method: 'POST',
        url: '/v1/completions',
        body: { model: 'legacy' },
      }),
      JSON.stringify({
        custom_id: 'chat-model',
        method: 'POST',
        url: '/v1/completions',
        body: { model: 'embed', prompt: 'x' },
      }),
    ]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    expect(b.status).toBe('failed');
    expect(b.errors?.data?.map((e) => [e.line, e.param])).toEqual([
      [1, 'body.prompt'],
      [2, 'body.model'],
    ]);
    expect(
      await metric(
        s.gw.gateway,
        /^switchyard_batches_total\{endpoint="\/v1\/completions",status="failed"\}/,
      ),
    ).toBe(1);
  });

  it('fails a batch whose lines are bad at create time, listing each error with its line, and calls nothing', async () => {
    const before = s.up.calls.length;
    const file = await upload(s.client, [
      chatLine('ok'),
      '{not json',
      chatLine('ok'),
      JSON.stringify({
        custom_id: 'u',
        method: 'POST',
        url: '/v1/embeddings',
        body: { model: 'chat' },
      }),
      JSON.stringify({
        custom_id: 'm',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'nope', messages: [{ role: 'user', content: 'x' }] },
      }),
      JSON.stringify({
        custom_id: 'x',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'chat', messages: 'no' },
      }),
    ]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect(b.status).toBe('failed');
    expect(b.failed_at).not.toBeNull();
    const errors = b.errors!.data!.map((e) => [e.line, e.code, e.param]);
    expect(errors).toEqual([
      [2, 'invalid_json_line', null],
      [3, 'duplicate_custom_id', 'custom_id'],
      [4, 'mismatched_endpoint', 'url'],
      [5, 'model_not_found', 'body.model'],
      [6, 'invalid_request', expect.stringMatching(/^body\.messages/)],
    ]);
    await sleep(100);
    expect(s.up.calls.length).toBe(before);
    expect((await s.client.batches.retrieve(b.id)).status).toBe('failed');
  });

  it('refuses a bad create request with a 400 naming the parameter', async () => {
    const file = await upload(s.client, [chatLine('a')]);
    const e = await s.client.batches
      .create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '1h' as '24h',
      })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('completion_window');
    const missing = await s.client.batches
      .create({
        input_file_id: 'file-nope',
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      })
      .catch((x: unknown) => x);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(syCode(missing)).toBe('SY_ERR_FILE_NOT_FOUND');
  });

  it('isolates tenants: another tenant never sees, reads, uses, cancels or deletes a file or batch', async () => {
    const file = await upload(s.client, [chatLine('iso')]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const nf = async (p: Promise<unknown>) => {
      const e = await p.then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    };
    await nf(s.other.files.retrieve(file.id));
    await nf(s.other.files.content(file.id));
    await nf(s.other.files.delete(file.id));
    await nf(s.other.batches.retrieve(b.id));
    await nf(s.other.batches.cancel(b.id));
    await nf(
      s.other.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      }),
    );
    expect((await s.other.files.list()).data).toEqual([]);
    expect((await s.other.batches.list()).data).toEqual([]);
    expect((await s.client.files.list()).data.map((f) => f.id)).toContain(file.id);
    expect((await s.client.batches.list()).data.map((x) => x.id)).toContain(b.id);
    // The owner still has it, and may delete its file once the batch has ended.
    await until(
      () => s.client.batches.retrieve(b.id),
      (y) => y.status === 'completed',
    );
    expect(await s.client.files.delete(file.id)).toMatchObject({ id: file.id, deleted: true });
    await nf(s.client.files.retrieve(file.id));
  });

  it('holds a batch back while the mode is not normal, and runs it once load allows', async () => {
    s.gw.gateway.admission.modes.force('surge', 'test', 'hold batches');
    const file = await upload(s.client, [chatLine('held-1'), chatLine('held-2')]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    await sleep(300); // 15 poll periods
    expect(s.hits().get('held-1')).toBeUndefined();
    expect((await s.client.batches.retrieve(b.id)).request_counts).toEqual({
      total: 2,
      completed: 0,
      failed: 0,
    });
    s.gw.gateway.admission.modes.force('normal', 'test', 'load allows');
    const done = await until(
      () => s.client.batches.retrieve(b.id),
      (x) => x.status === 'completed',
    );
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    expect([s.hits().get('held-1'), s.hits().get('held-2')]).toEqual([1, 1]);
  });

  it('keeps the input file of a running batch: deleting it is a 409 SY_ERR_FILE_IN_USE until the batch ends', async () => {
    s.gw.gateway.admission.modes.force('emergency', 'test', 'hold batches');
    const file = await upload(s.client, [chatLine('keep-1')]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const e = await s.client.files.delete(file.id).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.ConflictError);
    expect(syCode(e)).toBe('SY_ERR_FILE_IN_USE');
    await s.client.batches.cancel(b.id);
    await until(
      () => s.client.batches.retrieve(b.id),
      (y) => y.status === 'cancelled',
    );
    expect(await s.client.files.delete(file.id)).toMatchObject({ id: file.id, deleted: true });
  });

  it('cancels a batch: cancelling, then cancelled with nothing run', async () => {
    s.gw.gateway.admission.modes.force('emergency', 'test', 'hold batches');
    const file = await upload(s.client, [chatLine('cx-1'), chatLine('cx-2')]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const c = await s.client.batches.cancel(b.id);
    expect(c.status).toBe('cancelling');
    expect(c.cancelling_at).not.toBeNull();
    const done = await until(
      () => s.client.batches.retrieve(b.id),
      (x) => x.status === 'cancelled',
    );
    expect(done.cancelled_at).not.toBeNull();
    expect(done.request_counts).toEqual({ total: 2, completed: 0, failed: 0 });
    s.gw.gateway.admission.modes.force('normal', 'test', 'load allows');
    await sleep(200);
    expect(s.hits().get('cx-1')).toBeUndefined();
    // A finished batch cannot be cancelled again as something else: it stays cancelled.
    expect((await s.client.batches.cancel(b.id)).status).toBe('cancelled');
  });

  it('writes a cancelled batch’s files only once a line another process runs is done', async () => {
    s.gw.gateway.admission.modes.force('emergency', 'test', 'hold batches');
    const file = await upload(s.client, [chatLine('ox-1'), chatLine('ox-2')]);
    const b = await s.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    // Another worker or replica sharing the store has line 0 in flight.
    const store = s.gw.gateway.runtime().batches!.store;
    expect(await store.claimLine(b.id, 0, 'ox-1', Date.now())).toBe(true);
    expect((await s.client.batches.cancel(b.id)).status).toBe('cancelling');
    await sleep(300); // 15 poll periods
    expect((await s.client.batches.retrieve(b.id)).status).toBe('cancelling');
    const result = {
      id: 'batch_req_other',
      custom_id: 'ox-1',
      response: { status_code: 200, request_id: 'r-other', body: { object: 'chat.completion' } },
      error: null,
    };
    expect(await store.commitLine(b.id, 0, { ok: true, result, cost: 0 })).toBe(true);
    const done = await until(
      () => s.client.batches.retrieve(b.id),
      (x) => x.status === 'cancelled',
    );
    const out = await (await s.client.files.content(done.output_file_id!)).text();
    expect(out).toContain('"custom_id":"ox-1"');
    s.gw.gateway.admission.modes.force('normal', 'test', 'load allows');
  });

  it('puts every line’s cost in the cost ledger: the lines sum to the ledger’s batch-class total', async () => {
    const runtime = s.gw.gateway.runtime();
    const store = runtime.batches!.store;
    const ids = (await s.client.batches.list({ limit: 100 })).data.map((b) => b.id);
    let sum = 0;
    let lines = 0;
    for (const id of ids)
      for (const l of await store.lines(id)) {
        // `ox-` lines were committed by a test standing in for another process: no model call.
        if (l.customId.startsWith('ox-')) continue;
        sum += l.cost;
        lines++;
      }
    expect(lines).toBeGreaterThan(5);
    // 10 in and 5 out tokens at 1 and 2 per 1k: 0.02 per chat line (the failed line cost nothing).
    expect(sum).toBeGreaterThan(0.02 * 4);
    await runtime.costs!.recorder.flush();
    const groups = await runtime.costs!.store.totals({ groupBy: 'class', tenant: 'acme' });
    const batch = groups.find((g) => g.key === 'batch');
    expect(batch).toBeDefined();
    expect(batch!.costNanos / 1e9).toBeCloseTo(sum, 9);
    expect(batch!.calls).toBe(lines);
    expect(batch!.requests).toBe(lines);
    // And each line is a record of the inference log: the batch class, its route, its cost.
    // Any answered chat line (batches created in the same second list in no fixed order).
    let line: Awaited<ReturnType<typeof store.lines>>[number] | undefined;
    for (const id of ids)
      line ??= (await store.lines(id)).find(
        (l) =>
          l.ok &&
          !l.customId.startsWith('ox-') &&
          (l.result?.['response'] as { body?: { object?: string } } | undefined)?.body?.object ===
            'chat.completion',
      );
    expect(line).toBeDefined();
    const id = line!.result!['id'] as string;
    const record = await until(
      () => runtime.inferenceLog!.get(id),
      (r) => r !== undefined,
    );
    expect(record).toMatchObject({
      tenant: 'acme',
      trafficClass: 'batch',
      route: '/v1/chat/completions',
      model: 'chat',
      status: 200,
      outcome: 'ok',
    });
    expect(record!.cost).toBeCloseTo(line!.cost, 12);
    expect(record!.calls).toHaveLength(1);
  });
});

describe('batch config keys (#16)', () => {
  const opened: Setup[] = [];
  afterEach(async () => {
    for (const x of opened.splice(0)) {
      x.release();
      await x.gw.close();
      await x.up.close();
    }
  });
  const open = async (
    batches: Record<string, unknown>,
    extra: Record<string, unknown> = {},
    chatExtra: Record<string, unknown> = {},
  ) => {
    const x = await setup(batches, extra, chatExtra);
    opened.push(x);
    return x;
  };

  it('batches.enabled: false answers 404 SY_ERR_BATCHES_DISABLED on files and batches', async () => {
    const x = await open({ enabled: false });
    const e = await x.client.files.list().catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    expect(syCode(e)).toBe('SY_ERR_BATCHES_DISABLED');
    const b = await x.client.batches.retrieve('batch_x').catch((err: unknown) => err);
    expect(syCode(b)).toBe('SY_ERR_BATCHES_DISABLED');
  });

  it('batches.max_file_bytes refuses a larger upload with 413 SY_ERR_FILE_TOO_LARGE', async () => {
    const x = await open({ max_file_bytes: 1000 });
    const big = Array.from({ length: 30 }, (_, i) => chatLine(`big-${i}`));
    expect(jsonl(big).length).toBeGreaterThan(1000);
    const e = await upload(x.client, big).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.APIError);
    expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    expect(syCode(e)).toBe('SY_ERR_FILE_TOO_LARGE');
    // Under the cap it is taken.
    expect((await upload(x.client, big.slice(0, 3))).bytes).toBeLessThan(1000);
  });

  it('batches.max_lines fails a batch with more lines', async () => {
    const x = await open({ max_lines: 2 });
    const file = await upload(x.client, [chatLine('l1'), chatLine('l2'), chatLine('l3')]);
    const b = await x.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect(b.status).toBe('failed');
    expect(b.errors!.data!.map((e) => [e.code, e.line])).toEqual([['too_many_lines', 3]]);
  });

  it('batches.concurrency bounds the lines in flight at the upstream', async () => {
    const x = await open({ concurrency: 2 });
    let now = 0;
    let most = 0;
    x.up.behave(async (req, res, call) => {
      now++;
      most = Math.max(most, now);
      await sleep(30);
      now--;
      await json(200, chatCompletion('ok'))(req, res, call);
    });
    const file = await upload(
      x.client,
      Array.from({ length: 8 }, (_, i) => chatLine(`c${i}`)),
    );
    const b = await x.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    await until(
      () => x.client.batches.retrieve(b.id),
      (y) => y.status === 'completed',
    );
    expect(most).toBe(2);
  });

  it('batches.poll_ms is how often a held-back batch is looked at again', async () => {
    const x = await open({ poll_ms: 100_000 });
    x.gw.gateway.admission.modes.force('surge', 'test', 'hold batches');
    const file = await upload(x.client, [chatLine('p1')]);
    const b = await x.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    await sleep(200); // the passes the upload and create woke run, in surge
    x.gw.gateway.admission.modes.force('normal', 'test', 'load allows');
    // The next pass is 100 s away: with the 20 ms of the other tests it would have run by now.
    await sleep(500);
    expect(x.hits().get('p1')).toBeUndefined();
    x.gw.gateway.runtime().batches!.kick();
    await until(
      () => x.client.batches.retrieve(b.id),
      (y) => y.status === 'completed',
    );
  });

  for (const minSpare of [1, 0])
    it(`batches.min_spare ${minSpare}: with 2 of a 3-slot gate busy, batch lines ${minSpare === 1 ? 'wait until the gate has spare slots' : 'run at once'}`, async () => {
      const x = await open(
        { min_spare: minSpare },
        {},
        {
          concurrency: { algorithm: 'fixed', initial_limit: 3, min_limit: 1, max_limit: 3 },
        },
      );
      // Two interactive calls held at the upstream: 1 slot of 3 is free.
      const held = ['hold-i1', 'hold-i2'].map((c) =>
        x.client.chat.completions.create({
          model: 'chat',
          messages: [{ role: 'user', content: c }],
        }),
      );
      await until(
        () => Promise.resolve(x.up.calls.length),
        (n) => n === 2,
      );
      expect(x.gw.gateway.admission.spare('chat')).toBe(1);
      const file = await upload(x.client, [chatLine('s1'), chatLine('s2')]);
      const b = await x.client.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      if (minSpare === 0) {
        await until(
          () => x.client.batches.retrieve(b.id),
          (y) => y.status === 'completed',
        );
        expect(x.hits().get('hold-i1')).toBe(1);
        x.release();
        await Promise.all(held);
        return;
      }
      await sleep(300); // 15 poll periods
      expect(x.hits().get('s1')).toBeUndefined();
      x.release();
      await Promise.all(held);
      const done = await until(
        () => x.client.batches.retrieve(b.id),
        (y) => y.status === 'completed',
      );
      expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    });
});

describe('the completion window (#16)', () => {
  it('expires a batch not done within 24 h: every line not done gets a batch_expired error line', async () => {
    let offset = 0;
    const clock: Clock = { now: () => performance.now(), wall: () => Date.now() + offset };
    const x = await setup({}, {}, {}, { clock });
    try {
      x.gw.gateway.admission.modes.force('emergency', 'test', 'hold batches');
      const file = await upload(x.client, [chatLine('x1'), chatLine('x2')]);
      const b = await x.client.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      await sleep(100);
      expect((await x.client.batches.retrieve(b.id)).status).toBe('in_progress');
      offset = 86_401_000; // a day and a second later
      const done = await until(
        () => x.client.batches.retrieve(b.id),
        (y) => y.status === 'expired',
      );
      expect(done.expired_at).toBeGreaterThanOrEqual(b.expires_at!);
      expect(done.request_counts).toEqual({ total: 2, completed: 0, failed: 2 });
      expect(done.output_file_id).toBeNull();
      const errs = await linesOf(x.client, done.error_file_id!);
      expect(errs.map((l) => [l.custom_id, l.response, l.error?.code])).toEqual([
        ['x1', null, 'batch_expired'],
        ['x2', null, 'batch_expired'],
      ]);
      expect(x.hits().size).toBe(0);
    } finally {
      x.release();
      await x.gw.close();
      await x.up.close();
    }
  });
});

describe('shutting down mid-batch (#16)', () => {
  it('waits server.drain_ms for lines in flight, then commits them as interrupted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-batch-stop-'));
    const sqlite = join(dir, 'batches.db');
    const x = await setup({ sqlite }, { server: { host: '127.0.0.1', port: 0, drain_ms: 200 } });
    try {
      const file = await upload(x.client, [chatLine('hold-s1')]);
      const b = await x.client.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      await until(
        () => Promise.resolve(x.hits().get('hold-s1') ?? 0),
        (n) => n === 1,
      );
      // The upstream holds the line: closing waits the drain, then cuts it.
      await x.gw.close();
      const store = new SqliteBatchStore(sqlite);
      try {
        const [line] = await store.lines(b.id);
        expect(line).toMatchObject({ state: 'done', ok: false });
        expect(line!.result).toMatchObject({
          custom_id: 'hold-s1',
          response: null,
          error: { code: 'interrupted' },
        });
      } finally {
        await store.close();
      }
    } finally {
      x.release();
      await x.up.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('batch lines pass admission like direct calls (#16)', () => {
  it("spend no more than the tenant's request quota: lines past it wait, uncalled", async () => {
    const x = await setup();
    try {
      const cfg = x.gw.gateway.runtime().snapshot.config;
      x.gw.writeConfig({
        models: cfg.models,
        batches: { poll_ms: 20 },
        tenants: {
          acme: {
            keys: [{ id: 'k1', hash: hashKey(x.gw.key, TEST_SECRET) }],
            models: ['*'],
            // The upload and the create take 2 of the 4 requests: 2 lines may run this minute.
            quotas: { window_s: 60, requests: 4 },
          },
        },
      });
      expect((await x.gw.gateway.reload()).result).toBe('applied');
      const file = await upload(
        x.client,
        ['q1', 'q2', 'q3', 'q4', 'q5'].map((c) => chatLine(c)),
      );
      const b = await x.client.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      const progress = await until(
        () => x.client.batches.retrieve(b.id),
        (y) => y.request_counts?.completed === 2,
      );
      await sleep(300); // 15 poll periods: the refused lines are tried again and refused again
      expect((await x.client.batches.retrieve(b.id)).request_counts).toEqual({
        total: 5,
        completed: 2,
        failed: 0,
      });
      expect(progress.status).toBe('in_progress');
      expect([...x.hits().values()]).toEqual([1, 1]);
      // Only the 2 admitted lines have results; the refused ones were given back, to run later.
      const rows = await x.gw.gateway.runtime().batches!.store.lines(b.id);
      expect(rows.filter((r) => r.state === 'done').map((r) => r.customId)).toEqual(['q1', 'q2']);
      // Each refusal counted as a deferred line: at least the 3 refused once, tried again since.
      const deferred = await metric(
        x.gw.gateway,
        /^switchyard_batch_lines_total\{endpoint="\/v1\/chat\/completions",outcome="deferred"\}/,
      );
      expect(deferred).toBeGreaterThanOrEqual(3);
    } finally {
      x.release();
      await x.gw.close();
      await x.up.close();
    }
  });
});

describe('journey models in batch lines (#16 item 8)', () => {
  let x: Setup;
  /** A tenant allowed the chat model and not the journey. */
  let chatOnly: OpenAI;
  const journeyLine = (customId: string, model: string, content = customId): string =>
    JSON.stringify({
      custom_id: customId,
      method: 'POST',
      url: '/v1/chat/completions',
      body: { model, messages: [{ role: 'user', content }], user: 'u-1' },
    });
  /** The error body of a direct call, through the SDK. */
  const directError = async (client: OpenAI, model: string): Promise<Record<string, unknown>> => {
    const e = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'direct' }] })
      .catch((err: unknown) => err);
    expect(e).toBeInstanceOf(OpenAI.APIError);
    return {
      status: (e as InstanceType<typeof OpenAI.APIError>).status,
      ...(e as { error: object }).error,
    };
  };
  async function runBatch(client: OpenAI, lines: readonly string[]) {
    const file = await upload(client, lines);
    const b = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect(b.status).toBe('in_progress');
    const done = await until(
      () => client.batches.retrieve(b.id),
      (y) => y.status === 'completed',
    );
    const read = async (id: string | null | undefined) =>
      id === null || id === undefined ? [] : linesOf(client, id);
    return { done, out: await read(done.output_file_id), errs: await read(done.error_file_id) };
  }

  beforeAll(async () => {
    const journeys = {
      relay: { stages: [{ id: 'ask', infer: { model: 'chat', prompt: 'input.text' } }] },
    };
    // The batch class's deadline is short: a journey line that outlasts it is cut.
    const classes = {
      interactive: { priority: 0 },
      background: { priority: 3 },
      batch: { priority: 4, deadline_ms: 1_000 },
    };
    x = await setup({}, { journeys, classes });
    const cfg = x.gw.gateway.runtime().snapshot.config;
    x.gw.writeConfig({
      models: cfg.models,
      journeys,
      classes,
      batches: { poll_ms: 20 },
      costs: { flush_ms: 50 },
      inference_log: { enabled: true, flush_ms: 50 },
      tenants: {
        acme: { keys: [{ id: 'k1', hash: hashKey(x.gw.key, TEST_SECRET) }], models: ['*'] },
        globex: {
          keys: [{ id: 'g1', hash: hashKey(x.other.apiKey!, TEST_SECRET) }],
          models: ['chat'],
        },
      },
    });
    expect((await x.gw.gateway.reload()).result).toBe('applied');
    chatOnly = x.other;
  });
  afterAll(async () => {
    x.release();
    await x.gw.close();
    await x.up.close();
  });

  it('runs a journey line as the chat route runs the journey; an unknown journey fails its line alone', async () => {
    const { done, out, errs } = await runBatch(x.client, [
      journeyLine('j1', 'journey:relay'),
      journeyLine('p1', 'chat'),
      journeyLine('u1', 'journey:nope'),
    ]);
    expect(done.request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
    expect(out.map((l) => l.custom_id)).toEqual(['j1', 'p1']);
    const [j1, p1] = out;
    // The same journey, asked directly with the same input.
    const direct = (await x.client.chat.completions.create({
      model: 'journey:relay',
      messages: [{ role: 'user', content: 'j1' }],
      user: 'u-1',
    })) as unknown as Record<string, unknown>;
    const meaningful = (b: Record<string, unknown>) => {
      const route = b['route'] as Record<string, unknown>;
      return {
        object: b['object'],
        model: b['model'],
        choices: b['choices'],
        usage: b['usage'],
        route: {
          journey: route['journey'],
          outcome: route['outcome'],
          answeredBy: route['answeredBy'],
          cache: route['cache'],
          decisions: route['decisions'],
          stages: (route['stages'] as Record<string, unknown>[]).map((s) => ({
            stage: s['stage'],
            kind: s['kind'],
            outcome: s['outcome'],
            model: s['model'],
            cost: s['cost'],
          })),
        },
      };
    };
    const body = j1!.response!.body;
    expect(j1!.response!.status_code).toBe(200);
    expect(meaningful(body)).toEqual(meaningful(direct));
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: 'journey:relay',
      choices: [{ index: 0, message: { role: 'assistant', content: 'echo j1' } }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
      route: { journey: 'relay', outcome: 'respond', stages: [{ stage: 'ask', model: 'chat' }] },
    });
    // The plain line is unaffected.
    expect(p1!.response?.body).toMatchObject({ choices: [{ message: { content: 'echo p1' } }] });
    // The unknown journey: the error a direct call gets, in the error file, and nothing called.
    expect(errs.map((l) => l.custom_id)).toEqual(['u1']);
    const unknown = errs[0]!.response!;
    const directUnknown = await directError(x.client, 'journey:nope');
    expect(directUnknown).toMatchObject({
      status: 404,
      switchyard_code: 'SY_ERR_JOURNEY_NOT_FOUND',
    });
    expect(unknown.status_code).toBe(directUnknown['status']);
    const { request_id: _r, ...unknownError } = unknown.body['error'] as Record<string, unknown>;
    const { request_id: _d, status: _s, ...directUnknownError } = directUnknown;
    expect(unknownError).toEqual(directUnknownError);
    expect(x.hits().get('u1')).toBeUndefined();
    expect(x.hits().get('j1')).toBe(2); // the line, then the direct call
  });

  it('runs the journey in the line’s batch-class scope: its record, its calls and its cost in the ledger', async () => {
    const rt = x.gw.gateway.runtime();
    await rt.costs!.recorder.flush();
    const batchCost = async () =>
      (await rt.costs!.store.totals({ groupBy: 'class', tenant: 'acme' })).find(
        (g) => g.key === 'batch',
      );
    const before = await batchCost();
    const { done, out } = await runBatch(x.client, [
      journeyLine('j2', 'journey:relay'),
      journeyLine('p2', 'chat'),
    ]);
    expect(out.map((l) => l.custom_id)).toEqual(['j2', 'p2']);
    const lines = await rt.batches!.store.lines(done.id);
    // 10 in and 5 out tokens at 1 and 2 per 1k: 0.02 for the journey's one call, as for the plain line.
    expect(lines.map((l) => [l.customId, l.cost])).toEqual([
      ['j2', expect.closeTo(0.02, 9)],
      ['p2', expect.closeTo(0.02, 9)],
    ]);
    const record = await until(
      () => rt.inferenceLog!.get(out[0]!.id),
      (r) => r !== undefined,
    );
    expect(record).toMatchObject({
      tenant: 'acme',
      trafficClass: 'batch',
      route: '/v1/chat/completions',
      model: 'journey:relay',
      journey: 'relay',
      user: 'u-1',
      status: 200,
      outcome: 'ok',
    });
    expect(record!.cost).toBeCloseTo(lines[0]!.cost, 12);
    expect(record!.calls.map((c) => [c.origin, c.trafficClass, c.model])).toEqual([
      ['journey', 'batch', 'chat'],
    ]);
    // Both lines' cost lands where batch lines' cost lands: the batch class, and the journey's row.
    await rt.costs!.recorder.flush();
    const after = await batchCost();
    expect((after!.costNanos - (before?.costNanos ?? 0)) / 1e9).toBeCloseTo(0.04, 9);
    expect(after!.requests - (before?.requests ?? 0)).toBe(2);
    const byJourney = await rt.costs!.store.totals({ groupBy: 'journey', tenant: 'acme' });
    expect(byJourney.find((g) => g.key === 'relay')?.costNanos).toBeGreaterThanOrEqual(0.02 * 1e9);
  });

  it('cuts a journey line at the batch class’s deadline, not the journey’s own class’s', async () => {
    const { errs } = await runBatch(x.client, [journeyLine('hold-j3', 'journey:relay')]);
    expect(errs.map((l) => [l.custom_id, l.response?.status_code])).toEqual([['hold-j3', 504]]);
    expect((errs[0]!.response!.body['error'] as Record<string, unknown>)['switchyard_code']).toBe(
      'SY_ERR_DEADLINE_EXCEEDED',
    );
    // The journey answers its failure with its route, as the chat route does.
    expect(errs[0]!.response!.body['route']).toMatchObject({ journey: 'relay', outcome: 'fail' });
  });

  it('gives a tenant not allowed the journey the forbidden error for that line alone', async () => {
    const { done, out, errs } = await runBatch(chatOnly, [
      journeyLine('f1', 'journey:relay'),
      journeyLine('f2', 'chat'),
    ]);
    expect(done.request_counts).toEqual({ total: 2, completed: 1, failed: 1 });
    expect(out.map((l) => [l.custom_id, l.response?.status_code])).toEqual([['f2', 200]]);
    expect(errs.map((l) => l.custom_id)).toEqual(['f1']);
    const forbidden = errs[0]!.response!;
    const direct = await directError(chatOnly, 'journey:relay');
    expect(direct).toMatchObject({ status: 403, switchyard_code: 'SY_ERR_JOURNEY_FORBIDDEN' });
    expect(forbidden.status_code).toBe(403);
    const { request_id: _r, ...lineError } = forbidden.body['error'] as Record<string, unknown>;
    const { request_id: _d, status: _s, ...directErrorBody } = direct;
    expect(lineError).toEqual(directErrorBody);
    expect(x.hits().get('f1')).toBeUndefined();
  });
});

describe('a plain line’s OpenAI user field, as on the route (#14: every control on every call)', () => {
  let x: Setup;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sy-batch-ab-'));
    x = await setup(
      {},
      {
        state: { sqlite: join(dir, 'release.db') },
        release: { evaluate_ms: 100, flush_ms: 100 },
        experiments: [
          {
            id: 'chat-ab',
            slot: 'chat',
            kind: 'ab',
            variants: [
              { name: 'a', model: 'chat' },
              { name: 'b', model: 'chat-b' },
            ],
          },
        ],
      },
      {},
      { models: (url) => ({ 'chat-b': openaiModel(url) }) },
    );
  });
  afterAll(async () => {
    x.release();
    await x.gw.close();
    await x.up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is the release unit and the record’s user: a user’s lines get the variant its direct calls get', async () => {
    const rt = x.gw.gateway.runtime();
    const recordOf = (id: string) =>
      until(
        () => rt.inferenceLog!.get(id),
        (r) => r !== undefined,
      );
    const users = Array.from({ length: 8 }, (_, i) => `user-${i}`);
    const direct = new Map<string, readonly string[]>();
    for (const user of users) {
      const { response } = await x.client.chat.completions
        .create({ model: 'chat', messages: [{ role: 'user', content: `d-${user}` }], user })
        .withResponse();
      const r = await recordOf(response.headers.get('x-request-id')!);
      direct.set(user, r!.experiments);
    }
    // Both variants are in play, so a line assigned by its own request id would miss.
    expect(new Set([...direct.values()].map((e) => e.join()))).toEqual(
      new Set(['chat-ab/a', 'chat-ab/b']),
    );
    const line = (customId: string, user: string): string =>
      JSON.stringify({
        custom_id: customId,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'chat', messages: [{ role: 'user', content: customId }], user },
      });
    const file = await upload(
      x.client,
      users.flatMap((u) => [line(`${u}-1`, u), line(`${u}-2`, u)]),
    );
    const b = await x.client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const done = await until(
      () => x.client.batches.retrieve(b.id),
      (y) => y.status === 'completed',
    );
    const out = await linesOf(x.client, done.output_file_id!);
    expect(out).toHaveLength(16);
    for (const l of out) {
      const user = l.custom_id.slice(0, l.custom_id.lastIndexOf('-'));
      const r = await recordOf(l.id);
      expect({ line: l.custom_id, user: r!.user, experiments: r!.experiments }).toEqual({
        line: l.custom_id,
        user,
        experiments: direct.get(user),
      });
    }
  });
});
