import { z } from 'zod';
import type {
  ClassifyResult,
  JourneyDecision,
  ModelUse,
  SlotChoice,
} from '../../contracts/stage.js';
import { syError } from '../../core/errors.js';
import { asText } from '../paths.js';
import { callModel, defineKind, result, shadowCall } from '../stage-kit.js';

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
        const input = asText(text(state, ctx));
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
        let choice: SlotChoice | undefined;
        for (let i = 0; i < ladder.length; i++) {
          let model = ladder[i]!;
          let version: string | undefined;
          if (i === 0 && config.slot !== undefined) {
            choice = ctx.services.slots.resolve(config.slot, model, {
              tenant: ctx.tenant,
              trafficClass: ctx.trafficClass,
              requestId: ctx.requestId,
              journey: state.journey,
              attributes: state.attributes,
            });
            model = choice.model;
            version = choice.version;
            if (choice.reason !== 'default')
              steps.push(
                `slot ${config.slot} → ${model}${version === undefined ? '' : `@${version}`} (${choice.reason})`,
              );
          }
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
          const r = await callModel(ctx, router, model, (call) =>
            ctx.services.models.classify(model, input, call, version),
          );
          models.push(r.use);
          if (i === 0 && choice !== undefined) {
            const top0 = r.ok ? r.value.scores[0] : undefined;
            ctx.services.slots.report?.(config.slot!, choice, {
              requestId: ctx.requestId,
              ms: r.use.ms,
              outcome: r.use.outcome,
              fallback: r.ok && r.value.servedBy !== model,
              ...(top0 === undefined ? {} : { output: { label: top0.label, score: top0.score } }),
              shadow: async (target, signal) => {
                const s = await ctx.services.models.classify(
                  target.model,
                  input,
                  shadowCall(ctx, signal),
                  target.version,
                );
                const t = s.scores[0];
                return t === undefined ? {} : { label: t.label, score: t.score };
              },
            });
          }
          if (!r.ok) {
            lastError = r.error;
            steps.push(`${model} failed (${r.use.outcome})`);
            if (ctx.signal.aborted) break;
            continue;
          }
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
            ...(top === undefined ? {} : { label: top.label }),
            confidence: top?.score ?? 0,
          },
          models,
          decisions,
        });
      },
    };
  },
});
