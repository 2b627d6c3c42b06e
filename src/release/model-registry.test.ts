import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteRegistryStore } from '../state/sqlite-registry-store.js';
import { ModelRegistry } from './model-registry.js';

const by = { actor: 'key:test', reason: 'test' };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'sy-reg-'));
  const store = new SqliteRegistryStore(join(dir, 'state.db'));
  const pinned = generateKeyPairSync('ed25519');
  const rogue = generateKeyPairSync('ed25519');
  const loaded: string[] = [];
  const onnxStore = join(dir, 'onnx-store');
  mkdirSync(onnxStore);
  const registry = new ModelRegistry({
    store,
    dir: join(dir, 'registry'),
    keys: new Map([['k1', pinned.publicKey]]),
    clock: { now: () => 1_000, wall: () => 1_700_000_000_000 },
    onStage: async (v) => {
      if (v.stage === 'canary' || v.stage === 'production' || v.stage === 'shadow') {
        await registry.materialize(v.model, v.version, onnxStore);
        loaded.push(`${v.model}@${v.version}`);
      }
    },
  });
  const artifact = (name: string, content: string): string => {
    const d = join(dir, 'src', name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'model.onnx'), content);
    writeFileSync(join(d, 'model.json'), JSON.stringify({ task: 'classify' }));
    return d;
  };
  cleanups.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, store, registry, pinned, rogue, loaded, onnxStore, artifact };
}

