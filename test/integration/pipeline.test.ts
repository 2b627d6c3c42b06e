import { existsSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { events, subscribe } from '../../src/core/events.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { call, errorCode, metric, type Answer } from '../support/http-call.js';
import {
  chatCompletion,
  delayed,
  json,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * The one path of every model call (#14): the model-input rule, mode switches and release
 * resolution act on direct calls and on the model calls journey stages make alike.
 */

const lineage = { source: 'test', transformation: 'identity' };
const admin = generateKey('sk');
const SECRET_RISK = 0.987654;

const FEATURES = {
  definitions: {
    'user.risk': {
      entity: 'user',
      type: 'float',
      label: 'restricted',
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
    'user.rides_7d': {
      entity: 'user',
      type: 'int',
      label: 'consented',
      purpose: 'behavioral_inference',
      lineage,
    },
    'user.tier': { entity: 'user', type: 'string', label: 'public', lineage },
  },
};

const PRIVACY = {
  node: { id: 'edge-eu-1', jurisdiction: 'eu' },
  jurisdictions: { eu: { nodes: ['edge-eu-1'] }, us: { nodes: ['edge-us-1'] } },
  labels: {
    sensitive: {
      ingestion: 'consent',
      retrieval: 'consent',
      model_input: 'consent',
      logging: 'deny',
      model_tiers: ['edge', 'regional'],
    },
  },
};

/** A journey that reads the user's features and puts them all into one model's prompt. */
function profileJourney(model: string): Record<string, unknown> {
  return {
    class: 'interactive',
    stages: [
      {
        id: 'profile',
        features: {
          id: 'attr.user',
          names: ['user.risk', 'user.city', 'user.rides_7d', 'user.tier'],
        },
      },
      {
        id: 'brief',
        transform: {
          set: {
            line: {
              template:
                'risk={features.user.risk} city={features.user.city} rides={features.user.rides_7d} tier={features.user.tier}',
            },
          },
        },
      },
      { id: 'answer', infer: { model, prompt: 'brief.line', max_tokens: 20 } },
      { respond: { body: { text: 'answer.text' } } },
    ],
  };
}

describe('the model-input rule on every model call (issue 14)', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  const ask = (
    path: string,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<Answer> => call(gw.url, 'POST', path, gw.key, body, headers);

  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion('noted')));
    gw = await startTestGateway({
      config: {
        features: FEATURES,
        privacy: PRIVACY,
        models: {
          central: openaiModel(up.url, { tier: 'central' }),
          edge: openaiModel(up.url, { tier: 'edge' }),
        },
        journeys: { 'to-central': profileJourney('central'), 'to-edge': profileJourney('edge') },
        batches: { poll_ms: 20 },
      },
    });
    await call(gw.url, 'PUT', '/v1/consent/u1', gw.key, {
      purposes: { behavioral_inference: true, location: true },
    });
    const pushed = await call(gw.url, 'POST', '/v1/features', gw.key, {
      writes: [
        { entity_id: 'u1', feature: 'user.risk', value: SECRET_RISK },
        { entity_id: 'u1', feature: 'user.city', value: 'Lisbon' },
        { entity_id: 'u1', feature: 'user.rides_7d', value: 17 },
        { entity_id: 'u1', feature: 'user.tier', value: 'gold' },
      ],
    });
    expect(pushed.status).toBe(200);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('issue 14: strips a restricted feature a journey templated into a central model’s prompt', async () => {
    up.calls.length = 0;
    const a = await ask('/v1/journeys/to-central', { input: 'hi', attributes: { user: 'u1' } });
    expect(a.status).toBe(200);
    expect(up.calls).toHaveLength(1);
    const sent = up.calls[0]!.body;
    // The restricted risk score never leaves; the sensitive city may not reach a central tier.
    expect(sent).not.toContain(String(SECRET_RISK));
    expect(sent).not.toContain('Lisbon');
    // Consented (consent granted) and public data still reach the model.
    expect(sent).toContain('rides=17');
    expect(sent).toContain('tier=gold');
    const route = JSON.stringify(a.body['route']);
    expect(route).toContain('withheld by policy');
    expect(
      await metric(
        gw.gateway,
        /^switchyard_policy_exceptions_total\{action="strip",code="SY_ERR_POLICY_DENIED",label="restricted",origin="journey"\}/,
      ),
    ).toBeGreaterThanOrEqual(1);
  });

  it('lets an edge model see what its tier allows, and nothing restricted', async () => {
    up.calls.length = 0;
    const a = await ask('/v1/journeys/to-edge', { input: 'hi', attributes: { user: 'u1' } });
    expect(a.status).toBe(200);
    const sent = up.calls[0]!.body;
    expect(sent).toContain('city=Lisbon');
    expect(sent).not.toContain(String(SECRET_RISK));
  });

  it('refuses a direct call that declares restricted data, and the upstream never sees it', async () => {
    up.calls.length = 0;
    const body = { model: 'edge', messages: [{ role: 'user', content: `risk ${SECRET_RISK}` }] };
    const a = await ask('/v1/chat/completions', body, {
      'x-switchyard-data-label': 'restricted',
      'x-switchyard-user': 'u1',
    });
    expect(a.status).toBe(403);
    expect(errorCode(a)).toBe('SY_ERR_POLICY_DENIED');
    expect(up.calls).toHaveLength(0);
    expect(
      await metric(
        gw.gateway,
        /^switchyard_policy_exceptions_total\{action="refuse",.*origin="direct"\}/,
      ),
    ).toBeGreaterThanOrEqual(1);
  });

  it('asks for consent on a direct call with consented data, and for residency on tagged data', async () => {
    up.calls.length = 0;
    const body = { model: 'edge', messages: [{ role: 'user', content: 'hello' }] };
    const noConsent = await ask('/v1/chat/completions', body, {
      'x-switchyard-data-label': 'consented',
      'x-switchyard-data-purpose': 'behavioral_inference',
      'x-switchyard-user': 'u-without-consent',
    });
    expect(noConsent.status).toBe(403);
    expect(errorCode(noConsent)).toBe('SY_ERR_CONSENT_REQUIRED');
    const us = await ask('/v1/chat/completions', body, { 'x-switchyard-jurisdiction': 'us' });
    expect(us.status).toBe(403);
    expect(errorCode(us)).toBe('SY_ERR_RESIDENCY');
    expect(up.calls).toHaveLength(0);
    const granted = await ask('/v1/chat/completions', body, {
      'x-switchyard-data-label': 'consented',
      'x-switchyard-data-purpose': 'behavioral_inference',
      'x-switchyard-user': 'u1',
    });
    expect(granted.status).toBe(200);
    expect(up.calls).toHaveLength(1);
  });

  it('runs every batch line under the data its batch declared: refused, consent-checked per line user, kept in its jurisdiction', async () => {
    const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    /** Runs a chat batch made with `headers`; each line's status and error code, by custom_id. */
    const run = async (headers: Record<string, string>, users: readonly string[]) => {
      const jsonl = users
        .map((user, i) =>
          JSON.stringify({
            custom_id: `${i}-${user}`,
            method: 'POST',
            url: '/v1/chat/completions',
            body: {
              model: 'edge',
              messages: [{ role: 'user', content: `risk ${SECRET_RISK}` }],
              user,
            },
          }),
        )
        .join('\n');
      const file = await client.files.create({
        file: await toFile(Buffer.from(jsonl), 'in.jsonl'),
        purpose: 'batch',
      });
      const b = await client.batches.create(
        { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' },
        { headers },
      );
      let done = b;
      for (let i = 0; i < 300 && done.status !== 'completed'; i++) {
        await new Promise((r) => setTimeout(r, 20));
        done = await client.batches.retrieve(b.id);
      }
      expect(done.status).toBe('completed');
      const lines: {
        custom_id: string;
        response: { status_code: number; body: { error?: { switchyard_code?: string } } };
      }[] = [];
      for (const id of [done.output_file_id, done.error_file_id])
        if (typeof id === 'string')
          for (const l of (await (await client.files.content(id)).text()).split('\n'))
            if (l !== '') lines.push(JSON.parse(l) as (typeof lines)[number]);
      return Object.fromEntries(
        lines.map((l) => [
          l.custom_id,
          [l.response.status_code, l.response.body.error?.switchyard_code ?? null],
        ]),
      );
    };
    up.calls.length = 0;
    // Restricted data may reach no model: every line refused, the upstream never called.
    expect(await run({ 'x-switchyard-data-label': 'restricted' }, ['u1', 'u2'])).toEqual({
      '0-u1': [403, 'SY_ERR_POLICY_DENIED'],
      '1-u2': [403, 'SY_ERR_POLICY_DENIED'],
    });
    // Consented data: each line's user is whose consent is asked (u1 gave it, u2 did not).
    expect(
      await run(
        {
          'x-switchyard-data-label': 'consented',
          'x-switchyard-data-purpose': 'behavioral_inference',
        },
        ['u1', 'u2'],
      ),
    ).toEqual({ '0-u1': [200, null], '1-u2': [403, 'SY_ERR_CONSENT_REQUIRED'] });
    // Data resident in the US never reaches this EU node's models.
    expect(await run({ 'x-switchyard-jurisdiction': 'us' }, ['u1'])).toEqual({
      '0-u1': [403, 'SY_ERR_RESIDENCY'],
    });
    expect(up.calls).toHaveLength(1); // u1's consented line alone
    // A bad declaration is refused when the batch is made, naming the header.
    const bad = await call(
      gw.url,
      'POST',
      '/v1/batches',
      gw.key,
      {},
      {
        'x-switchyard-data-label': 'secret',
      },
    );
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('"param":"x-switchyard-data-label"');
  });

  it('answers a bad data label header with a 400 naming it', async () => {
    const a = await ask(
      '/v1/chat/completions',
      { model: 'edge', messages: [{ role: 'user', content: 'x' }] },
      { 'x-switchyard-data-label': 'secret' },
    );
    expect(a.status).toBe(400);
    expect(a.body['error']).toMatchObject({ param: 'x-switchyard-data-label' });
  });
});

describe('mode switches act on journeys and direct calls alike (issue 14)', () => {
  let big: TestUpstream;
  let small: TestUpstream;
  let gw: TestGateway | undefined;
  const surge = (switches: Record<string, unknown>) => ({
    surge: { enter: {}, exit: {}, switches },
    emergency: { enter: {}, exit: {} },
  });
  const start = async (modes: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    gw = await startTestGateway({
      config: {
        tenants: {
          acme: {
            keys: [{ id: 'k1', hash: hashKey(admin, TEST_SECRET), admin: true }],
            models: ['*'],
          },
        },
        models: {
          large: openaiModel(big.url, { tier: 'central' }),
          small: openaiModel(small.url, { tier: 'edge' }),
        },
        journeys: {
          ask: {
            class: 'interactive',
            stages: [
              { id: 'answer', infer: { model: 'large', prompt: 'input.text' } },
              { respond: { body: { text: 'answer.text' } } },
            ],
          },
          cached: {
            class: 'interactive',
            stages: [
              { id: 'cache', cache: { ttl_ms: 300 } },
              { id: 'answer', infer: { model: 'large', prompt: 'input.text' } },
              { respond: { body: { text: 'answer.text' } } },
            ],
          },
        },
        modes,
        ...extra,
      },
    });
    return gw;
  };
  const post = (path: string, body: unknown) => call(gw!.url, 'POST', path, admin, body);
  const chat = { model: 'large', messages: [{ role: 'user', content: 'hello' }] };

  beforeAll(async () => {
    big = await startUpstream(json(200, chatCompletion('from-large')));
    small = await startUpstream(json(200, chatCompletion('from-small')));
  });
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    big.calls.length = 0;
    small.calls.length = 0;
  });
  afterAll(async () => {
    await big.close();
    await small.close();
  });

  it('model_substitutes sends a direct call and a journey stage’s call to the substitute', async () => {
    const g = await start(surge({ model_substitutes: { large: 'small' } }));
    expect((await post('/v1/chat/completions', chat)).text).toContain('from-large');
    g.gateway.admission.modes.force('surge', 'test', 'test');
    const direct = await post('/v1/chat/completions', chat);
    expect(direct.text).toContain('from-small');
    expect(direct.headers['x-switchyard-release']).toBe('mode:small');
    const journey = await post('/v1/journeys/ask', { input: 'hello' });
    expect(journey.body['output']).toEqual({ text: 'from-small' });
    expect(JSON.stringify(journey.body['route'])).toContain('mode:small');
    expect(big.calls).toHaveLength(1);
    expect(small.calls).toHaveLength(2);
  });

  it('journeys_disabled answers a journey 503 on its route and as a chat model, and keeps direct calls', async () => {
    const g = await start(surge({ journeys_disabled: ['ask'] }));
    g.gateway.admission.modes.force('surge', 'test', 'test');
    const a = await post('/v1/journeys/ask', { input: 'hello' });
    expect(a.status).toBe(503);
    expect(errorCode(a)).toBe('SY_ERR_SHED');
    const asChat = await post('/v1/chat/completions', { ...chat, model: 'journey:ask' });
    expect(asChat.status).toBe(503);
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
    g.gateway.admission.modes.force('normal', 'test', 'test');
    expect((await post('/v1/journeys/ask', { input: 'hello' })).status).toBe(200);
  });

  it('cache_ttl_scale keeps a journey’s cached answers longer in the mode that says so', async () => {
    const g = await start(surge({ cache_ttl_scale: 20 }));
    // Normal mode: a 300 ms TTL has passed after 600 ms, so the model is asked again.
    await post('/v1/journeys/cached', { input: 'first question' });
    await new Promise((r) => setTimeout(r, 600));
    const again = await post('/v1/journeys/cached', { input: 'first question' });
    expect((again.body['route'] as { cache: string }).cache).toBe('miss');
    expect(big.calls).toHaveLength(2);
    // In the mode: written with 20 × 300 ms, still fresh 600 ms later.
    g.gateway.admission.modes.force('surge', 'test', 'test');
    await post('/v1/journeys/cached', { input: 'second question' });
    await new Promise((r) => setTimeout(r, 600));
    const hit = await post('/v1/journeys/cached', { input: 'second question' });
    expect((hit.body['route'] as { cache: string }).cache).toBe('hit');
    expect(big.calls).toHaveLength(3);
  });

  it('gates a model’s calls from journeys and direct calls alike, by the model’s own concurrency', async () => {
    big.behave(delayed(200, json(200, chatCompletion('slow-large'))));
    try {
      const g = await start(surge({}), {
        models: {
          large: openaiModel(big.url, {
            tier: 'central',
            concurrency: { algorithm: 'fixed', initial_limit: 1, max_limit: 1, max_queue: 1 },
          }),
          small: openaiModel(small.url, { tier: 'edge' }),
        },
      });
      const answers = await Promise.all([
        post('/v1/chat/completions', chat),
        post('/v1/journeys/ask', { input: 'one' }),
        post('/v1/chat/completions', chat),
        post('/v1/journeys/ask', { input: 'two' }),
      ]);
      const statuses = answers.map((a) => a.status).sort();
      // One runs, one waits in the model's queue, the rest are shed at once.
      expect(statuses.filter((s) => s === 200)).toHaveLength(2);
      expect(statuses.filter((s) => s === 503)).toHaveLength(2);
      expect(g.gateway.admission.gateStats()['large']).toMatchObject({ limit: 1 });
    } finally {
      big.behave(json(200, chatCompletion('from-large')));
    }
  });
});

const INTENT_STORE = join(import.meta.dirname, '../../examples/superapp/models/intent');
const intentBuilt = existsSync(join(INTENT_STORE, '1', 'model.onnx'));

describe.skipIf(!intentBuilt)('batch_delay_scale on in-process models (issue 14)', () => {
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });

  it('makes a lone request wait longer for company, on a direct call and in a journey', async () => {
    gw = await startTestGateway({
      config: {
        tenants: {
          acme: { keys: [{ id: 'k1', hash: hashKey(admin, TEST_SECRET) }], models: ['*'] },
        },
        models: {
          intent: {
            backend: 'onnx',
            store: INTENT_STORE,
            batch: { max: 32, delay_us: 20_000 },
          },
        },
        journeys: {
          label: {
            class: 'interactive',
            stages: [
              { id: 'intent', classify: { model: 'intent', text: 'input.text' } },
              { respond: { body: { label: 'intent.label' } } },
            ],
          },
        },
        modes: {
          surge: { enter: {}, exit: {}, switches: { batch_delay_scale: 10 } },
          emergency: { enter: {}, exit: {} },
        },
      },
    });
    const delays: number[] = [];
    const stop = subscribe(events.modelBatch, (e) => {
      if (e.model === 'intent') delays.push(...e.queueDelaysMs);
    });
    const input = {
      inputs: [
        { name: 'features', datatype: 'FP32', shape: [1, 512], data: new Array(512).fill(0) },
      ],
    };
    const direct = () => call(gw!.url, 'POST', '/v2/models/intent/infer', admin, input);
    const journey = () =>
      call(gw!.url, 'POST', '/v1/journeys/label', admin, { input: 'where is my order' });
    try {
      // Normal mode: the oldest request waits about delay_us (20 ms) for company.
      expect((await direct()).status).toBe(200);
      expect((await journey()).status).toBe(200);
      const normal = delays.splice(0);
      expect(normal).toHaveLength(2);
      for (const ms of normal) expect(ms).toBeLessThan(120);
      // The mode scales the delay tenfold: about 200 ms, for both paths.
      gw.gateway.admission.modes.force('surge', 'test', 'test');
      expect((await direct()).status).toBe(200);
      expect((await journey()).status).toBe(200);
      const scaled = delays.splice(0);
      expect(scaled).toHaveLength(2);
      for (const ms of scaled) expect(ms).toBeGreaterThanOrEqual(150);
    } finally {
      stop();
    }
  });
});

