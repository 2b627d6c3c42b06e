import { afterEach, describe, expect, it } from 'vitest';
import type { ResponseStore, StoredResponse } from '../../src/contracts/response-store.js';

export interface ResponseStoreUnderTest {
  readonly store: ResponseStore;
  /** Opens the same store again, as a restarted gateway (or another replica) would. */
  reopen(): Promise<ResponseStore>;
  close(): Promise<void>;
}

const T0 = 1_800_000_000_000;

const stored = (id: string, over: Partial<StoredResponse> = {}): StoredResponse => ({
  id,
  tenant: 'acme',
  user: 'u-1',
  createdAt: T0,
  expiresAt: T0 + 60_000,
  response: { id, object: 'response', output: [{ type: 'message', content: [{ text: 'é ✓' }] }] },
  input: [{ id: 'msg_1', type: 'message', role: 'user', content: [] }],
  context: [{ id: 'msg_0', type: 'message', role: 'user', content: [] }],
  ...over,
});

/** The ResponseStore contract (#16): the SQLite and PostgreSQL stores each run it. */
export function responseStoreContract(
  name: string,
  make: () => Promise<ResponseStoreUnderTest>,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`ResponseStore contract: ${name}`, () => {
    const open: ResponseStoreUnderTest[] = [];
    const fresh = async (): Promise<ResponseStoreUnderTest> => {
      const s = await make();
      open.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    it('reads back what it stored, intact, after a reopen', async () => {
      const { store, reopen } = await fresh();
      const r = stored('resp_a');
      await store.put(r);
      expect(await store.get('acme', 'resp_a', T0)).toEqual(r);
      expect(await (await reopen()).get('acme', 'resp_a', T0)).toEqual(r);
    });

    it('keeps tenants apart: another tenant reads, deletes and purges nothing of it', async () => {
      const { store } = await fresh();
      await store.put(stored('resp_a'));
      expect(await store.get('other', 'resp_a', T0)).toBeUndefined();
      expect(await store.delete('other', 'resp_a')).toBe(false);
      expect(await store.purgeUser('other', 'u-1')).toBe(0);
      expect(await store.get('acme', 'resp_a', T0)).toBeDefined();
    });

    it('the same id in two tenants is two responses', async () => {
      const { store } = await fresh();
      await store.put(stored('resp_a'));
      await store.put(stored('resp_a', { tenant: 'other', user: undefined }));
      expect((await store.get('other', 'resp_a', T0))?.user).toBeUndefined();
      expect((await store.get('acme', 'resp_a', T0))?.user).toBe('u-1');
    });

    it('deletes once: true, then false, then it is gone', async () => {
      const { store } = await fresh();
      await store.put(stored('resp_a'));
      expect(await store.delete('acme', 'resp_a')).toBe(true);
      expect(await store.delete('acme', 'resp_a')).toBe(false);
      expect(await store.get('acme', 'resp_a', T0)).toBeUndefined();
    });

    it('never returns an expired response, and the sweep deletes only expired ones', async () => {
      const { store } = await fresh();
      await store.put(stored('resp_old', { expiresAt: T0 + 10 }));
      await store.put(stored('resp_new', { expiresAt: T0 + 1_000 }));
      expect(await store.get('acme', 'resp_old', T0 + 9)).toBeDefined();
      expect(await store.get('acme', 'resp_old', T0 + 10)).toBeUndefined();
      expect(await store.sweep(T0 + 10)).toBe(1);
      expect(await store.get('acme', 'resp_old', T0)).toBeUndefined();
      expect(await store.get('acme', 'resp_new', T0 + 10)).toBeDefined();
    });

    it("purges every response of one user, and no one else's", async () => {
      const { store } = await fresh();
      await store.put(stored('resp_1'));
      await store.put(stored('resp_2'));
      await store.put(stored('resp_3', { user: 'u-2' }));
      await store.put(stored('resp_4', { user: undefined }));
      expect(await store.purgeUser('acme', 'u-1')).toBe(2);
      expect(await store.get('acme', 'resp_1', T0)).toBeUndefined();
      expect(await store.get('acme', 'resp_3', T0)).toBeDefined();
      expect(await store.get('acme', 'resp_4', T0)).toBeDefined();
    });
  });
}
