import type { BackendResponse, Tier } from '../contracts/backend.js';
import type { TraceSpan } from '../contracts/trace.js';
import type { SwitchyardError } from '../core/errors.js';

/**
 * The span of one model call (#15), named and attributed per the OpenTelemetry GenAI semantic
 * conventions (`{gen_ai.operation.name} {gen_ai.request.model}`, a client span), with
 * Switchyard's own attributes for the route: tier, version, experiment arm and route code.
 */
export function startCallSpan(
  parent: TraceSpan,
  op: string,
  requested: string,
  system: string,
  model: string,
  reason: string,
): TraceSpan {
  return parent.child(`${op} ${requested}`, 'client', {
    'gen_ai.system': system,
    'gen_ai.operation.name': op,
    'gen_ai.request.model': model,
    'switchyard.requested': requested,
    'switchyard.reason': reason,
  });
}

export interface CallOutcome {
  readonly servedBy: string;
  readonly version: string;
  readonly tier: Tier;
  readonly attempts: string;
  readonly cost: number;
  readonly experiment: string | undefined;
  readonly variant: string | undefined;
}

/** Settles a model call's span: usage, the model that answered, finish reasons, or the error. */
export function endCallSpan(
  span: TraceSpan,
  done: CallOutcome | undefined,
  response: BackendResponse | undefined,
  error: SwitchyardError | undefined,
  /** A stream's finish reasons, as its reader saw them go by (a unary answer carries its own). */
  streamed?: readonly string[],
): void {
  if (done !== undefined) {
    const json = response?.json;
    const reported = json?.['model'];
    span.setAll({
      'gen_ai.response.model':
        typeof reported === 'string' && reported !== '' ? reported : done.version || done.servedBy,
      'gen_ai.usage.input_tokens': response?.usage?.inputTokens,
      'gen_ai.usage.output_tokens': response?.usage?.outputTokens,
      'gen_ai.response.finish_reasons':
        streamed !== undefined && streamed.length > 0 ? streamed : finishReasons(json),
      'switchyard.served_by': done.servedBy,
      'switchyard.tier': done.tier,
      'switchyard.version': done.version,
      'switchyard.experiment': done.experiment,
      'switchyard.variant': done.variant,
      'switchyard.route_code': done.attempts,
      'switchyard.cost': done.cost,
    });
  }
  if (error !== undefined) span.fail(error.code, error.message);
  span.end();
}

/** OpenAI chat answers: `choices[].finish_reason`. */
function finishReasons(json: BackendResponse['json'] | undefined): readonly string[] | undefined {
  const choices = json?.['choices'];
  if (!Array.isArray(choices)) return undefined;
  const out: string[] = [];
  for (const c of choices) {
    const r = (c as { finish_reason?: unknown } | null)?.finish_reason;
    if (typeof r === 'string') out.push(r);
  }
  return out.length === 0 ? undefined : out;
}
