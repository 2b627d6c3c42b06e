import { countTokens } from 'gpt-tokenizer';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { PostgresCostLedger } from '../../src/state/postgres-cost-ledger.js';
import { TEST_SECRET } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { call, errorCode } from '../support/http-call.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import {
  chatCompletion,
  json,
  sse,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * The cost ledger across two gateway processes sharing PostgreSQL (#15 item 4, "Done means"):
 * the sum of per-request costs equals the ledger's totals, streams are exact (usage chunk, no
 * usage chunk, cut), and a tenant's daily budget spent on one replica refuses on the other.
 */

const skip = await postgresSkip('the two-replica cost ledger test');
const PRICE = { in_per_1k: 3, out_per_1k: 7 };
const PIECES = ['Tide ', 'turns; ', 'boats ', 'lean ', 'home.'];
const key = generateKey('sk');
const admin = generateKey('sk');
const thrifty = generateKey('sk');

/** What each kind of request costs, worked out here, not by the gateway. */
const price = (input: number, output: number): number =>
  (PRICE.in_per_1k * input + PRICE.out_per_1k * output) / 1000;
const messages = (kind: string) => [{ role: 'user', content: kind }];
/** The prompt as counted with gpt-tokenizer: 3 + per message (3 + role + content). */
const prompt = (kind: string): number => 3 + 3 + countTokens('user') + countTokens(kind);
const EXPECTED: Record<string, { input: number; output: number; estimated: boolean }> = {
  json: { input: 30, output: 12, estimated: false },
  usage: { input: 41, output: 9, estimated: false },
  nousage: { input: prompt('nousage'), output: countTokens(PIECES.join('')), estimated: true },
  cut: { input: prompt('cut'), output: countTokens(PIECES.slice(0, 2).join('')), estimated: true },
};

/** The upstream answers by the request's one message: JSON, or a stream of some kind. */
const upstream: Behaviour = (req, res, c) => {
  const body = JSON.parse(c.body) as { messages: { content: string }[] };
  const kind = body.messages[0]!.content;
  if (kind === 'usage') return sse(PIECES, { usage: { prompt: 41, completion: 9 } })(req, res, c);
  if (kind === 'nousage') return sse(PIECES)(req, res, c);
  if (kind === 'cut') return sse(PIECES, { resetAfter: 2, delayMs: 10 })(req, res, c);
  return json(200, chatCompletion('ok', { prompt_tokens: 30, completion_tokens: 12 }))(req, res, c);
};

