import { describe, expect, it } from 'vitest';
import { syError } from '../../src/core/errors.js';
import { sleep } from '../../src/core/deadline.js';
import type { ScriptedModel } from '../support/scripted-invoker.js';
import { codes, harness } from './journeys-harness.js';

const intent = (label: string, confidence: number, latencyMs = 2): ScriptedModel => ({
  tier: 'edge',
  ops: ['classify', 'infer'],
  latencyMs,
  priorMs: 5,
  answer: () => ({ label, confidence }),
});
const chat = (
  tier: 'edge' | 'regional' | 'central',
  text: string,
  extra: Partial<ScriptedModel> = {},
): ScriptedModel => ({
  tier,
  ops: ['chat'],
  answer: () => ({ text, inputTokens: 10, outputTokens: 20 }),
  ...extra,
});
const embed = (vectors: Record<string, number[]>): ScriptedModel => ({
  tier: 'edge',
  ops: ['embeddings'],
  answer: ({ text }) => ({ vector: vectors[text] ?? [0, 0, 1] }),
});

const TRIAGE = [
  { id: 'intent', classify: { model: 'intent', text: 'input.text' } },
  {
    id: 'route',
    branch: {
      cases: [{ when: "confidence >= 0.8 and label in ['order_status']", to: 'status' }],
      else: { to: 'answer', mark: 'escalation' },
    },
  },
  {
    id: 'status',
    respond: { body: { answer: { template: 'Your order is on its way ({intent.label})' } } },
  },
  { id: 'answer', infer: { model: 'big', prompt: 'input.text' } },
  { id: 'out', respond: { body: { answer: 'answer.text' } } },
];

describe('journey stages', () => {
  it('answers locally when the edge classifier is confident, and the route says why', async () => {
    const h = harness(
      { intent: intent('order_status', 0.93), big: chat('central', 'long answer') },
      TRIAGE,
    );
    const out = await h.run({ text: 'where is my order' });
    expect(out.ok).toBe(true);
    expect(out.ok && out.body).toEqual({ answer: 'Your order is on its way (order_status)' });
    expect(codes(out)).toEqual(['intent=ok', 'route=to:status', 'status=respond']);
    expect(out.route.stages[1]!.reason).toContain('confidence=0.93');
    expect(out.route.answeredBy).toBe('edge');
    expect(h.invoker.calls.map((c) => c.model)).toEqual(['intent']);
    expect(out.route.stages[0]).toMatchObject({
      tier: 'edge',
      model: 'intent',
      version: '1',
      ms: 2,
    });
  });

  it('escalates to the central model when confidence is low, counting an escalation', async () => {
    const h = harness(
      { intent: intent('order_status', 0.41), big: chat('central', 'long answer') },
      TRIAGE,
    );
    const out = await h.run({ text: 'hmm' });
    expect(out.ok && out.body).toEqual({ answer: 'long answer' });
    expect(codes(out)).toEqual(['intent=ok', 'route=to:answer', 'answer=ok', 'out=respond']);
    expect(out.route.decisions).toContain('escalation');
    expect(out.route.answeredBy).toBe('central');
  });

  it('escalates a classify ladder only while confidence stays under the threshold', async () => {
    const stages = [{ id: 'c', classify: { models: ['small', 'large'], escalate_below: 0.8 } }];
    const low = harness(
      { small: intent('a', 0.5), large: { ...intent('b', 0.95), tier: 'central' } },
      stages,
    );
    const out = await low.run({ text: 'x' });
    expect(out.ok && out.body).toMatchObject({ label: 'b', confidence: 0.95, model: 'large' });
    expect(out.route.stages[0]!.code).toBe('escalated');
    expect(out.route.stages[0]!.models!.map((m) => m.model)).toEqual(['small', 'large']);
    const high = harness(
      { small: intent('a', 0.9), large: { ...intent('b', 0.95), tier: 'central' } },
      stages,
    );
    const out2 = await high.run({ text: 'x' });
    expect(out2.ok && out2.body).toMatchObject({ label: 'a' });
    expect(high.invoker.calls.map((c) => c.model)).toEqual(['small']);
  });

  it('does not escalate when the bigger model cannot answer within the remaining budget', async () => {
    const stages = [{ id: 'c', classify: { models: ['small', 'large'], escalate_below: 0.8 } }];
    const h = harness(
      { small: intent('a', 0.5), large: { ...intent('b', 0.95), tier: 'central', priorMs: 500 } },
      stages,
    );
    const out = await h.run({ text: 'x' }, { budgetMs: 100 });
    expect(out.ok && out.body).toMatchObject({ label: 'a' });
    expect(out.route.stages[0]!.reason).toContain('large skipped');
    expect(h.invoker.calls.map((c) => c.model)).toEqual(['small']);
  });

  it('maps values with transform and answers with the last output when the graph ends', async () => {
    const h = harness({}, [
      {
        id: 't',
        transform: {
          set: { q: 'input.text', user: 'attr.user', k: { const: 3 }, n: [1, 'attr.user'] },
        },
      },
    ]);
    const out = await h.run({ text: 'shoes' }, { attributes: { user: 'u1' } });
    expect(out.ok && out.body).toEqual({ q: 'shoes', user: 'u1', k: 3, n: [1, 'u1'] });
  });

  it('branches on remaining budget and request attributes', async () => {
    const stages = [
      {
        id: 'b',
        branch: {
          cases: [
            { when: 'budget_ms < 100', to: 'quick' },
            { when: "attr.plan == 'gold'", to: 'gold' },
          ],
          else: 'plain',
        },
      },
      { id: 'quick', respond: { body: { const: 'quick' } } },
      { id: 'gold', respond: { body: { const: 'gold' } } },
      { id: 'plain', respond: { body: { const: 'plain' } } },
    ];
    const h = harness({}, stages);
    expect((await h.run({}, { budgetMs: 50 })).route.stages[0]!.code).toBe('to:quick');
    expect((await h.run({}, { attributes: { plan: 'gold' } })).route.stages[0]!.code).toBe(
      'to:gold',
    );
    const plain = await h.run({}, { attributes: { plan: 'free' } });
    expect(plain.ok && plain.body).toBe('plain');
    expect(plain.route.stages[0]!.reason).toContain('attr.plan="free"');
  });
});

