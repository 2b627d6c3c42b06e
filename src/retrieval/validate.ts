import type {
  AttrValue,
  PolicyLabel,
  VectorMetadata,
  VectorRecord,
} from '../contracts/vector-index.js';
import { syError } from '../core/errors.js';

const LABELS: ReadonlySet<string> = new Set<PolicyLabel>([
  'public',
  'consented',
  'sensitive',
  'restricted',
]);
const MAX_ID = 256;

function bad(where: string, what: string): never {
  throw syError('SY_ERR_VECTOR_INVALID', `${where} ${what}`);
}

function text(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID)
    bad(where, `must be a string of 1 to ${MAX_ID} characters`);
  return v;
}

function time(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(where, 'must be a finite epoch-ms number');
  return v;
}

/**
 * Checks one record's id and metadata (the vector is checked against the shard's dimensions
 * separately) and returns a clean copy of the metadata: unknown keys are dropped, so nothing
 * unlabelled rides along into a shard.
 */
export function validateRecord(r: VectorRecord, i: number): VectorMetadata {
  const at = `records[${i}]`;
  text(r.id, `${at}.id`);
  const m = r.meta as Partial<VectorMetadata> | undefined;
  if (m === undefined || typeof m !== 'object' || m === null) bad(`${at}.meta`, 'is required');
  const label = m.label;
  if (typeof label !== 'string' || !LABELS.has(label))
    bad(`${at}.meta.label`, 'must be public, consented, sensitive or restricted');
  let attrs: Record<string, AttrValue> | undefined;
  if (m.attrs !== undefined) {
    attrs = {};
    for (const [k, v] of Object.entries(m.attrs)) {
      const ok =
        typeof v === 'string' ||
        typeof v === 'boolean' ||
        (typeof v === 'number' && Number.isFinite(v));
      if (!ok)
        bad(`${at}.meta.attrs.${k.slice(0, 64)}`, 'must be a string, finite number or boolean');
      attrs[k] = v;
    }
  }
  return {
    tenant: text(m.tenant, `${at}.meta.tenant`),
    label,
    entityType: text(m.entityType, `${at}.meta.entityType`),
    ...(m.userId === undefined ? {} : { userId: text(m.userId, `${at}.meta.userId`) }),
    ...(m.jurisdiction === undefined
      ? {}
      : { jurisdiction: text(m.jurisdiction, `${at}.meta.jurisdiction`) }),
    ...(m.geo === undefined ? {} : { geo: text(m.geo, `${at}.meta.geo`) }),
    createdAt: time(m.createdAt, `${at}.meta.createdAt`),
    updatedAt: time(m.updatedAt, `${at}.meta.updatedAt`),
    ...(m.expiresAt === undefined ? {} : { expiresAt: time(m.expiresAt, `${at}.meta.expiresAt`) }),
    ...(attrs === undefined ? {} : { attrs }),
  };
}
