import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isSwitchyardError } from '../../src/core/errors.js';
import { MemoryAuditSink } from '../../src/observability/audit-memory.js';
import { ConsentBook } from '../../src/privacy/consent-book.js';
import { RedisConsentStore } from '../../src/state/redis-consent-store.js';
import { ManualClock } from '../contract/feature-source.contract.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

function redisUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(REDIS);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

const up = await redisUp();
if (!up && process.env['CI'] === 'true') {
  describe('consent shared through Redis', () => {
    it('needs the Redis at 127.0.0.1:6379 in CI', () => {
      throw new Error('Redis is unreachable at 127.0.0.1:6379 and CI=true');
    });
  });
} else if (!up) console.warn('skipping the Redis consent tests: no Redis at 127.0.0.1:6379');

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
