import { z } from 'zod';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import type { JourneyDecision, ModelInfo, StageContext } from '../../contracts/stage.js';
import { estimateTokens } from '../../core/cost.js';
import { isJsonObject } from '../../core/safe-json.js';
import { syError } from '../../core/errors.js';
import { asText, type Getter } from '../paths.js';
import type { Considered } from '../router.js';
import { callModel, defineKind, result, traced, type ModelOp } from '../stage-kit.js';
import { extend } from '../../core/objects.js';

const downgradeSchema = z
  .strictObject({
    /** The rule applies when less than this much budget is left when the stage starts. */
    below_ms: z.number().int().positive(),
    /** A smaller model. */
    model: z.string().min(1).optional(),
    /** A shorter context and answer. */
    shorten: z
      .strictObject({
        keep_messages: z.number().int().positive().optional(),
        max_tokens: z.number().int().positive().optional(),
      })
      .optional(),
    /** Another stage: a cached (stale) answer, a popular answer. */
    goto: z.string().min(1).optional(),
  })
  .refine((d) => [d.model, d.shorten, d.goto].filter((x) => x !== undefined).length === 1, {
    message: 'a downgrade does exactly one of model, shorten or goto',
  });

const schema = z
  .strictObject({
    slot: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    /** Cheapest fit: the cheapest candidate whose learned latency fits the remaining budget. */
    candidates: z.array(z.string().min(1)).min(1).optional(),
    op: z.enum(['chat', 'embeddings', 'infer']).default('chat'),
    /** chat: a text (path) sent as the user message, or a path to an OpenAI messages array. */
    prompt: z.string().optional(),
    messages: z.string().optional(),
    system: z.string().optional(),
    max_tokens: z.number().int().positive().optional(),
    /** embeddings: the text (path). */
    text: z.string().optional(),
    /** infer: the KServe v2 body (mapping); chat: extra request fields (mapping). */
    body: z.unknown().optional(),
    /** Extra ms a candidate's predicted latency must leave free. */
    margin_ms: z.number().nonnegative().default(0),
    /** When no candidate fits: take the fastest anyway, or fail at once with 504. */
    if_none_fit: z.enum(['fastest', 'fail']).default('fastest'),
    downgrade: z.array(downgradeSchema).default([]),
  })
  .refine((c) => (c.model === undefined) !== (c.candidates === undefined), {
    message: 'set exactly one of model or candidates',
  })
  .refine((c) => c.slot === undefined || c.model !== undefined, {
    message: 'a slot needs its default model',
    path: ['slot'],
  });

type Config = z.output<typeof schema>;
type Downgrade = Config['downgrade'][number];

/**
 * `infer`: one model call (chat, embeddings or KServe infer) on a model slot, a fixed model, or
 * the cheapest of several candidates that fits the remaining deadline. Near the deadline a
 * declared downgrade applies: a smaller model, a shorter context, or another stage.
 */
