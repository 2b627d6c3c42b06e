import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteInferenceLog } from '../../src/state/sqlite-inference-log.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { call, metric } from '../support/http-call.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

// Issue #15, item 2: the inference log, through a real gateway and a real local upstream.

let up: TestUpstream;
beforeAll(async () => {
  up = await startUpstream(
    json(200, chatCompletion('hi there', { prompt_tokens: 7, completion_tokens: 3 })),
  );
});
afterAll(() => up.close());

const PRICE = { in_per_1k: 1, out_per_1k: 2 };
// 7 input and 3 output tokens at the price above.
const CALL_COST = (7 * 1 + 3 * 2) / 1000;

function config(log: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    models: { chat: openaiModel(up.url, { cost: PRICE }) },
    journeys: {
      answer: { stages: [{ id: 'reply', infer: { model: 'chat', prompt: 'input.text' } }] },
    },
    inference_log: { enabled: true, flush_ms: 60_000, ...log },
    ...extra,
  };
}

const chat = (gw: TestGateway, content: string, headers: Record<string, string> = {}) =>
  call(
    gw.url,
    'POST',
    '/v1/chat/completions',
    gw.key,
    {
      model: 'chat',
      messages: [{ role: 'user', content }],
    },
    headers,
  );

/** Opens the gateway's log file after it closed, reads every request record. */
async function recordsIn(file: string) {
  const store = SqliteInferenceLog.open(file);
  try {
    const page = await store.query({ limit: 1000 });
    return { page, details: await Promise.all(page.records.map((r) => store.get(r.id))) };
  } finally {
    await store.close();
  }
}