describe.skipIf(skip !== false)('cost ledger across two replicas sharing PostgreSQL', () => {
  let up: TestUpstream;
  const schema = freshSchema('sy_costs_rep');
  const replicas: ProcessGateway[] = [];

  beforeAll(async () => {
    up = await startUpstream(upstream);
    const config = {
      state: { postgres: PG_URL, schema },
      costs: { flush_ms: 100 },
      tenants: {
        acme: {
          keys: [
            { id: 'app', hash: hashKey(key, TEST_SECRET) },
            { id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true },
          ],
          models: ['*'],
        },
        // 4 JSON calls: 0.174 each; spent >= 0.6 after the 4th.
        thrifty: {
          keys: [{ id: 't', hash: hashKey(thrifty, TEST_SECRET) }],
          models: ['*'],
          budget: { daily_spend: 0.6 },
        },
      },
      models: {
        chat: {
          backend: 'openai',
          url: `${up.url}/v1`,
          cost: PRICE,
          // The cut streams fail on purpose: they must not open the breaker on the rest.
          breaker: { min_calls: 1000, consecutive_failures: 1000 },
        },
      },
      journeys: {
        ask: { class: 'interactive', stages: [{ infer: { model: 'chat', prompt: 'input.text' } }] },
      },
    };
    // One after the other: the first creates the schema.
    replicas.push(await startProcessGateway({ config }));
    replicas.push(await startProcessGateway({ config }));
  }, 60_000);

  afterAll(async () => {
    for (const r of replicas) await r.close();
    await up?.close();
    const ledger = await PostgresCostLedger.open({ url: PG_URL, schema });
    await ledger.dropSchema();
    await ledger.close();
  });

  async function chat(r: ProcessGateway, kind: string, stream: boolean, as = key): Promise<number> {
    const res = await request(`${r.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${as}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: messages(kind), stream }),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) return res.statusCode;
    if (kind === 'cut') expect(text).toContain('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
    else if (stream) expect(text).toContain('[DONE]');
    return 200;
  }

  it('sums per-request costs to the ledger totals, streams exactly', async () => {
    const plan: { kind: string; stream: boolean }[] = [];
    for (let i = 0; i < 6; i++)
      plan.push(
        { kind: 'json', stream: false },
        { kind: 'usage', stream: true },
        { kind: 'nousage', stream: true },
        { kind: 'cut', stream: true },
      );
    // Both replicas at once, requests interleaved.
    const statuses = await Promise.all(
      plan.map((p, i) => chat(replicas[i % 2]!, p.kind, p.stream)),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    // Journeys: their route carries each request's cost.
    let journeyCost = 0;
    for (let i = 0; i < 4; i++) {
      const a = await call(replicas[i % 2]!.url, 'POST', '/v1/journeys/ask', key, {
        input: { text: 'json' },
      });
      expect(a.status, a.text).toBe(200);
      journeyCost += (a.body['route'] as { cost: number }).cost;
    }
    expect(journeyCost).toBeCloseTo(4 * price(30, 12), 9);

    let input = 0;
    let output = 0;
    let cost = journeyCost;
    let estimated = 0;
    for (const p of plan) {
      const e = EXPECTED[p.kind]!;
      input += e.input;
      output += e.output;
      cost += price(e.input, e.output);
      if (e.estimated) estimated++;
    }
    input += 4 * 30;
    output += 4 * 12;

    // Each replica writes every 100 ms; read the shared totals until both have.
    let g: Record<string, number> | undefined;
    for (let i = 0; i < 100; i++) {
      const a = await call(
        replicas[0]!.url,
        'GET',
        '/admin/costs?group_by=tenant&tenant=acme',
        admin,
      );
      expect(a.status, a.text).toBe(200);
      g = (a.body['groups'] as Record<string, number>[])[0];
      if (g?.['calls'] === plan.length + 4) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(g).toMatchObject({
      requests: plan.length + 4,
      calls: plan.length + 4,
      input_tokens: input,
      output_tokens: output,
      estimated_calls: estimated,
      failed_calls: 6,
    });
    expect(g!['cost']).toBeCloseTo(cost, 9);
    // The other replica reads the same totals.
    const b = await call(
      replicas[1]!.url,
      'GET',
      '/admin/costs?group_by=tenant&tenant=acme',
      admin,
    );
    expect((b.body['groups'] as Record<string, number>[])[0]!['cost_nanos']).toBe(g!['cost_nanos']);
  }, 60_000);

  it('refuses on one replica a budget spent on the other', async () => {
    // 0.174 a call: spent 0, 0.174, 0.348, 0.522 < 0.6 at calls 1-4.
    for (let i = 0; i < 4; i++) expect(await chat(replicas[0]!, 'json', false, thrifty)).toBe(200);
    // Replica 1 sees replica 0's spend once it is written (100 ms) and re-read.
    await new Promise((r) => setTimeout(r, 400));
    const res = await call(replicas[1]!.url, 'POST', '/v1/chat/completions', thrifty, {
      model: 'chat',
      messages: messages('json'),
    });
    expect(res.status).toBe(429);
    expect(errorCode(res)).toBe('SY_ERR_BUDGET_EXHAUSTED');
    expect(await chat(replicas[0]!, 'json', false, thrifty)).toBe(429);
  }, 30_000);
});
