import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { loadConfigFile } from '../config/load.js';
import type { RegistryStore, ReleaseStage } from '../contracts/registry-store.js';
import { systemClock } from '../core/clock.js';
import { ModelRegistry, STAGES } from '../release/model-registry.js';
import { openRegistryStore, pinnedKeys } from '../release/release-host.js';
import { keyValue } from './args.js';
import { cliActor, CliUsageError, CliUserError } from './io.js';
import type { CommandKit } from './program.js';
import { createProgress } from './progress.js';

/** The model registry (#6) from the CLI: the same state store a gateway of the config uses. */
async function openRegistry(configPath: string) {
  const snap = await loadConfigFile(configPath);
  const { state, release } = snap.config;
  if (state === undefined)
    throw new CliUserError(`${snap.source}: the registry needs a "state:" section`);
  let keys: Map<string, KeyObject>;
  try {
    keys = pinnedKeys(release, snap.dir);
  } catch (err) {
    throw new CliUserError(
      `${snap.source}: release.signing_keys: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const store = await openRegistryStore(state, snap.dir);
  const registry: ModelRegistry = new ModelRegistry({
    store,
    dir: resolve(snap.dir, release.registry_dir),
    keys,
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

interface VersionOptions {
  readonly config: string;
  readonly model: string;
  readonly version: string;
  readonly reason?: string;
}

/** Runs `fn` on the config's registry, prints its result as JSON, and closes the store. */
function withRegistry<O extends { readonly config: string }>(
  kit: CommandKit,
  sub: string,
  fn: (
    o: O,
    r: { registry: ModelRegistry; store: RegistryStore; by: { actor: string; reason: string } },
  ) => Promise<unknown>,
): (o: O) => Promise<void> {
  return async (o) => {
    const { registry, store } = await openRegistry(o.config);
    try {
      const reason = (o as { reason?: string }).reason ?? `switchyard models ${sub}`;
      const out = await fn(o, { registry, store, by: { actor: cliActor(), reason } });
      kit.io.out(`${JSON.stringify(out, null, 2)}\n`);
    } finally {
      await store.close();
    }
  };
}

/** `--config`, `--model`, `--version` of every version command. */
const versionOptions = (cmd: ReturnType<CommandKit['group']>) =>
  cmd
    .requiredOption('-c, --config <file>', 'the gateway config (its state: store and release:)')
    .requiredOption('--model <name>', 'the model')
    .requiredOption('--version <version>', 'the version');

/** `models push|sign|list|promote|retire` and `keys signing-create`. */
export function registerRegistryCommands(kit: CommandKit): void {
  const models = kit.group('models');

  versionOptions(
    models
      .command('push')
      .description(
        'Copy an artifact (file or directory) into the registry, digest it (sha256) and record ' +
          'the version in stage "staging"; audited.',
      ),
  )
    .requiredOption('--artifact <path>', 'the model file or directory')
    .option('--meta <k=v>', 'metadata to keep with the version (repeatable)', keyValue)
    .option('--reason <text>', 'why (goes into the audit trail)')
    .action(
      kit.action(
        withRegistry(
          kit,
          'push',
          async (
            o: VersionOptions & { artifact: string; meta?: Record<string, string> },
            { registry, by },
          ) => {
            const progress = createProgress(kit.io);
            try {
              return await registry.push({
                model: o.model,
                version: o.version,
                source: o.artifact,
                metadata: o.meta ?? {},
                by,
                onProgress: progress.bar(`push ${o.model}@${o.version}`),
              });
            } finally {
              progress.stop();
            }
          },
        ),
      ),
    );

  versionOptions(
    models
      .command('sign')
      .description(
        'Sign a version with an Ed25519 private key whose public key is pinned in ' +
          'release.signing_keys; audited.',
      ),
  )
    .requiredOption('--key <file>', 'the private key (PEM)')
    .requiredOption('--key-id <id>', 'the id its public key is pinned under')
    .option('--reason <text>', 'why (goes into the audit trail)')
    .action(
      kit.action(
        withRegistry(kit, 'sign', (o: VersionOptions & { key: string; keyId: string }, r) => {
          let key: KeyObject;
          try {
            key = createPrivateKey(readFileSync(o.key, 'utf8'));
          } catch (err) {
            throw new CliUserError(
              `cannot use ${o.key} as a private key: ${err instanceof Error ? err.message : String(err)}`,
            );
          }
          return r.registry.sign(o.model, o.version, o.keyId, key, r.by);
        }),
      ),
    );

  models
    .command('list')
    .description('Show models, versions, stages, digests and signatures (JSON).')
    .requiredOption('-c, --config <file>', 'the gateway config (its state: store)')
    .option('--model <name>', 'only this model')
    .action(
      kit.action(
        withRegistry(kit, 'list', (o: { config: string; model?: string }, { store }) =>
          store.listVersions(o.model),
        ),
      ),
    );

  versionOptions(
    models
      .command('promote')
      .description(
        'Move a version to another stage (retired: as models retire). Serving stages verify digest ' +
          'and signature first; an in-process model is copied into its ONNX store and loads live.',
      ),
  )
    .addOption(new Option('--stage <stage>', 'the stage').choices(STAGES).makeOptionMandatory())
    .requiredOption('--reason <text>', 'why (goes into the audit trail)')
    .option('--force', 'allow a production downgrade')
    .action(
      kit.action(
        withRegistry(
          kit,
          'promote',
          (o: VersionOptions & { stage: ReleaseStage; reason: string; force?: boolean }, r) =>
            r.registry.promote(o.model, o.version, o.stage, { ...r.by, force: o.force === true }),
        ),
      ),
    );

  versionOptions(
    models
      .command('retire')
      .description('Retire a version now or at --at; the production version only with --force.')
      .addOption(
        new Option('--at <iso-date>', 'retire at this time instead of now').argParser(isoDate),
      ),
  )
    .requiredOption('--reason <text>', 'why (goes into the audit trail)')
    .option('--force', 'retire even the production version')
    .action(
      kit.action(
        withRegistry(
          kit,
          'retire',
          (o: VersionOptions & { reason: string; force?: boolean; at?: number }, r) =>
            r.registry.retire(o.model, o.version, {
              ...r.by,
              force: o.force === true,
              ...(o.at === undefined ? {} : { retireAt: o.at }),
            }),
        ),
      ),
    );

  kit
    .group('keys')
    .command('signing-create')
    .description(
      'Make an Ed25519 signing key pair for models: ID.key.pem (keep it secret) and ID.pub.pem ' +
        '(pin it in release.signing_keys).',
    )
    .requiredOption('--id <id>', 'the key id (a plain name)')
    .option('--out <dir>', 'where the two files go', '.')
    .action(kit.action((o: { id: string; out: string }) => signingCreate(o, kit)));
}

function isoDate(value: string): number {
  const at = Date.parse(value);
  if (!Number.isFinite(at)) throw new InvalidArgumentError('It must be an ISO 8601 date.');
  return at;
}

function signingCreate(o: { id: string; out: string }, kit: CommandKit): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(o.id))
    throw new CliUsageError('--id must be a plain name (letters, digits, . _ -)');
  mkdirSync(o.out, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const priv = join(o.out, `${o.id}.key.pem`);
  const pub = join(o.out, `${o.id}.pub.pem`);
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
    flag: 'wx',
  });
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx' });
  kit.io.out(
    `Signing key written to ${priv} (keep it secret; it never goes into the config).\n` +
      `Pin the public key in the gateway config:\n` +
      `release:\n  signing_keys:\n    - { id: ${o.id}, file: ${pub} }\n`,
  );
}
