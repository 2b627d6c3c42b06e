import type {
  ExperimentRecord,
  ExposureRow,
  ReleaseStage,
  VersionRecord,
} from '../contracts/registry-store.js';

/** Row shapes and mappers shared by the SQLite and PostgreSQL registry stores. */
export interface VersionRow {
  model: string;
  version: string;
  stage: string;
  digest: string;
  size_bytes: number | string;
  files: string;
  signature: string | null;
  key_id: string | null;
  created_at: number | string;
  updated_at: number | string;
  retire_at: number | string | null;
  metadata: string;
}

export function versionOf(r: VersionRow): VersionRecord {
  return {
    model: r.model,
    version: r.version,
    stage: r.stage as ReleaseStage,
    digest: r.digest,
    sizeBytes: Number(r.size_bytes),
    files: JSON.parse(r.files) as string[],
    ...(r.signature === null ? {} : { signature: r.signature }),
    ...(r.key_id === null ? {} : { keyId: r.key_id }),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    ...(r.retire_at === null ? {} : { retireAt: Number(r.retire_at) }),
    metadata: JSON.parse(r.metadata) as Record<string, string>,
  };
}

export function versionParams(v: VersionRecord): unknown[] {
  return [
    v.model,
    v.version,
    v.stage,
    v.digest,
    v.sizeBytes,
    JSON.stringify(v.files),
    v.signature ?? null,
    v.keyId ?? null,
    v.createdAt,
    v.updatedAt,
    v.retireAt ?? null,
    JSON.stringify(v.metadata),
  ];
}

export const VERSION_COLUMNS =
  'model, version, stage, digest, size_bytes, files, signature, key_id, created_at, updated_at, retire_at, metadata';

export function experimentOf(record: string, revision: number | string): ExperimentRecord {
  const r = JSON.parse(record) as Omit<ExperimentRecord, 'revision'>;
  return { ...r, revision: Number(revision) };
}

export interface ExposureDbRow {
  inference_id: string;
  at: number | string;
  experiment: string;
  variant: string;
  seed: string;
  bucket: number;
  model: string;
  version: string;
  unit: string;
  tenant: string;
  segment: string;
}

export function exposureOf(r: ExposureDbRow): ExposureRow {
  return {
    inferenceId: r.inference_id,
    at: Number(r.at),
    experiment: r.experiment,
    variant: r.variant,
    seed: r.seed,
    bucket: Number(r.bucket),
    model: r.model,
    version: r.version,
    unit: r.unit,
    tenant: r.tenant,
    segment: r.segment,
  };
}

/** The columns of an exposure row, in `exposureParams` order. */
export const EXPOSURE_COLUMNS =
  'inference_id, at, experiment, variant, seed, bucket, model, version, unit, tenant, segment';

/** Insert parameters of an exposure, in `EXPOSURE_COLUMNS` order. */
export function exposureParams(e: ExposureRow): unknown[] {
  return [
    e.inferenceId,
    e.at,
    e.experiment,
    e.variant,
    e.seed,
    e.bucket,
    e.model,
    e.version,
    e.unit,
    e.tenant,
    e.segment,
  ];
}

export const clampLimit = (limit: number | undefined, dflt = 100): number =>
  Math.max(1, Math.min(10_000, Math.floor(limit ?? dflt)));
