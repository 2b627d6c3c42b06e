import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import type { ReleaseStage } from '../contracts/registry-store.js';
import { systemClock } from '../core/clock.js';
import { isSwitchyardError } from '../core/errors.js';
import { ModelRegistry } from '../release/model-registry.js';
import { openRegistryStore, pinnedKeys } from '../release/release-host.js';

export const REGISTRY_USAGE = `  switchyard models push --config FILE --model M --version V --artifact PATH [--meta k=v ...]
  switchyard models sign --config FILE --model M --version V --key PRIVATE.pem --key-id ID
  switchyard models list --config FILE [--model M]
  switchyard models promote --config FILE --model M --version V --stage STAGE --reason R [--force]
  switchyard models retire --config FILE --model M --version V --reason R [--at ISO-DATE] [--force]
  switchyard keys signing-create --id ID [--out DIR]
`;

export const REGISTRY_HELP = `models push       Copy an artifact (file or directory) into the registry, digest it (sha256), stage "staging".
models sign       Sign a version with an Ed25519 private key whose public key is pinned in release.signing_keys.
models list       Show models, versions, stages, digests and signatures.
models promote    Move a version to staging|shadow|canary|production (serving stages verify digest and
                  signature first; an in-process model is copied into its ONNX store and loads live).
models retire     Retire a version now or at --at; production only with --force.
keys signing-create  Make an Ed25519 signing key pair: ID.key.pem (keep secret) and ID.pub.pem (pin it).
`;

const actor = (): string => `cli:${userInfo().username}`;

async function openRegistry(configPath: string) {
  const snap = await loadConfigFile(configPath);
  const { state, release } = snap.config;
  if (state === undefined) throw new Error(`${snap.source}: the registry needs a "state:" section`);
  const store = await openRegistryStore(state, snap.dir);
  const registry: ModelRegistry = new ModelRegistry({
    store,
    dir: resolve(snap.dir, release.registry_dir),
    keys: pinnedKeys(release, snap.dir),
    clock: systemClock,
    // A serving gateway watches its ONNX stores: writing a verified version there loads it live.
    onStage: async (v) => {
      const mc = snap.config.models[v.model];
      if (mc?.backend !== 'onnx') return;
      const target = resolve(snap.dir, mc.store);
      if (v.stage === 'shadow' || v.stage === 'canary' || v.stage === 'production')
        await registry.materialize(v.model, v.version, target);
      else if (v.stage === 'retired') await registry.dematerialize(v.version, target);
    },
  });
  return { registry, store };
}

function need<T>(v: T | undefined, flag: string): T {
  if (v === undefined) throw new Error(`${flag} is required`);
  return v;
}

const common = {
  config: { type: 'string' },
  model: { type: 'string' },
  version: { type: 'string' },
  reason: { type: 'string' },
  force: { type: 'boolean' },
} as const;

/** `switchyard models push|sign|list|promote|retire ...` */
export async function runRegistryCommand(sub: string, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...common,
      artifact: { type: 'string' },
      meta: { type: 'string', multiple: true },
      key: { type: 'string' },
      'key-id': { type: 'string' },
      stage: { type: 'string' },
      at: { type: 'string' },
    },
  });
  const { registry, store } = await openRegistry(need(values.config, '--config'));
  try {
    const by = { actor: actor(), reason: values.reason ?? `switchyard models ${sub}` };
    const model = (): string => need(values.model, '--model');
    const version = (): string => need(values.version, '--version');
    let out: unknown;
    if (sub === 'push') {
      const metadata = Object.fromEntries(
        (values.meta ?? []).map((kv) => {
          const i = kv.indexOf('=');
          if (i <= 0) throw new Error(`--meta wants k=v, got ${kv}`);
          return [kv.slice(0, i), kv.slice(i + 1)];
        }),
      );
      out = await registry.push({
        model: model(),
        version: version(),
        source: need(values.artifact, '--artifact'),
        metadata,
        by,
      });
    } else if (sub === 'sign') {
      const key = createPrivateKey(readFileSync(need(values.key, '--key'), 'utf8'));
      out = await registry.sign(model(), version(), need(values['key-id'], '--key-id'), key, by);
    } else if (sub === 'list') {
      out = await store.listVersions(values.model);
    } else if (sub === 'promote') {
      if (values.reason === undefined)
        throw new Error('--reason is required (it goes into the audit trail)');
      out = await registry.promote(
        model(),
        version(),
        need(values.stage, '--stage') as ReleaseStage,
        {
          ...by,
          force: values.force === true,
        },
      );
    } else if (sub === 'retire') {
      if (values.reason === undefined)
        throw new Error('--reason is required (it goes into the audit trail)');
      const at = values.at === undefined ? undefined : Date.parse(values.at);
      if (at !== undefined && !Number.isFinite(at))
        throw new Error('--at must be an ISO 8601 date');
      out = await registry.retire(model(), version(), {
        ...by,
        force: values.force === true,
        ...(at === undefined ? {} : { retireAt: at }),
      });
    } else throw new Error(`unknown command "models ${sub}"`);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } catch (err) {
    if (isSwitchyardError(err)) throw new Error(`${err.code}: ${err.message}`);
    throw err;
  } finally {
    await store.close();
  }
}

/** `switchyard keys signing-create --id ID [--out DIR]`: an Ed25519 pair for signing models. */
export function runSigningCreate(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: { id: { type: 'string' }, out: { type: 'string' } },
  });
  const id = need(values.id, '--id');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) throw new Error('--id must be a plain name');
  const dir = values.out ?? '.';
  mkdirSync(dir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const priv = join(dir, `${id}.key.pem`);
  const pub = join(dir, `${id}.pub.pem`);
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
    flag: 'wx',
  });
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx' });
  process.stdout.write(
    `Signing key written to ${priv} (keep it secret; it never goes into the config).\n` +
      `Pin the public key in the gateway config:\n` +
      `release:\n  signing_keys:\n    - { id: ${id}, file: ${pub} }\n`,
  );
}
