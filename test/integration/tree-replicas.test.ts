import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, metric } from '../support/http-call.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #17: a parent gateway with several replicas (`models.<m>.replicas`). Real in-process gateways
 * on loopback: two parent replicas, each with its own OpenAI-protocol upstream so an answer
 * shows which replica served it, and a child that lists both.
 */
const SERVICE_SECRET = 'tree-replica-key-secret-0123456789';
const chat = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };
const serviceKey = { id: 'edges', secret: { env: 'SY_TEST_TREE_KEY' } };

function startReplica(upstream: TestUpstream): Promise<TestGateway> {
  process.env['SY_TEST_TREE_KEY'] = SERVICE_SECRET;
  return startTestGateway({
    config: {
      auth: { secret: { file: 'secret.txt' }, service_keys: [serviceKey] },
      tenants: { acme: { keys: [], models: ['*'] } },
      models: { chat: { backend: 'openai', url: `${upstream.url}/v1` } },
    },
  });
}

describe('a parent gateway with replicas (#17)', () => {
  let upA: TestUpstream;
  let upB: TestUpstream;
  let a: TestGateway;
  let b: TestGateway;
  let child: TestGateway;
  let control: TestGateway;

  beforeAll(async () => {
    upA = await startUpstream(json(200, chatCompletion('from-a')));
    upB = await startUpstream(json(200, chatCompletion('from-b')));
    a = await startReplica(upA);
    b = await startReplica(upB);
    const model = (extra: Record<string, unknown>) => ({
      backend: 'switchyard',
      url: a.url,
      service_key: serviceKey,
      // The model's retries off: only the failover between replicas can save a call.
      retry: { max_attempts: 1 },
      breaker: { consecutive_failures: 2, cooldown_ms: 60_000 },
      ...extra,
    });
    child = await startTestGateway({ config: { models: { chat: model({ replicas: [b.url] }) } } });
    // The same parent without the second replica listed.
    control = await startTestGateway({ config: { models: { chat: model({ url: b.url }) } } });
  }, 30_000);

  afterAll(async () => {
    await child?.close();
    await control?.close();
    await a?.close();
    await b?.close();
    await upA?.close();
    await upB?.close();
  });

  const ask = (gw: TestGateway) => call(gw.url, 'POST', '/v1/chat/completions', gw.key, chat);

  it('spreads calls over the replicas, each folding its route', async () => {
    const texts: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await ask(child);
      expect(r.status, r.text).toBe(200);
      expect(r.headers['x-switchyard-route']).toBe('chat#1:ok[chat#1:ok]');
      texts.push(r.text.includes('from-a') ? 'a' : 'b');
    }
    expect(texts.filter((t) => t === 'a').length).toBe(5);
    expect(texts.filter((t) => t === 'b').length).toBe(5);
  });

  it('moves every call to the live replica when one is gone, and opens only that replica’s breaker', async () => {
    await b.close();
    for (let i = 0; i < 20; i++) {
      const r = await ask(child);
      expect(r.status, r.text).toBe(200);
      expect(r.text).toContain('from-a');
    }
    const host = new URL(b.url).host;
    expect(
      await metric(
        child.gateway,
        /^switchyard_parent_failovers_total\{model="chat",code="SY_ERR_UPSTREAM_UNREACHABLE"\}/,
      ),
    ).toBeGreaterThanOrEqual(1);
    const escaped = host.replace(/[.]/g, '\\.');
    expect(
      await metric(
        child.gateway,
        new RegExp(`^switchyard_breaker_state\\{backend="chat@${escaped}"\\}`),
      ),
    ).toBe(1);
    expect(await metric(child.gateway, /^switchyard_breaker_state\{backend="chat"\}/)).toBe(0);
    // Control: without `replicas` the dead parent is the client's error.
    const dead = await ask(control);
    expect(dead.status).toBeGreaterThanOrEqual(500);
  });

  it('pays for a failover after a failed replica from the model’s retry budget', async () => {
    // Both "replicas" fail as servers (500 without a gateway code: SY_ERR_UPSTREAM_ERROR, which
    // moves a call to the next replica). Breakers never open here, so only the budget stops the
    // failovers: 4 tokens, a retry needs more than 2, so 2 failovers are paid, then none.
    const failing = [
      await startUpstream(json(500, { error: { message: 'boom' } })),
      await startUpstream(json(500, { error: { message: 'boom' } })),
    ];
    const gw = await startTestGateway({
      config: {
        models: {
          chat: {
            backend: 'switchyard',
            url: failing[0]!.url,
            replicas: [failing[1]!.url],
            service_key: serviceKey,
            retry: { max_attempts: 1, budget_tokens: 4, budget_ratio: 0.1 },
            breaker: { consecutive_failures: 1000, min_calls: 1000 },
          },
        },
      },
    });
    try {
      const calls = 30;
      for (let i = 0; i < calls; i++) {
        const r = await ask(gw);
        expect(r.status).toBeGreaterThanOrEqual(500);
      }
      const attempts = failing[0]!.calls.length + failing[1]!.calls.length;
      // Unpaid, each call would have tried both replicas: 60 attempts.
      expect(attempts).toBeGreaterThan(calls);
      expect(attempts).toBeLessThanOrEqual(calls + 2);
      expect(
        await metric(
          gw.gateway,
          /^switchyard_retries_total\{backend="chat",decision="budget_exhausted"\}/,
        ),
      ).toBeGreaterThanOrEqual(calls - 2);
    } finally {
      await gw.close();
      for (const u of failing) await u.close();
    }
  });

  it('moves a call a replica sheds to the next replica, and waits out its Retry-After', async () => {
    const shedding = await startUpstream(
      json(503, { error: { code: 'SY_ERR_SHED', message: 'shed' } }, { 'retry-after': '30' }),
    );
    const gw = await startTestGateway({
      config: {
        models: {
          chat: {
            backend: 'switchyard',
            url: shedding.url,
            replicas: [a.url],
            service_key: serviceKey,
          },
        },
      },
    });
    try {
      for (let i = 0; i < 6; i++) {
        const r = await ask(gw);
        expect(r.status, r.text).toBe(200);
        expect(r.text).toContain('from-a');
      }
      expect(shedding.calls.length).toBe(1);
    } finally {
      await gw.close();
      await shedding.close();
    }
  });
});
