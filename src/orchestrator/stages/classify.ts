import { z } from 'zod';
import type { ClassifyResult, JourneyDecision, ModelUse } from '../../contracts/stage.js';
import { syError } from '../../core/errors.js';
import { asText } from '../paths.js';
import { callModel, defineKind, result, traced } from '../stage-kit.js';

/**
 * `classify`: labels text with a classifier (an in-process model, or a chat model asked for a
 * label). With `models: [small, bigger, ...]` and `escalate_below`, a low-confidence answer is
 * declaratively escalated to the next model, when its predicted latency still fits the budget.
 * Sets `label` and `confidence` for later branches.
 */
export const classifyKind = defineKind({
  kind: 'classify',
  schema: z
    .strictObject({
      /** A model slot: the release manager may resolve it to another model per request. */
      slot: z.string().min(1).optional(),
      model: z.string().min(1).optional(),
      /** An escalation ladder, cheapest first. */
      models: z.array(z.string().min(1)).min(1).optional(),
      text: z.string().default('input.text'),
      escalate_below: z.number().min(0).max(1).optional(),
    })
    .refine((c) => (c.model === undefined) !== (c.models === undefined), {
      message: 'set exactly one of model or models',
    }),
  build(config, b) {
    const ladder = config.models ?? [config.model!];
    ladder.forEach((m, i) =>
      b.model(
        m,
        `${b.where}.${config.models === undefined ? 'model' : `models[${i}]`}`,
        'classify',
      ),
    );
    if (config.escalate_below !== undefined && ladder.length < 2)
      b.problem(`${b.where}.escalate_below`, 'escalation needs models: [small, bigger, ...]');
    const text = b.paths.path(config.text, `${b.where}.text`);
    const threshold = config.escalate_below ?? 0;
    const router = b.router;
    return {
      id: b.id,
      kind: 'classify',
      async run(ctx, state) {
        const built = traced(state, () => asText(text(state, ctx)));
        const input = built.value;
        if (input === undefined)
          return result.fail(
            syError('SY_ERR_INVALID_REQUEST', `${config.text} is missing`, { param: config.text }),
            `no text at ${config.text}`,
          );
        const models: ModelUse[] = [];
        const steps: string[] = [];
        const decisions: JourneyDecision[] = [];
        let best: ClassifyResult | undefined;
        let lastError;
        const tainted =
          built.inputs.length === 0
            ? {}
            : {
                inputs: built.inputs,
                rebuild: (withheld: ReadonlySet<string>) => built.rebuild(withheld) ?? '',
              };
        for (let i = 0; i < ladder.length; i++) {
          const model = ladder[i]!;
          if (i > 0) {
            const info = ctx.services.models.info(model);
            const predicted = info === undefined ? undefined : router.predictMs(info);
            if (predicted !== undefined && predicted > ctx.remainingMs()) {
              steps.push(
                `${model} skipped (p95 ${Math.round(predicted)}ms > ${Math.round(ctx.remainingMs())}ms left)`,
              );
              break;
            }
            decisions.push(best === undefined ? 'fallback' : 'escalation');
          }
          // The first rung may be a release slot; every rung resolves through the pipeline.
          const opts = {
            ...tainted,
            ...(i === 0 && config.slot !== undefined ? { slot: config.slot } : {}),
          };
          const r = await callModel(ctx, router, model, (call) =>
            ctx.services.models.classify(model, input, call, opts),
          );
          models.push(r.use);
          if (!r.ok) {
            lastError = r.error;
            steps.push(`${model} failed (${r.use.outcome})`);
            if (ctx.signal.aborted) break;
            continue;
          }
          if (r.value.reason !== 'default') steps.push(`${model}: ${r.value.reason};`);
          best = r.value;
          const top = r.value.scores[0];
          const conf = top?.score ?? 0;
          steps.push(
            `${r.value.servedBy}@${r.value.version}: ${top?.label ?? '?'} ${conf.toFixed(2)}`,
          );
          if (conf >= threshold || i === ladder.length - 1) break;
          steps.push(`< ${threshold} → escalate`);
        }
        if (best === undefined)
          return result.fail(
            lastError ?? syError('SY_ERR_STAGE_FAILED', `${b.id}: no classifier answered`),
            steps.join('; '),
            { models, decisions },
          );
        const top = best.scores[0];
        const scores: Record<string, number> = {};
        for (const s of best.scores) scores[s.label] = s.score;
        const escalated = decisions.includes('escalation');
        return result.next(escalated ? 'escalated' : 'ok', steps.join(' '), {
          output: {
            label: top?.label ?? null,
            confidence: top?.score ?? 0,
            scores,
            model: best.servedBy,
          },
          update: {
            confidence: top?.score ?? 0,
            ...(top === undefined ? {} : { label: top.label }),
          },
          models,
          decisions,
        });
      },
    };
  },
});
