import type { QuotaCharge, QuotaReceipt } from '../contracts/limiter.js';
import type { QuotaSpec, TenantAdmission } from './settings.js';

/** Spend is counted in whole micro-units of the currency (limiters count integers). */
export const MICROS = 1_000_000;

export type QuotaKind = 'requests' | 'tokens' | 'spend';

export interface Estimate {
  readonly tokens: number;
  /** Currency units (may be fractional). */
  readonly spend: number;
}

/** A charge with what it counts, so a refusal maps to its error and a receipt to its settle. */
export interface KindedCharge extends QuotaCharge {
  readonly kind: QuotaKind;
}

function chargesOf(prefix: string, q: QuotaSpec, est: Estimate): KindedCharge[] {
  const out: KindedCharge[] = [];
  const window = { ms: q.window_s * 1000 };
  if (q.requests !== undefined) {
    const limit = q.requests;
    const burst = q.requests_burst ?? limit;
    out.push({ kind: 'requests', key: `${prefix}:req`, limit, burst, window, amount: 1 });
  }
  if (q.tokens !== undefined) {
    const amount = Math.max(0, Math.ceil(est.tokens));
    const limit = q.tokens;
    const burst = q.tokens_burst ?? limit;
    out.push({ kind: 'tokens', key: `${prefix}:tok`, limit, burst, window, amount });
  }
  const spend = Math.max(0, Math.round(est.spend * MICROS));
  if (q.spend_per_day !== undefined) {
    const limit = Math.floor(q.spend_per_day * MICROS);
    out.push({ kind: 'spend', key: `${prefix}:spend`, limit, window: 'day', amount: spend });
  }
  if (q.spend_per_month !== undefined) {
    const limit = Math.floor(q.spend_per_month * MICROS);
    out.push({ kind: 'spend', key: `${prefix}:spend`, limit, window: 'month', amount: spend });
  }
  return out;
}

/**
 * Every charge a request makes: its tenant's quotas and its key's. A request that calls no
 * model (a data route) charges only request rates (`requestsOnly`): a spent token or spend
 * quota does not lock a tenant out of its own data.
 */
export function quotaCharges(
  tenantName: string,
  tenant: TenantAdmission | undefined,
  keyId: string,
  est: Estimate,
  requestsOnly = false,
): KindedCharge[] {
  if (tenant === undefined) return [];
  const out: KindedCharge[] = [];
  if (tenant.quotas !== undefined) out.push(...chargesOf(`t:${tenantName}`, tenant.quotas, est));
  const key = tenant.keys.find((k) => k.id === keyId);
  if (key?.quotas !== undefined)
    out.push(...chargesOf(`k:${tenantName}:${keyId}`, key.quotas, est));
  return requestsOnly ? out.filter((c) => c.kind === 'requests') : out;
}

/** What a receipt should settle to, given the actual usage (requests never change). */
export function actualFor(kind: QuotaKind, receipt: QuotaReceipt, actual: Estimate): number {
  if (kind === 'tokens') return Math.max(0, Math.ceil(actual.tokens));
  if (kind === 'spend') return Math.max(0, Math.round(actual.spend * MICROS));
  return receipt.amount;
}