describe('inference log', () => {
  it('keeps one record per request and per model call, and a graceful close writes every one', async () => {
    const gw = await startTestGateway({ config: config({ path: 'log/inference.db' }) });
    const file = join(gw.dir, 'log', 'inference.db');
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const a = await chat(gw, `q${i}`, { 'x-switchyard-user': `u${i % 3}` });
      expect(a.status).toBe(200);
      ids.push(a.headers['x-request-id'] as string);
    }
    const j = await call(gw.url, 'POST', '/v1/journeys/answer', gw.key, {
      input: 'route me',
      attributes: { user: 'u9' },
    });
    expect(j.status).toBe(200);
    ids.push(j.headers['x-request-id'] as string);
    // The flush interval is a minute: nothing is written yet, and close must write it all.
    await gw.gateway.close();
    const { page, details } = await recordsIn(file);
    expect(page.records.map((r) => r.id).sort()).toEqual([...ids].sort());
    const direct = details.find((d) => d?.id === ids[4])!;
    expect(direct).toMatchObject({
      tenant: 'acme',
      user: 'u1',
      route: '/v1/chat/completions',
      model: 'chat',
      status: 200,
      outcome: 'ok',
      inputTokens: 7,
      outputTokens: 3,
      trafficClass: 'interactive',
    });
    expect(direct.cost).toBeCloseTo(CALL_COST, 9);
    expect(direct.payload).toBeUndefined();
    expect(direct.calls).toHaveLength(1);
    expect(direct.calls[0]).toMatchObject({
      origin: 'direct',
      model: 'chat',
      servedBy: 'chat',
      user: 'u1',
      outcome: 'ok',
    });
    const journey = details.find((d) => d?.id === ids[20])!;
    expect(journey).toMatchObject({
      journey: 'answer',
      model: 'journey:answer',
      user: 'u9',
      outcome: 'ok',
    });
    expect(journey.stages?.map((s) => [s.stage, s.kind, s.outcome])).toEqual([
      ['reply', 'infer', 'continue'],
    ]);
    expect(journey.calls.map((c) => [c.origin, c.model])).toEqual([['journey', 'chat']]);
    expect(journey.cost).toBeCloseTo(CALL_COST, 9);
    await gw.close();
  });

  it('drops records past the buffer and counts them, and never holds a request back', async () => {
    const gw = await startTestGateway({ config: config({ buffer_size: 3 }) });
    try {
      for (let i = 0; i < 5; i++) expect((await chat(gw, `q${i}`)).status).toBe(200);
      // Five requests make ten records (a request and its call each): three fit, seven are dropped.
      expect(
        await metric(gw.gateway, /^switchyard_inference_log_dropped_total\{reason="overflow"\}/),
      ).toBe(7);
      const page = await gw.gateway.runtime().inferenceLog!.query();
      expect(page.records).toHaveLength(1);
      expect(
        await metric(gw.gateway, /^switchyard_inference_log_written_total\{kind="call"\}/),
      ).toBe(2);
    } finally {
      await gw.close();
    }
  });

  it('writes on the flush timer without being asked', async () => {
    const gw = await startTestGateway({ config: config({ flush_ms: 50 }) });
    try {
      expect((await chat(gw, 'q')).status).toBe(200);
      const until = Date.now() + 3000;
      let written: number | undefined;
      while (Date.now() < until) {
        written = await metric(
          gw.gateway,
          /^switchyard_inference_log_written_total\{kind="request"\}/,
        );
        if (written === 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(written).toBe(1);
    } finally {
      await gw.close();
    }
  });

  it('waits flush_ms before it writes fewer than a batch: with 60 s, nothing after 1.5 s', async () => {
    // The default (1 s) would have written by then: this fails when flush_ms is not applied.
    const gw = await startTestGateway({ config: config({ flush_ms: 60_000 }) });
    try {
      expect((await chat(gw, 'q')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500));
      expect(
        (await metric(gw.gateway, /^switchyard_inference_log_written_total\{kind="request"\}/)) ??
          0,
      ).toBe(0);
      expect((await gw.gateway.runtime().inferenceLog!.query()).records).toHaveLength(1);
    } finally {
      await gw.close();
    }
  });

  it('records nothing and opens no file when it is off', async () => {
    const gw = await startTestGateway({ config: config({ enabled: false }) });
    try {
      expect((await chat(gw, 'q')).status).toBe(200);
      expect(gw.gateway.runtime().inferenceLog).toBeUndefined();
      const { existsSync } = await import('node:fs');
      expect(existsSync(join(gw.dir, 'var', 'inference.db'))).toBe(false);
    } finally {
      await gw.close();
    }
  });
});

describe('inference log payloads and consent', () => {
  const consent = (gw: TestGateway, user: string, purposes: Record<string, boolean>) =>
    call(gw.url, 'PUT', `/v1/consent/${user}`, gw.key, { purposes });
  const labelled = (label: string, user: string) => ({
    'x-switchyard-data-label': label,
    'x-switchyard-data-purpose': 'behavioral_inference',
    'x-switchyard-user': user,
  });

  it('keeps payloads only where the tenant and journey allow, redacted by the label', async () => {
    const gw = await startTestGateway({
      config: config({ payloads: { acme: { direct: true, journeys: [] } } }),
    });
    try {
      expect((await consent(gw, 'u1', { behavioral_inference: true })).status).toBe(200);
      const plain = await chat(gw, 'plain question');
      const consented = await chat(gw, 'my ride history', labelled('consented', 'u1'));
      const sensitive = await chat(gw, 'my diagnosis', labelled('sensitive', 'u1'));
      const journey = await call(gw.url, 'POST', '/v1/journeys/answer', gw.key, { input: 'j' });
      for (const a of [plain, consented, sensitive, journey]) expect(a.status).toBe(200);
      const log = gw.gateway.runtime().inferenceLog!;
      const get = async (a: typeof plain) => (await log.get(a.headers['x-request-id'] as string))!;
      const p = await get(plain);
      expect(p.payload?.request).toMatchObject({
        messages: [{ role: 'user', content: 'plain question' }],
      });
      expect(p.payload?.response).toMatchObject({
        choices: [{ message: { content: 'hi there' } }],
      });
      expect((await get(consented)).payload?.request).toMatchObject({
        messages: [{ content: 'my ride history' }],
      });
      // Sensitive data may not be logged (privacy.labels.sensitive.logging: deny).
      expect((await get(sensitive)).payload).toEqual({
        request: '[redacted:sensitive]',
        response: '[redacted:sensitive]',
      });
      // Journeys are not named for acme: no payload.
      expect((await get(journey)).payload).toBeUndefined();
      const all = JSON.stringify((await log.query({ limit: 100 })).records);
      expect(all).not.toContain('my diagnosis');
    } finally {
      await gw.close();
    }
  });

  it('keeps the payloads of the journeys named, and none of direct calls when direct is false', async () => {
    const gw = await startTestGateway({
      config: config({ payloads: { acme: { direct: false, journeys: ['answer'] } } }),
    });
    try {
      const direct = await chat(gw, 'not kept');
      const journey = await call(gw.url, 'POST', '/v1/journeys/answer', gw.key, { input: 'kept' });
      const log = gw.gateway.runtime().inferenceLog!;
      const d = await log.get(direct.headers['x-request-id'] as string);
      const j = await log.get(journey.headers['x-request-id'] as string);
      expect(d?.payload).toBeUndefined();
      expect(j?.payload?.request).toEqual({ input: { text: 'kept' }, attributes: {} });
      expect(j?.payload?.response).toEqual({ output: journey.body['output'] });
    } finally {
      await gw.close();
    }
  });

  it("purges a user's records, buffered and stored, when they revoke consent", async () => {
    const gw = await startTestGateway({
      config: config({ payloads: { acme: { direct: true, journeys: ['*'] } } }),
    });
    try {
      expect((await consent(gw, 'u1', { behavioral_inference: true })).status).toBe(200);
      await chat(gw, 'first', labelled('consented', 'u1'));
      await chat(gw, 'other user', labelled('consented', 'u2'));
      const log = gw.gateway.runtime().inferenceLog!;
      expect((await log.query({ user: 'u1' })).records).toHaveLength(1); // written
      await chat(gw, 'second', labelled('consented', 'u1')); // still buffered
      await call(gw.url, 'POST', '/v1/journeys/answer', gw.key, {
        input: 'x',
        attributes: { user: 'u1' },
      });
      const revoked = await call(gw.url, 'POST', '/v1/consent/u1/revoke', gw.key, {
        purposes: 'all',
      });
      expect(revoked.status).toBe(200);
      // Three requests and three calls.
      expect((revoked.body['purged'] as Record<string, number>)['inference_log']).toBe(6);
      expect((await log.query({ user: 'u1' })).records).toEqual([]);
      const left = (await log.query({ limit: 100 })).records;
      expect(left.map((r) => r.user)).toEqual(['u2']);
      const text = JSON.stringify(left);
      expect(text).not.toContain('first');
      expect(text).not.toContain('second');
    } finally {
      await gw.close();
    }
  });
});
