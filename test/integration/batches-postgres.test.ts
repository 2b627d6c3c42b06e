import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatModel } from '../support/chat-model.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

const skip = await postgresSkip('files and batches in the PostgreSQL state store');

/** With `state.postgres`, files, batches and their line records live in the state store's schema (#16). */
describe.skipIf(skip !== false)('files and batches in the PostgreSQL state store', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  const schema = freshSchema('sy_gwbatch');
  const db = new pg.Client({ connectionString: PG_URL });

  beforeAll(async () => {
    await db.connect();
    up = await startUpstream(chatModel);
    gw = await startTestGateway({
      config: {
        models: { chat: openaiModel(up.url) },
        state: { postgres: PG_URL, schema },
        batches: { poll_ms: 20 },
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await db.end();
  });

  it('runs a batch whose file, batch and lines are rows of the schema', async () => {
    const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const lines = ['p1', 'p2'].map((id) =>
      JSON.stringify({
        custom_id: id,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'chat', messages: [{ role: 'user', content: id }] },
      }),
    );
    const file = await client.files.create({
      file: await toFile(Buffer.from(lines.join('\n')), 'in.jsonl'),
      purpose: 'batch',
    });
    const b = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    let done = await client.batches.retrieve(b.id);
    for (let i = 0; i < 300 && done.status !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      done = await client.batches.retrieve(b.id);
    }
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
    const q = async (sql: string, args: unknown[]): Promise<unknown[]> =>
      (await db.query<Record<string, unknown>>(sql, args)).rows;
    expect(
      await q(`SELECT tenant, purpose FROM ${schema}.rs_files WHERE id = $1`, [file.id]),
    ).toEqual([{ tenant: 'acme', purpose: 'batch' }]);
    expect(await q(`SELECT status FROM ${schema}.rs_batches WHERE id = $1`, [b.id])).toEqual([
      { status: 'completed' },
    ]);
    expect(
      await q(
        `SELECT custom_id, state, ok FROM ${schema}.rs_batch_lines WHERE batch_id = $1 ORDER BY line_index`,
        [b.id],
      ),
    ).toEqual([
      { custom_id: 'p1', state: 'done', ok: true },
      { custom_id: 'p2', state: 'done', ok: true },
    ]);
    const out = await (await client.files.content(done.output_file_id!)).text();
    expect(out.trim().split('\n')).toHaveLength(2);
  });
});
