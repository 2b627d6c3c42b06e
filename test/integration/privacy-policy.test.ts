import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { featureTag, type FeatureEntry } from '../../src/contracts/feature-source.js';
import type { DataTag, PurgeRequest } from '../../src/contracts/policy.js';
import type { VectorMetadata } from '../../src/contracts/vector-index.js';
import { isSwitchyardError } from '../../src/core/errors.js';
import { MemoryFeatureStore } from '../../src/features/memory-feature-store.js';
import { MemoryAuditSink } from '../../src/observability/audit-memory.js';
import { createLogger, setLogRedactor } from '../../src/observability/logger.js';
import { ConsentBook } from '../../src/privacy/consent-book.js';
import { PolicyEngine, type LabelRule, type PolicyRules } from '../../src/privacy/policy-engine.js';
import { tag } from '../../src/privacy/redaction.js';
import { SqliteConsentStore } from '../../src/state/sqlite-consent-store.js';
import { ManualClock, TEST_DEFINITIONS } from '../contract/feature-source.contract.js';

const rule = (
  ingestion: LabelRule['ingestion'],
  retrieval: LabelRule['retrieval'],
  model_input: LabelRule['model_input'],
  logging: LabelRule['logging'],
  model_tiers?: LabelRule['model_tiers'],
): LabelRule => ({ ingestion, retrieval, model_input, logging, model_tiers });

/** The config defaults, with sensitive data going only to edge/regional models. */
const RULES: PolicyRules = {
  node: { id: 'edge-eu-1', jurisdiction: 'eu' },
  jurisdictions: { eu: { nodes: ['regional-eu'] }, us: { nodes: ['edge-us-1'] } },
  labels: {
    public: rule('allow', 'allow', 'allow', 'allow'),
    consented: rule('consent', 'consent', 'consent', 'consent'),
    sensitive: rule('consent', 'consent', 'consent', 'deny', ['edge', 'regional']),
    restricted: rule('consent', 'consent', 'deny', 'deny'),
  },
  purposes: {
    behavioral_inference: { default: false, labels: {} },
    cross_service_personalization: { default: false, labels: {} },
    location: {
      default: false,
      labels: { consented: rule('consent', 'consent', 'consent', 'deny') },
    },
  },
};

type TagOverride = { [K in keyof DataTag]?: DataTag[K] | undefined };
const tagOf = (over: TagOverride = {}): DataTag => {
  const t: Record<string, unknown> = {
    tenant: 'acme',
    label: 'consented',
    purpose: 'behavioral_inference',
    userId: 'u1',
    ...over,
  };
  for (const k of Object.keys(t)) if (t[k] === undefined) delete t[k];
  return t as unknown as DataTag;
};

function code(fn: () => void): string | undefined {
  try {
    fn();
  } catch (err) {
    return isSwitchyardError(err) ? err.code : 'not a SwitchyardError';
  }
  return undefined;
}

