import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sharedRedisOrSkip } from '../support/redis-server.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { call, errorCode } from '../support/http-call.js';
import { startRelay, type Relay } from '../support/test-network.js';

/**
 * An edge gateway (#17) with a local cache of its region's Redis feature store
 * (`features.store.cache`), beside a regional gateway on the same Redis; both share consent
 * through Redis. The edge reaches the feature Redis through a TCP relay the test closes: that is
 * the region's Redis becoming unreachable from the edge.
 */

const up = await sharedRedisOrSkip('the edge feature cache tests');

const REDIS_URL = 'redis://127.0.0.1:6379';
const lineage = { source: 'test', transformation: 'as pushed' };
const run = randomBytes(4).toString('hex');
const TTL_MS = 300;

function config(featureUrl: string, cache: Record<string, unknown> | undefined) {
  return {
    features: {
      store: {
        kind: 'redis',
        url: featureUrl,
        prefix: `sy-test:edgefeat:${run}:`,
        command_timeout_ms: 200,
        ...(cache === undefined ? {} : { cache }),
      },
      definitions: {
        'user.tier': { entity: 'user', type: 'string', label: 'public', lineage },
        'user.visits': {
          entity: 'user',
          type: 'int',
          label: 'consented',
          purpose: 'behavioral_inference',
          lineage,
        },
      },
    },
    privacy: { consent_redis: { url: REDIS_URL, prefix: `sy-test:edgeconsent:${run}:` } },
    journeys: {
      profile: {
        stages: [
          { id: 'read', features: { id: 'attr.user', names: ['user.tier', 'user.visits'] } },
          { id: 'out', respond: { body: { features: 'features' } } },
        ],
      },
      profile_cached: {
        stages: [
          { id: 'cache', cache: { key: 'attr.user' } },
          { id: 'read', features: { id: 'attr.user', names: ['user.tier', 'user.visits'] } },
          { id: 'out', respond: { body: { features: 'features' } } },
        ],
      },
    },
  };
}

interface Stage {
  stage: string;
  code: string;
  reason: string;
}
interface JourneyAnswer {
  output?: { features: Record<string, unknown> };
  route: { stages: Stage[]; decisions: string[] };
}

