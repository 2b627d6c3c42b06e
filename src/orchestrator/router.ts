import type { Usage } from '../contracts/backend.js';
import type { ModelInfo } from '../contracts/stage.js';
import type { Clock } from '../core/clock.js';
import { callCost } from '../core/cost.js';
import { LatencyProfile } from './latency-profile.js';

export interface RouterOptions {
  /** Half-life of the learned latency profiles. */
  readonly halfLifeMs: number;
  /** The latency quantile a candidate must fit into the remaining budget. */
  readonly quantile: number;
  /** Decayed observations needed before the learned profile replaces the configured prior. */
  readonly minWeight: number;
  /** Output tokens assumed for a model before any answer was seen (and no max_tokens). */
  readonly defaultOutputTokens: number;
}

export const ROUTER_DEFAULTS: RouterOptions = {
  halfLifeMs: 60_000,
  quantile: 0.95,
  minWeight: 5,
  defaultOutputTokens: 256,
};

/** What a request is expected to need, for cost estimates. */
export interface Demand {
  readonly inputTokens: number;
  /** Cap on output tokens (`max_tokens`), when the request sets one. */
  readonly maxOutputTokens?: number;
}

export interface Considered {
  readonly model: string;
  readonly tier: string;
  /** Predicted latency at the router's quantile; undefined when unknown (no prior, no traffic). */
  readonly predictedMs: number | undefined;
  readonly expectedCost: number;
  readonly fits: boolean;
  readonly available: boolean;
}

export type Choice =
  | { readonly kind: 'fit'; readonly model: ModelInfo; readonly considered: readonly Considered[] }
  | {
      readonly kind: 'none_fit';
      readonly fastest: ModelInfo | undefined;
      readonly considered: readonly Considered[];
    };

const TIER_RANK = { edge: 0, regional: 1, central: 2 } as const;

/**
 * Tiered routing: learned latency profiles and cost models per model, and the cheapest-fit
 * choice among candidates. Lives across config reloads (the composition root keeps it), so what
 * was learned is not forgotten when the config changes.
 */
export class Router {
  private readonly profiles = new Map<string, LatencyProfile>();
  private readonly outputTokens = new Map<string, number>();
  readonly options: RouterOptions;

  constructor(
    private readonly clock: Clock,
    options: Partial<RouterOptions> = {},
  ) {
    this.options = { ...ROUTER_DEFAULTS, ...options };
  }

  /** Records one successful model call (failures are not latency: they are breaker input). */
  observe(model: string, ms: number, usage?: Usage): void {
    const now = this.clock.now();
    let p = this.profiles.get(model);
    if (p === undefined) {
      p = new LatencyProfile(this.options.halfLifeMs, now);
      this.profiles.set(model, p);
    }
    p.observe(ms, now);
    if (usage !== undefined && usage.outputTokens > 0) {
      const prev = this.outputTokens.get(model);
      this.outputTokens.set(
        model,
        prev === undefined ? usage.outputTokens : prev * 0.9 + usage.outputTokens * 0.1,
      );
    }
  }

  /** Predicted latency (ms) at the router's quantile: learned when there is enough traffic, else the prior. */
  predictMs(info: ModelInfo, quantile = this.options.quantile): number | undefined {
    const p = this.profiles.get(info.name);
    if (p !== undefined && p.weight(this.clock.now()) >= this.options.minWeight)
      return p.quantile(quantile);
    return info.priorMs;
  }

  /** Expected cost of one call before it happens (the one cost function, core/cost.ts). */
  expectedCost(info: ModelInfo, demand: Demand, predictedMs: number | undefined): number {
    const learned = this.outputTokens.get(info.name) ?? this.options.defaultOutputTokens;
    const out =
      demand.maxOutputTokens === undefined ? learned : Math.min(learned, demand.maxOutputTokens);
    return callCost(
      info.cost,
      { inputTokens: demand.inputTokens, outputTokens: out },
      predictedMs ?? 0,
    );
  }

  /**
   * Cheapest fit: among available candidates whose predicted latency (plus `marginMs`) fits the
   * remaining budget, the one with the lowest expected cost; ties go to the lower tier, then to
   * list order. A candidate with no latency estimate at all is assumed to fit. When none fits,
   * the fastest available candidate is offered (the caller decides whether to take it).
   */
  choose(
    candidates: readonly ModelInfo[],
    remainingMs: number,
    demand: Demand,
    marginMs = 0,
  ): Choice {
    const considered: Considered[] = [];
    let best: { info: ModelInfo; cost: number } | undefined;
    let fastest: { info: ModelInfo; ms: number } | undefined;
    for (const info of candidates) {
      const predictedMs = this.predictMs(info);
      const expectedCost = this.expectedCost(info, demand, predictedMs);
      const fits =
        info.available && (predictedMs === undefined || predictedMs + marginMs <= remainingMs);
      considered.push({
        model: info.name,
        tier: info.tier,
        predictedMs: predictedMs === undefined ? undefined : Math.round(predictedMs * 100) / 100,
        expectedCost,
        fits,
        available: info.available,
      });
      if (info.available && (fastest === undefined || (predictedMs ?? Infinity) < fastest.ms))
        fastest = { info, ms: predictedMs ?? Infinity };
      if (!fits) continue;
      if (
        best === undefined ||
        expectedCost < best.cost - 1e-12 ||
        (Math.abs(expectedCost - best.cost) <= 1e-12 &&
          TIER_RANK[info.tier] < TIER_RANK[best.info.tier])
      )
        best = { info, cost: expectedCost };
    }
    if (best !== undefined) return { kind: 'fit', model: best.info, considered };
    return { kind: 'none_fit', fastest: fastest?.info, considered };
  }
}
