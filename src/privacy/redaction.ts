import type { DataTag, Tagged } from '../contracts/policy.js';

const MAX_DEPTH = 12;

/** Whether `value` is a `Tagged` (a value travelling with its policy tag). */
export function isTagged(value: unknown): value is Tagged {
  if (typeof value !== 'object' || value === null) return false;
  const tag = (value as { policyTag?: unknown }).policyTag;
  return (
    typeof tag === 'object' &&
    tag !== null &&
    typeof (tag as { label?: unknown }).label === 'string' &&
    'value' in value
  );
}

/**
 * Tags a value. Serialized by anything that does not know the policy (`JSON.stringify`, a logger
 * without the policy's redactor), it shows only `[redacted:<label>]`: safe by default.
 */
export function tag<T>(policyTag: DataTag, value: T): Tagged<T> {
  return {
    policyTag,
    value,
    toJSON: () => `[redacted:${policyTag.label}]`,
  } as Tagged<T>;
}

function isPlain(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A copy of `value` in which every `Tagged` is replaced by its value when `mayLog` allows it, or
 * by `[redacted:<label>]`. Copy on write: when nothing is tagged, `value` itself comes back, so
 * ordinary log lines cost one walk and no allocation.
 */
export function redactTagged(
  value: unknown,
  mayLog: (tag: DataTag) => boolean,
  depth = 0,
): unknown {
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return value;
  if (isTagged(value)) {
    return mayLog(value.policyTag)
      ? redactTagged(value.value, mayLog, depth + 1)
      : `[redacted:${value.policyTag.label}]`;
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      const r = redactTagged(v, mayLog, depth + 1);
      if (r !== v) {
        out ??= value.slice();
        out[i] = r;
      }
    }
    return out ?? value;
  }
  if (!isPlain(value)) return value;
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(value)) {
    const v = (value as Record<string, unknown>)[key];
    const r = redactTagged(v, mayLog, depth + 1);
    if (r !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      out[key] = r;
    }
  }
  return out ?? value;
}
