import { afterEach, describe, expect, it } from 'vitest';
import type { BatchStore, StoredBatch, StoredFile } from '../../src/contracts/batch-store.js';

export interface BatchStoreUnderTest {
  readonly store: BatchStore;
  /** Opens the same store again, as a restarted gateway (or another replica) would. */
  reopen(): Promise<BatchStore>;
  close(): Promise<void>;
}

const file = (id: string, over: Partial<StoredFile> = {}): StoredFile => ({
  id,
  tenant: 'acme',
  filename: 'in.jsonl',
  purpose: 'batch',
  bytes: 3,
  createdAt: 1_800_000_000,
  expiresAt: null,
  ...over,
});

const batch = (id: string, over: Partial<StoredBatch> = {}): StoredBatch => ({
  id,
  tenant: 'acme',
  status: 'in_progress',
  createdAt: 1_800_000_000,
  batch: { id, object: 'batch', request_counts: { total: 2, completed: 0, failed: 0 } },
  ...over,
});

/** The BatchStore contract (#16): the SQLite and PostgreSQL stores each run it. */
export function batchStoreContract(
  name: string,
  make: () => Promise<BatchStoreUnderTest>,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`BatchStore contract: ${name}`, () => {
    const open: BatchStoreUnderTest[] = [];
    const fresh = async (): Promise<BatchStoreUnderTest> => {
      const s = await make();
      open.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    it('keeps a file and its bytes for its tenant only, and deletes it', async () => {
      const { store } = await fresh();
      const bytes = Buffer.from('{"a":"é ✓"}\n\u0000\xff', 'latin1');
      await store.putFile(file('file-1', { bytes: bytes.length }), bytes);
      expect(await store.getFile('acme', 'file-1')).toEqual(
        file('file-1', { bytes: bytes.length }),
      );
      expect((await store.fileContent('acme', 'file-1'))?.equals(bytes)).toBe(true);
      expect(await store.getFile('globex', 'file-1')).toBeUndefined();
      expect(await store.fileContent('globex', 'file-1')).toBeUndefined();
      expect(await store.listFiles('globex')).toEqual([]);
      expect(await store.deleteFile('globex', 'file-1')).toBe(false);
      expect(await store.deleteFile('acme', 'file-1')).toBe(true);
      expect(await store.getFile('acme', 'file-1')).toBeUndefined();
      expect(await store.deleteFile('acme', 'file-1')).toBe(false);
    });

    it('lists a tenant’s files and batches newest first', async () => {
      const { store } = await fresh();
      await store.putFile(file('file-a', { createdAt: 1 }), Buffer.from('a'));
      await store.putFile(file('file-b', { createdAt: 2 }), Buffer.from('b'));
      await store.putFile(file('file-c', { tenant: 'globex', createdAt: 3 }), Buffer.from('c'));
      expect((await store.listFiles('acme')).map((f) => f.id)).toEqual(['file-b', 'file-a']);
      await store.putBatch(batch('batch_a', { createdAt: 1 }));
      await store.putBatch(batch('batch_b', { createdAt: 2 }));
      await store.putBatch(batch('batch_c', { createdAt: 3, tenant: 'globex' }));
      expect((await store.listBatches('acme')).map((b) => b.id)).toEqual(['batch_b', 'batch_a']);
      expect(await store.getBatch('globex', 'batch_a')).toBeUndefined();
    });

    it('lists the active batches of every tenant, oldest first', async () => {
      const { store } = await fresh();
      await store.putBatch(batch('batch_1', { createdAt: 2 }));
      await store.putBatch(batch('batch_2', { createdAt: 1, tenant: 'globex' }));
      await store.putBatch(batch('batch_3', { status: 'completed' }));
      await store.putBatch(batch('batch_4', { status: 'cancelling', createdAt: 3 }));
      await store.putBatch(batch('batch_5', { status: 'failed' }));
      expect((await store.activeBatches()).map((b) => b.id)).toEqual([
        'batch_2',
        'batch_1',
        'batch_4',
      ]);
    });

    it('updates a batch only from the expected status, with its files in the same write', async () => {
      const { store } = await fresh();
      await store.putBatch(batch('batch_1'));
      const cancelling = batch('batch_1', { status: 'cancelling' });
      expect(await store.updateBatch(cancelling, ['completed'])).toBe(false);
      expect((await store.getBatch('acme', 'batch_1'))?.status).toBe('in_progress');
      const out = file('file-out', { purpose: 'batch_output' });
      expect(
        await store.updateBatch(
          batch('batch_1', { status: 'completed' }),
          ['in_progress'],
          [{ file: out, content: Buffer.from('x') }],
        ),
      ).toBe(true);
      const got = await store.getBatch('acme', 'batch_1');
      expect(got?.status).toBe('completed');
      expect(got?.batch['status']).toBe('completed');
      expect(await store.getFile('acme', 'file-out')).toEqual(out);
      // The status moved on: a late cancel loses, and writes no file.
      const late = file('file-late');
      expect(
        await store.updateBatch(
          cancelling,
          ['in_progress'],
          [{ file: late, content: Buffer.from('') }],
        ),
      ).toBe(false);
      expect(await store.getFile('acme', 'file-late')).toBeUndefined();
    });

    it('keeps a file’s expiry, and sweeps expired files (bytes and rows) but a running batch’s input', async () => {
      const { store } = await fresh();
      const at = (id: string, expiresAt: number | null, tenant = 'acme') =>
        store.putFile(file(id, { expiresAt, tenant }), Buffer.from(id));
      await at('file-old', 100);
      await at('file-now', 200);
      await at('file-later', 201);
      await at('file-kept', null);
      await at('file-input', 100);
      await at('file-done-input', 100);
      await at('file-globex', 100, 'globex');
      expect(await store.getFile('acme', 'file-later')).toEqual(
        file('file-later', { expiresAt: 201 }),
      );
      // A running batch reads its input again after a restart: it stays until the batch ends.
      await store.putBatch(batch('batch_run', { batch: { input_file_id: 'file-input' } }));
      await store.putBatch(
        batch('batch_done', { status: 'completed', batch: { input_file_id: 'file-done-input' } }),
      );
      // Another tenant's running batch of the same file id keeps nothing of this tenant's.
      await store.putBatch(
        batch('batch_other', { tenant: 'globex', batch: { input_file_id: 'file-old' } }),
      );
      expect(await store.sweepFiles(200)).toBe(4);
      expect((await store.listFiles('acme')).map((f) => f.id).sort()).toEqual([
        'file-input',
        'file-kept',
        'file-later',
      ]);
      expect(await store.fileContent('acme', 'file-old')).toBeUndefined();
      expect(await store.listFiles('globex')).toEqual([]);
      expect(await store.sweepFiles(200)).toBe(0);
      // Once the batch ended, its expired input goes too.
      await store.updateBatch(batch('batch_run', { status: 'completed' }), ['in_progress']);
      expect(await store.sweepFiles(200)).toBe(1);
      expect(await store.getFile('acme', 'file-input')).toBeUndefined();
    });

    it('claims a line once, commits it once, and survives a reopen', async () => {
      const u = await fresh();
      const { store } = u;
      expect(await store.claimLine('batch_1', 0, 'a', 10)).toBe(true);
      expect(await store.claimLine('batch_1', 0, 'a', 11)).toBe(false);
      expect(await store.claimLine('batch_1', 1, 'b', 12)).toBe(true);
      const again = await u.reopen();
      // Another runner (a restarted gateway, a replica) cannot claim what is claimed.
      expect(await again.claimLine('batch_1', 1, 'b', 13)).toBe(false);
      const result = { id: 'batch_req_1', custom_id: 'a', response: { status_code: 200 } };
      expect(await store.commitLine('batch_1', 0, { ok: true, result, cost: 0.25 })).toBe(true);
      expect(await again.commitLine('batch_1', 0, { ok: false, result: {}, cost: 1 })).toBe(false);
      const lines = await again.lines('batch_1');
      expect(lines).toEqual([
        {
          batchId: 'batch_1',
          index: 0,
          customId: 'a',
          state: 'done',
          startedAt: 10,
          ok: true,
          result,
          cost: 0.25,
        },
        {
          batchId: 'batch_1',
          index: 1,
          customId: 'b',
          state: 'started',
          startedAt: 12,
          ok: false,
          result: undefined,
          cost: 0,
        },
      ]);
      expect(await store.lines('batch_2')).toEqual([]);
    });

    it('gives back a started line, never a done one', async () => {
      const { store } = await fresh();
      await store.claimLine('batch_1', 0, 'a', 1);
      await store.claimLine('batch_1', 1, 'b', 1);
      await store.commitLine('batch_1', 1, { ok: true, result: { x: 1 }, cost: 0 });
      await store.releaseLine('batch_1', 0);
      await store.releaseLine('batch_1', 1);
      expect((await store.lines('batch_1')).map((l) => [l.index, l.state])).toEqual([[1, 'done']]);
      expect(await store.claimLine('batch_1', 0, 'a', 2)).toBe(true);
    });
  });
}
