import { syError } from './errors.js';
import { events, publish } from './events.js';

/** What a tenant storage cap counts (#13, finding 8). */
export type StoredKind = 'vectors' | 'feature_values' | 'consent_records';

const NOUN: Readonly<Record<StoredKind, string>> = {
  vectors: 'vectors',
  feature_values: 'feature values',
  consent_records: 'consent records',
};

/**
 * The one check of every tenant storage cap, made at ingestion by the store that counts: a write
 * adding `adding` new items fits when the tenant then holds at most `cap`. Otherwise the whole
 * write is refused with SY_ERR_TENANT_STORAGE_FULL and the refusal is published (metrics count
 * it). Replacing an item the tenant already holds adds nothing, so it is never refused.
 */
export function ensureRoom(
  kind: StoredKind,
  tenant: string,
  held: number,
  adding: number,
  cap: number | undefined,
): void {
  if (cap === undefined || adding <= 0 || held + adding <= cap) return;
  publish(events.tenantStorageFull, { kind, tenant });
  throw syError(
    'SY_ERR_TENANT_STORAGE_FULL',
    `${NOUN[kind]}: ${held} held, ${adding} more would pass the cap of ${cap}`,
  );
}
