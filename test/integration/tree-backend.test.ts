import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAssertion } from '../../src/core/tenant-assertion.js';
import { call, errorCode, metric } from '../support/http-call.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { request } from 'undici';
import {
  chatCompletion,
  json,
  sse,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #17 item 1: `backend: switchyard`. A child gateway escalates model calls to a parent gateway
 * (real in-process gateways on loopback, a real OpenAI-protocol upstream behind the parent).
 */
const SERVICE_SECRET = 'tree-service-key-secret-0123456789';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const chat = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

describe('a gateway as a backend (#17)', () => {
  let upstream: TestUpstream;
  let parent: TestGateway;
  let child: TestGateway;

  beforeAll(async () => {
    upstream = await startUpstream(json(200, chatCompletion('from-central')));
    parent = await startParent(upstream);
    child = await startTestGateway({
      config: {
        node: { role: 'regional', region: 'eu-west' },
        models: {
          chat: {
            backend: 'switchyard',
            url: parent.url,
            upstream_model: 'chat-central',
            service_key: { id: 'edges', secret: { env: 'SY_TEST_TREE_KEY' } },
          },
        },
      },
    });
  }, 30_000);

  afterAll(async () => {
    await child?.close();
    await parent?.close();
    await upstream?.close();
  });

  it('folds the parent route into its own and carries deadline, trace, class and request id', async () => {
    const before = upstream.calls.length;
    const a = await call(child.url, 'POST', '/v1/chat/completions', child.key, chat, {
      'x-switchyard-timeout-ms': '4000',
      traceparent: TRACEPARENT,
      'x-request-id': 'req-tree-1',
    });
    expect(a.status).toBe(200);
    expect(a.text).toContain('from-central');
    expect(a.headers['x-switchyard-route']).toBe('chat#1:ok[chat-central#1:ok]');
    const seen = upstream.calls[before]!;
    // The parent ran under the child's remaining budget, and passed it on again.
    const budget = Number(seen.headers['x-switchyard-timeout-ms']);
    expect(budget).toBeGreaterThan(3000);
    expect(budget).toBeLessThanOrEqual(4000);
    expect(seen.headers['traceparent']).toBe(TRACEPARENT);
    expect(seen.headers['x-request-id']).toBe('req-tree-1');
  });

  it('streams through the parent event by event, with usage and the folded route', async () => {
    upstream.behave(sse(['a', 'b', 'c'], { usage: { prompt: 3, completion: 3 } }));
    try {
      const res = await request(`${child.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${child.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...chat, stream: true }),
      });
      const text = await res.body.text();
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-switchyard-route']).toBe('chat#1:ok[chat-central#1:ok]');
      expect(text).toContain('"content":"a"');
      expect(text).toContain('"content":"c"');
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(text).not.toContain('"usage"'); // the client did not ask for it
    } finally {
      upstream.behave(json(200, chatCompletion('from-central')));
    }
  });

  it('serves the asserted tenant under its quota at the parent', async () => {
    // acme has 5 requests per minute at the parent; the child has no quota at all.
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const a = await call(child.url, 'POST', '/v1/chat/completions', child.key, chat);
      statuses.push(a.status);
      if (a.status !== 200) {
        expect(errorCode(a)).toMatch(/SY_ERR_(RATE_LIMITED|QUOTA_EXCEEDED)/);
        expect(a.headers['retry-after']).toBeDefined();
      }
    }
    // Two requests were already made by the tests above.
    expect(statuses.filter((s) => s === 200).length).toBe(3);
  });

  it('refuses a forged, expired or misdirected assertion with 401 SY_ERR_ASSERTION_INVALID', async () => {
    const good = {
      keyId: 'edges',
      tenant: 'acme',
      trafficClass: 'interactive',
      requestId: 'req-forge',
      expiresAt: Date.now() + 10_000,
    };
    const cases: [string, Record<string, string>][] = [
      ['wrong key', { 'x-switchyard-assertion': signAssertion(good, 'not-the-key') }],
      [
        'expired',
        {
          'x-switchyard-assertion': signAssertion(
            { ...good, expiresAt: Date.now() - 1 },
            SERVICE_SECRET,
          ),
        },
      ],
      [
        'another request',
        {
          'x-switchyard-assertion': signAssertion({ ...good, requestId: 'other' }, SERVICE_SECRET),
        },
      ],
      [
        'unknown tenant',
        {
          'x-switchyard-assertion': signAssertion({ ...good, tenant: 'nobody' }, SERVICE_SECRET),
        },
      ],
      ['garbage', { 'x-switchyard-assertion': 'v1.abc.def' }],
    ];
    for (const [why, headers] of cases) {
      const a = await call(
        parent.url,
        'POST',
        '/v1/chat/completions',
        undefined,
        { ...chat, model: 'chat-central' },
        { ...headers, 'x-request-id': 'req-forge', 'x-switchyard-class': 'interactive' },
      );
      expect(a.status, why).toBe(401);
      expect(errorCode(a), why).toBe('SY_ERR_ASSERTION_INVALID');
    }
    // The right key, request and class pass (the quota may refuse it, but not auth).
    const ok = await call(
      parent.url,
      'POST',
      '/v1/chat/completions',
      undefined,
      { ...chat, model: 'chat-central' },
      {
        'x-switchyard-assertion': signAssertion(good, SERVICE_SECRET),
        'x-request-id': 'req-forge',
        'x-switchyard-class': 'interactive',
      },
    );
    expect(ok.status).not.toBe(401);
  });

  it('honours the parent shedding: no retry, Retry-After waited out, breaker untouched', async () => {
    await child.close();
    const shedding = await startUpstream(
      json(503, { error: { code: 'SY_ERR_SHED', message: 'shed' } }, { 'retry-after': '2' }),
    );
    child = await startTestGateway({
      config: {
        models: {
          chat: {
            backend: 'switchyard',
            url: shedding.url,
            upstream_model: 'chat-central',
            service_key: { id: 'edges', secret: { env: 'SY_TEST_TREE_KEY' } },
            breaker: { consecutive_failures: 2 },
          },
        },
      },
    });
    try {
      const first = await call(child.url, 'POST', '/v1/chat/completions', child.key, chat);
      expect(first.status).toBe(503);
      expect(errorCode(first)).toBe('SY_ERR_PARENT_SHED');
      expect(first.headers['retry-after']).toBe('2');
      expect(shedding.calls.length).toBe(1); // not retried against the budget
      for (let i = 0; i < 5; i++) {
        const a = await call(child.url, 'POST', '/v1/chat/completions', child.key, chat);
        expect(errorCode(a)).toBe('SY_ERR_PARENT_SHED');
      }
      expect(shedding.calls.length).toBe(1); // waited out Retry-After without calling the parent
      expect(await metric(child.gateway, /^switchyard_breaker_state\{backend="chat"\}/)).toBe(0);
    } finally {
      await shedding.close();
    }
  });
});

async function startParent(upstream: TestUpstream): Promise<TestGateway> {
  process.env['SY_TEST_TREE_KEY'] = SERVICE_SECRET;
  return startTestGateway({
    config: {
      auth: {
        secret: { file: 'secret.txt' },
        service_keys: [{ id: 'edges', secret: { env: 'SY_TEST_TREE_KEY' } }],
      },
      tenants: {
        acme: {
          keys: [],
          models: ['*'],
          quotas: { window_s: 60, requests: 5, requests_burst: 5 },
        },
      },
      models: { 'chat-central': { backend: 'openai', url: `${upstream.url}/v1` } },
    },
  });
}