describe('cheapest fit, downgrades and fallbacks', () => {
  const CANDIDATES = [
    {
      id: 'a',
      infer: { candidates: ['central', 'regional', 'edge'], prompt: 'input.text', max_tokens: 100 },
    },
  ];
  const tiers = (): Record<string, ScriptedModel> => ({
    edge: chat('edge', 'e', { priorMs: 400, cost: { perCall: 0.001 } }),
    regional: chat('regional', 'r', { priorMs: 150, cost: { perCall: 0.01 } }),
    central: chat('central', 'c', { priorMs: 60, cost: { perCall: 0.1, outPer1k: 1 } }),
  });

  it('picks the cheapest candidate whose predicted latency fits the remaining budget', async () => {
    const h = harness(tiers(), CANDIDATES);
    expect((await h.run({ text: 'q' }, { budgetMs: 1000 })).route.stages[0]!.model).toBe('edge');
    expect((await h.run({ text: 'q' }, { budgetMs: 300 })).route.stages[0]!.model).toBe('regional');
    const tight = await h.run({ text: 'q' }, { budgetMs: 100 });
    expect(tight.route.stages[0]).toMatchObject({ model: 'central', code: 'fit:central' });
    const none = await h.run({ text: 'q' }, { budgetMs: 30 });
    expect(none.route.stages[0]).toMatchObject({ model: 'central', code: 'none-fit:central' });
    expect(none.route.decisions).toContain('downgrade');
  });

  it('learns latency from traffic and stops choosing a candidate that became slow', async () => {
    const models = tiers();
    const h = harness(
      { ...models, edge: { ...models['edge']!, priorMs: 10, latencyMs: 600 } },
      CANDIDATES,
    );
    // The prior says edge is fast: it is chosen until the learned profile says otherwise.
    for (let i = 0; i < 8; i++) await h.run({ text: 'q' }, { budgetMs: 1000 });
    expect(h.router.predictMs(h.invoker.info('edge')!)).toBeGreaterThan(500);
    const next = await h.run({ text: 'q' }, { budgetMs: 500 });
    expect(next.route.stages[0]!.model).toBe('regional');
  });

  it('skips a candidate that is down', async () => {
    const models = tiers();
    models['edge']!.available = false;
    const h = harness(models, CANDIDATES);
    expect((await h.run({ text: 'q' })).route.stages[0]!.model).toBe('regional');
  });

  it('downgrades to a smaller model, a shorter context, or another stage near the deadline', async () => {
    const stages = [
      {
        id: 'a',
        infer: {
          model: 'big',
          messages: 'input.messages',
          max_tokens: 500,
          downgrade: [
            { below_ms: 400, model: 'small' },
            { below_ms: 800, shorten: { keep_messages: 1, max_tokens: 50 } },
            { below_ms: 100, goto: 'popular' },
          ],
        },
      },
      { id: 'done', respond: {} },
      { id: 'popular', respond: { body: { const: 'popular answer' } } },
    ];
    const seen: unknown[] = [];
    const h = harness(
      {
        big: chat('central', 'big', { answer: ({ body }) => (seen.push(body), { text: 'big' }) }),
        small: chat('edge', 'small'),
      },
      stages,
    );
    const messages = [
      { role: 'user', content: 'one' },
      { role: 'user', content: 'two' },
    ];
    const full = await h.run({ messages }, { budgetMs: 2000 });
    expect(full.route.stages[0]).toMatchObject({ code: 'ok', model: 'big' });
    expect(seen[0]).toMatchObject({ max_tokens: 500, messages });
    const short = await h.run({ messages }, { budgetMs: 600 });
    expect(short.route.stages[0]).toMatchObject({ code: 'downgrade:shorten', model: 'big' });
    expect(seen[1]).toMatchObject({ max_tokens: 50, messages: [messages[1]] });
    const small = await h.run({ messages }, { budgetMs: 300 });
    expect(small.route.stages[0]).toMatchObject({
      code: 'downgrade:small',
      model: 'small',
      tier: 'edge',
    });
    const popular = await h.run({ messages }, { budgetMs: 50 });
    expect(popular.ok && popular.body).toBe('popular answer');
    expect(codes(popular)).toEqual(['a=downgrade:popular', 'popular=respond']);
    expect(popular.route.decisions).toEqual(['downgrade']);
  });

  it('falls back to the next alternative when a tier is down, and to the stale answer when all are', async () => {
    const down = (): never => {
      throw syError('SY_ERR_UPSTREAM_UNREACHABLE', 'connection refused');
    };
    const models: Record<string, ScriptedModel> = {
      central: chat('central', 'c', { answer: down }),
      regional: chat('regional', 'from regional'),
    };
    const stages = [
      { id: 'cache', cache: { ttl_ms: 1000, stale_ms: 60_000 } },
      {
        id: 'answer',
        fallback: {
          try: [
            { infer: { model: 'central', prompt: 'input.text' } },
            { infer: { model: 'regional', prompt: 'input.text' } },
            { cache: { mode: 'stale' } },
          ],
        },
      },
    ];
    const h = harness(models, stages);
    const out = await h.run({ text: 'q' });
    expect(out.ok && out.body).toMatchObject({ text: 'from regional' });
    expect(out.route.stages[1]!.children!.map((c) => `${c.stage}=${c.code}`)).toEqual([
      'answer-infer0=UPSTREAM_UNREACHABLE',
      'answer-infer1=ok',
    ]);
    expect(out.route.decisions).toContain('fallback');
    expect(out.route.answeredBy).toBe('regional');
  });

  it('serves a stale answer when every tier is down (stale-if-error)', async () => {
    let healthy = true;
    const models: Record<string, ScriptedModel> = {
      central: chat('central', 'c', {
        answer: () => {
          if (!healthy) throw syError('SY_ERR_UPSTREAM_ERROR', '500');
          return { text: 'fresh' };
        },
      }),
    };
    const stages = [
      { id: 'cache', cache: { ttl_ms: 1000, stale_ms: 60_000 } },
      {
        id: 'answer',
        fallback: {
          try: [
            { infer: { model: 'central', prompt: 'input.text' } },
            { cache: { mode: 'stale' } },
          ],
        },
      },
    ];
    const h = harness(models, stages);
    const first = await h.run({ text: 'q' });
    expect(first.ok && first.body).toMatchObject({ text: 'fresh' });
    expect(first.route.cache).toBe('miss');
    expect((await h.run({ text: 'q' })).route.cache).toBe('hit');
    h.clock.advance(5_000);
    healthy = false;
    const stale = await h.run({ text: 'q' });
    expect(stale.ok && stale.body).toMatchObject({ text: 'fresh' });
    expect(stale.route.cache).toBe('stale');
    expect(stale.route.decisions).toEqual(expect.arrayContaining(['fallback', 'stale_served']));
  });

  it("misses the exact cache once a journey model's version changes, and hits again on the new one", async () => {
    const models: Record<string, ScriptedModel> = {
      central: { ...chat('central', 'from v1'), version: 'v1' },
    };
    const stages = [
      { id: 'cache', cache: { ttl_ms: 60_000 } },
      { id: 'answer', infer: { model: 'central', prompt: 'input.text' } },
    ];
    const h = harness(models, stages);
    expect((await h.run({ text: 'q' })).route.cache).toBe('miss');
    expect((await h.run({ text: 'q' })).route.cache).toBe('hit');
    models['central'] = { ...chat('central', 'from v2'), version: 'v2' };
    const after = await h.run({ text: 'q' });
    expect(after.route.cache).toBe('miss');
    expect(after.ok && after.body).toMatchObject({ text: 'from v2' });
    expect((await h.run({ text: 'q' })).route.cache).toBe('hit');
    models['central'] = { ...chat('central', 'from v1 again'), version: 'v1' };
    const back = await h.run({ text: 'q' });
    expect(back.route.cache).toBe('hit');
    expect(back.ok && back.body).toMatchObject({ text: 'from v1' });
  });

  it('goes to on_fail when a stage fails, and fails the journey when nothing takes over', async () => {
    const boom: ScriptedModel = chat('central', 'x', {
      answer: () => {
        throw syError('SY_ERR_UPSTREAM_ERROR', '500');
      },
    });
    const h = harness({ big: boom }, [
      { id: 'a', infer: { model: 'big', prompt: 'input.text' }, on_fail: 'sorry' },
      { id: 'ok', respond: {} },
      { id: 'sorry', respond: { body: { const: 'sorry' } } },
    ]);
    const out = await h.run({ text: 'q' });
    expect(out.ok && out.body).toBe('sorry');
    expect(codes(out)).toEqual(['a=UPSTREAM_ERROR', 'sorry=respond']);
    const plain = harness({ big: boom }, [
      { id: 'a', infer: { model: 'big', prompt: 'input.text' } },
    ]);
    const failed = await plain.run({ text: 'q' });
    expect(failed.ok).toBe(false);
    expect(!failed.ok && failed.error.code).toBe('SY_ERR_UPSTREAM_ERROR');
    expect(failed.route.outcome).toBe('fail');
  });
});

