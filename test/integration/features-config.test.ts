import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { isSwitchyardError } from '../../src/core/errors.js';
import { RedisFeatureStore } from '../../src/features/redis-feature-store.js';
import { ManualClock, TEST_DEFINITIONS } from '../contract/feature-source.contract.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { call } from './privacy-support.js';

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'test.yaml', '/tmp');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

const lineage = '{ source: s, transformation: t }';

describe('the features and privacy config', () => {
  it('rejects inconsistent feature definitions with the path of each problem', () => {
    const out = problems(`
features:
  definitions:
    a: { entity: user, type: enum, label: public, lineage: ${lineage} }
    b: { entity: user, type: vector, label: public, lineage: ${lineage} }
    c: { entity: user, type: int, min: 5, max: 1, label: public, lineage: ${lineage} }
    d: { entity: user, type: bool, min: 0, label: public, lineage: ${lineage} }
    e: { entity: user, type: float, label: sensitive, lineage: ${lineage} }
    f: { entity: user, type: float, label: public, lineage: { source: s } }
    g: { entity: user, type: float, label: public, lineage: ${lineage}, ttl: 5 }
`);
    expect(out).toEqual(
      expect.arrayContaining([
        'features.definitions.a.values: an enum feature needs values',
        'features.definitions.b.dims: a vector feature needs dims',
        'features.definitions.c.min: must be <= max',
        'features.definitions.d.min: min/max apply to float, int and vector features only',
        'features.definitions.e.purpose: a sensitive feature needs the consent purpose it serves',
        'features.definitions.f.lineage.transformation: Invalid input: expected string, received undefined',
        'features.definitions.g.ttl: unknown key',
      ]),
    );
  });

  it('rejects a node jurisdiction that is not declared, and unknown rules', () => {
    expect(problems('privacy: { node: { id: n1, jurisdiction: eu } }')).toEqual([
      'privacy.node.jurisdiction: unknown jurisdiction "eu" (declare it under privacy.jurisdictions)',
    ]);
    const bad = problems(
      'privacy: { labels: { public: { ingestion: maybe, retrieval: allow, model_input: allow, logging: allow } } }',
    );
    expect(bad.join('\n')).toContain('privacy.labels.public.ingestion');
  });

  it('fills the documented defaults: opt-in consent, embedded store, label rules', () => {
    const snap = parseConfig('{}', 'test.yaml', '/tmp');
    expect(snap.config.features.store).toEqual({ kind: 'embedded', flush_ms: 50 });
    expect(snap.config.privacy.purposes.location.default).toBe(false);
    expect(snap.config.privacy.labels.sensitive.logging).toBe('deny');
    expect(snap.config.privacy.labels.restricted.model_input).toBe('deny');
  });
});

describe('feature definitions on config reload', () => {
  let gw: TestGateway;
  const defs = (max: number) => ({
    features: {
      definitions: {
        'user.score': {
          entity: 'user',
          type: 'int',
          min: 0,
          max,
          label: 'public',
          lineage: { source: 's', transformation: 't' },
        },
      },
    },
  });
  beforeAll(async () => {
    gw = await startTestGateway({ config: defs(10) });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('validates pushes against the new definitions and keeps the stored values', async () => {
    const push = (value: number) =>
      call(gw.url, gw.key, 'POST', '/v1/features', {
        writes: [{ entity_id: 'u1', feature: 'user.score', value }],
      });
    expect((await push(7)).status).toBe(200);
    expect((await push(50)).status).toBe(400);
    gw.writeConfig(defs(100));
    expect((await gw.gateway.reload()).result).toBe('applied');
    const read = await call(gw.url, gw.key, 'GET', '/v1/features/u1');
    expect(read.body.features['user.score']?.value).toBe(7);
    expect((await push(50)).status).toBe(200);
  });
});

describe('the Redis feature store when Redis is away', () => {
  it('fails fast with SY_ERR_FEATURE_STORE_UNAVAILABLE instead of waiting', async () => {
    // Port 9 (discard) is closed on loopback: the connection is refused.
    const store = new RedisFeatureStore({
      url: 'redis://127.0.0.1:9',
      prefix: 'never:',
      definitions: TEST_DEFINITIONS,
      clock: new ManualClock(),
      commandTimeoutMs: 50,
    });
    try {
      expect(await store.ready(200)).toBe(false);
      for (const op of [
        () => store.read('acme', [{ entityId: 'u1', feature: 'user.tier' }]),
        () => store.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'gold' }]),
        () => store.purgeUser('acme', 'u1'),
      ]) {
        const err = await op().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isSwitchyardError(err) && err.code).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');
      }
      // Invalid values are still refused as such, before Redis is asked.
      const invalid = await store
        .write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'platinum' }])
        .catch((e: unknown) => e);
      expect(isSwitchyardError(invalid) && invalid.code).toBe('SY_ERR_FEATURE_INVALID');
    } finally {
      await store.close();
    }
  });
});
