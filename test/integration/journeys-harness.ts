/**
 * Test kit for orchestrator tests (not a test itself): a manual clock, scripted models, a
 * compiled journey and a runner around them.
 */
import type { JsonObject } from '../../src/contracts/json.js';
import type { StageServices } from '../../src/contracts/stage.js';
import type { Clock } from '../../src/core/clock.js';
import { MemoryCache } from '../../src/state/cache-memory.js';
import { compileJourneys, type CompiledJourney } from '../../src/orchestrator/compile.js';
import { Router } from '../../src/orchestrator/router.js';
import { JourneyRunner, type JourneyOutcome } from '../../src/orchestrator/runner.js';
import { ScriptedInvoker, type ScriptedModel } from '../support/scripted-invoker.js';

export interface ManualClock extends Clock {
  advance(ms: number): void;
}

export function manualClock(start = 1_000): ManualClock {
  let t = start;
  return {
    now: () => t,
    wall: () => 1_700_000_000_000 + t,
    advance: (ms) => {
      t += ms;
    },
  };
}

export interface Harness {
  readonly clock: ManualClock;
  readonly invoker: ScriptedInvoker;
  readonly router: Router;
  readonly cache: MemoryCache;
  readonly journey: CompiledJourney;
  run(
    input: JsonObject,
    opts?: { budgetMs?: number; tenant?: string; attributes?: JsonObject; signal?: AbortSignal },
  ): Promise<JourneyOutcome>;
}

export function harness(
  models: Record<string, ScriptedModel>,
  stages: readonly unknown[],
  extra: Partial<StageServices> = {},
): Harness {
  const clock = manualClock();
  const invoker = new ScriptedInvoker(models, (ms) => clock.advance(ms));
  const router = new Router(clock);
  const cache = new MemoryCache({ clock });
  const { journeys, problems } = compileJourneys(
    { j: { class: 'interactive', stages } },
    {
      models: (n) => invoker.info(n),
      services: {
        features: extra.features !== undefined,
        retriever: extra.retriever !== undefined,
        policy: extra.policy !== undefined,
      },
      router,
    },
  );
  if (problems.length > 0) throw new Error(problems.join('\n'));
  const journey = journeys.get('j')!;
  const runner = new JourneyRunner({ models: invoker, cache, ...extra }, clock);
  let n = 0;
  return {
    clock,
    invoker,
    router,
    cache,
    journey,
    run: (input, opts = {}) =>
      runner.run(journey, {
        requestId: `r${++n}`,
        tenant: opts.tenant ?? 'acme',
        trafficClass: 'interactive',
        input,
        attributes: opts.attributes ?? {},
        signal: opts.signal ?? new AbortController().signal,
        deadlineAt: clock.now() + (opts.budgetMs ?? 1_000),
      }),
  };
}

/** `stage=code` for each top-level route entry. */
export function codes(outcome: JourneyOutcome): string[] {
  return outcome.route.stages.map((e) => `${e.stage}=${e.code}`);
}
