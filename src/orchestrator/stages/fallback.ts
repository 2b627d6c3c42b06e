import { z } from 'zod';
import type { JourneyDecision, RouteEntry, Stage, StageResult } from '../../contracts/stage.js';
import { syError, type SwitchyardError } from '../../core/errors.js';
import { defineKind, result, runStage, subId } from '../stage-kit.js';

/**
 * `fallback`: tries inline alternatives in order until one continues or responds, such as the
 * central model, then the regional one, then the stale cached answer (stale-if-error). Each
 * alternative that ran is in the route; a move past the first counts as a fallback.
 */
export const fallbackKind = defineKind({
  kind: 'fallback',
  schema: z.strictObject({ try: z.array(z.unknown()).min(2) }),
  subs: (raw) =>
    raw !== null && typeof raw === 'object' && Array.isArray((raw as { try?: unknown }).try)
      ? (raw as { try: unknown[] }).try.map((spec, i) => ({ spec, where: `.try[${i}]` }))
      : [],
  build(config, b) {
    const alternatives: Stage[] = config.try.map((spec, i) =>
      b.sub(spec, `${b.where}.try[${i}]`, subId(b.id, spec, i)),
    );
    return {
      id: b.id,
      kind: 'fallback',
      async run(ctx, state) {
        const children: RouteEntry[] = [];
        const decisions: JourneyDecision[] = [];
        let lastError: SwitchyardError | undefined;
        for (let i = 0; i < alternatives.length; i++) {
          const alt = alternatives[i]!;
          const ran = await runStage(alt, ctx, state);
          if (ran.result === undefined) {
            lastError = ran.error;
            break;
          }
          children.push(ran.entry);
          const r: StageResult = ran.result;
          for (const d of r.decisions ?? []) decisions.push(d);
          if (r.kind === 'fail') {
            lastError = r.error as SwitchyardError;
            continue;
          }
          if (i > 0) decisions.push('fallback');
          const why =
            i === 0
              ? `${alt.id} answered`
              : `${alternatives
                  .slice(0, i)
                  .map((a) => a.id)
                  .join(', ')} failed → ${alt.id}`;
          if (r.kind === 'respond')
            return result.respond(`alt:${alt.id}`, why, r.body, {
              children,
              decisions,
              ...(r.cacheable === undefined ? {} : { cacheable: r.cacheable && i === 0 }),
            });
          // Own keys before the spreads (core/objects.ts).
          return result.next(`alt:${alt.id}`, why, {
            children,
            decisions,
            ...(r.output === undefined ? {} : { output: r.output }),
            ...(r.update === undefined ? {} : { update: r.update }),
            ...(r.next === undefined ? {} : { next: r.next }),
          });
        }
        return result.fail(
          lastError ?? syError('SY_ERR_STAGE_FAILED', `${b.id}: every alternative failed`),
          `every alternative failed`,
          { children, decisions },
        );
      },
    };
  },
});
