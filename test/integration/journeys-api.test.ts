import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { featurize } from '../../src/backends/onnx/text-features.js';
import { ConfigError } from '../../src/config/load.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { startGateway } from '../../src/main.js';
import { OnnxGraphBuilder } from '../../src/modelkit/onnx-builder.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  startTestGateway,
  openaiModel,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import {
  chatCompletion,
  hang,
  json,
  refusedPort,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

const LABELS = ['order_status', 'refund_request', 'chitchat'];
const PROTOTYPES = ['where is my order track parcel', 'refund my money back', 'hello how are you'];

/** A real ONNX text classifier: each label's weights are its prototype's features, scaled. */
function writeIntentModel(store: string): void {
  const dims = 512;
  const w = new Float32Array(dims * LABELS.length);
  const feats = featurize(PROTOTYPES, { featurizer: 'hashing-v1', dims });
  for (let l = 0; l < LABELS.length; l++)
    for (let d = 0; d < dims; d++) w[d * LABELS.length + l] = feats[l * dims + d]! * 12;
  const g = new OnnxGraphBuilder('intent');
  const x = g.input('x', 'float32', [-1, dims]);
  const wi = g.initializer('w', 'float32', [dims, LABELS.length], w);
  const logits = g.matMul(x, wi);
  g.output('probs', 'float32', [-1, LABELS.length], g.softmax(logits));
  mkdirSync(join(store, '1'), { recursive: true });
  writeFileSync(join(store, '1', 'model.onnx'), g.toBytes());
  writeFileSync(
    join(store, '1', 'model.json'),
    JSON.stringify({
      task: 'classifier',
      text: { featurizer: 'hashing-v1', dims, input: 'x' },
      output: 'probs',
      labels: LABELS,
    }),
  );
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

async function post(
  gw: TestGateway,
  path: string,
  body: unknown,
  key = gw.key,
  extra: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...extra },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: JSON.parse(text) as Record<string, unknown>,
  };
}

type Stage = {
  stage: string;
  code: string;
  kind: string;
  tier?: string;
  model?: string;
  cost: number;
  children?: Stage[];
};
const stagesOf = (a: Answer): Stage[] => (a.body['route'] as { stages: Stage[] }).stages;
const codesOf = (a: Answer): string[] => stagesOf(a).map((s) => `${s.stage}=${s.code}`);

