import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call as callApi } from './privacy-support.js';
import { ManualClock } from '../contract/feature-source.contract.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const lineage = { source: 'kafka:rides', transformation: 'count over 7d' };

/** The feature push and read API over HTTP, with an injected clock for TTLs. */
describe('the feature store over HTTP', () => {
  let gw: TestGateway;
  const clock = new ManualClock();

  beforeAll(async () => {
    gw = await startTestGateway({
      config: {
        features: {
          definitions: {
            'user.rides_7d': {
              entity: 'user',
              type: 'int',
              min: 0,
              max: 1000,
              label: 'public',
              version: 3,
              lineage,
            },
            'user.tier': {
              entity: 'user',
              type: 'enum',
              values: ['basic', 'gold'],
              label: 'public',
              lineage: { source: 'billing', transformation: 'identity' },
            },
            'user.embedding': {
              entity: 'user',
              type: 'vector',
              dims: 3,
              label: 'public',
              lineage: { source: 'trainer', transformation: 'user tower' },
            },
            'session.score': {
              entity: 'session',
              type: 'float',
              min: 0,
              max: 1,
              ttl_ms: 60_000,
              label: 'public',
              lineage: { source: 'clicks', transformation: 'ewma' },
            },
          },
        },
      },
      options: { clock },
    });
  });
  afterAll(async () => {
    await gw.close();
  });

  const call = (
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    key: string | undefined = gw.key,
  ) => callApi(gw.url, key, method, path, body);

  it('stores pushed values and reads them back with version and timestamps', async () => {
    const push = await call('POST', '/v1/features', {
      writes: [
        { entity_id: 'u1', feature: 'user.rides_7d', value: 42 },
        { entity_id: 'u1', feature: 'user.tier', value: 'gold', version: 1 },
        { entity_id: 'u1', feature: 'user.embedding', value: [0.5, -1, 2] },
      ],
    });
    expect(push).toEqual({ status: 200, body: { written: 3 } });
    const read = await call('GET', '/v1/features/u1?names=user.rides_7d,user.embedding');
    expect(read.status).toBe(200);
    expect(read.body.features['user.rides_7d']).toEqual({
      value: 42,
      version: 3,
      label: 'public',
      written_at: clock.t,
    });
    expect(read.body.features['user.embedding']?.value).toEqual([0.5, -1, 2]);
    expect(read.body.withheld).toEqual([]);
    const all = await call('GET', '/v1/features/u1');
    expect(Object.keys(all.body.features).sort()).toEqual([
      'user.embedding',
      'user.rides_7d',
      'user.tier',
    ]);
  });

  it('refuses invalid values with a 400 naming each problem, and stores none of the batch', async () => {
    const res = await call('POST', '/v1/features', {
      writes: [
        { entity_id: 'u2', feature: 'user.tier', value: 'basic' },
        { entity_id: 'u2', feature: 'user.rides_7d', value: 1001 },
        { entity_id: 'u2', feature: 'user.tier', value: 'platinum' },
        { entity_id: 'u2', feature: 'user.embedding', value: [1, 2] },
        { entity_id: 'u2', feature: 'user.rides_7d', value: 5, version: 2 },
        { entity_id: 'u2', feature: 'user.nope', value: 1 },
      ],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('SY_ERR_FEATURE_INVALID');
    expect(res.body.error.type).toBe('invalid_request_error');
    expect(res.body.error.param).toBe('writes[1].value');
    const msg = res.body.error.message;
    expect(msg).toContain('writes[1].value (user.rides_7d): 1001 is above max 1000');
    expect(msg).toContain(
      'writes[2].value (user.tier): must be one of "basic", "gold", got "platinum"',
    );
    expect(msg).toContain('writes[3].value (user.embedding): must have 3 elements, got 2');
    expect(msg).toContain(
      'writes[4].version (user.rides_7d): is 2 but user.rides_7d is at version 3',
    );
    expect(msg).toContain('writes[5].feature (user.nope): unknown feature "user.nope"');
    const read = await call('GET', '/v1/features/u2');
    expect(read.body.features).toEqual({});
  });

  it.each([
    ['a body without writes', { values: [] }, 'writes must be a non-empty array'],
    ['an empty batch', { writes: [] }, 'writes must be a non-empty array'],
    ['a write that is not an object', { writes: [3] }, 'writes[0] must be an object'],
    [
      'an unknown field in a write',
      { writes: [{ entity_id: 'u', feature: 'user.tier', value: 'gold', ttl: 5 }] },
      'writes[0]: unknown field "ttl"',
    ],
    [
      'a non-string entity id',
      { writes: [{ entity_id: 7, feature: 'user.tier', value: 'gold' }] },
      'writes[0].entity_id must be a string',
    ],
    [
      'a missing value',
      { writes: [{ entity_id: 'u', feature: 'user.rides_7d' }] },
      'must be a finite number, got undefined',
    ],
  ])('answers %s with a clear 400 JSON error', async (_name, body, text) => {
    const res = await call('POST', '/v1/features', body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('SY_ERR_FEATURE_INVALID');
    expect(res.body.error.message).toContain(text);
  });

  it('answers malformed JSON and non-finite numbers with 400 SY_ERR_INVALID_JSON', async () => {
    const bad = await call('POST', '/v1/features', '{"writes": [');
    expect([bad.status, bad.body.error.code]).toEqual([400, 'SY_ERR_INVALID_JSON']);
    const inf = await call(
      'POST',
      '/v1/features',
      '{"writes":[{"entity_id":"u","feature":"user.rides_7d","value":1e999}]}',
    );
    expect([inf.status, inf.body.error.code]).toEqual([400, 'SY_ERR_INVALID_JSON']);
  });

  it('answers a read of an undeclared feature with 404 SY_ERR_FEATURE_NOT_FOUND', async () => {
    const res = await call('GET', '/v1/features/u1?names=user.rides_7d,user.secret');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('SY_ERR_FEATURE_NOT_FOUND');
    expect(res.body.error.message).toContain('"user.secret"');
  });

  it('stops serving a value when its TTL passes on the injected clock', async () => {
    await call('POST', '/v1/features', {
      writes: [{ entity_id: 's1', feature: 'session.score', value: 0.9, user_id: 'u1' }],
    });
    clock.advance(59_000);
    const live = await call('GET', '/v1/features/s1?names=session.score');
    expect(live.body.features['session.score']?.value).toBe(0.9);
    expect(live.body.features['session.score']?.expires_at).toBe(clock.t + 1_000);
    clock.advance(1_000);
    const gone = await call('GET', '/v1/features/s1?names=session.score');
    expect(gone.body.features).toEqual({});
  });

  it('lists the definitions with their validation, TTL, label, version and lineage', async () => {
    const res = await call('GET', '/v1/feature-definitions');
    expect(res.status).toBe(200);
    const rides = res.body.data.find((d) => d['name'] === 'user.rides_7d');
    expect(rides).toEqual({
      name: 'user.rides_7d',
      entity: 'user',
      type: 'int',
      min: 0,
      max: 1000,
      label: 'public',
      version: 3,
      lineage,
    });
    const score = res.body.data.find((d) => d['name'] === 'session.score');
    expect(score?.['ttl_ms']).toBe(60_000);
  });

  it('requires an API key for the feature routes', async () => {
    const res = await callApi(gw.url, undefined, 'GET', '/v1/features/u1');
    expect([res.status, res.body.error.code]).toEqual([401, 'SY_ERR_AUTH_MISSING']);
  });
});
