import { afterEach, describe, expect, it } from 'vitest';
import type {
  ExperimentRecord,
  ExperimentSpec,
  RegistryStore,
  VersionRecord,
} from '../../src/contracts/registry-store.js';

export interface StoreUnderTest {
  readonly store: RegistryStore;
  close(): Promise<void>;
}

/** Makes a fresh, empty store. */
export type MakeStore = () => Promise<StoreUnderTest>;

export const versionRecord = (
  model: string,
  version: string,
  over: Partial<VersionRecord> = {},
): VersionRecord => ({
  model,
  version,
  stage: 'staging',
  digest: `sha256:${'a'.repeat(64)}`,
  sizeBytes: 123,
  files: ['model.onnx'],
  createdAt: 1_000,
  updatedAt: 1_000,
  metadata: { owner: 'ds-team' },
  ...over,
});

const spec: ExperimentSpec = {
  id: 'exp-1',
  slot: 'intent',
  kind: 'canary',
  layer: 'default',
  traffic: 100,
  holdout: 0,
  variants: [
    { name: 'stable', model: 'intent', version: '1', weight: 1 },
    { name: 'canary', model: 'intent', version: '2', weight: 1 },
  ],
  ramp: { steps: [1, 5, 50], hold_s: 60 },
  rules: { p95_latency_ratio: 1.2, min_samples: 50, window_s: 30 },
};

const record = (over: Partial<ExperimentRecord> = {}): Omit<ExperimentRecord, 'revision'> => ({
  spec,
  status: 'running',
  allocation: { start: 0, end: 10_000 },
  step: 0,
  stepSince: 5,
  reason: 'created',
  createdAt: 5,
  updatedAt: 5,
  ...over,
});

