import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sharedRedisOrSkip } from '../support/redis-server.js';
import { isSwitchyardError } from '../../src/core/errors.js';
import { MemoryAuditSink } from '../../src/observability/audit-memory.js';
import { ConsentBook } from '../../src/privacy/consent-book.js';
import { RedisConsentStore } from '../../src/state/redis-consent-store.js';
import { ManualClock } from '../contract/feature-source.contract.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

const up = await sharedRedisOrSkip('the Redis consent tests');

const defaults = {
  behavioral_inference: false,
  cross_service_personalization: false,
  location: false,
};

describe.skipIf(!up)('consent shared through Redis by the replicas of a scaled deployment', () => {
  const prefix = `sy-test:consent:${randomBytes(4).toString('hex')}:`;
  const books: ConsentBook[] = [];
  afterEach(async () => {
    for (const b of books.splice(0)) await b.close();
    const { Redis } = await import('ioredis');
    const r = new Redis(`redis://${REDIS.host}:${REDIS.port}`);
    const keys = await r.keys(`${prefix}*`);
    if (keys.length > 0) await r.del(...keys);
    r.disconnect();
  });

  async function replica(): Promise<ConsentBook> {
    const store = new RedisConsentStore({
      url: `redis://${REDIS.host}:${REDIS.port}`,
      prefix,
      commandTimeoutMs: 1_000,
    });
    expect(await store.ready(2_000)).toBe(true);
    const book = new ConsentBook({
      clock: new ManualClock(),
      audit: new MemoryAuditSink(),
      defaults,
      persistence: store,
    });
    await book.ready();
    books.push(book);
    return book;
  }

  it('enforces a revocation made on one replica on every other one', async () => {
    const a = await replica();
    const b = await replica();
    await a.set('acme', 'u1', { location: true, behavioral_inference: true }, 'test');
    await vi.waitFor(() => expect(b.get('acme', 'u1').purposes.location).toBe(true), {
      timeout: 10_000,
    });
    await a.revoke('acme', 'u1', ['location'], 'test');
    await vi.waitFor(() => expect(b.get('acme', 'u1').purposes.location).toBe(false), {
      timeout: 10_000,
    });
    expect(b.get('acme', 'u1')).toMatchObject({
      version: 2,
      purposes: { behavioral_inference: true },
    });
    // A replica started later loads the records.
    const c = await replica();
    expect(c.get('acme', 'u1')).toMatchObject({ version: 2, purposes: { location: false } });
  });

  it('refuses a consent change with 503 SY_ERR_CONSENT_UNAVAILABLE when Redis is away, changing nothing', async () => {
    const store = new RedisConsentStore({
      url: 'redis://127.0.0.1:9',
      prefix,
      commandTimeoutMs: 50,
    });
    const book = new ConsentBook({
      clock: new ManualClock(),
      audit: new MemoryAuditSink(),
      defaults,
      persistence: store,
    });
    books.push(book);
    await book.ready();
    const err = await book.set('acme', 'u2', { location: true }, 'test').catch((e: unknown) => e);
    expect(isSwitchyardError(err) && err.code).toBe('SY_ERR_CONSENT_UNAVAILABLE');
    expect(book.get('acme', 'u2').version).toBe(0);
  });
});