describe('the gateway’s own CPU overload (admission.overload.loop_delay_ms)', () => {
  let gw: TestGateway | undefined;
  let up: TestUpstream;
  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion('ok')));
  });
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });
  afterAll(async () => {
    await up.close();
  });

  /** Keeps the event loop late tick after tick (a CPU-bound gateway) while `fn` runs. */
  async function whileLoopIsLate<T>(fn: () => Promise<T>): Promise<T> {
    const hog = setInterval(() => {
      const until = performance.now() + 60;
      while (performance.now() < until);
    }, 5);
    try {
      // Lateness counts once it has lasted 8 probe ticks (over a second at this lateness).
      await new Promise((r) => setTimeout(r, 1_500));
      return await fn();
    } finally {
      clearInterval(hog);
    }
  }

  const start = async (loopDelayMs: number) => {
    gw = await startTestGateway({
      config: {
        models: { chat: openaiModel(up.url) },
        admission: { overload: { loop_delay_ms: loopDelayMs } },
      },
    });
    return gw;
  };
  const background = () =>
    call(
      gw!.url,
      'POST',
      '/v1/chat/completions',
      gw!.key,
      { model: 'chat', messages: [{ role: 'user', content: 'x' }] },
      { 'x-switchyard-class': 'background' },
    );

  it('sheds background work with 503 while the event loop stays late', async () => {
    await start(20);
    const a = await whileLoopIsLate(background);
    expect(a.status).toBe(503);
    expect(errorCode(a)).toBe('SY_ERR_SHED');
    expect(JSON.stringify(a.body)).toContain('event loop');
    // The loop is back on time: background work is admitted again.
    await new Promise((r) => setTimeout(r, 200));
    expect((await background()).status).toBe(200);
  });

  it('sheds nothing for it when turned off', async () => {
    await start(0);
    expect((await whileLoopIsLate(background)).status).toBe(200);
  });
});
