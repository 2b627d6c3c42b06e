import type { JsonObject, JsonValue } from '../contracts/json.js';
import type { AssignmentUnit, UnitAttributeValue } from '../contracts/slot-resolver.js';

const str = (v: JsonValue | undefined): string | undefined =>
  typeof v === 'string' ? v : undefined;

/**
 * Who a request is for, as release assignment sees it: `user` (the randomization unit; without
 * it the request id is used), `geo`, `device`, and the flat attributes predicates can match.
 */
export function unitOf(
  attributes: JsonObject,
): Omit<AssignmentUnit, 'tenant' | 'trafficClass' | 'requestId'> {
  const flat: Record<string, UnitAttributeValue> = {};
  for (const [k, v] of Object.entries(attributes))
    if (v === null || typeof v !== 'object') flat[k] = v;
  const userId = str(attributes['user']);
  const geo = str(attributes['geo']);
  const device = str(attributes['device']);
  return {
    attributes: flat,
    ...(userId === undefined ? {} : { userId }),
    ...(geo === undefined ? {} : { geo }),
    ...(device === undefined ? {} : { device }),
  };
}
