import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import {
  chatCompletion,
  json,
  sseChunk,
  sseUsage,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  text: string;
}

const keys = {
  user: generateKey('sk'),
  admin: generateKey('sk'),
  low: generateKey('sk'),
  metered: generateKey('sk'),
};
const hash = (k: string): string => hashKey(k, TEST_SECRET);

/** Tenants: acme (any class, with an admin key), low (background at best), metered (quotas). */
function tenants(): Record<string, unknown> {
  return {
    acme: {
      keys: [
        { id: 'user', hash: hash(keys.user) },
        { id: 'ops', hash: hash(keys.admin), admin: true },
      ],
    },
    low: { keys: [{ id: 'k', hash: hash(keys.low) }], max_class: 'background' },
    metered: {
      keys: [{ id: 'k', hash: hash(keys.metered), quotas: { window_s: 60, requests: 3 } }],
      // A day-long rate: it drains by under 0.2 tokens a second, so readings are exact once rounded.
      quotas: { window_s: 86_400, tokens: 10_000, spend_per_day: 5 },
    },
  };
}

async function call(
  gw: TestGateway,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  key: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(`${gw.url}${path}`, {
    method,
    headers: {
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      'content-type': 'application/json',
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hello there' }] };
const chat = (gw: TestGateway, key: string, headers: Record<string, string> = {}, body = CHAT) =>
  call(gw, 'POST', '/v1/chat/completions', key, body, headers);
const code = (a: Answer): unknown =>
  (a.body['error'] as Record<string, unknown> | undefined)?.['code'];

async function metric(gw: TestGateway, line: RegExp): Promise<number | undefined> {
  const text = await gw.gateway.metrics.render();
  const hit = text.split('\n').find((l) => line.test(l));
  return hit === undefined ? undefined : Number(hit.split(' ').at(-1));
}

describe('admission control through the gateway', () => {
  let up: TestUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    up = await startUpstream(
      json(200, chatCompletion('ok', { prompt_tokens: 7, completion_tokens: 3 })),
    );
  });
  afterAll(async () => {
    await up.close();
  });
  afterEach(async () => {
    await gw.close();
    up.behave(json(200, chatCompletion('ok', { prompt_tokens: 7, completion_tokens: 3 })));
  });

  const start = async (extra: Record<string, unknown> = {}): Promise<TestGateway> => {
    gw = await startTestGateway({
      config: {
        tenants: tenants(),
        models: { chat: openaiModel(up.url, { cost: { in_per_1k: 1, out_per_1k: 2 } }) },
        ...extra,
      },
    });
    return gw;
  };

  it('serves a tenant in a class it may use, named by x-switchyard-class', async () => {
    await start();
    const a = await chat(gw, keys.low, { 'x-switchyard-class': 'batch' });
    expect(a.status).toBe(200);
    expect(await metric(gw, /^switchyard_requests_total\{.*class="batch"/)).toBe(1);
  });

  it('refuses with 403 a tenant that asks for a class above its max_class, and never calls the upstream', async () => {
    await start();
    const before = up.calls.length;
    const a = await chat(gw, keys.low, { 'x-switchyard-class': 'interactive' });
    expect(a.status).toBe(403);
    expect(code(a)).toBe('SY_ERR_CLASS_FORBIDDEN');
    expect(up.calls.length).toBe(before);
  });

  it('runs a limited tenant that names no class in the best class it may use', async () => {
    await start();
    expect((await chat(gw, keys.low)).status).toBe(200);
    expect(await metric(gw, /^switchyard_admission_admitted_total\{class="background"\}/)).toBe(1);
  });

  it('answers 400 for a class that is not declared', async () => {
    await start();
    const a = await chat(gw, keys.user, { 'x-switchyard-class': 'vip' });
    expect(a.status).toBe(400);
    expect(code(a)).toBe('SY_ERR_INVALID_REQUEST');
  });

  it('refuses the request over a key’s request quota with 429 and Retry-After', async () => {
    await start();
    for (let i = 0; i < 3; i++) expect((await chat(gw, keys.metered)).status).toBe(200);
    const a = await chat(gw, keys.metered);
    expect(a.status).toBe(429);
    expect(code(a)).toBe('SY_ERR_RATE_LIMITED');
    const retry = Number(a.headers['retry-after']);
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(120);
    expect(
      await metric(gw, /^switchyard_quota_refused_total\{class="interactive",kind="requests"\}/),
    ).toBe(1);
  });

  it('settles a non-streamed request’s token and spend reservations to the usage it reported', async () => {
    await start();
    expect(
      (await chat(gw, keys.metered, {}, { ...CHAT, max_tokens: 500 } as typeof CHAT)).status,
    ).toBe(200);
    const ac = gw.gateway.admission;
    await new Promise((r) => setTimeout(r, 10));
    expect(await ac.quotaUsage('t:metered:tok', { ms: 86_400_000 }).then(Math.round)).toBe(10);
    // 7 in at 1/1k + 3 out at 2/1k = 0.013 → 13,000 micro-units
    expect(await ac.quotaUsage('t:metered:spend', 'day')).toBe(13_000);
  });

  it('reserves a streamed request’s estimate while it streams and settles to the stream’s usage chunk', async () => {
    await start();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    up.behave(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseChunk('x'));
      await gate;
      res.write(sseChunk('y', 'stop'));
      res.write(sseUsage(12, 88));
      res.end('data: [DONE]\n\n');
    });
    const body = { ...CHAT, stream: true, max_tokens: 300 };
    const pending = chat(gw, keys.metered, {}, body);
    const ac = gw.gateway.admission;
    let during = 0;
    for (let i = 0; i < 200 && during === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      during = await ac.quotaUsage('t:metered:tok', { ms: 86_400_000 }).then(Math.round);
    }
    // input estimate: "hello there" is 11 chars → 3 tokens + 4 per message; output: max_tokens
    release();
    expect(during).toBe(3 + 4 + 300);
    const a = await pending;
    expect(a.status).toBe(200);
    expect(a.text).toContain('[DONE]');
    await new Promise((r) => setTimeout(r, 10));
    expect(await ac.quotaUsage('t:metered:tok', { ms: 86_400_000 }).then(Math.round)).toBe(100);
    // 12 in at 1/1k + 88 out at 2/1k = 0.188
    expect(await ac.quotaUsage('t:metered:spend', 'day')).toBe(188_000);
    up.behave(json(200, chatCompletion('ok', { prompt_tokens: 7, completion_tokens: 3 })));
  });

  it('refuses PUT and GET /admin/mode to a key that is not an admin key', async () => {
    await start();
    const put = await call(gw, 'PUT', '/admin/mode', keys.user, { mode: 'surge', reason: 'x' });
    expect(put.status).toBe(403);
    expect(code(put)).toBe('SY_ERR_ADMIN_REQUIRED');
    expect((await call(gw, 'GET', '/admin/mode', keys.user)).status).toBe(403);
    expect((await call(gw, 'GET', '/admin/mode', undefined)).status).toBe(401);
    expect(gw.gateway.admission.modes.current().mode).toBe('normal');
    expect(await gw.gateway.runtime().audit!.list({ action: 'mode.override' })).toEqual([]);
  });

  it('lets an admin force a mode, audits it with the key, and shows mode and reason', async () => {
    await start();
    const put = await call(gw, 'PUT', '/admin/mode', keys.admin, {
      mode: 'emergency',
      reason: 'flash sale',
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({
      mode: 'emergency',
      reason: 'forced',
      detail: 'flash sale',
      forced: true,
    });
    const got = await call(gw, 'GET', '/admin/mode', keys.admin);
    expect(got.body).toMatchObject({
      mode: 'emergency',
      reason: 'forced',
      switches: { shed_classes: ['batch', 'background'] },
    });
    const [entry] = await gw.gateway.runtime().audit!.list({ action: 'mode.override' });
    expect(entry).toMatchObject({
      action: 'mode.override',
      reason: 'flash sale',
      target: 'admission.mode',
    });
    expect(entry!.actor).toMatch(/^key:/);
    expect(entry!.detail).toMatchObject({ from: 'normal', to: 'emergency' });
    expect(await metric(gw, /^switchyard_admission_mode\{mode="emergency",reason="forced"\}/)).toBe(
      2,
    );
    const back = await call(gw, 'PUT', '/admin/mode', keys.admin, {
      mode: 'auto',
      reason: 'sale over',
    });
    expect(back.body).toMatchObject({ mode: 'emergency', forced: false, reason: 'released' });
  });

  it('answers 400 to a mode change without a reason or with an unknown mode', async () => {
    await start();
    const noReason = await call(gw, 'PUT', '/admin/mode', keys.admin, { mode: 'surge' });
    expect(noReason.status).toBe(400);
    const bad = await call(gw, 'PUT', '/admin/mode', keys.admin, { mode: 'panic', reason: 'x' });
    expect(bad.status).toBe(400);
    expect((bad.body['error'] as Record<string, unknown>)['param']).toBe('mode');
  });

  it('sheds background work with 503 and Retry-After in emergency, keeps interactive, health and metrics', async () => {
    await start();
    gw.gateway.admission.modes.force('emergency', 'test', 'test');
    const bg = await chat(gw, keys.user, { 'x-switchyard-class': 'background' });
    expect(bg.status).toBe(503);
    expect(code(bg)).toBe('SY_ERR_SHED');
    expect(bg.headers['retry-after']).toBe('1');
    expect((await chat(gw, keys.user)).status).toBe(200);
    for (const path of ['/healthz', '/readyz', '/metrics', '/v2/health/live', '/v2/health/ready'])
      expect((await call(gw, 'GET', path, undefined)).status, path).toBe(200);
    expect(
      await metric(gw, /^switchyard_admission_shed_total\{class="background",reason="mode"\}/),
    ).toBe(1);
  });

  it('tightens the deadline of a class in a mode whose deadline_scale says so', async () => {
    await start({
      classes: {
        interactive: { priority: 0, deadline_ms: 400 },
        background: { priority: 3 },
        batch: { priority: 4 },
      },
      modes: {
        surge: { enter: {}, exit: {}, switches: { deadline_scale: 0.25 } },
        emergency: { enter: {}, exit: {} },
      },
    });
    up.behave((_req, res) => {
      setTimeout(() => void json(200, chatCompletion())(_req, res, undefined as never), 300);
    });
    expect((await chat(gw, keys.user)).status).toBe(200); // 300 ms < 400 ms
    gw.gateway.admission.modes.force('surge', 'test', 'test');
    const a = await chat(gw, keys.user); // capped at 100 ms
    expect(a.status).toBe(504);
    expect(code(a)).toBe('SY_ERR_DEADLINE_EXCEEDED');
    up.behave(json(200, chatCompletion('ok', { prompt_tokens: 7, completion_tokens: 3 })));
  });

  it('sends a model to its declared cheaper substitute in a mode that says so', async () => {
    const cheap = await startUpstream(json(200, chatCompletion('from-cheap')));
    try {
      await start({
        models: {
          chat: openaiModel(up.url),
          'chat-small': openaiModel(cheap.url),
        },
        modes: {
          surge: { enter: {}, exit: {}, switches: { model_substitutes: { chat: 'chat-small' } } },
          emergency: { enter: {}, exit: {} },
        },
      });
      gw.gateway.admission.modes.force('surge', 'test', 'test');
      const a = await chat(gw, keys.user);
      expect(a.status).toBe(200);
      expect(a.text).toContain('from-cheap');
      expect(a.headers['x-switchyard-route']).toBe('chat-small#1:ok');
    } finally {
      await cheap.close();
    }
  });
});