export const inferKind = defineKind({
  kind: 'infer',
  schema,
  refs: (c) =>
    c.downgrade.flatMap((d, i) =>
      d.goto === undefined ? [] : [{ id: d.goto, where: `.downgrade[${i}].goto` }],
    ),
  build(config, b) {
    const op: ModelOp = config.op;
    if (config.model !== undefined) b.model(config.model, `${b.where}.model`, op);
    config.candidates?.forEach((m, i) => b.model(m, `${b.where}.candidates[${i}]`, op));
    config.downgrade.forEach((d, i) => {
      if (d.model !== undefined) b.model(d.model, `${b.where}.downgrade[${i}].model`, op);
      if (d.shorten !== undefined && op !== 'chat')
        b.problem(`${b.where}.downgrade[${i}].shorten`, 'shorten applies to chat only');
    });
    // Most severe first: the rule with the smallest threshold that the budget is under wins.
    const downgrades = [...config.downgrade].sort((x, y) => x.below_ms - y.below_ms);
    const prompt =
      config.prompt === undefined ? undefined : b.paths.path(config.prompt, `${b.where}.prompt`);
    const messages =
      config.messages === undefined
        ? undefined
        : b.paths.path(config.messages, `${b.where}.messages`);
    if (op === 'chat' && prompt === undefined && messages === undefined)
      b.problem(b.where, 'a chat infer needs prompt or messages');
    const text =
      op === 'embeddings'
        ? b.paths.path(config.text ?? 'input.text', `${b.where}.text`)
        : undefined;
    const body =
      config.body === undefined ? undefined : b.paths.mapping(config.body, `${b.where}.body`);
    if (op === 'infer' && body === undefined)
      b.problem(b.where, 'an infer op needs body (the KServe v2 request)');
    const router = b.router;

    return {
      id: b.id,
      kind: 'infer',
      async run(ctx, state) {
        const remaining = ctx.remainingMs();
        const rule = downgrades.find((d) => remaining < d.below_ms);
        const decisions: JourneyDecision[] = [];
        const notes: string[] = [];
        if (rule?.goto !== undefined) {
          return result.next(
            `downgrade:${rule.goto}`,
            `${Math.round(remaining)}ms left < ${rule.below_ms}ms → ${rule.goto}`,
            { next: rule.goto, decisions: ['downgrade'] },
          );
        }
        // The request, and what it is expected to need (traced: which tagged data it holds).
        let built: ReturnType<typeof traced<{ request: JsonObject; inputText: string }>>;
        try {
          built = traced(state, () => buildRequest(ctx, state, rule));
        } catch (err) {
          return result.fail(err as ReturnType<typeof syError>, (err as Error).message);
        }
        const { request, inputText } = built.value;
        // Which model.
        let model: string;
        let code = 'ok';
        if (rule?.model !== undefined) {
          model = rule.model;
          code = `downgrade:${model}`;
          decisions.push('downgrade');
          notes.push(`${Math.round(remaining)}ms left < ${rule.below_ms}ms → ${model}`);
        } else if (config.candidates !== undefined) {
          // Residency (#17): candidates the input may not reach are skipped, and the route says why.
          const models = ctx.services.models;
          const allowed = config.candidates.filter((m) => {
            const why = models.placement?.(m, built.inputs);
            if (why !== undefined) notes.push(`skipped: ${m} ${why}`);
            return why === undefined;
          });
          if (allowed.length === 0)
            return result.fail(
              syError('SY_ERR_RESIDENCY', `no candidate may take this input (${notes.join('; ')})`),
              notes.join('; '),
            );
          const infos = allowed
            .map((m) => ctx.services.models.info(m))
            .filter((i): i is ModelInfo => i !== undefined);
          const demand = {
            inputTokens: estimateTokens(inputText),
            ...(config.max_tokens === undefined ? {} : { maxOutputTokens: config.max_tokens }),
          };
          const choice = router.choose(infos, remaining, demand, config.margin_ms);
          if (choice.kind === 'fit') {
            model = choice.model.name;
            code = `fit:${model}`;
            notes.push(
              `cheapest fit of ${describe(choice.considered)} in ${Math.round(remaining)}ms`,
            );
          } else if (config.if_none_fit === 'fastest' && choice.fastest !== undefined) {
            model = choice.fastest.name;
            code = `none-fit:${model}`;
            decisions.push('downgrade');
            notes.push(
              `none of ${describe(choice.considered)} fits ${Math.round(remaining)}ms → fastest`,
            );
          } else {
            return result.fail(
              syError('SY_ERR_DEADLINE_EXCEEDED', String(Math.round(remaining))),
              `none of ${describe(choice.considered)} fits ${Math.round(remaining)}ms`,
            );
          }
        } else model = config.model!;
        if (rule?.shorten !== undefined) {
          code = 'downgrade:shorten';
          decisions.push('downgrade');
          notes.push(`${Math.round(remaining)}ms left < ${rule.below_ms}ms → shorter context`);
        }
        const invoker = ctx.services.models;
        const opts = {
          ...(config.slot === undefined ? {} : { slot: config.slot }),
          ...(built.inputs.length === 0
            ? {}
            : {
                inputs: built.inputs,
                rebuild: (withheld: ReadonlySet<string>) =>
                  op === 'embeddings'
                    ? built.rebuild(withheld).inputText
                    : built.rebuild(withheld).request,
              }),
        };
        const r = await callModel(ctx, router, model, (call) =>
          op === 'chat'
            ? invoker.chat(model, request, call, opts)
            : op === 'embeddings'
              ? invoker.embed(model, inputText, call, opts)
              : invoker.infer(model, request, call, opts),
        );
        if (!r.ok) {
          notes.push(`${model} failed: ${r.use.outcome}`);
          return result.fail(r.error, notes.join('; '), { models: [r.use], decisions });
        }
        if (r.value.reason !== 'default') notes.push(`${model}: ${r.value.reason}`);
        if (r.value.withheld.length > 0)
          notes.push(`withheld by policy: ${r.value.withheld.join(', ')}`);
        notes.push(`${r.value.servedBy}@${r.value.version} answered`);
        return result.next(code, notes.join('; '), {
          output: outputOf(op, r.value.json),
          models: [r.use],
          decisions,
          update: { taint: built.sent(r.value.withheld) },
        });
      },
    };

    function buildRequest(
      ctx: StageContext,
      state: Parameters<Getter>[0],
      rule: Downgrade | undefined,
    ): { request: JsonObject; inputText: string } {
      if (op === 'embeddings') {
        const t = asText(text!(state, ctx));
        if (t === undefined) throw missing(config.text ?? 'input.text');
        return { request: {}, inputText: t };
      }
      if (op === 'infer') {
        const v = body!(state, ctx);
        if (!isJsonObject(v))
          throw syError('SY_ERR_STAGE_FAILED', `${b.id}: body is not an object`);
        return { request: v, inputText: '' };
      }
      let msgs: JsonValue[];
      if (messages !== undefined) {
        const v = messages(state, ctx);
        if (!Array.isArray(v) || v.length === 0) throw missing(config.messages!);
        msgs = [...v];
      } else {
        const t = asText(prompt!(state, ctx));
        if (t === undefined) throw missing(config.prompt!);
        msgs = [{ role: 'user', content: t }];
      }
      if (rule?.shorten?.keep_messages !== undefined)
        msgs = msgs.slice(-rule.shorten.keep_messages);
      if (config.system !== undefined) msgs.unshift({ role: 'system', content: config.system });
      const extra = body === undefined ? {} : body(state, ctx);
      const request: JsonObject = extend(isJsonObject(extra) ? extra : {}, { messages: msgs });
      const maxTokens = minDefined(config.max_tokens, rule?.shorten?.max_tokens);
      if (maxTokens !== undefined) request['max_tokens'] = maxTokens;
      let inputText = '';
      for (const m of msgs) if (isJsonObject(m)) inputText += asText(m['content']) ?? '';
      return { request, inputText };
    }
  },
});

function missing(path: string): Error {
  return syError('SY_ERR_INVALID_REQUEST', `${path} is missing`, { param: path });
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function describe(considered: readonly Considered[]): string {
  return considered
    .map(
      (c) =>
        `${c.model}(${c.available ? '' : 'down, '}p95 ${c.predictedMs === undefined ? '?' : Math.round(c.predictedMs)}ms, ${round4(c.expectedCost)})`,
    )
    .join(' ');
}

function round4(n: number): string {
  return String(Math.round(n * 10_000) / 10_000);
}

/** What later stages see: chat answers as `{ text, completion }`, the rest as they came. */
function outputOf(op: ModelOp, json: JsonObject): JsonValue {
  if (op !== 'chat') return json;
  const choices = json['choices'];
  const first = Array.isArray(choices) && isJsonObject(choices[0]) ? choices[0] : undefined;
  const message =
    first !== undefined && isJsonObject(first['message']) ? first['message'] : undefined;
  const content = message?.['content'];
  return { text: typeof content === 'string' ? content : null, completion: json };
}
