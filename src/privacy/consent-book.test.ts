import { describe, expect, it } from 'vitest';
import type { AuditSink } from '../contracts/audit.js';
import type { ConsentPersistence, ConsentRecord } from '../contracts/policy.js';
import type { Clock } from '../core/clock.js';
import { isSwitchyardError } from '../core/errors.js';
import { ConsentBook } from './consent-book.js';

const clock: Clock = { now: () => 1, wall: () => 1_800_000_000_000 };
const audit: AuditSink = { record: () => undefined, list: () => Promise.resolve([]) };
const OPT_IN = {
  behavioral_inference: false,
  cross_service_personalization: false,
  location: false,
};
const OPT_OUT = { behavioral_inference: true, cross_service_personalization: true, location: true };

function book(
  max: number | undefined,
  extra: Partial<ConstructorParameters<typeof ConsentBook>[0]> = {},
) {
  return new ConsentBook({
    clock,
    audit,
    defaults: OPT_IN,
    ...(max === undefined ? {} : { maxRecordsPerTenant: max }),
    ...extra,
  });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isSwitchyardError(err) ? err.code : 'not a SwitchyardError';
  }
}

const grant = { location: true } as const;

describe('the consent book’s per-tenant cap of records (#13, finding 8)', () => {
  it('refuses a grant for one user more than the cap, and lets recorded users change', async () => {
    const b = book(2);
    await b.set('acme', 'u1', grant, 'test');
    await b.set('acme', 'u2', grant, 'test');
    expect(await code(b.set('acme', 'u3', grant, 'test'))).toBe('SY_ERR_TENANT_STORAGE_FULL');
    expect(b.get('acme', 'u3').version).toBe(0);
    expect(await code(b.set('acme', 'u1', { location: false }, 'test'))).toBeUndefined();
    expect(await code(b.set('globex', 'u3', grant, 'test'))).toBeUndefined();
    expect(Object.fromEntries(b.recordsByTenant())).toEqual({ acme: 2, globex: 1 });
  });

  it('never refuses a revocation, even of a new user past the cap', async () => {
    const b = book(1, { defaults: OPT_OUT });
    await b.revoke('acme', 'u1', ['location'], 'test');
    const change = await b.revoke('acme', 'u2', 'all', 'test');
    expect(change.revoked.length).toBe(3);
    expect(b.get('acme', 'u2').purposes.location).toBe(false);
    expect(b.recordsByTenant().get('acme')).toBe(2);
  });

  it('stores nothing at the cap for a new user whose change neither grants nor revokes', async () => {
    const b = book(1);
    await b.set('acme', 'u1', grant, 'test');
    const change = await b.revoke('acme', 'u2', 'all', 'test');
    expect(change.record.version).toBe(0);
    expect(b.recordsByTenant().get('acme')).toBe(1);
  });

  it('counts records still being written, so concurrent grants never pass the cap', async () => {
    const saves: (() => void)[] = [];
    const persistence: ConsentPersistence = {
      loadAll: () => [],
      save: () => new Promise<void>((resolve) => saves.push(resolve)),
      close: () => undefined,
    };
    const b = book(3, { persistence });
    const pending = Array.from({ length: 6 }, (_, i) =>
      code(b.set('acme', `u${i}`, grant, 'test')),
    );
    await new Promise((r) => setImmediate(r));
    for (const done of saves) done();
    const codes = await Promise.all(pending);
    expect(codes.filter((c) => c === undefined)).toHaveLength(3);
    expect(codes.filter((c) => c === 'SY_ERR_TENANT_STORAGE_FULL')).toHaveLength(3);
    expect(b.recordsByTenant().get('acme')).toBe(3);
  });

  it('counts records loaded from storage, and takes a new cap on reload', async () => {
    const stored: ConsentRecord[] = ['u1', 'u2'].map((userId) => ({
      tenant: 'acme',
      userId,
      purposes: { ...OPT_IN, location: true },
      updatedAt: 1,
      version: 1,
    }));
    const b = book(2, {
      persistence: { loadAll: () => stored, save: () => undefined, close: () => undefined },
    });
    expect(await code(b.set('acme', 'u3', grant, 'test'))).toBe('SY_ERR_TENANT_STORAGE_FULL');
    b.setMaxRecordsPerTenant(3);
    expect(await code(b.set('acme', 'u3', grant, 'test'))).toBeUndefined();
    b.setMaxRecordsPerTenant(undefined);
    expect(await code(b.set('acme', 'u4', grant, 'test'))).toBeUndefined();
  });
});

describe('consent changed at once in two places (#17)', () => {
  it('agrees in both, and keeps the revocation, when a grant elsewhere carries the same version', async () => {
    // Two books (two workers) whose stores hand each saved record to the other a turn later,
    // so both changes start from the same record and end with the same version.
    const books: ConsentBook[] = [];
    const listeners: ((r: ConsentRecord) => void)[] = [];
    const linked = (me: number): ConsentPersistence => ({
      loadAll: () => [],
      save: async (r) => {
        await new Promise((done) => setImmediate(done));
        listeners[1 - me]?.(r);
      },
      subscribe: (on) => {
        listeners[me] = on;
      },
      close: () => undefined,
    });
    books.push(
      book(undefined, { persistence: linked(0) }),
      book(undefined, { persistence: linked(1) }),
    );
    const [a, b] = books as [ConsentBook, ConsentBook];
    await a.set('acme', 'u1', { location: true }, 'test');
    expect(b.get('acme', 'u1').purposes.location).toBe(true);
    await Promise.all([
      a.revoke('acme', 'u1', ['location'], 'test'),
      b.set('acme', 'u1', { behavioral_inference: true }, 'test'),
    ]);
    expect(a.get('acme', 'u1').version).toBe(b.get('acme', 'u1').version);
    expect(a.get('acme', 'u1').purposes).toEqual(b.get('acme', 'u1').purposes);
    expect(a.get('acme', 'u1').purposes.location).toBe(false);
  });
});
