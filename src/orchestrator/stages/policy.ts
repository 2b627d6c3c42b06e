import { z } from 'zod';
import { CONSENT_PURPOSES, POLICY_LABELS, type DataTag } from '../../contracts/policy.js';
import { syError } from '../../core/errors.js';
import { asText } from '../paths.js';
import { defineKind, result } from '../stage-kit.js';

/**
 * `policy`: asks the policy module whether the user's data may be used as model input for a
 * purpose. Allowed: continue. Denied: continue at `else` (a non-personalized path) when given,
 * otherwise fail with the module's code (403).
 */
export const policyKind = defineKind({
  kind: 'policy',
  schema: z.strictObject({
    purpose: z.enum(CONSENT_PURPOSES as unknown as [string, ...string[]]),
    label: z.enum(POLICY_LABELS as unknown as [string, ...string[]]).default('consented'),
    user: z.string().default('attr.user'),
    else: z.string().optional(),
  }),
  refs: (c) => (c.else === undefined ? [] : [{ id: c.else, where: '.else' }]),
  build(config, b) {
    b.needs('policy', b.where);
    const user = b.paths.path(config.user, `${b.where}.user`);
    return {
      id: b.id,
      kind: 'policy',
      run(ctx, state) {
        const userId = asText(user(state, ctx));
        const tag = {
          tenant: ctx.tenant,
          label: config.label,
          purpose: config.purpose,
          ...(userId === undefined ? {} : { userId }),
        } as DataTag;
        const d = ctx.services.policy!.decide('model_input', tag);
        if (d.allow) return result.next('allow', d.reason);
        if (config.else !== undefined)
          return result.next(`deny:${config.else}`, `${d.reason} → ${config.else}`, {
            next: config.else,
          });
        return result.fail(syError(d.code, d.reason), d.reason);
      },
    };
  },
});
