import type { KeyObject } from 'node:crypto';
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEntry } from '../contracts/audit.js';
import type { RegistryStore, ReleaseStage, VersionRecord } from '../contracts/registry-store.js';
import type { Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import {
  checkName,
  digestOf,
  inside,
  listArtifactFiles,
  signArtifact,
  verifyArtifactSignature,
} from './artifacts.js';

export const STAGES: readonly ReleaseStage[] = [
  'staging',
  'shadow',
  'canary',
  'production',
  'retired',
];
/** Stages in which a version may be loaded and receive traffic: it must verify first. */
const SERVING: ReadonlySet<ReleaseStage> = new Set(['shadow', 'canary', 'production']);

/** Numeric-aware version order: 2 < 10, 1.2 < 1.10 (the ONNX model store's order). */
export const compareVersions = (a: string, b: string): number =>
  a.localeCompare(b, 'en', { numeric: true });

export interface ModelRegistryOptions {
  readonly store: RegistryStore;
  /** Where artifacts live: `<dir>/<model>/<version>/…`. */
  readonly dir: string;
  /** Pinned Ed25519 public keys by key id: the only keys a signature may verify against. */
  readonly keys: ReadonlyMap<string, KeyObject>;
  readonly clock: Clock;
  /**
   * Called after a version changed stage (loads it into, or unloads it from, a serving backend).
   * Verification has already passed for serving stages.
   */
  readonly onStage?: (version: VersionRecord, previous: ReleaseStage) => Promise<void>;
}

export interface Actor {
  readonly actor: string;
  readonly reason: string;
}

/**
 * The model registry: versions with a sha256 digest and an Ed25519 signature, verified against
 * pinned keys before any load; stages with a retirement date; every change audited (durably,
 * before the change is acknowledged).
 */
export class ModelRegistry {
  constructor(private readonly opts: ModelRegistryOptions) {}

  get store(): RegistryStore {
    return this.opts.store;
  }

  artifactDir(model: string, version: string): string {
    return inside(this.opts.dir, checkName('model', model), checkName('version', version));
  }

  /** Durable before the change is acknowledged; `before`/`after` show the version's state. */
  private async audit(
    e: Omit<AuditEntry, 'at' | 'before' | 'after'>,
    before: VersionRecord | null,
    after: VersionRecord | undefined,
  ): Promise<void> {
    await this.opts.store.appendAudit({
      at: this.opts.clock.wall(),
      ...e,
      before: versionView(before),
      after: versionView(after ?? null),
    });
  }

  private async must(model: string, version: string): Promise<VersionRecord> {
    const v = await this.opts.store.getVersion(
      checkName('model', model),
      checkName('version', version),
    );
    if (v === undefined) throw syError('SY_ERR_REGISTRY_NOT_FOUND', `${model}@${version}`);
    return v;
  }

  /** Copies an artifact (file or directory) in, digests it, and records the version (staging). */
  async push(p: {
    readonly model: string;
    readonly version: string;
    readonly source: string;
    readonly description?: string;
    readonly metadata?: Readonly<Record<string, string>>;
    readonly by: Actor;
    /** Files copied so far, of all (for a progress bar). */
    readonly onProgress?: (done: number, total: number) => void;
  }): Promise<VersionRecord> {
    const model = checkName('model', p.model);
    const version = checkName('version', p.version);
    if ((await this.opts.store.getVersion(model, version)) !== undefined)
      throw syError(
        'SY_ERR_REGISTRY_CONFLICT',
        `${model}@${version} exists; versions are immutable`,
      );
    const { root, files } = await listArtifactFiles(p.source);
    const dest = this.artifactDir(model, version);
    const tmp = `${dest}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(tmp, { recursive: true });
    try {
      for (const [i, f] of files.entries()) {
        const to = inside(tmp, f);
        await mkdir(join(to, '..'), { recursive: true });
        await cp(inside(root, f), to, { errorOnExist: true, force: false });
        p.onProgress?.(i + 1, files.length);
      }
      // The digest is of the copy: what is stored is what was hashed.
      const { digest, size } = await digestOf(tmp, files);
      await rm(dest, { recursive: true, force: true });
      await rename(tmp, dest);
      const now = this.opts.clock.wall();
      if ((await this.opts.store.getModel(model)) === undefined)
        await this.opts.store.upsertModel({
          name: model,
          description: p.description ?? '',
          createdAt: now,
        });
      const record: VersionRecord = {
        model,
        version,
        stage: 'staging',
        digest,
        sizeBytes: size,
        files,
        createdAt: now,
        updatedAt: now,
        metadata: { ...(p.metadata ?? {}) },
      };
      if (!(await this.opts.store.insertVersion(record)))
        throw syError(
          'SY_ERR_REGISTRY_CONFLICT',
          `${model}@${version} exists; versions are immutable`,
        );
      await this.audit(
        {
          actor: p.by.actor,
          action: 'model.push',
          target: `${model}@${version}`,
          reason: p.by.reason,
          detail: { digest, size_bytes: size, files: files.length },
        },
        null,
        record,
      );
      return record;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Signs with a private key whose public half must be pinned under `keyId`. */
  async sign(
    model: string,
    version: string,
    keyId: string,
    privateKey: KeyObject,
    by: Actor,
  ): Promise<VersionRecord> {
    const v = await this.must(model, version);
    const signature = signArtifact(privateKey, v.model, v.version, v.digest);
    return this.attachSignature(model, version, keyId, signature, by);
  }

  /** Records a signature made elsewhere; it must verify against the pinned key now. */
  async attachSignature(
    model: string,
    version: string,
    keyId: string,
    signature: string,
    by: Actor,
  ): Promise<VersionRecord> {
    const v = await this.must(model, version);
    const key = this.opts.keys.get(keyId);
    if (key === undefined)
      throw syError('SY_ERR_SIGNATURE_INVALID', `key "${keyId.slice(0, 64)}" is not pinned`);
    if (!verifyArtifactSignature(key, v.model, v.version, v.digest, signature))
      throw syError('SY_ERR_SIGNATURE_INVALID', `${model}@${version} with key ${keyId}`);
    const out = await this.opts.store.updateVersion(v.model, v.version, {
      signature,
      keyId,
      updatedAt: this.opts.clock.wall(),
    });
    await this.audit(
      {
        actor: by.actor,
        action: 'model.sign',
        target: `${v.model}@${v.version}`,
        reason: by.reason,
        detail: { key_id: keyId },
      },
      v,
      out,
    );
    return out!;
  }

  /**
   * Re-hashes the stored files and checks the signature against the pinned keys. Throws
   * SY_ERR_ARTIFACT_UNSIGNED / _TAMPERED / SY_ERR_SIGNATURE_INVALID; returns the artifact dir.
   */
  async verify(model: string, version: string): Promise<{ version: VersionRecord; dir: string }> {
    const v = await this.must(model, version);
    if (v.signature === undefined || v.keyId === undefined)
      throw syError('SY_ERR_ARTIFACT_UNSIGNED', `${v.model}@${v.version}`);
    const key = this.opts.keys.get(v.keyId);
    if (key === undefined)
      throw syError(
        'SY_ERR_SIGNATURE_INVALID',
        `${v.model}@${v.version}: key "${v.keyId}" is not pinned`,
      );
    const dir = this.artifactDir(v.model, v.version);
    const present = await listArtifactFiles(dir).catch(() => ({ files: [] as string[] }));
    if (present.files.join('\n') !== v.files.join('\n'))
      throw syError(
        'SY_ERR_ARTIFACT_TAMPERED',
        `${v.model}@${v.version}: the set of files changed`,
      );
    const { digest } = await digestOf(dir, v.files);
    if (digest !== v.digest)
      throw syError(
        'SY_ERR_ARTIFACT_TAMPERED',
        `${v.model}@${v.version}: digest ${digest} ≠ recorded ${v.digest}`,
      );
    if (!verifyArtifactSignature(key, v.model, v.version, v.digest, v.signature))
      throw syError('SY_ERR_SIGNATURE_INVALID', `${v.model}@${v.version} with key ${v.keyId}`);
    return { version: v, dir };
  }

  /**
   * Moves a version to a stage. Serving stages verify the artifact first. Promoting an older
   * version than the current production one to production is refused unless `force`; the
   * previous production version goes back to staging (the rollback target).
   */
  async promote(
    model: string,
    version: string,
    stage: ReleaseStage,
    by: Actor & { readonly force?: boolean; readonly retireAt?: number },
  ): Promise<VersionRecord> {
    if (!STAGES.includes(stage))
      throw syError('SY_ERR_REGISTRY_INVALID', `unknown stage "${String(stage).slice(0, 32)}"`);
    if (stage === 'retired') return this.retire(model, version, by);
    const v = await this.must(model, version);
    if (SERVING.has(stage)) await this.verify(model, version);
    const now = this.opts.clock.wall();
    const demoted: VersionRecord[] = [];
    if (stage === 'production') {
      const current = (await this.opts.store.listVersions(v.model)).filter(
        (x) => x.stage === 'production' && x.version !== v.version,
      );
      const newest = current
        .map((x) => x.version)
        .sort(compareVersions)
        .pop();
      if (newest !== undefined && compareVersions(v.version, newest) < 0 && by.force !== true)
        throw syError(
          'SY_ERR_VERSION_DOWNGRADE',
          `${v.model}@${v.version} is older than production ${newest}`,
        );
      for (const x of current) {
        const d = await this.opts.store.updateVersion(x.model, x.version, {
          stage: 'staging',
          updatedAt: now,
        });
        if (d !== undefined) demoted.push(d);
      }
    }
    const out = (await this.opts.store.updateVersion(v.model, v.version, {
      stage,
      updatedAt: now,
    }))!;
    await this.audit(
      {
        actor: by.actor,
        action: 'model.promote',
        target: `${v.model}@${v.version}`,
        reason: by.reason,
        detail: {
          from: v.stage,
          to: stage,
          ...(by.force === true ? { forced: true } : {}),
          ...(demoted.length > 0 ? { demoted: demoted.map((d) => d.version) } : {}),
        },
      },
      v,
      out,
    );
    await this.opts.onStage?.(out, v.stage);
    for (const d of demoted) await this.opts.onStage?.(d, 'production');
    return out;
  }

  /** Retires a version (now, or at `retireAt`); the production version only with `force`. */
  async retire(
    model: string,
    version: string,
    by: Actor & { readonly force?: boolean; readonly retireAt?: number },
  ): Promise<VersionRecord> {
    const v = await this.must(model, version);
    if (v.stage === 'production' && by.force !== true)
      throw syError(
        'SY_ERR_REGISTRY_CONFLICT',
        `${v.model}@${v.version} is in production; promote another version first or force`,
      );
    const now = this.opts.clock.wall();
    const at = by.retireAt ?? now;
    const later = at > now;
    const out = (await this.opts.store.updateVersion(v.model, v.version, {
      ...(later ? {} : { stage: 'retired' as const }),
      retireAt: at,
      updatedAt: now,
    }))!;
    await this.audit(
      {
        actor: by.actor,
        action: later ? 'model.retire_scheduled' : 'model.retire',
        target: `${v.model}@${v.version}`,
        reason: by.reason,
        detail: { from: v.stage, retire_at: new Date(at).toISOString() },
      },
      v,
      out,
    );
    if (!later) await this.opts.onStage?.(out, v.stage);
    return out;
  }

  /** Retires the versions whose retirement date has come (run periodically). */
  async retireDue(): Promise<VersionRecord[]> {
    const now = this.opts.clock.wall();
    const due = (await this.opts.store.listVersions()).filter(
      (v) => v.stage !== 'retired' && v.retireAt !== undefined && v.retireAt <= now,
    );
    const out: VersionRecord[] = [];
    for (const v of due)
      out.push(
        await this.retire(v.model, v.version, {
          actor: 'system',
          reason: 'retirement date reached',
          force: true,
          retireAt: v.retireAt!,
        }),
      );
    return out;
  }

  /**
   * Verifies the version, then copies it into an ONNX model store as `<store>/<version>/` (written
   * beside and renamed in, so the store watcher never sees half a version). Nothing unverified
   * ever reaches a store a backend loads from.
   */
  async materialize(model: string, version: string, storeDir: string): Promise<string> {
    const { version: v, dir } = await this.verify(model, version);
    const dest = inside(storeDir, v.version);
    const tmp = inside(storeDir, `.incoming-${v.version}-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    for (const f of v.files) {
      const to = inside(tmp, f);
      await mkdir(join(to, '..'), { recursive: true });
      await cp(inside(dir, f), to);
    }
    // Re-check the copy: a file swapped between verify and copy is caught here.
    if ((await digestOf(tmp, v.files)).digest !== v.digest) {
      await rm(tmp, { recursive: true, force: true });
      throw syError('SY_ERR_ARTIFACT_TAMPERED', `${v.model}@${v.version}: changed while copying`);
    }
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
    return dest;
  }

  /** Removes a version from an ONNX model store (the backend unloads it after its queue drains). */
  async dematerialize(version: string, storeDir: string): Promise<void> {
    await rm(inside(storeDir, checkName('version', version)), { recursive: true, force: true });
  }
}

/** A version as the audit trail shows it, before and after a change (`null`: none). */
const versionView = (v: VersionRecord | null) =>
  v === null
    ? null
    : {
        stage: v.stage,
        digest: v.digest,
        signed_by: v.keyId ?? null,
        retire_at: v.retireAt === undefined ? null : new Date(v.retireAt).toISOString(),
      };