describe('parallel branches', () => {
  it('cancels the losing branches once one answers (merge: first)', async () => {
    const slowSignals: AbortSignal[] = [];
    const models: Record<string, ScriptedModel> = {
      fast: chat('edge', 'fast'),
      slow: chat('central', 'slow', {
        answer: async (_in, call) => {
          slowSignals.push(call.signal);
          await sleep(10_000, call.signal);
          return { text: 'slow' };
        },
      }),
    };
    const h = harness(models, [
      {
        id: 'race',
        parallel: {
          branches: [
            { id: 'slow-one', infer: { model: 'slow', prompt: 'input.text' } },
            { id: 'fast-one', infer: { model: 'fast', prompt: 'input.text' } },
          ],
        },
      },
    ]);
    const out = await h.run({ text: 'q' });
    expect(out.ok && out.body).toMatchObject({ text: 'fast' });
    expect(slowSignals[0]!.aborted).toBe(true);
    const children = out.route.stages[0]!.children!;
    expect(children.map((c) => `${c.stage}=${c.code}`)).toEqual([
      'slow-one=cancelled',
      'fast-one=ok',
    ]);
    expect(out.route.stages[0]!.reason).toContain('cancelled slow-one');
  });

  it('merges by confidence (best) and collects every output (all)', async () => {
    const models = { a: intent('x', 0.6), b: intent('y', 0.9) };
    const best = harness(models, [
      {
        id: 'p',
        parallel: {
          merge: 'best',
          branches: [
            { id: 'ca', classify: { model: 'a' } },
            { id: 'cb', classify: { model: 'b' } },
          ],
        },
      },
      { id: 'r', respond: { body: 'label' } },
    ]);
    expect((await best.run({ text: 't' })).ok && (await best.run({ text: 't' }))).toMatchObject({
      body: 'y',
    });
    const all = harness(models, [
      {
        id: 'p',
        parallel: {
          merge: 'all',
          branches: [
            { id: 'ca', classify: { model: 'a' } },
            { id: 'cb', classify: { model: 'b' } },
          ],
        },
      },
    ]);
    const out = await all.run({ text: 't' });
    expect(out.ok && out.body).toMatchObject({ ca: { label: 'x' }, cb: { label: 'y' } });
  });
});

