import type { JsonValue } from '../contracts/json.js';
import type { ReleaseSlotResolver, UnitAttributeValue } from '../contracts/slot-resolver.js';
import type { SlotResolver } from '../contracts/stage.js';

const str = (v: JsonValue | undefined): string | undefined =>
  typeof v === 'string' ? v : undefined;

/**
 * Adapts the release manager's resolver (experiments, canary, bandits) to the stage port: the
 * unit is the tenant plus `attr.user` (or the request id), with `attr.geo` and `attr.device`;
 * no release rule means the configured model. Outcomes are reported back without waiting, with
 * the stage's re-invocation for shadow copies.
 */
export function releaseSlots(release: ReleaseSlotResolver): SlotResolver {
  return {
    resolve(slot, model, req) {
      const a = req.attributes;
      const attributes: Record<string, UnitAttributeValue> = {};
      for (const [k, v] of Object.entries(a))
        if (v === null || typeof v !== 'object') attributes[k] = v;
      const userId = str(a['user']);
      const geo = str(a['geo']);
      const device = str(a['device']);
      const assignment = release.resolve(slot, {
        tenant: req.tenant,
        requestId: req.requestId,
        trafficClass: req.trafficClass,
        attributes,
        ...(userId === undefined ? {} : { userId }),
        ...(geo === undefined ? {} : { geo }),
        ...(device === undefined ? {} : { device }),
      });
      return assignment ?? { model, reason: 'default' };
    },
    report(slot, choice, r) {
      if (choice.experiment === undefined && (choice.shadow?.length ?? 0) === 0) return;
      release.report(
        {
          inferenceId: r.requestId,
          slot,
          assignment: choice,
          ms: r.ms,
          outcome: r.outcome,
          ...(r.fallback === undefined ? {} : { fallback: r.fallback }),
          ...(r.output === undefined ? {} : { output: r.output }),
        },
        r.shadow,
      );
    },
  };
}