function requestLog(gw: TestGateway, path: string): Record<string, unknown> {
  return gw.logs
    .filter((l) => l['msg']?.toString().startsWith('request') && l['route'] === path)
    .at(-1)!;
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

const TRIAGE = {
  class: 'interactive',
  stages: [
    { id: 'cache', cache: { ttl_ms: 60_000 } },
    { id: 'intent', classify: { model: 'intent', text: 'input.text' } },
    {
      id: 'route',
      branch: {
        cases: [{ when: "confidence >= 0.8 and label == 'order_status'", to: 'local' }],
        else: { to: 'answer', mark: 'escalation' },
      },
    },
    {
      id: 'local',
      respond: { body: { answer: { template: 'Track it in the app ({intent.label})' } } },
    },
    {
      id: 'answer',
      fallback: {
        try: [
          { infer: { model: 'down', prompt: 'input.text' } },
          { infer: { model: 'central', prompt: 'input.text' } },
        ],
      },
    },
    { id: 'out', respond: { body: { answer: 'answer.text' } } },
  ],
};

describe('journeys through the gateway', () => {
  let central: TestUpstream;
  let slow: TestUpstream;
  let gw: TestGateway;
  let otherKey: string;
  let down: number;

  beforeAll(async () => {
    central = await startUpstream(
      json(
        200,
        chatCompletion('central says hi', { prompt_tokens: 1000, completion_tokens: 1000 }),
      ),
    );
    slow = await startUpstream(hang);
    down = await refusedPort();
    otherKey = generateKey('sk');
    const key = generateKey('sk');
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-journeys-'));
    writeFileSync(join(dir, 'secret.txt'), TEST_SECRET);
    writeIntentModel(join(dir, 'intent'));
    const config = {
      server: { host: '127.0.0.1', port: 0 },
      auth: { secret: { file: 'secret.txt' } },
      tenants: {
        acme: { keys: [{ id: 'k1', hash: hashKey(key, TEST_SECRET) }], models: ['*'] },
        globex: {
          keys: [{ id: 'k2', hash: hashKey(otherKey, TEST_SECRET) }],
          models: ['journey:triage'],
        },
      },
      models: {
        intent: { backend: 'onnx', store: 'intent', tier: 'edge', batch: { max: 1, delay_us: 0 } },
        central: openaiModel(central.url, {
          tier: 'central',
          cost: { in_per_1k: 0.5, out_per_1k: 1.5 },
        }),
        slow: openaiModel(slow.url, { tier: 'central', retry: { max_attempts: 1 } }),
        down: {
          backend: 'openai',
          url: `http://127.0.0.1:${down}/v1`,
          tier: 'central',
          retry: { max_attempts: 1 },
        },
      },
      journeys: {
        triage: TRIAGE,
        race: {
          stages: [
            {
              id: 'race',
              parallel: {
                branches: [
                  { id: 'slow-one', infer: { model: 'slow', prompt: 'input.text' } },
                  { id: 'fast-one', infer: { model: 'central', prompt: 'input.text' } },
                ],
              },
            },
          ],
        },
        timed: {
          deadline_ms: 150,
          stages: [
            { id: 'wait', infer: { model: 'slow', prompt: 'input.text' } },
            { id: 'after', respond: { body: { const: 'never' } } },
          ],
        },
      },
    };
    const configPath = join(dir, 'switchyard.yaml');
    writeFileSync(configPath, stringify(config));
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const line of chunk.toString('utf8').split('\n'))
          if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    const gateway = await startGateway({
      configPath,
      watch: false,
      logger: createLogger('debug', sink),
    });
    gw = {
      gateway,
      url: gateway.url,
      key,
      logs,
      logText: () => '',
      configPath,
      dir,
      writeConfig: () => undefined,
      close: async () => {
        await gateway.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
  afterAll(async () => {
    await gw.close();
    await central.close();
    await slow.close();
  });
  afterEach(() => {
    central.calls.length = 0;
    slow.calls.length = 0;
  });

  it('answers at the edge when the in-process classifier is confident; header, body and log carry the same route', async () => {
    const a = await post(gw, '/v1/journeys/triage', {
      input: 'where is my order, track my parcel',
    });
    expect(a.status).toBe(200);
    expect(a.body['output']).toEqual({ answer: 'Track it in the app (order_status)' });
    expect(codesOf(a)).toEqual(['cache=miss', 'intent=ok', 'route=to:local', 'local=respond']);
    expect(stagesOf(a)[1]).toMatchObject({ tier: 'edge', model: 'intent', version: '1' });
    expect(a.headers['x-switchyard-route']).toBe(
      'cache=miss>intent=ok@edge.intent>route=to:local>local=respond',
    );
    expect(central.calls).toHaveLength(0);
    const log = requestLog(gw, '/v1/journeys/:name');
    expect(log['path']).toBe(a.headers['x-switchyard-route']);
    expect(log['journey']).toBe('triage');
    expect(log['journey_route']).toEqual(a.body['route']);
  });

  it('escalates to the central tier on low confidence, falling back past a tier that is down, with cost in the route', async () => {
    const a = await post(gw, '/v1/journeys/triage', { input: 'zzz qqq' });
    expect(a.status).toBe(200);
    expect(a.body['output']).toEqual({ answer: 'central says hi' });
    const answer = stagesOf(a).find((s) => s.stage === 'answer')!;
    expect(answer.children!.map((c) => `${c.stage}=${c.code}`)).toEqual([
      'answer-infer0=UPSTREAM_UNREACHABLE',
      'answer-infer1=ok',
    ]);
    // 1000 tokens in at 0.5/1k and 1000 out at 1.5/1k.
    expect(answer.cost).toBeCloseTo(2, 6);
    expect((a.body['route'] as { answeredBy: string }).answeredBy).toBe('central');
    expect((a.body['route'] as { decisions: string[] }).decisions).toEqual(
      expect.arrayContaining(['escalation', 'fallback']),
    );
    const log = gw.logs.filter((l) => l['msg'] === 'request degraded').at(-1)!;
    expect(log['level']).toBe(40);
    expect(log['degraded']).toEqual(['fallback']);
    expect(a.headers['x-switchyard-degraded']).toBe('fallback');
    const metrics = await gw.gateway.metrics.render();
    expect(metrics).toMatch(
      /switchyard_journey_decisions_total\{journey="triage",decision="fallback"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /switchyard_journey_requests_total\{journey="triage",outcome="respond",answered_by="central",cache="miss"\}/,
    );
  });

  it('serves a repeated request from the cache for the same tenant only', async () => {
    const text = 'where is my order please, track';
    expect(
      (await post(gw, '/v1/journeys/triage', { input: text })).headers['x-switchyard-route'],
    ).toMatch(/^cache=miss/);
    const hit = await post(gw, '/v1/journeys/triage', { input: text });
    expect(codesOf(hit)).toEqual(['cache=hit']);
    const other = await post(gw, '/v1/journeys/triage', { input: text }, otherKey);
    expect(codesOf(other)[0]).toBe('cache=miss');
  });

  it('answers model "journey:<name>" on the chat completions API', async () => {
    const a = await post(gw, '/v1/chat/completions', {
      model: 'journey:triage',
      messages: [{ role: 'user', content: 'where is my order, track my parcel now' }],
    });
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({
      object: 'chat.completion',
      model: 'journey:triage',
      choices: [{ message: { role: 'assistant', content: 'Track it in the app (order_status)' } }],
    });
    expect(a.headers['x-switchyard-route']).toContain('route=to:local');
    expect(codesOf(a)).toContain('intent=ok');
  });

  it('cancels the losing parallel branch at the upstream that was serving it', async () => {
    const a = await post(gw, '/v1/journeys/race', { input: 'hi' });
    expect(a.status).toBe(200);
    expect(stagesOf(a)[0]!.children!.map((c) => `${c.stage}=${c.code}`)).toEqual([
      'slow-one=cancelled',
      'fast-one=ok',
    ]);
    await until(() => slow.calls[0]?.aborted === true);
    expect(slow.calls[0]!.aborted).toBe(true);
  });

  it('stops at the journey deadline: 504, the route shows what ran, and no later stage started', async () => {
    const a = await post(gw, '/v1/journeys/timed', { input: 'hi' });
    expect(a.status).toBe(504);
    expect((a.body['error'] as { code: string }).code).toBe('SY_ERR_DEADLINE_EXCEEDED');
    expect(codesOf(a)).toEqual(['wait=DEADLINE_EXCEEDED']);
    expect(a.headers['x-switchyard-route']).toBe('wait=DEADLINE_EXCEEDED@central.slow');
    await until(() => slow.calls[0]?.aborted === true);
    expect(slow.calls[0]!.aborted).toBe(true);
  });

  it('refuses unknown journeys, journeys the tenant may not use, and bad input with clear errors', async () => {
    const nf = await post(gw, '/v1/journeys/nope', { input: 'x' });
    expect(nf.status).toBe(404);
    expect((nf.body['error'] as { code: string }).code).toBe('SY_ERR_JOURNEY_NOT_FOUND');
    const forbidden = await post(gw, '/v1/journeys/race', { input: 'x' }, otherKey);
    expect(forbidden.status).toBe(403);
    expect((forbidden.body['error'] as { code: string }).code).toBe('SY_ERR_JOURNEY_FORBIDDEN');
    const bad = await post(gw, '/v1/journeys/triage', { input: 42 });
    expect(bad.status).toBe(400);
    expect((bad.body['error'] as { param: string }).param).toBe('input');
  });
});

describe('journey config errors', () => {
  it('refuses to start with a bad graph and names every problem by its path', async () => {
    const upstream = await startUpstream(json(200, chatCompletion('x')));
    try {
      const start = startTestGateway({
        config: {
          models: { central: openaiModel(upstream.url) },
          journeys: {
            broken: {
              stages: [
                { id: 'a', infer: { model: 'central', prompt: 'input.text' }, on_fail: 'ghost' },
                { id: 'b', teleport: {} },
              ],
            },
          },
        },
      });
      await expect(start).rejects.toBeInstanceOf(ConfigError);
      await expect(start).rejects.toThrow(
        /journeys\.broken\.stages\[1\]\.teleport: unknown stage kind "teleport"/,
      );
    } finally {
      await upstream.close();
    }
  });

  it('keeps serving the last good journeys when a reload brings a broken graph', async () => {
    const upstream = await startUpstream(json(200, chatCompletion('ok')));
    const good = {
      models: { central: openaiModel(upstream.url) },
      journeys: { j: { stages: [{ infer: { model: 'central', prompt: 'input.text' } }] } },
    };
    const gw2 = await startTestGateway({ config: good });
    try {
      gw2.writeConfig({
        ...good,
        journeys: { j: { stages: [{ infer: { model: 'missing', prompt: 'input.text' } }] } },
      });
      const outcome = await gw2.gateway.reload('api');
      expect(outcome.result).toBe('rejected');
      expect(outcome.result === 'rejected' && outcome.reason).toContain(
        'journeys.j.stages[0].infer.model: unknown model "missing"',
      );
      const a = await post(gw2, '/v1/journeys/j', { input: 'hi' });
      expect(a.status).toBe(200);
    } finally {
      await gw2.close();
      await upstream.close();
    }
  });
});
