import { z } from 'zod';
import type { JourneyDecision } from '../../contracts/stage.js';
import { compileCondition } from '../expr.js';
import { defineKind, result } from '../stage-kit.js';

const mark = z.enum(['escalation', 'downgrade']).optional();
const target = z.union([z.string(), z.strictObject({ to: z.string(), mark })]);

/**
 * `branch`: the first case whose condition holds decides the next stage; otherwise `else`.
 * Conditions read confidence, labels, the remaining budget, request attributes, features and
 * stage outputs (see `expr.ts`). `mark: escalation` makes the route count the move as one.
 */
export const branchKind = defineKind({
  kind: 'branch',
  terminal: true,
  schema: z.strictObject({
    cases: z.array(z.strictObject({ when: z.string().min(1), to: z.string(), mark })).min(1),
    else: target,
  }),
  refs: (c) => [
    ...c.cases.map((x, i) => ({ id: x.to, where: `.cases[${i}].to` })),
    { id: typeof c.else === 'string' ? c.else : c.else.to, where: '.else' },
  ],
  build(config, b) {
    const cases = config.cases.map((c, i) => ({
      cond: compileCondition(c.when, `${b.where}.cases[${i}].when`, b.paths),
      to: c.to,
      decisions: c.mark === undefined ? [] : [c.mark],
    }));
    const elseTo = typeof config.else === 'string' ? config.else : config.else.to;
    const elseMark = typeof config.else === 'string' ? undefined : config.else.mark;
    const elseDecisions: JourneyDecision[] = elseMark === undefined ? [] : [elseMark];
    return {
      id: b.id,
      kind: 'branch',
      run(ctx, state) {
        for (const c of cases) {
          if (c.cond.test(state, ctx)) {
            const why = c.cond.explain(state, ctx);
            return result.next(
              `to:${c.to}`,
              `"${c.cond.source}"${why === '' ? '' : ` (${why})`} → ${c.to}`,
              { next: c.to, decisions: c.decisions },
            );
          }
        }
        const why = cases.map((c) => c.cond.explain(state, ctx)).filter((s) => s !== '');
        return result.next(
          `to:${elseTo}`,
          `no case held${why.length === 0 ? '' : ` (${[...new Set(why)].join(' ')})`} → ${elseTo}`,
          { next: elseTo, decisions: elseDecisions },
        );
      },
    };
  },
});
