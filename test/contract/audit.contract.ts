import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEntry, AuditLog } from '../../src/contracts/audit.js';

export interface AuditLogUnderTest {
  readonly log: AuditLog;
  /** Opens the same log again (durable implementations), as a restarted gateway would. */
  readonly reopen?: () => Promise<AuditLog>;
  close(): Promise<void>;
}

/** Makes a fresh, empty log. */
export type MakeAuditLog = () => Promise<AuditLogUnderTest>;

const entry = (at: number, over: Partial<AuditEntry> = {}): AuditEntry => ({
  at,
  actor: 'system',
  action: 'mode.auto',
  target: 'admission.mode',
  reason: `r${at}`,
  ...over,
});

/**
 * The AuditLog contract (#14): the SQLite and PostgreSQL state stores, the gateway's own SQLite
 * audit file and the memory log each run it from a file of a few lines.
 */
export function auditLogContract(
  name: string,
  make: MakeAuditLog,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`AuditLog contract: ${name}`, () => {
    const open: AuditLogUnderTest[] = [];
    const fresh = async (): Promise<AuditLogUnderTest> => {
      const l = await make();
      open.push(l);
      return l;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((l) => l.close()));
    });

    it('reads entries back newest first with increasing ids and before, after and detail intact', async () => {
      const { log } = await fresh();
      await log.appendAudit(
        entry(1, {
          actor: 'key:abc',
          action: 'mode.override',
          before: { mode: 'normal', forced: false, forced_until: null },
          after: { mode: 'surge', forced: true, forced_until: '2030-01-01T00:00:00.000Z' },
          detail: { from: 'normal', to: 'surge', nested: { list: [1, 'two', null] } },
        }),
      );
      await log.appendAudit(entry(2, { action: 'experiment.create', before: null, after: 'x' }));
      await log.appendAudit(entry(3));
      const all = await log.listAudit();
      expect(all.map((e) => e.at)).toEqual([3, 2, 1]);
      expect(all[0]!.id).toBeGreaterThan(all[1]!.id);
      expect(all[1]!.id).toBeGreaterThan(all[2]!.id);
      const { id: _id, ...first } = all[2]!;
      expect(first).toEqual({
        at: 1,
        actor: 'key:abc',
        action: 'mode.override',
        target: 'admission.mode',
        reason: 'r1',
        before: { mode: 'normal', forced: false, forced_until: null },
        after: { mode: 'surge', forced: true, forced_until: '2030-01-01T00:00:00.000Z' },
        detail: { from: 'normal', to: 'surge', nested: { list: [1, 'two', null] } },
      });
      // `null` (the thing did not exist) and absent (not recorded) stay apart.
      expect(all[1]).toMatchObject({ before: null, after: 'x' });
      expect(Object.keys(all[0]!).sort()).toEqual(
        ['action', 'actor', 'at', 'id', 'reason', 'target'].sort(),
      );
    });

    it('filters by action prefix taken literally, and by actor and target exactly', async () => {
      const { log } = await fresh();
      await log.appendAudit(entry(1, { action: 'model.push', target: 'intent@1' }));
      await log.appendAudit(
        entry(2, { action: 'model.promote', target: 'intent@1', actor: 'key:abc' }),
      );
      await log.appendAudit(entry(3, { action: 'experiment.rollback', target: 'exp-1' }));
      await log.appendAudit(entry(4, { action: 'Model.odd%_', target: 'intent@10' }));
      await log.appendAudit(entry(5, { action: 'modelx', target: 'x' }));
      const at = async (q: Parameters<AuditLog['listAudit']>[0]) =>
        (await log.listAudit(q)).map((e) => e.at);
      expect(await at({ action: 'model.' })).toEqual([2, 1]);
      expect(await at({ action: 'model' })).toEqual([5, 2, 1]);
      expect(await at({ action: 'model_' })).toEqual([]);
      expect(await at({ action: 'Model.odd%' })).toEqual([4]);
      expect(await at({ action: '%' })).toEqual([]);
      expect(await at({ actor: 'key:abc' })).toEqual([2]);
      expect(await at({ actor: 'key:ab' })).toEqual([]);
      expect(await at({ target: 'intent@1' })).toEqual([2, 1]);
      expect(await at({ target: 'intent@1', action: 'model.push' })).toEqual([1]);
    });

    it('filters by time, since and until both inclusive', async () => {
      const { log } = await fresh();
      for (const t of [1_000, 2_000, 3_000, 4_000]) await log.appendAudit(entry(t));
      const at = async (q: Parameters<AuditLog['listAudit']>[0]) =>
        (await log.listAudit(q)).map((e) => e.at);
      expect(await at({ since: 2_000 })).toEqual([4_000, 3_000, 2_000]);
      expect(await at({ until: 2_000 })).toEqual([2_000, 1_000]);
      expect(await at({ since: 2_000, until: 3_000 })).toEqual([3_000, 2_000]);
      expect(await at({ since: 5_000 })).toEqual([]);
    });

    it('pages through every entry with the last id as cursor, without gaps or repeats', async () => {
      const { log } = await fresh();
      for (let i = 1; i <= 7; i++)
        await log.appendAudit(entry(i, { action: i % 2 === 0 ? 'even.x' : 'odd.x' }));
      const seen: number[] = [];
      let beforeId: number | undefined;
      for (let page = 0; page < 10; page++) {
        const got = await log.listAudit({
          limit: 3,
          ...(beforeId === undefined ? {} : { beforeId }),
        });
        seen.push(...got.map((e) => e.at));
        if (got.length < 3) break;
        beforeId = got.at(-1)!.id;
      }
      expect(seen).toEqual([7, 6, 5, 4, 3, 2, 1]);
      const firstOdd = await log.listAudit({ action: 'odd.', limit: 2 });
      expect(firstOdd.map((e) => e.at)).toEqual([7, 5]);
      const nextOdd = await log.listAudit({ action: 'odd.', limit: 2, beforeId: firstOdd[1]!.id });
      expect(nextOdd.map((e) => e.at)).toEqual([3, 1]);
    });

    it('returns 100 entries by default and never fewer than one for a silly limit', async () => {
      const { log } = await fresh();
      for (let i = 1; i <= 120; i++) await log.appendAudit(entry(i));
      expect((await log.listAudit()).length).toBe(100);
      expect((await log.listAudit({ limit: 0 })).length).toBe(1);
      expect((await log.listAudit({ limit: 500 })).length).toBe(120);
    });

    it('keeps what it acknowledged when it is opened again', async (ctx) => {
      const l = await fresh();
      if (l.reopen === undefined) return ctx.skip();
      await l.log.appendAudit(entry(1, { action: 'consent.revoke', after: { purposes: [] } }));
      const again = await l.reopen();
      expect(await again.listAudit({ action: 'consent.' })).toMatchObject([
        { at: 1, action: 'consent.revoke', after: { purposes: [] } },
      ]);
    });
  });
}