describe('time-boxed journeys', () => {
  it('never starts a stage after the deadline has passed', async () => {
    const models: Record<string, ScriptedModel> = {
      slow: { ...intent('a', 0.9), latencyMs: 150 },
      after: chat('central', 'never'),
    };
    const h = harness(models, [
      { id: 'first', classify: { model: 'slow' } },
      { id: 'second', infer: { model: 'after', prompt: 'input.text' } },
      { id: 'third', respond: {} },
    ]);
    const out = await h.run({ text: 'q' }, { budgetMs: 100 });
    expect(out.ok).toBe(false);
    expect(!out.ok && out.error.code).toBe('SY_ERR_DEADLINE_EXCEEDED');
    expect(codes(out)).toEqual(['first=ok']);
    expect(out.route.stoppedBefore).toBe('second');
    expect(h.invoker.calls.map((c) => c.model)).toEqual(['slow']);
    // Every stage that did run started before the deadline.
    for (const e of out.route.stages) expect(e.at).toBeLessThan(100);
  });

  it('stops at once when the request signal fires (client gone)', async () => {
    const ac = new AbortController();
    const h = harness(
      {
        m: {
          ...intent('a', 0.9),
          answer: () => (ac.abort(syError('SY_ERR_CLIENT_CLOSED')), { label: 'a', confidence: 1 }),
        },
      },
      [
        { id: 'one', classify: { model: 'm' } },
        { id: 'two', respond: {} },
      ],
    );
    const out = await h.run({ text: 'q' }, { signal: ac.signal });
    expect(!out.ok && out.error.code).toBe('SY_ERR_CLIENT_CLOSED');
    expect(out.route.stoppedBefore).toBe('two');
  });
});

