import type { DataTag } from '../contracts/policy.js';
import { redactTagged, tag } from '../privacy/redaction.js';
import type { RequestContext } from './context.js';

/**
 * Whether the inference log keeps this request's payload (#15): the log is on and the tenant's
 * `inference_log.payloads` rule names direct calls (`journey` absent) or the journey. Routes ask
 * before they hand a payload over, so a request whose payload is not kept pays nothing for it.
 */
export function payloadWanted(ctx: RequestContext, journey?: string): boolean {
  const il = ctx.runtime.snapshot.config.inference_log;
  if (!il.enabled) return false;
  const rule = il.payloads[ctx.principal?.tenant ?? ''];
  if (rule === undefined) return false;
  if (journey === undefined) return rule.direct;
  return rule.journeys.includes('*') || rule.journeys.includes(journey);
}

/**
 * Hands the request and its answer to the request's record, redacted by the privacy policy's
 * logging rule: the personal data the client declared (`x-switchyard-data-label`, with its
 * purpose and user) travels with both, so a label whose data may not be logged for this user keeps
 * only `[redacted:<label>]`; tagged values inside are redacted one by one. No policy: redacted.
 */
export function keepPayload(ctx: RequestContext, request: unknown, response?: unknown): void {
  const policy = ctx.runtime.personalization?.policy;
  const mayStore = (t: DataTag): boolean => policy?.decide('logging', t).allow ?? false;
  const wrap = (v: unknown): unknown => (ctx.data === undefined ? v : tag(ctx.data, v));
  ctx.payload = {
    request: redactTagged(wrap(request), mayStore),
    ...(response === undefined ? {} : { response: redactTagged(wrap(response), mayStore) }),
  };
}
