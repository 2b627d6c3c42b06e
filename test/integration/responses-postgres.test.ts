import OpenAI from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatModel } from '../support/chat-model.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

const skip = await postgresSkip('stored Responses in the PostgreSQL state store');

/** With `state.postgres`, stored Responses live in the state store's schema (#16). */
describe.skipIf(skip !== false)('stored Responses in the PostgreSQL state store', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  const schema = freshSchema('sy_gwresp');
  const db = new pg.Client({ connectionString: PG_URL });

  beforeAll(async () => {
    await db.connect();
    up = await startUpstream(chatModel);
    gw = await startTestGateway({
      config: { models: { chat: openaiModel(up.url) }, state: { postgres: PG_URL, schema } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await db.end();
  });

  it('keeps a response in rs_responses of the schema, and deletes it there', async () => {
    const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const r = await client.responses.create({ model: 'chat', input: 'hi' });
    const rows = async () =>
      (
        await db.query<{ tenant: string }>(
          `SELECT tenant FROM ${schema}.rs_responses WHERE id = $1`,
          [r.id],
        )
      ).rows;
    expect(await rows()).toEqual([{ tenant: 'acme' }]);
    expect((await client.responses.retrieve(r.id)).output_text).toBe('seen 1: hi');
    await client.responses.delete(r.id);
    expect(await rows()).toEqual([]);
  });
});
