import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { hashEmbedding } from '../../src/simulator/upstream-simulator.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * The `features`, `retrieve` and `policy` journey stages, run through the gateway over HTTP
 * (#14): real routes, the real feature store, consent book, policy module and vector shards, and
 * a real local upstream for embeddings and chat.
 */

const DIMS = 16;
const lineage = { source: 'test', transformation: 'as pushed' };
const ACME = generateKey('sk');
const OTHER = generateKey('sk');
const OPS = generateKey('sk');

interface Route {
  stage: string;
  code: string;
  reason: string;
  outcome: string;
}
interface Answer {
  output?: Record<string, unknown>;
  route: { outcome: string; stages: Route[] };
  error?: { code: string };
}

describe('journey stages that read personal data, run through the gateway', () => {
  let gw: TestGateway;
  let upstream: TestUpstream;

  beforeAll(async () => {
    // Embeddings are hashes of the text (the same text, the same unit vector); chat echoes.
    upstream = await startUpstream((_req, res, call) => {
      const body = JSON.parse(call.body) as {
        input?: string | string[];
        messages?: { content: string }[];
      };
      const out = call.path.endsWith('/embeddings')
        ? {
            object: 'list',
            data: [body.input ?? ''].flat().map((t, index) => ({
              object: 'embedding',
              index,
              embedding: hashEmbedding(t, DIMS),
            })),
            usage: { prompt_tokens: 2, total_tokens: 2 },
          }
        : {
            id: 'c1',
            object: 'chat.completion',
            choices: [
              {
                index: 0,
                message: { role: 'assistant', content: `echo: ${body.messages?.at(-1)?.content}` },
                finish_reason: 'stop',
              },
            ],
            usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
          };
      const raw = JSON.stringify(out);
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(raw),
      });
      res.end(raw);
    });
    gw = await startTestGateway({
      config: {
        tenants: {
          acme: {
            keys: [
              { id: 'k1', hash: hashKey(ACME, TEST_SECRET) },
              { id: 'ops', hash: hashKey(OPS, TEST_SECRET), admin: true },
            ],
          },
          other: { keys: [{ id: 'k2', hash: hashKey(OTHER, TEST_SECRET) }] },
        },
        models: {
          emb: openaiModel(upstream.url, {
            operations: ['embeddings'],
            retry: { max_attempts: 1 },
          }),
          chat: openaiModel(upstream.url, { retry: { max_attempts: 1 } }),
        },
        features: {
          definitions: {
            'user.tier': {
              entity: 'user',
              type: 'enum',
              values: ['basic', 'gold'],
              label: 'public',
              lineage,
            },
            'user.visits': {
              entity: 'user',
              type: 'int',
              min: 0,
              label: 'consented',
              purpose: 'behavioral_inference',
              lineage,
            },
            'user.city': {
              entity: 'user',
              type: 'string',
              label: 'sensitive',
              purpose: 'location',
              lineage,
            },
            'user.risk': {
              entity: 'user',
              type: 'float',
              min: 0,
              max: 1,
              label: 'restricted',
              purpose: 'behavioral_inference',
              lineage,
            },
          },
        },
        privacy: {
          purposes: {
            // A city, and a note for cross-service personalization, may be collected without
            // consent, but only read (and used) with it.
            cross_service_personalization: {
              labels: {
                consented: {
                  ingestion: 'allow',
                  retrieval: 'consent',
                  model_input: 'consent',
                  logging: 'consent',
                },
              },
            },
            location: {
              labels: {
                sensitive: {
                  ingestion: 'allow',
                  retrieval: 'consent',
                  model_input: 'consent',
                  logging: 'deny',
                },
              },
            },
          },
        },
        inference_log: { enabled: true, flush_ms: 60_000 },
        vectors: {
          collections: { docs: { dims: DIMS, index: 'exact', shards: [{ id: 'docs-1' }] } },
        },
        journeys: {
          profile: {
            stages: [
              {
                id: 'read',
                features: { id: 'attr.user', names: ['user.tier', 'user.visits', 'user.city'] },
              },
              { id: 'out', respond: { body: { features: 'features' } } },
            ],
          },
          articles: {
            stages: [
              {
                id: 'find',
                retrieve: { collection: 'docs', embed: 'emb', text: 'input.text', k: 2 },
              },
              { id: 'out', respond: { body: { hits: 'find.hits' } } },
            ],
          },
          gated: {
            stages: [
              { id: 'consent', policy: { purpose: 'behavioral_inference', else: 'generic' } },
              { id: 'personal', respond: { body: { answer: { const: 'personal' } } } },
              { id: 'generic', respond: { body: { answer: { const: 'generic' } } } },
            ],
          },
          strict: {
            stages: [
              { id: 'consent', policy: { purpose: 'location', label: 'sensitive' } },
              { id: 'ok', respond: { body: { answer: { const: 'located' } } } },
            ],
          },
          restricted: {
            stages: [
              { id: 'check', policy: { purpose: 'behavioral_inference', label: 'restricted' } },
              { id: 'ok', respond: { body: { answer: { const: 'never' } } } },
            ],
          },
          leaky: {
            stages: [
              { id: 'read', features: { id: 'attr.user', names: ['user.risk'] } },
              {
                id: 'prompt',
                transform: {
                  set: { text: { template: 'risk {features.user.risk}: {input.text}' } },
                },
              },
              { id: 'ask', infer: { model: 'chat', prompt: 'prompt.text' } },
            ],
          },
        },
      },
    });
    // alice consents to behavioral inference only; bob to nothing.
    await send(ACME, 'PUT', '/v1/consent/alice', { purposes: { behavioral_inference: true } });
    const pushed = await send(ACME, 'POST', '/v1/features', {
      writes: [
        { entity_id: 'alice', feature: 'user.tier', value: 'gold' },
        { entity_id: 'alice', feature: 'user.visits', value: 7 },
        { entity_id: 'alice', feature: 'user.city', value: 'Porto' },
        { entity_id: 'alice', feature: 'user.risk', value: 0.9 },
      ],
    });
    expect(pushed.status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  async function send(key: string, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown) {
    const res = await request(`${gw.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  }

  async function journey(name: string, user: string, input = 'hello', key = ACME) {
    const r = await send(key, 'POST', `/v1/journeys/${name}`, { input, attributes: { user } });
    return { status: r.status, body: r.body as unknown as Answer };
  }

  const stage = (a: Answer, id: string): Route => a.route.stages.find((s) => s.stage === id)!;

  describe('the inference record of what the stages read (#15)', () => {
    const record = async (id: string) => {
      const r = await send(OPS, 'GET', `/admin/requests/${id}`);
      expect(r.status).toBe(200);
      return r.body as {
        features?: {
          name: string;
          entity: string;
          version: number;
          label: string;
          value?: unknown;
        }[];
        shards?: {
          collection: string;
          shard: string;
          node: string;
          hits: number;
          outcome: string;
        }[];
      };
    };
    const sendFor = async (name: string, user: string, input = 'hello') => {
      const res = await request(`${gw.url}/v1/journeys/${name}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ACME}`, 'content-type': 'application/json' },
        body: JSON.stringify({ input, attributes: { user } }),
      });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      return String(res.headers['x-request-id']);
    };

    it('names every feature read with its version, and keeps a value only where logging it is allowed', async () => {
      const rec = await record(await sendFor('profile', 'alice'));
      const byName = new Map((rec.features ?? []).map((f) => [f.name, f]));
      expect([...byName.keys()].sort()).toEqual(['user.city', 'user.tier', 'user.visits']);
      for (const f of byName.values()) {
        expect(f.entity).toBe('alice');
        expect(f.version).toBeGreaterThanOrEqual(1);
      }
      // public: logging allowed; consented with alice's consent: allowed.
      expect(byName.get('user.tier')).toMatchObject({ label: 'public', value: 'gold' });
      expect(byName.get('user.visits')).toMatchObject({ label: 'consented', value: 7 });
      // sensitive, location purpose: alice gave no consent to read it, and logging is denied.
      expect(byName.get('user.city')!.label).toBe('sensitive');
      expect(byName.get('user.city')).not.toHaveProperty('value');
      expect(JSON.stringify(rec)).not.toContain('Porto');
    });

    it('keeps no value of a feature its user did not consent to, though it names the read', async () => {
      const wrote = await send(ACME, 'POST', '/v1/features', {
        writes: [{ entity_id: 'bob', feature: 'user.city', value: 'Lisbon' }],
      });
      expect(wrote.status).toBe(200);
      const rec = await record(await sendFor('profile', 'bob'));
      const city = (rec.features ?? []).find((f) => f.name === 'user.city');
      expect(city).toMatchObject({ entity: 'bob', label: 'sensitive' });
      expect(city).not.toHaveProperty('value');
      expect(JSON.stringify(rec)).not.toContain('Lisbon');
    });

    it('lists the vector shards a retrieval asked and how each answered', async () => {
      const rec = await record(await sendFor('articles', 'alice', 'a question'));
      expect(rec.shards).toHaveLength(1);
      expect(rec.shards![0]).toMatchObject({
        collection: 'docs',
        shard: 'docs-1',
        node: 'local',
        outcome: 'ok',
      });
      expect(typeof rec.shards![0]!.hits).toBe('number');
    });
  });

  describe('features', () => {
    it('reads the user features and withholds the one whose consent is missing, as null', async () => {
      const a = await journey('profile', 'alice');
      expect(a.status).toBe(200);
      expect(a.body.output).toEqual({
        features: { 'user.tier': 'gold', 'user.visits': 7, 'user.city': null },
      });
      expect(stage(a.body, 'read')).toMatchObject({
        code: 'partial',
        reason: '2/3 features, 1 withheld by policy',
      });
    });

    it('reads the withheld feature once the user consents to its purpose', async () => {
      await send(ACME, 'PUT', '/v1/consent/carol', { purposes: { location: false } });
      await send(ACME, 'POST', '/v1/features', {
        writes: [{ entity_id: 'carol', feature: 'user.city', value: 'Faro' }],
      });
      expect((await journey('profile', 'carol')).body.output).toEqual({
        features: { 'user.tier': null, 'user.visits': null, 'user.city': null },
      });
      await send(ACME, 'PUT', '/v1/consent/carol', { purposes: { location: true } });
      const a = await journey('profile', 'carol');
      expect(a.body.output).toEqual({
        features: { 'user.tier': null, 'user.visits': null, 'user.city': 'Faro' },
      });
      expect(stage(a.body, 'read').reason).toBe('1/3 features');
    });
  });

  describe('retrieve', () => {
    beforeAll(async () => {
      const doc = (id: string, text: string, meta: Record<string, unknown> = {}) => ({
        id,
        vector: hashEmbedding(text, DIMS),
        meta: { label: 'public', entityType: 'document', attrs: { text }, ...meta },
      });
      const mine = await send(ACME, 'POST', '/v1/vectors/docs/upsert', {
        records: [
          doc('shoes', 'red running shoes'),
          doc('lamp', 'a desk lamp'),
          doc('chair', 'an office chair'),
          // bob's own note, exactly the query: personal data that needs his consent.
          doc('bob-note', 'red running shoes', {
            label: 'consented',
            userId: 'bob',
            attrs: {
              text: 'bob likes red running shoes',
              purpose: 'cross_service_personalization',
            },
          }),
        ],
      });
      expect(mine.status, JSON.stringify(mine.body)).toBe(200);
      // Another tenant's document, exactly the query too.
      const theirs = await send(OTHER, 'POST', '/v1/vectors/docs/upsert', {
        records: [doc('theirs', 'red running shoes')],
      });
      expect(theirs.status).toBe(200);
    });

    it("returns the tenant's nearest items, without another tenant's or unconsented ones", async () => {
      const a = await journey('articles', 'alice', 'red running shoes');
      expect(a.status).toBe(200);
      const hits = (a.body.output as { hits: { id: string; distance: number }[] }).hits;
      expect(hits).toHaveLength(2);
      expect(hits[0]).toMatchObject({ id: 'shoes', attrs: { text: 'red running shoes' } });
      expect(hits[0]!.distance).toBeLessThan(1e-6);
      expect(hits.map((h) => h.id)).not.toContain('bob-note');
      expect(hits.map((h) => h.id)).not.toContain('theirs');
      expect(stage(a.body, 'find')).toMatchObject({ code: 'ok', reason: '2 hits from 1 shard(s)' });
    });

    it("finds a user's item once its owner grants the consent it needs, and the other tenant only its own", async () => {
      await send(ACME, 'PUT', '/v1/consent/bob', {
        purposes: { cross_service_personalization: true },
      });
      const a = await journey('articles', 'bob', 'red running shoes');
      const ids = (a.body.output as { hits: { id: string }[] }).hits.map((h) => h.id);
      expect(ids.sort()).toEqual(['bob-note', 'shoes']);
      const b = await journey('articles', 'x', 'red running shoes', OTHER);
      expect((b.body.output as { hits: { id: string }[] }).hits.map((h) => h.id)).toEqual([
        'theirs',
      ]);
      await send(ACME, 'POST', '/v1/consent/bob/revoke', { purposes: 'all' });
    });
  });

  describe('policy', () => {
    it('continues when the user consented to the purpose', async () => {
      const a = await journey('gated', 'alice');
      expect(a.body.output).toEqual({ answer: 'personal' });
      expect(stage(a.body, 'consent')).toMatchObject({ code: 'allow', outcome: 'continue' });
    });

    it('continues at else when the user did not', async () => {
      const a = await journey('gated', 'bob');
      expect(a.status).toBe(200);
      expect(a.body.output).toEqual({ answer: 'generic' });
      expect(stage(a.body, 'consent')).toMatchObject({
        code: 'deny:generic',
        reason: 'no consent to behavioral_inference → generic',
      });
    });

    it("fails with the policy module's code when there is no else: consent required", async () => {
      const a = await journey('strict', 'alice');
      expect(a.status).toBe(403);
      expect(a.body.error?.code).toBe('SY_ERR_CONSENT_REQUIRED');
      expect(stage(a.body, 'consent')).toMatchObject({ outcome: 'fail' });
      expect(a.body.route.stages.map((s) => s.stage)).toEqual(['consent']);
    });

    it("fails with the policy module's code when the label never allows model input", async () => {
      const a = await journey('restricted', 'alice');
      expect(a.status).toBe(403);
      expect(a.body.error?.code).toBe('SY_ERR_POLICY_DENIED');
    });
  });

  it('strips restricted data from a prompt built with it, sends the rest, and counts the strip', async () => {
    const before = upstream.calls.filter((c) => c.path.endsWith('/chat/completions')).length;
    const a = await journey('leaky', 'alice', 'approve the order?');
    // The transform that templated the risk score is built again without it: the model gets
    // the rest of the prompt, never the restricted value.
    expect(a.status).toBe(200);
    expect(stage(a.body, 'ask')).toMatchObject({ outcome: 'continue', code: 'ok' });
    expect(stage(a.body, 'ask')?.reason).toContain('withheld by policy: features.user.risk');
    const sent = upstream.calls.filter((c) => c.path.endsWith('/chat/completions'));
    expect(sent.length).toBe(before + 1);
    const body = sent.at(-1)!.body;
    expect(body).toContain('approve the order?');
    expect(body).not.toContain('0.9');
    const metrics = await (await request(`${gw.url}/metrics`)).body.text();
    expect(metrics).toMatch(
      /switchyard_policy_exceptions_total\{action="strip",code="SY_ERR_POLICY_DENIED",label="restricted",origin="journey"\} 1/,
    );
  });
});
