import { z } from 'zod';
import type { DataTag } from '../../contracts/policy.js';
import type { JsonObject } from '../../contracts/json.js';
import type { JourneyDecision, RouteEntry, Stage, StageResult } from '../../contracts/stage.js';
import { syError, type SwitchyardError } from '../../core/errors.js';
import { defineKind, result, runStage, subId, withSignal, type Ran } from '../stage-kit.js';
import { RequestAbortController } from '../../core/abort.js';

/**
 * `parallel`: fans out inline branches at once and merges them.
 * - `first`: the first branch to succeed wins; the others are cancelled (their AbortSignal fires,
 *   so their upstream calls are aborted) and shown in the route as cancelled.
 * - `best`: waits for all; the highest `confidence` wins.
 * - `all`: waits for all; the output is every branch's output by branch id (null if it failed).
 */
export const parallelKind = defineKind({
  kind: 'parallel',
  schema: z.strictObject({
    branches: z.array(z.unknown()).min(2),
    merge: z.enum(['first', 'best', 'all']).default('first'),
  }),
  subs: (raw) =>
    raw !== null &&
    typeof raw === 'object' &&
    Array.isArray((raw as { branches?: unknown }).branches)
      ? (raw as { branches: unknown[] }).branches.map((spec, i) => ({
          spec,
          where: `.branches[${i}]`,
        }))
      : [],
  build(config, b) {
    const branches: Stage[] = config.branches.map((spec, i) =>
      b.sub(spec, `${b.where}.branches[${i}]`, subId(b.id, spec, i)),
    );
    const merge = config.merge;
    return {
      id: b.id,
      kind: 'parallel',
      async run(ctx, state) {
        const controllers = branches.map(() => new RequestAbortController());
        const onAbort = (): void => {
          for (const c of controllers) c.abort(ctx.signal.reason);
        };
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        let winner = -1;
        const runs = branches.map((stage, i) =>
          Promise.resolve(runStage(stage, withSignal(ctx, controllers[i]!.signal), state)).then(
            (ran) => {
              if (
                merge === 'first' &&
                winner < 0 &&
                ran.result !== undefined &&
                ran.result.kind !== 'fail'
              ) {
                winner = i;
                controllers.forEach((c, j) => {
                  if (j !== i)
                    c.abort(
                      syError(
                        'SY_ERR_STAGE_FAILED',
                        `cancelled: branch ${stage.id} answered first`,
                      ),
                    );
                });
              }
              return ran;
            },
          ),
        );
        let settled: Ran[];
        try {
          settled = await Promise.all(runs);
        } finally {
          ctx.signal.removeEventListener('abort', onAbort);
        }
        const children: RouteEntry[] = [];
        const decisions: JourneyDecision[] = [];
        let lastError: SwitchyardError | undefined;
        settled.forEach((ran, i) => {
          if (ran.result === undefined) {
            lastError = ran.error;
            return;
          }
          const cancelled =
            i !== winner && controllers[i]!.signal.aborted && ran.result.kind === 'fail';
          children.push(cancelled ? { ...ran.entry, code: 'cancelled' } : ran.entry);
          for (const d of ran.result.decisions ?? []) decisions.push(d);
          if (ran.result.kind === 'fail') lastError = ran.result.error as SwitchyardError;
        });
        const results = settled.map((r) => r.result);
        const pick = (i: number, why: string): StageResult => {
          const r = results[i]!;
          if (r.kind === 'respond')
            return result.respond(`${merge}:${branches[i]!.id}`, why, r.body, {
              children,
              decisions,
              cacheable: r.cacheable ?? true,
            });
          if (r.kind === 'fail') throw new Error('unreachable');
          // Own keys before the spreads (core/objects.ts).
          return result.next(`${merge}:${branches[i]!.id}`, why, {
            children,
            decisions,
            ...(r.output === undefined ? {} : { output: r.output }),
            ...(r.update === undefined ? {} : { update: r.update }),
          });
        };
        if (merge === 'first') {
          if (winner >= 0) {
            const losers = branches.filter((_, j) => j !== winner).map((s) => s.id);
            return pick(winner, `${branches[winner]!.id} first; cancelled ${losers.join(', ')}`);
          }
        } else if (merge === 'best') {
          let best = -1;
          let bestConf = -Infinity;
          results.forEach((r, i) => {
            if (r === undefined || r.kind === 'fail') return;
            const conf = confidenceOf(r);
            if (conf > bestConf) {
              best = i;
              bestConf = conf;
            }
          });
          if (best >= 0)
            return pick(best, `${branches[best]!.id} most confident (${bestConf.toFixed(2)})`);
        } else {
          const output: JsonObject = {};
          const taint: DataTag[] = [];
          let ok = 0;
          results.forEach((r, i) => {
            const id = branches[i]!.id;
            if (r !== undefined && r.kind === 'continue') {
              output[id] = r.output ?? null;
              for (const t of r.update?.taint ?? []) taint.push(t);
              for (const root of r.update?.derived?.roots ?? []) taint.push(root.tag);
              for (const t of Object.values(r.update?.featureTags ?? {})) taint.push(t);
              ok++;
            } else output[id] = null;
          });
          if (ok > 0)
            return result.next('all', `${ok}/${branches.length} branches answered`, {
              output,
              children,
              decisions,
              update: { taint },
            });
        }
        return result.fail(
          lastError ?? syError('SY_ERR_STAGE_FAILED', `${b.id}: no branch answered`),
          'no branch answered',
          { children, decisions },
        );
      },
    };
  },
});

function confidenceOf(r: StageResult): number {
  if (r.kind === 'continue') {
    if (r.update?.confidence !== undefined) return r.update.confidence;
    const out = r.output;
    if (
      out !== null &&
      typeof out === 'object' &&
      !Array.isArray(out) &&
      typeof out['confidence'] === 'number'
    )
      return out['confidence'];
  }
  return r.kind === 'respond' ? 1 : 0;
}
