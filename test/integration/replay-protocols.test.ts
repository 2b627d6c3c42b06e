import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';
import { call } from '../support/http-call.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #15 replay across the protocols the front door speaks: requests made as chat completions,
 * Anthropic Messages, Responses (a follow-up by `previous_response_id` included), legacy
 * completions and moderations are logged with their payloads, then replayed against a candidate
 * model. The upstream answers by model: `base` answers every prompt with "answer to <prompt>";
 * `cand` answers the same for prompts that start with "same", something else otherwise, and flags
 * nothing where `base` flags "bad" input. So which replays agree is known in advance.
 */

const user = generateKey('sk');
const admin = generateKey('sk');

function lastUser(body: Record<string, unknown>): string {
  const messages = body['messages'] as { role: string; content: unknown }[];
  const last = [...messages].reverse().find((m) => m.role === 'user');
  return typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content);
}

let up: TestUpstream;
let gw: TestGateway;

beforeAll(async () => {
  up = await startUpstream((req, res, c) => {
    const body = JSON.parse(c.body) as Record<string, unknown>;
    const cand = body['model'] === 'cand';
    if (c.path.endsWith('/chat/completions')) {
      const prompt = lastUser(body);
      const text = !cand || prompt.startsWith('same') ? `answer to ${prompt}` : 'something else';
      return json(200, chatCompletion(text))(req, res, c);
    }
    if (c.path.endsWith('/v1/completions'))
      return json(200, {
        id: 'cmpl-1',
        object: 'text_completion',
        created: 1,
        model: String(body['model']),
        choices: [{ index: 0, text: `echo ${String(body['prompt'])}`, finish_reason: 'stop' }],
        usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 },
      })(req, res, c);
    if (c.path.endsWith('/v1/moderations'))
      return json(200, {
        id: 'modr-1',
        model: String(body['model']),
        results: [{ flagged: !cand && String(body['input']).includes('bad'), categories: {} }],
      })(req, res, c);
    return json(404, { error: { message: 'no such path' } })(req, res, c);
  });
  const model = (upstream: string) => ({
    backend: 'openai',
    url: `${up.url}/v1`,
    upstream_model: upstream,
    operations: ['chat', 'completions', 'moderations'],
  });
  gw = await startTestGateway({
    config: {
      tenants: {
        acme: {
          keys: [
            { id: 'u', hash: hashKey(user, TEST_SECRET) },
            { id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true },
          ],
          models: ['*'],
        },
      },
      models: { chat: model('base'), 'chat-b': model('cand') },
      inference_log: { enabled: true, flush_ms: 50, payloads: { acme: { direct: true } } },
    },
  });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await up?.close();
});

interface Row {
  id: string;
  skipped?: string;
  exact: boolean | null;
  same_label: boolean | null;
  agree: boolean | null;
  candidate: { outcome: string; versions: string[] };
}

describe('replay of every protocol the front door speaks (#15, #16)', () => {
  it('logs and replays chat, Anthropic Messages, Responses (with its context), completions and moderations', async () => {
    const ids: Record<string, string> = {};
    const send = async (name: string, path: string, body: unknown, headers = {}) => {
      const a = await call(gw.url, 'POST', path, user, body, headers);
      expect(a.status, `${name}: ${a.text}`).toBe(200);
      ids[name] = String(a.headers['x-request-id']);
      return a;
    };
    await send('chat', '/v1/chat/completions', {
      model: 'chat',
      messages: [{ role: 'user', content: 'same question' }],
    });
    const anthropic = { 'anthropic-version': '2023-06-01' };
    await send(
      'messages-differs',
      '/v1/messages',
      { model: 'chat', max_tokens: 50, messages: [{ role: 'user', content: 'other question' }] },
      anthropic,
    );
    await send(
      'messages-same',
      '/v1/messages',
      { model: 'chat', max_tokens: 50, messages: [{ role: 'user', content: 'same hello' }] },
      anthropic,
    );
    const first = await send('responses', '/v1/responses', { model: 'chat', input: 'same start' });
    await send('responses-followup', '/v1/responses', {
      model: 'chat',
      input: 'same next',
      previous_response_id: first.body['id'],
    });
    await send('completions', '/v1/completions', { model: 'chat', prompt: 'hi' });
    await send('moderations', '/v1/moderations', { model: 'chat', input: 'bad words' });

    // The log kept each request in the form the client sent it; the follow-up with its context.
    let followUp: Record<string, unknown> = {};
    for (const id of Object.values(ids)) {
      const end = Date.now() + 5_000;
      for (;;) {
        const d = await call(gw.url, 'GET', `/admin/requests/${id}`, admin);
        if (d.status === 200) {
          if (id === ids['responses-followup']) followUp = d.body;
          break;
        }
        if (Date.now() > end) throw new Error(`request ${id} not logged`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const logged = (followUp['payload'] as { request: Record<string, unknown> }).request;
    expect(logged['previous_response_id']).toBeUndefined();
    expect(JSON.stringify(logged['input'])).toContain('same start');
    expect(JSON.stringify(logged['input'])).toContain('answer to same start');

    const before = up.calls.length;
    const r = await call(gw.url, 'POST', '/admin/replay', admin, {
      ids: Object.values(ids),
      candidate: { model: 'chat-b', replaces: 'chat' },
    });
    expect(r.status, r.text).toBe(200);
    const rows = new Map(
      (r.body['requests'] as Row[]).map((row) => [
        Object.entries(ids).find(([, id]) => id === row.id)![0],
        row,
      ]),
    );
    const verdict = (name: string) => {
      const row = rows.get(name)!;
      expect(row.skipped, name).toBeUndefined();
      expect(row.candidate.outcome, name).toBe('ok');
      return [row.agree, row.exact];
    };
    expect(verdict('chat')).toEqual([true, true]);
    expect(verdict('messages-differs')).toEqual([false, false]);
    expect(verdict('messages-same')).toEqual([true, true]);
    expect(verdict('responses')).toEqual([true, true]);
    expect(verdict('responses-followup')).toEqual([true, true]);
    expect(verdict('completions')).toEqual([true, true]);
    expect(verdict('moderations')).toEqual([false, false]);

    // Every replayed call went to the candidate, and the follow-up carried the whole context.
    const replayed = up.calls
      .slice(before)
      .map((c) => JSON.parse(c.body) as Record<string, unknown>);
    expect(replayed).toHaveLength(7);
    expect(replayed.every((b) => b['model'] === 'cand')).toBe(true);
    const ctx = replayed.find((b) => JSON.stringify(b['messages'] ?? '').includes('same next'));
    expect((ctx!['messages'] as { role: string; content: unknown }[]).map((m) => m.role)).toEqual([
      'user',
      'assistant',
      'user',
    ]);
  });
});