/** The RegistryStore contract: every implementation's test file runs this. */
export function registryStoreContract(
  name: string,
  make: MakeStore,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`RegistryStore contract: ${name}`, () => {
    const open: StoreUnderTest[] = [];
    const fresh = async (): Promise<RegistryStore> => {
      const s = await make();
      open.push(s);
      return s.store;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    it('stores models and lists them by name', async () => {
      const s = await fresh();
      await s.upsertModel({ name: 'ranker', description: 'feed ranker', createdAt: 1 });
      await s.upsertModel({ name: 'intent', description: 'intent', createdAt: 2 });
      await s.upsertModel({ name: 'intent', description: 'intent v2 desc', createdAt: 3 });
      expect((await s.listModels()).map((m) => m.name)).toEqual(['intent', 'ranker']);
      expect(await s.getModel('intent')).toEqual({
        name: 'intent',
        description: 'intent v2 desc',
        createdAt: 2,
      });
      expect(await s.getModel('nope')).toBeUndefined();
    });

    it('inserts a version once and refuses a second insert of the same version', async () => {
      const s = await fresh();
      expect(await s.insertVersion(versionRecord('intent', '1'))).toBe(true);
      expect(await s.insertVersion(versionRecord('intent', '1', { digest: 'sha256:other' }))).toBe(
        false,
      );
      const v = await s.getVersion('intent', '1');
      expect(v).toEqual(versionRecord('intent', '1'));
    });

    it('patches stage, signature and retirement and keeps everything else', async () => {
      const s = await fresh();
      await s.insertVersion(versionRecord('intent', '1'));
      await s.insertVersion(versionRecord('intent', '2', { createdAt: 2_000 }));
      const signed = await s.updateVersion('intent', '2', {
        signature: 'c2ln',
        keyId: 'k1',
        updatedAt: 3_000,
      });
      expect(signed?.signature).toBe('c2ln');
      const retired = await s.updateVersion('intent', '1', {
        stage: 'retired',
        retireAt: 4_000,
        updatedAt: 4_000,
      });
      expect(retired).toMatchObject({
        stage: 'retired',
        retireAt: 4_000,
        digest: `sha256:${'a'.repeat(64)}`,
        metadata: { owner: 'ds-team' },
      });
      expect((await s.listVersions('intent')).map((v) => [v.version, v.stage, v.keyId])).toEqual([
        ['1', 'retired', undefined],
        ['2', 'staging', 'k1'],
      ]);
      expect(await s.updateVersion('intent', '9', { stage: 'production' })).toBeUndefined();
      expect(await s.listVersions('other')).toEqual([]);
      expect((await s.listVersions()).length).toBe(2);
    });

    it('writes experiments with compare-and-set on the revision', async () => {
      const s = await fresh();
      const first = await s.putExperiment(record(), 0);
      expect(first?.revision).toBe(1);
      expect(await s.putExperiment(record(), 0)).toBeUndefined();
      const moved = await s.putExperiment(record({ step: 1, stepSince: 9 }), 1);
      expect(moved).toMatchObject({ revision: 2, step: 1, stepSince: 9 });
      expect(await s.putExperiment(record({ step: 2 }), 1)).toBeUndefined();
      expect(await s.getExperiment('exp-1')).toEqual(moved);
      expect((await s.listExperiments()).map((e) => e.spec.id)).toEqual(['exp-1']);
      expect(await s.deleteExperiment('exp-1')).toBe(true);
      expect(await s.deleteExperiment('exp-1')).toBe(false);
      expect(await s.getExperiment('exp-1')).toBeUndefined();
    });

    it('adds counters atomically, merging repeated keys', async () => {
      const s = await fresh();
      const k = { experiment: 'e', variant: 'a', segment: '', metric: 'latency_ms' };
      await s.addCounters([
        { ...k, n: 1, sum: 10, sumSq: 100 },
        { ...k, n: 1, sum: 20, sumSq: 400 },
        { ...k, variant: 'b', n: 2, sum: 3, sumSq: 5 },
      ]);
      await Promise.all(
        Array.from({ length: 10 }, () => s.addCounters([{ ...k, n: 1, sum: 1, sumSq: 1 }])),
      );
      await s.addCounters([]);
      const rows = await s.readCounters('e');
      expect(rows).toEqual([
        { ...k, n: 12, sum: 40, sumSq: 510 },
        { ...k, variant: 'b', n: 2, sum: 3, sumSq: 5 },
      ]);
      expect(await s.readCounters('other')).toEqual([]);
    });

    it('appends exposures and finds them by experiment and by inference id, newest first', async () => {
      const s = await fresh();
      const row = (i: number) => ({
        inferenceId: `req-${i}`,
        at: i,
        experiment: i % 2 === 0 ? 'even' : 'odd',
        variant: 'treatment',
        seed: 'seed-x',
        bucket: i * 7,
        model: 'intent',
        version: '2',
        unit: `acme/u${i}`,
        tenant: 'acme',
        segment: '',
      });
      await s.appendExposures(Array.from({ length: 20 }, (_, i) => row(i)));
      const even = await s.listExposures({ experiment: 'even', limit: 3 });
      expect(even.map((e) => e.inferenceId)).toEqual(['req-18', 'req-16', 'req-14']);
      expect(await s.listExposures({ inferenceId: 'req-7' })).toEqual([row(7)]);
    });

    it("keeps an exposure's tenant and bandit segment, and finds it by inference id and tenant (#15)", async () => {
      const s = await fresh();
      const row = (tenant: string, segment: string, at: number) => ({
        inferenceId: 'shared-id',
        at,
        experiment: 'reco-bandit',
        variant: 'b',
        seed: 'reco-bandit',
        bucket: 42,
        model: 'reco',
        version: '2',
        unit: `${tenant}/u1`,
        tenant,
        segment,
      });
      // Two tenants sent the same x-request-id: each finds only its own exposure.
      await s.appendExposures([row('acme', 'geo=eu', 1), row('beta', 'geo=us', 2)]);
      expect(await s.listExposures({ inferenceId: 'shared-id', tenant: 'acme' })).toEqual([
        row('acme', 'geo=eu', 1),
      ]);
      expect(await s.listExposures({ inferenceId: 'shared-id', tenant: 'beta' })).toEqual([
        row('beta', 'geo=us', 2),
      ]);
      expect(await s.listExposures({ inferenceId: 'shared-id', tenant: 'gamma' })).toEqual([]);
      const both = await s.listExposures({ inferenceId: 'shared-id' });
      expect(both.map((e) => [e.tenant, e.segment])).toEqual([
        ['beta', 'geo=us'],
        ['acme', 'geo=eu'],
      ]);
    });

    it('counts changes to the registry and to experiments', async () => {
      const s = await fresh();
      const c0 = await s.changeCounter();
      await s.upsertModel({ name: 'm', description: '', createdAt: 1 });
      await s.insertVersion(versionRecord('m', '1'));
      await s.putExperiment(record(), 0);
      expect(await s.changeCounter()).toBe(c0 + 3);
      await s.addCounters([
        { experiment: 'e', variant: 'a', segment: '', metric: 'x', n: 1, sum: 1, sumSq: 1 },
      ]);
      expect(await s.changeCounter()).toBe(c0 + 3);
    });
  });
}

/** An exposure written before #15, as a store upgraded since reads it: no tenant, no segment. */
export const LEGACY_EXPOSURE = {
  inferenceId: 'old-1',
  at: 5,
  experiment: 'exp-old',
  variant: 'control',
  seed: 'exp-old',
  bucket: 7,
  model: 'intent',
  version: '1',
  unit: 'acme/u1',
  tenant: '',
  segment: '',
} as const;
