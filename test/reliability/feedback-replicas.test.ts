import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { PostgresCostLedger } from '../../src/state/postgres-cost-ledger.js';
import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import { TEST_SECRET } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { call, errorCode, type Answer } from '../support/http-call.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * `/v1/feedback` outcomes join the cost ledger whichever replica receives them (#15): two gateway
 * processes share PostgreSQL (ledger and inference log). Replica B finds the cost key of a
 * request A served in the shared inference log, waiting for a record still in A's buffer; a
 * feedback repeated on A and B counts once; another tenant can never attach feedback to it. The
 * experiment's reward follows the ledger's claim: credited once, by the replica that counted the
 * outcome, from the exposure A wrote to the shared state store (its bandit segment included).
 */

const skip = await postgresSkip('feedback across two replicas sharing PostgreSQL');
const app = generateKey('sk');
const ops = generateKey('sk');
const other = generateKey('sk');
const USAGE = { prompt_tokens: 100, completion_tokens: 50 };

interface Group {
  key: string;
  requests: number;
  calls: number;
  feedback: number;
  conversions: number;
}

describe.skipIf(skip !== false)(
  'feedback joins the ledger across two replicas sharing PostgreSQL (#15)',
  () => {
    let up: TestUpstream;
    const schema = freshSchema('sy_feedback');
    const replicas: ProcessGateway[] = [];
    const journey = {
      class: 'interactive',
      stages: [{ id: 'answer', infer: { model: 'small', prompt: 'input.text' } }],
    };

    beforeAll(async () => {
      up = await startUpstream(json(200, chatCompletion('fine', USAGE)));
      const config = {
        state: { postgres: PG_URL, schema },
        costs: { flush_ms: 100 },
        // A's record of a request lands in the shared log up to 400 ms after it ends: feedback sent
        // to B at once must wait for it.
        inference_log: { enabled: true, store: 'postgres', postgres_schema: schema, flush_ms: 400 },
        tenants: {
          acme: {
            keys: [
              { id: 'app', hash: hashKey(app, TEST_SECRET) },
              { id: 'ops', hash: hashKey(ops, TEST_SECRET), admin: true },
            ],
            models: ['*'],
          },
          beta: { keys: [{ id: 'b', hash: hashKey(other, TEST_SECRET) }], models: ['*'] },
        },
        models: {
          big: { backend: 'openai', url: `${up.url}/v1`, cost: { per_call: 0.01 } },
          small: {
            backend: 'openai',
            url: `${up.url}/v1`,
            cost: { per_call: 0.001 },
            tier: 'edge',
          },
          reco: { backend: 'openai', url: `${up.url}/v1`, cost: { per_call: 0.001 } },
          'reco-2': { backend: 'openai', url: `${up.url}/v1`, cost: { per_call: 0.001 } },
        },
        journeys: { ask: journey, iso: journey, race: journey },
        release: { evaluate_ms: 100, flush_ms: 100 },
        experiments: [
          {
            id: 'price-ab',
            slot: 'big',
            kind: 'ab',
            variants: [
              { name: 'control', model: 'big' },
              { name: 'treatment', model: 'small' },
            ],
          },
          {
            id: 'reco-bandit',
            slot: 'reco',
            kind: 'bandit',
            variants: [
              { name: 'one', model: 'reco' },
              { name: 'two', model: 'reco-2' },
            ],
            layer: 'reco',
            bandit: { segment_by: 'geo' },
          },
        ],
      };
      // One after the other: the first creates the schema.
      replicas.push(await startProcessGateway({ config }));
      replicas.push(await startProcessGateway({ config }));
    }, 60_000);

    afterAll(async () => {
      for (const r of replicas) await r.close();
      await up?.close();
      const registry = await PostgresRegistryStore.open({ url: PG_URL, schema });
      await registry.dropSchema();
      await registry.close();
      const ledger = await PostgresCostLedger.open({ url: PG_URL, schema });
      await ledger.dropSchema();
      await ledger.close();
    });

    const A = () => replicas[0]!.url;
    const B = () => replicas[1]!.url;

    async function ask(name: string, at = A()): Promise<string> {
      const a = await call(at, 'POST', `/v1/journeys/${name}`, app, { input: { text: 'hello' } });
      expect(a.status, a.text).toBe(200);
      return String(a.headers['x-request-id']);
    }

    const feedback = (at: string, id: string, reward: unknown, key = app): Promise<Answer> =>
      call(at, 'POST', '/v1/feedback', key, { inference_id: id, reward });

    /** The shared totals, read until `done` holds (each replica writes every 100 ms). */
    async function ledger(q: string, done: (g: Group[]) => boolean): Promise<Group[]> {
      let groups: Group[] = [];
      for (let i = 0; i < 60; i++) {
        const a = await call(A(), 'GET', `/admin/costs?${q}`, ops);
        expect(a.status, a.text).toBe(200);
        groups = a.body['groups'] as Group[];
        if (done(groups)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      return groups;
    }

    /** Counts the ledger must hold still after a wait: nothing late changes them. */
    async function settled(q: string, key: string): Promise<Group | undefined> {
      await new Promise((r) => setTimeout(r, 300));
      return (await ledger(q, () => true)).find((g) => g.key === key);
    }

    it('counts feedback sent to the replica that did not serve the request, once', async () => {
      const id = await ask('ask');
      // B never saw the request; A has likely not written its record yet.
      const fb = await feedback(B(), id, true);
      expect(fb.status, fb.text).toBe(200);
      expect(fb.body['recorded']).toBe(true);
      // The same feedback again, on B and on A (which served it): nothing more is counted.
      for (const at of [B(), A()]) {
        const again = await feedback(at, id, 1);
        expect(again.status, again.text).toBe(404);
        expect(errorCode(again)).toBe('SY_ERR_INFERENCE_UNKNOWN');
      }
      const groups = await ledger('group_by=journey', (g) =>
        g.some((x) => x.key === 'ask' && x.requests === 1),
      );
      expect(groups.find((g) => g.key === 'ask')).toMatchObject({
        requests: 1,
        calls: 1,
        feedback: 1,
        conversions: 1,
      });
      expect(await settled('group_by=journey', 'ask')).toMatchObject({
        feedback: 1,
        conversions: 1,
      });
    });

    it("joins to the request's experiment arm, found in the log; never another tenant's", async () => {
      const a = await call(A(), 'POST', '/v1/chat/completions', app, {
        model: 'big',
        messages: [{ role: 'user', content: 'hi' }],
        user: 'u-arm',
      });
      expect(a.status, a.text).toBe(200);
      // exp:price-ab/control or exp:price-ab/treatment
      const arm = /^exp:(price-ab\/(?:control|treatment))$/.exec(
        String(a.headers['x-switchyard-release']),
      )?.[1];
      expect(arm).toBeDefined();
      const id = String(a.headers['x-request-id']);
      // Another tenant on the replica that served it: neither ledger nor experiment takes it.
      const stolen = await feedback(A(), id, 1, other);
      expect(stolen.status, stolen.text).toBe(404);
      expect(errorCode(stolen)).toBe('SY_ERR_INFERENCE_UNKNOWN');
      const fb = await feedback(B(), id, 0.5);
      expect(fb.status, fb.text).toBe(200);
      expect(fb.body['recorded']).toBe(true);
      const groups = await ledger('group_by=arm', (g) => g.some((x) => x.feedback === 1));
      expect(groups.map((g) => [g.key, g.feedback, g.conversions])).toEqual([[arm, 1, 1]]);
    });

    it("refuses another tenant's feedback on a request, on either replica", async () => {
      const id = await ask('iso');
      for (const at of [B(), A()]) {
        const stolen = await feedback(at, id, true, other);
        expect(stolen.status, stolen.text).toBe(404);
        expect(errorCode(stolen)).toBe('SY_ERR_INFERENCE_UNKNOWN');
      }
      // The owner's feedback still counts: the other tenant's attempt took nothing.
      const own = await feedback(B(), id, true);
      expect(own.body['recorded'], own.text).toBe(true);
      const groups = await ledger('group_by=journey', (g) =>
        g.some((x) => x.key === 'iso' && x.feedback === 1),
      );
      expect(groups.find((g) => g.key === 'iso')).toMatchObject({ feedback: 1, conversions: 1 });
      const beta = await ledger('group_by=tenant&tenant=beta', () => true);
      expect(beta).toEqual([]);
    });

    it('counts one of the same feedback sent to both replicas at once', async () => {
      const id = await ask('race');
      const answers = await Promise.all(
        [A(), B(), A(), B(), A(), B()].map((at) => feedback(at, id, true)),
      );
      expect(answers.filter((a) => a.body['recorded'] === true)).toHaveLength(1);
      for (const a of answers) expect([200, 404], a.text).toContain(a.status);
      await ledger('group_by=journey', (g) => g.some((x) => x.key === 'race' && x.feedback > 0));
      expect(await settled('group_by=journey', 'race')).toMatchObject({
        requests: 1,
        feedback: 1,
        conversions: 1,
      });
    });

    it('answers an id no replica served with recorded: false after a bounded wait', async () => {
      const started = Date.now();
      const fb = await feedback(B(), 'no-such-request', true);
      expect(fb.status).toBe(404);
      expect(errorCode(fb)).toBe('SY_ERR_INFERENCE_UNKNOWN');
      // inference_log.flush_ms (400) plus the 500 ms margin, and no longer.
      expect(Date.now() - started).toBeLessThan(3_000);
    });

    /** Each variant's reward count as a replica's stats show it (stored plus its unflushed). */
    async function rewards(at: string, exp: string): Promise<Record<string, number>> {
      const a = await call(at, 'GET', `/admin/experiments/${exp}/stats`, ops);
      expect(a.status, a.text).toBe(200);
      const out: Record<string, number> = {};
      for (const v of a.body['variants'] as {
        variant: string;
        metrics: Record<string, { n: number }>;
      }[])
        out[v.variant] = v.metrics['reward']?.n ?? 0;
      return out;
    }

    /** Waits past both replicas' flushes (100 ms) and reads the rewards each one shows. */
    async function settledRewards(exp: string): Promise<Record<string, number>[]> {
      await new Promise((r) => setTimeout(r, 400));
      return [await rewards(A(), exp), await rewards(B(), exp)];
    }

    it("credits the experiment's reward once, on the replica that did not serve it", async () => {
      const [before] = await settledRewards('price-ab');
      const a = await call(A(), 'POST', '/v1/chat/completions', app, {
        model: 'big',
        messages: [{ role: 'user', content: 'hi' }],
        user: 'u-reward',
      });
      expect(a.status, a.text).toBe(200);
      const variant = /^exp:price-ab\/(control|treatment)$/.exec(
        String(a.headers['x-switchyard-release']),
      )?.[1];
      expect(variant).toBeDefined();
      const id = String(a.headers['x-request-id']);
      // B did not serve it, and A has likely not written its exposure yet: B waits for it.
      const fb = await feedback(B(), id, 1);
      expect(fb.status, fb.text).toBe(200);
      expect(fb.body).toEqual({ accepted: true, experiment: 'price-ab', variant, recorded: true });
      // Repeated on A, which served it and still holds it in memory: the ledger says duplicate,
      // and A credits nothing more.
      const again = await feedback(A(), id, 1);
      expect(again.status, again.text).toBe(404);
      expect(errorCode(again)).toBe('SY_ERR_INFERENCE_UNKNOWN');
      const expected = { ...before, [variant!]: (before![variant!] ?? 0) + 1 };
      expect(await settledRewards('price-ab')).toEqual([expected, expected]);
    });

    it("credits a bandit's reward to the inference's segment, from the other replica", async () => {
      const a = await call(
        A(),
        'POST',
        '/v1/chat/completions',
        app,
        { model: 'reco', messages: [{ role: 'user', content: 'hi' }] },
        { 'x-switchyard-geo': 'eu-west' },
      );
      expect(a.status, a.text).toBe(200);
      const variant = /^exp:reco-bandit\/(one|two)$/.exec(
        String(a.headers['x-switchyard-release']),
      )?.[1];
      expect(variant).toBeDefined();
      const fb = await feedback(B(), String(a.headers['x-request-id']), 1);
      expect(fb.body, fb.text).toMatchObject({ experiment: 'reco-bandit', variant });
      await settledRewards('reco-bandit');
      const registry = await PostgresRegistryStore.open({ url: PG_URL, schema });
      try {
        const rows = await registry.readCounters('reco-bandit');
        expect(
          rows.filter((r) => r.metric === 'reward').map((r) => [r.variant, r.segment, r.n, r.sum]),
        ).toEqual([[variant, 'eu-west', 1, 1]]);
      } finally {
        await registry.close();
      }
    });
  },
);
