import { describe, expect, it } from 'vitest';
import type { AuditSink } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { ConsentBook } from '../privacy/consent-book.js';
import { ClusterBus } from '../../test/support/cluster-bus.js';
import { CONSENT_COPY_TOPIC, sharedConsent } from './shared-consent.js';

const clock: Clock = { now: () => 1, wall: () => 1_800_000_000_000 };
const audit: AuditSink = { record: () => undefined, list: () => Promise.resolve([]) };
const logger = { error: () => undefined } as unknown as Logger;
// Opt-out defaults: a revocation a worker never learned of shows as consent granted.
const OPT_OUT = { behavioral_inference: true, cross_service_personalization: true, location: true };

/** One worker's consent book, shared over the bus as `wiring/personalization.ts` shares it. */
function worker(bus: ClusterBus, up = true, chunk?: number) {
  const w = bus.join(up);
  const held: { book?: ConsentBook } = {};
  const shared = sharedConsent(
    undefined,
    w.peer,
    () => Promise.resolve(),
    () => held.book,
    logger,
    chunk,
  );
  const book = new ConsentBook({ clock, audit, defaults: OPT_OUT, persistence: shared });
  held.book = book;
  return { w, book, shared };
}

const allowsLocation = (book: ConsentBook, user: string) =>
  book.get('acme', user).purposes.location;

describe('consent shared by the workers of serve --workers N without a consent store (#17)', () => {
  it('leaves the primary holding no consent change, however many are made (only the mode override is kept)', async () => {
    const bus = new ClusterBus();
    const a = worker(bus);
    const b = worker(bus);
    for (let i = 0; i < 200; i++) {
      await a.book.revoke('acme', `u${i}`, ['location'], 'test');
      await b.book.set('acme', `u${i}`, { location: true }, 'test');
    }
    expect(allowsLocation(b.book, 'u199')).toBe(true);
    expect(bus.retained.size).toBe(0);
    // The mode override is one value: it is kept, once, however often it changes.
    for (let i = 0; i < 5; i++)
      await a.w.peer.broadcast('mode.override', { mode: `m${i}` }, { retain: true });
    expect(bus.retained.replay()).toEqual([['mode.override', { mode: 'm4' }]]);
  });

  it('copies every record to a worker that starts, chunk by chunk, and applies the changes made meanwhile after the copy', async () => {
    const bus = new ClusterBus();
    const a = worker(bus);
    for (let i = 0; i < 10; i++) await a.book.revoke('acme', `u${i}`, ['location'], 'test');
    await a.book.set('acme', 'u0', { location: true }, 'test');
    await a.book.set('acme', 'u5', { location: true }, 'test');

    const c = worker(bus, false, 3);
    // Once the first chunk (u0, u1, u2) went out, u0 withdraws the consent it had granted.
    let chunks = 0;
    const during: Promise<unknown>[] = [];
    const askPeer = c.w.peer.askPeer.bind(c.w.peer);
    c.w.peer.askPeer = async (topic, body) => {
      const answer = await askPeer(topic, body);
      if (topic === CONSENT_COPY_TOPIC && ++chunks === 1)
        during.push(a.book.revoke('acme', 'u0', ['location'], 'test'));
      return answer;
    };

    expect(await c.shared.join()).toBe(10);
    expect(chunks).toBe(4);
    await Promise.all(during);
    // It waits for the worker to start, as the broadcasts to a worker that is not serving yet do.
    expect(allowsLocation(c.book, 'u0')).toBe(true);
    await bus.start(c.w);

    expect(allowsLocation(c.book, 'u0')).toBe(false);
    expect(c.book.get('acme', 'u0').version).toBe(3);
    expect(allowsLocation(c.book, 'u1')).toBe(false);
    expect(allowsLocation(c.book, 'u9')).toBe(false);
    expect(allowsLocation(c.book, 'u5')).toBe(true);
    expect(bus.retained.size).toBe(0);
  });

  it('hands a worker that starts while a revocation is being relayed that revocation, which its copy lacks', async () => {
    const bus = new ClusterBus();
    const a = worker(bus);
    // A third worker slow to apply consent changes keeps the relay of one open.
    const slow = bus.join();
    let release = (): void => undefined;
    let reached = (): void => undefined;
    const arrived = new Promise<void>((r) => (reached = r));
    let hold = false;
    slow.peer.on('consent.record', () => {
      if (!hold) return undefined;
      reached();
      return new Promise<void>((r) => (release = r));
    });
    await a.book.set('acme', 'u1', { location: true }, 'test');

    hold = true;
    const revoking = a.book.revoke('acme', 'u1', ['location'], 'test');
    await arrived;
    // The worker that made the change holds it only once every other worker applied it: a copy
    // from it now has the grant.
    expect(allowsLocation(a.book, 'u1')).toBe(true);
    const c = worker(bus, false);
    expect(await c.shared.join()).toBe(1);
    expect(allowsLocation(c.book, 'u1')).toBe(true);
    release();
    await revoking;
    await bus.start(c.w);
    expect(allowsLocation(c.book, 'u1')).toBe(false);
    expect(c.book.get('acme', 'u1').version).toBe(2);
  });

  it('copies nothing when no other worker is up', async () => {
    const bus = new ClusterBus();
    const a = worker(bus, false);
    await a.book.revoke('acme', 'u1', ['location'], 'test');
    const c = worker(bus, false);
    expect(await c.shared.join()).toBe(0);
    expect(allowsLocation(c.book, 'u1')).toBe(true);
  });
});