describe('the model registry', () => {
  it('pushes, signs and promotes a verified version, loading it into the model store', async () => {
    const s = setup();
    const v = await s.registry.push({
      model: 'intent',
      version: '1',
      source: s.artifact('a', 'weights-1'),
      by,
    });
    expect(v.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(v.files).toEqual(['model.json', 'model.onnx']);
    await s.registry.sign('intent', '1', 'k1', s.pinned.privateKey, by);
    await s.registry.promote('intent', '1', 'production', by);
    expect(s.loaded).toEqual(['intent@1']);
    expect(existsSync(join(s.onnxStore, '1', 'model.onnx'))).toBe(true);
    const audit = await s.store.listAudit({ target: 'intent@1' });
    expect(audit.map((e) => e.action)).toEqual(['model.promote', 'model.sign', 'model.push']);
  });

  it('refuses to load an unsigned version', async () => {
    const s = setup();
    await s.registry.push({ model: 'intent', version: '1', source: s.artifact('a', 'w'), by });
    await expect(s.registry.promote('intent', '1', 'canary', by)).rejects.toMatchObject({
      code: 'SY_ERR_ARTIFACT_UNSIGNED',
    });
    expect(s.loaded).toEqual([]);
    expect(existsSync(join(s.onnxStore, '1'))).toBe(false);
  });

  it('refuses a tampered artifact before it is loaded', async () => {
    const s = setup();
    await s.registry.push({ model: 'intent', version: '1', source: s.artifact('a', 'w'), by });
    await s.registry.sign('intent', '1', 'k1', s.pinned.privateKey, by);
    writeFileSync(join(s.dir, 'registry', 'intent', '1', 'model.onnx'), 'evil weights');
    await expect(s.registry.promote('intent', '1', 'production', by)).rejects.toMatchObject({
      code: 'SY_ERR_ARTIFACT_TAMPERED',
    });
    await expect(s.registry.materialize('intent', '1', s.onnxStore)).rejects.toMatchObject({
      code: 'SY_ERR_ARTIFACT_TAMPERED',
    });
    writeFileSync(join(s.dir, 'registry', 'intent', '1', 'model.onnx'), 'w');
    writeFileSync(join(s.dir, 'registry', 'intent', '1', 'extra.py'), 'import os');
    await expect(s.registry.promote('intent', '1', 'production', by)).rejects.toMatchObject({
      code: 'SY_ERR_ARTIFACT_TAMPERED',
    });
    expect(s.loaded).toEqual([]);
    expect((await s.store.getVersion('intent', '1'))?.stage).toBe('staging');
  });

  it('refuses a signature by a key that is not pinned, and a forged one', async () => {
    const s = setup();
    await s.registry.push({ model: 'intent', version: '1', source: s.artifact('a', 'w'), by });
    await expect(
      s.registry.sign('intent', '1', 'k1', s.rogue.privateKey, by),
    ).rejects.toMatchObject({ code: 'SY_ERR_SIGNATURE_INVALID' });
    await expect(
      s.registry.sign('intent', '1', 'k2', s.rogue.privateKey, by),
    ).rejects.toMatchObject({ code: 'SY_ERR_SIGNATURE_INVALID' });
    await expect(
      s.registry.attachSignature('intent', '1', 'k1', Buffer.alloc(64, 1).toString('base64'), by),
    ).rejects.toMatchObject({ code: 'SY_ERR_SIGNATURE_INVALID' });
    // A valid signature recorded, then the stored one swapped for another version's: refused at load.
    await s.registry.push({ model: 'intent', version: '2', source: s.artifact('b', 'w2'), by });
    await s.registry.sign('intent', '2', 'k1', s.pinned.privateKey, by);
    const sig2 = (await s.store.getVersion('intent', '2'))!.signature!;
    await s.store.updateVersion('intent', '1', { signature: sig2, keyId: 'k1' });
    await expect(s.registry.promote('intent', '1', 'shadow', by)).rejects.toMatchObject({
      code: 'SY_ERR_SIGNATURE_INVALID',
    });
    expect(s.loaded).toEqual([]);
  });

  it('refuses a production downgrade unless forced, and demotes the previous production version', async () => {
    const s = setup();
    for (const v of ['9', '10']) {
      await s.registry.push({ model: 'intent', version: v, source: s.artifact(v, `w${v}`), by });
      await s.registry.sign('intent', v, 'k1', s.pinned.privateKey, by);
    }
    await s.registry.promote('intent', '10', 'production', by);
    await expect(s.registry.promote('intent', '9', 'production', by)).rejects.toMatchObject({
      code: 'SY_ERR_VERSION_DOWNGRADE',
    });
    await s.registry.promote('intent', '9', 'production', { ...by, force: true });
    expect((await s.store.getVersion('intent', '10'))?.stage).toBe('staging');
    const last = (await s.store.listAudit({ action: 'model.promote', limit: 1 }))[0]!;
    expect(last.detail).toMatchObject({ forced: true, demoted: ['10'] });
  });

  it('refuses path traversal in names and symbolic links in artifacts', async () => {
    const s = setup();
    const src = s.artifact('a', 'w');
    for (const [model, version] of [
      ['../etc', '1'],
      ['intent', '../../x'],
      ['intent', '..'],
      ['a/b', '1'],
      ['.hidden', '1'],
    ])
      await expect(
        s.registry.push({ model: model!, version: version!, source: src, by }),
      ).rejects.toMatchObject({ code: 'SY_ERR_REGISTRY_INVALID' });
    symlinkSync('/etc/passwd', join(src, 'link'));
    await expect(
      s.registry.push({ model: 'intent', version: '1', source: src, by }),
    ).rejects.toMatchObject({ code: 'SY_ERR_REGISTRY_INVALID' });
  });

  it('refuses to overwrite a pushed version', async () => {
    const s = setup();
    await s.registry.push({ model: 'intent', version: '1', source: s.artifact('a', 'w'), by });
    await expect(
      s.registry.push({ model: 'intent', version: '1', source: s.artifact('b', 'x'), by }),
    ).rejects.toMatchObject({ code: 'SY_ERR_REGISTRY_CONFLICT' });
  });

  it('retires with a date and keeps production unless forced', async () => {
    const s = setup();
    await s.registry.push({ model: 'intent', version: '1', source: s.artifact('a', 'w'), by });
    await s.registry.sign('intent', '1', 'k1', s.pinned.privateKey, by);
    await s.registry.promote('intent', '1', 'production', by);
    await expect(s.registry.retire('intent', '1', by)).rejects.toMatchObject({
      code: 'SY_ERR_REGISTRY_CONFLICT',
    });
    await s.registry.push({ model: 'intent', version: '2', source: s.artifact('b', 'w2'), by });
    const later = await s.registry.retire('intent', '2', { ...by, retireAt: 1_800_000_000_000 });
    expect(later).toMatchObject({ stage: 'staging', retireAt: 1_800_000_000_000 });
    const now = await s.registry.retire('intent', '2', by);
    expect(now).toMatchObject({ stage: 'retired', retireAt: 1_700_000_000_000 });
  });
});
