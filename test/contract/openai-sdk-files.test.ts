import { request } from 'node:http';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #16: file uploads (the one multipart reader the audio pass-through streams with, read whole
 * here) and file expiry through the official OpenAI SDK (v6): `expires_after` on an upload,
 * `output_expires_after` on a batch, `batches.file_expires_after_s` when neither is given. An
 * expired file is answered as a deleted one, and the runner's sweep deletes it.
 */

const HOUR = 3_600;

const chatLine = (customId: string): string =>
  JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'chat', messages: [{ role: 'user', content: customId }] },
  });

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`condition not met: ${JSON.stringify(v).slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The status and `switchyard_code` of a refused SDK call. */
async function refusal(p: Promise<unknown>): Promise<[number, unknown, unknown]> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    const err = e.error as { switchyard_code?: string; param?: string } | undefined;
    return [e.status ?? 0, err?.switchyard_code, err?.param];
  }
  throw new Error('the call succeeded');
}

interface Setup {
  up: TestUpstream;
  gw: TestGateway;
  client: OpenAI;
  /** Moves the gateway's wall clock forward. */
  skip(seconds: number): void;
  close(): Promise<void>;
}

async function setup(batches: Record<string, unknown> = {}): Promise<Setup> {
  let offset = 0;
  const clock: Clock = { now: () => performance.now(), wall: () => Date.now() + offset };
  const up = await startUpstream(json(200, chatCompletion('ok')));
  const gw = await startTestGateway({
    config: {
      models: { chat: openaiModel(up.url) },
      batches: { poll_ms: 20, ...batches },
    },
    options: { clock },
  });
  return {
    up,
    gw,
    client: new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 }),
    skip: (s) => (offset += s * 1000),
    close: async () => {
      await gw.close();
      await up.close();
    },
  };
}

const jsonl = async (name: string, lines: readonly string[]) =>
  toFile(Buffer.from(lines.join('\n') + '\n'), name);

describe('file expiry (#16)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  afterAll(async () => {
    await s.close();
  });

  it('expires an upload at expires_after: then it is a 404 everywhere, and the sweep deletes it', async () => {
    const file = await s.client.files.create({
      file: await jsonl('short.jsonl', [chatLine('a')]),
      purpose: 'batch',
      expires_after: { anchor: 'created_at', seconds: HOUR },
    });
    expect(file.expires_at).toBe(file.created_at + HOUR);
    const kept = await s.client.files.create({
      file: await jsonl('kept.jsonl', [chatLine('b')]),
      purpose: 'batch',
    });
    expect(kept.expires_at).toBeNull();
    expect((await s.client.files.retrieve(file.id)).expires_at).toBe(file.expires_at);
    s.skip(HOUR + 1);
    const gone = ['SY_ERR_FILE_NOT_FOUND'];
    expect((await refusal(s.client.files.retrieve(file.id))).slice(0, 2)).toEqual([404, ...gone]);
    expect((await refusal(s.client.files.content(file.id))).slice(0, 2)).toEqual([404, ...gone]);
    expect((await refusal(s.client.files.delete(file.id))).slice(0, 2)).toEqual([404, ...gone]);
    const listed = (await s.client.files.list()).data.map((f) => f.id);
    expect(listed).toContain(kept.id);
    expect(listed).not.toContain(file.id);
    expect(
      await refusal(
        s.client.batches.create({
          input_file_id: file.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        }),
      ),
    ).toEqual([404, 'SY_ERR_FILE_NOT_FOUND', 'input_file_id']);
    // The runner's sweep (its first pass after the clock moved) deletes the bytes and the row.
    const store = s.gw.gateway.runtime().batches!.store;
    await until(
      () => store.getFile('acme', file.id),
      (f) => f === undefined,
    );
    expect(await store.fileContent('acme', file.id)).toBeUndefined();
    expect(await store.getFile('acme', kept.id)).toBeDefined();
  });

  it('refuses a bad expires_after with a 400 naming the field', async () => {
    const up = async (expires: unknown) =>
      refusal(
        s.client.files.create({
          file: await jsonl('x.jsonl', [chatLine('x')]),
          purpose: 'batch',
          expires_after: expires as { anchor: 'created_at'; seconds: number },
        }),
      );
    const bad = (param: string) => [400, 'SY_ERR_INVALID_REQUEST', param];
    expect(await up({ anchor: 'created_at', seconds: HOUR - 1 })).toEqual(
      bad('expires_after[seconds]'),
    );
    expect(await up({ anchor: 'created_at', seconds: 2_592_001 })).toEqual(
      bad('expires_after[seconds]'),
    );
    expect(await up({ anchor: 'created_at', seconds: 'soon' })).toEqual(
      bad('expires_after[seconds]'),
    );
    expect(await up({ anchor: 'created_at' })).toEqual(bad('expires_after[seconds]'));
    expect(await up({ anchor: 'last_active_at', seconds: HOUR })).toEqual(
      bad('expires_after[anchor]'),
    );
    expect(await up({ seconds: HOUR })).toEqual(bad('expires_after[anchor]'));
  });

  it('gives a batch’s output and error files output_expires_after, and refuses a bad one', async () => {
    const input = await s.client.files.create({
      file: await jsonl('in.jsonl', [chatLine('o1')]),
      purpose: 'batch',
    });
    const create = (oea: unknown) =>
      s.client.batches.create({
        input_file_id: input.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        output_expires_after: oea as { anchor: 'created_at'; seconds: number },
      });
    expect(await refusal(create({ anchor: 'created_at', seconds: 60 }))).toEqual([
      400,
      'SY_ERR_INVALID_REQUEST',
      'output_expires_after[seconds]',
    ]);
    expect(await refusal(create('2h'))).toEqual([
      400,
      'SY_ERR_INVALID_REQUEST',
      'output_expires_after',
    ]);
    const b = await create({ anchor: 'created_at', seconds: 2 * HOUR });
    expect(b).not.toHaveProperty('switchyard_output_expires_after_s');
    const done = await until(
      () => s.client.batches.retrieve(b.id),
      (x) => x.status === 'completed',
    );
    const out = await s.client.files.retrieve(done.output_file_id!);
    // Anchored at the output file's creation, not the batch's.
    expect(out.expires_at).toBe(out.created_at + 2 * HOUR);
  });
});

describe('file uploads (#16)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  afterAll(async () => {
    await s.close();
  });

  const post = async (
    body: NonNullable<RequestInit['body']>,
    headers: Record<string, string> = {},
  ) => {
    const res = await fetch(`${s.gw.url}/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.gw.key}`, ...headers },
      body,
    });
    return {
      status: res.status,
      body: (await res.json()) as { error?: { code?: string }; bytes?: number },
    };
  };

  it('refuses a body that is not a form 415 SY_ERR_MULTIPART_REQUIRED, and an encoded one 415', async () => {
    const a = await post(JSON.stringify({ purpose: 'batch' }), {
      'content-type': 'application/json',
    });
    expect([a.status, a.body.error?.code]).toEqual([415, 'SY_ERR_MULTIPART_REQUIRED']);
    const form = new FormData();
    form.set('purpose', 'batch');
    const r = new Request('http://x', { method: 'POST', body: form });
    const b = await post(await r.arrayBuffer(), {
      'content-type': r.headers.get('content-type')!,
      'content-encoding': 'gzip',
    });
    expect([b.status, b.body.error?.code]).toEqual([415, 'SY_ERR_UNSUPPORTED_MEDIA_TYPE']);
  });

  it('refuses a form declaring more than batches.max_file_bytes allows with 413 before reading it', async () => {
    const status = await new Promise<[number, string]>((resolve, reject) => {
      const req = request(`${s.gw.url}/v1/files`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${s.gw.key}`,
          'content-type': 'multipart/form-data; boundary=x',
          'content-length': String(200 * 1_048_576),
        },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve([res.statusCode ?? 0, text]));
      });
      req.on('error', reject);
      req.flushHeaders(); // the head only: the answer cannot depend on the body
    });
    expect(status[0]).toBe(413);
    expect(JSON.parse(status[1])).toMatchObject({ error: { code: 'SY_ERR_FILE_TOO_LARGE' } });
  });

  it('reads a form whole, over a MiB, whatever its other fields (a model field pauses nothing)', async () => {
    const big = Array.from({ length: 12_000 }, (_, i) => chatLine(`line-${i}`));
    const content = Buffer.from(big.join('\n') + '\n');
    expect(content.length).toBeGreaterThan(1_048_576);
    const form = new FormData();
    form.set('model', 'chat');
    form.set('purpose', 'batch');
    form.set('file', new Blob([content]), 'big.jsonl');
    const r = await post(form);
    expect(r.status).toBe(200);
    expect(r.body.bytes).toBe(content.length);
    const id = (r.body as { id?: string }).id!;
    const back = Buffer.from(await (await s.client.files.content(id)).arrayBuffer());
    expect(back.equals(content)).toBe(true);
  });
});

describe('batches.file_expires_after_s (#16)', () => {
  it('expires uploads and batch files that set no expiry after it', async () => {
    const x = await setup({ file_expires_after_s: 86_400 });
    try {
      const input = await x.client.files.create({
        file: await jsonl('in.jsonl', [chatLine('d1')]),
        purpose: 'batch',
      });
      expect(input.expires_at).toBe(input.created_at + 86_400);
      const own = await x.client.files.create({
        file: await jsonl('own.jsonl', [chatLine('d2')]),
        purpose: 'batch',
        expires_after: { anchor: 'created_at', seconds: HOUR },
      });
      expect(own.expires_at).toBe(own.created_at + HOUR);
      const b = await x.client.batches.create({
        input_file_id: input.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      const done = await until(
        () => x.client.batches.retrieve(b.id),
        (y) => y.status === 'completed',
      );
      const out = await x.client.files.retrieve(done.output_file_id!);
      expect(out.expires_at).toBe(out.created_at + 86_400);
    } finally {
      await x.close();
    }
  });
});