describe('caches', () => {
  const vectors = {
    'where is my order': [1, 0, 0],
    'where is my parcel': [0.96, 0.28, 0],
    'cancel my account': [0, 1, 0],
  };
  const stages = [
    {
      id: 'cache',
      cache: { exact: true, semantic: { embed: 'emb', threshold: 0.9 }, ttl_ms: 60_000 },
    },
    { id: 'answer', infer: { model: 'big', prompt: 'input.text' } },
  ];
  const models = (): Record<string, ScriptedModel> => ({
    emb: embed(vectors),
    big: chat('central', 'the answer', { cost: { perCall: 0.05 } }),
  });

  it('answers a repeated request from the exact cache, for the same tenant only', async () => {
    const h = harness(models(), stages);
    const a = await h.run({ text: 'where is my order' });
    expect(a.route.cache).toBe('miss');
    const again = await h.run({ text: '  where is my   order ' });
    expect(again.route.cache).toBe('hit');
    expect(again.route.answeredBy).toBe('cache');
    expect(again.route.cost).toBe(0);
    const other = await h.run({ text: 'where is my order' }, { tenant: 'globex' });
    expect(other.route.cache).toBe('miss');
    expect(h.invoker.calls.filter((c) => c.model === 'big')).toHaveLength(2);
  });

  it('matches a similar request above the semantic threshold and not below it', async () => {
    const h = harness(models(), stages);
    await h.run({ text: 'where is my order' });
    const near = await h.run({ text: 'where is my parcel' });
    expect(near.route.cache).toBe('semantic_hit');
    expect(near.route.stages[0]!.reason).toMatch(/similarity 0\.96\d ≥ 0\.9/);
    const far = await h.run({ text: 'cancel my account' });
    expect(far.route.cache).toBe('miss');
    expect(far.route.stages[0]!.reason).toContain('nearest 0.000 < 0.9');
    // Another tenant's similar entry is never a semantic hit.
    const iso = await h.run({ text: 'where is my parcel' }, { tenant: 'globex' });
    expect(iso.route.cache).toBe('miss');
  });

  it('never serves an answer a previous model version gave, exactly or semantically', async () => {
    const h = harness(models(), stages);
    await h.run({ text: 'where is my order' });
    expect((await h.run({ text: 'where is my parcel' })).route.cache).toBe('semantic_hit');
    h.invoker.models['big'] = { ...h.invoker.models['big']!, version: '2' };
    // v1's entry is as near as before, but v2 is answering now.
    expect((await h.run({ text: 'where is my parcel' })).route.cache).toBe('miss');
    expect((await h.run({ text: 'where is my order' })).route.cache).toBe('semantic_hit');
    expect(h.invoker.calls.filter((c) => c.model === 'big')).toHaveLength(2);
  });

  it('expires entries after their TTL and does not cache degraded answers', async () => {
    const h = harness(models(), stages);
    await h.run({ text: 'where is my order' });
    h.clock.advance(61_000);
    expect((await h.run({ text: 'where is my order' })).route.cache).toBe('miss');
  });
});
