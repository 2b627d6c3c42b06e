import { afterEach, describe, expect, it } from 'vitest';
import { signAssertion } from '../../src/core/tenant-assertion.js';
import { call, errorCode, metric } from '../support/http-call.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #17 items 2 and 3, in process: the knobs of the tree. `node.role: edge` keeps a stale cache of
 * its parent (and only an edge does), `node.stale_cache.max_age_ms` bounds it, a fallback link
 * outside the data's jurisdiction is never tried, and a parent refuses assertions that live longer
 * than `auth.assertion_max_ttl_ms`.
 */
const KEY = 'tree-edge-service-key-0123456789';
process.env['SY_TEST_TREE_EDGE_KEY'] = KEY;
const chat = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

describe('the tree knobs (#17)', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });
  const track = <T extends { close(): Promise<void> }>(x: T): T => {
    open.push(x);
    return x;
  };

  /** A child whose parent is a plain upstream speaking the gateway's protocol, then gone. */
  async function childOf(
    node: Record<string, unknown>,
    upstream: TestUpstream,
    extra: Record<string, unknown> = {},
  ): Promise<TestGateway> {
    return track(
      await startTestGateway({
        config: {
          node,
          privacy: { jurisdictions: { eu: {}, us: {} } },
          models: {
            chat: {
              backend: 'switchyard',
              url: upstream.url,
              service_key: { id: 'k', secret: { env: 'SY_TEST_TREE_EDGE_KEY' } },
              retry: { max_attempts: 1 },
              ...extra,
            },
          },
        },
      }),
    );
  }

  it('an edge answers from its stale cache when the parent is gone; a regional node does not', async () => {
    const parent = await startUpstream(json(200, chatCompletion('fresh')));
    const edge = await childOf({ role: 'edge' }, parent);
    const regional = await childOf({ role: 'regional' }, parent);
    for (const gw of [edge, regional])
      expect((await call(gw.url, 'POST', '/v1/chat/completions', gw.key, chat)).status).toBe(200);
    await parent.close();
    const e = await call(edge.url, 'POST', '/v1/chat/completions', edge.key, chat);
    expect(e.status).toBe(200);
    expect(e.text).toContain('fresh');
    expect(e.headers['x-switchyard-degraded']).toBe('stale-cache');
    expect(e.headers['x-switchyard-route']).toBe(
      'chat#1:UPSTREAM_UNREACHABLE>chat:stale#1:ok~stale-cache',
    );
    expect(
      await metric(
        edge.gateway,
        /^switchyard_degraded_answers_total\{model="chat",reason="stale_cache"\}/,
      ),
    ).toBe(1);
    const r = await call(regional.url, 'POST', '/v1/chat/completions', regional.key, chat);
    expect(r.status).toBe(502);
    expect(errorCode(r)).toBe('SY_ERR_UPSTREAM_UNREACHABLE');
  });

  it('does not retry a parent whose own upstream failed: one attempt, SY_ERR_NO_HEALTHY_BACKEND', async () => {
    const parent = track(
      await startUpstream(
        json(502, { error: { code: 'SY_ERR_UPSTREAM_ERROR', message: 'central answered 500' } }),
      ),
    );
    const child = await childOf({ role: 'regional' }, parent, { retry: { max_attempts: 3 } });
    const a = await call(child.url, 'POST', '/v1/chat/completions', child.key, chat);
    expect(a.status).toBe(503);
    expect(errorCode(a)).toBe('SY_ERR_NO_HEALTHY_BACKEND');
    expect(parent.calls.length).toBe(1);
  });

  it('serves no kept answer older than node.stale_cache.max_age_ms', async () => {
    const parent = await startUpstream(json(200, chatCompletion('fresh')));
    const edge = await childOf({ role: 'edge', stale_cache: { max_age_ms: 50 } }, parent);
    expect((await call(edge.url, 'POST', '/v1/chat/completions', edge.key, chat)).status).toBe(200);
    await parent.close();
    await new Promise((r) => setTimeout(r, 120));
    const e = await call(edge.url, 'POST', '/v1/chat/completions', edge.key, chat);
    expect(e.status).toBe(502);
  });

  it('never tries a fallback link outside the data jurisdiction', async () => {
    const eu = track(await startUpstream(json(503, { error: { message: 'down' } })));
    const us = track(await startUpstream(json(200, chatCompletion('from-us'))));
    const gw = track(
      await startTestGateway({
        config: {
          node: { jurisdiction: 'eu' },
          privacy: { jurisdictions: { eu: {}, us: {} } },
          models: {
            chat: {
              backend: 'openai',
              url: `${eu.url}/v1`,
              retry: { max_attempts: 1 },
              fallback: ['chat-us'],
            },
            'chat-us': { backend: 'openai', url: `${us.url}/v1`, jurisdiction: 'us' },
          },
        },
      }),
    );
    const tagged = await call(gw.url, 'POST', '/v1/chat/completions', gw.key, chat, {
      'x-switchyard-jurisdiction': 'eu',
    });
    expect(tagged.status).toBe(502);
    expect(us.calls.length).toBe(0);
    // Untagged data may fall back: the link works, it was residency that held it back.
    const untagged = await call(gw.url, 'POST', '/v1/chat/completions', gw.key, chat);
    expect(untagged.status).toBe(200);
    expect(untagged.text).toContain('from-us');
    expect(us.calls.length).toBe(1);
  });

  it('refuses an assertion that lives longer than auth.assertion_max_ttl_ms', async () => {
    const up = track(await startUpstream(json(200, chatCompletion('ok'))));
    const gw = track(
      await startTestGateway({
        config: {
          auth: {
            secret: { file: 'secret.txt' },
            service_keys: [{ id: 'k', secret: { env: 'SY_TEST_TREE_EDGE_KEY' } }],
            assertion_max_ttl_ms: 1_000,
          },
          models: { chat: { backend: 'openai', url: `${up.url}/v1` } },
        },
      }),
    );
    const send = (lifeMs: number) =>
      call(gw.url, 'POST', '/v1/chat/completions', undefined, chat, {
        'x-switchyard-assertion': signAssertion(
          {
            keyId: 'k',
            tenant: 'acme',
            trafficClass: 'interactive',
            requestId: 'r-ttl',
            expiresAt: Date.now() + lifeMs,
          },
          KEY,
        ),
        'x-request-id': 'r-ttl',
        'x-switchyard-class': 'interactive',
      });
    expect((await send(500)).status).toBe(200);
    const long = await send(60_000);
    expect(long.status).toBe(401);
    expect(errorCode(long)).toBe('SY_ERR_ASSERTION_INVALID');
  });

  it('refuses a direct call to a model outside the data jurisdiction before anything is sent', async () => {
    const us = track(await startUpstream(json(200, chatCompletion('from-us'))));
    const gw = track(
      await startTestGateway({
        config: {
          node: { jurisdiction: 'eu' },
          privacy: { jurisdictions: { eu: {}, us: {} } },
          models: { 'chat-us': { backend: 'openai', url: `${us.url}/v1`, jurisdiction: 'us' } },
        },
      }),
    );
    const a = await call(
      gw.url,
      'POST',
      '/v1/chat/completions',
      gw.key,
      { ...chat, model: 'chat-us' },
      { 'x-switchyard-jurisdiction': 'eu' },
    );
    expect(a.status).toBe(403);
    expect(errorCode(a)).toBe('SY_ERR_RESIDENCY');
    expect(us.calls.length).toBe(0);
  });
});