describe('the policy module', () => {
  let clock: ManualClock;
  let audit: MemoryAuditSink;
  let consent: ConsentBook;
  let policy: PolicyEngine;
  let store: MemoryFeatureStore;

  beforeEach(() => {
    clock = new ManualClock();
    audit = new MemoryAuditSink();
    consent = new ConsentBook({
      clock,
      audit,
      defaults: {
        behavioral_inference: false,
        cross_service_personalization: false,
        location: false,
      },
    });
    policy = new PolicyEngine(RULES, consent);
    store = new MemoryFeatureStore({ definitions: TEST_DEFINITIONS, clock });
    consent.onPurge({
      name: 'features',
      purge: (r) => store.purgeUser(r.tenant, r.userId, r.all ? undefined : r.purposes),
    });
  });
  afterEach(async () => {
    await store.close();
  });

  describe('at ingestion', () => {
    it('refuses consented data until the user grants its purpose, and public data never', async () => {
      expect(code(() => policy.admit(tagOf()))).toBe('SY_ERR_CONSENT_REQUIRED');
      expect(
        code(() => policy.admit(tagOf({ label: 'public', purpose: undefined }))),
      ).toBeUndefined();
      await consent.set('acme', 'u1', { behavioral_inference: true }, 'test');
      expect(code(() => policy.admit(tagOf()))).toBeUndefined();
      // Consent is per user, per tenant, per purpose.
      expect(code(() => policy.admit(tagOf({ userId: 'u2' })))).toBe('SY_ERR_CONSENT_REQUIRED');
      expect(code(() => policy.admit(tagOf({ tenant: 'globex' })))).toBe('SY_ERR_CONSENT_REQUIRED');
      expect(code(() => policy.admit(tagOf({ purpose: 'location' })))).toBe(
        'SY_ERR_CONSENT_REQUIRED',
      );
    });

    it('needs every purpose for consent-ruled data that names none (fail closed)', async () => {
      const t = tagOf({ purpose: undefined });
      await consent.set('acme', 'u1', { behavioral_inference: true, location: true }, 'test');
      expect(policy.decide('ingestion', t)).toMatchObject({
        allow: false,
        code: 'SY_ERR_CONSENT_REQUIRED',
      });
      await consent.set('acme', 'u1', { cross_service_personalization: true }, 'test');
      expect(policy.decide('ingestion', t).allow).toBe(true);
    });
  });

  describe('at retrieval', () => {
    it('filters out the values whose purpose the user has not granted, in order', async () => {
      await consent.set('acme', 'u1', { behavioral_inference: true }, 'test');
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.rides_7d', value: 3 },
        { entityId: 'u1', feature: 'user.home_city', value: 'Lyon' },
        { entityId: 'u1', feature: 'user.tier', value: 'gold' },
        { entityId: 'u1', feature: 'user.embedding', value: [0, 0, 0, 0] },
      ]);
      const entries = await store.readEntity('acme', 'u1');
      const kept = policy.filterRetrieved(entries, (e: FeatureEntry) => featureTag('acme', e));
      expect(kept.map((e) => e.feature).sort()).toEqual(['user.rides_7d', 'user.tier']);
    });

    it("guards vector search with a shard filter and a predicate that drops revoked users' vectors", async () => {
      await consent.set(
        'acme',
        'u1',
        { behavioral_inference: true, cross_service_personalization: true, location: true },
        'test',
      );
      const guard = policy.vectorGuard('acme');
      expect(guard.filter.jurisdictions).toEqual(['eu', null]);
      const meta = (over: Partial<VectorMetadata>): VectorMetadata => ({
        tenant: 'acme',
        label: 'consented',
        entityType: 'user',
        userId: 'u1',
        createdAt: 0,
        updatedAt: 0,
        ...over,
      });
      expect(guard.predicate(meta({}))).toBe(true);
      expect(guard.predicate(meta({ tenant: 'globex' }))).toBe(false);
      expect(guard.predicate(meta({ userId: 'u2' }))).toBe(false);
      expect(guard.predicate(meta({ jurisdiction: 'us' }))).toBe(false);
      expect(guard.predicate(meta({ label: 'public', userId: 'u2' }))).toBe(true);
      // The purpose attribute narrows the consent needed.
      await consent.revoke('acme', 'u1', ['location'], 'test');
      expect(guard.predicate(meta({}))).toBe(false);
      expect(guard.predicate(meta({ attrs: { purpose: 'behavioral_inference' } }))).toBe(true);
    });
  });

  describe('at model input', () => {
    it('strips what the target model may not see and says why, never with the value', async () => {
      await consent.set('acme', 'u1', { behavioral_inference: true, location: true }, 'test');
      const items = [
        { name: 'rides', t: tagOf() },
        { name: 'city', t: tagOf({ label: 'sensitive', purpose: 'location' }) },
        { name: 'risk', t: tagOf({ label: 'restricted' }) },
        { name: 'tier', t: tagOf({ label: 'public', purpose: undefined }) },
        { name: 'other-user', t: tagOf({ userId: 'u2' }) },
      ];
      const central = policy.stripModelInput(items, (i) => i.t, { tier: 'central' });
      expect(central.kept.map((i) => i.name)).toEqual(['rides', 'tier']);
      expect(central.stripped).toEqual([
        { index: 1, reason: 'sensitive data goes only to edge/regional models' },
        { index: 2, reason: 'restricted data: no model_input' },
        { index: 4, reason: 'no consent to behavioral_inference' },
      ]);
      const edge = policy.stripModelInput(items, (i) => i.t, { tier: 'edge' });
      expect(edge.kept.map((i) => i.name)).toEqual(['rides', 'city', 'tier']);
    });
  });

  describe('at logging', () => {
    it('redacts tagged values a log may not hold, in lines written by the production logger', async () => {
      await consent.set('acme', 'u1', { behavioral_inference: true, location: true }, 'test');
      let text = '';
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          text += chunk.toString('utf8');
          cb();
        },
      });
      const logger = createLogger('info', sink);
      expect(setLogRedactor(logger, (obj) => policy.redact(obj))).toBe(true);
      logger.child({ stage: 'features' }).info(
        {
          features: {
            rides: tag(tagOf(), 417),
            city: tag(tagOf({ label: 'sensitive', purpose: 'location' }), 'Lyon-7f3a'),
            risk: tag(tagOf({ label: 'restricted' }), 0.9731),
            other: tag(tagOf({ userId: 'u2' }), 'u2-secret-value'),
            precise: tag(tagOf({ label: 'consented', purpose: 'location' }), '45.7640,4.8357'),
          },
          list: [tag(tagOf({ label: 'sensitive', purpose: 'location' }), 'Paris-9c1d')],
        },
        'features read',
      );
      expect(text).toContain('"rides":417');
      for (const secret of ['Lyon-7f3a', '0.9731', 'u2-secret-value', '45.7640', 'Paris-9c1d'])
        expect(text).not.toContain(secret);
      expect(text).toContain('"city":"[redacted:sensitive]"');
      expect(text).toContain('"risk":"[redacted:restricted]"');
      // A per-purpose override (location: consented data is never logged) applies too.
      expect(text).toContain('"precise":"[redacted:consented]"');
    });

    it('redacts every non-public tagged value when no policy is installed (safe default)', () => {
      const line = JSON.stringify({ v: tag(tagOf({ label: 'consented' }), 'hidden-1234') });
      expect(line).toBe('{"v":"[redacted:consented]"}');
    });

    it('returns untagged objects unchanged, without copying', () => {
      const obj = { a: 1, b: [1, 2, { c: 'x' }] };
      expect(policy.redact(obj)).toBe(obj);
    });
  });

  describe('revocation', () => {
    it("purges the user's features in scope at once, calls every purge hook and audits the counts", async () => {
      await consent.set('acme', 'u1', { behavioral_inference: true, location: true }, 'test');
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.rides_7d', value: 3 },
        { entityId: 'u1', feature: 'user.home_city', value: 'Lyon' },
        { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
        { entityId: 'u2', feature: 'user.rides_7d', value: 4 },
      ]);
      const calls: PurgeRequest[] = [];
      consent.onPurge({
        name: 'vectors',
        purge: (r) => {
          calls.push(r);
          return Promise.resolve(5);
        },
      });
      const change = await consent.revoke('acme', 'u1', ['behavioral_inference'], 'key:abc');
      expect(change.revoked).toEqual(['behavioral_inference']);
      expect(change.purged).toEqual({ features: 2, vectors: 5 });
      expect(calls).toEqual([
        { tenant: 'acme', userId: 'u1', purposes: ['behavioral_inference'], all: false },
      ]);
      expect((await store.readEntity('acme', 'u1')).map((e) => e.feature)).toEqual([
        'user.home_city',
      ]);
      expect(await store.readEntity('acme', 's1')).toEqual([]);
      expect((await store.readEntity('acme', 'u2')).length).toBe(1);
      const [entry] = await audit.list({ action: 'consent.' });
      expect(entry).toMatchObject({
        actor: 'key:abc',
        action: 'consent.revoke',
        target: 'acme/u1',
        reason: 'revoked behavioral_inference',
        detail: { purged: { features: 2, vectors: 5 }, failed: {}, version: 2 },
      });
      expect(entry?.at).toBe(clock.wall());
    });

    it('records a failing purge hook in the change and the audit entry, and still purges the rest', async () => {
      await consent.set('acme', 'u1', { behavioral_inference: true }, 'test');
      await store.write('acme', [{ entityId: 'u1', feature: 'user.rides_7d', value: 3 }]);
      consent.onPurge({ name: 'broken', purge: () => Promise.reject(new Error('disk on fire')) });
      const change = await consent.revoke('acme', 'u1', 'all', 'system');
      expect(change.purged).toEqual({ features: 1 });
      expect(change.failed).toEqual({ broken: 'SY_ERR_INTERNAL' });
      const [entry] = await audit.list({ action: 'consent.revoke' });
      expect(entry?.detail).toMatchObject({ failed: { broken: 'SY_ERR_INTERNAL' } });
      // Enforcement does not wait for the purge: nothing of the user passes any more.
      expect(policy.decide('retrieval', tagOf()).allow).toBe(false);
    });

    it('does not purge or audit a revocation when nothing was granted', async () => {
      let called = 0;
      consent.onPurge({ name: 'count', purge: () => Promise.resolve(++called) });
      const change = await consent.revoke('acme', 'u9', 'all', 'test');
      expect(change.revoked).toEqual([]);
      expect(called).toBe(0);
      expect((await audit.list({ action: 'consent.revoke' })).length).toBe(0);
    });

    it('keeps consent records across a restart when they are stored in SQLite', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sy-consent-'));
      try {
        const path = join(dir, 'consent.db');
        const defaults = {
          behavioral_inference: false,
          cross_service_personalization: false,
          location: false,
        };
        const first = new ConsentBook({
          clock,
          audit,
          defaults,
          persistence: new SqliteConsentStore(path),
        });
        await first.set('acme', 'u1', { location: true }, 'test');
        await first.revoke('acme', 'u1', ['location'], 'test');
        await first.set('acme', 'u2', { behavioral_inference: true }, 'test');
        await first.close();
        const second = new ConsentBook({
          clock,
          audit,
          defaults,
          persistence: new SqliteConsentStore(path),
        });
        expect(second.get('acme', 'u1')).toMatchObject({
          version: 2,
          purposes: { location: false },
        });
        expect(second.get('acme', 'u2').purposes.behavioral_inference).toBe(true);
        expect(second.get('acme', 'u3').version).toBe(0);
        await second.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('every decision', () => {
    it('matches the rule table, the per-purpose overrides and the consent (property, fixed seed)', async () => {
      const labels = ['public', 'consented', 'sensitive', 'restricted'] as const;
      const purposes = [
        'behavioral_inference',
        'cross_service_personalization',
        'location',
      ] as const;
      const points = ['ingestion', 'retrieval', 'model_input', 'logging'] as const;
      const tiers = ['edge', 'regional', 'central'] as const;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...labels),
          fc.option(fc.constantFrom(...purposes), { nil: undefined }),
          fc.constantFrom(...points),
          fc.constantFrom(...tiers),
          fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()),
          fc.boolean(),
          async (label, purpose, point, tier, grants, hasUser) => {
            const granted = {
              behavioral_inference: grants[0],
              cross_service_personalization: grants[1],
              location: grants[2],
            };
            await consent.set('acme', 'p', granted, 'test');
            const t = tagOf({ label, purpose, userId: hasUser ? 'p' : undefined });
            const rule =
              (purpose === undefined ? undefined : RULES.purposes[purpose].labels[label]) ??
              RULES.labels[label];
            let expected = rule[point] !== 'deny';
            if (point === 'model_input' && rule.model_tiers !== undefined)
              expected &&= rule.model_tiers.includes(tier);
            if (rule[point] === 'consent' && hasUser)
              expected &&= purpose === undefined ? grants.every(Boolean) : granted[purpose];
            expect(policy.decide(point, t, { tier }).allow).toBe(expected);
          },
        ),
        { seed: 7, numRuns: 400 },
      );
    });
  });

  describe('residency', () => {
    it("maps a jurisdiction to its node set, this node joining its own jurisdiction's", () => {
      expect(policy.residency.nodesFor('eu')).toEqual(['regional-eu', 'edge-eu-1']);
      expect(policy.residency.nodesFor('us')).toEqual(['edge-us-1']);
      expect(policy.residency.nodesFor('mars')).toBeUndefined();
      expect(policy.residency.mayHold(undefined, 'anywhere')).toBe(true);
      expect(policy.residency.mayHold('eu')).toBe(true);
      expect(policy.residency.mayHold('us')).toBe(false);
    });

    it('refuses to store data tagged with another or an unknown jurisdiction on this node', () => {
      const pub = { label: 'public' as const, purpose: undefined };
      expect(code(() => policy.admit(tagOf({ ...pub, jurisdiction: 'eu' })))).toBeUndefined();
      expect(code(() => policy.admit(tagOf({ ...pub, jurisdiction: 'us' })))).toBe(
        'SY_ERR_RESIDENCY',
      );
      expect(code(() => policy.admit(tagOf({ ...pub, jurisdiction: 'mars' })))).toBe(
        'SY_ERR_RESIDENCY',
      );
    });

    it('never sends tagged data to a model on a node outside its jurisdiction', () => {
      const items = [
        tagOf({ label: 'public', purpose: undefined, jurisdiction: 'eu' }),
        tagOf({ label: 'public', purpose: undefined }),
      ];
      const here = policy.stripModelInput(items, (t) => t, { tier: 'edge' });
      expect(here.kept).toHaveLength(2);
      const euRegional = policy.stripModelInput(items, (t) => t, {
        tier: 'regional',
        node: 'regional-eu',
      });
      expect(euRegional.kept).toHaveLength(2);
      const usCentral = policy.stripModelInput(items, (t) => t, {
        tier: 'central',
        node: 'edge-us-1',
      });
      expect(usCentral.kept).toEqual([items[1]]);
      expect(usCentral.stripped).toEqual([
        { index: 0, reason: 'eu data may not be on node edge-us-1' },
      ]);
    });
  });
});