describe.skipIf(!up)('an edge gateway with a local cache of its region’s feature store', () => {
  let regional: TestGateway;
  let edge: TestGateway;
  let relay: Relay;

  beforeAll(async () => {
    relay = await startRelay(REDIS_URL, '127.0.0.1');
    regional = await startTestGateway({
      config: { node: { role: 'regional', region: 'eu' }, ...config(REDIS_URL, undefined) },
    });
    edge = await startTestGateway({
      config: {
        node: { role: 'edge', region: 'eu' },
        ...config(relay.url, { ttl_ms: TTL_MS, stale_ms: 60_000, max_entries: 1_000 }),
      },
    });
    for (const user of ['alice', 'bob']) {
      const c = await call(regional.url, 'PUT', `/v1/consent/${user}`, regional.key, {
        purposes: { behavioral_inference: true },
      });
      expect(c.status).toBe(200);
    }
    const pushed = await call(regional.url, 'POST', '/v1/features', regional.key, {
      writes: ['alice', 'bob'].flatMap((u) => [
        { entity_id: u, feature: 'user.tier', value: `${u}-gold` },
        { entity_id: u, feature: 'user.visits', value: 7 },
      ]),
    });
    expect(pushed.status).toBe(200);
    // The edge hears the consent records through Redis.
    await vi.waitFor(
      async () => {
        const c = await call(edge.url, 'GET', '/v1/consent/bob', edge.key);
        expect(c.body['purposes']).toMatchObject({ behavioral_inference: true });
      },
      { timeout: 10_000 },
    );
  }, 60_000);

  afterAll(async () => {
    await edge?.close();
    await regional?.close();
    await relay?.close();
    const { Redis } = await import('ioredis');
    const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
    for (const p of [`sy-test:edgefeat:${run}:*`, `sy-test:edgeconsent:${run}:*`]) {
      const keys = await r.keys(p);
      if (keys.length > 0) await r.del(...keys);
    }
    r.disconnect();
  });

  const profile = async (user: string, journey = 'profile') => {
    const a = await call(edge.url, 'POST', `/v1/journeys/${journey}`, edge.key, {
      input: 'x',
      attributes: { user },
    });
    return { ...a, answer: a.body as unknown as JourneyAnswer };
  };
  const readStage = (a: JourneyAnswer) => a.route.stages.find((s) => s.stage === 'read')!;

  it('answers from stale cached features while its Redis is unreachable, marks the answer and counts it; a user whose consent changed elsewhere meanwhile is not served from the cache', async () => {
    for (const user of ['alice', 'bob']) {
      const fresh = await profile(user);
      expect(fresh.status).toBe(200);
      expect(readStage(fresh.answer).code).toBe('ok');
      expect(fresh.answer.route.decisions).not.toContain('stale_features');
      expect(fresh.headers['x-switchyard-degraded']).toBeUndefined();
      const read = await call(edge.url, 'GET', `/v1/features/${user}?names=user.tier`, edge.key);
      expect(read.status, read.text).toBe(200);
      expect(read.body['stale']).toBeUndefined();
      expect(read.headers['x-switchyard-degraded']).toBeUndefined();
    }
    // bob revokes at the regional node: Redis is purged there, and the edge drops its copies of
    // bob's values when it hears the change (public ones included, which consent would not hide).
    const revoked = await call(regional.url, 'POST', '/v1/consent/bob/revoke', regional.key, {
      purposes: ['behavioral_inference'],
    });
    expect(revoked.status).toBe(200);
    await vi.waitFor(
      async () => {
        const c = await call(edge.url, 'GET', '/v1/consent/bob', edge.key);
        expect(c.body['purposes']).toMatchObject({ behavioral_inference: false });
      },
      { timeout: 10_000 },
    );

    await relay.close();
    await new Promise((r) => setTimeout(r, TTL_MS + 50));
    const stale = await profile('alice');
    expect(stale.status).toBe(200);
    expect(stale.answer.output?.features).toEqual({ 'user.tier': 'alice-gold', 'user.visits': 7 });
    expect(readStage(stale.answer)).toMatchObject({ code: 'stale' });
    expect(readStage(stale.answer).reason).toMatch(/stale from the local cache/);
    expect(stale.answer.route.decisions).toContain('stale_features');
    expect(stale.headers['x-switchyard-degraded']).toBe('stale_features');
    // A direct read says so too: `stale` in the body, the degraded header.
    const direct = await call(
      edge.url,
      'GET',
      '/v1/features/alice?names=user.tier,user.visits',
      edge.key,
    );
    expect(direct.status, direct.text).toBe(200);
    expect(direct.body['stale']).toBe(true);
    expect(direct.headers['x-switchyard-degraded']).toBe('stale_features');

    // An answer built from stale features is never written to the journey's cache.
    for (let i = 0; i < 2; i++) {
      const cached = await profile('alice', 'profile_cached');
      expect(cached.status).toBe(200);
      expect(cached.answer.route.decisions).toEqual(['stale_features']);
      await new Promise((r) => setTimeout(r, 50));
    }

    const gone = await profile('bob');
    expect(gone.status).toBe(503);
    expect(errorCode(gone)).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');

    const metrics = await (await request(`${edge.url}/metrics`)).body.text();
    expect(metrics).toMatch(/switchyard_feature_cache_total\{result="stale"\} [1-9]/);
    expect(metrics).toMatch(/switchyard_feature_cache_total\{result="error"\} [1-9]/);
    // Each answer built from stale values is a degraded answer: the journey's three (one
    // `profile`, two `profile_cached`) and the direct read.
    expect(metrics).toMatch(
      /switchyard_degraded_answers_total\{model="journey:profile",reason="stale_features"\} 1$/m,
    );
    expect(metrics).toMatch(
      /switchyard_degraded_answers_total\{model="journey:profile_cached",reason="stale_features"\} 2$/m,
    );
    expect(metrics).toMatch(
      /switchyard_degraded_answers_total\{model="",reason="stale_features"\} 1$/m,
    );
  });
});
