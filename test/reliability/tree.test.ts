import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { pairModel, writeSynthetic } from '../../src/modelkit/synthetic-models.js';
import { TEST_SECRET } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { call, errorCode, type Answer } from '../support/http-call.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #17, "done means": a tree of real gateway processes on loopback, one port per node: two edges,
 * one regional node and one central node, and real OpenAI-protocol upstreams behind the central
 * one (an EU model and a US model). The edges escalate to the regional node, the regional node to
 * the central one, every hop a `backend: switchyard` model.
 */
const SERVICE_KEY = 'tree-reliability-service-key-0123456789';
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const QUOTA = 100;
const JURISDICTIONS = { eu: {}, us: {} };

describe('the gateway tree: edges, regional, central (#17)', () => {
  let euUp: TestUpstream;
  let usUp: TestUpstream;
  let central: ProcessGateway;
  let regional: ProcessGateway;
  let edges: ProcessGateway[] = [];
  let stores: string;
  const betaKey = generateKey('sk');
  const acmeKey = generateKey('sk');

  const env = { SY_TREE_KEY: SERVICE_KEY };
  const parentModel = (url: string, extra: Record<string, unknown> = {}) => ({
    backend: 'switchyard',
    url,
    service_key: { id: 'tree', secret: { env: 'SY_TREE_KEY' } },
    first_byte_timeout_ms: 2_000,
    ...extra,
  });
  // acme has no quota anywhere; beta has its quota at the regional node only.
  const tenants = (withKeys: boolean, betaQuota?: Record<string, number>) => ({
    acme: {
      keys: withKeys ? [{ id: 'a1', hash: hashKey(acmeKey, TEST_SECRET) }] : [],
      models: ['*'],
    },
    beta: {
      keys: withKeys ? [{ id: 'b1', hash: hashKey(betaKey, TEST_SECRET) }] : [],
      models: ['*'],
      ...(betaQuota === undefined ? {} : { quotas: betaQuota }),
    },
  });

  beforeAll(async () => {
    euUp = await startUpstream(json(200, chatCompletion('from-eu')));
    usUp = await startUpstream(json(200, chatCompletion('from-us')));
    stores = mkdtempSync(join(tmpdir(), 'switchyard-tree-'));
    await writeSynthetic(join(stores, 'central-pair'), '1', pairModel(2));
    await writeSynthetic(join(stores, 'edge-pair'), '1', pairModel(3));
    const accepts = {
      secret: { file: 'secret.txt' },
      service_keys: [{ id: 'tree', secret: { env: 'SY_TREE_KEY' } }],
    };
    central = await startProcessGateway({
      env,
      config: {
        auth: accepts,
        node: { region: 'eu-central', role: 'central' },
        privacy: { jurisdictions: JURISDICTIONS },
        onnx: { workers: 1 },
        tenants: tenants(false),
        models: {
          chat: { backend: 'openai', url: `${euUp.url}/v1`, jurisdiction: 'eu' },
          'chat-us': { backend: 'openai', url: `${usUp.url}/v1`, jurisdiction: 'us' },
          pair: { backend: 'onnx', store: join(stores, 'central-pair'), batch: { max: 1 } },
        },
      },
    });
    regional = await startProcessGateway({
      env,
      config: {
        auth: accepts,
        node: { region: 'eu-west', jurisdiction: 'eu', role: 'regional' },
        privacy: { jurisdictions: JURISDICTIONS },
        // The tenant's quota lives here, for both edges: 100 an hour, all of it at once.
        tenants: tenants(false, { window_s: 3600, requests: QUOTA, requests_burst: QUOTA }),
        models: {
          chat: parentModel(central.url, { jurisdiction: 'eu' }),
          'chat-us': parentModel(central.url, { jurisdiction: 'us' }),
          pair: parentModel(central.url, { operations: ['infer'] }),
        },
      },
    });
    const edge = () =>
      startProcessGateway({
        env,
        config: {
          node: { region: 'eu-west', jurisdiction: 'eu', role: 'edge' },
          privacy: { jurisdictions: JURISDICTIONS },
          onnx: { workers: 1 },
          tenants: tenants(true),
          models: {
            chat: parentModel(regional.url, { jurisdiction: 'eu', cost: { per_call: 0.01 } }),
            'chat-us': parentModel(regional.url, { jurisdiction: 'us', cost: { per_call: 0.001 } }),
            pair: parentModel(regional.url, {
              operations: ['infer'],
              fallback: ['pair-local'],
              breaker: { consecutive_failures: 2, cooldown_ms: 60_000 },
            }),
            'pair-local': { backend: 'onnx', store: join(stores, 'edge-pair'), batch: { max: 1 } },
          },
          journeys: {
            ask: {
              stages: [
                { id: 'answer', infer: { candidates: ['chat-us', 'chat'], prompt: 'input.text' } },
                { id: 'out', respond: { body: { text: 'answer.text' } } },
              ],
            },
          },
        },
      });
    edges = await Promise.all([edge(), edge()]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(edges.map((e) => e.close()));
    await regional?.close();
    await central?.close();
    await euUp?.close();
    await usUp?.close();
    if (stores !== undefined) rmSync(stores, { recursive: true, force: true });
  });

  const chat = (
    edge: ProcessGateway,
    model: string,
    content: string,
    headers: Record<string, string> = {},
    key = acmeKey,
  ) =>
    call(
      edge.url,
      'POST',
      '/v1/chat/completions',
      key,
      { model, messages: [{ role: 'user', content }] },
      headers,
    );
  const pairInfer = (edge: ProcessGateway, headers: Record<string, string> = {}, a0 = 1) =>
    call(
      edge.url,
      'POST',
      '/v2/models/pair/infer',
      acmeKey,
      {
        inputs: [
          { name: 'a', datatype: 'FP32', shape: [1, 4], data: [a0, 1, 1, 1] },
          { name: 'b', datatype: 'FP32', shape: [1, 4], data: [1, 0, 0, 0] },
        ],
      },
      headers,
    );

  it('shows the route across hops and continues the deadline and the trace', async () => {
    const before = euUp.calls.length;
    const a = await chat(edges[0]!, 'chat', 'hello tree', {
      'x-switchyard-timeout-ms': '5000',
      traceparent: TRACEPARENT,
      'x-request-id': 'tree-req-1',
    });
    expect(a.status, a.text).toBe(200);
    expect(a.text).toContain('from-eu');
    expect(a.headers['x-switchyard-route']).toBe('chat#1:ok[chat#1:ok[chat#1:ok]]');
    const seen = euUp.calls[before]!;
    expect(seen.headers['traceparent']).toBe(TRACEPARENT);
    expect(seen.headers['x-request-id']).toBe('tree-req-1');
    const budget = Number(seen.headers['x-switchyard-timeout-ms']);
    expect(budget).toBeGreaterThan(3_000);
    expect(budget).toBeLessThan(5_000);
    // KServe over two hops too: the central node's in-process model (a + 2b) answered.
    const p = await pairInfer(edges[1]!);
    expect(p.status, p.text).toBe(200);
    expect(p.headers['x-switchyard-route']).toBe('pair#1:ok[pair#1:ok[pair#1:ok]]');
    expect(outputsOf(p)).toEqual([3, 1, 1, 1]);
  });

  it('never sends EU-resident data to a non-EU model (0 leaks), and the route says why', async () => {
    const usBefore = usUp.calls.length;
    const eu = { 'x-switchyard-jurisdiction': 'eu' };
    const tries = 600;
    let refused = 0;
    let skipped = 0;
    let served = 0;
    const one = async (i: number): Promise<void> => {
      const edge = edges[i % 2]!;
      const kind = i % 3;
      if (kind === 0) {
        const a = await chat(edge, 'chat-us', `eu data ${i}`, eu);
        expect(a.status, a.text).toBe(403);
        expect(errorCode(a)).toBe('SY_ERR_RESIDENCY');
        refused++;
      } else if (kind === 1) {
        const a = await call(
          edge.url,
          'POST',
          '/v1/journeys/ask',
          acmeKey,
          { input: { text: `eu data ${i}` } },
          eu,
        );
        expect(a.status, a.text).toBe(200);
        expect(JSON.stringify(a.body['route'])).toContain('skipped: chat-us outside eu');
        expect(a.text).toContain('from-eu');
        skipped++;
      } else {
        const a = await chat(edge, 'chat', `eu data ${i}`, eu);
        expect(a.status, a.text).toBe(200);
        served++;
      }
    };
    for (let i = 0; i < tries; i += 8)
      await Promise.all(Array.from({ length: Math.min(8, tries - i) }, (_, k) => one(i + k)));
    expect(refused + skipped + served).toBe(tries);
    expect(usUp.calls.length - usBefore).toBe(0);
    // Control: untagged data reaches the US model through the same path, and the journey
    // then takes the cheaper US candidate.
    const control = await chat(edges[0]!, 'chat-us', 'untagged');
    expect(control.status, control.text).toBe(200);
    expect(control.text).toContain('from-us');
    expect(usUp.calls.length - usBefore).toBe(1);
  }, 120_000);

  it('enforces the tenant quota at the parent across both edges (3x offered, admitted <= limit + 1%)', async () => {
    let admitted = 0;
    let limited = 0;
    const offered = 3 * QUOTA;
    const one = async (i: number): Promise<void> => {
      const a = await chat(edges[i % 2]!, 'chat', `quota ${i}`, {}, betaKey);
      if (a.status === 200) admitted++;
      else {
        expect(a.status, a.text).toBe(429);
        expect(errorCode(a)).toMatch(/SY_ERR_(RATE_LIMITED|QUOTA_EXCEEDED)/);
        limited++;
      }
    };
    for (let i = 0; i < offered; i += 10)
      await Promise.all(Array.from({ length: 10 }, (_, k) => one(i + k)));
    expect(admitted + limited).toBe(offered);
    expect(admitted).toBeLessThanOrEqual(QUOTA * 1.01);
    expect(admitted).toBeGreaterThanOrEqual(QUOTA - 1);
  }, 60_000);

  it('degrades the edges without errors when the regional node is killed: marked, counted, on time', async () => {
    // An answer the edge's stale cache keeps, taken while the parent is up.
    const fresh = await chat(edges[0]!, 'chat', 'remember me');
    expect(fresh.status, fresh.text).toBe(200);
    expect(fresh.headers['x-switchyard-degraded']).toBeUndefined();
    regional.signal('SIGKILL');
    await regional.exited();
    const deadlineMs = 1_500;
    const results: { a: Answer; ms: number }[] = [];
    for (let i = 0; i < 40; i++) {
      const t0 = performance.now();
      // A new input each time: the stale cache has no answer, the local model answers.
      const a = await pairInfer(
        edges[i % 2]!,
        { 'x-switchyard-timeout-ms': String(deadlineMs) },
        10 + i,
      );
      results.push({ a, ms: performance.now() - t0 });
    }
    for (const [i, { a, ms }] of results.entries()) {
      expect(a.status, a.text).toBe(200);
      expect(a.headers['x-switchyard-degraded']).toBe('parent-unavailable');
      expect(String(a.headers['x-switchyard-route'])).toMatch(
        /pair-local#1:ok~parent-unavailable$/,
      );
      expect(outputsOf(a)).toEqual([13 + i, 1, 1, 1]); // the edge's own model: a + 3b
      expect(ms).toBeLessThan(deadlineMs);
    }
    const t0 = performance.now();
    const stale = await chat(edges[0]!, 'chat', 'remember me', {
      'x-switchyard-timeout-ms': String(deadlineMs),
    });
    expect(performance.now() - t0).toBeLessThan(deadlineMs);
    expect(stale.status, stale.text).toBe(200);
    expect(stale.text).toContain('from-eu');
    expect(stale.headers['x-switchyard-degraded']).toBe('stale-cache');
    expect(String(stale.headers['x-switchyard-route'])).toMatch(/chat:stale#1:ok~stale-cache$/);
    const text = await (await fetch(`${edges[0]!.url}/metrics`)).text();
    expect(text).toMatch(
      /switchyard_degraded_answers_total\{model="pair",reason="local_fallback"\} [1-9]/,
    );
    expect(text).toMatch(
      /switchyard_degraded_answers_total\{model="chat",reason="stale_cache"\} 1/,
    );
  }, 60_000);
});

function outputsOf(a: Answer): number[] {
  const outputs = a.body['outputs'] as { name: string; data: number[] }[];
  return outputs.find((o) => o.name === 'mixed')!.data;
}
