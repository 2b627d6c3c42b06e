import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { VectorRecord } from '../../src/contracts/vector-index.js';
import { seededRandom } from '../../src/core/random.js';
import { MemoryAuditSink } from '../../src/observability/audit-memory.js';
import { ConsentBook } from '../../src/privacy/consent-book.js';
import { PolicyEngine } from '../../src/privacy/policy-engine.js';
import { ExactIndex } from '../../src/retrieval/exact-index.js';
import { intersectFilters } from '../../src/retrieval/filter.js';
import { ShardRouter } from '../../src/retrieval/shard-router.js';
import { UsearchShard } from '../../src/retrieval/usearch-shard.js';
import { ManualClock } from '../contract/vector-index.contract.js';
import { clustered, meta, near } from '../support/vectors.js';

const DIMS = 32;
const ANCHORS = 200;
const QUERIES = 10_000;

/**
 * Issue #7: another tenant's vectors, a revoked user's vectors and a purged user's vectors are
 * planted as the nearest neighbours of every query. None may come back, over 10k queries.
 */
describe('retrieval never leaks across tenants or past consent', () => {
  const clock = new ManualClock();
  const consent = new ConsentBook({
    clock,
    audit: new MemoryAuditSink(),
    defaults: { behavioral_inference: true, cross_service_personalization: true, location: true },
  });
  const privacy = parseConfig('{}', '<inline>', '/tmp').config.privacy;
  const policy = new PolicyEngine(privacy, consent);
  // exactBelow 0: searches go through the HNSW graph with over-fetch, where a leak could hide.
  const shared = new UsearchShard({
    id: 'shared',
    dims: DIMS,
    exactBelow: 0,
    random: seededRandom(1),
  });
  const hot = new ExactIndex({ id: 'hot', dims: DIMS, clock });
  const router = new ShardRouter(
    [
      {
        name: 'memories',
        dims: DIMS,
        metric: 'cos',
        shards: [
          {
            descriptor: {
              id: 'shared',
              collection: 'memories',
              dims: DIMS,
              metric: 'cos',
              location: { kind: 'local', node: 'n1' },
              key: { tier: 'warm' },
            },
            index: shared,
          },
          {
            descriptor: {
              id: 'hot',
              collection: 'memories',
              dims: DIMS,
              metric: 'cos',
              location: { kind: 'local', node: 'n1' },
              key: { tier: 'hot', entityTypes: ['session'] },
            },
            index: hot,
          },
        ],
      },
    ],
    { node: 'n1', clock },
  );
  const anchors = clustered(ANCHORS, DIMS, 20, 5);
  const rnd = seededRandom(9);

  beforeAll(async () => {
    const records: VectorRecord[] = [];
    anchors.forEach((a, i) => {
      // The rightful answers: acme's own, a little further away than the planted ones.
      records.push({
        id: `own-${i}`,
        vector: near(a, rnd, 0.05),
        meta: meta('acme', { userId: 'alice' }),
      });
      // Planted right on top of the anchor: another tenant, a revoked user, a purged user.
      records.push({
        id: `own-${i}`,
        vector: near(a, rnd, 0.001),
        meta: meta('globex', { userId: 'alice' }),
      });
      records.push({
        id: `rev-${i}`,
        vector: near(a, rnd, 0.001),
        meta: meta('acme', {
          userId: 'revoked',
          label: 'consented',
          attrs: { purpose: 'behavioral_inference' },
        }),
      });
      records.push({
        id: `gone-${i}`,
        vector: near(a, rnd, 0.001),
        meta: meta('acme', {
          userId: 'purged',
          label: 'sensitive',
          entityType: i % 2 === 0 ? 'session' : 'item',
        }),
      });
    });
    await router.upsert('memories', records);
    await consent.revoke('acme', 'revoked', ['behavioral_inference'], 'test');
    expect(await router.purgeUser('acme', 'purged')).toBe(ANCHORS);
  });
  afterAll(() => router.close());

  it('returns none of the planted vectors over 10k queries, and the tenant’s own ones instead', async () => {
    let leaked = 0;
    let own = 0;
    const guard = policy.vectorGuard('acme');
    for (let i = 0; i < QUERIES; i++) {
      const q = near(anchors[i % ANCHORS]!, rnd, 0.001);
      const { hits, partial } = await router.search('memories', {
        vector: q,
        k: 10,
        tenant: 'acme',
        filter: intersectFilters({ excludeUserIds: ['purged'] }, guard.filter)!,
        predicate: guard.predicate,
      });
      expect(partial).toBe(false);
      for (const h of hits) {
        if (h.meta.tenant !== 'acme' || h.meta.userId === 'revoked' || h.meta.userId === 'purged')
          leaked++;
      }
      if (hits[0]?.id === `own-${i % ANCHORS}`) own++;
    }
    expect(leaked).toBe(0);
    expect(own / QUERIES).toBeGreaterThan(0.95);
  });

  it('returns the revoked user’s vectors to nobody even without the policy predicate once purged', async () => {
    await router.purgeUser('acme', 'revoked');
    const { hits } = await router.search('memories', {
      vector: anchors[0]!,
      k: 50,
      tenant: 'acme',
    });
    expect(hits.some((h) => h.meta.userId === 'revoked' || h.meta.userId === 'purged')).toBe(false);
    expect(hits.every((h) => h.meta.tenant === 'acme')).toBe(true);
  });
});
