import { channel } from 'node:diagnostics_channel';
import { PERSONALIZATION_CHANNELS, type FeatureOpEvent } from '../contracts/policy.js';
import { isSwitchyardError } from '../core/errors.js';

const ch = channel(PERSONALIZATION_CHANNELS.features);

/** Publishes a feature read or write for metrics (nothing happens when nobody listens). */
export function featureOp(
  op: FeatureOpEvent['op'],
  result: FeatureOpEvent['result'],
  count: number,
): void {
  if (count > 0 && ch.hasSubscribers) ch.publish({ op, result, count } satisfies FeatureOpEvent);
}

/** Publishes a refused write by its cause. */
export function featureWriteFailed(err: unknown, count: number): void {
  const code = isSwitchyardError(err) ? err.code : undefined;
  const result =
    code === 'SY_ERR_FEATURE_INVALID'
      ? 'invalid'
      : code === 'SY_ERR_TENANT_STORAGE_FULL'
        ? 'full'
        : 'unavailable';
  featureOp('write', result, count);
}
